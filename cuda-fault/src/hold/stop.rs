//! What a stopped hold pod does, within a time bound: ask the API ([`crate::cluster::hold`]) why it
//! was stopped, act on the answer, and record what it did as an Event on its pod, which
//! `cuda-fault fault delete --wait` reads once the pod is gone.
//!
//! The whole decision runs on a thread of its own and the pod waits for it at most `budget`
//! (inside the grace period): loading the configuration can block in places no async timeout
//! reaches (a `KUBECONFIG` that is a FIFO, an exec credential plugin that never returns). Without
//! an answer in time the fault stays, and the line says how to clean the node by hand.

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::cluster::errors::{api_failure, one_line, Call};
pub use crate::cluster::hold::{decide, Decision, PodRef};
use crate::exit::Failure;

/// The Event reasons a hold pod records; `fault delete --wait` reads them.
pub const REASON_REMOVED: &str = "CudaFaultToggleRemoved";
pub const REASON_KEPT: &str = "CudaFaultToggleKept";
/// The Events' source component.
pub const COMPONENT: &str = "cuda-fault-hold";

/// The pod this process runs in, from the downward API's environment.
pub fn pod_from_env() -> Option<PodRef> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(PodRef { namespace: var("POD_NAMESPACE")?, name: var("POD_NAME")?, node: var("NODE_NAME") })
}

/// In-cluster configuration, or KUBECONFIG when it is set.
async fn client() -> Result<kube::Client, String> {
    let config = if std::env::var_os("KUBECONFIG").is_some() {
        kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| crate::cluster::errors::full_chain(&e))?
    } else {
        kube::Config::incluster().map_err(|e| crate::cluster::errors::full_chain(&e))?
    };
    kube::Client::try_from(config).map_err(|e| crate::cluster::errors::full_chain(&e))
}

/// What the pod did, for its Event.
pub struct Report {
    pub removed: bool,
    pub message: String,
}

/// Records `report` as an Event on `pod`.
pub async fn record(client: &kube::Client, pod: &PodRef, report: &Report) -> Result<(), Failure> {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let (reason, kind) = if report.removed { (REASON_REMOVED, "Normal") } else { (REASON_KEPT, "Warning") };
    let event: Event = serde_json::from_value(json!({
        "metadata": {"generateName": format!("{}.", pod.name), "namespace": pod.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name},
        "reason": reason,
        "message": report.message,
        "type": kind,
        "source": {"component": COMPONENT, "host": pod.node},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }))
    .expect("a valid Event");
    let events: Api<Event> = Api::namespaced(client.clone(), &pod.namespace);
    events
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
        .map_err(|e| api_failure(&Call { verb: "create", resource: "events", namespace: Some(&pod.namespace) }, e))
}

/// Asks the API about `pod` within `budget`, acts on the answer with `act` (which returns the line
/// to print and whether the file was removed) and records that as an Event in what is left of the
/// budget. Returns the line, and a warning when the Event could not be recorded.
pub fn stop(
    pod: Option<PodRef>,
    budget: Duration,
    act: impl FnOnce(&Decision) -> Result<(String, bool), Failure>,
) -> Result<(String, Option<String>), Failure> {
    let deadline = Instant::now() + budget;
    let Some(pod) = pod else {
        let d = Decision::Unknown("POD_NAME and POD_NAMESPACE are not set; the fault DaemonSet sets them".into());
        return act(&d).map(|(line, _)| (line, None));
    };
    let (decided, decision) = mpsc::channel::<Decision>();
    let (report_tx, report_rx) = mpsc::channel::<Report>();
    let (recorded_tx, recorded) = mpsc::channel::<Result<(), Failure>>();
    let asked = pod.clone();
    // Detached: when it does not answer in time, the process exits with it still blocked.
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            let _ = decided.send(Decision::Unknown("cannot start the async runtime".into()));
            return;
        };
        rt.block_on(async {
            let client = match client().await {
                Ok(c) => c,
                Err(e) => {
                    let _ = decided.send(Decision::Unknown(one_line(&e)));
                    return;
                }
            };
            let _ = decided.send(decide(&client, &asked).await);
            if let Ok(report) = report_rx.recv() {
                let _ = recorded_tx.send(record(&client, &asked, &report).await);
            }
        });
    });
    let left = || deadline.saturating_duration_since(Instant::now());
    let decision = decision.recv_timeout(left()).unwrap_or_else(|_| {
        Decision::Unknown(format!(
            "no answer within {} (loading the Kubernetes configuration included)",
            humantime::format_duration(budget)
        ))
    });
    let (line, removed) = act(&decision)?;
    if matches!(decision, Decision::Unknown(_)) {
        return Ok((line, None));
    }
    let _ = report_tx.send(Report { removed, message: line.clone() });
    let warning = match recorded.recv_timeout(left()) {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(format!("cannot record the Event on pod {}/{}: {f}", pod.namespace, pod.name)),
        Err(_) => Some(format!("no time left to record the Event on pod {}/{}", pod.namespace, pod.name)),
    };
    Ok((line, warning))
}
