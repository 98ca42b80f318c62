//! What an adder receives ([`Step`]), what it emits ([`Transition`], [`TransitionRef`])
//! and where it emits to ([`TransitionSink`]).

use crate::element::Element;
use crate::error::{MemoryError, Result};

/// One environment step of one environment stream, as an adder receives it.
///
/// `next_obs` is the observation returned by `step`; when the episode ended
/// (`terminated || truncated`) it must be the *final* observation of that episode, not
/// the first observation of the next one that an auto-resetting vector environment
/// returns in its place.
///
/// A step may be a macro-action (Hosu, Rebedea and Pascanu 2025) that ran `duration`
/// primitive environment steps open-loop; the adders then discount what follows it by
/// `γ^duration` instead of `γ`. A primitive action has `duration = 1`.
///
/// Observations are `f32` by default, or bytes (`Step<'_, u8>`) for image frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step<'a, T = f32> {
    /// The observation the action was chosen from.
    pub obs: &'a [T],
    /// The action taken (an index into a discrete action space).
    pub action: u32,
    /// The reward returned by this step: for a step that spans several primitive steps,
    /// their discounted sum `Σ_{i<duration} γ^i r_i` (what `agentry_envs`'
    /// `MacroActions` wrapper returns).
    pub reward: f32,
    /// The number of primitive environment steps this step spans: 1 for a primitive
    /// action, the number a macro-action actually ran otherwise. Must be at least 1.
    pub duration: u32,
    /// The episode reached a terminal state: nothing follows, bootstrap with 0.
    pub terminated: bool,
    /// The episode was cut short (a time limit): bootstrap from `next_obs`.
    pub truncated: bool,
    /// The observation after the step (the final one when the episode ended).
    pub next_obs: &'a [T],
}

impl<T> Step<'_, T> {
    /// Whether this step ends the episode (terminated or truncated).
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A borrowed transition: what adders emit and what buffers store, without copying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransitionRef<'a, T = f32> {
    /// The observation of the first step of the window.
    pub obs: &'a [T],
    /// The action taken at that first step.
    pub action: u32,
    /// The discounted reward sum over the window's steps, each discounted by the
    /// primitive steps before it: `Σ_j γ^(D_j) r_j` with `D_j = d_0 + … + d_(j-1)` for
    /// step durations `d_j` (`r_0 + γ r_1 + … + γ^(k-1) r_(k-1)` when every duration is 1).
    pub reward: f32,
    /// The observation after the last step of the window (to bootstrap from).
    pub next_obs: &'a [T],
    /// The multiplier of the bootstrap value: `γ^steps`, or 0 when the episode
    /// terminated inside the window. A truncated episode keeps `γ^steps`.
    pub discount: f32,
    /// The number of primitive environment steps the window spans: the sum of its
    /// steps' durations (`k`, with `1 ≤ k ≤ n`, when every duration is 1).
    pub steps: u32,
}

impl<T: Clone> TransitionRef<'_, T> {
    /// An owned copy.
    pub fn to_transition(&self) -> Transition<T> {
        Transition {
            obs: self.obs.to_vec(),
            action: self.action,
            reward: self.reward,
            next_obs: self.next_obs.to_vec(),
            discount: self.discount,
            steps: self.steps,
        }
    }
}

/// An owned transition. The fields mean what they mean in [`TransitionRef`].
#[derive(Clone, Debug, PartialEq)]
pub struct Transition<T = f32> {
    /// The observation of the first step of the window.
    pub obs: Vec<T>,
    /// The action taken at that first step.
    pub action: u32,
    /// The discounted reward sum over the window.
    pub reward: f32,
    /// The observation after the last step of the window.
    pub next_obs: Vec<T>,
    /// `γ^steps`, or 0 when the episode terminated inside the window.
    pub discount: f32,
    /// The number of primitive environment steps the window spans.
    pub steps: u32,
}

impl<T> Transition<T> {
    /// A borrowed view.
    pub fn view(&self) -> TransitionRef<'_, T> {
        TransitionRef {
            obs: &self.obs,
            action: self.action,
            reward: self.reward,
            next_obs: &self.next_obs,
            discount: self.discount,
            steps: self.steps,
        }
    }
}

/// Somewhere an adder can put the transitions it completes: a replay memory, or a
/// `Vec<Transition>` (handy in tests and for moving a chunk of experience between threads).
/// `T` is the observations' element type.
pub trait TransitionSink<T: Element = f32> {
    /// Store one transition. Fails if its observations do not have the sink's length.
    fn insert(&mut self, transition: TransitionRef<'_, T>) -> Result<()>;
}

impl<T: Element> TransitionSink<T> for Vec<Transition<T>> {
    fn insert(&mut self, transition: TransitionRef<'_, T>) -> Result<()> {
        self.push(transition.to_transition());
        Ok(())
    }
}

impl<T: Element, S: TransitionSink<T> + ?Sized> TransitionSink<T> for &mut S {
    fn insert(&mut self, transition: TransitionRef<'_, T>) -> Result<()> {
        (**self).insert(transition)
    }
}

/// Checks that `got` has the length `expected`.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(MemoryError::Length {
            what,
            expected,
            got,
        })
    }
}
