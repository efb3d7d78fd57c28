//! The XID table, compiled in from `xid-table/xids.table` by build.rs.

/// An error enum value and its header name.
pub struct ErrorCode {
    pub name: &'static str,
    pub code: u32,
}

/// The ECC state NVML reports while an ECC XID is on (the table's ecc column).
pub struct Ecc {
    /// Uncorrected ECC error counts rise by one.
    pub uncorrected: bool,
    /// A page retirement / row remap is pending.
    pub pending: bool,
    /// A row remap failed.
    pub failure: bool,
}

impl Ecc {
    pub fn any(&self) -> bool {
        self.uncorrected || self.pending || self.failure
    }
}

/// One simulated XID.
pub struct XidRow {
    pub xid: u32,
    pub description: &'static str,
    pub runtime: ErrorCode,
    pub driver: ErrorCode,
    pub nvml: Option<ErrorCode>,
    /// By default the fault surfaces late (the table's surface column is `async`).
    pub asynchronous: bool,
    /// By default only processes running when it was switched on meet it (scope `process`).
    pub process_scope: bool,
    /// The GPU is gone: device enumeration fails and device counts read 0.
    pub lost: bool,
    pub ecc: Ecc,
}

impl XidRow {
    /// The error of a call of `api`; None: this XID leaves that API working (NVML, mostly).
    pub fn error(&self, api: crate::Api) -> Option<&ErrorCode> {
        match api {
            crate::Api::Runtime => Some(&self.runtime),
            crate::Api::Driver => Some(&self.driver),
            crate::Api::Nvml => self.nvml.as_ref(),
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/xids.rs"));

/// Index of `xid` in [`XIDS`].
pub fn index_of(xid: u64) -> Option<usize> {
    XIDS.iter().position(|r| u64::from(r.xid) == xid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_79_and_lookups_work() {
        assert_eq!(XIDS[DEFAULT_XID_INDEX].xid, 79);
        assert_eq!(XIDS[index_of(48).unwrap()].runtime.code, 214);
        assert_eq!(index_of(999_999), None);
        assert!(SUPPORTED.contains("79") && SUPPORTED.contains("143"));
        let x31 = &XIDS[index_of(31).unwrap()];
        assert!(x31.asynchronous && x31.process_scope && !x31.lost && !x31.ecc.any());
        let x79 = &XIDS[DEFAULT_XID_INDEX];
        assert!(!x79.asynchronous && !x79.process_scope && x79.lost);
        let x64 = &XIDS[index_of(64).unwrap()];
        assert!(x64.ecc.uncorrected && x64.ecc.failure && !x64.ecc.pending);
    }
}
