//! Seeded random number generation shared by every environment.
//!
//! Environments own an [`EnvRng`] (PCG-64 MCG: small, fast, serialisable, and its
//! stream is fixed by `rand_pcg`, so a seed gives the same episode on every machine).
//! A vector environment gives its `i`-th copy the seed [`derive_seed`]`(seed, i)`, so
//! seeding N environments from one seed does not depend on how they are spread over
//! threads.

use rand::SeedableRng;

/// The random number generator every environment uses.
pub type EnvRng = rand_pcg::Pcg64Mcg;

/// The seed an environment uses when `reset` has never been given one.
pub const DEFAULT_SEED: u64 = 0;

/// A generator seeded from `seed` (through SplitMix64, so nearby seeds give unrelated streams).
pub fn rng_from_seed(seed: u64) -> EnvRng {
    EnvRng::seed_from_u64(splitmix64(seed))
}

/// The seed of the `index`-th of many environments seeded from one `seed`.
pub fn derive_seed(seed: u64, index: u64) -> u64 {
    splitmix64(seed ^ splitmix64(index.wrapping_add(0x9E37_79B9_7F4A_7C15)))
}

/// SplitMix64's output function: a bijective mixer of 64-bit values.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_seed_same_stream_and_derived_seeds_differ() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(rng_from_seed(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(rng_from_seed(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let seeds: std::collections::HashSet<u64> = (0..1000).map(|i| derive_seed(1, i)).collect();
        assert_eq!(seeds.len(), 1000);
    }
}
