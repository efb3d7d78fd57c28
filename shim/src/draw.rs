//! The pseudo-random draws of `percent`: a pure function of the seed and of how many draws this
//! thread made in the current on-period, so a run with the same seed repeats exactly (each
//! thread fails the same calls of its own sequence). No allocation, lock or syscall: a
//! thread-local counter and SplitMix64.

use crate::period_cell::PeriodCell;

thread_local! {
    /// The draws this thread made in the current on-period.
    static DRAWS: PeriodCell<u64> = const { PeriodCell::new(0) };
}

/// The `k`-th output of SplitMix64 seeded with `seed`.
pub fn splitmix64(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// This thread's next draw in on-period `period`.
pub fn next(period: u32, seed: u64) -> u64 {
    let k = DRAWS.with(|d| {
        let k = d.get(period);
        d.set(period, k + 1);
        k
    });
    splitmix64(seed, k)
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_reference_splitmix64() {
        // The first outputs of SplitMix64 from state 0 (Vigna's reference implementation).
        assert_eq!(super::splitmix64(0, 0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(super::splitmix64(0, 1), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn each_period_starts_the_sequence_over() {
        let a: Vec<u64> = (0..3).map(|_| super::next(5, 42)).collect();
        let b: Vec<u64> = (0..3).map(|_| super::next(6, 42)).collect();
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
    }
}
