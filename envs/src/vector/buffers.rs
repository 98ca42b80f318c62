//! The preallocated buffers a vector environment writes into.

use crate::env::{ObsMut, Out};
use crate::space::Dtype;

/// A contiguous block of observations, typed by the observation space.
#[derive(Clone, Debug, PartialEq)]
pub enum ObsBuffer {
    /// `f32` observations.
    F32(Vec<f32>),
    /// Byte observations (image frames).
    U8(Vec<u8>),
}

impl ObsBuffer {
    fn zeros(dtype: Dtype, len: usize) -> Self {
        match dtype {
            Dtype::F32 => ObsBuffer::F32(vec![0.0; len]),
            Dtype::U8 => ObsBuffer::U8(vec![0; len]),
        }
    }

    /// The `f32` values, if the observations are floats.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            ObsBuffer::F32(x) => Some(x),
            ObsBuffer::U8(_) => None,
        }
    }

    /// The bytes, if the observations are bytes.
    pub fn as_u8(&self) -> Option<&[u8]> {
        match self {
            ObsBuffer::U8(x) => Some(x),
            ObsBuffer::F32(_) => None,
        }
    }
}

/// Everything one `reset` or `step` of a vector environment produces, for all N copies.
///
/// Row `i` of each buffer belongs to copy `i`. See the [module docs](super) for the
/// auto-reset convention.
#[derive(Clone, Debug)]
pub struct VecBuffers {
    num_envs: usize,
    obs_dim: usize,
    mask_len: usize,
    extra_names: Vec<&'static str>,
    obs: ObsBuffer,
    final_obs: ObsBuffer,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    action_masks: Vec<bool>,
    extras: Vec<f64>,
    episode_finished: Vec<bool>,
    episode_returns: Vec<f64>,
    episode_lengths: Vec<u64>,
}

impl VecBuffers {
    pub(crate) fn new(
        num_envs: usize,
        dtype: Dtype,
        obs_dim: usize,
        mask_len: usize,
        extra_names: Vec<&'static str>,
    ) -> Self {
        let n_extras = extra_names.len();
        VecBuffers {
            num_envs,
            obs_dim,
            mask_len,
            obs: ObsBuffer::zeros(dtype, num_envs * obs_dim),
            final_obs: ObsBuffer::zeros(dtype, num_envs * obs_dim),
            rewards: vec![0.0; num_envs],
            terminated: vec![false; num_envs],
            truncated: vec![false; num_envs],
            action_masks: vec![true; num_envs * mask_len],
            extras: vec![0.0; num_envs * n_extras],
            episode_finished: vec![false; num_envs],
            episode_returns: vec![0.0; num_envs],
            episode_lengths: vec![0; num_envs],
            extra_names,
        }
    }

    /// Number of copies (rows).
    pub fn num_envs(&self) -> usize {
        self.num_envs
    }
    /// Elements per observation.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }
    /// Current observations, `num_envs × obs_dim`.
    pub fn obs(&self) -> &ObsBuffer {
        &self.obs
    }
    /// Current observations as floats (`None` for byte observations).
    pub fn obs_f32(&self) -> Option<&[f32]> {
        self.obs.as_f32()
    }
    /// Current observations as bytes (`None` for float observations).
    pub fn obs_u8(&self) -> Option<&[u8]> {
        self.obs.as_u8()
    }
    /// Final observations of episodes that ended at the last step; row `i` is
    /// meaningful only when [`VecBuffers::done`]`(i)`.
    pub fn final_obs(&self) -> &ObsBuffer {
        &self.final_obs
    }
    /// Rewards of the last step.
    pub fn rewards(&self) -> &[f32] {
        &self.rewards
    }
    /// `terminated` flags of the last step.
    pub fn terminated(&self) -> &[bool] {
        &self.terminated
    }
    /// `truncated` flags of the last step.
    pub fn truncated(&self) -> &[bool] {
        &self.truncated
    }
    /// Whether copy `i`'s episode ended at the last step.
    pub fn done(&self, i: usize) -> bool {
        self.terminated[i] || self.truncated[i]
    }
    /// Legal-action masks, `num_envs × mask_len` (empty when the environment has none).
    pub fn action_masks(&self) -> &[bool] {
        &self.action_masks
    }
    /// Length of one copy's mask (0: no mask).
    pub fn mask_len(&self) -> usize {
        self.mask_len
    }
    /// Names of the extras, in column order.
    pub fn extra_names(&self) -> &[&'static str] {
        &self.extra_names
    }
    /// Extras, `num_envs × extra_names().len()`.
    pub fn extras(&self) -> &[f64] {
        &self.extras
    }
    /// The extra `name` of copy `i`, if the environment reports it.
    pub fn extra(&self, i: usize, name: &str) -> Option<f64> {
        let k = self.extra_names.iter().position(|n| *n == name)?;
        self.extras.get(i * self.extra_names.len() + k).copied()
    }
    /// Whether copy `i`'s whole episode ended at the last step, per copy. This is
    /// [`VecBuffers::done`] except where the environment says a learner's episode is
    /// only part of one ([`Env::episode_end`](crate::Env::episode_end), e.g. a life
    /// lost under the Atari protocol's episodic life).
    pub fn episode_finished(&self) -> &[bool] {
        &self.episode_finished
    }
    /// Returns of episodes that ended at the last step (row `i` valid when
    /// `episode_finished()[i]`).
    pub fn episode_returns(&self) -> &[f64] {
        &self.episode_returns
    }
    /// Lengths of episodes that ended at the last step (row `i` valid when
    /// `episode_finished()[i]`).
    pub fn episode_lengths(&self) -> &[u64] {
        &self.episode_lengths
    }
    /// `(return, length)` of copy `i`'s episode if a whole episode ended at the last
    /// step: what runners report as episode statistics. `None` while the episode runs,
    /// and when the step ended only a part of it (a life lost under episodic life:
    /// `done(i)` holds but the game goes on). The totals are the environment's
    /// ([`EpisodeEnd`](crate::EpisodeEnd)): for the Atari protocol, the whole game's
    /// unclipped score and its steps over all lives.
    pub fn finished_episode(&self, i: usize) -> Option<(f64, u64)> {
        self.episode_finished[i].then(|| (self.episode_returns[i], self.episode_lengths[i]))
    }

    /// Raw row views for the stepping code. The pointers stay valid as long as `self`
    /// is neither dropped nor reallocated (its vectors are never resized).
    pub(crate) fn raw(&mut self) -> RawBuffers {
        fn obs_ptr(b: &mut ObsBuffer) -> RawObs {
            match b {
                ObsBuffer::F32(x) => RawObs::F32(x.as_mut_ptr()),
                ObsBuffer::U8(x) => RawObs::U8(x.as_mut_ptr()),
            }
        }
        RawBuffers {
            obs: obs_ptr(&mut self.obs),
            final_obs: obs_ptr(&mut self.final_obs),
            rewards: self.rewards.as_mut_ptr(),
            terminated: self.terminated.as_mut_ptr(),
            truncated: self.truncated.as_mut_ptr(),
            masks: self.action_masks.as_mut_ptr(),
            extras: self.extras.as_mut_ptr(),
            episode_finished: self.episode_finished.as_mut_ptr(),
            episode_returns: self.episode_returns.as_mut_ptr(),
            episode_lengths: self.episode_lengths.as_mut_ptr(),
            obs_dim: self.obs_dim,
            mask_len: self.mask_len,
            n_extras: self.extra_names.len(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum RawObs {
    F32(*mut f32),
    U8(*mut u8),
}

/// Raw pointers into a [`VecBuffers`], so that threads can write disjoint rows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawBuffers {
    obs: RawObs,
    final_obs: RawObs,
    rewards: *mut f32,
    terminated: *mut bool,
    truncated: *mut bool,
    masks: *mut bool,
    extras: *mut f64,
    episode_finished: *mut bool,
    episode_returns: *mut f64,
    episode_lengths: *mut u64,
    obs_dim: usize,
    mask_len: usize,
    n_extras: usize,
}

// SAFETY: the pointers are only dereferenced through `row`, whose callers guarantee that
// each row is touched by one thread at a time while the buffers are alive.
unsafe impl Send for RawBuffers {}
unsafe impl Sync for RawBuffers {}

/// Mutable views of one copy's row.
pub(crate) struct Row<'a> {
    pub out: Out<'a>,
    pub final_obs: ObsMut<'a>,
    pub reward: &'a mut f32,
    pub terminated: &'a mut bool,
    pub truncated: &'a mut bool,
    pub episode_finished: &'a mut bool,
    pub episode_return: &'a mut f64,
    pub episode_length: &'a mut u64,
}

impl Row<'_> {
    /// Copy the current observation into the final-observation row.
    #[inline]
    pub fn save_final_obs(&mut self) {
        match (self.out.obs.reborrow(), self.final_obs.reborrow()) {
            (ObsMut::F32(o), ObsMut::F32(f)) => f.copy_from_slice(o),
            (ObsMut::U8(o), ObsMut::U8(f)) => f.copy_from_slice(o),
            _ => unreachable!("obs and final_obs share a dtype by construction"),
        }
    }
}

impl RawBuffers {
    /// Views of row `i`.
    ///
    /// # Safety
    /// The buffers are alive, have more than `i` rows, and no other live reference
    /// touches row `i`.
    #[inline]
    pub unsafe fn row<'a>(&self, i: usize) -> Row<'a> {
        let d = self.obs_dim;
        // SAFETY: rows are disjoint ranges inside the allocations; the caller
        // guarantees the row exists and is exclusively ours.
        unsafe {
            let obs_row = |p: RawObs| match p {
                RawObs::F32(p) => ObsMut::F32(std::slice::from_raw_parts_mut(p.add(i * d), d)),
                RawObs::U8(p) => ObsMut::U8(std::slice::from_raw_parts_mut(p.add(i * d), d)),
            };
            Row {
                out: Out {
                    obs: obs_row(self.obs),
                    action_mask: std::slice::from_raw_parts_mut(
                        self.masks.add(i * self.mask_len),
                        self.mask_len,
                    ),
                    extras: std::slice::from_raw_parts_mut(
                        self.extras.add(i * self.n_extras),
                        self.n_extras,
                    ),
                },
                final_obs: obs_row(self.final_obs),
                reward: &mut *self.rewards.add(i),
                terminated: &mut *self.terminated.add(i),
                truncated: &mut *self.truncated.add(i),
                episode_finished: &mut *self.episode_finished.add(i),
                episode_return: &mut *self.episode_returns.add(i),
                episode_length: &mut *self.episode_lengths.add(i),
            }
        }
    }
}
