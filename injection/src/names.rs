//! The name rules of Kubernetes and of image references, checked before a value given on the
//! command line reaches generated output or an API call.

/// A DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, 1..=63 chars
/// (namespaces, container names).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (labels joined by dots), at most 253 chars: node names, and the names
/// of most objects (ConfigMaps, Secrets, Deployments).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A node name (its `metadata.name`).
pub fn is_node_name(s: &str) -> bool {
    is_dns_subdomain(s)
}

/// Why `s` is not an image reference, per the grammar of the distribution project (which the
/// container runtimes use): `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`, PATH lower-case components
/// joined by `/`, TAG `[\w][\w.-]{0,127}`, DIGEST `ALGORITHM:HEX`.
pub fn image_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("it is empty");
    }
    if s.len() > 4096 {
        return Some("it is longer than 4096 characters");
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algorithm, hex)) = d.split_once(':') else { return Some("its digest is not ALGORITHM:HEX") };
        let alg_ok = !algorithm.is_empty()
            && algorithm
                .split(['+', '.', '_', '-'])
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if !alg_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some("its digest is not ALGORITHM:HEX");
        }
    }
    // A tag is after the last ':' that follows the last '/' (a ':' before it is a registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let first_ok = t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !first_ok || t.len() > 128 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
            return Some("its tag is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry host when it has a '.' or a ':' or is `localhost`.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        let host_ok = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !host_ok || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Some("its registry is not HOST[:PORT]");
        }
    }
    let component_ok = |c: &str| {
        // [a-z0-9]+ joined by '.', '_', '__' or runs of '-'.
        let bytes = c.as_bytes();
        if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
            return false;
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_lowercase() || b.is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !(bytes[i].is_ascii_lowercase() || bytes[i].is_ascii_digit()) {
                i += 1;
            }
            let sep = &c[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
                return false;
            }
        }
        true
    };
    if parts.is_empty() || !parts.iter().all(|p| component_ok(p)) {
        return Some(
            "its repository path is not lower-case components ([a-z0-9] joined by '.', '_', '__' or '-') joined by '/'",
        );
    }
    if name.len() > 255 {
        return Some("its name is longer than 255 characters");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_node_name("gpu-1.example.com"));
        assert!(!is_node_name("GPU_1") && !is_node_name("") && !is_node_name("a\nb") && !is_node_name("a..b"));
        assert!(is_dns_label("vllm-0") && !is_dns_label("vllm.0") && !is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn image_references() {
        for ok in [
            "ghcr.io/cuda-fault/cuda-fault:0.1.0",
            "busybox",
            "localhost:5000/a/b:v1",
            "registry.example/cuda-fault:9.9",
            "docker.io/library/ubuntu@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "a__b/c-d--e.f:Tag_1.2-rc",
            "10.0.0.1:5000/x",
        ] {
            assert_eq!(image_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "img:1\nnamespace: pwned",
            "Upper/case",
            "a:b:c",
            "x:",
            "x:-tag",
            "host:port/x",
            "a//b",
            "a/b@sha256:xyz",
            "x y",
            "x#y",
        ] {
            assert!(image_problem(bad).is_some(), "{bad:?}");
        }
    }
}
