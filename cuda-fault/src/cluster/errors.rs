//! kube errors as one-line failures that name what to fix.

use crate::exit::{self, Failure};

/// What a failed API call was doing, for the error line.
pub struct Call<'a> {
    pub verb: &'static str,
    pub resource: &'static str,
    pub namespace: Option<&'a str>,
}

pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn user_in(message: &str) -> Option<&str> {
    let start = message.find("User \"")? + 6;
    let len = message[start..].find('"')?;
    Some(&message[start..start + len])
}

/// Maps a kube error to a one-line failure naming what to fix.
pub fn api_failure(call: &Call<'_>, err: kube::Error) -> Failure {
    let ns = call.namespace.map(|n| format!(" in namespace {n}")).unwrap_or_default();
    match err {
        kube::Error::Api(status) if status.code == 403 => {
            let who = user_in(&status.message).map(|u| format!("{u} ")).unwrap_or_default();
            Failure::new(
                exit::FORBIDDEN,
                format!(
                    "forbidden: {who}cannot {} {}{ns}; {} or grant '{}' on '{}'",
                    call.verb,
                    call.resource,
                    super::RBAC_HINT,
                    call.verb,
                    call.resource
                ),
            )
        }
        kube::Error::Api(status) if status.code == 401 => Failure::new(
            exit::NO_CONFIG,
            "unauthorized: the API server rejected the credentials; refresh the KUBECONFIG credentials".to_string(),
        ),
        kube::Error::Api(status) => Failure::new(
            exit::UNAVAILABLE,
            format!("cannot {} {}{ns}: {} (HTTP {})", call.verb, call.resource, one_line(&status.message), status.code),
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

/// An error and its sources, without repeats.
pub fn full_chain(e: &dyn std::error::Error) -> String {
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

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_user_verb_and_resource() {
        let status = kube::core::Status {
            code: 403,
            message: "jobs.batch is forbidden: User \"alice\" cannot create resource \"jobs\" in API group \"batch\""
                .into(),
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
