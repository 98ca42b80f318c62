//! agentry: reinforcement-learning agents and environments in Rust.
//!
//! This facade re-exports the workspace's crates: [`envs`], [`memory`], [`models`]
//! and [`agents`].
#![warn(missing_docs)]

pub use agentry_agents as agents;
pub use agentry_envs as envs;
pub use agentry_memory as memory;
pub use agentry_models as models;

pub mod alloc;
pub mod cli;

/// Trained agents in your own program: `Agent::load(path)?`, then `agent.act(&obs)?`
/// every frame (see [`agents::embed`]).
pub use agentry_agents::embed::{Agent, AgentInfo, AsObs, ObsView};

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
