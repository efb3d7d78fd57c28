//! The kinds the generator injects into, and where their pods are described.

use crate::error::{refuse, Error};
use crate::ptr::Ptr;
use crate::stream::ObjectId;

/// Where an object describes its pods.
pub enum Shape {
    /// A Kubernetes pod template (or a Pod's own spec) at this pointer.
    PodSpec(Ptr),
    /// `nvidia.com/v1alpha1` DynamoGraphDeployment: `spec.services` (a map).
    DgdServices,
    /// `nvidia.com/v1beta1` DynamoGraphDeployment: `spec.components` (a list).
    DgdComponents,
}

/// Every kind the generator understands, as (API group, kind). The guards watch each of them for
/// objects the generator did not see.
pub const KINDS: &[(&str, &str)] = &[
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("", "Pod"),
    ("nvidia.com", "DynamoGraphDeployment"),
];

/// The shape of a supported object; `None` for everything else (Services, ConfigMaps, ...).
pub fn shape(id: &ObjectId) -> Result<Option<Shape>, Error> {
    let pod_template = || Ptr::keys(&["spec", "template", "spec"]);
    Ok(Some(match (id.group.as_str(), id.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") => {
            Shape::PodSpec(pod_template())
        }
        ("batch", "CronJob") => Shape::PodSpec(Ptr::keys(&["spec", "jobTemplate", "spec", "template", "spec"])),
        ("", "Pod") => Shape::PodSpec(Ptr::keys(&["spec"])),
        ("nvidia.com", "DynamoGraphDeployment") => match id.version.as_str() {
            "v1alpha1" => Shape::DgdServices,
            "v1beta1" => Shape::DgdComponents,
            v => refuse!("{id}: DynamoGraphDeployment version {v} is not supported (v1alpha1, v1beta1)"),
        },
        _ => return Ok(None),
    }))
}
