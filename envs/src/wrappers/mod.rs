//! Wrappers: environments that change another environment's behaviour.

mod time_limit;

pub use time_limit::TimeLimit;
