use super::forward_spaces;
use crate::env::{Env, Out, Step};
use crate::error::{EnvError, Result};
use crate::space::{Action, Space};

/// Clips every reward to `[min, max]` (the Atari protocol uses `[-1, 1]`).
#[derive(Debug)]
pub struct ClipReward<E> {
    inner: E,
    min: f64,
    max: f64,
}

impl<E: Env> ClipReward<E> {
    /// Clip rewards of `inner` to `[min, max]`; an empty or NaN range is an error.
    pub fn new(inner: E, min: f64, max: f64) -> Result<Self> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(EnvError::Invalid(format!(
                "ClipReward range [{min}, {max}] is empty"
            )));
        }
        Ok(ClipReward { inner, min, max })
    }
}

impl<E: Env> Env for ClipReward<E> {
    forward_spaces!();
    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }
    fn extra_names(&self) -> &[&'static str] {
        self.inner.extra_names()
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        self.inner.reset_into(seed, out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let mut step = self.inner.step_into(action, out)?;
        step.reward = step.reward.clamp(self.min, self.max);
        Ok(step)
    }
}

/// Multiplies every reward by a constant.
#[derive(Debug)]
pub struct ScaleReward<E> {
    inner: E,
    scale: f64,
}

impl<E: Env> ScaleReward<E> {
    /// Scale rewards of `inner` by `scale` (which must be finite).
    pub fn new(inner: E, scale: f64) -> Result<Self> {
        if !scale.is_finite() {
            return Err(EnvError::Invalid(format!(
                "ScaleReward scale {scale} is not finite"
            )));
        }
        Ok(ScaleReward { inner, scale })
    }
}

impl<E: Env> Env for ScaleReward<E> {
    forward_spaces!();
    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }
    fn extra_names(&self) -> &[&'static str] {
        self.inner.extra_names()
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        self.inner.reset_into(seed, out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let mut step = self.inner.step_into(action, out)?;
        step.reward *= self.scale;
        Ok(step)
    }
}
