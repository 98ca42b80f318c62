//! Bandits: K-armed Bernoulli and Gaussian bandits (stationary or not) and a linear
//! contextual bandit.
//!
//! Every bandit reports, in its extras, the `regret` of each pull — the best arm's
//! expected reward minus the chosen arm's, both at the time of the pull (expected values,
//! not samples) — and the index of the best arm (`best_arm`), so an agent is scored by
//! its cumulative regret. An episode is `horizon` pulls and ends truncated.
//!
//! Multi-armed bandits have no state: their observation is a single constant `0.0`.

mod contextual;
mod multi_armed;

pub use contextual::{ContextualBandit, ContextualBanditConfig};
pub use multi_armed::{ArmKind, Bandit, BanditConfig, Stationarity};

use crate::env::Env;
use crate::params::{ParamKind, ParamSpec};
use crate::registry::EnvSpec;

/// Names of the extras every bandit reports.
pub const EXTRAS: [&str; 2] = ["regret", "best_arm"];

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
