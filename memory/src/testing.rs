//! Helpers shared by the unit tests.

use crate::transition::{TransitionRef, TransitionSink};

/// The observation and next observation of test item `x`: `[x, x + 0.5]`, `[x + 1, x + 1.5]`.
pub(crate) fn item(x: f32) -> (Vec<f32>, Vec<f32>) {
    (vec![x, x + 0.5], vec![x + 1.0, x + 1.5])
}

/// Inserts items `range` (observations from [`item`], action `i % 4`, reward `i / 10`,
/// discount 0 for every fifth, steps `1 + i % 3`).
pub(crate) fn fill(sink: &mut impl TransitionSink, range: std::ops::Range<u32>) {
    for i in range {
        let (obs, next_obs) = item(i as f32);
        sink.insert(TransitionRef {
            obs: &obs,
            action: i % 4,
            reward: i as f32 * 0.1,
            next_obs: &next_obs,
            discount: if i % 5 == 0 { 0.0 } else { 0.99 },
            steps: 1 + i % 3,
        })
        .unwrap();
    }
}

/// Pearson's chi-square of `counts` against probabilities proportional to `priorities`
/// (cells with zero priority left out).
pub(crate) fn chi_square(counts: &[u32], priorities: &[f64], draws: u32) -> f64 {
    let total: f64 = priorities.iter().sum();
    counts
        .iter()
        .zip(priorities)
        .filter(|&(_, &p)| p > 0.0)
        .map(|(&c, &p)| {
            let expected = f64::from(draws) * p / total;
            (f64::from(c) - expected).powi(2) / expected
        })
        .sum()
}
