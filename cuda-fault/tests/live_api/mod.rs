//! A stateful fake Kubernetes API server for `cuda-fault inject`, on kube's mock service
//! (tower-test). It stores objects, answers GET and LIST, applies JSON patches the way the API
//! server does (RFC 6902 through the json-patch crate, with the one difference of the API
//! server's patch library: a `test` for `null` holds where the key is absent and its parent
//! exists), answers a failed patch as the API server does (422, "the server rejected our request
//! due to an error in our request", nothing applied), deletes pods, and checks every request
//! against the RBAC rules the code declares.
//!
//! A test can change an object right after the server answered a GET of it, as another client
//! would between cuda-fault's read and its write, and can have the server fill in container
//! defaults on every patch, as the real one does.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use cuda_fault::cluster::rbac::{allows, Rule};
use cuda_fault::{run_inject, Cli, Command};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

type Edit = Box<dyn FnOnce(&mut Value) + Send>;

pub const PATCH_FAILED: &str = "the server rejected our request due to an error in our request";

#[derive(Default)]
pub struct Cluster {
    /// Objects by their API path.
    pub objects: BTreeMap<String, Value>,
    /// Discovery documents by path (`/apis/nvidia.com`, `/apis/nvidia.com/v1beta1`).
    pub discovery: BTreeMap<String, Value>,
    /// "METHOD uri" of every request.
    pub requests: Vec<String>,
    /// The body of every PATCH.
    pub patches: Vec<Value>,
    /// Requests answered 403 ("METHOD path").
    pub forbidden: Vec<String>,
    /// Requests the declared RBAC does not allow.
    pub violations: Vec<String>,
    /// Fill in container defaults after each patch (terminationMessagePath, ...).
    pub defaults: bool,
    after_get: Vec<(String, Edit)>,
    next_uid: u32,
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "Deployment" => "deployments",
        "StatefulSet" => "statefulsets",
        "DaemonSet" => "daemonsets",
        "DynamoGraphDeployment" => "dynamographdeployments",
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Pod" => "pods",
        "Service" => "services",
        "Job" => "jobs",
        "CronJob" => "cronjobs",
        k => panic!("the fake API server does not know {k}"),
    }
}

/// The API path of an object.
pub fn path_of(obj: &Value) -> String {
    let api = obj["apiVersion"].as_str().unwrap();
    let prefix = if api.contains('/') { format!("/apis/{api}") } else { format!("/api/{api}") };
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    format!(
        "{prefix}/namespaces/{ns}/{}/{}",
        plural(obj["kind"].as_str().unwrap()),
        obj["metadata"]["name"].as_str().unwrap()
    )
}

impl Cluster {
    pub fn new() -> Arc<Mutex<Cluster>> {
        Arc::new(Mutex::new(Cluster::default()))
    }

    /// Stores `obj` with a uid and a resourceVersion, as the API server would have it; returns
    /// what is stored.
    pub fn put(&mut self, mut obj: Value) -> Value {
        self.next_uid += 1;
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.entry("uid").or_insert(json!(format!("uid-{}", self.next_uid)));
        meta.entry("resourceVersion").or_insert(json!("1"));
        self.objects.insert(path_of(&obj), obj.clone());
        obj
    }

    pub fn get(&self, path: &str) -> &Value {
        self.objects.get(path).unwrap_or_else(|| panic!("no object at {path}"))
    }

    /// Right after the next GET of `path` is answered, `edit` changes the stored object.
    pub fn after_get(&mut self, path: &str, edit: impl FnOnce(&mut Value) + Send + 'static) {
        self.after_get.push((path.to_string(), Box::new(edit)));
    }

    /// Serves nvidia.com: the group's versions (preferred first) and, for each, its resources.
    pub fn serve_group(&mut self, preferred: &str, versions: &[(&str, &[&str])]) {
        let v = |name: &str| json!({"groupVersion": format!("nvidia.com/{name}"), "version": name});
        self.discovery.insert(
            "/apis/nvidia.com".into(),
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": "nvidia.com",
                   "versions": versions.iter().map(|(n, _)| v(n)).collect::<Vec<_>>(),
                   "preferredVersion": v(preferred)}),
        );
        for (name, resources) in versions {
            let list: Vec<Value> = resources
                .iter()
                .map(|r| json!({"name": r, "singularName": "", "namespaced": true, "kind": "X", "verbs": ["get", "patch"]}))
                .collect();
            self.discovery.insert(
                format!("/apis/nvidia.com/{name}"),
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("nvidia.com/{name}"), "resources": list}),
            );
        }
    }
}

/// Applies one RFC 6902 patch as the API server does; the document is unchanged on failure.
pub fn apply_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let mut out = doc.clone();
    for op in ops.as_array().ok_or("the patch is not a list")? {
        if op["op"] == "test" {
            test_op(&out, op)?;
            continue;
        }
        let one: json_patch::Patch = serde_json::from_value(json!([op])).map_err(|e| e.to_string())?;
        json_patch::patch(&mut out, &one).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn unescape(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

/// evanphx/json-patch's `test`: the parent must exist; an absent key tests equal to `null`.
fn test_op(doc: &Value, op: &Value) -> Result<(), String> {
    let path = op["path"].as_str().ok_or("test without a path")?;
    let tokens: Vec<String> = path.split('/').skip(1).map(unescape).collect();
    let Some((last, parents)) = tokens.split_last() else {
        return if *doc == op["value"] { Ok(()) } else { Err(format!("testing value {path} failed")) };
    };
    let mut cur = doc;
    for t in parents {
        cur = match cur {
            Value::Object(m) => m.get(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("test operation does not apply: is missing path: {path}"))?;
    }
    let val = match cur {
        Value::Object(m) => m.get(last),
        Value::Array(a) => Some(
            last.parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .ok_or_else(|| format!("error in test for path: '{path}'"))?,
        ),
        _ => return Err(format!("test operation does not apply: is missing path: {path}")),
    };
    let expected = op.get("value").unwrap_or(&Value::Null);
    match val {
        None if expected.is_null() => Ok(()),
        Some(v) if v == expected => Ok(()),
        _ => Err(format!("testing value {path} failed")),
    }
}

/// What the API server fills in for every container of a pod template.
fn fill_defaults(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for key in ["containers", "initContainers"] {
                if let Some(Value::Array(cs)) = m.get_mut(key) {
                    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                        c.entry("terminationMessagePath").or_insert(json!("/dev/termination-log"));
                        c.entry("terminationMessagePolicy").or_insert(json!("File"));
                        c.entry("imagePullPolicy").or_insert(json!("IfNotPresent"));
                    }
                }
            }
            m.values_mut().for_each(fill_defaults);
        }
        Value::Array(a) => a.iter_mut().for_each(fill_defaults),
        _ => {}
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn selects(pod: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or_else(|| panic!("the fake server reads only k=v selectors: {term}"));
        pod["metadata"]["labels"][k] == v
    })
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// (API group, resource, verb, namespace) of a request; `None` for discovery, which every
/// authenticated user may read.
fn rule_of(method: &str, path: &str) -> Option<(String, String, String, Option<String>)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest): (&str, &[&str]) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] if !rest.is_empty() => (g, rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (resource, named) = match rest {
        [r] => (r.to_string(), false),
        [r, _] => (r.to_string(), true),
        other => panic!("unexpected path {other:?}"),
    };
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        other => panic!("unexpected {other:?} on {path}"),
    };
    Some((group.to_string(), resource, verb.to_string(), ns))
}

fn handle(c: &mut Cluster, rules: &[Rule], method: &str, uri: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    c.requests.push(format!("{method} {uri}"));
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let path = path.to_string();
    if let Some((g, r, v, ns)) = rule_of(method, &path) {
        if !allows(rules, &g, &r, &v, ns.as_deref(), "cuda-fault") {
            c.violations.push(format!("{method} {uri} needs '{v}' on {g}/{r}"));
        }
    }
    if c.forbidden.contains(&format!("{method} {path}")) {
        return status(403, "Forbidden", &format!("{path} is forbidden: User \"alice\" cannot {method} it"));
    }
    match method {
        "GET" if c.discovery.contains_key(&path) => (200, c.discovery[&path].clone()),
        "GET" if path.ends_with("/pods") => {
            let selector =
                query.split('&').find_map(|kv| kv.strip_prefix("labelSelector=")).map(decode).unwrap_or_default();
            let items: Vec<Value> = c
                .objects
                .iter()
                .filter(|(p, o)| p.starts_with(&format!("{path}/")) && selects(o, &selector))
                .map(|(_, o)| o.clone())
                .collect();
            (200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}))
        }
        "GET" => match c.objects.get(&path).cloned() {
            Some(o) => {
                if let Some(i) = c.after_get.iter().position(|(p, _)| *p == path) {
                    let (_, edit) = c.after_get.remove(i);
                    let stored = c.objects.get_mut(&path).unwrap();
                    edit(stored);
                    bump(stored);
                }
                (200, o)
            }
            None => status(404, "NotFound", &format!("{path} not found")),
        },
        "PATCH" => {
            assert_eq!(content_type, "application/json-patch+json", "inject sends a JSON patch");
            let ops: Value = serde_json::from_slice(body).expect("a JSON patch");
            c.patches.push(ops.clone());
            let Some(current) = c.objects.get(&path).cloned() else {
                return status(404, "NotFound", &format!("{path} not found"));
            };
            match apply_patch(&current, &ops) {
                Ok(mut new) => {
                    if c.defaults {
                        fill_defaults(&mut new);
                    }
                    bump(&mut new);
                    c.objects.insert(path, new.clone());
                    (200, new)
                }
                Err(_) => status(422, "Invalid", PATCH_FAILED),
            }
        }
        "DELETE" => match c.objects.remove(&path) {
            Some(_) => (200, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})),
            None => status(404, "NotFound", &format!("{path} not found")),
        },
        m => panic!("unexpected method {m}"),
    }
}

fn bump(obj: &mut Value) {
    let rv: u64 = obj["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    obj["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
}

/// What a run of `cuda-fault inject` gave: exit code, stdout, stderr.
#[derive(Debug)]
pub struct Run {
    pub code: u8,
    pub out: String,
    pub err: String,
}

/// Runs `cuda-fault inject ARGS` against the fake server, which grants `rules`; the kubeconfig
/// context's namespace is `default`. Errors are reported as the binary reports them.
pub async fn run(cluster: &Arc<Mutex<Cluster>>, rules: &'static [Rule], args: &[&str]) -> Run {
    let mut argv = vec!["cuda-fault", "inject"];
    argv.extend_from_slice(args);
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => panic!("{argv:?}: {e}"),
    };
    let Command::Inject(inject) = cli.command else { unreachable!() };
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = cluster.clone();
    let server = tokio::spawn(async move {
        while let Some((req, reply)) = handle.next_request().await {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let ct = req.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            let body = req.into_body().collect_bytes().await.unwrap();
            let (code, answer) = handle_locked(&state, rules, &method, &uri, &ct, &body);
            let resp = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            reply.send_response(resp);
        }
    });
    let client = Client::new(svc, "default");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = tokio::time::timeout(Duration::from_secs(10), run_inject(&client, &inject, &mut out, &mut err))
        .await
        .expect("cuda-fault inject hung");
    drop(client);
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("the fake server hung")
        .expect("the fake server failed");
    let code = match result {
        Ok(()) => 0,
        Err(f) => {
            use std::io::Write;
            writeln!(err, "cuda-fault: {}", f.message).unwrap();
            f.code
        }
    };
    let violations = cluster.lock().unwrap().violations.clone();
    assert!(violations.is_empty(), "calls outside the declared RBAC: {violations:?}");
    Run { code, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
}

fn handle_locked(
    state: &Arc<Mutex<Cluster>>,
    rules: &[Rule],
    method: &str,
    uri: &str,
    ct: &str,
    body: &[u8],
) -> (u16, Value) {
    handle(&mut state.lock().unwrap(), rules, method, uri, ct, body)
}

/// `obj` without what the API server keeps for itself (uid, resourceVersion) and without the
/// record annotation: what a user's manifests hold.
pub fn spec_only(obj: &Value) -> Value {
    let mut o = obj.clone();
    let meta = o["metadata"].as_object_mut().unwrap();
    meta.remove("uid");
    meta.remove("resourceVersion");
    if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        a.remove("cuda-fault/injection");
        if a.is_empty() {
            meta.remove("annotations");
        }
    }
    o
}

#[test]
fn the_fake_patch_follows_the_api_server() {
    let doc = json!({"a": {"b": [1, 2]}});
    // Absent key, parent present: equal to null.
    assert!(apply_patch(&doc, &json!([{"op": "test", "path": "/a/c", "value": null}])).is_ok());
    assert!(apply_patch(&doc, &json!([{"op": "test", "path": "/a/c", "value": 1}])).is_err());
    // Absent parent: fails.
    assert!(apply_patch(&doc, &json!([{"op": "test", "path": "/x/c", "value": null}])).is_err());
    assert!(apply_patch(&doc, &json!([{"op": "test", "path": "/a/b/5", "value": null}])).is_err());
    // All or nothing.
    let ops = json!([{"op": "add", "path": "/a/b/-", "value": 3}, {"op": "test", "path": "/a/b/0", "value": 9}]);
    assert!(apply_patch(&doc, &ops).is_err());
    let ops = json!([{"op": "copy", "from": "/a", "path": "/s"}, {"op": "test", "path": "/s/b/1", "value": 2},
                     {"op": "remove", "path": "/s"}, {"op": "add", "path": "/a/b/-", "value": 3}]);
    assert_eq!(apply_patch(&doc, &ops).unwrap(), json!({"a": {"b": [1, 2, 3]}}));
    assert_eq!(decode("app%3Dvllm%2Cx+y"), "app=vllm,x y");
}
