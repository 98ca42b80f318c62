//! Stepping-speed measurement behind `agent bench envs`.
//!
//! Actions are drawn at random before the clock starts (a table cycled through), so
//! the figures measure the environments, not the random number generator. Where an
//! environment has a legal-action mask, a random legal action is chosen each step.

use std::time::Instant;

use rand::RngExt;

use crate::env::{Env, Observation};
use crate::error::{EnvError, Result};
use crate::params::Params;
use crate::rng::rng_from_seed;
use crate::space::{Action, Space, sample_box};
use crate::vector::{VecAction, make_vec};

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

/// Steps per second of one environment with random actions, resetting when an episode ends.
pub fn bench_single(name: &str, params: &Params, steps: u64, seed: u64) -> Result<BenchResult> {
    let mut env = crate::make(name, params)?;
    let table = ActionTable::new(env.action_space(), 1, seed)?;
    let space = env.observation_space();
    let mut obs = Observation::zeros(space.dtype(), space.flat_dim());
    let mut mask = vec![true; env.action_mask_len()];
    let mut extras = vec![0.0; env.extra_names().len()];
    env.reset_into(
        Some(seed),
        crate::Out {
            obs: obs.as_mut(),
            action_mask: &mut mask,
            extras: &mut extras,
        },
    )?;
    let masked = !mask.is_empty();
    let start = Instant::now();
    for t in 0..steps as usize {
        let action = match table.row(t) {
            VecAction::Discrete(a) if masked => Action::Discrete(legal(&mask, a[0])),
            VecAction::Discrete(a) => Action::Discrete(a[0]),
            VecAction::MultiDiscrete(a) => Action::MultiDiscrete(a),
            VecAction::Continuous(a) => Action::Continuous(a),
        };
        let out = crate::Out {
            obs: obs.as_mut(),
            action_mask: &mut mask,
            extras: &mut extras,
        };
        if env.step_into(action, out)?.done() {
            env.reset_into(
                None,
                crate::Out {
                    obs: obs.as_mut(),
                    action_mask: &mut mask,
                    extras: &mut extras,
                },
            )?;
        }
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
    if num_envs == 0 {
        return Err(EnvError::Invalid("--num-envs must be at least 1".into()));
    }
    let mut envs = make_vec(name, params, num_envs, threads)?;
    let table = ActionTable::new(envs.action_space(), num_envs, seed)?;
    let mask_len = envs.reset(Some(seed))?.mask_len();
    let rounds = (steps as usize).div_ceil(num_envs);
    let mut chosen = vec![0usize; num_envs];
    let start = Instant::now();
    for t in 0..rounds {
        let actions = table.row(t);
        if mask_len > 0 {
            let VecAction::Discrete(raw) = actions else {
                return Err(EnvError::Invalid(
                    "masked environments must have discrete actions".into(),
                ));
            };
            let masks = envs.buffers().action_masks();
            for (i, c) in chosen.iter_mut().enumerate() {
                *c = legal(&masks[i * mask_len..(i + 1) * mask_len], raw[i]);
            }
            envs.step(VecAction::Discrete(&chosen))?;
        } else {
            envs.step(actions)?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(BenchResult {
        steps: (rounds * num_envs) as u64,
        seconds,
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
