//! What a fault left in this process, whatever the toggle says since: nothing, a sticky fault
//! (`sticky=1`: the scenario in force stays in force), an asynchronous fault waiting for the next
//! synchronizing call (`surface=async`), or the broken context it left when it surfaced. While
//! anything is latched the toggle checker applies no change and the gate stays open.

use core::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Latch {
    None = 0,
    /// A sticky fault was injected: the scenario stays, `count` no longer ends it.
    Sticky = 1,
    /// An asynchronous fault is in flight: it surfaces at the next synchronizing call.
    Pending = 2,
    /// An asynchronous fault surfaced: every call returns it, as from a broken context.
    Broken = 3,
}

static LATCH: AtomicU8 = AtomicU8::new(Latch::None as u8);

pub fn get() -> Latch {
    match LATCH.load(Ordering::Acquire) {
        1 => Latch::Sticky,
        2 => Latch::Pending,
        3 => Latch::Broken,
        _ => Latch::None,
    }
}

pub fn held() -> bool {
    get() != Latch::None
}

/// Moves from `from` to `to`; false when another thread moved first.
pub fn advance(from: Latch, to: Latch) -> bool {
    LATCH.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok()
}

/// In a forked child: a new process, with a context of its own.
pub fn after_fork() {
    LATCH.store(Latch::None as u8, Ordering::Release);
}
