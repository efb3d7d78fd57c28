//! Which containers use a GPU: those whose `resources.limits` or `resources.requests` name a
//! GPU extended resource. That covers `nvidia.com/gpu`, the device plugin's renamed shares
//! (`nvidia.com/gpu.shared`), MIG slices (`nvidia.com/mig-1g.10gb`) and other vendors' `*/gpu`.
//! GPUs handed out through DRA resource claims are invisible here: name those containers with
//! `--container`.

use serde_json::Value;

/// Whether an extended resource name is a GPU (or a slice of one).
pub fn is_gpu_resource(name: &str) -> bool {
    let Some((domain, resource)) = name.split_once('/') else {
        return false;
    };
    !domain.is_empty() && (resource == "gpu" || resource.starts_with("gpu.") || resource.starts_with("mig-"))
}

/// The first GPU resource a container asks for, if any.
pub fn gpu_resource(container: &Value) -> Option<String> {
    for section in ["limits", "requests"] {
        if let Some(map) = container.pointer(&format!("/resources/{section}")).and_then(Value::as_object) {
            if let Some(name) = map.keys().find(|k| is_gpu_resource(k)) {
                return Some(name.clone());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gpu_resources() {
        for yes in
            ["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-1g.10gb", "amd.com/gpu", "gpu.intel.com/gpu"]
        {
            assert!(is_gpu_resource(yes), "{yes}");
        }
        for no in ["gpu", "cpu", "memory", "nvidia.com/gpumem", "example.com/notgpu", "/gpu", "ephemeral-storage"] {
            assert!(!is_gpu_resource(no), "{no}");
        }
        assert_eq!(
            gpu_resource(&json!({"resources": {"requests": {"nvidia.com/gpu": "1"}}})).as_deref(),
            Some("nvidia.com/gpu")
        );
        assert_eq!(gpu_resource(&json!({"resources": {"limits": {"cpu": "1"}}})), None);
        assert_eq!(gpu_resource(&json!({"name": "x"})), None);
    }
}
