use super::forward_spaces;
use crate::env::{Env, ObsMut, Observation, Out, Step};
use crate::error::{EnvError, Result};
use crate::space::{Action, BoxSpace, Space};

/// Stacks the last `k` observations along a new leading axis (Gymnasium's
/// `FrameStackObservation`): shape `[..]` becomes `[k, ..]`, oldest first. After a reset
/// every slot holds the first observation. Works for `f32` and `u8` observations.
#[derive(Debug)]
pub struct FrameStack<E> {
    inner: E,
    k: usize,
    dim: usize,
    stack: Observation,
    space: Space,
}

impl<E: Env> FrameStack<E> {
    /// Stack `k ≥ 1` observations of `inner` (whose observation space must be a Box).
    pub fn new(inner: E, k: usize) -> Result<Self> {
        if k == 0 {
            return Err(EnvError::Invalid("FrameStack needs k ≥ 1".into()));
        }
        let Space::Box(b) = inner.observation_space() else {
            return Err(EnvError::Invalid(format!(
                "FrameStack needs a Box observation space, got {}",
                inner.observation_space()
            )));
        };
        let dim = b.len();
        let mut shape = vec![k];
        shape.extend(&b.shape);
        let space = Space::Box(BoxSpace {
            low: b.low.repeat(k),
            high: b.high.repeat(k),
            shape,
            dtype: b.dtype,
        });
        Ok(FrameStack {
            stack: Observation::zeros(b.dtype, dim * k),
            inner,
            k,
            dim,
            space,
        })
    }

    /// The wrapped environment.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The wrapped environment, mutably.
    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.inner
    }

    fn stack_len(&self) -> usize {
        self.k * self.dim
    }

    /// Run the inner environment writing into the newest slot, then copy the stack out.
    fn refresh<T>(
        &mut self,
        fresh: bool,
        out: &mut Out<'_>,
        f: impl FnOnce(&mut E, Out<'_>) -> Result<T>,
    ) -> Result<T> {
        let (d, k) = (self.dim, self.k);
        let newest = match &mut self.stack {
            Observation::F32(s) => {
                s.copy_within(d.., 0);
                ObsMut::F32(&mut s[(k - 1) * d..])
            }
            Observation::U8(s) => {
                s.copy_within(d.., 0);
                ObsMut::U8(&mut s[(k - 1) * d..])
            }
        };
        let result = f(
            &mut self.inner,
            Out {
                obs: newest,
                action_mask: &mut *out.action_mask,
                extras: &mut *out.extras,
            },
        )?;
        if out.obs.len() != self.stack_len() {
            return Err(EnvError::Buffer(format!(
                "FrameStack output buffer has {} elements, the stacked observation {}",
                out.obs.len(),
                self.stack_len()
            )));
        }
        match (&mut self.stack, out.obs.reborrow()) {
            (Observation::F32(s), ObsMut::F32(o)) => {
                if fresh {
                    let (head, last) = s.split_at_mut((k - 1) * d);
                    head.chunks_exact_mut(d)
                        .for_each(|c| c.copy_from_slice(last));
                }
                o.copy_from_slice(s);
            }
            (Observation::U8(s), ObsMut::U8(o)) => {
                if fresh {
                    let (head, last) = s.split_at_mut((k - 1) * d);
                    head.chunks_exact_mut(d)
                        .for_each(|c| c.copy_from_slice(last));
                }
                o.copy_from_slice(s);
            }
            _ => {
                return Err(EnvError::Buffer(
                    "FrameStack output buffer has the wrong element type".into(),
                ));
            }
        }
        Ok(result)
    }
}

impl<E: Env> Env for FrameStack<E> {
    forward_spaces!();
    fn observation_space(&self) -> &Space {
        &self.space
    }
    fn extra_names(&self) -> &[&'static str] {
        self.inner.extra_names()
    }
    fn reset_into(&mut self, seed: Option<u64>, mut out: Out<'_>) -> Result<()> {
        self.refresh(true, &mut out, |env, o| env.reset_into(seed, o))
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, mut out: Out<'_>) -> Result<Step> {
        self.refresh(false, &mut out, |env, o| env.step_into(action, o))
    }
}
