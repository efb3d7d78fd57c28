//! The toggle file's format, shared with the shim:
//!
//! ```text
//! <state> [<xid>] [devices=<list>] [after_calls=<N>] [after_ms=<T>] [mode=error|hang] [sticky=1]\n
//! ```
//!
//! One line, tokens separated by single spaces. `state` is `1` (on) or `0` (off). The optional XID
//! overrides the pod's `CUDA_XID_TYPE` while on. The writer emits exactly that: the keys in the
//! order above, only those given, at most [`MAX_LEN`] bytes.
//!
//! The reader ([`Toggle::parse`], for `status`) accepts what the shim accepts (shim/src/toggle.rs):
//! words split on any ASCII whitespace, `0` followed by anything is off, an XID is any number of
//! up to 19 digits (one not in the table makes the shim simulate the pod's XID instead), and keys
//! in any order, each at most once. Anything else is malformed, which the shim treats as off.

use std::fmt;

/// The default toggle path, inside pods (the node's `/var/lib/cuda-fault-test`, mounted).
pub const DEFAULT_FILE: &str = "/host-fault/cuda_fault_enabled";
/// Environment variable overriding the default path (the shim honours the same one).
pub const FILE_ENV: &str = "CUDA_FAULT_TOGGLE_FILE";
/// The shim reads at most this many bytes of the toggle file (`READ_MAX` in shim/src/toggle.rs):
/// the writer refuses longer lines, and `status` calls a longer file malformed.
pub const MAX_LEN: usize = 1024;

/// What a fault does once on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Calls return the XID's error code.
    Error,
    /// Calls block, like a GPU that stopped answering.
    Hang,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Error => "error",
            Mode::Hang => "hang",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "error" => Some(Mode::Error),
            "hang" => Some(Mode::Hang),
            _ => None,
        }
    }
}

/// The contents of a toggle file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Toggle {
    pub on: bool,
    /// Any number the file holds; `enable` only writes XIDs from the table.
    pub xid: Option<u64>,
    /// Device ordinals or GPU/MIG UUIDs; `None` = every device.
    pub devices: Option<Vec<String>>,
    pub after_calls: Option<u64>,
    pub after_ms: Option<u64>,
    /// `None` = the shim's default (error, or the pod's CUDA_FAULT_MODE).
    pub mode: Option<Mode>,
    pub sticky: bool,
}

impl Toggle {
    pub fn off() -> Toggle {
        Toggle::default()
    }

    /// The exact file contents, newline-terminated. An off toggle is always `0\n`.
    pub fn render(&self) -> String {
        if !self.on {
            return "0\n".to_string();
        }
        let mut out = String::from("1");
        if let Some(x) = self.xid {
            out.push_str(&format!(" {x}"));
        }
        if let Some(d) = &self.devices {
            out.push_str(&format!(" devices={}", d.join(",")));
        }
        if let Some(n) = self.after_calls {
            out.push_str(&format!(" after_calls={n}"));
        }
        if let Some(t) = self.after_ms {
            out.push_str(&format!(" after_ms={t}"));
        }
        if let Some(m) = self.mode {
            out.push_str(&format!(" mode={}", m.as_str()));
        }
        if self.sticky {
            out.push_str(" sticky=1");
        }
        out.push('\n');
        out
    }

    /// Parses file contents the way the shim does (see the module docs).
    pub fn parse(text: &str) -> Result<Toggle, Malformed> {
        let bad = |m: String| Err(Malformed(m));
        if text.len() > MAX_LEN {
            return bad(format!("is longer than {MAX_LEN} bytes, more than the shim reads"));
        }
        let mut tokens = text.split_ascii_whitespace();
        let on = match tokens.next() {
            None => return bad("is empty".into()),
            Some("1") => true,
            // The shim ignores whatever follows a 0.
            Some("0") => return Ok(Toggle::off()),
            Some(other) => return bad(format!("state '{other}' is not 0 or 1")),
        };
        let mut t = Toggle { on, ..Toggle::default() };
        let mut rest = tokens.peekable();
        if let Some(first) = rest.peek() {
            if !first.contains('=') {
                t.xid = Some(parse_xid_number(first).map_err(Malformed)?);
                rest.next();
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for tok in rest {
            let Some((key, value)) = tok.split_once('=') else {
                return bad(format!("'{tok}' is not key=value (the XID must come right after the state)"));
            };
            if seen.contains(&key) {
                return bad(format!("key '{key}' appears twice"));
            }
            seen.push(key);
            match key {
                "devices" => t.devices = Some(parse_devices(value).map_err(Malformed)?),
                "after_calls" => t.after_calls = Some(parse_count("after_calls", value).map_err(Malformed)?),
                "after_ms" => t.after_ms = Some(parse_count("after_ms", value).map_err(Malformed)?),
                "mode" => {
                    t.mode = Some(
                        Mode::parse(value).ok_or_else(|| Malformed(format!("mode '{value}' is not error or hang")))?,
                    )
                }
                "sticky" => {
                    t.sticky = match value {
                        "1" => true,
                        "0" => false,
                        _ => return bad(format!("sticky '{value}' is not 1")),
                    }
                }
                _ => return bad(format!("unknown key '{key}'")),
            }
        }
        Ok(t)
    }
}

/// Why a toggle file is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number of 1 to 19 digits, as the shim reads one.
fn parse_xid_number(s: &str) -> Result<u64, String> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("XID '{s}' is not a number"));
    }
    s.parse::<u64>().map_err(|_| format!("XID '{s}' is not a number"))
}

fn parse_count(what: &str, s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} '{s}' is not a non-negative integer"));
    }
    s.parse::<u64>().map_err(|_| format!("{what} '{s}' is too large"))
}

/// A device: a decimal ordinal, or a `GPU-`/`MIG-` UUID (hex digits and dashes).
pub fn valid_device(d: &str) -> bool {
    if !d.is_empty() && d.len() <= 9 && d.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    for prefix in ["GPU-", "MIG-"] {
        if let Some(body) = d.strip_prefix(prefix) {
            return body.len() >= 8
                && body.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
                && body.bytes().any(|b| b.is_ascii_hexdigit());
        }
    }
    false
}

/// Parses a comma-separated device list.
pub fn parse_devices(s: &str) -> Result<Vec<String>, String> {
    if s.is_empty() {
        return Err("devices list is empty".into());
    }
    let mut out = Vec::new();
    for d in s.split(',') {
        if !valid_device(d) {
            return Err(format!(
                "device '{d}' is not an ordinal (0, 1, ...) or a GPU UUID (GPU-xxxxxxxx-xxxx-...)"
            ));
        }
        out.push(d.to_string());
    }
    Ok(out)
}

/// Validates an XID given on the command line against the XID table.
pub fn check_xid(s: &str) -> Result<u64, String> {
    let x = parse_xid_number(s).map_err(|e| format!("invalid --xid: {e}; supported: {}", xid_table::supported_list()))?;
    if lookup(x).is_none() {
        return Err(format!("unknown XID {x}; supported: {}", xid_table::supported_list()));
    }
    Ok(x)
}

/// The table row of an XID.
pub fn lookup(x: u64) -> Option<xid_table::Xid<'static>> {
    u32::try_from(x).ok().and_then(xid_table::find)
}

/// Parses `--after`: `500ms`, `5s`, `2m`, `1h`, or a bare number of milliseconds.
pub fn parse_after(s: &str) -> Result<u64, String> {
    let err = || format!("invalid --after '{s}': expected e.g. 500ms, 5s, 2m or a number of milliseconds");
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1)
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(err)
}

/// Builds the "on" toggle from `enable`'s flags, validating each (messages are one line).
pub fn from_flags(
    xid: Option<&str>,
    devices: Option<&str>,
    after_calls: Option<&str>,
    after: Option<&str>,
    mode: Option<&str>,
    sticky: bool,
) -> Result<Toggle, String> {
    let t = Toggle {
        on: true,
        xid: xid.map(check_xid).transpose()?,
        devices: devices.map(|d| parse_devices(d).map_err(|e| format!("invalid --devices: {e}"))).transpose()?,
        after_calls: after_calls
            .map(|n| parse_count("--after-calls", n).map_err(|e| format!("invalid {e}")))
            .transpose()?,
        after_ms: after.map(parse_after).transpose()?,
        mode: mode
            .map(|m| Mode::parse(m).ok_or_else(|| format!("invalid --mode '{m}': expected error or hang")))
            .transpose()?,
        sticky,
    };
    let len = t.render().len();
    if len > MAX_LEN {
        return Err(format!(
            "the toggle line would be {len} bytes, more than the {MAX_LEN} the shim reads; list fewer devices or use ordinals"
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_examples() {
        assert_eq!(Toggle { on: true, ..Toggle::default() }.render(), "1\n");
        assert_eq!(Toggle { on: true, xid: Some(48), ..Toggle::default() }.render(), "1 48\n");
        assert_eq!(Toggle::off().render(), "0\n");
        let t = Toggle {
            on: true,
            xid: Some(79),
            devices: Some(vec!["1".into()]),
            after_ms: Some(5000),
            ..Toggle::default()
        };
        assert_eq!(t.render(), "1 79 devices=1 after_ms=5000\n");
        let all = Toggle {
            on: true,
            xid: Some(48),
            devices: Some(vec!["0".into(), "GPU-12345678-abcd".into()]),
            after_calls: Some(3),
            after_ms: Some(500),
            mode: Some(Mode::Hang),
            sticky: true,
        };
        assert_eq!(all.render(), "1 48 devices=0,GPU-12345678-abcd after_calls=3 after_ms=500 mode=hang sticky=1\n");
        assert_eq!(Toggle::parse(&all.render()).unwrap(), all);
    }

    #[test]
    fn parses_and_rejects() {
        assert!(Toggle::parse("1\n").unwrap().on);
        assert!(Toggle::parse("1").unwrap().on, "missing final newline is tolerated");
        assert!(!Toggle::parse("0\n").unwrap().on);
        assert_eq!(Toggle::parse("1 mode=hang after_calls=2\n").unwrap().after_calls, Some(2));
        // As lenient as the shim: any whitespace, anything after 0, any XID number.
        for (text, xid) in [("1  48\n", Some(48)), (" 1\t48\r\n", Some(48)), ("1\n\n", None), ("1 0\n", Some(0)),
            ("1 999\n", Some(999))]
        {
            assert_eq!(Toggle::parse(text), Ok(Toggle { on: true, xid, ..Toggle::default() }), "{text:?}");
        }
        assert_eq!(Toggle::parse("0 whatever=1 junk\n"), Ok(Toggle::off()));
        for bad in [
            "", "\n", " \n", "2\n", "yes\n", "1 x\n", "1 48 49\n", "1 12345678901234567890\n",
            "1 devices=\n", "1 devices=a\n", "1 after_ms=-1\n", "1 mode=crash\n", "1 sticky=2\n", "1 foo=1\n",
            "1 mode=hang mode=error\n", "1 mode=hang 48\n",
        ] {
            assert!(Toggle::parse(bad).is_err(), "{bad:?} should be malformed");
        }
        assert!(Toggle::parse(&format!("1 {}\n", " ".repeat(MAX_LEN))).is_err(), "longer than the shim reads");
    }

    #[test]
    fn validates_flags() {
        assert_eq!(parse_after("500ms"), Ok(500));
        assert_eq!(parse_after("5s"), Ok(5000));
        assert_eq!(parse_after("2m"), Ok(120_000));
        assert_eq!(parse_after("750"), Ok(750));
        for bad in ["", "ms", "5x", "-5s", "1.5s", "5 s", "99999999999999999999"] {
            assert!(parse_after(bad).is_err(), "{bad}");
        }
        assert_eq!(check_xid("48"), Ok(48));
        let e = check_xid("999").unwrap_err();
        assert!(e.starts_with("unknown XID 999; supported: ") && e.contains("79"), "{e}");
        assert!(check_xid("abc").unwrap_err().contains("not a number"));
        assert!(valid_device("GPU-8f2c1a3e-1111-2222-3333-444455556666"));
        assert!(valid_device("MIG-8f2c1a3e-1111-2222-3333-444455556666"));
        assert!(!valid_device("GPU-"));
        assert!(!valid_device("gpu0"));
        assert!(from_flags(None, Some("0,,1"), None, None, None, false).is_err());
        assert!(from_flags(None, None, Some("x"), None, None, false).unwrap_err().starts_with("invalid --after-calls"));
        assert!(from_flags(None, None, None, None, Some("boom"), false).unwrap_err().starts_with("invalid --mode"));
        let uuid = "GPU-8f2c1a3e-1111-2222-3333-444455556666";
        assert!(from_flags(Some("79"), Some(&[uuid; 20].join(",")), None, None, None, false).is_ok());
        let e = from_flags(Some("79"), Some(&[uuid; 30].join(",")), None, None, None, false).unwrap_err();
        assert!(e.contains("more than the 1024 the shim reads"), "{e}");
    }
}
