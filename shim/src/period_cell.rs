//! Per-thread state of the current on-period: what a thread remembers about its own calls
//! (draws made, its last injected error, whether its last runtime call passed) is forgotten when
//! faults turn on anew. On-period numbers start at 1, so a fresh cell holds nothing.

use core::cell::Cell;

pub struct PeriodCell<T: Copy> {
    cell: Cell<(u32, T)>,
    empty: T,
}

impl<T: Copy> PeriodCell<T> {
    /// A cell whose value is `empty` in every period until set.
    pub const fn new(empty: T) -> PeriodCell<T> {
        PeriodCell { cell: Cell::new((0, empty)), empty }
    }

    /// The value set in `period`, or the empty one.
    pub fn get(&self, period: u32) -> T {
        match self.cell.get() {
            (p, v) if p == period => v,
            _ => self.empty,
        }
    }

    pub fn set(&self, period: u32, value: T) {
        self.cell.set((period, value));
    }
}
