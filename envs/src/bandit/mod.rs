//! Bandits: K-armed Bernoulli and Gaussian bandits (stationary or not) and a linear
//! contextual bandit.
//!
//! Every bandit reports three extras (see [`EXTRAS`]) describing each pull, so an agent
//! is scored by its cumulative regret:
//! - `regret`: the best arm's expected reward minus the chosen arm's, both at the time of
//!   the pull (expected values, not samples; 0 for the best arm, never negative);
//! - `optimal_arm`: the index of the best arm at that pull (first on ties), as `f64`;
//! - `best_mean`: the best arm's expected reward at that pull.
//!
//! After a reset no pull has been made: `regret` is 0 and the other two describe the
//! coming first pull. An episode is `horizon` pulls and ends *truncated* (never
//! terminated: nothing about the task ends, the episode is only cut).
//!
//! Multi-armed bandits have no state, so their observation is a `Box` of shape `[1]`
//! with bounds `[0, 0]` that always holds `0.0` (a constant input keeps every agent
//! interface — including networks — working unchanged; in-context learners see the
//! previous action and reward through their own history). The contextual bandit
//! observes the fresh context.
//!
//! ```
//! use agentry_envs::{make, Action, EnvExt, Params};
//! let p = Params::new().with("kind", "bernoulli").with("arms", 3i64).with("means", vec![0.1, 0.5, 0.8]);
//! let mut env = make("bandit", &p).unwrap();
//! env.reset(Some(7)).unwrap();
//! let t = env.step(Action::Discrete(1)).unwrap();
//! assert!((t.info.get("regret").unwrap() - 0.3).abs() < 1e-12);
//! assert_eq!(t.info.get("optimal_arm"), Some(2.0));
//! ```

mod contextual;
mod multi_armed;

pub use contextual::{ContextualBandit, ContextualBanditConfig};
pub use multi_armed::{ArmKind, Bandit, BanditConfig, Stationarity};

use crate::env::Env;
use crate::params::{ParamKind, ParamSpec};
use crate::registry::EnvSpec;

/// Names of the extras every bandit reports, in buffer order: `regret`, `optimal_arm`,
/// `best_mean` (see the [module docs](self)).
pub const EXTRAS: [&str; 3] = ["regret", "optimal_arm", "best_mean"];

/// The registry entries of this module.
pub fn specs() -> Vec<EnvSpec> {
    let mut nonstationary = multi_armed::params();
    nonstationary.extend([
        ParamSpec::new(
            "mode",
            ParamKind::Choice(&["drift", "switch"]),
            "drift",
            "how the means change",
        ),
        ParamSpec::new(
            "drift",
            ParamKind::Float {
                min: 0.0,
                max: 10.0,
            },
            "0.01",
            "drift: standard deviation of each mean's random-walk step per pull",
        ),
        ParamSpec::new(
            "switch_every",
            ParamKind::Int {
                min: 1,
                max: i64::MAX,
            },
            "100",
            "switch: pulls between redraws of all means",
        ),
    ]);
    vec![
        EnvSpec {
            name: "bandit",
            aliases: &["mab"],
            summary: "K-armed Bernoulli or Gaussian bandit; regret of every pull in the extras",
            params: multi_armed::params(),
            max_episode_steps: None,
            build: |p| {
                Ok(Box::new(Bandit::new(BanditConfig::from_params(p, false)?)?) as Box<dyn Env>)
            },
        },
        EnvSpec {
            name: "bandit-nonstationary",
            aliases: &["nonstationary-bandit"],
            summary: "K-armed bandit whose arm means drift or switch as it is played",
            params: nonstationary,
            max_episode_steps: None,
            build: |p| {
                Ok(Box::new(Bandit::new(BanditConfig::from_params(p, true)?)?) as Box<dyn Env>)
            },
        },
        EnvSpec {
            name: "contextual-bandit",
            aliases: &["linear-bandit"],
            summary: "linear contextual bandit: reward θₐᵀx + noise for a fresh context x each pull",
            params: contextual::params(),
            max_episode_steps: None,
            build: |p| {
                Ok(
                    Box::new(ContextualBandit::new(ContextualBanditConfig::from_params(
                        p,
                    )?)?) as Box<dyn Env>,
                )
            },
        },
    ]
}
