//! Stepping-speed measurement behind `agent bench envs`.
//!
//! Every step draws fresh random actions into one reusable buffer — as a policy writes
//! its actions each step — with a xorshift generator that costs about a nanosecond per
//! action, so the figures measure the environments. Where an environment has a
//! legal-action mask, a random legal action is chosen.

use std::time::Instant;

use crate::env::{Env, Observation, Out};
use crate::error::{EnvError, Result};
use crate::params::Params;
use crate::rng::splitmix64;
use crate::space::{Action, Space};
use crate::vector::{VecAction, VecBuffers, VecEnv, make_vec};

/// The outcome of a benchmark.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchResult {
    /// Environment steps taken (summed over copies).
    pub steps: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl BenchResult {
    /// Steps per second.
    pub fn steps_per_sec(&self) -> f64 {
        self.steps as f64 / self.seconds.max(1e-12)
    }
}

/// A xorshift64 generator: about a nanosecond per number.
struct XorShift(u64);

impl XorShift {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A uniform integer in `0..n` (multiply-shift, no division).
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    /// A uniform float in `[0, 1)`.
    #[inline]
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// What kind of actions to draw, with the bounds.
enum Kind {
    Discrete(usize),
    MultiDiscrete(Vec<usize>),
    Box(Vec<f32>, Vec<f32>),
}

/// Draws random actions for `copies` environments into reusable buffers.
struct ActionSampler {
    kind: Kind,
    rng: XorShift,
    indices: Vec<usize>,
    values: Vec<f32>,
}

impl ActionSampler {
    fn new(space: &Space, copies: usize, seed: u64) -> Result<Self> {
        let kind = match space {
            Space::Discrete(n) => Kind::Discrete(*n),
            Space::MultiDiscrete(nvec) => Kind::MultiDiscrete(nvec.clone()),
            Space::Box(b) => {
                if b.low.iter().chain(&b.high).any(|x| !x.is_finite()) {
                    return Err(EnvError::Invalid(
                        "cannot benchmark an unbounded action space".into(),
                    ));
                }
                Kind::Box(b.low.clone(), b.high.clone())
            }
        };
        let dim = space.flat_dim();
        Ok(ActionSampler {
            kind,
            rng: XorShift(splitmix64(seed) | 1),
            indices: vec![0; copies * dim],
            values: vec![0.0; copies * dim],
        })
    }

    /// Fresh actions for every copy; `masks` (`copies × mask_len`) restricts to legal ones.
    #[inline]
    fn draw(&mut self, masks: &[bool], mask_len: usize) -> VecAction<'_> {
        let rng = &mut self.rng;
        match &self.kind {
            Kind::Discrete(n) if mask_len == 0 && *n <= 1 << 16 => {
                // Four 16-bit draws from each 64-bit number: the generator's serial
                // dependency chain would otherwise cost more than a cheap step.
                let mut chunks = self.indices.chunks_exact_mut(4);
                for quad in &mut chunks {
                    let r = rng.next();
                    for (j, a) in quad.iter_mut().enumerate() {
                        *a = below16(r >> (16 * j), *n);
                    }
                }
                for a in chunks.into_remainder() {
                    *a = below16(rng.next(), *n);
                }
                VecAction::Discrete(&self.indices)
            }
            Kind::Discrete(n) => {
                for (i, a) in self.indices.iter_mut().enumerate() {
                    let pick = rng.below(*n);
                    *a = if mask_len > 0 {
                        legal(&masks[i * mask_len..(i + 1) * mask_len], pick)
                    } else {
                        pick
                    };
                }
                VecAction::Discrete(&self.indices)
            }
            Kind::MultiDiscrete(nvec) => {
                for (a, n) in self.indices.iter_mut().zip(nvec.iter().cycle()) {
                    *a = rng.below(*n);
                }
                VecAction::MultiDiscrete(&self.indices)
            }
            Kind::Box(low, high) => {
                for (v, (lo, hi)) in self.values.iter_mut().zip(low.iter().zip(high).cycle()) {
                    *v = (lo + (hi - lo) * rng.unit()).clamp(*lo, *hi);
                }
                VecAction::Continuous(&self.values)
            }
        }
    }
}

/// A uniform integer in `0..n` (`n ≤ 2¹⁶`) from the low 16 bits of `r` (multiply-shift).
#[inline]
fn below16(r: u64, n: usize) -> usize {
    (((r & 0xffff) * n as u64) >> 16) as usize
}

/// The `pick`-th legal action (modulo the number of legal ones), or `pick` when none is legal.
#[inline]
fn legal(mask: &[bool], pick: usize) -> usize {
    let n = mask.iter().filter(|&&m| m).count();
    if n == 0 {
        return pick;
    }
    mask.iter()
        .enumerate()
        .filter(|(_, m)| **m)
        .nth(pick % n)
        .map_or(pick, |(i, _)| i)
}

/// One environment driven by random (legal) actions, resetting at episode ends.
///
/// Public so that tests can check the stepping loop allocates nothing.
pub struct RandomSingle {
    env: Box<dyn Env>,
    sampler: ActionSampler,
    obs: Observation,
    mask: Vec<bool>,
    extras: Vec<f64>,
}

impl RandomSingle {
    /// Build and reset the environment `name`.
    pub fn new(name: &str, params: &Params, seed: u64) -> Result<Self> {
        let env = crate::make(name, params)?;
        let sampler = ActionSampler::new(env.action_space(), 1, seed)?;
        let space = env.observation_space();
        let mut s = RandomSingle {
            obs: Observation::zeros(space.dtype(), space.flat_dim()),
            mask: vec![true; env.action_mask_len()],
            extras: vec![0.0; env.extra_names().len()],
            env,
            sampler,
        };
        let out = Out {
            obs: s.obs.as_mut(),
            action_mask: &mut s.mask,
            extras: &mut s.extras,
        };
        s.env.reset_into(Some(seed), out)?;
        Ok(s)
    }

    /// Take one step (and reset if it ended the episode).
    #[inline]
    pub fn step(&mut self) -> Result<()> {
        let action = match self.sampler.draw(&self.mask, self.mask.len()) {
            VecAction::Discrete(a) => Action::Discrete(a[0]),
            VecAction::MultiDiscrete(a) => Action::MultiDiscrete(a),
            VecAction::Continuous(a) => Action::Continuous(a),
        };
        let out = Out {
            obs: self.obs.as_mut(),
            action_mask: &mut self.mask,
            extras: &mut self.extras,
        };
        if self.env.step_into(action, out)?.done() {
            let out = Out {
                obs: self.obs.as_mut(),
                action_mask: &mut self.mask,
                extras: &mut self.extras,
            };
            self.env.reset_into(None, out)?;
        }
        Ok(())
    }
}

/// A vector environment driven by random (legal) actions.
///
/// Public so that tests can check the stepping loop allocates nothing.
pub struct RandomVector {
    envs: Box<dyn VecEnv>,
    sampler: ActionSampler,
    mask_len: usize,
}

impl RandomVector {
    /// Build `num_envs` copies of `name` on `threads` threads and reset them.
    pub fn new(
        name: &str,
        params: &Params,
        num_envs: usize,
        threads: usize,
        seed: u64,
    ) -> Result<Self> {
        if num_envs == 0 {
            return Err(EnvError::Invalid(
                "the number of environments must be at least 1".into(),
            ));
        }
        let mut envs = make_vec(name, params, num_envs, threads)?;
        let sampler = ActionSampler::new(envs.action_space(), num_envs, seed)?;
        let mask_len = envs.reset(Some(seed))?.mask_len();
        Ok(RandomVector {
            envs,
            sampler,
            mask_len,
        })
    }

    /// The buffers of the last step.
    pub fn buffers(&self) -> &VecBuffers {
        self.envs.buffers()
    }

    /// Step every copy once.
    #[inline]
    pub fn step(&mut self) -> Result<()> {
        let actions = self
            .sampler
            .draw(self.envs.buffers().action_masks(), self.mask_len);
        self.envs.step(actions)?;
        Ok(())
    }
}

/// Steps per second of one environment with random actions, resetting when an episode ends.
pub fn bench_single(name: &str, params: &Params, steps: u64, seed: u64) -> Result<BenchResult> {
    let mut runner = RandomSingle::new(name, params, seed)?;
    let start = Instant::now();
    for _ in 0..steps {
        runner.step()?;
    }
    Ok(BenchResult {
        steps,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Steps per second of `num_envs` copies on `threads` threads (total steps over copies).
pub fn bench_vector(
    name: &str,
    params: &Params,
    num_envs: usize,
    threads: usize,
    steps: u64,
    seed: u64,
) -> Result<BenchResult> {
    let mut runner = RandomVector::new(name, params, num_envs, threads, seed)?;
    let rounds = steps.div_ceil(num_envs as u64);
    let start = Instant::now();
    for _ in 0..rounds {
        runner.step()?;
    }
    Ok(BenchResult {
        steps: rounds * num_envs as u64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::BoxSpace;

    #[test]
    fn legal_picks_only_legal_actions() {
        let mask = [false, true, false, true];
        for pick in 0..10 {
            assert!(mask[legal(&mask, pick)]);
        }
    }

    #[test]
    fn sampled_actions_are_in_the_space_and_cover_it() {
        let mut s = ActionSampler::new(&Space::Discrete(3), 1000, 1).unwrap();
        let VecAction::Discrete(a) = s.draw(&[], 0) else {
            panic!()
        };
        assert!(a.iter().all(|&x| x < 3));
        assert!((0..3).all(|k| a.iter().filter(|&&x| x == k).count() > 250));
        let space = Space::Box(BoxSpace::new(vec![-2.0], vec![2.0]));
        let mut s = ActionSampler::new(&space, 1000, 1).unwrap();
        let VecAction::Continuous(v) = s.draw(&[], 0) else {
            panic!()
        };
        assert!(v.iter().all(|x| (-2.0..=2.0).contains(x)));
        assert!(v.iter().any(|&x| x < -1.5) && v.iter().any(|&x| x > 1.5));
    }
}
