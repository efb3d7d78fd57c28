//! Whether a pod template may run on a node, by the two things a DaemonSet's controller reads:
//! `nodeSelector` and the required node affinity. A stopped hold pod asks this of its DaemonSet's
//! current template: when the template no longer selects the node, the fault was taken off it.
//!
//! Kubernetes' rules: every `nodeSelector` label must match; `nodeSelectorTerms` are ORed, the
//! requirements of one term ANDed; a term with no requirement, or an empty term list, matches no
//! node. `NotIn` and `DoesNotExist` match an absent label; `Gt`/`Lt` compare integers. The only
//! field `matchFields` may name is `metadata.name`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

/// One requirement against the value (None: absent) of the label or field it names.
pub fn requirement(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    let compare = |ord: std::cmp::Ordering| match (value.and_then(number), values) {
        (Some(v), [bound]) => number(bound).is_some_and(|b| v.cmp(&b) == ord),
        _ => false,
    };
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(std::cmp::Ordering::Greater),
        "Lt" => compare(std::cmp::Ordering::Less),
        _ => false,
    }
}

fn term(t: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement(r, Some(name)))
}

/// Whether a pod with `spec` may run on `node`.
pub fn selects(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or("");
    let selector = spec.node_selector.as_ref().is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    let affinity = required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term(t, labels, name)));
    selector && affinity
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: "k".into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn every_operator() {
        let cases: &[(&str, &[&str], Option<&str>, bool)] = &[
            ("In", &["a", "b"], Some("b"), true),
            ("In", &["a"], Some("c"), false),
            ("In", &["a"], None, false),
            ("NotIn", &["a"], Some("c"), true),
            ("NotIn", &["a"], Some("a"), false),
            ("NotIn", &["a"], None, true),
            ("Exists", &[], Some(""), true),
            ("Exists", &[], None, false),
            ("DoesNotExist", &[], None, true),
            ("DoesNotExist", &[], Some("x"), false),
            ("Gt", &["5"], Some("6"), true),
            ("Gt", &["5"], Some("5"), false),
            ("Gt", &["5"], Some("x"), false),
            ("Gt", &["5"], None, false),
            ("Gt", &["x"], Some("6"), false),
            ("Gt", &["1", "2"], Some("6"), false),
            ("Lt", &["5"], Some("-1"), true),
            ("Lt", &["5"], Some("5"), false),
            ("Bogus", &["a"], Some("a"), false),
        ];
        for (op, values, value, want) in cases {
            assert_eq!(requirement(&req(op, values), *value), *want, "{op} {values:?} {value:?}");
        }
    }

    fn node() -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "gpu-1", "labels": {"cuda-fault/target": "true", "zone": "a"}}}),
        )
        .unwrap()
    }

    fn spec(mut v: serde_json::Value) -> PodSpec {
        v["containers"] = json!([]);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn selector_and_required_affinity() {
        let n = node();
        assert!(selects(&spec(json!({})), &n));
        assert!(selects(&spec(json!({"nodeSelector": {"cuda-fault/target": "true"}})), &n));
        assert!(!selects(&spec(json!({"nodeSelector": {"cuda-fault/target": "false"}})), &n));
        assert!(!selects(&spec(json!({"nodeSelector": {"kubernetes.io/hostname": "gpu-2"}})), &n));
        let terms = |t: serde_json::Value| {
            spec(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": t}}}}),
            )
        };
        let by_name =
            |name: &str| json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]});
        assert!(selects(&terms(json!([by_name("gpu-1")])), &n));
        assert!(!selects(&terms(json!([by_name("gpu-2")])), &n));
        assert!(
            selects(
                &terms(
                    json!([by_name("gpu-2"), {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}])
                ),
                &n
            ),
            "terms are ORed"
        );
        assert!(
            !selects(
                &terms(json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
            "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["gpu-1"]}]}])),
                &n
            ),
            "requirements are ANDed"
        );
        assert!(!selects(&terms(json!([])), &n), "no term matches no node");
        assert!(!selects(&terms(json!([{}])), &n), "an empty term matches no node");
        assert!(!selects(
            &terms(json!([{"matchFields": [{"key": "spec.unschedulable", "operator": "In", "values": ["gpu-1"]}]}])),
            &n
        ));
    }
}
