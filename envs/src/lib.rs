//! Environments for agentry, with Gymnasium's semantics and no deep-learning framework.
//!
//! - [`Env`]: `reset_into`/`step_into` write into caller-owned buffers (no allocation on
//!   the hot path); [`EnvExt`] adds Gymnasium's owned `reset`/`step`.
//! - [`Space`]: Discrete, MultiDiscrete and Box, with `contains` and seeded sampling.
//! - [`wrappers`]: time limit, episode statistics, observation normalisation, frame
//!   stacking, reward clipping and scaling, macro-actions.
//! - [`vector`]: synchronous and threaded vector environments with auto-reset.
//! - [`make`]: build any registered environment by name with typed parameters.
//! - `atari` (cargo feature `atari`, off by default): Atari 2600 games through the
//!   Arcade Learning Environment, registered as `atari:Breakout`, ... (the common
//!   preprocessing, 4 stacked 84×84 frames) and `ALE/Breakout-v5`, ... (raw, as
//!   Gymnasium's).
#![warn(missing_docs)]

#[cfg(feature = "atari")]
pub mod atari;
pub mod bandit;
pub mod bench;
pub mod classic;
pub mod env;
pub mod error;
pub mod grid;
pub mod params;
pub mod registry;
pub mod rng;
pub mod space;
pub mod testing;
pub mod tictactoe;
pub mod vector;
pub mod wrappers;

pub use env::{
    Env, EnvExt, EpisodeEnd, Info, ObsMut, Observation, Out, RgbImage, Step, Transition,
};
pub use error::{EnvError, Result};
pub use params::{ParamKind, ParamSpec, ParamValue, Params, ResolvedParams};
pub use registry::{EnvSpec, find, make, register, registry};
pub use rng::{EnvRng, derive_seed, rng_from_seed};
pub use space::{Action, BoxSpace, Dtype, OwnedAction, Space};
