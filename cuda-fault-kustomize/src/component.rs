//! The generated file: a kustomize Component of JSON6902 patches (one per workload, and one per
//! ConfigMap or Secret whose keys the injection relies on) and of `replacements` that guard
//! against workloads the generator did not see, under a header saying what was found. The guards
//! copy from a ConfigMap of the Component's own, generated and marked local (kustomize drops it
//! from the output), so they hold whatever happens to the user's workloads.

use serde::Serialize;

use crate::layout::STALE;
use crate::patch::Op;
use crate::stream::ObjectId;
use crate::workloads::KINDS;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    pub api_version: &'static str,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_map_generator: Vec<Generator>,
    pub patches: Vec<Patch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replacements: Vec<Replacement>,
}

/// A `configMapGenerator` entry.
#[derive(Serialize)]
pub struct Generator {
    pub name: &'static str,
    pub options: GeneratorOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorOptions {
    pub disable_name_suffix_hash: bool,
    pub annotations: std::collections::BTreeMap<&'static str, &'static str>,
}

/// kustomize drops an object with this annotation from what it prints (and applies).
pub const LOCAL_CONFIG: &str = "config.kubernetes.io/local-config";

/// The guards' source: a ConfigMap that exists only while kustomize builds, named for the way out.
pub fn guard_source() -> Generator {
    Generator {
        name: STALE,
        options: GeneratorOptions {
            disable_name_suffix_hash: true,
            annotations: [(LOCAL_CONFIG, "true")].into_iter().collect(),
        },
    }
}

#[derive(Serialize)]
pub struct Patch {
    pub target: Selector,
    /// The operations, one JSON object per line.
    pub patch: String,
}

/// A kustomize selector. In a patch target, `name` and `namespace` are regexes (anchored here);
/// in replacements they are literals.
#[derive(Serialize, Default, Clone)]
pub struct Selector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Serialize)]
pub struct Replacement {
    pub source: Source,
    pub targets: Vec<ReplacementTarget>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(flatten)]
    pub selector: Selector,
    pub field_path: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplacementTarget {
    pub select: Selector,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reject: Vec<Selector>,
    pub field_paths: Vec<String>,
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The patch target of exactly this object: group, version, kind, and the name (as the
/// Component sees it) and namespace as anchored, escaped regexes (kustomize matches them as
/// regexes; a `.` in a name would otherwise match any character).
pub fn target(id: &ObjectId) -> Selector {
    let anchored = |s: &str| format!("^{}$", regex::escape(s));
    Selector {
        group: opt(&id.group),
        version: opt(&id.version),
        kind: Some(id.kind.clone()),
        name: Some(anchored(&id.component_name)),
        namespace: Some(anchored(id.namespace_or_default())),
    }
}

/// The operations as the patch's text: one JSON object per line, a YAML list.
pub fn patch_text(ops: &[Op]) -> String {
    ops.iter().map(|op| format!("- {}\n", serde_json::to_string(op).expect("serializable"))).collect()
}

/// The guards: for every kind the generator handles, the build fails for any object of that
/// kind it did not see (it cannot know whether that one needs the shim). The replacement copies
/// the name of [`guard_source`] onto a field no object has, without `create`, so kustomize fails
/// ("unable to find field ...") for each object that is not rejected; the field's name says what
/// to do. Names in `reject` are compared literally, namespaces with "" = default.
pub fn guards(seen: &[ObjectId]) -> Replacement {
    let targets = KINDS
        .iter()
        .map(|(group, kind)| ReplacementTarget {
            select: Selector { group: opt(group), kind: Some(kind.to_string()), ..Selector::default() },
            reject: seen
                .iter()
                .filter(|id| id.group == *group && id.kind == *kind)
                .map(|id| Selector {
                    name: Some(id.name.clone()),
                    namespace: Some(id.namespace_or_default().to_string()),
                    ..Selector::default()
                })
                .collect(),
            field_paths: vec![format!("metadata.annotations.{STALE}--new-{kind}")],
        })
        .collect();
    let source = Source {
        selector: Selector {
            version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some(STALE.into()),
            ..Selector::default()
        },
        field_path: "metadata.name",
    };
    Replacement { source, targets }
}

/// The file: the header (each line a comment, escaped: a name holding a line break must not end
/// the comment and become configuration) and the Component.
pub fn render(header: &[String], component: &Component) -> String {
    let mut out = String::new();
    for line in header {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str(&format!("# {}\n", injection::text::escape(line)));
        }
    }
    out.push_str(&serde_norway::to_string(component).expect("serializable"));
    out
}
