//! `cuda-fault node …`: runs this same image's `cuda-fault enable|disable|clean|status` in a Job
//! pinned to a node, with the node's toggle directory mounted. It never execs into worker pods, so
//! it works while they crash-loop.
//!
//! Flow for one node: GET the node (404 → "node X not found"), POST the Job, poll it until
//! Complete/Failed or the timeout, list its pod (`job-name=<job>`), GET the pod's log and print it,
//! DELETE the Job (propagationPolicy Background). `ttlSecondsAfterFinished` and
//! `activeDeadlineSeconds` make the cluster remove the Job even if this CLI dies.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, HostPathVolumeSource, Node, Pod, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::Client;

use crate::exit::{self, Failure};
use crate::toggle::{Line, DEFAULT_FILE};

pub const DEFAULT_IMAGE: &str = "ghcr.io/cuda-fault/cuda-fault:0.1.0";
pub const IMAGE_ENV: &str = "CUDA_FAULT_IMAGE";
pub const DEFAULT_NAMESPACE: &str = "cuda-fault";
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// The node directory that holds the toggle file; pods mount it at [`MOUNT_DIR`].
pub const HOST_DIR: &str = "/var/lib/cuda-fault-test";
pub const MOUNT_DIR: &str = "/host-fault";
/// The binary's path in the (`FROM scratch`) image.
pub const BINARY: &str = "/usr/local/bin/cuda-fault";
pub const CONTAINER: &str = "cuda-fault";
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const NAME_KEY: &str = "app.kubernetes.io/name";
pub const NODE_KEY: &str = "cuda-fault/node";
pub const MANAGED_BY: &str = "cuda-fault";
pub const JOB_TTL_SECS: i32 = 300;
pub const RBAC_HINT: &str = "apply manifests/rbac/ (kubectl apply -k manifests/rbac/)";

/// Every API call cuda-fault makes, as RBAC rules: (API group, resource, verb, namespaced).
/// `manifests/rbac/` grants exactly these (a test checks both directions), and the mock tests
/// check that no call falls outside them.
pub const RBAC: &[(&str, &str, &str, bool)] = &[
    ("", "nodes", "get", false),
    ("", "nodes", "list", false),
    ("batch", "jobs", "create", true),
    ("batch", "jobs", "get", true),
    ("batch", "jobs", "delete", true),
    ("", "pods", "list", true),
    ("", "pods/log", "get", true),
];

/// What the Job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Carries the validated line whose flags the Job passes on.
    Enable(Line),
    Disable,
    Clean,
    /// Read-only: prints the node's toggle file.
    Status,
}

impl Verb {
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Enable(_) => "enable",
            Verb::Disable => "disable",
            Verb::Clean => "clean",
            Verb::Status => "status",
        }
    }

    /// The container's command: this image's binary with an explicit `--file`.
    pub fn command(&self) -> Vec<String> {
        let mut c = vec![BINARY.to_string(), self.name().to_string(), "--file".into(), DEFAULT_FILE.into()];
        if let Verb::Enable(line) = self {
            c.extend(crate::EnableFlags::args_for(line));
        }
        c
    }
}

/// Settings shared by every node of one invocation.
#[derive(Debug, Clone)]
pub struct Options {
    pub namespace: String,
    pub image: String,
    pub timeout: Duration,
    /// How often the Job is polled.
    pub poll: Duration,
    /// Job name suffix; random when `None` (tests fix it).
    pub suffix: Option<String>,
}

impl Options {
    pub fn new(namespace: impl Into<String>, image: impl Into<String>, timeout: Duration) -> Options {
        Options { namespace: namespace.into(), image: image.into(), timeout, poll: Duration::from_secs(1), suffix: None }
    }

    fn deadline_secs(&self) -> i64 {
        (self.timeout.as_millis().div_ceil(1000) as i64).max(1)
    }
}

/// A DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, 1..=63 chars.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A node name: a DNS-1123 subdomain (labels joined by dots), at most 253 chars.
pub fn is_node_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn random_suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut x = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    // xorshift to spread the low-entropy bits; five base-36 characters.
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..5).map(|i| alphabet[((x >> (i * 6)) % 36) as usize] as char).collect()
}

/// `cuda-fault-<verb>-<node>-<suffix>`, made a DNS-1123 label of at most 63 chars.
pub fn job_name(verb: &str, node: &str, suffix: &str) -> String {
    let mut head: String = format!("cuda-fault-{verb}-{node}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    while head.contains("--") {
        head = head.replace("--", "-");
    }
    head.truncate(63 - 1 - suffix.len());
    let head = head.trim_end_matches('-');
    format!("{head}-{suffix}")
}

/// A label value for the node (at most 63 chars, alphanumeric at both ends).
pub fn node_label_value(node: &str) -> String {
    let mut v: String = node.chars().take(63).collect();
    while v.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        v.pop();
    }
    v
}

fn labels(node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_KEY.to_string(), MANAGED_BY.to_string()),
        (NAME_KEY.to_string(), MANAGED_BY.to_string()),
        (NODE_KEY.to_string(), node_label_value(node)),
    ])
}

/// The Job that runs `verb` on `node`.
pub fn build_job(name: &str, node: &str, verb: &Verb, opts: &Options) -> Job {
    let small = BTreeMap::from([
        ("cpu".to_string(), Quantity("10m".into())),
        ("memory".to_string(), Quantity("16Mi".into())),
    ]);
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(opts.namespace.clone()),
            labels: Some(labels(node)),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(JOB_TTL_SECS),
            active_deadline_seconds: Some(opts.deadline_secs()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(node)), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    // Pinned without the scheduler: a cordoned node still runs it.
                    node_name: Some(node.to_string()),
                    restart_policy: Some("Never".into()),
                    // Every taint, NoExecute included (e.g. set by NVSentinel on a faulty GPU node).
                    tolerations: Some(vec![Toleration { operator: Some("Exists".into()), ..Toleration::default() }]),
                    automount_service_account_token: Some(false),
                    volumes: Some(vec![Volume {
                        name: "host-fault".into(),
                        host_path: Some(HostPathVolumeSource {
                            path: HOST_DIR.into(),
                            type_: Some("DirectoryOrCreate".into()),
                        }),
                        ..Volume::default()
                    }]),
                    containers: vec![Container {
                        name: CONTAINER.into(),
                        image: Some(opts.image.clone()),
                        command: Some(verb.command()),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "host-fault".into(),
                            mount_path: MOUNT_DIR.into(),
                            read_only: Some(matches!(verb, Verb::Status)),
                            ..VolumeMount::default()
                        }]),
                        resources: Some(ResourceRequirements {
                            requests: Some(small.clone()),
                            limits: Some(small),
                            ..ResourceRequirements::default()
                        }),
                        // Least privilege that can write the root-owned (0755, created by the
                        // kubelet) hostPath directory: uid 0 and nothing else. Root owns the
                        // directory, so no capability (not even DAC_OVERRIDE) is needed: all are
                        // dropped; no escalation, no privileged mode, read-only root FS, default
                        // seccomp. The namespace must still allow hostPath (PSA "privileged").
                        security_context: Some(SecurityContext {
                            run_as_user: Some(0),
                            run_as_non_root: Some(false),
                            allow_privilege_escalation: Some(false),
                            read_only_root_filesystem: Some(true),
                            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
                            seccomp_profile: Some(SeccompProfile {
                                type_: "RuntimeDefault".into(),
                                localhost_profile: None,
                            }),
                            ..SecurityContext::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// What a failed API call was doing, for the error line.
struct Call<'a> {
    verb: &'static str,
    resource: &'static str,
    namespace: Option<&'a str>,
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn user_in(message: &str) -> Option<&str> {
    let start = message.find("User \"")? + 6;
    let len = message[start..].find('"')?;
    Some(&message[start..start + len])
}

/// Maps a kube error to a one-line failure naming what to fix.
fn api_failure(call: &Call<'_>, err: kube::Error) -> Failure {
    let ns = call.namespace.map(|n| format!(" in namespace {n}")).unwrap_or_default();
    match err {
        kube::Error::Api(status) if status.code == 403 => {
            let who = user_in(&status.message).map(|u| format!("{u} ")).unwrap_or_default();
            Failure::new(
                exit::FORBIDDEN,
                format!(
                    "forbidden: {who}cannot {} {}{ns}; {RBAC_HINT} or grant '{}' on '{}'",
                    call.verb, call.resource, call.verb, call.resource
                ),
            )
        }
        kube::Error::Api(status) if status.code == 401 => Failure::new(
            exit::NO_CONFIG,
            "unauthorized: the API server rejected the credentials; refresh the KUBECONFIG credentials".to_string(),
        ),
        kube::Error::Api(status) => Failure::new(
            exit::UNAVAILABLE,
            format!(
                "cannot {} {}{ns}: {} (HTTP {})",
                call.verb,
                call.resource,
                one_line(&status.message),
                status.code
            ),
        ),
        kube::Error::InferConfig(_) | kube::Error::InferKubeconfig(_) => no_config(&err.to_string()),
        kube::Error::Auth(e) => Failure::new(
            exit::NO_CONFIG,
            format!("cannot authenticate to the API server: {}; check KUBECONFIG's credentials", one_line(&e.to_string())),
        ),
        other => Failure::new(
            exit::UNAVAILABLE,
            format!(
                "cannot reach the Kubernetes API server ({} {}{ns}): {}; check the server in KUBECONFIG and the network",
                call.verb,
                call.resource,
                one_line(&full_chain(&other))
            ),
        ),
    }
}

fn full_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = inner.source();
    }
    s
}

/// The failure for "no kubeconfig, not in a cluster".
pub fn no_config(detail: &str) -> Failure {
    Failure::new(
        exit::NO_CONFIG,
        format!(
            "no usable Kubernetes configuration: set KUBECONFIG (or create ~/.kube/config) or run in-cluster with a service account ({})",
            one_line(detail)
        ),
    )
}

/// Connects with the current kubeconfig context, or the in-cluster service account.
pub async fn connect() -> Result<Client, Failure> {
    let config = kube::Config::infer().await.map_err(|e| no_config(&full_chain(&e)))?;
    Client::try_from(config).map_err(|e| no_config(&full_chain(&e)))
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn condition(job: &Job, kind: &str) -> Option<(String, String)> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind && c.status == "True").map(|c| {
        (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
    })
}

enum Outcome {
    Complete,
    Failed { reason: String, message: String },
    TimedOut,
}

fn pod_problem(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref()?;
    for cs in status.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_else(|| "waiting".into());
            let msg = w.message.as_deref().map(|m| format!(": {}", one_line(m))).unwrap_or_default();
            return Some(format!("pod {name}: {reason}{msg}"));
        }
    }
    for c in status.conditions.iter().flatten() {
        if c.status == "False" {
            if let Some(m) = c.message.as_deref().filter(|m| !m.is_empty()) {
                return Some(format!("pod {name}: {} {}", c.type_, one_line(m)));
            }
        }
    }
    status.phase.as_ref().map(|p| format!("pod {name}: {p}"))
}

/// Runs `verb` on one node: the whole flow, with progress on `err` and the Job's log on `out`.
pub async fn run_on_node(
    client: &Client,
    node: &str,
    verb: &Verb,
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    if !is_node_name(node) {
        return Err(Failure::usage(format!("invalid node name '{node}': expected a DNS-1123 name")));
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let n = match nodes.get(node).await {
        Ok(n) => n,
        Err(e) if is_not_found(&e) => {
            return Err(Failure::new(
                exit::UNAVAILABLE,
                format!("node {node} not found; check the name with kubectl get nodes"),
            ))
        }
        Err(e) => return Err(api_failure(&Call { verb: "get", resource: "nodes", namespace: None }, e)),
    };
    node_notes(&n, node, err);
    run_job(client, node, verb, opts, out, err).await
}

fn node_notes(n: &Node, node: &str, err: &mut dyn Write) {
    if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let _ = writeln!(err, "note: node {node} is cordoned; the Job is pinned with nodeName and runs there anyway");
    }
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status == "True");
    if ready == Some(false) {
        let _ = writeln!(err, "note: node {node} is NotReady; the Job may not start before the timeout");
    }
}

async fn run_job(
    client: &Client,
    node: &str,
    verb: &Verb,
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let ns = opts.namespace.as_str();
    let suffix = opts.suffix.clone().unwrap_or_else(random_suffix);
    let name = job_name(verb.name(), node, &suffix);
    let job = build_job(&name, node, verb, opts);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {
            return Err(Failure::new(
                exit::UNAVAILABLE,
                format!("namespace {ns} not found; create it with kubectl apply -k manifests/rbac/ or pass --namespace"),
            ))
        }
        Err(e) => return Err(api_failure(&Call { verb: "create", resource: "jobs.batch", namespace: Some(ns) }, e)),
    }
    let _ = writeln!(err, "created Job {ns}/{name} on node {node}: {}", verb.command().join(" "));

    let outcome = wait(&jobs, &name, opts).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(f) => {
            delete(&jobs, &name, ns, err).await;
            return Err(f);
        }
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let result = match outcome {
        Outcome::Complete => {
            print_log(&pods, &name, ns, out, err).await;
            Ok(())
        }
        Outcome::Failed { reason, message } if reason == "DeadlineExceeded" => {
            let why = pod_hint(&pods, &name).await;
            Err(timeout_failure(&name, node, opts, why.as_deref(), Some(&message)))
        }
        Outcome::Failed { reason, message } => {
            let log = print_log(&pods, &name, ns, out, err).await;
            let last = log
                .as_deref()
                .and_then(|l| l.lines().rev().find(|x| !x.trim().is_empty()))
                .map(|l| l.trim().to_string());
            let why = match last {
                Some(l) => l,
                None => {
                    let hint = pod_hint(&pods, &name).await;
                    let base = one_line(&format!("{reason} {message}"));
                    match hint {
                        Some(h) => format!("{base} ({h})"),
                        None => base,
                    }
                }
            };
            Err(Failure::new(exit::JOB_FAILED, format!("Job {ns}/{name} failed on node {node}: {why}")))
        }
        Outcome::TimedOut => {
            let why = pod_hint(&pods, &name).await;
            Err(timeout_failure(&name, node, opts, why.as_deref(), None))
        }
    };
    delete(&jobs, &name, ns, err).await;
    result
}

fn timeout_failure(name: &str, node: &str, opts: &Options, why: Option<&str>, extra: Option<&str>) -> Failure {
    let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
    let extra = extra.filter(|e| !e.is_empty()).map(|e| format!(" [{}]", one_line(e))).unwrap_or_default();
    Failure::new(
        exit::TIMEOUT,
        format!(
            "timed out after {}s waiting for Job {}/{name} on node {node}{why}{extra}; check the node, --image, or raise --timeout",
            opts.deadline_secs(),
            opts.namespace
        ),
    )
}

async fn wait(jobs: &Api<Job>, name: &str, opts: &Options) -> Result<Outcome, Failure> {
    let start = Instant::now();
    let ns = opts.namespace.as_str();
    loop {
        let job = match jobs.get(name).await {
            Ok(j) => j,
            Err(e) if is_not_found(&e) => {
                return Err(Failure::new(
                    exit::JOB_FAILED,
                    format!("Job {ns}/{name} disappeared while waiting for it (deleted by someone else?)"),
                ))
            }
            Err(e) => return Err(api_failure(&Call { verb: "get", resource: "jobs.batch", namespace: Some(ns) }, e)),
        };
        if condition(&job, "Complete").is_some() {
            return Ok(Outcome::Complete);
        }
        if let Some((reason, message)) = condition(&job, "Failed") {
            return Ok(Outcome::Failed { reason, message });
        }
        let elapsed = start.elapsed();
        if elapsed >= opts.timeout {
            return Ok(Outcome::TimedOut);
        }
        tokio::time::sleep(opts.poll.min(opts.timeout - elapsed)).await;
    }
}

async fn job_pod(pods: &Api<Pod>, job: &str) -> Result<Option<Pod>, kube::Error> {
    let list = pods.list(&ListParams::default().labels(&format!("job-name={job}"))).await?;
    Ok(list.items.into_iter().max_by_key(|p| p.metadata.creation_timestamp.clone()))
}

async fn pod_hint(pods: &Api<Pod>, job: &str) -> Option<String> {
    job_pod(pods, job).await.ok().flatten().as_ref().and_then(pod_problem)
}

/// Prints the Job pod's log on `out`; problems reading it are warnings on `err`.
async fn print_log(pods: &Api<Pod>, job: &str, ns: &str, out: &mut dyn Write, err: &mut dyn Write) -> Option<String> {
    let pod = match job_pod(pods, job).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            let _ = writeln!(err, "warning: Job {ns}/{job} has no pod to read a log from");
            return None;
        }
        Err(e) => {
            let f = api_failure(&Call { verb: "list", resource: "pods", namespace: Some(ns) }, e);
            let _ = writeln!(err, "warning: cannot read the Job's log: {f}");
            return None;
        }
    };
    let pod_name = pod.metadata.name.unwrap_or_default();
    let lp = LogParams { container: Some(CONTAINER.into()), ..LogParams::default() };
    match pods.logs(&pod_name, &lp).await {
        Ok(log) => {
            let _ = out.write_all(log.as_bytes());
            if !log.is_empty() && !log.ends_with('\n') {
                let _ = writeln!(out);
            }
            Some(log)
        }
        Err(e) => {
            let f = api_failure(&Call { verb: "get", resource: "pods/log", namespace: Some(ns) }, e);
            let _ = writeln!(err, "warning: cannot read the Job's log: {f}");
            None
        }
    }
}

async fn delete(jobs: &Api<Job>, name: &str, ns: &str, err: &mut dyn Write) {
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            let _ = writeln!(err, "deleted Job {ns}/{name}");
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            let f = api_failure(&Call { verb: "delete", resource: "jobs.batch", namespace: Some(ns) }, e);
            let _ = writeln!(err, "warning: {f}; the Job removes itself {JOB_TTL_SECS}s after finishing");
        }
    }
}

/// `--all [--selector LABELS]`: runs `verb` on every matching node, one after another. A
/// forbidden, unreachable or misconfigured API stops at once; a node whose Job fails or times out
/// is reported and the others still run. The first failure's code is returned.
pub async fn run_on_selector(
    client: &Client,
    selector: Option<&str>,
    verb: &Verb,
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut lp = ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let list = nodes.list(&lp).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 400 => Failure::usage(format!(
            "invalid --selector '{}': {}",
            selector.unwrap_or(""),
            one_line(&s.message)
        )),
        e => api_failure(&Call { verb: "list", resource: "nodes", namespace: None }, e),
    })?;
    let names: Vec<String> = list.items.iter().filter_map(|n| n.metadata.name.clone()).collect();
    if names.is_empty() {
        let what = selector.map(|s| format!(" match selector '{s}'")).unwrap_or_default();
        return Err(Failure::new(exit::UNAVAILABLE, format!("no nodes{what}")));
    }
    let _ = writeln!(err, "{} node(s): {}", names.len(), names.join(", "));
    let mut failures: Vec<(String, Failure)> = Vec::new();
    for (node, n) in names.iter().zip(&list.items) {
        let _ = writeln!(out, "== node {node} ==");
        node_notes(n, node, err);
        match run_job(client, node, verb, opts, out, err).await {
            Ok(()) => {}
            Err(f) if matches!(f.code, exit::FORBIDDEN | exit::NO_CONFIG | exit::UNAVAILABLE | exit::USAGE) => {
                return Err(f)
            }
            Err(f) => {
                let _ = writeln!(err, "cuda-fault: {f}");
                failures.push((node.clone(), f));
            }
        }
    }
    if let Some((_, first)) = failures.first() {
        let which: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Failure::new(
            first.code,
            format!("{} of {} nodes failed: {}", failures.len(), names.len(), which.join(", ")),
        ));
    }
    let _ = writeln!(err, "{} on {} node(s): done", verb.name(), names.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_dns_labels() {
        assert_eq!(job_name("enable", "gpu-node-1", "ab12c"), "cuda-fault-enable-gpu-node-1-ab12c");
        assert_eq!(job_name("clean", "ip-10-0-0-1.ec2.internal", "x1"), "cuda-fault-clean-ip-10-0-0-1-ec2-internal-x1");
        let long = job_name("disable", &"n".repeat(200), "zzzzz");
        assert_eq!(long.len(), 63);
        assert!(is_dns_label(&long) && long.ends_with("-zzzzz"), "{long}");
        let dashy = job_name("enable", &format!("{}-{}", "a".repeat(44), "b".repeat(20)), "q1w2e");
        assert!(is_dns_label(&dashy), "{dashy}");
        for _ in 0..20 {
            let s = random_suffix();
            assert!(s.len() == 5 && is_dns_label(&s));
        }
    }

    #[test]
    fn node_names_and_labels() {
        assert!(is_node_name("gpu-1.example.com"));
        assert!(!is_node_name("GPU_1"));
        assert!(!is_node_name(""));
        assert_eq!(node_label_value(&format!("{}-x", "a".repeat(62))), "a".repeat(62));
    }

    #[test]
    fn enable_command_carries_every_flag() {
        let line = toggle_grammar::parse(
            b"1 48 devices=1,GPU-12345678-1111-2222-3333-444455556666 after_calls=7 after_ms=5000 mode=hang sticky=1 \
              percent=2.5 count=3 functions=@sync,cudaMalloc seed=9",
        )
        .unwrap();
        assert_eq!(
            Verb::Enable(line).command().join(" "),
            "/usr/local/bin/cuda-fault enable --file /host-fault/cuda_fault_enabled --xid 48 \
             --devices 1,GPU-12345678-1111-2222-3333-444455556666 --after-calls 7 --after 5000ms --mode hang \
             --percent 2.5 --count 3 --functions @sync,cudaMalloc --seed 9 --sticky=true"
        );
        assert_eq!(Verb::Clean.command().join(" "), "/usr/local/bin/cuda-fault clean --file /host-fault/cuda_fault_enabled");
    }

    #[test]
    fn forbidden_names_user_verb_and_resource() {
        let status = kube::core::Status {
            code: 403,
            message: "jobs.batch is forbidden: User \"alice\" cannot create resource \"jobs\" in API group \"batch\"".into(),
            ..kube::core::Status::default()
        };
        let f = api_failure(
            &Call { verb: "create", resource: "jobs.batch", namespace: Some("cuda-fault") },
            kube::Error::Api(Box::new(status)),
        );
        assert_eq!(f.code, exit::FORBIDDEN);
        assert_eq!(
            f.message,
            "forbidden: alice cannot create jobs.batch in namespace cuda-fault; apply manifests/rbac/ \
             (kubectl apply -k manifests/rbac/) or grant 'create' on 'jobs.batch'"
        );
    }
}
