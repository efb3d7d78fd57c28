//! The Job that runs this image's `cuda-fault <verb>` on one node.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, HostPathVolumeSource, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Options, CONTAINER, JOB_TTL_SECS, MANAGED_BY, MANAGED_BY_KEY, MOUNT_DIR, NAME_KEY, NODE_KEY};
use crate::layout::{BINARY, HOST_DIR, TOGGLE_FILE};
use crate::toggle::Line;

/// What the Job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one value per command: boxing the line would buy nothing
pub enum Verb {
    /// Carries the validated line whose flags the Job passes on.
    Enable(Line),
    Disable,
    Clean,
    /// Read-only: prints the node's toggle file (as JSON for `verify`).
    Status {
        json: bool,
    },
}

impl Verb {
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Enable(_) => "enable",
            Verb::Disable => "disable",
            Verb::Clean => "clean",
            Verb::Status { .. } => "status",
        }
    }

    /// The container's command: this image's binary with an explicit `--file`.
    pub fn command(&self) -> Vec<String> {
        let mut c = vec![BINARY.to_string(), self.name().to_string(), "--file".into(), TOGGLE_FILE.into()];
        match self {
            Verb::Enable(line) => c.extend(crate::EnableFlags::args_for(line)),
            Verb::Status { json: true } => c.push("--json".into()),
            _ => {}
        }
        c
    }
}

/// The Job's name prefix; the API server appends five random characters (and shortens a long
/// prefix to fit 63).
pub fn name_prefix(verb: &str, node: &str) -> String {
    let safe: String = node.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("cuda-fault-{verb}-{safe}-")
}

fn labels(node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_KEY.to_string(), MANAGED_BY.to_string()),
        (NAME_KEY.to_string(), MANAGED_BY.to_string()),
        (NODE_KEY.to_string(), super::node_label_value(node)),
    ])
}

/// The Job that runs `verb` on `node`.
pub fn build_job(node: &str, verb: &Verb, opts: &Options) -> Job {
    let small =
        BTreeMap::from([("cpu".to_string(), Quantity("10m".into())), ("memory".to_string(), Quantity("16Mi".into()))]);
    Job {
        metadata: ObjectMeta {
            generate_name: Some(name_prefix(verb.name(), node)),
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
                            read_only: Some(matches!(verb, Verb::Status { .. })),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_prefixes_are_dns_safe() {
        assert_eq!(name_prefix("enable", "gpu-node-1"), "cuda-fault-enable-gpu-node-1-");
        assert_eq!(name_prefix("clean", "ip-10-0-0-1.ec2.internal"), "cuda-fault-clean-ip-10-0-0-1-ec2-internal-");
    }

    #[test]
    fn enable_command_carries_every_flag() {
        let line = toggle_grammar::parse(
            b"1 48 devices=1,GPU-12345678-1111-2222-3333-444455556666 after_calls=7 after_ms=5000 mode=hang sticky=1 \
              surface=async scope=process percent=2.5 count=3 functions=@sync,cudaMalloc seed=9",
        )
        .unwrap();
        assert_eq!(
            Verb::Enable(line).command().join(" "),
            "/usr/local/bin/cuda-fault enable --file /host-fault/cuda_fault_enabled --xid 48 \
             --devices 1,GPU-12345678-1111-2222-3333-444455556666 --after-calls 7 --after 5000ms --mode hang \
             --surface async --scope process --percent 2.5 --count 3 --functions @sync,cudaMalloc --seed 9 --sticky=true"
        );
        assert_eq!(
            Verb::Clean.command().join(" "),
            "/usr/local/bin/cuda-fault clean --file /host-fault/cuda_fault_enabled"
        );
        assert_eq!(
            Verb::Status { json: true }.command().join(" "),
            "/usr/local/bin/cuda-fault status --file /host-fault/cuda_fault_enabled --json"
        );
    }
}
