//! The rendered stream `kubectl kustomize` prints: YAML documents, each one object (or a
//! `kind: List` of them, which kustomize also reads as its items).
//!
//! The input is untrusted (a CI pipeline, a pull request, Helm output), so it is read within
//! bounds that hold in time and memory whatever it holds: at most [`MAX_INPUT_BYTES`], nesting
//! at most [`MAX_DEPTH`] deep (refused as the parser meets it, so a deep `[[[[` costs linear
//! time), aliases expanding to at most [`MAX_ALIAS_EVENTS`] nodes in all, and no duplicate
//! mapping key (strict decoding, as `kubectl apply` does). A UTF-8 byte order mark is accepted,
//! as kubectl accepts it.

use std::fmt;

use serde_json::Value;

use crate::error::{refuse, Error};

/// The most input the generator reads: kubectl's render of a large application is a few MB,
/// and the Component is about four times the size of its input (peak memory: README.md).
pub const MAX_INPUT_BYTES: usize = 64 << 20;
/// The deepest nesting of mappings and sequences (block or flow); the same limit as the YAML
/// library of earlier versions, and far deeper than any Kubernetes object (CRD schemas included).
pub const MAX_DEPTH: usize = 128;
/// The most nodes that aliases (`*name`) may expand to in all: about what an input of a few MB
/// holds, so an input cannot make the generator build more than that out of a small file.
pub const MAX_ALIAS_EVENTS: usize = 1_000_000;
/// The most text that aliases may repeat, beyond the input's own.
pub const MAX_ALIAS_TEXT: usize = 16 << 20;

/// What identifies an object for kustomize's selectors.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    /// As written; `None` counts as `default` for kustomize's selectors.
    pub namespace: Option<String>,
    /// The name a Component sees: without the hash suffix of a kustomize generator.
    pub component_name: String,
}

impl ObjectId {
    pub fn of(doc: &Value) -> Result<ObjectId, Error> {
        let s = |p: &str| doc.pointer(p).and_then(Value::as_str).map(str::to_string);
        let (Some(api_version), Some(kind), Some(name)) = (s("/apiVersion"), s("/kind"), s("/metadata/name")) else {
            refuse!("it lacks apiVersion, kind or metadata.name; feed the output of kubectl kustomize")
        };
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version),
        };
        let component_name = crate::hashed::unsuffixed(doc).unwrap_or_else(|| name.clone());
        Ok(ObjectId {
            group,
            version,
            kind,
            name,
            namespace: s("/metadata/namespace").filter(|n| !n.is_empty()),
            component_name,
        })
    }

    /// The namespace kustomize compares: an object without one is in `default`.
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// Whether `other` names the same object as a reference from a pod in this namespace.
    pub fn same_namespace(&self, other: &ObjectId) -> bool {
        self.namespace_or_default() == other.namespace_or_default()
    }
}

impl fmt::Display for ObjectId {
    /// `Deployment prod/vllm`, `DynamoGraphDeployment vllm-disagg (v1alpha1)`; escaped, as names
    /// come from untrusted input.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = crate::text::escape;
        write!(f, "{} ", e(&self.kind))?;
        if let Some(ns) = &self.namespace {
            write!(f, "{}/", e(ns))?;
        }
        f.write_str(&e(&self.name))?;
        if self.group == "nvidia.com" {
            write!(f, " ({})", e(&self.version))?;
        }
        Ok(())
    }
}

/// One object of the stream.
#[derive(Clone, Debug)]
pub struct Object {
    pub id: ObjectId,
    pub doc: Value,
}

/// Reads the input bytes: UTF-8 (a byte order mark is dropped), at most [`MAX_INPUT_BYTES`].
pub fn text(bytes: &[u8]) -> Result<&str, Error> {
    if bytes.len() > MAX_INPUT_BYTES {
        refuse!("the input is larger than {} MiB; feed the output of kubectl kustomize", MAX_INPUT_BYTES >> 20);
    }
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => refuse!(
            "the input is not UTF-8 (byte {} is not); feed the output of kubectl kustomize",
            e.valid_up_to() + 1
        ),
    };
    // kustomize's YAML parser (YAML 1.1) breaks lines at NEL, LS and PS, which YAML 1.2 reads as
    // text: with one in the input, the two would see different names and values.
    if let Some(at) = text.find(['\u{85}', '\u{2028}', '\u{2029}']) {
        let line = text[..at].matches('\n').count() + 1;
        let c = text[at..].chars().next().unwrap_or_default();
        refuse!(
            "input line {line} holds U+{:04X}, a line break to kustomize's YAML parser and text to others; remove it",
            c as u32
        );
    }
    Ok(text)
}

fn options(input_len: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    // Bounded by the input's size instead: each of these grows with it at most linearly.
    budget.max_events = usize::MAX;
    budget.max_nodes = usize::MAX;
    budget.max_documents = usize::MAX;
    budget.max_total_scalar_bytes = input_len.saturating_add(MAX_ALIAS_TEXT);
    budget.max_reader_input_bytes = None;
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    let mut opts = serde_saphyr::Options::default();
    opts.budget = Some(budget);
    opts.alias_limits.max_total_replayed_events = MAX_ALIAS_EVENTS;
    opts.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    opts.with_snippet = false;
    opts
}

fn nested() -> String {
    format!("nested more than {MAX_DEPTH} levels deep; feed the output of kubectl kustomize")
}

/// The parser's refusal as one line that says where and what.
fn parse_error(e: &serde_saphyr::Error) -> Error {
    use serde_saphyr::Error as E;
    let at = match e.location() {
        Some(l) if l.line() > 0 => format!("input line {} column {}: ", l.line(), l.column()),
        _ => "input: ".to_string(),
    };
    let mut inner = e;
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = inner {
        inner = error;
    }
    let what = match inner {
        E::DuplicateMappingKey { key, .. } => format!(
            "a mapping has the key {} twice (strict decoding refuses it, as kubectl apply does); keep one",
            key.as_deref().unwrap_or("(not a string)")
        ),
        E::AliasReplayLimitExceeded { .. } | E::AliasExpansionLimitExceeded { .. } => format!(
            "YAML aliases expand to more than {MAX_ALIAS_EVENTS} nodes; feed the output of kubectl kustomize, which has none"
        ),
        E::AliasReplayStackDepthExceeded { .. } => {
            "YAML aliases nest too deeply; feed the output of kubectl kustomize, which has none".to_string()
        }
        E::Budget { breach, .. } => match breach {
            serde_saphyr::budget::BudgetBreach::Depth { .. } => nested(),
            serde_saphyr::budget::BudgetBreach::ScalarBytes { .. } => format!(
                "YAML aliases repeat more than {} MiB of text; feed the output of kubectl kustomize, which has none",
                MAX_ALIAS_TEXT >> 20
            ),
            serde_saphyr::budget::BudgetBreach::Aliases { .. }
            | serde_saphyr::budget::BudgetBreach::Anchors { .. } => {
                "too many YAML aliases or anchors; feed the output of kubectl kustomize, which has none".to_string()
            }
            other => format!("{other:?}"),
        },
        // The parser's own limit on flow nesting.
        other if other.to_string().contains("recursion limit exceeded") => nested(),
        other => {
            let text = other.to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            // The location is said once, in front.
            let text = match text.split_once(": ") {
                Some((loc, rest)) if loc.starts_with("line ") => rest,
                _ => text,
            };
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    Error::new(format!("{at}{what}"))
}

/// Parses every document; empty documents are skipped, `kind: List` documents give their items.
pub fn parse(text: &str) -> Result<Vec<Object>, Error> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options(text.len())).map_err(|e| parse_error(&e))?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let where_ = format!("input document {}", i + 1);
        if doc.is_null() {
            continue;
        }
        if !doc.is_object() {
            refuse!("{where_} is not a mapping; feed the output of kubectl kustomize");
        }
        if is_list(&doc) {
            let Some(Value::Array(items)) = doc.get("items") else {
                refuse!(
                    "{where_} (kind {}) has no items list",
                    crate::text::escape(doc["kind"].as_str().unwrap_or(""))
                );
            };
            for (j, item) in items.iter().enumerate() {
                let where_ = format!("{where_} (a List), item {}", j + 1);
                if !item.is_object() {
                    refuse!("{where_} is not a mapping; feed the output of kubectl kustomize");
                }
                let id = ObjectId::of(item).map_err(|e| Error::new(format!("{where_}{}: {e}", named(item))))?;
                out.push(Object { id, doc: item.clone() });
            }
            continue;
        }
        let id = ObjectId::of(&doc).map_err(|e| Error::new(format!("{where_}{}: {e}", named(&doc))))?;
        out.push(Object { id, doc });
    }
    Ok(out)
}

/// kustomize reads a document whose kind ends in `List` and that has `items` as its items.
fn is_list(doc: &Value) -> bool {
    doc.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) && doc.get("items").is_some()
}

/// ` (KIND NAME)` for whatever of kind and name an object has, for a refusal.
fn named(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str);
    let name = doc.pointer("/metadata/name").and_then(Value::as_str);
    match (kind, name) {
        (Some(k), Some(n)) => format!(" ({k} {n})"),
        (Some(k), None) => format!(" ({k})"),
        (None, Some(n)) => format!(" (named {n})"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_become_objects() {
        let objs = parse("---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a, namespace: p}\n---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].id.to_string(), "Deployment p/a");
        assert_eq!((objs[1].id.group.as_str(), objs[1].id.version.as_str()), ("", "v1"));
        assert_eq!(objs[1].id.namespace_or_default(), "default");
        assert!(parse("- 1\n").unwrap_err().0.contains("not a mapping"));
        assert_eq!(
            parse("kind: X\n").unwrap_err().0,
            "input document 1 (X): it lacks apiVersion, kind or metadata.name; feed the output of kubectl kustomize"
        );
        assert!(parse("a: [\n").unwrap_err().0.starts_with("input line "));
    }

    #[test]
    fn a_list_gives_its_items_and_a_refusal_names_the_item() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n- {apiVersion: v1, kind: Pod, metadata: {namespace: x}}\n";
        assert_eq!(
            parse(list).unwrap_err().0,
            "input document 1 (a List), item 2 (Pod): it lacks apiVersion, kind or metadata.name; feed the output of kubectl kustomize"
        );
        let objs = parse(&list.replace("{namespace: x}", "{name: b}")).unwrap();
        assert_eq!(objs.iter().map(|o| o.id.to_string()).collect::<Vec<_>>(), ["Pod a", "Pod b"]);
    }

    #[test]
    fn strict_and_bounded() {
        let e = parse("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nmetadata: {name: b}\n").unwrap_err().0;
        assert_eq!(e, "input line 4 column 1: a mapping has the key metadata twice (strict decoding refuses it, as kubectl apply does); keep one");
        let e = parse(&format!("a: {}", "[".repeat(100_000))).unwrap_err().0;
        assert!(e.ends_with("nested more than 128 levels deep; feed the output of kubectl kustomize"), "{e}");
        let e = parse(&format!("a: {}", "{a: ".repeat(100_000))).unwrap_err().0;
        assert!(e.ends_with("nested more than 128 levels deep; feed the output of kubectl kustomize"), "{e}");
        // A linear amplification: 20,000 items referenced 60 times.
        let items: String = (0..20_000).map(|i| format!("  - i{i}\n")).collect();
        let refs: String = (0..60).map(|i| format!("  k{i}: *big\n")).collect();
        let e =
            parse(&format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\nbig: &big\n{items}data:\n{refs}"))
                .unwrap_err()
                .0;
        assert!(e.contains("YAML aliases expand to more than 1000000 nodes"), "{e}");
        let big = "x".repeat(1 << 20);
        let refs: String = (0..40).map(|i| format!("  k{i}: *s\n")).collect();
        let e = parse(&format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\nbig: &s {big}\ndata:\n{refs}"))
            .unwrap_err()
            .0;
        assert!(e.contains("YAML aliases repeat more than 16 MiB of text"), "{e}");
        assert_eq!(text("\u{feff}a: b".as_bytes()), Ok("a: b"));
        assert_eq!(
            text("a: b\nc: \"d\u{2028}e\"".as_bytes()).unwrap_err().0,
            "input line 2 holds U+2028, a line break to kustomize's YAML parser and text to others; remove it"
        );
        assert_eq!(
            text(b"a: \xff").unwrap_err().0,
            "the input is not UTF-8 (byte 4 is not); feed the output of kubectl kustomize"
        );
    }
}
