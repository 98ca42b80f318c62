//! Replay throughput measurement, for `agent bench replay`.
//!
//! Both memories are filled to capacity with random transitions (the prioritized one
//! then gets random priorities spanning three orders of magnitude, so the sum tree is
//! not flat), and only the sampling loop is timed. A prioritized iteration is what a
//! Rainbow learner pays per update: a stratified sample with importance weights, then
//! `update_priorities` with one TD error per row.

use std::hint::black_box;
use std::time::Instant;

use rand::{RngExt, SeedableRng};

use crate::batch::Batch;
use crate::error::{MemoryError, Result};
use crate::prioritized::{Prioritization, PrioritizedReplay};
use crate::transition::{TransitionRef, TransitionSink};
use crate::uniform::UniformReplay;

/// Figures of one [`bench_sampling`] run, in items per wall-clock second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingBench {
    /// Transitions sampled per second from [`UniformReplay`].
    pub uniform_samples_per_sec: f64,
    /// Transitions sampled per second from [`PrioritizedReplay`], each batch followed
    /// by a priority update of its rows (the headline figure).
    pub prioritized_samples_per_sec: f64,
    /// Transitions inserted per second into the prioritized memory while filling it.
    pub prioritized_inserts_per_sec: f64,
}

/// Fills a [`UniformReplay`] and a [`PrioritizedReplay`] of `capacity` items with
/// observations of length `obs_dim`, then times `iters` batches of `batch` samples from
/// each (plus the priority updates for the prioritized one).
///
/// Fails if `capacity`, `batch` or `iters` is 0, or the memories cannot be built.
pub fn bench_sampling(
    capacity: usize,
    obs_dim: usize,
    batch: usize,
    iters: usize,
) -> Result<SamplingBench> {
    if batch == 0 || iters == 0 {
        return Err(MemoryError::InvalidConfig(format!(
            "batch = {batch} and iters = {iters} must be at least 1"
        )));
    }
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0x5EED);
    let mut uniform = UniformReplay::new(capacity, obs_dim)?;
    let mut prioritized = PrioritizedReplay::new(capacity, obs_dim, Prioritization::default())?;

    let mut obs = vec![0.0f32; obs_dim];
    let mut next_obs = vec![0.0f32; obs_dim];
    for i in 0..capacity {
        obs.iter_mut().for_each(|x| *x = rng.random::<f32>());
        next_obs.iter_mut().for_each(|x| *x = rng.random::<f32>());
        uniform.insert(TransitionRef {
            obs: &obs,
            action: (i % 4) as u32,
            reward: rng.random::<f32>(),
            next_obs: &next_obs,
            discount: 0.99,
            steps: 1,
        })?;
    }
    // The same items, copied over, so the timed loop holds insertion alone.
    let start = Instant::now();
    for index in 0..capacity as u64 {
        if let Some(t) = uniform.view(index) {
            prioritized.insert(t)?;
        }
    }
    let insert_seconds = start.elapsed().as_secs_f64();
    // Priorities (|δ| + ε)^0.5 with |δ| log-uniform in [0.001, 1000].
    let indices: Vec<u64> = (0..capacity as u64).collect();
    let td_errors: Vec<f32> = (0..capacity)
        .map(|_| 10f32.powf(rng.random_range(-3.0..3.0)))
        .collect();
    prioritized.update_priorities(&indices, &td_errors)?;

    let mut out = Batch::new(batch, obs_dim);
    let start = Instant::now();
    for _ in 0..iters {
        uniform.sample(&mut rng, &mut out)?;
        black_box(&out);
    }
    let uniform_seconds = start.elapsed().as_secs_f64();

    let mut td = vec![0.0f32; batch];
    let start = Instant::now();
    for iter in 0..iters {
        let beta = 0.4 + 0.6 * iter as f64 / iters as f64;
        prioritized.sample(&mut rng, beta, &mut out)?;
        // Stand-in TD errors: a cheap function of the batch, like a loss would be.
        for (d, (&r, &w)) in td.iter_mut().zip(out.rewards().iter().zip(out.weights())) {
            *d = (r - 0.5) * 4.0 * w;
        }
        prioritized.update_priorities(out.indices(), &td)?;
    }
    let prioritized_seconds = start.elapsed().as_secs_f64();

    let samples = (batch * iters) as f64;
    Ok(SamplingBench {
        uniform_samples_per_sec: samples / uniform_seconds.max(1e-12),
        prioritized_samples_per_sec: samples / prioritized_seconds.max(1e-12),
        prioritized_inserts_per_sec: capacity as f64 / insert_seconds.max(1e-12),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_small_memory_and_rejects_zero_sizes() {
        let figures = bench_sampling(1000, 3, 16, 10).unwrap();
        assert!(figures.uniform_samples_per_sec > 0.0 && figures.prioritized_samples_per_sec > 0.0);
        assert!(bench_sampling(0, 3, 16, 10).is_err());
        assert!(bench_sampling(10, 3, 0, 10).is_err());
        assert!(bench_sampling(10, 3, 16, 0).is_err());
    }
}
