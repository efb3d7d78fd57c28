//! The toggle file's grammar: the one definition of its syntax, limits and rendering. The shim
//! parses the file with it (inside CUDA processes: `no_std`, no allocation); the cuda-fault helper
//! builds every line it writes with it and reads files back with it for `status`, so the helper
//! can only write what the shim accepts and `status` reports what the shim will do. The shim also
//! reads its `CUDA_FAULT_*` scenario variables with [`Keys::set`], so a variable and its key
//! accept exactly the same values.
//!
//! ```text
//! line   = space* state (space+ word)* space*         at most 1024 bytes
//! state  = "1" | "0"                                 0: off, and the rest is ignored
//! word   = xid | key "=" value                       the XID only right after the 1
//! xid    = digit+                                    0..=18446744073709551615
//! space  = " " | "\t" | "\n" | "\r" | "\v" | "\f"
//! ```
//!
//! | key | value | meaning while on |
//! |---|---|---|
//! | `devices` | comma list of ordinals 0..63 and up to 8 `GPU-`/`MIG-` UUIDs | only calls on these devices fault |
//! | `after_calls` | number | the first N calls that would fault pass |
//! | `after_ms` | number | faults start T ms after turning on |
//! | `mode` | `error` \| `hang` | return the XID's error, or block synchronizing calls |
//! | `sticky` | `1` \| `0` \| `true` \| `false` | after the first injected fault the process stays faulted |
//! | `surface` | `immediate` \| `async` | every call fails at once, or launches succeed and the error surfaces at the next synchronizing call |
//! | `scope` | `process` \| `device` | only processes that started before the fault was switched on meet it, or every process |
//! | `percent` | `P`, 0 < P ≤ 100, up to 6 decimals | each call that would fault does so with probability P/100 |
//! | `count` | number ≥ 1 | at most N injected faults, then the fault ends by itself |
//! | `functions` | comma list of hooks.list names and `@launch`, `@memcpy`, `@sync`, `@alloc` | only these functions fault |
//! | `seed` | number | the seed of `percent`'s draws |
//!
//! Each key at most once, in any order. Anything else makes the whole file malformed, which the
//! shim treats as off. [`Line`]'s `Display` writes the canonical form: the keys in the order
//! above, `sticky` as `1`/`0`, percentages in their shortest form.

#![no_std]
#![deny(unsafe_code)]

mod devices;
mod error;
mod functions;
mod value;

use core::fmt;

pub use devices::{Devices, Uuid};
pub use error::{Error, Problem};
pub use functions::Functions;
pub use value::{boolean, number, Mode, Percent, Scope, Surface};

/// The longest toggle file, in bytes.
pub const MAX_LEN: usize = 1024;
/// How many bytes a reader reads: one more than the longest file, so that a longer one is told
/// apart from a cut one (and refused whole).
pub const READ_LEN: usize = MAX_LEN + 1;
/// The highest device ordinal `devices=` takes.
pub const MAX_ORDINAL: u64 = 63;
/// The most UUIDs `devices=` takes.
pub const MAX_UUIDS: usize = 8;
/// The most decimals `percent=` takes.
pub const PERCENT_DECIMALS: u32 = 6;

/// White space between words.
pub const fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// A scenario key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Devices,
    AfterCalls,
    AfterMs,
    Mode,
    Sticky,
    Surface,
    Scope,
    Percent,
    Count,
    Functions,
    Seed,
}

impl Key {
    /// Every key, in canonical order.
    pub const ALL: [Key; 11] = [
        Key::Devices,
        Key::AfterCalls,
        Key::AfterMs,
        Key::Mode,
        Key::Sticky,
        Key::Surface,
        Key::Scope,
        Key::Percent,
        Key::Count,
        Key::Functions,
        Key::Seed,
    ];

    /// The name in the toggle file.
    pub const fn name(self) -> &'static str {
        match self {
            Key::Devices => "devices",
            Key::AfterCalls => "after_calls",
            Key::AfterMs => "after_ms",
            Key::Mode => "mode",
            Key::Sticky => "sticky",
            Key::Surface => "surface",
            Key::Scope => "scope",
            Key::Percent => "percent",
            Key::Count => "count",
            Key::Functions => "functions",
            Key::Seed => "seed",
        }
    }

    /// The shim's environment variable with the same meaning.
    pub const fn env(self) -> &'static str {
        match self {
            Key::Devices => "CUDA_FAULT_DEVICES",
            Key::AfterCalls => "CUDA_FAULT_AFTER_CALLS",
            Key::AfterMs => "CUDA_FAULT_AFTER_MS",
            Key::Mode => "CUDA_FAULT_MODE",
            Key::Sticky => "CUDA_FAULT_STICKY",
            Key::Surface => "CUDA_FAULT_SURFACE",
            Key::Scope => "CUDA_FAULT_SCOPE",
            Key::Percent => "CUDA_FAULT_PERCENT",
            Key::Count => "CUDA_FAULT_COUNT",
            Key::Functions => "CUDA_FAULT_FUNCTIONS",
            Key::Seed => "CUDA_FAULT_SEED",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name().as_bytes() == name)
    }
}

/// The keys a line sets; each one unset falls back to the environment's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Keys {
    pub devices: Option<Devices>,
    pub after_calls: Option<u64>,
    pub after_ms: Option<u64>,
    pub mode: Option<Mode>,
    pub sticky: Option<bool>,
    pub surface: Option<Surface>,
    pub scope: Option<Scope>,
    pub percent: Option<Percent>,
    pub count: Option<u64>,
    pub functions: Option<Functions>,
    pub seed: Option<u64>,
}

impl Keys {
    /// Whether `key` is set.
    pub fn has(&self, key: Key) -> bool {
        match key {
            Key::Devices => self.devices.is_some(),
            Key::AfterCalls => self.after_calls.is_some(),
            Key::AfterMs => self.after_ms.is_some(),
            Key::Mode => self.mode.is_some(),
            Key::Sticky => self.sticky.is_some(),
            Key::Surface => self.surface.is_some(),
            Key::Scope => self.scope.is_some(),
            Key::Percent => self.percent.is_some(),
            Key::Count => self.count.is_some(),
            Key::Functions => self.functions.is_some(),
            Key::Seed => self.seed.is_some(),
        }
    }

    /// Sets `key` from its written value; a key already set is an error.
    pub fn set(&mut self, key: Key, v: &[u8]) -> Result<(), Error> {
        if self.has(key) {
            return Err(Error::new(Problem::RepeatedKey, Some(key), v));
        }
        let keyed = |e: Error| e.with_key(key);
        match key {
            Key::Devices => self.devices = Some(Devices::parse(v).map_err(keyed)?),
            Key::AfterCalls => self.after_calls = Some(number(v).map_err(keyed)?),
            Key::AfterMs => self.after_ms = Some(number(v).map_err(keyed)?),
            Key::Mode => self.mode = Some(Mode::parse(v).map_err(keyed)?),
            Key::Sticky => self.sticky = Some(boolean(v).map_err(keyed)?),
            Key::Surface => self.surface = Some(Surface::parse(v).map_err(keyed)?),
            Key::Scope => self.scope = Some(Scope::parse(v).map_err(keyed)?),
            Key::Percent => self.percent = Some(Percent::parse(v).map_err(keyed)?),
            Key::Count => self.count = Some(value::positive(v).map_err(keyed)?),
            Key::Functions => self.functions = Some(Functions::parse(v).map_err(keyed)?),
            Key::Seed => self.seed = Some(number(v).map_err(keyed)?),
        }
        Ok(())
    }

    /// Applies one `key=value` word.
    pub fn set_word(&mut self, word: &[u8]) -> Result<(), Error> {
        let eq = word.iter().position(|&b| b == b'=').ok_or_else(|| Error::new(Problem::StrayWord, None, word))?;
        let key = Key::from_name(&word[..eq]).ok_or_else(|| Error::new(Problem::UnknownKey, None, word))?;
        self.set(key, &word[eq + 1..])
    }

    /// The scenario these keys make on top of `base` (the environment's), key by key.
    pub fn over(&self, base: &Scenario) -> Scenario {
        Scenario {
            devices: self.devices.or(base.devices),
            after_calls: self.after_calls.unwrap_or(base.after_calls),
            after_ms: self.after_ms.unwrap_or(base.after_ms),
            mode: self.mode.unwrap_or(base.mode),
            sticky: self.sticky.unwrap_or(base.sticky),
            surface: self.surface.or(base.surface),
            scope: self.scope.or(base.scope),
            percent: self.percent.or(base.percent),
            count: self.count.or(base.count),
            functions: self.functions.or(base.functions),
            seed: self.seed.or(base.seed),
        }
    }
}

impl fmt::Display for Keys {
    /// ` devices=1 after_ms=5000 …`: each set key with a leading space, in canonical order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.devices {
            write!(f, " devices={d}")?;
        }
        if let Some(n) = self.after_calls {
            write!(f, " after_calls={n}")?;
        }
        if let Some(n) = self.after_ms {
            write!(f, " after_ms={n}")?;
        }
        if let Some(m) = self.mode {
            write!(f, " mode={}", m.word())?;
        }
        if let Some(s) = self.sticky {
            write!(f, " sticky={}", u8::from(s))?;
        }
        if let Some(s) = self.surface {
            write!(f, " surface={}", s.word())?;
        }
        if let Some(s) = self.scope {
            write!(f, " scope={}", s.word())?;
        }
        if let Some(p) = self.percent {
            write!(f, " percent={p}")?;
        }
        if let Some(n) = self.count {
            write!(f, " count={n}")?;
        }
        if let Some(fs) = &self.functions {
            write!(f, " functions={fs}")?;
        }
        if let Some(s) = self.seed {
            write!(f, " seed={s}")?;
        }
        Ok(())
    }
}

/// The scenario in force: the environment's values with the file's keys on top.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scenario {
    /// None: every device.
    pub devices: Option<Devices>,
    pub after_calls: u64,
    pub after_ms: u64,
    pub mode: Mode,
    pub sticky: bool,
    /// None: the XID's (the XID table's surface column).
    pub surface: Option<Surface>,
    /// None: the XID's (the XID table's scope column).
    pub scope: Option<Scope>,
    /// None: every call that would fault does.
    pub percent: Option<Percent>,
    /// None: no limit.
    pub count: Option<u64>,
    /// None: every function.
    pub functions: Option<Functions>,
    /// None: a fresh seed per process.
    pub seed: Option<u64>,
}

impl fmt::Display for Scenario {
    /// ` (devices 1; functions @launch; after 5000 ms; after 10 calls; 5% of calls; at most 3
    /// faults; hang; sticky; surface async; scope process)`, or nothing for the plain "every call
    /// fails" scenario. The seed is shown only with `percent`, the one key that draws.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = " (";
        let mut part = |f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>| -> fmt::Result {
            f.write_str(sep)?;
            sep = "; ";
            f.write_fmt(args)
        };
        if let Some(d) = &self.devices {
            part(f, format_args!("devices {d}"))?;
        }
        if let Some(fs) = &self.functions {
            part(f, format_args!("functions {fs}"))?;
        }
        if self.after_ms > 0 {
            part(f, format_args!("after {} ms", self.after_ms))?;
        }
        if self.after_calls > 0 {
            part(f, format_args!("after {} calls", self.after_calls))?;
        }
        if let Some(p) = self.percent {
            part(f, format_args!("{p}% of calls"))?;
            if let Some(s) = self.seed {
                part(f, format_args!("seed {s}"))?;
            }
        }
        if let Some(n) = self.count {
            part(f, format_args!("at most {n} faults"))?;
        }
        if self.mode == Mode::Hang {
            part(f, format_args!("hang"))?;
        }
        if self.sticky {
            part(f, format_args!("sticky"))?;
        }
        if let Some(s) = self.surface {
            part(f, format_args!("surface {}", s.word()))?;
        }
        if let Some(s) = self.scope {
            part(f, format_args!("scope {}", s.word()))?;
        }
        if sep == "; " {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// What a toggle file says.
// No allocation (the shim parses inside CUDA processes), so no Box: the value lives on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Line {
    /// `0`: faults off, whatever the environment says.
    Off,
    /// `1 [xid] [key=value…]`.
    On {
        /// The XID to simulate; None: the environment's (`CUDA_XID_TYPE`).
        xid: Option<u64>,
        keys: Keys,
    },
}

/// The words of `bytes`, split on [`is_space`].
fn words(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&b| is_space(b)).filter(|w| !w.is_empty())
}

/// Parses a whole toggle file.
pub fn parse(bytes: &[u8]) -> Result<Line, Error> {
    if bytes.len() > MAX_LEN {
        return Err(Error::new(Problem::TooLong, None, b""));
    }
    let mut words = words(bytes);
    match words.next() {
        None => Err(Error::new(Problem::Empty, None, b"")),
        Some(b"0") => Ok(Line::Off),
        Some(b"1") => {
            let mut xid = None;
            let mut keys = Keys::default();
            for (i, w) in words.enumerate() {
                if w.contains(&b'=') {
                    keys.set_word(w)?;
                } else if i == 0 && w.iter().all(u8::is_ascii_digit) {
                    xid = Some(number(w)?);
                } else {
                    return Err(Error::new(Problem::StrayWord, None, w));
                }
            }
            Ok(Line::On { xid, keys })
        }
        Some(other) => Err(Error::new(Problem::NotState, None, other)),
    }
}

impl fmt::Display for Line {
    /// The canonical line, without the newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Off => f.write_str("0"),
            Line::On { xid, keys } => {
                f.write_str("1")?;
                if let Some(x) = xid {
                    write!(f, " {x}")?;
                }
                write!(f, "{keys}")
            }
        }
    }
}

#[cfg(test)]
mod tests;
