//! The environment trait, with Gymnasium's semantics.
//!
//! [`Env`] is the allocation-free interface: `reset_into` and `step_into` write the
//! observation, the legal-action mask and the per-step extras into buffers the caller
//! owns (a vector environment hands each copy its slice of one big buffer). [`EnvExt`]
//! adds Gymnasium's owned API on top — `reset(seed) -> (obs, info)` and
//! `step(action) -> Transition` — for code where an allocation per step does not matter.
//!
//! `terminated` (a true end of the episode: bootstrap with 0) and `truncated` (the
//! episode was cut, e.g. by a time limit: bootstrap from the final observation) are
//! separate fields everywhere and never merged.

use crate::error::{EnvError, Result};
use crate::space::{Action, Dtype, Space};

/// A mutable observation buffer, typed by the observation space's [`Dtype`].
#[derive(Debug)]
pub enum ObsMut<'a> {
    /// For `Dtype::F32` spaces.
    F32(&'a mut [f32]),
    /// For `Dtype::U8` spaces.
    U8(&'a mut [u8]),
}

impl<'a> ObsMut<'a> {
    /// The buffer as `f32`, or a [`EnvError::Buffer`] error if it holds bytes.
    #[inline]
    pub fn f32(self) -> Result<&'a mut [f32]> {
        match self {
            ObsMut::F32(x) => Ok(x),
            ObsMut::U8(_) => Err(EnvError::Buffer(
                "observation buffer holds u8 but the environment writes f32".into(),
            )),
        }
    }

    /// The buffer as `u8`, or a [`EnvError::Buffer`] error if it holds floats.
    #[inline]
    pub fn u8(self) -> Result<&'a mut [u8]> {
        match self {
            ObsMut::U8(x) => Ok(x),
            ObsMut::F32(_) => Err(EnvError::Buffer(
                "observation buffer holds f32 but the environment writes u8".into(),
            )),
        }
    }

    /// Reborrow for a shorter lifetime (to hand the buffer to an inner environment).
    #[inline]
    pub fn reborrow(&mut self) -> ObsMut<'_> {
        match self {
            ObsMut::F32(x) => ObsMut::F32(x),
            ObsMut::U8(x) => ObsMut::U8(x),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ObsMut::F32(x) => x.len(),
            ObsMut::U8(x) => x.len(),
        }
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where `reset_into` and `step_into` write their results (Gymnasium's observation and `info`).
#[derive(Debug)]
pub struct Out<'a> {
    /// The observation; its length is `observation_space().flat_dim()`.
    pub obs: ObsMut<'a>,
    /// The legal-action mask (`true` = legal); its length is [`Env::action_mask_len`].
    pub action_mask: &'a mut [bool],
    /// Per-step extras (such as a bandit's regret), in the order of [`Env::extra_names`].
    pub extras: &'a mut [f64],
}

impl Out<'_> {
    /// Reborrow for a shorter lifetime.
    #[inline]
    pub fn reborrow(&mut self) -> Out<'_> {
        Out {
            obs: self.obs.reborrow(),
            action_mask: self.action_mask,
            extras: self.extras,
        }
    }
}

/// What a step returns besides the observation and info.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The reward for the transition.
    pub reward: f64,
    /// The episode reached a terminal state of the task (bootstrap with 0).
    pub terminated: bool,
    /// The episode was cut short, e.g. by a time limit (bootstrap from the final observation).
    pub truncated: bool,
}

impl Step {
    /// A step that neither terminates nor truncates.
    #[inline]
    pub fn running(reward: f64) -> Self {
        Step {
            reward,
            terminated: false,
            truncated: false,
        }
    }

    /// Whether the episode is over (terminated or truncated).
    #[inline]
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// How the end of a learner's episode counts in episode statistics (see
/// [`Env::episode_end`]).
///
/// A learner's episode and the episode whose return is reported need not be the same:
/// under the Atari protocol the learner's episode ends with each life lost and sees
/// clipped rewards, while the score that is reported is the whole game's, unclipped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EpisodeEnd {
    /// The learner's episode is the whole episode: its return and length are the sums
    /// of the rewards and steps the learner saw (the default).
    Learner,
    /// Only a part of a longer episode ended (a life lost under episodic life): nothing
    /// is reported, and the episode goes on after the reset.
    Partial,
    /// The whole episode ended, with this return and length rather than the ones the
    /// learner saw.
    Whole {
        /// The episode's return (e.g. the game's score change, unclipped, over all lives).
        ret: f64,
        /// The episode's length in steps (e.g. over all lives).
        len: u64,
    },
}

/// An RGB image, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes.
    pub pixels: Vec<u8>,
}

/// An environment with Gymnasium's semantics.
///
/// Implementors write the observation into `out.obs` (whose length is
/// `observation_space().flat_dim()` and whose type follows `observation_space().dtype()`),
/// the legal-action mask into `out.action_mask` (length [`Env::action_mask_len`]) and
/// extras into `out.extras` (length `extra_names().len()`).
///
/// Rules every environment keeps:
/// - `reset_into(Some(seed))` reseeds the environment's generator; `reset_into(None)`
///   continues its stream (an environment never seeded behaves as if seeded with
///   [`crate::rng::DEFAULT_SEED`]). The same seed and actions give the same trajectory.
/// - An action outside `action_space()` returns [`EnvError::InvalidAction`]; it is
///   neither clipped nor a panic, and the state does not change.
/// - `step_into` after the episode ended, without a `reset_into`, returns [`EnvError::NeedsReset`].
pub trait Env: Send {
    /// The space observations belong to.
    fn observation_space(&self) -> &Space;
    /// The space actions must belong to.
    fn action_space(&self) -> &Space;
    /// Length of the legal-action mask (0, the default, when every action in the space
    /// is always legal).
    fn action_mask_len(&self) -> usize {
        0
    }
    /// Names of the per-step extras this environment writes (e.g. `["regret"]`; none by default).
    fn extra_names(&self) -> &[&'static str] {
        &[]
    }
    /// Start a new episode (Gymnasium's `reset(seed=...)`).
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()>;
    /// Advance one step (Gymnasium's `step(action)`).
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step>;
    /// The current state as text (ANSI colours allowed), for terminals and logs.
    fn render_ansi(&self) -> String;
    /// The current state as an RGB image, where that is natural for the environment.
    fn render_rgb(&self) -> Option<RgbImage> {
        None
    }
    /// How the episode that the last step ended counts in episode statistics; asked
    /// after a step returned `terminated` or `truncated`, before the next reset.
    ///
    /// The default, [`EpisodeEnd::Learner`], says that the learner's episode is the
    /// whole episode. An environment whose learner-visible episodes are parts of a
    /// longer one, or whose rewards are transformed before the learner sees them,
    /// reports [`EpisodeEnd::Partial`] until the whole episode is over and then
    /// [`EpisodeEnd::Whole`] with its raw return and length (the Atari preprocessing
    /// does this for episodic life and reward clipping). The vector environments'
    /// `finished_episode` and [`EpisodeStatistics`](crate::wrappers::EpisodeStatistics)
    /// follow it; wrappers pass it through.
    fn episode_end(&self) -> EpisodeEnd {
        EpisodeEnd::Learner
    }
}

impl<E: Env + ?Sized> Env for Box<E> {
    fn observation_space(&self) -> &Space {
        (**self).observation_space()
    }
    fn action_space(&self) -> &Space {
        (**self).action_space()
    }
    fn action_mask_len(&self) -> usize {
        (**self).action_mask_len()
    }
    fn extra_names(&self) -> &[&'static str] {
        (**self).extra_names()
    }
    #[inline]
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        (**self).reset_into(seed, out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        (**self).step_into(action, out)
    }
    fn render_ansi(&self) -> String {
        (**self).render_ansi()
    }
    fn render_rgb(&self) -> Option<RgbImage> {
        (**self).render_rgb()
    }
    fn episode_end(&self) -> EpisodeEnd {
        (**self).episode_end()
    }
}

/// An owned observation.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// From an `f32` space.
    F32(Vec<f32>),
    /// From a `u8` space.
    U8(Vec<u8>),
}

impl Observation {
    /// A zeroed observation of `len` elements of type `dtype`.
    pub fn zeros(dtype: Dtype, len: usize) -> Self {
        match dtype {
            Dtype::F32 => Observation::F32(vec![0.0; len]),
            Dtype::U8 => Observation::U8(vec![0; len]),
        }
    }

    /// Borrow mutably as a buffer.
    pub fn as_mut(&mut self) -> ObsMut<'_> {
        match self {
            Observation::F32(x) => ObsMut::F32(x),
            Observation::U8(x) => ObsMut::U8(x),
        }
    }

    /// The values as `f32` (bytes are converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Observation::F32(x) => x.clone(),
            Observation::U8(x) => x.iter().map(|&b| b as f32).collect(),
        }
    }

    /// The `f32` values, if this is an `f32` observation.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Observation::F32(x) => Some(x),
            Observation::U8(_) => None,
        }
    }
}

/// Gymnasium's `info`, owned: the legal-action mask and the named extras.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Info {
    /// Legal actions (`true` = legal), for environments with a mask.
    pub action_mask: Option<Vec<bool>>,
    /// Named per-step extras.
    pub extras: Vec<(&'static str, f64)>,
}

impl Info {
    /// The extra called `name`, if the environment reports it.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.extras
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// The owned result of [`EnvExt::step`].
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The next observation.
    pub obs: Observation,
    /// The reward.
    pub reward: f64,
    /// A true end of the episode.
    pub terminated: bool,
    /// The episode was cut short.
    pub truncated: bool,
    /// The info.
    pub info: Info,
}

/// Gymnasium's owned API on top of any [`Env`]; allocates per call.
pub trait EnvExt: Env {
    /// `reset(seed) -> (observation, info)`.
    fn reset(&mut self, seed: Option<u64>) -> Result<(Observation, Info)> {
        let (mut obs, mut mask, mut extras) = self.out_buffers();
        self.reset_into(
            seed,
            Out {
                obs: obs.as_mut(),
                action_mask: &mut mask,
                extras: &mut extras,
            },
        )?;
        let info = self.make_info(mask, extras);
        Ok((obs, info))
    }

    /// `step(action) -> (observation, reward, terminated, truncated, info)`.
    fn step(&mut self, action: Action<'_>) -> Result<Transition> {
        let (mut obs, mut mask, mut extras) = self.out_buffers();
        let step = self.step_into(
            action,
            Out {
                obs: obs.as_mut(),
                action_mask: &mut mask,
                extras: &mut extras,
            },
        )?;
        let info = self.make_info(mask, extras);
        Ok(Transition {
            obs,
            reward: step.reward,
            terminated: step.terminated,
            truncated: step.truncated,
            info,
        })
    }

    /// Freshly allocated buffers of the right sizes for `reset_into`/`step_into`.
    fn out_buffers(&self) -> (Observation, Vec<bool>, Vec<f64>) {
        let space = self.observation_space();
        (
            Observation::zeros(space.dtype(), space.flat_dim()),
            vec![true; self.action_mask_len()],
            vec![0.0; self.extra_names().len()],
        )
    }

    #[doc(hidden)]
    fn make_info(&self, mask: Vec<bool>, extras: Vec<f64>) -> Info {
        Info {
            action_mask: (self.action_mask_len() > 0).then_some(mask),
            extras: self.extra_names().iter().copied().zip(extras).collect(),
        }
    }
}

impl<E: Env + ?Sized> EnvExt for E {}
