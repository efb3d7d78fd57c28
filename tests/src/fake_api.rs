//! A tiny fake Kubernetes API server for the fault layer: plain HTTP on 127.0.0.1, one stored
//! object per path (404 with a Status object otherwise), and a kubeconfig pointing at it. GET
//! answers what is stored; PATCH (server-side apply) stores the body, with a uid and a generation
//! that grows when the spec changes; DELETE removes; POST to a collection (Events) keeps the
//! object, and a GET of that collection lists what was posted. The tests and the demo play the
//! controllers: they change the answers while it runs ("delete" the DaemonSet = make its path
//! answer 404, a pod becomes Ready = its list changes) and read which requests came.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

type Routes = Arc<Mutex<HashMap<String, (u16, String)>>>;
type Posted = Arc<Mutex<HashMap<String, Vec<serde_json::Value>>>>;

/// A self-signed certificate (its key was thrown away) as the kubeconfig's
/// `certificate-authority-data`. The fake server speaks plain HTTP and never uses it, but kube's
/// rustls client builds its TLS configuration up front, and without a CA in the kubeconfig it
/// wants the system's CA store, which a FROM scratch image does not have (in a cluster, the
/// service account's ca.crt plays this part).
const UNUSED_CA: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJzVENDQVZlZ0F3SUJBZ0lVY1pFSWowMWdDemtSWldCTTE2ajBmMnFGR05Fd0NnWUlLb1pJemowRUF3SXcKTFRFck1Da0dBMVVFQXd3aVkzVmtZUzFtWVhWc2RDQm1ZV3RsSUVGUVNTQkRRU0FvZEdWemRDQnZibXg1S1RBZwpGdzB5TmpFeU1ERXhNVEkzTlRoYUdBOHlNVEkyTVRFd056RXhNamMxT0Zvd0xURXJNQ2tHQTFVRUF3d2lZM1ZrCllTMW1ZWFZzZENCbVlXdGxJRUZRU1NCRFFTQW9kR1Z6ZENCdmJteDVLVEJaTUJNR0J5cUdTTTQ5QWdFR0NDcUcKU000OUF3RUhBMElBQkViMUhqK3kwM2dqSHRDVnoxYXhVWXMzZ3JjTWc0TUhxU2hzTUZ4ajZSZnBCT1FoN3VHZgpDUVdxNFNvUEEyTXplOHNHcFdSdDVaVGlZcE9pRDgraW1WR2pVekJSTUIwR0ExVWREZ1FXQkJTUjFicWV3RFJXCmhwRVQ3ZndhakxlRUI5dkRtakFmQmdOVkhTTUVHREFXZ0JTUjFicWV3RFJXaHBFVDdmd2FqTGVFQjl2RG1qQVAKQmdOVkhSTUJBZjhFQlRBREFRSC9NQW9HQ0NxR1NNNDlCQU1DQTBnQU1FVUNJUUNpYkFUMmUzdmp4MGpsaU0zQgo4a2YvWHQrV0NxTzEyL1JrOVJLa1RERE9yZ0lnSE5NSkpYLzZVczN3ejJ1YVBKU0VCR3Q5dFlvNXVxT0ZPZGtjCnpXSHBBVms9Ci0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K";

pub struct FakeApi {
    addr: SocketAddr,
    routes: Routes,
    posted: Posted,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn not_found(path: &str) -> String {
    format!(
        r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"{path} not found","reason":"NotFound","code":404}}"#
    )
}

fn respond(stream: &TcpStream, code: u16, body: &str) {
    let reason = match code {
        200 => "OK",
        201 => "Created",
        _ => "Error",
    };
    let _ = write!(
        &*stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// What a PATCH (server-side apply) stores: the body, keeping the stored object's uid, with a
/// generation that grows when the spec changes.
fn applied(old: Option<&str>, body: &[u8]) -> Option<String> {
    use serde_json::{json, Value};
    let mut new: Value = serde_json::from_slice(body).ok()?;
    let old: Option<Value> = old.and_then(|o| serde_json::from_str(o).ok());
    let (uid, generation) = match &old {
        Some(o) => {
            let g = o["metadata"]["generation"].as_i64().unwrap_or(1);
            (o["metadata"]["uid"].clone(), if o["spec"] == new["spec"] { g } else { g + 1 })
        }
        None => (json!(format!("uid-{}", body.len())), 1),
    };
    new["metadata"]["uid"] = uid;
    new["metadata"]["generation"] = json!(generation);
    new["metadata"]["managedFields"] = json!([{"manager": "cuda-fault", "operation": "Apply"}]);
    if let Some(status) = old.as_ref().map(|o| o["status"].clone()).filter(|s| !s.is_null()) {
        new["status"] = status;
    }
    Some(new.to_string())
}

fn serve(stream: TcpStream, routes: &Routes, posted: &Posted, requests: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut length = 0usize;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        line.clear();
    }
    let mut body = vec![0; length];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    let method = first.split_whitespace().next().unwrap_or("").to_string();
    let path = first.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_string();
    requests.lock().unwrap().push(format!("{method} {path}"));
    let mut routes = routes.lock().unwrap();
    match method.as_str() {
        "PATCH" => match applied(routes.get(&path).map(|(_, b)| b.as_str()), &body) {
            Some(obj) => {
                routes.insert(path, (200, obj.clone()));
                respond(&stream, 200, &obj);
            }
            None => respond(
                &stream,
                400,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"bad body","code":400}"#,
            ),
        },
        "DELETE" => match routes.remove(&path) {
            Some(_) => respond(&stream, 200, r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}"#),
            None => respond(&stream, 404, &not_found(&path)),
        },
        "POST" => {
            let mut obj: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let mut posted = posted.lock().unwrap();
            let list = posted.entry(path).or_default();
            if obj["metadata"]["name"].is_null() {
                let prefix = obj["metadata"]["generateName"].as_str().unwrap_or("object-").to_string();
                obj["metadata"]["name"] = serde_json::json!(format!("{prefix}{}", list.len()));
            }
            list.push(obj.clone());
            respond(&stream, 201, &obj.to_string());
        }
        _ => {
            // A collection without an answer of its own lists what was posted to it, or else the
            // objects stored under it.
            let prefix = format!("{path}/");
            let children: Vec<serde_json::Value> = routes
                .iter()
                .filter(|(p, (code, _))| *code == 200 && p.strip_prefix(&prefix).is_some_and(|n| !n.contains('/')))
                .filter_map(|(_, (_, b))| serde_json::from_str(b).ok())
                .collect();
            let listed = posted.lock().unwrap().get(&path).cloned().or((!children.is_empty()).then_some(children));
            match (routes.get(&path), listed) {
                (Some((code, body)), _) => respond(&stream, *code, body),
                (None, Some(items)) => respond(
                    &stream,
                    200,
                    &serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
                        .to_string(),
                ),
                (None, None) if path.ends_with("/configmaps") || path.ends_with("/pods") => {
                    respond(&stream, 200, r#"{"apiVersion":"v1","kind":"List","metadata":{},"items":[]}"#)
                }
                (None, None) => respond(&stream, 404, &not_found(&path)),
            }
        }
    }
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Routes = Arc::default();
        let posted: Posted = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, p, q, s) = (routes.clone(), posted.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        serve(stream, &r, &p, &q);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeApi { addr, routes, posted, requests, stop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers GET `path` with `body` (status 200).
    pub fn set(&self, path: &str, body: &str) {
        self.routes.lock().unwrap().insert(path.to_string(), (200, body.to_string()));
    }

    /// What GET `path` answers now (status 200), if anything.
    pub fn get(&self, path: &str) -> Option<String> {
        self.routes.lock().unwrap().get(path).filter(|(code, _)| *code == 200).map(|(_, b)| b.clone())
    }

    /// What was POSTed to the collection `path`, in order.
    pub fn posted(&self, path: &str) -> Vec<serde_json::Value> {
        self.posted.lock().unwrap().get(path).cloned().unwrap_or_default()
    }

    /// GET `path` answers 404 from now on.
    pub fn remove(&self, path: &str) {
        self.routes.lock().unwrap().remove(path);
    }

    /// "METHOD /path" of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Writes a kubeconfig for this server into `dir` and returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\", certificate-authority-data: {UNUSED_CA}}}\nusers:\n- name: fake\n  user: {{token: fake}}\n\
             contexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: cuda-fault}}\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The objects a hold pod of the fault DaemonSet asks about, as the API would return them.
pub mod objects {
    /// The hold pod `name` on `node`, owned by the DaemonSet with `uid`.
    pub fn hold_pod(name: &str, node: &str, uid: &str) -> String {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"cuda-fault","ownerReferences":[{{"apiVersion":"apps/v1","kind":"DaemonSet","name":"cuda-fault-hold","uid":"{uid}","controller":true}}]}},"spec":{{"nodeName":"{node}","containers":[{{"name":"hold"}}]}}}}"#
        )
    }

    /// The fault DaemonSet with `uid`, selecting nodes labelled cuda-fault/target=true.
    pub fn daemonset(uid: &str) -> String {
        format!(
            r#"{{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{{"name":"cuda-fault-hold","namespace":"cuda-fault","uid":"{uid}"}},"spec":{{"selector":{{"matchLabels":{{"app.kubernetes.io/name":"cuda-fault-hold"}}}},"template":{{"metadata":{{"labels":{{"app.kubernetes.io/name":"cuda-fault-hold"}}}},"spec":{{"nodeSelector":{{"cuda-fault/target":"true"}},"containers":[{{"name":"hold"}}]}}}}}}}}"#
        )
    }

    /// A node labelled (or not) cuda-fault/target=true.
    pub fn node(name: &str, targeted: bool) -> String {
        let labels = if targeted { r#"{"cuda-fault/target":"true"}"# } else { "{}" };
        format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{labels}}}}}"#)
    }

    pub const DAEMONSET_PATH: &str = "/apis/apps/v1/namespaces/cuda-fault/daemonsets/cuda-fault-hold";

    pub fn pod_path(name: &str) -> String {
        format!("/api/v1/namespaces/cuda-fault/pods/{name}")
    }

    pub fn node_path(name: &str) -> String {
        format!("/api/v1/nodes/{name}")
    }
}
