//! Kubernetes name rules the helper checks before it calls the API.

// The rules are the generator's too: one definition, in the injection crate.
pub use injection::names::{is_dns_label, is_node_name};

/// A label value for the node (at most 63 chars, alphanumeric at both ends).
pub fn node_label_value(node: &str) -> String {
    let mut v: String = node.chars().take(63).collect();
    while v.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        v.pop();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_labels() {
        assert!(is_node_name("gpu-1.example.com"));
        assert!(!is_node_name("GPU_1"));
        assert!(!is_node_name(""));
        assert_eq!(node_label_value(&format!("{}-x", "a".repeat(62))), "a".repeat(62));
    }
}
