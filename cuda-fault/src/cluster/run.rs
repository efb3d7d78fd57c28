//! One node Job from start to end: create it (named by the API server from a prefix), poll it until
//! Complete or Failed or the timeout, print its pod's log, delete it (propagationPolicy
//! Background, also after a failure or a timeout). `ttlSecondsAfterFinished` and
//! `activeDeadlineSeconds` make the cluster remove the Job even if this CLI dies.

use std::io::Write;
use std::time::Instant;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::Client;

use super::errors::{api_failure, is_not_found, one_line, Call};
use super::{build_job, Options, Verb, CONTAINER, JOB_TTL_SECS};
use crate::exit::{self, Failure};

fn condition(job: &Job, kind: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
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

/// Runs `verb` on `node` in a Job: progress on `err`, the Job's log on `out`.
pub async fn run_job(
    client: &Client,
    node: &str,
    verb: &Verb,
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let ns = opts.namespace.as_str();
    let job = build_job(node, verb, opts);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let created = match jobs.create(&PostParams::default(), &job).await {
        Ok(j) => j,
        Err(e) if is_not_found(&e) => {
            return Err(Failure::new(
                exit::UNAVAILABLE,
                format!(
                    "namespace {ns} not found; create it with kubectl apply -k manifests/rbac/ or pass --namespace"
                ),
            ))
        }
        Err(e) => return Err(api_failure(&Call { verb: "create", resource: "jobs.batch", namespace: Some(ns) }, e)),
    };
    let Some(name) = created.metadata.name else {
        return Err(Failure::new(exit::UNAVAILABLE, "the API server created the Job without a name".to_string()));
    };
    let _ = writeln!(err, "created Job {ns}/{name} on node {node}: {}", verb.command().join(" "));

    let outcome = match wait(&jobs, &name, opts).await {
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
