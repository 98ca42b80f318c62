//! Vector environments: N copies stepped together, with auto-reset.
//!
//! [`SyncVecEnv`] steps all copies on the calling thread; [`ThreadedVecEnv`] spreads them
//! over K threads (the calling thread and K−1 workers, each owning a contiguous slice).
//! Both write into one [`VecBuffers`]: contiguous, preallocated, typed by the
//! observation space (`u8` frames stay bytes), with rewards, `terminated`, `truncated`,
//! legal-action masks and the environments' extras beside them. Stepping allocates nothing.
//!
//! **Auto-reset** (same step, as EnvPool and Stable-Baselines3): when copy `i` ends an
//! episode, `terminated[i]`/`truncated[i]` say how, `final_obs` row `i` holds the
//! observation the episode ended in (bootstrap a truncated episode from it), and `obs`
//! row `i` already holds the first observation of the next episode. The extras of row
//! `i` are those of the final step; the action mask is that of the new episode.
//!
//! **Episode statistics**: each copy's tracker sums its rewards and steps, and
//! [`VecBuffers::finished_episode`]`(i)` gives `(return, length)` when a whole episode
//! ended. Usually that is every `done(i)`, with the sums the learner saw. An
//! environment whose learner-visible episodes are parts of a longer one says so through
//! [`Env::episode_end`]: under the Atari protocol a life lost ends the learner's episode
//! (`terminated`) but `finished_episode` stays `None` until the game is over, and then
//! reports the game's unclipped score and its steps over all lives.
//!
//! **Seeding**: `reset(Some(seed))` resets copy `i` with [`derive_seed`]`(seed, i)`, so
//! the trajectories do not depend on the number of threads.
//!
//! ```
//! use agentry_envs::vector::{make_vec, VecAction};
//! use agentry_envs::Params;
//! let mut envs = make_vec("cartpole", &Params::new(), 8, 2).unwrap();
//! envs.reset(Some(7)).unwrap();
//! let actions = vec![1usize; 8];
//! let out = envs.step(VecAction::Discrete(&actions)).unwrap();
//! assert_eq!(out.rewards().len(), 8);
//! assert_eq!(out.obs_f32().unwrap().len(), 8 * 4);
//! ```

mod buffers;
mod sync;
mod threaded;

pub use buffers::{ObsBuffer, VecBuffers};
pub use sync::SyncVecEnv;
pub use threaded::ThreadedVecEnv;

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::env::{Env, Out};
use crate::error::{EnvError, Result};
use crate::params::Params;
use crate::rng::derive_seed;
use crate::space::{Action, Space};
use crate::wrappers::EpisodeTracker;
use buffers::RawBuffers;

/// The actions of all N copies, flat: one index per copy (`Discrete`), or
/// `N × action dimension` values (`MultiDiscrete`, `Continuous`), copy after copy.
#[derive(Clone, Copy, Debug)]
pub enum VecAction<'a> {
    /// For `Discrete` action spaces.
    Discrete(&'a [usize]),
    /// For `MultiDiscrete` action spaces.
    MultiDiscrete(&'a [usize]),
    /// For `Box` action spaces.
    Continuous(&'a [f32]),
}

impl<'a> VecAction<'a> {
    fn len(&self) -> usize {
        match self {
            VecAction::Discrete(a) | VecAction::MultiDiscrete(a) => a.len(),
            VecAction::Continuous(a) => a.len(),
        }
    }

    /// The action of copy `i` (`dim` = the action space's flat dimension).
    #[inline]
    fn get(&self, i: usize, dim: usize) -> Action<'a> {
        match *self {
            VecAction::Discrete(a) => Action::Discrete(a[i]),
            VecAction::MultiDiscrete(a) => Action::MultiDiscrete(&a[i * dim..(i + 1) * dim]),
            VecAction::Continuous(a) => Action::Continuous(&a[i * dim..(i + 1) * dim]),
        }
    }
}

/// N environments stepped together; see the [module docs](self).
pub trait VecEnv: Send {
    /// Number of copies.
    fn num_envs(&self) -> usize;
    /// The observation space of one copy.
    fn observation_space(&self) -> &Space;
    /// The action space of one copy.
    fn action_space(&self) -> &Space;
    /// Reset every copy (copy `i` with `derive_seed(seed, i)` when a seed is given).
    fn reset(&mut self, seed: Option<u64>) -> Result<&VecBuffers>;
    /// Step every copy with its action, auto-resetting finished episodes.
    ///
    /// After an error the vector environment must be reset before stepping again.
    fn step(&mut self, actions: VecAction<'_>) -> Result<&VecBuffers>;
    /// The buffers written by the last `reset` or `step`.
    fn buffers(&self) -> &VecBuffers;
}

/// Build `num_envs` copies of a registered environment: a [`SyncVecEnv`] when
/// `threads ≤ 1`, else a [`ThreadedVecEnv`] with `min(threads, num_envs)` threads.
pub fn make_vec(
    name: &str,
    params: &Params,
    num_envs: usize,
    threads: usize,
) -> Result<Box<dyn VecEnv>> {
    let spec = crate::registry::find(name)?;
    if threads <= 1 {
        let envs = (0..num_envs)
            .map(|_| spec.make(params))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(SyncVecEnv::new(envs)?))
    } else {
        let params = params.clone();
        Ok(Box::new(ThreadedVecEnv::from_fn(
            num_envs,
            threads,
            move |_| spec.make(&params),
        )?))
    }
}

/// What every copy must agree on, taken from the first and checked against the rest.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub obs_space: Space,
    pub act_space: Space,
    pub act_dim: usize,
    pub mask_len: usize,
    pub extra_names: Vec<&'static str>,
}

impl Layout {
    pub fn of(envs: &[Box<dyn Env>]) -> Result<Self> {
        let first = envs.first().ok_or_else(|| {
            EnvError::Invalid("a vector environment needs at least one environment".into())
        })?;
        let layout = Layout {
            obs_space: first.observation_space().clone(),
            act_space: first.action_space().clone(),
            act_dim: first.action_space().flat_dim(),
            mask_len: first.action_mask_len(),
            extra_names: first.extra_names().to_vec(),
        };
        layout.check(envs)?;
        Ok(layout)
    }

    /// Check that `envs` match this layout.
    pub fn check(&self, envs: &[Box<dyn Env>]) -> Result<()> {
        for (i, env) in envs.iter().enumerate() {
            if env.observation_space() != &self.obs_space
                || env.action_space() != &self.act_space
                || env.action_mask_len() != self.mask_len
                || env.extra_names() != self.extra_names.as_slice()
            {
                return Err(EnvError::Invalid(format!(
                    "environment {i} differs from the first in its spaces, mask or extras; \
                     a vector environment needs identical copies"
                )));
            }
        }
        Ok(())
    }

    pub fn check_actions(&self, actions: &VecAction<'_>, n: usize) -> Result<()> {
        let kind_ok = matches!(
            (actions, &self.act_space),
            (VecAction::Discrete(_), Space::Discrete(_))
                | (VecAction::MultiDiscrete(_), Space::MultiDiscrete(_))
                | (VecAction::Continuous(_), Space::Box(_))
        );
        if !kind_ok {
            return Err(EnvError::Buffer(format!(
                "actions of the wrong kind for the action space {}",
                self.act_space
            )));
        }
        let want = if let Space::Discrete(_) = self.act_space {
            n
        } else {
            n * self.act_dim
        };
        if actions.len() != want {
            return Err(EnvError::Buffer(format!(
                "{} actions given, {want} expected ({n} environments)",
                actions.len()
            )));
        }
        Ok(())
    }
}

/// One copy and its bookkeeping.
pub(crate) struct Slot {
    env: Box<dyn Env>,
    tracker: EpisodeTracker,
    scratch_extras: Vec<f64>,
}

impl Slot {
    pub fn new(env: Box<dyn Env>) -> Self {
        let n = env.extra_names().len();
        Slot {
            env,
            tracker: EpisodeTracker::new(0),
            scratch_extras: vec![0.0; n],
        }
    }

    /// Reset copy `i`, writing its row of the buffers.
    ///
    /// # Safety
    /// `raw` points into live buffers of at least `i + 1` rows, and no other thread
    /// touches row `i` during the call.
    unsafe fn reset(&mut self, i: usize, seed: Option<u64>, raw: &RawBuffers) -> Result<()> {
        // SAFETY: the caller guarantees row `i` is ours.
        let row = unsafe { raw.row(i) };
        *row.reward = 0.0;
        *row.terminated = false;
        *row.truncated = false;
        *row.episode_finished = false;
        *row.episode_return = 0.0;
        *row.episode_length = 0;
        self.tracker.start();
        self.env
            .reset_into(seed.map(|s| derive_seed(s, i as u64)), row.out)
    }

    /// Step copy `i`, auto-resetting when the episode ends.
    ///
    /// # Safety
    /// As for [`Slot::reset`].
    #[inline]
    unsafe fn step(&mut self, i: usize, action: Action<'_>, raw: &RawBuffers) -> Result<()> {
        // SAFETY: the caller guarantees row `i` is ours.
        let mut row = unsafe { raw.row(i) };
        let step = self.env.step_into(action, row.out.reborrow())?;
        *row.reward = step.reward as f32;
        *row.terminated = step.terminated;
        *row.truncated = step.truncated;
        let env = &self.env;
        let finished = self.tracker.record_end(&step, || env.episode_end());
        *row.episode_finished = finished.is_some();
        if let Some((ret, len)) = finished {
            *row.episode_return = ret;
            *row.episode_length = len;
        }
        if step.done() {
            row.save_final_obs();
            self.env.reset_into(
                None,
                Out {
                    obs: row.out.obs,
                    action_mask: row.out.action_mask,
                    extras: &mut self.scratch_extras,
                },
            )?;
        }
        Ok(())
    }
}

/// What a round of work asks of every slot.
#[derive(Clone, Copy)]
pub(crate) enum Work<'a> {
    Reset(Option<u64>),
    Step(VecAction<'a>, usize),
}

/// Run `work` on `slots`, which are copies `base..base + slots.len()`; stops at the
/// first failing copy and names it. Panics inside an environment become errors.
///
/// # Safety
/// `raw` points into live buffers covering those rows, and no other thread touches them.
pub(crate) unsafe fn run_slots(
    slots: &mut [Slot],
    base: usize,
    work: Work<'_>,
    raw: &RawBuffers,
) -> Result<()> {
    for (j, slot) in slots.iter_mut().enumerate() {
        let i = base + j;
        let result = catch_unwind(AssertUnwindSafe(|| match work {
            // SAFETY: forwarded from the caller.
            Work::Reset(seed) => unsafe { slot.reset(i, seed, raw) },
            Work::Step(actions, dim) => unsafe { slot.step(i, actions.get(i, dim), raw) },
        }));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(EnvError::InVector {
                    index: i,
                    source: Box::new(e),
                });
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic payload".into());
                return Err(EnvError::Panicked { index: i, message });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
