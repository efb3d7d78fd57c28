//! kube's mock service (tower-test) as a fake API server for the helper's Kubernetes commands:
//! each request is asserted, checked against the RBAC rules the code declares, and answered.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use cuda_fault::cluster::rbac::{allows, Rule};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Reply = tower_test::mock::SendResponse<Response<Body>>;

/// The random part the fake API server appends to a Job's generateName.
pub const SUFFIX: &str = "t3st1";
pub const NS: &str = "cuda-fault";
pub const JOBS: &str = "/apis/batch/v1/namespaces/cuda-fault/jobs";

/// The fake API server.
pub struct Server {
    handle: Handle,
    rules: &'static [Rule],
    tool_namespace: String,
}

pub struct Call {
    pub method: String,
    pub uri: String,
    pub body: Value,
    pub content_type: String,
    reply: Reply,
}

impl Server {
    pub async fn next(&mut self) -> Call {
        let (req, reply) = self.handle.next_request().await.expect("the client stopped before the expected call");
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let content_type =
            req.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        let (group, resource, verb, namespace) = request_rule(&method, &uri);
        assert!(
            allows(self.rules, group, resource, verb, namespace.as_deref(), &self.tool_namespace),
            "{method} {uri} needs '{verb}' on {group}/{resource} in {namespace:?}, which the declared RBAC lacks"
        );
        Call { method, uri, body, content_type, reply }
    }

    /// Expects `method uri` and returns the call to answer.
    pub async fn expect(&mut self, method: &str, uri: &str) -> Call {
        let call = self.next().await;
        assert_eq!((call.method.as_str(), call.uri.as_str()), (method, uri), "unexpected call");
        call
    }

    /// Expects `method` on `path` (any query) and returns the call to answer.
    pub async fn expect_path(&mut self, method: &str, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (call.method.as_str(), call.uri.split('?').next().unwrap()),
            (method, path),
            "unexpected call {}",
            call.uri
        );
        call
    }

    /// The next request fails as if the server were not there.
    pub async fn refuse_connection(&mut self) {
        let (_, reply) = self.handle.next_request().await.expect("a request");
        reply.send_error(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"));
    }

    /// The start of every node flow: node gpu-1 exists (Ready, schedulable), and the Job is
    /// created as sent.
    pub async fn node_found_and_job_created(&mut self) {
        self.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", false, true));
        self.expect("POST", &format!("{JOBS}?")).await.created();
    }
}

/// (API group, resource, verb, namespace) of a request.
fn request_rule(method: &str, uri: &str) -> (&'static str, &'static str, &'static str, Option<String>) {
    let path = uri.split('?').next().unwrap();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest): (&'static str, &[&str]) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "batch", "v1", rest @ ..] => ("batch", rest),
        ["apis", "apps", "v1", rest @ ..] => ("apps", rest),
        ["apis", "nvidia.com", _, rest @ ..] => ("nvidia.com", rest),
        _ => panic!("unexpected API path {path}"),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (resource, named): (&'static str, bool) = match rest {
        ["nodes"] => ("nodes", false),
        ["nodes", _] => ("nodes", true),
        ["jobs"] => ("jobs", false),
        ["jobs", _] => ("jobs", true),
        ["pods"] => ("pods", false),
        ["pods", _] => ("pods", true),
        ["pods", _, "log"] => ("pods/log", true),
        ["deployments", _] => ("deployments", true),
        ["statefulsets", _] => ("statefulsets", true),
        ["daemonsets", _] => ("daemonsets", true),
        ["configmaps"] => ("configmaps", false),
        ["configmaps", _] => ("configmaps", true),
        ["events"] => ("events", false),
        ["dynamographdeployments", _] => ("dynamographdeployments", true),
        other => panic!("unexpected resource path {other:?}"),
    };
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("DELETE", true) => "delete",
        ("PATCH", true) => "patch",
        other => panic!("unexpected {other:?} on {path}"),
    };
    (group, resource, verb, namespace)
}

impl Call {
    pub fn json(self, code: u16, v: Value) {
        let resp = Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&v).unwrap()))
            .unwrap();
        self.reply.send_response(resp);
    }

    pub fn text(self, text: &str) {
        let resp = Response::builder().status(200).body(Body::from(text.as_bytes().to_vec())).unwrap();
        self.reply.send_response(resp);
    }

    pub fn status(self, code: u16, reason: &str, message: &str) {
        self.json(
            code,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": message, "reason": reason, "code": code}),
        );
    }

    /// Answers a Job POST the way the API server does: the name is generateName plus five
    /// random characters ([`SUFFIX`]). Returns the name.
    pub fn created(self) -> String {
        let mut body = self.body.clone();
        let prefix = body["metadata"]["generateName"].as_str().expect("the Job has a generateName").to_string();
        assert!(body["metadata"].get("name").is_none(), "the Job is named by the API server, not by cuda-fault");
        let name = format!("{prefix}{SUFFIX}");
        body["metadata"]["name"] = json!(name);
        self.json(201, body);
        name
    }
}

pub fn node_json(name: &str, unschedulable: bool, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "spec": {"unschedulable": unschedulable},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

pub fn job_with(name: &str, status: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS}, "status": status})
}

pub fn condition(kind: &str, reason: &str, message: &str) -> Value {
    json!({"conditions": [{"type": kind, "status": "True", "reason": reason, "message": message}]})
}

pub fn pod_list(pods: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods})
}

pub fn pod(name: &str, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS,
           "creationTimestamp": "2026-01-01T00:00:00Z"}, "status": status})
}

pub fn deleted() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// The name the fake API server gives a Job of `verb` on `node`.
pub fn job_name(verb: &str, node: &str) -> String {
    format!("cuda-fault-{verb}-{node}-{SUFFIX}")
}

/// Runs `client_side` against the fake server `serve`, which grants `rules` (the Role bound in
/// `tool_namespace`); both must finish (the server must have seen every call it expects; an
/// extra client call fails because the server is gone).
pub async fn with_server<T, C, CF, F, Fut>(rules: &'static [Rule], tool_namespace: &str, client_side: C, serve: F) -> T
where
    C: FnOnce(Client) -> CF,
    CF: Future<Output = T>,
    F: FnOnce(Server) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let server = tokio::spawn(serve(Server { handle, rules, tool_namespace: tool_namespace.to_string() }));
    let result = tokio::time::timeout(Duration::from_secs(10), client_side(client)).await.expect("cuda-fault hung");
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("the fake server is still waiting for a call")
        .expect("the fake server's assertions failed");
    result
}
