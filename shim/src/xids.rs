//! The XID table, compiled in from `xid-table/xids.table` by build.rs.

/// An error enum value and its header name.
pub struct ErrorCode {
    pub name: &'static str,
    pub code: u32,
}

/// One simulated XID.
pub struct XidRow {
    pub xid: u32,
    pub description: &'static str,
    pub runtime: ErrorCode,
    pub driver: ErrorCode,
    pub nvml: Option<ErrorCode>,
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
    }
}
