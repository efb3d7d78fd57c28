//! The scenario in force, as the slow path reads it on every faulting call, published without a
//! lock: two slots, each guarded by its own sequence number. The one writer (the toggle checker,
//! serialized by the check lock) fills the slot readers are not pointed at, then points them at
//! it. A reader therefore never waits for a writer that was preempted mid-write: if the slot it
//! read changed under it, the other slot is complete.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hook_list::{FunctionId, FUNCTION_WORDS};
use toggle_grammar::{Devices, Mode, Percent, Scenario, Surface, Uuid, MAX_UUIDS};

/// A scenario with its seed and surface resolved and its function set expanded to a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    pub devices: Option<Devices>,
    pub functions: Option<[u64; FUNCTION_WORDS]>,
    pub after_calls: u64,
    pub after_ms: u64,
    pub hang: bool,
    pub sticky: bool,
    /// The fault surfaces late (`surface=async`, or the XID's default).
    pub asynchronous: bool,
    pub percent: Option<Percent>,
    pub count: Option<u64>,
    pub seed: u64,
}

impl Plan {
    /// `seed` is used when the scenario names none; `asynchronous` is the XID's surface, used
    /// when the scenario names none.
    pub fn of(s: &Scenario, seed: u64, asynchronous: bool) -> Plan {
        Plan {
            devices: s.devices,
            functions: s.functions.map(|f| f.members()),
            after_calls: s.after_calls,
            after_ms: s.after_ms,
            hang: s.mode == Mode::Hang,
            sticky: s.sticky,
            asynchronous: s.surface.map_or(asynchronous, |x| x == Surface::Async),
            percent: s.percent,
            count: s.count,
            seed: s.seed.unwrap_or(seed),
        }
    }

    /// Whether function `id` may fault (None: a function hooks.list does not list).
    pub fn selects(&self, id: Option<FunctionId>) -> bool {
        match (&self.functions, id) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(bits), Some(id)) => bits[usize::from(id) / 64] & (1 << (id % 64)) != 0,
        }
    }
}

const FIXED: usize = 9;
const WORDS: usize = FIXED + 2 * MAX_UUIDS + FUNCTION_WORDS;

const HAS_DEVICES: u64 = 1;
const HAS_FUNCTIONS: u64 = 1 << 1;
const HANG: u64 = 1 << 2;
const STICKY: u64 = 1 << 3;
const HAS_COUNT: u64 = 1 << 4;
const ASYNCHRONOUS: u64 = 1 << 5;

fn encode(p: &Plan) -> [u64; WORDS] {
    let mut w = [0u64; WORDS];
    let d = p.devices.unwrap_or_default();
    let bit = |on: bool, b: u64| if on { b } else { 0 };
    w[0] = bit(p.devices.is_some(), HAS_DEVICES)
        | bit(p.functions.is_some(), HAS_FUNCTIONS)
        | bit(p.hang, HANG)
        | bit(p.sticky, STICKY)
        | bit(p.count.is_some(), HAS_COUNT)
        | bit(p.asynchronous, ASYNCHRONOUS);
    w[1] = p.after_calls;
    w[2] = p.after_ms;
    w[3] = p.percent.map_or(0, |x| u64::from(x.micros()));
    w[4] = p.count.unwrap_or(0);
    w[5] = p.seed;
    w[6] = d.ordinals;
    w[7] = d.uuids().len() as u64;
    for (i, u) in d.uuids().iter().enumerate() {
        w[8] |= u64::from(u.mig) << i;
        w[FIXED + 2 * i] = u64::from_le_bytes(u.bytes[..8].try_into().unwrap());
        w[FIXED + 2 * i + 1] = u64::from_le_bytes(u.bytes[8..].try_into().unwrap());
    }
    let f = p.functions.unwrap_or_default();
    w[FIXED + 2 * MAX_UUIDS..].copy_from_slice(&f);
    w
}

fn decode(w: &[u64; WORDS]) -> Plan {
    let mut uuids = [Uuid::default(); MAX_UUIDS];
    let n = (w[7] as usize).min(MAX_UUIDS);
    for (i, u) in uuids.iter_mut().enumerate().take(n) {
        u.mig = w[8] & (1 << i) != 0;
        u.bytes[..8].copy_from_slice(&w[FIXED + 2 * i].to_le_bytes());
        u.bytes[8..].copy_from_slice(&w[FIXED + 2 * i + 1].to_le_bytes());
    }
    let mut functions = [0u64; FUNCTION_WORDS];
    functions.copy_from_slice(&w[FIXED + 2 * MAX_UUIDS..]);
    Plan {
        devices: (w[0] & HAS_DEVICES != 0).then(|| Devices::from_parts(w[6], &uuids[..n])).flatten(),
        functions: (w[0] & HAS_FUNCTIONS != 0).then_some(functions),
        after_calls: w[1],
        after_ms: w[2],
        hang: w[0] & HANG != 0,
        sticky: w[0] & STICKY != 0,
        asynchronous: w[0] & ASYNCHRONOUS != 0,
        percent: Percent::from_micros(w[3] as u32),
        count: (w[0] & HAS_COUNT != 0).then_some(w[4]),
        seed: w[5],
    }
}

struct Slot {
    seq: AtomicU32,
    words: [AtomicU64; WORDS],
}

static SLOTS: [Slot; 2] = [const { Slot { seq: AtomicU32::new(0), words: [const { AtomicU64::new(0) }; WORDS] } }; 2];
static CURRENT: AtomicUsize = AtomicUsize::new(0);

/// Publishes `p` (the one writer: the toggle checker, under the check lock).
pub fn publish(p: &Plan) {
    let next = 1 - CURRENT.load(Ordering::Relaxed);
    let slot = &SLOTS[next];
    slot.seq.fetch_add(1, Ordering::AcqRel);
    for (cell, v) in slot.words.iter().zip(encode(p)) {
        cell.store(v, Ordering::Relaxed);
    }
    slot.seq.fetch_add(1, Ordering::Release);
    CURRENT.store(next, Ordering::Release);
}

/// The plan in force.
pub fn current() -> Plan {
    loop {
        let slot = &SLOTS[CURRENT.load(Ordering::Acquire)];
        let before = slot.seq.load(Ordering::Acquire);
        if before & 1 == 0 {
            let mut w = [0u64; WORDS];
            for (v, cell) in w.iter_mut().zip(&slot.words) {
                *v = cell.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) == before {
                return decode(&w);
            }
        }
        // The writer is on its second publication since CURRENT was read: the slot it now
        // points at is complete.
        core::hint::spin_loop();
    }
}

/// In a forked child: a publication the parent had in progress never finishes; the slot it was
/// filling is not the current one, so only its sequence number needs mending.
pub fn after_fork() {
    for slot in &SLOTS {
        let s = slot.seq.load(Ordering::Relaxed);
        slot.seq.store(s & !1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip() {
        let keys = |line: &[u8]| match toggle_grammar::parse(line).unwrap() {
            toggle_grammar::Line::On { keys, .. } => keys,
            _ => unreachable!(),
        };
        let k = keys(
            b"1 devices=1,MIG-fa4ec0da-0000-4000-8000-000000000001,GPU-fa4ec0da-0000-4000-8000-000000000002 \
              after_calls=3 after_ms=5000 mode=hang sticky=1 percent=0.25 count=9 functions=@launch,cudaMalloc",
        );
        let p = Plan::of(&k.over(&Scenario::default()), 42, true);
        assert_eq!(p.seed, 42);
        assert!(p.asynchronous, "the XID's surface when the scenario names none");
        publish(&p);
        assert!(current() == p);
        let q = Plan::of(&Scenario { surface: Some(Surface::Immediate), ..Scenario::default() }, 7, true);
        assert!(!q.asynchronous, "surface= overrides the XID's");
        publish(&q);
        assert!(current() == q);
        assert!(q.selects(None) && !p.selects(None));
        assert!(p.selects(hook_list::function_named(b"cuLaunchKernel")));
        assert!(!p.selects(hook_list::function_named(b"cudaFree")));
    }
}
