//! Why a toggle line or value is refused: a problem, the key it concerns and the offending
//! word, formatted as one line without allocating.

use core::fmt;

use crate::Key;

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The file holds nothing but white space.
    Empty,
    /// The file is longer than [`crate::MAX_LEN`] bytes.
    TooLong,
    /// The first word is not `1` or `0`.
    NotState,
    /// A word after `1` is neither the XID (right after `1`) nor `key=value`.
    StrayWord,
    /// `key=value` with a key the grammar does not have.
    UnknownKey,
    /// A key given twice.
    RepeatedKey,
    /// Not a decimal number.
    NotNumber,
    /// A decimal number above 18446744073709551615.
    OutOfRange,
    /// `count=0`: a count is at least 1.
    Zero,
    /// An empty item in a comma-separated list (`1,,2`, a trailing comma, nothing at all).
    EmptyItem,
    /// A device ordinal above [`crate::MAX_ORDINAL`].
    OrdinalRange,
    /// Neither an ordinal nor a `GPU-`/`MIG-` UUID.
    NotDevice,
    /// More than [`crate::MAX_UUIDS`] UUIDs.
    TooManyUuids,
    /// `mode=` other than `error` or `hang`.
    NotMode,
    /// `surface=` other than `immediate` or `async`.
    NotSurface,
    /// `scope=` other than `process` or `device`.
    NotScope,
    /// A boolean other than `1`, `0`, `true`, `false`.
    NotBool,
    /// Not a percentage like `5` or `0.1`.
    NotPercent,
    /// A percentage outside (0, 100].
    PercentRange,
    /// A percentage with more than [`crate::PERCENT_DECIMALS`] decimals.
    PercentDecimals,
    /// A function name that hooks.list does not list.
    UnknownFunction,
    /// A listed function that never faults (a pure lookup).
    ExemptFunction,
    /// `@name` that is not a family.
    UnknownFamily,
}

/// Bytes kept of the offending word for the message.
const ITEM_CAP: usize = 40;

/// A refusal: one line, e.g. `devices: '64' is outside 0..63`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub problem: Problem,
    /// The key concerned, if any.
    pub key: Option<Key>,
    item: [u8; ITEM_CAP],
    item_len: u8,
    truncated: bool,
}

impl Error {
    pub(crate) fn new(problem: Problem, key: Option<Key>, item: &[u8]) -> Error {
        let n = item.len().min(ITEM_CAP);
        let mut e = Error { problem, key, item: [0; ITEM_CAP], item_len: n as u8, truncated: n < item.len() };
        e.item[..n].copy_from_slice(&item[..n]);
        e
    }

    pub(crate) fn with_key(mut self, key: Key) -> Error {
        self.key.get_or_insert(key);
        self
    }

    /// The offending word as written (possibly shortened).
    pub fn item(&self) -> &[u8] {
        &self.item[..self.item_len as usize]
    }

    /// The message without the `key: ` prefix (for an environment variable named otherwise).
    pub fn detail(&self) -> Error {
        Error { key: None, ..*self }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({self})")
    }
}

/// The offending word, printable: non-printable bytes as `\xNN`.
struct Item<'a>(&'a [u8], bool);

impl fmt::Display for Item<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.1 {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Problem::*;
        let item = Item(self.item(), self.truncated);
        if let Some(k) = self.key {
            write!(f, "{}: ", k.name())?;
        }
        match self.problem {
            Empty => f.write_str("is empty"),
            TooLong => write!(f, "is longer than {} bytes", crate::MAX_LEN),
            NotState => write!(f, "starts with '{item}', not the word 1 or 0"),
            StrayWord => write!(f, "'{item}' is neither the XID (right after 1) nor key=value"),
            UnknownKey => {
                write!(f, "'{item}' is not a key (")?;
                for (i, k) in Key::ALL.iter().enumerate() {
                    write!(f, "{}{}", if i == 0 { "" } else { ", " }, k.name())?;
                }
                f.write_str(")")
            }
            RepeatedKey => f.write_str("is given twice"),
            NotNumber => write!(f, "'{item}' is not a number"),
            OutOfRange => write!(f, "'{item}' is out of range (at most {})", u64::MAX),
            Zero => f.write_str("must be at least 1"),
            EmptyItem => f.write_str("has an empty item"),
            OrdinalRange => write!(f, "device '{item}' is outside 0..{}", crate::MAX_ORDINAL),
            NotDevice => write!(
                f,
                "'{item}' is neither an ordinal 0..{} nor a GPU-/MIG- UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                crate::MAX_ORDINAL
            ),
            TooManyUuids => write!(f, "lists more than {} UUIDs", crate::MAX_UUIDS),
            NotMode => write!(f, "'{item}' is not error or hang"),
            NotBool => write!(f, "'{item}' is not 1, 0, true or false"),
            NotSurface => write!(f, "'{item}' is not immediate or async"),
            NotScope => write!(f, "'{item}' is not process or device"),
            NotPercent => write!(f, "'{item}' is not a percentage like 5 or 0.1"),
            PercentRange => write!(f, "'{item}' is not above 0 and at most 100"),
            PercentDecimals => write!(f, "'{item}' has more than {} decimals", crate::PERCENT_DECIMALS),
            UnknownFunction => write!(f, "'{item}' is not a function in hooks.list"),
            ExemptFunction => write!(f, "'{item}' never faults (a pure lookup)"),
            UnknownFamily => {
                write!(f, "'{item}' is not a family (")?;
                for (i, fam) in hook_list::FAMILIES.iter().enumerate() {
                    write!(f, "{}@{}", if i == 0 { "" } else { ", " }, fam.name)?;
                }
                f.write_str(")")
            }
        }
    }
}
