use serde::{Deserialize, Serialize};

use super::forward_spaces;
use crate::env::{Env, ObsMut, Out, Step};
use crate::error::{EnvError, Result};
use crate::space::{Action, BoxSpace, Dtype, Space};

/// Running mean and variance of vectors (the parallel algorithm of Chan et al.), as
/// Gymnasium's and Stable-Baselines3's `RunningMeanStd`: starts at mean 0, variance 1,
/// with a pseudo-count of `1e-4`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunningMeanStd {
    /// Per-element mean.
    pub mean: Vec<f64>,
    /// Per-element (population) variance.
    pub var: Vec<f64>,
    /// Number of vectors seen (plus the initial pseudo-count).
    pub count: f64,
}

impl RunningMeanStd {
    /// Statistics of vectors of length `dim`.
    pub fn new(dim: usize) -> Self {
        RunningMeanStd {
            mean: vec![0.0; dim],
            var: vec![1.0; dim],
            count: 1e-4,
        }
    }

    /// Add one vector.
    #[inline]
    pub fn update(&mut self, x: &[f32]) {
        let count = self.count + 1.0;
        for ((m, v), &x) in self.mean.iter_mut().zip(self.var.iter_mut()).zip(x) {
            let delta = x as f64 - *m;
            let new_mean = *m + delta / count;
            // M2 update for a batch of one: m2 = var*n + delta^2 * n*1/(n+1)
            *v = (*v * self.count + delta * delta * self.count / count) / count;
            *m = new_mean;
        }
        self.count = count;
    }

    /// Add a batch of vectors stored row after row (`rows.len()` a multiple of the dimension).
    pub fn update_batch(&mut self, rows: &[f32]) {
        let dim = self.mean.len();
        if dim == 0 || rows.is_empty() {
            return;
        }
        let n = (rows.len() / dim) as f64;
        for j in 0..dim {
            let col = rows.iter().skip(j).step_by(dim).map(|&x| x as f64);
            let bmean = col.clone().sum::<f64>() / n;
            let bvar = col.map(|x| (x - bmean) * (x - bmean)).sum::<f64>() / n;
            let delta = bmean - self.mean[j];
            let tot = self.count + n;
            self.mean[j] += delta * n / tot;
            let m2 = self.var[j] * self.count + bvar * n + delta * delta * self.count * n / tot;
            self.var[j] = m2 / tot;
        }
        self.count += n;
    }

    /// Add a batch given only by its size `n` and per-element sums and sums of squares
    /// (how parallel workers report their share without sending the rows).
    pub fn merge_sums(&mut self, n: f64, sum: &[f64], sumsq: &[f64]) {
        if n <= 0.0 {
            return;
        }
        let tot = self.count + n;
        for j in 0..self.mean.len() {
            let bmean = sum[j] / n;
            let bvar = (sumsq[j] / n - bmean * bmean).max(0.0);
            let delta = bmean - self.mean[j];
            let m2 = self.var[j] * self.count + bvar * n + delta * delta * self.count * n / tot;
            self.mean[j] += delta * n / tot;
            self.var[j] = m2 / tot;
        }
        self.count = tot;
    }

    /// Write `(x - mean) / sqrt(var + eps)`, clipped to `±clip`, into `x`.
    #[inline]
    pub fn normalize(&self, x: &mut [f32], eps: f64, clip: f64) {
        for ((x, m), v) in x.iter_mut().zip(&self.mean).zip(&self.var) {
            *x = ((*x as f64 - m) / (v + eps).sqrt()).clamp(-clip, clip) as f32;
        }
    }
}

/// Normalises observations by a running mean and variance (Gymnasium's `NormalizeObservation`).
///
/// Statistics are updated with every observation until [`NormalizeObservation::freeze`];
/// they can be read with [`NormalizeObservation::stats`] and restored with
/// [`NormalizeObservation::set_stats`] (they are `serde` serialisable), so an evaluated
/// or embedded agent sees observations normalised exactly as in training.
#[derive(Debug)]
pub struct NormalizeObservation<E> {
    inner: E,
    stats: RunningMeanStd,
    frozen: bool,
    eps: f64,
    clip: f64,
    space: Space,
}

impl<E: Env> NormalizeObservation<E> {
    /// Normalise `inner`'s `f32` observations (no clipping, ε = 1e-8, as Gymnasium).
    pub fn new(inner: E) -> Result<Self> {
        Self::with_clip(inner, f64::INFINITY)
    }

    /// Normalise and clip to `±clip` (Stable-Baselines3's `VecNormalize` uses 10).
    pub fn with_clip(inner: E, clip: f64) -> Result<Self> {
        let obs_space = inner.observation_space();
        if obs_space.dtype() != Dtype::F32 {
            return Err(EnvError::Invalid(
                "NormalizeObservation needs f32 observations; this environment writes bytes".into(),
            ));
        }
        if clip.is_nan() || clip <= 0.0 {
            return Err(EnvError::Invalid(format!(
                "NormalizeObservation clip {clip} must be positive"
            )));
        }
        let dim = obs_space.flat_dim();
        let bound = clip.min(f32::MAX as f64) as f32;
        let mut space = BoxSpace::uniform(-bound, bound, &obs_space.shape(), Dtype::F32);
        if space.shape.is_empty() {
            space.shape = vec![dim];
            space.low = vec![-bound; dim];
            space.high = vec![bound; dim];
        }
        Ok(NormalizeObservation {
            stats: RunningMeanStd::new(dim),
            inner,
            frozen: false,
            eps: 1e-8,
            clip,
            space: Space::Box(space),
        })
    }

    /// Stop updating the statistics (for evaluation).
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Resume updating the statistics.
    pub fn unfreeze(&mut self) {
        self.frozen = false;
    }

    /// Whether the statistics are frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// The current statistics.
    pub fn stats(&self) -> &RunningMeanStd {
        &self.stats
    }

    /// Replace the statistics (e.g. loaded from a checkpoint); the dimension must match.
    pub fn set_stats(&mut self, stats: RunningMeanStd) -> Result<()> {
        if stats.mean.len() != self.stats.mean.len() || stats.var.len() != self.stats.var.len() {
            return Err(EnvError::Invalid(format!(
                "normalisation statistics have dimension {}, the environment's observations {}",
                stats.mean.len(),
                self.stats.mean.len()
            )));
        }
        self.stats = stats;
        Ok(())
    }

    fn process(&mut self, obs: ObsMut<'_>) -> Result<()> {
        let x = obs.f32()?;
        if !self.frozen {
            self.stats.update(x);
        }
        self.stats.normalize(x, self.eps, self.clip);
        Ok(())
    }
}

impl<E: Env> Env for NormalizeObservation<E> {
    forward_spaces!();
    fn observation_space(&self) -> &Space {
        &self.space
    }
    fn extra_names(&self) -> &[&'static str] {
        self.inner.extra_names()
    }
    fn reset_into(&mut self, seed: Option<u64>, mut out: Out<'_>) -> Result<()> {
        self.inner.reset_into(seed, out.reborrow())?;
        self.process(out.obs)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, mut out: Out<'_>) -> Result<Step> {
        let step = self.inner.step_into(action, out.reborrow())?;
        self.process(out.obs)?;
        Ok(step)
    }
}
