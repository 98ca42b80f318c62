//! A caller-owned, preallocated minibatch that sampling fills in place.

use crate::element::Element;

/// A minibatch of `size` transitions in flat row-major arrays, allocated once by
/// [`Batch::new`] and overwritten by every `sample` call, so sampling allocates nothing.
/// Its observations have the memory's element type `T` (bytes stay bytes until the
/// learner builds its input tensor).
///
/// Row `i` of `obs` is `obs()[i * obs_dim..(i + 1) * obs_dim]`, and likewise for
/// `next_obs`. The bootstrapped n-step target of row `i` is
/// `rewards()[i] + discounts()[i] * V(next_obs row i)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<T = f32> {
    size: usize,
    obs_dim: usize,
    pub(crate) indices: Vec<u64>,
    pub(crate) obs: Vec<T>,
    pub(crate) actions: Vec<u32>,
    pub(crate) rewards: Vec<f32>,
    pub(crate) next_obs: Vec<T>,
    pub(crate) discounts: Vec<f32>,
    pub(crate) steps: Vec<u32>,
    pub(crate) weights: Vec<f32>,
}

impl<T: Element> Batch<T> {
    /// A batch of `size` rows for observations of length `obs_dim`.
    pub fn new(size: usize, obs_dim: usize) -> Self {
        Batch {
            size,
            obs_dim,
            indices: vec![0; size],
            obs: vec![T::default(); size * obs_dim],
            actions: vec![0; size],
            rewards: vec![0.0; size],
            next_obs: vec![T::default(); size * obs_dim],
            discounts: vec![0.0; size],
            steps: vec![0; size],
            weights: vec![1.0; size],
        }
    }

    /// Number of rows.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Length of one observation.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Insertion indices of the sampled items (the `n`-th item ever inserted has index
    /// `n`); pass them back to `update_priorities`.
    pub fn indices(&self) -> &[u64] {
        &self.indices
    }

    /// Observations, `size × obs_dim`, row-major.
    pub fn obs(&self) -> &[T] {
        &self.obs
    }

    /// Actions, `size`.
    pub fn actions(&self) -> &[u32] {
        &self.actions
    }

    /// Discounted n-step reward sums, `size`.
    pub fn rewards(&self) -> &[f32] {
        &self.rewards
    }

    /// Observations to bootstrap from, `size × obs_dim`, row-major.
    pub fn next_obs(&self) -> &[T] {
        &self.next_obs
    }

    /// Bootstrap multipliers `γ^k` for the `k` primitive steps spanned (0 after a
    /// termination), `size`.
    pub fn discounts(&self) -> &[f32] {
        &self.discounts
    }

    /// Primitive environment steps `k` spanned by each transition, `size`.
    pub fn steps(&self) -> &[u32] {
        &self.steps
    }

    /// Importance-sampling weights, `size`, at most 1 (all 1 for uniform replay).
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }
}
