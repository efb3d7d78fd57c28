//! The toggle file as the helper writes and reads it. Its grammar (syntax, limits, rendering) is
//! the `toggle-grammar` crate, the same the shim parses with: the helper writes only lines that
//! grammar renders, and reads files back with the same parser, so `status` says what the shim
//! will do. What the helper adds is the XID table: `enable` only writes XIDs the table has.

pub use toggle_grammar::{
    Devices, Error, Functions, Key, Keys, Line, Mode, Percent, Scenario, Scope, Surface, MAX_LEN, READ_LEN,
};

/// The default toggle path, inside pods (the node's `/var/lib/cuda-fault-test`, mounted).
pub const DEFAULT_FILE: &str = crate::layout::TOGGLE_FILE;
/// Environment variable overriding the default path (the shim honours the same one).
pub const FILE_ENV: &str = "CUDA_FAULT_TOGGLE_FILE";

/// The table row of an XID.
pub fn lookup(x: u64) -> Option<xid_table::Xid<'static>> {
    u32::try_from(x).ok().and_then(xid_table::find)
}

/// The file's exact contents: the canonical line and a newline.
pub fn render(line: &Line) -> String {
    format!("{line}\n")
}

/// An "on" line; Err when it would be longer than the shim reads.
pub fn on(xid: Option<u64>, keys: Keys) -> Result<Line, String> {
    let line = Line::On { xid, keys };
    let len = render(&line).len();
    if len > MAX_LEN {
        return Err(format!(
            "the toggle line would be {len} bytes, more than the {MAX_LEN} the shim reads; list fewer devices or functions"
        ));
    }
    Ok(line)
}

/// `XID N (MNEMONIC)`, or what the shim does with an XID outside the table.
pub fn describe_xid(x: u64) -> String {
    match lookup(x) {
        Some(row) => format!("XID {x} ({})", row.mnemonic),
        None => format!(
            "XID {x}, which is not in the XID table: the shim simulates the pod's CUDA_XID_TYPE (default {}) instead",
            xid_table::DEFAULT_XID
        ),
    }
}

/// One sentence on what the shim does with this line.
pub fn effect(line: &Line) -> String {
    let Line::On { xid, keys } = line else {
        return "faults off".into();
    };
    let what = match xid {
        Some(x) => describe_xid(*x),
        None => format!("XID from the pod's CUDA_XID_TYPE (default {})", xid_table::DEFAULT_XID),
    };
    let unset = if Key::ALL.iter().all(|&k| keys.has(k)) {
        ""
    } else {
        "; keys not set here come from the pod's CUDA_FAULT_* variables"
    };
    format!("faults on: {what}{}{unset}", keys.over(&Scenario::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_render_canonically_and_say_what_they_do() {
        assert_eq!(render(&Line::Off), "0\n");
        let keys = |s: &str| match toggle_grammar::parse(s.as_bytes()).unwrap() {
            Line::On { keys, .. } => keys,
            Line::Off => unreachable!(),
        };
        let line = on(Some(79), keys("1 after_ms=5000 devices=1")).unwrap();
        assert_eq!(render(&line), "1 79 devices=1 after_ms=5000\n");
        assert_eq!(
            effect(&line),
            "faults on: XID 79 (GPU_HAS_FALLEN_OFF_THE_BUS) (devices 1; after 5000 ms); keys not set here come from \
             the pod's CUDA_FAULT_* variables"
        );
        assert_eq!(effect(&Line::Off), "faults off");
        assert!(effect(&on(Some(999), Keys::default()).unwrap()).contains("XID 999, which is not in the XID table"));
        let devices: Vec<String> = (0..8).map(|i| format!("GPU-{i:08x}-1111-2222-3333-444455556666")).collect();
        let mut k = keys(&format!("1 devices={}", devices.join(",")));
        assert!(on(None, k).is_ok());
        k.functions = Some(Functions::parse(hook_list_names().as_bytes()).unwrap());
        assert!(on(None, k).unwrap_err().contains("more than the 1024 the shim reads"));
    }

    fn hook_list_names() -> String {
        let names: Vec<&str> =
            hook_list::HOOKS.iter().filter(|h| h.flags & hook_list::flags::EXEMPT == 0).map(|h| h.name).collect();
        names.join(",")
    }
}
