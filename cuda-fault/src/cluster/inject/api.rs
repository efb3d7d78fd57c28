//! The API calls of `cuda-fault inject`: which version serves the kind, the object, the ConfigMaps
//! and Secrets an injected container's environment comes from, and the one JSON patch.

use http::{header, Method, Request};
use kube::Client;
use serde_json::Value;

use super::super::errors::{api_failure, is_not_found, one_line, Call};
use super::super::is_node_name;
use super::super::verify::Workload;
use crate::exit::{self, Failure};
use injection::live::SourceRef;
use injection::patch::Op;

/// The API group of DynamoGraphDeployments, and the versions of it the injection knows, newest
/// first.
const DGD_GROUP: &str = "nvidia.com";
const DGD_VERSIONS: &[&str] = &["v1beta1", "v1alpha1"];
const DGD_PLURAL: &str = "dynamographdeployments";

/// The message of the API server's answer to a JSON patch whose `test` failed (apiserver's
/// `NewGenericServerResponse` for 422: the patch library's own error text is not passed on).
const PATCH_TEST_FAILED: &str = "the server rejected our request due to an error in our request";

/// The field manager named in the object's managedFields.
pub const FIELD_MANAGER: &str = "cuda-fault";

/// A kind at the version the server serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: String,
    pub kind: &'static str,
    pub plural: &'static str,
    /// `plural.group`, as RBAC and errors name it.
    pub rbac: &'static str,
}

impl Resource {
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    fn path(&self, ns: &str, name: &str) -> String {
        format!("/apis/{}/{}/namespaces/{ns}/{}/{name}", self.group, self.version, self.plural)
    }
}

fn apps(kind: &'static str, plural: &'static str, rbac: &'static str) -> Resource {
    Resource { group: "apps", version: "v1".into(), kind, plural, rbac }
}

async fn get_json(client: &Client, path: &str) -> Result<Value, kube::Error> {
    let req = Request::get(path).body(Vec::new()).expect("a valid request");
    client.request::<Value>(req).await
}

/// The resource of `w`; for a DynamoGraphDeployment, the version the server serves (its
/// preferred one first), found through discovery.
pub async fn resolve(client: &Client, w: &Workload) -> Result<Resource, Failure> {
    Ok(match w {
        Workload::Deployment(_) => apps("Deployment", "deployments", "deployments.apps"),
        Workload::StatefulSet(_) => apps("StatefulSet", "statefulsets", "statefulsets.apps"),
        Workload::DaemonSet(_) => apps("DaemonSet", "daemonsets", "daemonsets.apps"),
        Workload::DynamoGraphDeployment(_) => {
            let Some(version) = dgd_version(client).await? else {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!(
                        "the cluster serves no DynamoGraphDeployment ({DGD_GROUP} {}): is the Dynamo operator installed?",
                        DGD_VERSIONS.join(" or ")
                    ),
                ));
            };
            Resource {
                group: DGD_GROUP,
                version,
                kind: "DynamoGraphDeployment",
                plural: DGD_PLURAL,
                rbac: "dynamographdeployments.nvidia.com",
            }
        }
    })
}

async fn dgd_version(client: &Client) -> Result<Option<String>, Failure> {
    let discovery =
        |e| api_failure(&Call { verb: "discover", resource: "the API group nvidia.com", namespace: None }, e);
    let group = match get_json(client, &format!("/apis/{DGD_GROUP}")).await {
        Ok(g) => g,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(discovery(e)),
    };
    // The group holds other kinds too (the GPU operator's ClusterPolicy is nvidia.com/v1), so
    // each version's resources are asked for.
    let version_of = |v: &Value| v.get("version").and_then(Value::as_str).map(str::to_string);
    let mut order: Vec<String> = group.get("preferredVersion").and_then(version_of).into_iter().collect();
    order.extend(group.get("versions").and_then(Value::as_array).into_iter().flatten().filter_map(version_of));
    let mut seen = Vec::new();
    for v in order {
        if !DGD_VERSIONS.contains(&v.as_str()) || seen.contains(&v) {
            continue;
        }
        seen.push(v.clone());
        let list = match get_json(client, &format!("/apis/{DGD_GROUP}/{v}")).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(discovery(e)),
        };
        let served = list
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|r| r.get("name").and_then(Value::as_str) == Some(DGD_PLURAL));
        if served {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The object, as the server serves it.
pub async fn get(client: &Client, r: &Resource, ns: &str, name: &str) -> Result<Value, Failure> {
    match get_json(client, &r.path(ns, name)).await {
        Ok(v) => Ok(v),
        Err(e) if is_not_found(&e) => {
            Err(Failure::new(exit::UNAVAILABLE, format!("{} {name} not found in namespace {ns}", r.kind)))
        }
        Err(e) => Err(api_failure(&Call { verb: "get", resource: r.rbac, namespace: Some(ns) }, e)),
    }
}

/// A ConfigMap or Secret an injected container's `envFrom` names.
pub async fn source(client: &Client, ns: &str, s: &SourceRef, what: &str) -> Result<Value, Failure> {
    if !is_node_name(&s.name) {
        return Err(Failure::usage(format!(
            "{what}: its envFrom names {} '{}', which is not a valid name",
            s.kind, s.name
        )));
    }
    let (plural, rbac) = if s.kind == "Secret" { ("secrets", "secrets") } else { ("configmaps", "configmaps") };
    match get_json(client, &format!("/api/v1/namespaces/{ns}/{plural}/{}", s.name)).await {
        Ok(v) => Ok(v),
        Err(e) if is_not_found(&e) => Err(Failure::usage(format!(
            "{what} takes its environment from {} {} (envFrom), which does not exist in namespace {ns}, so it cannot be told whether it sets LD_PRELOAD; create it, or pass --envfrom-without-ld-preload {} if it does not",
            s.kind, s.name, s.name
        ))),
        Err(e) => {
            let mut f = api_failure(&Call { verb: "get", resource: rbac, namespace: Some(ns) }, e);
            f.message.push_str(&format!(
                " (it is read to see whether it sets LD_PRELOAD; pass --envfrom-without-ld-preload {} if it does not)",
                s.name
            ));
            Err(f)
        }
    }
}

/// Applies one JSON patch. A failed `test` (the object changed since it was read) or a conflict
/// is [`exit::CHANGED`]: the server applied nothing.
pub async fn patch(
    client: &Client,
    r: &Resource,
    ns: &str,
    name: &str,
    ops: &[Op],
    what: &str,
) -> Result<Value, Failure> {
    let body = serde_json::to_vec(ops).expect("serializable");
    let req = Request::builder()
        .method(Method::PATCH)
        .uri(format!("{}?fieldManager={FIELD_MANAGER}", r.path(ns, name)))
        .header(header::CONTENT_TYPE, "application/json-patch+json")
        .header(header::ACCEPT, "application/json")
        .body(body)
        .expect("a valid request");
    match client.request::<Value>(req).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) if s.code == 409 || (s.code == 422 && s.message.starts_with(PATCH_TEST_FAILED)) => {
            Err(Failure::new(
                exit::CHANGED,
                format!(
                    "{what} changed while cuda-fault was working on it, so nothing was changed; run the command again"
                ),
            ))
        }
        Err(e) if is_not_found(&e) => {
            Err(Failure::new(exit::UNAVAILABLE, format!("{what} not found (deleted meanwhile?)")))
        }
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
            Err(Failure::usage(format!("the API server refused the patch of {what}: {}", one_line(&s.message))))
        }
        Err(e) => Err(api_failure(&Call { verb: "patch", resource: r.rbac, namespace: Some(ns) }, e)),
    }
}
