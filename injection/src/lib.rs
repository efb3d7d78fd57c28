//! The injection of the cuda-fault shim into Kubernetes workloads: where it goes in a pod
//! ([`sites`], [`gpu`]), what is added there ([`inject`]), how the user's own `LD_PRELOAD` is kept
//! ([`env`]), the node pin ([`pin`]) and the exact, guarded JSON patch operations that carry it
//! ([`patch`]). One set of rules for both users of it: the kustomize Component generator
//! (`cuda-fault-kustomize`) and the helper's live injection (`cuda-fault inject`); [`layout`] names
//! what they add, and what `verify` and the node Jobs look for.

#![deny(unsafe_code)]

pub mod env;
pub mod error;
pub mod gpu;
pub mod hashed;
pub mod inject;
pub mod layout;
pub mod live;
pub mod names;
pub mod outcome;
pub mod patch;
pub mod pin;
pub mod ptr;
pub mod sites;
pub mod stream;
pub mod text;
pub mod workloads;

use crate::pin::NodePin;

/// What `generate` is asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The init container's image.
    pub image: String,
    /// Containers to inject into although they ask for no GPU.
    pub containers: Vec<String>,
    /// ConfigMaps and Secrets outside the input that the user says set no variable of ours.
    pub envfrom_without_ld_preload: Vec<String>,
    /// Faults on from process start with this XID (`CUDA_FAULT_INJECTION_ENABLED="1"`).
    pub faults_from_start: Option<u32>,
    /// Mount the node's toggle directory (hostPath); off with `--no-toggle`.
    pub toggle: bool,
    pub pin: Option<NodePin>,
    /// The command that regenerates the file, for its header.
    pub command: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            image: layout::DEFAULT_IMAGE.into(),
            containers: vec![],
            envfrom_without_ld_preload: vec![],
            faults_from_start: None,
            toggle: true,
            pin: None,
            command: "cuda-fault-kustomize generate".into(),
        }
    }
}
