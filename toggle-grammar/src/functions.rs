//! `functions=`: only these functions fault. Names come from hooks.list (a listed name or its
//! base name, runtime, driver and NVML alike); `@launch`, `@memcpy`, `@sync`, `@alloc` name the
//! families marked there.

use core::fmt;

use hook_list::{flags, FunctionId, FAMILIES, FUNCTIONS, FUNCTION_WORDS};

use crate::error::{Error, Problem};

/// A set of functions: named ones and whole families.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Functions {
    named: [u64; FUNCTION_WORDS],
    /// Bit i: `FAMILIES[i]`.
    families: u8,
}

impl Functions {
    pub fn parse(v: &[u8]) -> Result<Functions, Error> {
        let mut set = Functions::default();
        for item in v.split(|&b| b == b',') {
            if item.is_empty() {
                return Err(Error::new(Problem::EmptyItem, None, v));
            }
            if let Some(family) = item.strip_prefix(b"@") {
                let i =
                    hook_list::family_named(family).ok_or_else(|| Error::new(Problem::UnknownFamily, None, item))?;
                set.families |= 1 << i;
                continue;
            }
            let id = hook_list::function_named(item).ok_or_else(|| Error::new(Problem::UnknownFunction, None, item))?;
            if FUNCTIONS[usize::from(id)].flags & flags::EXEMPT != 0 {
                return Err(Error::new(Problem::ExemptFunction, None, item));
            }
            set.named[usize::from(id) / 64] |= 1 << (id % 64);
        }
        Ok(set)
    }

    /// Whether function `id` is in the set, by name or by family.
    pub fn contains(&self, id: FunctionId) -> bool {
        let named = self.named[usize::from(id) / 64] & (1 << (id % 64)) != 0;
        named || self.family_flags() & FUNCTIONS[usize::from(id)].flags != 0
    }

    /// Every member as a bit set over `hook_list::FUNCTIONS`.
    pub fn members(&self) -> [u64; FUNCTION_WORDS] {
        let mut bits = self.named;
        let fams = self.family_flags();
        for (id, f) in FUNCTIONS.iter().enumerate() {
            if f.flags & fams != 0 {
                bits[id / 64] |= 1 << (id % 64);
            }
        }
        bits
    }

    fn family_flags(&self) -> flags::Flags {
        FAMILIES.iter().enumerate().filter(|(i, _)| self.families & (1 << i) != 0).fold(0, |acc, (_, f)| acc | f.flag)
    }
}

impl fmt::Display for Functions {
    /// Families first (`@launch,@sync`), then base names in table order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (i, fam) in FAMILIES.iter().enumerate() {
            if self.families & (1 << i) != 0 {
                write!(f, "{sep}@{}", fam.name)?;
                sep = ",";
            }
        }
        for (id, func) in FUNCTIONS.iter().enumerate() {
            if self.named[id / 64] & (1 << (id % 64)) != 0 {
                write!(f, "{sep}{}", func.name)?;
                sep = ",";
            }
        }
        Ok(())
    }
}
