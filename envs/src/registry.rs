//! Making environments by name: `make("dark-room", &params)`.
//!
//! Every environment of this crate is registered here with its parameters. Names are
//! matched case-insensitively, and Gymnasium's ids (`CartPole-v1`, ...) are accepted as
//! aliases. Every environment also takes `max_episode_steps` (0 = no limit): when it is
//! non-zero the environment is wrapped in a [`TimeLimit`] — classic-control tasks default
//! to Gymnasium's limits, as `gymnasium.make` does.

use std::sync::OnceLock;

use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::params::{ParamKind, ParamSpec, Params, ResolvedParams};
use crate::wrappers::TimeLimit;

/// Builds an environment from checked parameters.
pub type BuildFn = fn(&ResolvedParams) -> Result<Box<dyn Env>>;

/// A registered environment: its name, documentation, parameters and constructor.
#[derive(Clone, Debug)]
pub struct EnvSpec {
    /// The registry name (`cartpole`, `dark-room`, ...).
    pub name: &'static str,
    /// Other accepted names (Gymnasium ids).
    pub aliases: &'static [&'static str],
    /// One line saying what it is.
    pub summary: &'static str,
    /// Its own parameters (the registry adds `max_episode_steps`).
    pub params: Vec<ParamSpec>,
    /// The default time limit (`None`: the environment ends its own episodes).
    pub max_episode_steps: Option<u64>,
    /// The constructor.
    pub build: BuildFn,
}

impl EnvSpec {
    /// All parameters, including the registry's `max_episode_steps`.
    pub fn all_params(&self) -> Vec<ParamSpec> {
        let mut p = self.params.clone();
        p.push(ParamSpec {
            name: "max_episode_steps",
            kind: ParamKind::Int {
                min: 0,
                max: i64::MAX,
            },
            default: Some(self.max_episode_steps.unwrap_or(0).to_string().into()),
            doc: "truncate episodes after this many steps (0: no time limit)",
        });
        p
    }

    /// Build this environment with `params`.
    pub fn make(&self, params: &Params) -> Result<Box<dyn Env>> {
        let resolved = ResolvedParams::resolve(self.name, &self.all_params(), params)?;
        let limit = resolved.int("max_episode_steps")?;
        let env = (self.build)(&resolved)?;
        Ok(if limit > 0 {
            Box::new(TimeLimit::new(env, limit as u64))
        } else {
            env
        })
    }
}

/// Every registered environment, in the order `agent envs` lists them.
pub fn registry() -> &'static [EnvSpec] {
    static REGISTRY: OnceLock<Vec<EnvSpec>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut specs = Vec::new();
        specs.extend(crate::classic::specs());
        specs.extend(crate::grid::specs());
        specs.extend(crate::bandit::specs());
        specs.extend(crate::tictactoe::specs());
        #[cfg(feature = "atari")]
        specs.extend(crate::atari::specs());
        specs
    })
}

/// The spec registered under `name` (or one of its aliases), case-insensitively.
pub fn find(name: &str) -> Result<&'static EnvSpec> {
    let specs = registry();
    let found = specs.iter().find(|s| {
        s.name.eq_ignore_ascii_case(name) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    });
    #[cfg(feature = "atari")]
    if found.is_none() && crate::atari::is_atari_name(name) {
        return crate::atari::resolve(name, specs);
    }
    found.ok_or_else(|| EnvError::UnknownEnv {
        name: name.to_string(),
        valid: specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
    })
}

/// Build the environment registered as `name` with `params`.
///
/// ```
/// use agentry_envs::{make, EnvExt, Params};
/// let mut env = make("cartpole", &Params::new()).unwrap();
/// let (obs, _info) = env.reset(Some(42)).unwrap();
/// assert_eq!(obs.to_f32().len(), 4);
/// let err = make("cartpol", &Params::new()).err().unwrap();
/// assert!(err.to_string().contains("cartpole"));
/// ```
pub fn make(name: &str, params: &Params) -> Result<Box<dyn Env>> {
    find(name)?.make(params)
}
