//! Name rules shared by build.rs (through `#[path]`), the shim and the toggle grammar, so all
//! classify alike.

use crate::api::Api;

/// `cuMemcpyHtoD_v2_ptds` -> `cuMemcpyHtoD`: the name cuGetProcAddress is asked for.
pub fn base_name(name: &[u8]) -> &[u8] {
    let mut n = name;
    for suffix in [&b"_ptsz"[..], b"_ptds"] {
        n = n.strip_suffix(suffix).unwrap_or(n);
    }
    // A trailing `_v<digits>`.
    let digits = n.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 && n[..n.len() - digits].ends_with(b"_v") {
        n = &n[..n.len() - digits - 2];
    }
    n
}

/// Which API family a symbol name belongs to, by exact shape: `cuda[A-Z]…` (runtime),
/// `cu[A-Z]…` (driver), `nvml[A-Z]…` (NVML). `cudnnCreate`, `cublasInit` or `curandX` match none.
pub fn api_of(name: &[u8]) -> Option<Api> {
    let upper_at = |i: usize| name.get(i).is_some_and(u8::is_ascii_uppercase);
    if name.starts_with(b"cuda") && upper_at(4) {
        Some(Api::Runtime)
    } else if name.starts_with(b"cu") && upper_at(2) {
        Some(Api::Driver)
    } else if name.starts_with(b"nvml") && upper_at(4) {
        Some(Api::Nvml)
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
    fn apis_match_exact_shapes() {
        assert_eq!(api_of(b"cudaMalloc"), Some(Api::Runtime));
        assert_eq!(api_of(b"cuInit"), Some(Api::Driver));
        assert_eq!(api_of(b"nvmlInit_v2"), Some(Api::Nvml));
        for other in [
            &b"cudnnCreate"[..],
            b"cublasCreate_v2",
            b"curandCreateGenerator",
            b"cufftPlan1d",
            b"cu",
            b"cuda",
            b"nvml",
            b"nvmlx",
            b"malloc",
            b"",
        ] {
            assert_eq!(api_of(other), None, "{}", core::str::from_utf8(other).unwrap());
        }
    }
}
