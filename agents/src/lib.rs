//! Algorithms for agentry. So far: the classic bandit baselines ([`bandits`]) and the
//! advantage and return targets ([`returns`]); the
//! actor/learner runtime and the deep-RL learners arrive with the PPO issue.
#![warn(missing_docs)]

pub mod bandits;
pub mod returns;
