/// The CUDA API families the shim interposes: which library a function belongs to.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
#[repr(u8)]
pub enum Api {
    /// libcudart: `cuda*` functions returning `cudaError_t`.
    Runtime = 0,
    /// libcuda: `cu*` functions returning `CUresult`.
    Driver = 1,
    /// libnvidia-ml: `nvml*` functions returning `nvmlReturn_t`.
    Nvml = 2,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::Runtime, Api::Driver, Api::Nvml];

    /// The word hooks.list uses: `runtime`, `driver`, `nvml`.
    pub const fn word(self) -> &'static str {
        match self {
            Api::Runtime => "runtime",
            Api::Driver => "driver",
            Api::Nvml => "nvml",
        }
    }

    /// The Rust path of this variant, for generated code.
    pub const fn path(self) -> &'static str {
        match self {
            Api::Runtime => "Api::Runtime",
            Api::Driver => "Api::Driver",
            Api::Nvml => "Api::Nvml",
        }
    }
}
