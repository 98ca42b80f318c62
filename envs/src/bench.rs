//! Stepping-speed measurement behind `agent bench envs`.
//!
//! Actions are drawn at random before the clock starts (a table cycled through), so
//! the figures measure the environments, not the random number generator. Where an
//! environment has a legal-action mask, a random legal action is chosen each step.

use std::time::Instant;

use rand::RngExt;

use crate::env::{Env, Observation, Out};
use crate::error::{EnvError, Result};
use crate::params::Params;
use crate::rng::rng_from_seed;
use crate::space::{Action, Space, sample_box};
use crate::vector::{VecAction, VecEnv, make_vec};

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

const TABLE_ROWS: usize = 1024;

/// A pre-drawn table of random actions for `copies` environments.
struct ActionTable {
    discrete: Vec<usize>,
    continuous: Vec<f32>,
    dim: usize,
    copies: usize,
}

impl ActionTable {
    fn new(space: &Space, copies: usize, seed: u64) -> Result<Self> {
        let mut rng = rng_from_seed(seed);
        let rows = TABLE_ROWS * copies;
        let mut t = ActionTable {
            discrete: Vec::new(),
            continuous: Vec::new(),
            dim: space.flat_dim(),
            copies,
        };
        match space {
            Space::Discrete(n) => t.discrete = (0..rows).map(|_| rng.random_range(0..*n)).collect(),
            Space::MultiDiscrete(nvec) => {
                t.discrete = (0..rows)
                    .flat_map(|_| {
                        nvec.iter()
                            .map(|n| rng.random_range(0..*n))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
            Space::Box(b) => {
                if b.low.iter().chain(&b.high).any(|x| !x.is_finite()) {
                    return Err(EnvError::Invalid(
                        "cannot benchmark an unbounded action space".into(),
                    ));
                }
                t.continuous = vec![0.0; rows * t.dim];
                t.continuous
                    .chunks_exact_mut(t.dim)
                    .for_each(|row| sample_box(b, &mut rng, row));
            }
        }
        Ok(t)
    }

    /// The actions of all copies for step `t`.
    fn row(&self, t: usize) -> VecAction<'_> {
        let r = t % TABLE_ROWS;
        if !self.continuous.is_empty() {
            let w = self.copies * self.dim;
            VecAction::Continuous(&self.continuous[r * w..(r + 1) * w])
        } else if self.dim == 1 && self.discrete.len() == TABLE_ROWS * self.copies {
            VecAction::Discrete(&self.discrete[r * self.copies..(r + 1) * self.copies])
        } else {
            let w = self.copies * self.dim;
            VecAction::MultiDiscrete(&self.discrete[r * w..(r + 1) * w])
        }
    }
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

/// One environment driven by pre-drawn random (legal) actions, resetting at episode ends.
///
/// Public so that tests can check the stepping loop allocates nothing.
pub struct RandomSingle {
    env: Box<dyn Env>,
    table: ActionTable,
    obs: Observation,
    mask: Vec<bool>,
    extras: Vec<f64>,
    t: usize,
}

impl RandomSingle {
    /// Build and reset the environment `name`.
    pub fn new(name: &str, params: &Params, seed: u64) -> Result<Self> {
        let env = crate::make(name, params)?;
        let table = ActionTable::new(env.action_space(), 1, seed)?;
        let space = env.observation_space();
        let mut s = RandomSingle {
            obs: Observation::zeros(space.dtype(), space.flat_dim()),
            mask: vec![true; env.action_mask_len()],
            extras: vec![0.0; env.extra_names().len()],
            env,
            table,
            t: 0,
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
        let action = match self.table.row(self.t) {
            VecAction::Discrete(a) if !self.mask.is_empty() => {
                Action::Discrete(legal(&self.mask, a[0]))
            }
            VecAction::Discrete(a) => Action::Discrete(a[0]),
            VecAction::MultiDiscrete(a) => Action::MultiDiscrete(a),
            VecAction::Continuous(a) => Action::Continuous(a),
        };
        self.t += 1;
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

/// A vector environment driven by pre-drawn random (legal) actions.
///
/// Public so that tests can check the stepping loop allocates nothing.
pub struct RandomVector {
    envs: Box<dyn VecEnv>,
    table: ActionTable,
    chosen: Vec<usize>,
    mask_len: usize,
    t: usize,
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
        let table = ActionTable::new(envs.action_space(), num_envs, seed)?;
        let mask_len = envs.reset(Some(seed))?.mask_len();
        if mask_len > 0 && envs.action_space().n().is_none() {
            return Err(EnvError::Invalid(
                "masked environments must have discrete actions".into(),
            ));
        }
        Ok(RandomVector {
            envs,
            table,
            chosen: vec![0; num_envs],
            mask_len,
            t: 0,
        })
    }

    /// Number of copies.
    pub fn num_envs(&self) -> usize {
        self.chosen.len()
    }

    /// The buffers of the last step.
    pub fn buffers(&self) -> &crate::vector::VecBuffers {
        self.envs.buffers()
    }

    /// Step every copy once.
    #[inline]
    pub fn step(&mut self) -> Result<()> {
        let actions = self.table.row(self.t);
        self.t += 1;
        match actions {
            VecAction::Discrete(raw) if self.mask_len > 0 => {
                let masks = self.envs.buffers().action_masks();
                for (i, c) in self.chosen.iter_mut().enumerate() {
                    *c = legal(&masks[i * self.mask_len..(i + 1) * self.mask_len], raw[i]);
                }
                self.envs.step(VecAction::Discrete(&self.chosen))?;
            }
            _ => {
                self.envs.step(actions)?;
            }
        }
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

    #[test]
    fn legal_picks_only_legal_actions() {
        let mask = [false, true, false, true];
        for pick in 0..10 {
            assert!(mask[legal(&mask, pick)]);
        }
    }
}
