//! Fault scenarios beyond on/off: which devices fail, how long after turning on, whether calls
//! hang instead of failing, whether the fault latches. Set by `CUDA_FAULT_DEVICES`,
//! `CUDA_FAULT_AFTER_CALLS`, `CUDA_FAULT_AFTER_MS`, `CUDA_FAULT_MODE`, `CUDA_FAULT_STICKY`, or by
//! the same keys in the toggle file (`devices=`, `after_calls=`, `after_ms=`, `mode=`, `sticky=`),
//! which override the environment key by key while the file is on.
//!
//! The active scenario is published through a sequence lock over atomic words: one writer (the
//! toggle checker), readers on the slow path only, never a lock or allocation.

use core::fmt;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::envp;

pub const MAX_UUIDS: usize = 8;

/// A 16-byte GPU (or MIG) UUID, as `cuDeviceGetUuid` returns it.
pub type Uuid = [u8; 16];

#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Devices {
    /// Ordinals 0..63 as the process sees them (after CUDA_VISIBLE_DEVICES).
    pub ordinals: u64,
    pub uuids: [Uuid; MAX_UUIDS],
    pub nuuids: usize,
}

impl Devices {
    pub fn has_ordinal(&self, ordinal: i64) -> bool {
        (0..64).contains(&ordinal) && self.ordinals & (1 << ordinal) != 0
    }

    pub fn has_uuid(&self, uuid: &Uuid) -> bool {
        self.uuids[..self.nuuids].contains(uuid)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Scenario {
    /// None: every device.
    pub devices: Option<Devices>,
    pub after_calls: u64,
    pub after_ms: u64,
    pub hang: bool,
    pub sticky: bool,
}

/// The keys a toggle file sets; unset keys fall back to the environment's scenario.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Overrides {
    pub devices: Option<Devices>,
    pub after_calls: Option<u64>,
    pub after_ms: Option<u64>,
    pub hang: Option<bool>,
    pub sticky: Option<bool>,
}

impl Overrides {
    pub fn over(&self, env: &Scenario) -> Scenario {
        Scenario {
            devices: self.devices.or(env.devices),
            after_calls: self.after_calls.unwrap_or(env.after_calls),
            after_ms: self.after_ms.unwrap_or(env.after_ms),
            hang: self.hang.unwrap_or(env.hang),
            sticky: self.sticky.unwrap_or(env.sticky),
        }
    }

    /// Applies one `key=value` word of the toggle file; Err names what is wrong.
    pub fn set(&mut self, word: &[u8]) -> Result<(), &'static str> {
        let eq = word.iter().position(|&b| b == b'=').ok_or("has a word that is neither an XID nor key=value")?;
        let (key, value) = (&word[..eq], &word[eq + 1..]);
        let dup = "repeats a key";
        match key {
            b"devices" if self.devices.is_none() => self.devices = Some(parse_devices(value).ok_or("has a bad devices= list")?),
            b"after_calls" if self.after_calls.is_none() => {
                self.after_calls = Some(envp::parse_u64(value).ok_or("has a bad after_calls= number")?)
            }
            b"after_ms" if self.after_ms.is_none() => {
                self.after_ms = Some(envp::parse_u64(value).ok_or("has a bad after_ms= number")?)
            }
            b"mode" if self.hang.is_none() => self.hang = Some(parse_mode(value).ok_or("has a mode= other than error or hang")?),
            b"sticky" if self.sticky.is_none() => self.sticky = Some(parse_bool(value).ok_or("has a sticky= other than 1 or 0")?),
            b"devices" | b"after_calls" | b"after_ms" | b"mode" | b"sticky" => return Err(dup),
            _ => return Err("has an unknown key (devices, after_calls, after_ms, mode, sticky)"),
        }
        Ok(())
    }
}

pub fn parse_mode(v: &[u8]) -> Option<bool> {
    match v {
        b"error" => Some(false),
        b"hang" => Some(true),
        _ => None,
    }
}

pub fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"1" => Some(true),
        b"0" => Some(false),
        _ if v.eq_ignore_ascii_case(b"true") => Some(true),
        _ if v.eq_ignore_ascii_case(b"false") => Some(false),
        _ => None,
    }
}

/// `1,3` or `GPU-8f2c1a3e-1111-2222-3333-444455556666,0`: ordinals 0..63 and up to 8 UUIDs.
pub fn parse_devices(v: &[u8]) -> Option<Devices> {
    let mut d = Devices::default();
    for item in v.split(|&b| b == b',') {
        if let Some(n) = envp::parse_u64(item) {
            if n >= 64 {
                return None;
            }
            d.ordinals |= 1 << n;
        } else {
            let uuid = parse_uuid(item)?;
            if d.nuuids == MAX_UUIDS {
                return None;
            }
            d.uuids[d.nuuids] = uuid;
            d.nuuids += 1;
        }
    }
    Some(d)
}

/// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (or `MIG-…`) to its 16 bytes.
pub fn parse_uuid(s: &[u8]) -> Option<Uuid> {
    let hex = s.strip_prefix(b"GPU-").or_else(|| s.strip_prefix(b"MIG-"))?;
    if hex.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut nibble = None;
    for (i, &c) in hex.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = (c as char).to_digit(16)? as u8;
        match nibble.take() {
            None => nibble = Some(v),
            Some(hi) => {
                out[n] = hi << 4 | v;
                n += 1;
            }
        }
    }
    (n == 16).then_some(out)
}

impl fmt::Display for Scenario {
    /// ` (devices 1,GPU-…; after 5000 ms; after 10 calls; hang; sticky)`, or nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Scenario::default() {
            return Ok(());
        }
        let mut sep = " (";
        if let Some(d) = &self.devices {
            f.write_str(sep)?;
            f.write_str("devices ")?;
            let mut first = true;
            for i in 0..64 {
                if d.has_ordinal(i) {
                    write!(f, "{}{i}", if first { "" } else { "," })?;
                    first = false;
                }
            }
            for u in &d.uuids[..d.nuuids] {
                f.write_str(if first { "GPU-" } else { ",GPU-" })?;
                for (i, b) in u.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                first = false;
            }
            sep = "; ";
        }
        if self.after_ms > 0 {
            write!(f, "{sep}after {} ms", self.after_ms)?;
            sep = "; ";
        }
        if self.after_calls > 0 {
            write!(f, "{sep}after {} calls", self.after_calls)?;
            sep = "; ";
        }
        if self.hang {
            write!(f, "{sep}hang")?;
            sep = "; ";
        }
        if self.sticky {
            write!(f, "{sep}sticky")?;
        }
        f.write_str(")")
    }
}

// --- publication ---------------------------------------------------------------------------

const WORDS: usize = 5 + 2 * MAX_UUIDS;
static SEQ: AtomicU32 = AtomicU32::new(0);
static CELL: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

fn encode(s: &Scenario) -> [u64; WORDS] {
    let mut w = [0u64; WORDS];
    let d = s.devices.unwrap_or_default();
    w[0] = u64::from(s.devices.is_some()) | u64::from(s.hang) << 1 | u64::from(s.sticky) << 2 | (d.nuuids as u64) << 8;
    w[1] = s.after_calls;
    w[2] = s.after_ms;
    w[3] = d.ordinals;
    for (i, u) in d.uuids.iter().enumerate() {
        w[5 + 2 * i] = u64::from_le_bytes(u[..8].try_into().unwrap());
        w[6 + 2 * i] = u64::from_le_bytes(u[8..].try_into().unwrap());
    }
    w
}

fn decode(w: &[u64; WORDS]) -> Scenario {
    let mut d = Devices { ordinals: w[3], nuuids: ((w[0] >> 8) as usize).min(MAX_UUIDS), ..Devices::default() };
    for i in 0..MAX_UUIDS {
        d.uuids[i][..8].copy_from_slice(&w[5 + 2 * i].to_le_bytes());
        d.uuids[i][8..].copy_from_slice(&w[6 + 2 * i].to_le_bytes());
    }
    Scenario {
        devices: (w[0] & 1 != 0).then_some(d),
        after_calls: w[1],
        after_ms: w[2],
        hang: w[0] & 2 != 0,
        sticky: w[0] & 4 != 0,
    }
}

/// Publishes the scenario (single writer: the toggle checker).
pub fn publish(s: &Scenario) {
    let w = encode(s);
    SEQ.fetch_add(1, Ordering::AcqRel);
    for (cell, v) in CELL.iter().zip(w) {
        cell.store(v, Ordering::Relaxed);
    }
    SEQ.fetch_add(1, Ordering::Release);
}

/// The scenario in force.
pub fn current() -> Scenario {
    loop {
        let before = SEQ.load(Ordering::Acquire);
        if before & 1 == 0 {
            let mut w = [0u64; WORDS];
            for (v, cell) in w.iter_mut().zip(&CELL) {
                *v = cell.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if SEQ.load(Ordering::Relaxed) == before {
                return decode(&w);
            }
        }
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_uuids() {
        let d = parse_devices(b"1,3").unwrap();
        assert!(d.has_ordinal(1) && d.has_ordinal(3) && !d.has_ordinal(0));
        let d = parse_devices(b"GPU-fa4ec0da-0000-4000-8000-000000000001,0").unwrap();
        assert_eq!(d.nuuids, 1);
        assert_eq!(d.uuids[0], [0xfa, 0x4e, 0xc0, 0xda, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1]);
        assert!(d.has_ordinal(0));
        for bad in [&b""[..], b"1,", b",1", b"64", b"x", b"GPU-", b"GPU-fa4ec0da-0000-4000-8000-00000000000", b"GPU-fa4ec0da00000-4000-8000-000000000001", b"GPU-zz4ec0da-0000-4000-8000-000000000001"] {
            assert!(parse_devices(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn overrides_apply_key_by_key() {
        let mut o = Overrides::default();
        o.set(b"devices=1").unwrap();
        o.set(b"after_ms=5000").unwrap();
        assert_eq!(o.set(b"after_ms=1"), Err("repeats a key"));
        assert!(o.set(b"mode=crash").is_err());
        assert!(o.set(b"colour=blue").is_err());
        assert!(o.set(b"sticky").is_err());
        let env = Scenario { after_calls: 7, hang: true, ..Scenario::default() };
        let s = o.over(&env);
        assert_eq!((s.after_calls, s.after_ms, s.hang, s.sticky), (7, 5000, true, false));
        assert!(s.devices.unwrap().has_ordinal(1));
    }

    #[test]
    fn publication_round_trips_and_displays() {
        let s = Scenario {
            devices: parse_devices(b"1,GPU-fa4ec0da-0000-4000-8000-000000000001"),
            after_calls: 3,
            after_ms: 5000,
            hang: true,
            sticky: true,
        };
        publish(&s);
        assert_eq!(current(), s);
        assert_eq!(
            format!("{s}"),
            " (devices 1,GPU-fa4ec0da-0000-4000-8000-000000000001; after 5000 ms; after 3 calls; hang; sticky)"
        );
        assert_eq!(format!("{}", Scenario::default()), "");
    }
}
