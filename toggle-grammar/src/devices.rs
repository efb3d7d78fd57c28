//! `devices=`: which GPUs fail, as ordinals (as the process sees them, after
//! CUDA_VISIBLE_DEVICES) and/or UUIDs.

use core::fmt;

use crate::error::{Error, Problem};
use crate::value::number;

/// A GPU or MIG UUID: its 16 bytes, as `cuDeviceGetUuid` returns them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Uuid {
    /// Written `MIG-…` rather than `GPU-…`.
    pub mig: bool,
    pub bytes: [u8; 16],
}

impl Uuid {
    /// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` or `MIG-…`, hex digits in either case.
    pub fn parse(s: &[u8]) -> Option<Uuid> {
        let (mig, hex) = match s.get(..4)? {
            b"GPU-" => (false, &s[4..]),
            b"MIG-" => (true, &s[4..]),
            _ => return None,
        };
        if hex.len() != 36 {
            return None;
        }
        let mut bytes = [0u8; 16];
        let mut n = 0;
        let mut high: Option<u8> = None;
        for (i, &c) in hex.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            let v = (c as char).to_digit(16)? as u8;
            match high.take() {
                None => high = Some(v),
                Some(h) => {
                    bytes[n] = h << 4 | v;
                    n += 1;
                }
            }
        }
        Some(Uuid { mig, bytes })
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.mig { "MIG-" } else { "GPU-" })?;
        for (i, b) in self.bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A set of ordinals 0..=63 and up to [`crate::MAX_UUIDS`] UUIDs (in the order given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Devices {
    pub ordinals: u64,
    uuids: [Uuid; crate::MAX_UUIDS],
    nuuids: u8,
}

impl Devices {
    /// `1,3` or `GPU-8f2c1a3e-1111-2222-3333-444455556666,0`: a non-empty comma list. A UUID
    /// listed twice counts once.
    pub fn parse(v: &[u8]) -> Result<Devices, Error> {
        let mut d = Devices::default();
        for item in v.split(|&b| b == b',') {
            if item.is_empty() {
                return Err(Error::new(Problem::EmptyItem, None, v));
            }
            if item.iter().all(u8::is_ascii_digit) {
                let n = number(item).map_err(|_| Error::new(Problem::OrdinalRange, None, item))?;
                if n > crate::MAX_ORDINAL {
                    return Err(Error::new(Problem::OrdinalRange, None, item));
                }
                d.ordinals |= 1 << n;
            } else {
                let uuid = Uuid::parse(item).ok_or_else(|| Error::new(Problem::NotDevice, None, item))?;
                if !d.uuids().contains(&uuid) {
                    if usize::from(d.nuuids) == crate::MAX_UUIDS {
                        return Err(Error::new(Problem::TooManyUuids, None, item));
                    }
                    d.uuids[usize::from(d.nuuids)] = uuid;
                    d.nuuids += 1;
                }
            }
        }
        Ok(d)
    }

    /// A set from its parts; None with more than [`crate::MAX_UUIDS`] UUIDs.
    pub fn from_parts(ordinals: u64, uuids: &[Uuid]) -> Option<Devices> {
        let mut d = Devices { ordinals, ..Devices::default() };
        d.uuids.get_mut(..uuids.len())?.copy_from_slice(uuids);
        d.nuuids = uuids.len() as u8;
        Some(d)
    }

    pub fn uuids(&self) -> &[Uuid] {
        &self.uuids[..usize::from(self.nuuids)]
    }

    pub fn has_ordinal(&self, ordinal: i64) -> bool {
        (0..64).contains(&ordinal) && self.ordinals & (1 << ordinal) != 0
    }

    /// Whether a device with these UUID bytes is listed (GPU- or MIG- alike).
    pub fn has_uuid(&self, bytes: &[u8; 16]) -> bool {
        self.uuids().iter().any(|u| &u.bytes == bytes)
    }
}

impl fmt::Display for Devices {
    /// Ordinals ascending, then the UUIDs: `0,3,GPU-…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for i in 0..64 {
            if self.ordinals & (1 << i) != 0 {
                write!(f, "{sep}{i}")?;
                sep = ",";
            }
        }
        for u in self.uuids() {
            write!(f, "{sep}{u}")?;
            sep = ",";
        }
        Ok(())
    }
}
