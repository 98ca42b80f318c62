//! Algorithms for agentry. So far: the classic bandit baselines ([`bandits`]); the
//! actor/learner runtime and the deep-RL learners arrive with the PPO issue.
#![warn(missing_docs)]

pub mod bandits;
