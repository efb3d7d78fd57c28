//! What planning the injection into one object yields: filled in by [`crate::inject`] and the
//! site finders of [`crate::sites`], read by the generator and the live injection.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::env::SourcePin;
use crate::patch::Op;

/// What the generator did with one object.
pub struct Outcome {
    pub ops: Vec<Op>,
    /// Whether anything is injected (else the patch only pins what makes it a non-target).
    pub injected: bool,
    /// One line per injected pod or container, and one per thing left alone, for the header.
    pub injected_lines: Vec<String>,
    pub left_alone: Vec<String>,
    /// Keys of ConfigMaps and Secrets the decision relied on.
    pub source_pins: Vec<SourcePin>,
    /// `--container` names that matched here.
    pub named: BTreeSet<String>,
    /// The object as kustomize will render it.
    pub result: Value,
}
