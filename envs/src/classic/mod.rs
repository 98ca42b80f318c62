//! Gymnasium's classic-control tasks: CartPole-v1, Acrobot-v1, MountainCar-v0,
//! Pendulum-v1 and MountainCarContinuous-v0.
//!
//! Dynamics, termination, rewards, observation bounds and initial-state distributions are
//! those of Gymnasium 1.x's reference implementation, computed in the same floating-point
//! precision and order of operations (including the places where Gymnasium computes in
//! `f32`), and checked step by step against trajectories recorded from Gymnasium itself
//! (`envs/tests/fixtures/classic/`). The time limits (500, 500, 200, 200, 999 steps) are
//! applied by the registry, as `gymnasium.make` does; the environments themselves never
//! truncate.
//!
//! One deliberate difference: Gymnasium clips out-of-range continuous actions; here an
//! action outside the action space is an error, so a policy clips to the bounds itself.
//! Random initial states come from our own generator, so a seed gives different (but
//! equally distributed) initial states than Gymnasium's; `set_state` starts from any state.

mod acrobot;
mod cartpole;
mod mountain_car;
mod pendulum;

pub use acrobot::Acrobot;
pub use cartpole::CartPole;
pub use mountain_car::{MountainCar, MountainCarContinuous};
pub use pendulum::Pendulum;

use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::params::{ParamKind, ParamSpec};
use crate::registry::EnvSpec;

/// The registry entries of this module.
pub fn specs() -> Vec<EnvSpec> {
    vec![
        EnvSpec {
            name: "cartpole",
            aliases: &["CartPole-v1"],
            summary: "balance a pole on a cart (Gymnasium CartPole-v1): +1 per step, 500-step limit",
            params: vec![],
            max_episode_steps: Some(500),
            build: |_| Ok(Box::new(CartPole::new()) as Box<dyn Env>),
        },
        EnvSpec {
            name: "acrobot",
            aliases: &["Acrobot-v1"],
            summary: "swing a two-link arm above a line (Gymnasium Acrobot-v1): −1 per step, 500-step limit",
            params: vec![],
            max_episode_steps: Some(500),
            build: |_| Ok(Box::new(Acrobot::new()) as Box<dyn Env>),
        },
        EnvSpec {
            name: "mountain-car",
            aliases: &["MountainCar-v0"],
            summary: "drive an underpowered car up a hill (Gymnasium MountainCar-v0): −1 per step, 200-step limit",
            params: vec![goal_velocity()],
            max_episode_steps: Some(200),
            build: |p| Ok(Box::new(MountainCar::new(p.float("goal_velocity")?)) as Box<dyn Env>),
        },
        EnvSpec {
            name: "pendulum",
            aliases: &["Pendulum-v1"],
            summary: "swing a pendulum up and hold it (Gymnasium Pendulum-v1): continuous torque, 200-step limit",
            params: vec![ParamSpec::new(
                "g",
                ParamKind::Float {
                    min: 0.0,
                    max: 100.0,
                },
                "10.0",
                "gravity (m/s²)",
            )],
            max_episode_steps: Some(200),
            build: |p| Ok(Box::new(Pendulum::new(p.float("g")?)) as Box<dyn Env>),
        },
        EnvSpec {
            name: "mountain-car-continuous",
            aliases: &["MountainCarContinuous-v0"],
            summary: "mountain car with a continuous force (Gymnasium MountainCarContinuous-v0): 999-step limit",
            params: vec![goal_velocity()],
            max_episode_steps: Some(999),
            build: |p| {
                Ok(Box::new(MountainCarContinuous::new(p.float("goal_velocity")?)) as Box<dyn Env>)
            },
        },
    ]
}

fn goal_velocity() -> ParamSpec {
    ParamSpec::new(
        "goal_velocity",
        ParamKind::Float {
            min: -0.07,
            max: 0.07,
        },
        "0.0",
        "velocity the car must have at the goal",
    )
}

/// Check a state given to `set_state`.
fn check_state(env: &str, state: &[f64], len: usize) -> Result<()> {
    if state.len() != len {
        return Err(EnvError::Invalid(format!(
            "{env} state has {len} numbers, got {}",
            state.len()
        )));
    }
    if state.iter().any(|x| !x.is_finite()) {
        return Err(EnvError::Invalid(format!(
            "{env} state {state:?} is not finite"
        )));
    }
    Ok(())
}

/// A one-line gauge: `value` in `[lo, hi]` drawn as a marker on a track of `width` cells.
fn gauge(value: f64, lo: f64, hi: f64, width: usize, marker: char) -> String {
    let frac = ((value - lo) / (hi - lo)).clamp(0.0, 1.0);
    let pos = (frac * (width - 1) as f64).round() as usize;
    (0..width)
        .map(|i| if i == pos { marker } else { '-' })
        .collect()
}
