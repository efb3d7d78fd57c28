//! Scalar values: numbers, booleans, the mode and percentages.

use core::fmt;

use crate::error::{Error, Problem};

/// A decimal number 0..=18446744073709551615 (digits only; leading zeros allowed).
pub fn number(v: &[u8]) -> Result<u64, Error> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(Error::new(Problem::NotNumber, None, v));
    }
    let mut n: u64 = 0;
    for &d in v {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or_else(|| Error::new(Problem::OutOfRange, None, v))?;
    }
    Ok(n)
}

/// A number of at least 1.
pub fn positive(v: &[u8]) -> Result<u64, Error> {
    match number(v)? {
        0 => Err(Error::new(Problem::Zero, None, v)),
        n => Ok(n),
    }
}

/// `1`, `0`, `true`, `false` (the words in any case).
pub fn boolean(v: &[u8]) -> Result<bool, Error> {
    match v {
        b"1" => Ok(true),
        b"0" => Ok(false),
        _ if v.eq_ignore_ascii_case(b"true") => Ok(true),
        _ if v.eq_ignore_ascii_case(b"false") => Ok(false),
        _ => Err(Error::new(Problem::NotBool, None, v)),
    }
}

/// What a faulted call does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Return the XID's error.
    #[default]
    Error,
    /// Synchronizing calls block until the fault is off.
    Hang,
}

impl Mode {
    pub const fn word(self) -> &'static str {
        match self {
            Mode::Error => "error",
            Mode::Hang => "hang",
        }
    }

    pub fn parse(v: &[u8]) -> Result<Mode, Error> {
        match v {
            b"error" => Ok(Mode::Error),
            b"hang" => Ok(Mode::Hang),
            _ => Err(Error::new(Problem::NotMode, None, v)),
        }
    }
}

/// Where a fault shows: the `surface` key (default: the XID's, from the XID table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Surface {
    /// Every call fails at once.
    Immediate,
    /// Launches and asynchronous work return success; the error surfaces at the next
    /// synchronizing call and then sticks to the process.
    Async,
}

impl Surface {
    pub const fn word(self) -> &'static str {
        match self {
            Surface::Immediate => "immediate",
            Surface::Async => "async",
        }
    }

    pub fn parse(v: &[u8]) -> Result<Surface, Error> {
        match v {
            b"immediate" => Ok(Surface::Immediate),
            b"async" => Ok(Surface::Async),
            _ => Err(Error::new(Problem::NotSurface, None, v)),
        }
    }
}

/// Which processes a fault reaches: the `scope` key (default: the XID's, from the XID table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Processes that started after the fault was switched on run clean.
    Process,
    /// Every process on the device fails while it is on.
    Device,
}

impl Scope {
    pub const fn word(self) -> &'static str {
        match self {
            Scope::Process => "process",
            Scope::Device => "device",
        }
    }

    pub fn parse(v: &[u8]) -> Result<Scope, Error> {
        match v {
            b"process" => Ok(Scope::Process),
            b"device" => Ok(Scope::Device),
            _ => Err(Error::new(Problem::NotScope, None, v)),
        }
    }
}

/// A share of calls, above 0 and at most 100 percent, in steps of 10⁻⁶ percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u32);

impl Percent {
    /// Units per percent.
    pub const SCALE: u32 = 10u32.pow(crate::PERCENT_DECIMALS);
    pub const HUNDRED: Percent = Percent(100 * Percent::SCALE);

    /// From millionths of a percent (1..=100_000_000).
    pub const fn from_micros(m: u32) -> Option<Percent> {
        if m == 0 || m > Percent::HUNDRED.0 {
            None
        } else {
            Some(Percent(m))
        }
    }

    /// Millionths of a percent.
    pub const fn micros(self) -> u32 {
        self.0
    }

    /// `5`, `0.1`, `100`, `12.345678`: digits, optionally a point and 1 to 6 more digits.
    pub fn parse(v: &[u8]) -> Result<Percent, Error> {
        let bad = |p| Error::new(p, None, v);
        let (int, frac) = match v.iter().position(|&b| b == b'.') {
            Some(dot) => (&v[..dot], Some(&v[dot + 1..])),
            None => (v, None),
        };
        let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return Err(bad(Problem::NotPercent));
        }
        let frac = frac.unwrap_or(b"");
        if frac.len() > crate::PERCENT_DECIMALS as usize {
            return Err(bad(Problem::PercentDecimals));
        }
        // Leading zeros aside, an integer part of more than 3 digits is above 100.
        let int = &int[int.iter().position(|&b| b != b'0').unwrap_or(int.len())..];
        if int.len() > 3 {
            return Err(bad(Problem::PercentRange));
        }
        let mut micros: u32 = 0;
        for &d in int {
            micros = micros * 10 + u32::from(d - b'0');
        }
        micros *= Percent::SCALE;
        let mut scale = Percent::SCALE;
        for &d in frac {
            scale /= 10;
            micros += u32::from(d - b'0') * scale;
        }
        Percent::from_micros(micros).ok_or_else(|| bad(Problem::PercentRange))
    }

    /// Whether a uniformly random `draw` falls in this share: exactly P/100 of all u64 values.
    pub fn hits(self, draw: u64) -> bool {
        u128::from(draw) * u128::from(Percent::HUNDRED.0) < u128::from(self.0) << 64
    }
}

impl fmt::Display for Percent {
    /// The shortest form that parses back to the same value: `5`, `0.1`, `12.345678`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, mut frac) = (self.0 / Percent::SCALE, self.0 % Percent::SCALE);
        write!(f, "{int}")?;
        if frac != 0 {
            let mut width = crate::PERCENT_DECIMALS as usize;
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            write!(f, ".{frac:0width$}")?;
        }
        Ok(())
    }
}
