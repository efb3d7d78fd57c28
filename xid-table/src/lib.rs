//! The XID table: one reviewed data file (`xids.table`) mapping each simulated XID to the error a
//! CUDA runtime call, a CUDA driver call and an NVML call return while the fault is on.
//!
//! The shim's build script parses the file with [`parse`] and emits static tables, so nothing is
//! parsed inside a CUDA process. The `cuda-fault` helper uses [`table`] to validate `--xid` and
//! to print the table. A malformed row is an error that names its line.

#![deny(unsafe_code)]

use std::fmt;

/// The data file, as compiled into every user of this crate.
pub const DATA: &str = include_str!("../xids.table");

/// Path of the data file relative to this crate, for build scripts' `rerun-if-changed`.
pub const DATA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/xids.table");

/// The XID simulated when none (or an unknown one) is configured: "GPU fell off the bus".
pub const DEFAULT_XID: u32 = 79;

/// An error enum value: its name as in the CUDA/NVML headers, and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    pub name: &'a str,
    pub code: u32,
}

impl fmt::Display for ErrorCode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.code)
    }
}

/// A row's `surface` and `scope` are the toggle keys' own values (the keys override them), so
/// the words come from the grammar.
pub use toggle_grammar::{Scope, Surface};

/// The ECC state NVML reports for a GPU with this XID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ecc {
    /// Uncorrected ECC errors counted (volatile and aggregate).
    pub uncorrected: bool,
    /// A page retirement or row remap waits for the next GPU reset.
    pub pending: bool,
    /// A row remap failed.
    pub failure: bool,
}

impl Ecc {
    pub const WORDS: [&'static str; 3] = ["uncorrected", "pending", "failure"];

    /// Whether NVML reports anything at all.
    pub fn any(&self) -> bool {
        self.uncorrected || self.pending || self.failure
    }
}

impl fmt::Display for Ecc {
    /// `uncorrected,pending`, or `-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = [self.uncorrected, self.pending, self.failure];
        let words: Vec<&str> = Ecc::WORDS.iter().zip(set).filter(|(_, on)| *on).map(|(w, _)| *w).collect();
        f.write_str(if words.is_empty() { "-".to_string() } else { words.join(",") }.as_str())
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xid<'a> {
    pub xid: u32,
    pub mnemonic: &'a str,
    pub description: &'a str,
    pub runtime: ErrorCode<'a>,
    pub driver: ErrorCode<'a>,
    /// `None` when a real XID of this kind leaves NVML working.
    pub nvml: Option<ErrorCode<'a>>,
    /// A real XID of this kind poisons the process's context.
    pub sticky: bool,
    pub surface: Surface,
    pub scope: Scope,
    /// The GPU is gone: device counts report 0 and device enumeration fails.
    pub lost: bool,
    /// What NVML's ECC queries report.
    pub ecc: Ecc,
    pub evidence: &'a str,
    /// What the NVIDIA driver logs for this XID after `NVRM: Xid (PCI:…): N, pid=…, name=…, `.
    pub kmsg: &'a str,
    /// Where [`Xid::kmsg`] comes from.
    pub kmsg_evidence: &'a str,
}

impl Xid<'_> {
    /// True when no primary source backs the mapping.
    pub fn inferred(&self) -> bool {
        self.evidence.starts_with("inferred")
    }
}

/// A malformed row, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "xids.table line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

const COLUMNS: usize = 13;
const HEADER: &str =
    "xid | mnemonic | description | runtime | driver | nvml | sticky | surface | scope | lost | ecc | evidence | kmsg";
const EVIDENCE: usize = 11;
const KMSG: usize = 12;

/// Parses the table text. Blank lines and lines starting with `#` are ignored.
pub fn parse(text: &str) -> Result<Vec<Xid<'_>>, ParseError> {
    let mut rows: Vec<Xid<'_>> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |message: String| ParseError { line, message };
        let cols: Vec<&str> = trimmed.split('|').map(str::trim).collect();
        if cols.len() != COLUMNS {
            return Err(err(format!("expected {COLUMNS} '|'-separated columns ({HEADER}), found {}", cols.len())));
        }
        let xid: u32 = cols[0].parse().map_err(|_| err(format!("XID '{}' is not a number", cols[0])))?;
        if xid == 0 || xid > 65_535 {
            return Err(err(format!("XID {xid} is out of range 1..=65535")));
        }
        if rows.iter().any(|r| r.xid == xid) {
            return Err(err(format!("XID {xid} appears twice")));
        }
        for (i, what) in [(1, "mnemonic"), (2, "description"), (EVIDENCE, "evidence")] {
            if cols[i].is_empty() {
                return Err(err(format!("{what} is empty")));
            }
        }
        if !cols[1].bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
            return Err(err(format!("mnemonic '{}' must be UPPER_SNAKE_CASE", cols[1])));
        }
        let runtime = error_code(cols[3], "cudaError").map_err(|m| err(format!("runtime error: {m}")))?;
        let driver = error_code(cols[4], "CUDA_ERROR_").map_err(|m| err(format!("driver error: {m}")))?;
        let nvml = if cols[5] == "-" {
            None
        } else {
            Some(error_code(cols[5], "NVML_ERROR_").map_err(|m| err(format!("nvml error: {m}")))?)
        };
        let yes_no = |i: usize, what: &str| match cols[i] {
            "yes" => Ok(true),
            "no" => Ok(false),
            other => Err(err(format!("{what} must be 'yes' or 'no', found '{other}'"))),
        };
        let sticky = yes_no(6, "sticky")?;
        let surface = Surface::parse(cols[7].as_bytes())
            .map_err(|_| err(format!("surface must be 'immediate' or 'async', found '{}'", cols[7])))?;
        let scope = Scope::parse(cols[8].as_bytes())
            .map_err(|_| err(format!("scope must be 'process' or 'device', found '{}'", cols[8])))?;
        let lost = yes_no(9, "lost")?;
        let ecc = ecc(cols[10]).map_err(|m| err(format!("ecc: {m}")))?;
        if lost && nvml.map(|e| e.name) != Some("NVML_ERROR_GPU_IS_LOST") {
            return Err(err("lost is 'yes', so the nvml error must be NVML_ERROR_GPU_IS_LOST=15".to_string()));
        }
        let (kmsg, kmsg_evidence) = kmsg_cell(cols[KMSG]).map_err(|m| err(format!("kmsg: {m}")))?;
        rows.push(Xid {
            xid,
            mnemonic: cols[1],
            description: cols[2],
            runtime,
            driver,
            nvml,
            sticky,
            surface,
            scope,
            lost,
            ecc,
            evidence: cols[EVIDENCE],
            kmsg,
            kmsg_evidence,
        });
    }
    if !rows.iter().any(|r| r.xid == DEFAULT_XID) {
        return Err(ParseError { line: 0, message: format!("the table must contain the default XID {DEFAULT_XID}") });
    }
    Ok(rows)
}

/// The kmsg cell: `"TEXT" EVIDENCE`. The text reaches the kernel log verbatim, so it is one line of
/// printable ASCII.
fn kmsg_cell(cell: &str) -> Result<(&str, &str), String> {
    let rest = cell.strip_prefix('"').ok_or_else(|| format!("'{cell}' must be \"TEXT\" EVIDENCE"))?;
    let (text, evidence) = rest.split_once('"').ok_or_else(|| "the text's closing '\"' is missing".to_string())?;
    if text.is_empty() || text.trim() != text {
        return Err("the text is empty or starts or ends with a blank".into());
    }
    if let Some(c) = text.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!("the text holds {c:?}; only printable ASCII reaches the kernel log"));
    }
    let evidence = evidence.trim();
    if evidence.is_empty() {
        return Err("the text has no evidence after it".into());
    }
    Ok((text, evidence))
}

/// `-`, or a comma list of distinct words of [`Ecc::WORDS`].
fn ecc(cell: &str) -> Result<Ecc, String> {
    let mut e = Ecc::default();
    if cell == "-" {
        return Ok(e);
    }
    for word in cell.split(',') {
        let flag = match word {
            "uncorrected" => &mut e.uncorrected,
            "pending" => &mut e.pending,
            "failure" => &mut e.failure,
            other => return Err(format!("'{other}' is not one of {} (or '-' alone)", Ecc::WORDS.join(", "))),
        };
        if std::mem::replace(flag, true) {
            return Err(format!("'{word}' is given twice"));
        }
    }
    Ok(e)
}

fn error_code<'a>(cell: &'a str, prefix: &str) -> Result<ErrorCode<'a>, String> {
    let (name, number) = cell.split_once('=').ok_or_else(|| format!("'{cell}' must be NAME=NUMBER"))?;
    let (name, number) = (name.trim(), number.trim());
    if !name.starts_with(prefix) || name.len() == prefix.len() {
        return Err(format!("'{name}' must start with {prefix}"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("'{name}' is not an identifier"));
    }
    let code: u32 = number.parse().map_err(|_| format!("'{number}' is not a number"))?;
    if code == 0 {
        return Err("error 0 is success, not a fault".to_string());
    }
    Ok(ErrorCode { name, code })
}

/// The compiled-in table. The data file is validated by this crate's tests and by the shim's
/// build, so a parse failure here is a build defect.
pub fn table() -> Vec<Xid<'static>> {
    parse(DATA).unwrap_or_else(|e| panic!("built-in {e}"))
}

/// Looks up one XID in the compiled-in table.
pub fn find(xid: u32) -> Option<Xid<'static>> {
    table().into_iter().find(|r| r.xid == xid)
}

/// The supported XIDs, comma-separated, for error messages.
pub fn supported_list() -> String {
    table().iter().map(|r| r.xid.to_string()).collect::<Vec<_>>().join(", ")
}

/// The table as Markdown, exactly as README.md shows it (a test keeps README in step).
pub fn markdown(rows: &[Xid<'_>]) -> String {
    let mut out = String::from(
        "| XID | Name | Description | Runtime error | Driver error | NVML error | Sticky | Surface | Scope | Lost | NVML ECC | Evidence |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let nvml = r.nvml.map_or_else(|| "-".to_string(), |e| format!("`{}` ({})", e.name, e.code));
        let yes = |b: bool| if b { "yes" } else { "no" };
        out.push_str(&format!(
            "| {} | {} | {} | `{}` ({}) | `{}` ({}) | {} | {} | {} | {} | {} | {} | {} |\n",
            r.xid,
            r.mnemonic,
            r.description,
            r.runtime.name,
            r.runtime.code,
            r.driver.name,
            r.driver.code,
            nvml,
            yes(r.sticky),
            r.surface.word(),
            r.scope.word(),
            yes(r.lost),
            r.ecc,
            r.evidence.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_parses_and_holds_the_seed_rows() {
        let t = table();
        let code = |x: u32| find(x).map(|r| (r.runtime.code, r.driver.code, r.nvml.map(|n| n.code)));
        assert_eq!(code(79), Some((100, 100, Some(15))));
        assert_eq!(code(48), Some((214, 214, None)));
        assert_eq!(code(94), Some((214, 214, None)));
        assert_eq!(code(95), Some((999, 999, None)));
        assert_eq!(code(43), Some((702, 702, None)));
        assert_eq!(code(74), Some((217, 217, None)));
        for x in [13, 31, 62, 64, 119, 120, 140, 143] {
            assert!(t.iter().any(|r| r.xid == x), "XID {x} missing");
        }
        assert_eq!(find(79).unwrap().runtime.name, "cudaErrorNoDevice");
        assert_eq!(find(79).unwrap().nvml.unwrap().name, "NVML_ERROR_GPU_IS_LOST");
        assert!(find(143).unwrap().inferred());
        assert!(!find(79).unwrap().inferred());
        assert_eq!(find(79).unwrap().kmsg, "GPU has fallen off the bus.");
        assert!(t.iter().all(|r| !r.kmsg.is_empty() && !r.kmsg_evidence.is_empty()));
    }

    #[test]
    fn malformed_rows_name_their_line() {
        let row = |cells: [&str; 13]| format!("{}\n", cells.join(" | "));
        let base = [
            "79",
            "A",
            "d",
            "cudaErrorNoDevice=100",
            "CUDA_ERROR_NO_DEVICE=100",
            "-",
            "yes",
            "immediate",
            "device",
            "no",
            "-",
            "e",
            "\"t\" k",
        ];
        let with = |i: usize, v: &str| {
            let mut c = base;
            c[i] = v;
            row(c)
        };
        assert_eq!(parse(&row(base)).unwrap().len(), 1);
        let twelve = format!("# c\n\n{}\n", base[..12].join(" | "));
        let cases = [
            (twelve, 3, "columns"),
            (with(0, "x9"), 1, "not a number"),
            (with(3, "NoDevice=100"), 1, "runtime error"),
            (with(3, "cudaErrorNoDevice=abc"), 1, "not a number"),
            (with(4, "CUDA_ERROR_NO_DEVICE"), 1, "NAME=NUMBER"),
            (with(5, "NVML_ERROR_X=0"), 1, "success"),
            (with(6, "maybe"), 1, "sticky must be 'yes' or 'no'"),
            (with(7, "later"), 1, "surface must be 'immediate' or 'async', found 'later'"),
            (with(8, "node"), 1, "scope must be 'process' or 'device', found 'node'"),
            (with(9, "gone"), 1, "lost must be 'yes' or 'no'"),
            (with(9, "yes"), 1, "the nvml error must be NVML_ERROR_GPU_IS_LOST"),
            (with(10, "uncorrected,dbe"), 1, "ecc: 'dbe' is not one of uncorrected, pending, failure"),
            (with(10, "pending,pending"), 1, "ecc: 'pending' is given twice"),
            (with(10, ""), 1, "ecc: '' is not one of"),
            (with(1, "a"), 1, "UPPER"),
            (with(2, ""), 1, "empty"),
            (with(11, ""), 1, "evidence is empty"),
        ];
        for (text, line, needle) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.to_string().contains(needle), "{e} should mention {needle}");
            assert!(e.to_string().starts_with(&format!("xids.table line {line}:")));
        }
        for (kmsg, needle) in [
            ("GPU gone", "must be \"TEXT\" EVIDENCE"),
            ("\"GPU gone evidence", "closing"),
            ("\"\" e", "empty"),
            ("\" x\" e", "blank"),
            ("\"caf\u{e9}\" e", "printable ASCII"),
            ("\"x\ty\" e", "printable ASCII"),
            ("\"GPU gone\"", "no evidence"),
        ] {
            let e = parse(&with(12, kmsg)).unwrap_err();
            assert!(e.message.starts_with("kmsg: ") && e.message.contains(needle), "{kmsg}: {e}");
        }
        let text = with(12, "\"GPU has fallen off the bus.\" NVSentinel samples");
        let ok = parse(&text).unwrap();
        assert_eq!((ok[0].kmsg, ok[0].kmsg_evidence), ("GPU has fallen off the bus.", "NVSentinel samples"));
        let dup = format!("{}{}", row(base), row(base));
        assert_eq!(parse(&dup).unwrap_err().line, 2);
        let no79 = with(0, "48");
        assert!(parse(&no79).unwrap_err().message.contains("default XID 79"));
        let ecc = parse(&with(10, "failure,uncorrected")).unwrap()[0].ecc;
        assert_eq!(
            (ecc.uncorrected, ecc.pending, ecc.failure, ecc.to_string()),
            (true, false, true, "uncorrected,failure".into())
        );
    }

    #[test]
    fn behaviours_follow_the_kind_of_xid() {
        // Application-level faults surface late and reach only the process that met them;
        // faults that break the GPU fail every call of every process at once.
        for x in [13, 31, 43, 94] {
            let r = find(x).unwrap();
            assert_eq!((r.surface, r.scope, r.lost), (Surface::Async, Scope::Process, false), "XID {x}");
        }
        for x in [48, 62, 64, 79, 95, 119, 120, 140, 143] {
            let r = find(x).unwrap();
            assert_eq!((r.surface, r.scope), (Surface::Immediate, Scope::Device), "XID {x}");
        }
        let r74 = find(74).unwrap();
        assert_eq!((r74.surface, r74.scope), (Surface::Async, Scope::Device));
        let lost: Vec<u32> = table().iter().filter(|r| r.lost).map(|r| r.xid).collect();
        assert_eq!(lost, [79, 143]);
        let ecc: Vec<u32> = table().iter().filter(|r| r.ecc.any()).map(|r| r.xid).collect();
        assert_eq!(ecc, [48, 64, 94, 95, 140]);
        assert!(find(64).unwrap().ecc.failure && !find(48).unwrap().ecc.failure);
        for r in table().iter().filter(|r| r.lost) {
            assert_eq!(r.nvml.map(|e| e.name), Some("NVML_ERROR_GPU_IS_LOST"), "XID {} loses the GPU", r.xid);
        }
    }

    #[test]
    fn markdown_has_one_row_per_xid() {
        let t = table();
        let md = markdown(&t);
        assert_eq!(md.lines().count(), t.len() + 2);
        assert!(md.contains("| 79 | GPU_HAS_FALLEN_OFF_THE_BUS | GPU fell off the bus | `cudaErrorNoDevice` (100) |"));
        assert!(md.contains(" | yes | immediate | device | yes | - | "), "{md}");
        assert!(md.contains(" | yes | async | process | no | - | "), "{md}");
    }
}

#[cfg(test)]
mod readme {
    /// README.md shows the table between two markers; it must be exactly what `markdown` renders.
    #[test]
    fn readme_table_matches_the_data_file() {
        let readme = include_str!("../../README.md");
        let begin = "<!-- xid-table:begin -->\n";
        let start = readme.find(begin).expect("README has the xid-table:begin marker") + begin.len();
        let end = readme[start..].find("<!-- xid-table:end -->").expect("README has the end marker") + start;
        assert_eq!(
            &readme[start..end],
            super::markdown(&super::table()),
            "README's XID table is stale: paste `cargo run -p xid-table --example markdown`"
        );
    }
}
