//! Name rules shared by build.rs (through `#[path]`) and the shim, so both classify alike.

/// `cuMemcpyHtoD_v2_ptds` -> `cuMemcpyHtoD`: the name cuGetProcAddress is asked for.
pub fn base_name(name: &[u8]) -> &[u8] {
    let mut n = name;
    for suffix in [&b"_ptsz"[..], b"_ptds"] {
        n = n.strip_suffix(suffix).unwrap_or(n);
    }
    if let Some(pos) = n.windows(2).rposition(|w| w == b"_v") {
        let digits = &n[pos + 2..];
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            n = &n[..pos];
        }
    }
    n
}

/// Which API family a symbol name belongs to, by exact shape: `cuda[A-Z]…` (runtime),
/// `cu[A-Z]…` (driver), `nvml[A-Z]…` (NVML). `cudnnCreate`, `cublasInit` or `curandX` match none.
/// Returns 0 runtime, 1 driver, 2 NVML.
pub fn family(name: &[u8]) -> Option<u8> {
    let upper_at = |i: usize| name.get(i).is_some_and(u8::is_ascii_uppercase);
    if name.starts_with(b"cuda") && upper_at(4) {
        Some(0)
    } else if name.starts_with(b"cu") && upper_at(2) {
        Some(1)
    } else if name.starts_with(b"nvml") && upper_at(4) {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names() {
        assert_eq!(base_name(b"cuMemAlloc_v2"), b"cuMemAlloc");
        assert_eq!(base_name(b"cuMemcpyHtoD_v2_ptds"), b"cuMemcpyHtoD");
        assert_eq!(base_name(b"cuLaunchKernel_ptsz"), b"cuLaunchKernel");
        assert_eq!(base_name(b"cuCtxCreate_v4"), b"cuCtxCreate");
        assert_eq!(base_name(b"cuInit"), b"cuInit");
        assert_eq!(base_name(b"cuGraphAddKernelNode_v"), b"cuGraphAddKernelNode_v");
    }

    #[test]
    fn families_match_exact_shapes() {
        assert_eq!(family(b"cudaMalloc"), Some(0));
        assert_eq!(family(b"cuInit"), Some(1));
        assert_eq!(family(b"nvmlInit_v2"), Some(2));
        for other in [&b"cudnnCreate"[..], b"cublasCreate_v2", b"curandCreateGenerator", b"cufftPlan1d", b"cu", b"cuda", b"nvml", b"nvmlx", b"malloc", b""] {
            assert_eq!(family(other), None, "{}", String::from_utf8_lossy(other));
        }
    }
}
