//! The command line's values, checked before the input is read: each of them reaches the
//! generated file (its header, its patches), so each must be what it claims to be. A refusal
//! names the argument and what it should look like.

use injection::names;
use injection::text::escape;
use injection::workloads::KINDS;

/// A workload left out with `--skip KIND/NAME` (or `KIND/NAMESPACE/NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    /// The API group and kind, as in [`KINDS`].
    pub group: &'static str,
    pub kind: &'static str,
    pub name: String,
    /// `None`: in any namespace.
    pub namespace: Option<String>,
}

impl Skip {
    pub fn parse(s: &str) -> Result<Skip, String> {
        let bad = |why: &str| {
            Err(format!("--skip {}: {why}; expected KIND/NAME or KIND/NAMESPACE/NAME, e.g. deployment/vllm", escape(s)))
        };
        let parts: Vec<&str> = s.split('/').collect();
        let (kind, namespace, name) = match parts.as_slice() {
            [k, n] => (*k, None, *n),
            [k, ns, n] => (*k, Some(*ns), *n),
            _ => return bad("not KIND/NAME"),
        };
        let wanted = kind.to_ascii_lowercase();
        let found = KINDS.iter().find(|(_, k)| {
            let k = k.to_ascii_lowercase();
            wanted == k || wanted == format!("{k}s") || (k == "dynamographdeployment" && wanted == "dgd")
        });
        let Some((group, kind)) = found else {
            let kinds: Vec<String> = KINDS.iter().map(|(_, k)| k.to_ascii_lowercase()).collect();
            return bad(&format!("unknown kind (one of {}, or dgd)", kinds.join(", ")));
        };
        if !names::is_dns_subdomain(name) {
            return bad("the name is not a Kubernetes object name");
        }
        if namespace.is_some_and(|ns| !names::is_dns_label(ns)) {
            return bad("the namespace is not a DNS-1123 label");
        }
        Ok(Skip { group, kind, name: name.to_string(), namespace: namespace.map(str::to_string) })
    }

    pub fn matches(&self, id: &injection::stream::ObjectId) -> bool {
        id.group == self.group
            && id.kind == self.kind
            && id.name == self.name
            && self.namespace.as_deref().is_none_or(|ns| ns == id.namespace_or_default())
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind.to_ascii_lowercase(), self.name),
            None => write!(f, "{}/{}", self.kind.to_ascii_lowercase(), self.name),
        }
    }
}

/// The values as given.
pub struct Given<'a> {
    pub image: &'a str,
    pub containers: &'a [String],
    pub skip: &'a [String],
    pub envfrom_without_ld_preload: &'a [String],
    pub pin_node: Option<&'a str>,
    /// Whether `--pin` was given.
    pub pin_given: bool,
}

/// Checks every value; the parsed `--skip`s.
pub fn check(a: &Given<'_>) -> Result<Vec<Skip>, String> {
    if let Some(why) = names::image_problem(a.image) {
        return Err(format!("--image {}: not an image reference: {why}", escape(a.image)));
    }
    for c in a.containers {
        if !names::is_dns_label(c) {
            return Err(format!(
                "--container {}: not a container name (a DNS-1123 label: lower-case letters, digits and '-', at most 63)",
                escape(c)
            ));
        }
    }
    for n in a.envfrom_without_ld_preload {
        if !names::is_dns_subdomain(n) {
            return Err(format!(
                "--envfrom-without-ld-preload {}: not a ConfigMap or Secret name (a DNS-1123 subdomain)",
                escape(n)
            ));
        }
    }
    match a.pin_node {
        Some(n) if !names::is_node_name(n) => {
            return Err(format!(
            "--pin-node {}: not a node name (its metadata.name, a DNS-1123 subdomain, as kubectl get nodes shows it)",
            escape(n)
        ))
        }
        None if a.pin_given => return Err("--pin needs --pin-node NODE: the node to pin the injected pods to".into()),
        _ => {}
    }
    a.skip.iter().map(|s| Skip::parse(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given<'a>(image: &'a str, containers: &'a [String], pin_node: Option<&'a str>) -> Given<'a> {
        Given { image, containers, skip: &[], envfrom_without_ld_preload: &[], pin_node, pin_given: false }
    }

    #[test]
    fn values_that_would_reach_the_output_are_checked() {
        let e = check(&given("img:1\nnamespace: pwned", &[], None)).unwrap_err();
        assert_eq!(e, "--image img:1\\nnamespace: pwned: not an image reference: its tag is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
        let e = check(&given("img:1", &["a\nb".into()], None)).unwrap_err();
        assert!(e.starts_with("--container a\\nb: not a container name"), "{e}");
        let e = check(&given("img:1", &[], Some("n1\r\nx"))).unwrap_err();
        assert!(e.starts_with("--pin-node n1\\r\\nx: not a node name"), "{e}");
        let mut g = given("img:1", &[], None);
        g.pin_given = true;
        assert_eq!(check(&g).unwrap_err(), "--pin needs --pin-node NODE: the node to pin the injected pods to");
        assert_eq!(check(&given("registry.example/cuda-fault:9.9", &["bench".into()], Some("gpu-1"))), Ok(vec![]));
    }

    #[test]
    fn skips() {
        assert_eq!(
            Skip::parse("deployment/vllm.v1"),
            Ok(Skip { group: "apps", kind: "Deployment", name: "vllm.v1".into(), namespace: None })
        );
        assert_eq!(Skip::parse("DGD/prod/llm").unwrap().kind, "DynamoGraphDeployment");
        assert_eq!(Skip::parse("statefulsets/t").unwrap().to_string(), "statefulset/t");
        assert!(Skip::parse("service/x").unwrap_err().contains("unknown kind"));
        assert!(Skip::parse("vllm").unwrap_err().contains("not KIND/NAME"));
        assert!(Skip::parse("deployment/a\nb").unwrap_err().starts_with("--skip deployment/a\\nb: the name"));
    }
}
