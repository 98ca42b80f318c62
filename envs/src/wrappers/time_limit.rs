use super::forward_spaces;
use crate::env::{Env, Out, Step};
use crate::error::Result;
use crate::space::{Action, Space};

/// Truncates episodes after `max_steps` steps (sets `truncated`, never `terminated`).
///
/// If the inner environment terminates on the last allowed step, the step reports
/// `terminated` and `truncated` both, as Gymnasium's `TimeLimit` does: a learner
/// bootstraps with 0 whenever `terminated` is set.
#[derive(Debug)]
pub struct TimeLimit<E> {
    inner: E,
    max_steps: u64,
    elapsed: u64,
}

impl<E: Env> TimeLimit<E> {
    /// Wrap `inner` with a limit of `max_steps` steps per episode.
    pub fn new(inner: E, max_steps: u64) -> Self {
        TimeLimit {
            inner,
            max_steps,
            elapsed: 0,
        }
    }

    /// Steps taken in the current episode.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// The wrapped environment.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The wrapped environment, mutably.
    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.inner
    }
}

impl<E: Env> Env for TimeLimit<E> {
    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }
    forward_spaces!();
    fn extra_names(&self) -> &[&'static str] {
        self.inner.extra_names()
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        self.elapsed = 0;
        self.inner.reset_into(seed, out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let mut step = self.inner.step_into(action, out)?;
        self.elapsed += 1;
        if self.elapsed >= self.max_steps {
            step.truncated = true;
        }
        Ok(step)
    }
}
