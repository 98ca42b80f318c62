//! Algorithms for agentry, and the runtime they share.
//!
//! - [`runner`]: K actor threads and one learner, with versioned policies and bounded
//!   channels; every algorithm plugs into it through [`runner::Learner`] and
//!   [`runner::Actor`].
//! - [`ppo`]: PPO with Proximal Feature Optimization.
//! - [`dqn`]: DQN and Rainbow, every Rainbow component a switch.
//! - [`train`]: run directories, checkpoints (in the [`checkpoint`] container),
//!   resuming and evaluation.
//! - [`plot`]: learning curves of run directories (PNG or SVG).
//! - [`config`]: the TOML configuration, its presets and layering.
//! - [`bandits`]: the classic bandit baselines; [`tabular`]: Q-learning over a table,
//!   the source of fast-improving learning histories; [`returns`]: GAE and return targets.
//! - [`continual`]: plasticity loss on non-stationary supervised task streams, with and
//!   without each remedy (`agent bench plasticity`).
#![warn(missing_docs)]

pub mod bandits;
pub mod checkpoint;
pub mod config;
pub mod continual;
pub mod dataset;
pub mod dqn;
pub mod embed;
pub mod error;
pub mod experiment;
mod grads;
pub mod macros;
pub mod offline;
pub mod plot;
pub mod ppo;
pub mod radt;
pub mod returns;
pub mod runner;
pub mod tabular;
pub mod train;

pub use error::AgentError;
