//! Making environments by name: `make("dark-room", &params)`.
//!
//! Every environment of this crate is registered here with its parameters. Names are
//! matched case-insensitively, and Gymnasium's ids (`CartPole-v1`, ...) are accepted as
//! aliases. Every environment also takes `max_episode_steps` (0 = no limit): when it is
//! non-zero the environment is wrapped in a [`TimeLimit`] — classic-control tasks default
//! to Gymnasium's limits, as `gymnasium.make` does.

use std::sync::{OnceLock, RwLock};

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

/// The environments this crate ships, in the order `agent envs` lists them.
fn builtin() -> &'static [EnvSpec] {
    static BUILTIN: OnceLock<Vec<EnvSpec>> = OnceLock::new();
    BUILTIN.get_or_init(|| {
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

/// Environments registered at run time by [`register`] (leaked: they live as long as
/// the process, as the built-in ones do).
static USER: RwLock<Vec<&'static EnvSpec>> = RwLock::new(Vec::new());

fn user_specs() -> Vec<&'static EnvSpec> {
    // A panic while the lock was held cannot leave the list half-written (a push is
    // the only write), so a poisoned lock is still a valid list.
    USER.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Every registered environment: the built-in ones in the order `agent envs` lists
/// them, then those added by [`register`] in the order they were added.
pub fn registry() -> Vec<&'static EnvSpec> {
    builtin().iter().chain(user_specs()).collect()
}

/// Add an environment of your own to the registry, so that `make`, `agent train
/// --env NAME` (from a binary of yours that calls `agentry::cli::main_with_args`) and
/// every vector environment can build it by name.
///
/// A name (or alias) that is already taken, by a built-in environment or an earlier
/// registration, is an error; so is a name that is empty or holds whitespace or `=`
/// (it must survive a command line and a config file).
///
/// ```
/// use agentry_envs::registry::{EnvSpec, register};
/// use agentry_envs::{make, Params};
/// # fn build(_: &agentry_envs::ResolvedParams) -> agentry_envs::Result<Box<dyn agentry_envs::Env>> {
/// #     agentry_envs::make("cartpole", &Params::new())
/// # }
/// register(EnvSpec {
///     name: "my-cartpole",
///     aliases: &[],
///     summary: "a game of mine",
///     params: vec![],
///     max_episode_steps: Some(200),
///     build,
/// })
/// .unwrap();
/// assert!(make("my-cartpole", &Params::new()).is_ok());
/// assert!(register(EnvSpec { name: "cartpole", aliases: &[], summary: "", params: vec![],
///     max_episode_steps: None, build }).is_err());
/// ```
pub fn register(spec: EnvSpec) -> Result<()> {
    let names = || std::iter::once(spec.name).chain(spec.aliases.iter().copied());
    for name in names() {
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '=') {
            return Err(EnvError::Invalid(format!(
                "`{name}` cannot be an environment name: it must be non-empty, without \
                 whitespace or `=`"
            )));
        }
    }
    let mut user = USER.write().unwrap_or_else(|e| e.into_inner());
    let taken = builtin().iter().chain(user.iter().copied()).find(|s| {
        names().any(|n| {
            s.name.eq_ignore_ascii_case(n) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(n))
        })
    });
    if let Some(other) = taken {
        return Err(EnvError::Invalid(format!(
            "cannot register `{}`: the name is taken by the registered environment `{}` \
             (choose another name)",
            spec.name, other.name
        )));
    }
    user.push(Box::leak(Box::new(spec)));
    Ok(())
}

/// Whether `name` is an environment added by [`register`] (not one agentry ships).
pub fn is_user_registered(name: &str) -> bool {
    user_specs().iter().any(|s| {
        s.name.eq_ignore_ascii_case(name) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// The spec registered under `name` (or one of its aliases), case-insensitively.
pub fn find(name: &str) -> Result<&'static EnvSpec> {
    let specs = registry();
    let found = specs.iter().copied().find(|s| {
        s.name.eq_ignore_ascii_case(name) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    });
    #[cfg(feature = "atari")]
    if found.is_none() && crate::atari::is_atari_name(name) {
        return crate::atari::resolve(name, builtin());
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
