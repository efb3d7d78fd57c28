//! Label selectors for choosing nodes (`fault apply -l`): Kubernetes' syntax (`k=v`, `k==v`,
//! `k!=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`, comma-separated, all ANDed), validated the way
//! the API server validates label keys and values, and turned into what a pod template selects
//! nodes by: a `nodeSelector` when every requirement is an equality (the shape of
//! `kustomize/fault`), else a required node affinity term.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

fn name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn valid_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => crate::cluster::is_node_name(prefix) && name_part(name),
        None => name_part(k),
    }
}

fn valid_value(v: &str) -> bool {
    v.is_empty() || name_part(v)
}

/// Splits on commas outside parentheses.
fn terms(s: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    out.push(&s[start..]);
    Ok(out)
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, String> {
        let bad = |why: String| format!("invalid label selector '{}': {why}", s.escape_debug());
        if s.trim().is_empty() {
            return Err(bad("it is empty".into()));
        }
        let mut reqs = Vec::new();
        for term in terms(s).map_err(bad)? {
            let t = term.trim();
            let key = |k: &str| {
                let k = k.trim();
                if valid_key(k) {
                    Ok(k.to_string())
                } else {
                    Err(bad(format!("'{}' is not a label key", k.escape_debug())))
                }
            };
            let value = |v: &str| {
                let v = v.trim();
                if valid_value(v) {
                    Ok(v.to_string())
                } else {
                    Err(bad(format!("'{}' is not a label value", v.escape_debug())))
                }
            };
            let set = |rest: &str| -> Result<Vec<String>, String> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| bad(format!("'{}' needs (values)", t.escape_debug())))?;
                let vals = inner.split(',').map(value).collect::<Result<Vec<_>, _>>()?;
                if vals.iter().any(String::is_empty) {
                    return Err(bad("an empty value in a set".into()));
                }
                Ok(vals)
            };
            let words: Vec<&str> = t.splitn(2, char::is_whitespace).collect();
            let req = if let Some(k) = t.strip_prefix('!') {
                Requirement::DoesNotExist(key(k)?)
            } else if let Some((k, v)) = t.split_once("!=") {
                Requirement::NotEquals(key(k)?, value(v)?)
            } else if let Some((k, v)) = t.split_once("==") {
                Requirement::Equals(key(k)?, value(v)?)
            } else if let Some((k, v)) = t.split_once('=') {
                Requirement::Equals(key(k)?, value(v)?)
            } else if let [k, rest] = words.as_slice() {
                let rest = rest.trim_start();
                if let Some(r) = rest.strip_prefix("notin") {
                    Requirement::NotIn(key(k)?, set(r)?)
                } else if let Some(r) = rest.strip_prefix("in") {
                    Requirement::In(key(k)?, set(r)?)
                } else {
                    return Err(bad(format!("'{}' is not a requirement", t.escape_debug())));
                }
            } else {
                Requirement::Exists(key(t)?)
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    /// All equalities: the `nodeSelector` they make.
    pub fn node_selector(&self) -> Option<BTreeMap<String, String>> {
        self.0
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// The `matchExpressions` of one node selector term.
    pub fn match_expressions(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|r| match r {
                    Requirement::Equals(k, v) => json!({"key": k, "operator": "In", "values": [v]}),
                    Requirement::NotEquals(k, v) => json!({"key": k, "operator": "NotIn", "values": [v]}),
                    Requirement::In(k, vs) => json!({"key": k, "operator": "In", "values": vs}),
                    Requirement::NotIn(k, vs) => json!({"key": k, "operator": "NotIn", "values": vs}),
                    Requirement::Exists(k) => json!({"key": k, "operator": "Exists"}),
                    Requirement::DoesNotExist(k) => json!({"key": k, "operator": "DoesNotExist"}),
                })
                .collect(),
        )
    }

    /// The selector as the API server takes it (`labelSelector=`).
    pub fn canonical(&self) -> String {
        let term = |r: &Requirement| match r {
            Requirement::Equals(k, v) => format!("{k}={v}"),
            Requirement::NotEquals(k, v) => format!("{k}!={v}"),
            Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
            Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            Requirement::Exists(k) => k.clone(),
            Requirement::DoesNotExist(k) => format!("!{k}"),
        };
        self.0.iter().map(term).collect::<Vec<_>>().join(",")
    }

    /// A selector from a `nodeSelector` map (sorted by key).
    pub fn from_node_selector(map: &BTreeMap<String, String>) -> Selector {
        Selector(map.iter().map(|(k, v)| Requirement::Equals(k.clone(), v.clone())).collect())
    }

    /// A selector from one term's `matchExpressions` (None if an operator is not a label one).
    pub fn from_match_expressions(exprs: &[Value]) -> Option<Selector> {
        let values = |e: &Value| -> Vec<String> {
            e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        exprs
            .iter()
            .map(|e| {
                let k = e["key"].as_str()?.to_string();
                Some(match e["operator"].as_str()? {
                    "In" => Requirement::In(k, values(e)),
                    "NotIn" => Requirement::NotIn(k, values(e)),
                    "Exists" => Requirement::Exists(k),
                    "DoesNotExist" => Requirement::DoesNotExist(k),
                    _ => return None,
                })
            })
            .collect::<Option<Vec<_>>>()
            .map(Selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        let s = Selector::parse("cuda-fault/target=true, zone in (a, b),!tainted,gpu,tier notin (x),env!=dev,k==v")
            .unwrap();
        assert_eq!(s.canonical(), "cuda-fault/target=true,zone in (a,b),!tainted,gpu,tier notin (x),env!=dev,k=v");
        assert_eq!(Selector::parse(&s.canonical()).unwrap(), s);
        assert_eq!(s.node_selector(), None);
        assert_eq!(s.match_expressions()[1], json!({"key": "zone", "operator": "In", "values": ["a", "b"]}));
        let eq = Selector::parse("nvidia.com/gpu.present=true,a=").unwrap();
        assert_eq!(
            eq.node_selector().unwrap(),
            BTreeMap::from([("a".into(), "".into()), ("nvidia.com/gpu.present".into(), "true".into())])
        );
        let exprs = s.match_expressions();
        let back = Selector::from_match_expressions(exprs.as_array().unwrap()).unwrap();
        assert_eq!(
            back.canonical(),
            "cuda-fault/target in (true),zone in (a,b),!tainted,gpu,tier notin (x),env notin (dev),k in (v)"
        );
    }

    #[test]
    fn hostile_selectors_are_refused_on_one_line() {
        for bad in [
            "",
            " ",
            "a=b\nnamespace: x",
            "a b",
            "a in b",
            "a in (b",
            "a in ()",
            "-a=b",
            "a=b)",
            "a=-b",
            "a/b/c=d",
            &"k".repeat(64),
            "a=(b)",
            "a in (b,,c)",
            "Ü=1",
        ] {
            let e = Selector::parse(bad).unwrap_err();
            assert!(e.starts_with("invalid label selector '") && !e.contains('\n'), "{bad:?}: {e}");
        }
    }
}
