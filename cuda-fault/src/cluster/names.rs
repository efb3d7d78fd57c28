//! Kubernetes name rules the helper checks before it calls the API.

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
