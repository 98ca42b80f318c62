//! agentry: reinforcement-learning agents and environments in Rust.
//!
//! This facade re-exports the workspace's crates: [`envs`], [`memory`], [`models`]
//! and [`agents`].
#![warn(missing_docs)]

pub use agentry_agents as agents;
pub use agentry_envs as envs;
pub use agentry_memory as memory;
pub use agentry_models as models;

pub mod cli;
