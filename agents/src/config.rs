//! Run configuration: TOML sections read with serde, layered preset → file → `--set`.
//!
//! Every section denies unknown keys. A bad key, type or value becomes a
//! [`ConfigError`] naming the dotted key (`ppo.learning_rat`), where it came from (the
//! preset, the file, or the `--set` argument) and what is allowed; the binary prints it
//! on one line and exits with code 2.
//!
//! ```
//! use agentry_agents::config::{ConfigRequest, resolve};
//! let config = resolve(&ConfigRequest {
//!     env: Some("cartpole".into()),
//!     sets: vec!["ppo.epochs=4".into()],
//!     ..Default::default()
//! })
//! .unwrap();
//! assert_eq!(config.ppo.epochs, 4);
//! assert_eq!(config.env.name, "cartpole");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use agentry_envs::Params;
use agentry_models::Activation;
use serde::{Deserialize, Serialize};

/// The built-in presets, `(algo, env, TOML)`, compiled into the binary.
pub const PRESETS: &[(&str, &str, &str)] = &[
    (
        "ppo",
        "cartpole",
        include_str!("../../configs/ppo-cartpole.toml"),
    ),
    (
        "ppo",
        "acrobot",
        include_str!("../../configs/ppo-acrobot.toml"),
    ),
    (
        "ppo",
        "dark-room",
        include_str!("../../configs/ppo-dark-room.toml"),
    ),
    (
        "ppo",
        "tictactoe",
        include_str!("../../configs/ppo-tictactoe.toml"),
    ),
    (
        "ppo",
        "pendulum",
        include_str!("../../configs/ppo-pendulum.toml"),
    ),
];

/// The algorithms `--algo` accepts (those implemented so far).
pub const ALGOS: &[&str] = &["ppo"];

/// A configuration problem: which key, from where, and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key (`ppo.learning_rate`), or empty for the file as a whole.
    pub key: String,
    /// Where the value came from: a file path, `preset ppo-cartpole`, `--set ...`.
    pub origin: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// An error at dotted `key`, from `origin` (a file, `--set ...`, a flag).
    pub fn new(key: &str, origin: &str, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_string(),
            origin: origin.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), self.origin.is_empty()) {
            (true, true) => write!(f, "configuration: {}", self.message),
            (true, false) => write!(f, "{}: {}", self.origin, self.message),
            (false, true) => write!(f, "configuration key `{}`: {}", self.key, self.message),
            (false, false) => write!(f, "{}: key `{}`: {}", self.origin, self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `[run]`: what to run and for how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The algorithm (`ppo`).
    pub algo: String,
    /// Seed of everything random in the run (environments, initialisation, sampling).
    pub seed: u64,
    /// Total environment steps (primitive `step` calls over all environments).
    pub steps: u64,
    /// Actor threads.
    pub actors: usize,
    /// Environments each actor steps.
    pub envs_per_actor: usize,
    /// Environment steps between checkpoints (0: only at the end).
    pub checkpoint_interval: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            algo: "ppo".into(),
            seed: 1,
            steps: 100_000,
            actors: 1,
            envs_per_actor: 8,
            checkpoint_interval: 10_000,
        }
    }
}

/// `[env]`: the registered environment's name and its parameters (every other key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvConfig {
    /// The registry name (`cartpole`, `dark-room`, ...); see `agent envs`.
    pub name: String,
    /// The environment's parameters, checked against its registry entry.
    #[serde(flatten)]
    pub params: Params,
}

impl Default for EnvConfig {
    fn default() -> Self {
        EnvConfig {
            name: String::new(),
            params: Params::new(),
        }
    }
}

/// `[ppo]`: PPO and PFO hyperparameters, named after CleanRL's `ppo.py` where it has them.
/// The defaults are CleanRL's classic-control defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// Steps each environment takes per rollout (CleanRL `num_steps`, SB3 `n_steps`).
    pub rollout_steps: usize,
    /// Transitions per gradient step (SB3 `batch_size`).
    pub minibatch_size: usize,
    /// Passes over each rollout (`update_epochs`).
    pub epochs: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// Anneal the step size linearly to 0 over the run.
    pub anneal_lr: bool,
    /// Adam ε.
    pub adam_eps: f64,
    /// Discount γ.
    pub gamma: f64,
    /// GAE λ.
    pub gae_lambda: f64,
    /// Surrogate clipping ε.
    pub clip_coef: f64,
    /// Anneal the clipping ε linearly to 0 over the run (rl-zoo's `lin_` schedules).
    pub anneal_clip: bool,
    /// Clip the value loss around the values recorded at collection.
    pub clip_vloss: bool,
    /// Entropy bonus coefficient.
    pub ent_coef: f64,
    /// Value loss coefficient.
    pub vf_coef: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Normalise advantages per minibatch.
    pub norm_adv: bool,
    /// Stop the epochs early once the approximate KL exceeds this (0: never).
    pub target_kl: f64,
    /// PFO's β: weight of ‖z − z_old‖²/d on the actor's last hidden pre-activations
    /// (Moalla et al. 2024; 0 = plain PPO, 1 = the paper's last-layer setting).
    pub pfo_coef: f64,
    /// Hidden widths of the actor and of the critic (separate networks).
    pub hidden: Vec<usize>,
    /// Hidden nonlinearity.
    pub activation: Activation,
    /// Initial log σ of the Gaussian policy (Box action spaces).
    pub init_log_std: f64,
    /// Compute the feature diagnostics every this many updates (0: never).
    pub diagnostics_every: usize,
    /// Normalise observations by a running mean and variance (SB3's `VecNormalize`
    /// for observations: clipped to ±10); the statistics are part of the policy and of
    /// checkpoints.
    pub normalize_obs: bool,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            rollout_steps: 128,
            minibatch_size: 128,
            epochs: 4,
            learning_rate: 2.5e-4,
            anneal_lr: true,
            adam_eps: 1e-5,
            gamma: 0.99,
            gae_lambda: 0.95,
            clip_coef: 0.2,
            anneal_clip: false,
            clip_vloss: true,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            norm_adv: true,
            target_kl: 0.0,
            pfo_coef: 0.0,
            hidden: vec![64, 64],
            activation: Activation::Tanh,
            init_log_std: 0.0,
            diagnostics_every: 10,
            normalize_obs: false,
        }
    }
}

/// `[plasticity]`: tools against plasticity loss, for any learner.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlasticityConfig {
    /// Layer norm before each hidden nonlinearity.
    pub layer_norm: bool,
}

/// A whole run's configuration, as written to `config.toml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[run]`.
    pub run: RunConfig,
    /// `[env]`.
    pub env: EnvConfig,
    /// `[ppo]`.
    pub ppo: PpoConfig,
    /// `[plasticity]`.
    pub plasticity: PlasticityConfig,
}

impl Config {
    /// The configuration as TOML (what `config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serialises")
    }

    /// Read a resolved configuration back (from a run directory's `config.toml`).
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::new("", origin, syntax_message(&e)))?;
        let origins = Origins::all(origin);
        let config = deserialize(table, &origins)?;
        config.validate(&origins)?;
        Ok(config)
    }

    /// Check every value's range and the relations between them.
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| Err(ConfigError::new(key, origins.of(key), message));
        let r = &self.run;
        if !ALGOS.contains(&r.algo.as_str()) {
            return err(
                "run.algo",
                format!(
                    "unknown algorithm `{}`; allowed: {}",
                    r.algo,
                    ALGOS.join(", ")
                ),
            );
        }
        if r.steps == 0 {
            return err("run.steps", "must be at least 1".into());
        }
        if !(1..=256).contains(&r.actors) {
            return err("run.actors", format!("{} is not in 1..=256", r.actors));
        }
        if !(1..=65_536).contains(&r.envs_per_actor) {
            return err(
                "run.envs_per_actor",
                format!("{} is not in 1..=65536", r.envs_per_actor),
            );
        }
        let envs = (r.actors * r.envs_per_actor) as u64;
        if !r.steps.is_multiple_of(envs) {
            let down = r.steps / envs * envs;
            return err(
                "run.steps",
                format!(
                    "{} is not a multiple of actors × envs_per_actor = {envs} (every step \
                     steps all environments); use {} or {}",
                    r.steps,
                    down.max(envs),
                    down + envs
                ),
            );
        }
        if self.env.name.is_empty() {
            return err("env.name", "no environment: give --env or env.name".into());
        }
        let spec = match agentry_envs::registry::find(&self.env.name) {
            Ok(spec) => spec,
            Err(e) => return err("env.name", e.to_string()),
        };
        // Build one copy: the registry checks every parameter against its spec.
        if let Err(e) = spec.make(&self.env.params) {
            return match e {
                agentry_envs::EnvError::BadParam { param, message, .. } => {
                    let key = format!("env.{param}");
                    err(&key, message)
                }
                other => err("env", other.to_string()),
            };
        }
        let p = &self.ppo;
        let positive = [
            ("ppo.rollout_steps", p.rollout_steps),
            ("ppo.minibatch_size", p.minibatch_size),
            ("ppo.epochs", p.epochs),
        ];
        for (key, v) in positive {
            if v == 0 {
                return err(key, "must be at least 1".into());
            }
        }
        let batch = p.rollout_steps * r.actors * r.envs_per_actor;
        if p.minibatch_size > batch {
            return err(
                "ppo.minibatch_size",
                format!(
                    "{} is larger than the rollout batch rollout_steps × actors × \
                     envs_per_actor = {batch}",
                    p.minibatch_size
                ),
            );
        }
        let ranges: [(&str, f64, f64, f64); 10] = [
            ("ppo.learning_rate", p.learning_rate, f64::MIN_POSITIVE, 1.0),
            ("ppo.adam_eps", p.adam_eps, f64::MIN_POSITIVE, 1.0),
            ("ppo.gamma", p.gamma, 0.0, 1.0),
            ("ppo.gae_lambda", p.gae_lambda, 0.0, 1.0),
            ("ppo.clip_coef", p.clip_coef, f64::MIN_POSITIVE, 10.0),
            ("ppo.ent_coef", p.ent_coef, 0.0, 1e3),
            ("ppo.vf_coef", p.vf_coef, 0.0, 1e3),
            ("ppo.max_grad_norm", p.max_grad_norm, 0.0, 1e6),
            ("ppo.target_kl", p.target_kl, 0.0, 1e3),
            ("ppo.pfo_coef", p.pfo_coef, 0.0, 1e6),
        ];
        for (key, v, lo, hi) in ranges {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return err(key, format!("{v} is not in [{lo}, {hi}]"));
            }
        }
        if !(-20.0..=5.0).contains(&p.init_log_std) {
            return err(
                "ppo.init_log_std",
                format!("{} is not in [-20, 5]", p.init_log_std),
            );
        }
        if p.hidden.is_empty() || p.hidden.iter().any(|&h| h == 0 || h > 65_536) {
            return err(
                "ppo.hidden",
                format!(
                    "{:?}: give one or more widths in 1..=65536, e.g. [64, 64]",
                    p.hidden
                ),
            );
        }
        Ok(())
    }
}

/// What the command line asks for; [`resolve`] layers it into a [`Config`].
#[derive(Clone, Debug, Default)]
pub struct ConfigRequest {
    /// `--algo` (default: the file's `run.algo`, else `ppo`).
    pub algo: Option<String>,
    /// `--env` (default: the file's `env.name`).
    pub env: Option<String>,
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// `--set section.key=value`, in order.
    pub sets: Vec<String>,
    /// `--steps`.
    pub steps: Option<u64>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--actors`.
    pub actors: Option<usize>,
}

/// Where each dotted key's value came from.
#[derive(Clone, Debug, Default)]
struct Origins {
    by_key: BTreeMap<String, String>,
    fallback: String,
}

impl Origins {
    fn all(origin: &str) -> Self {
        Origins {
            by_key: BTreeMap::new(),
            fallback: origin.to_string(),
        }
    }

    /// The origin of `key` or of its nearest ancestor.
    fn of(&self, key: &str) -> &str {
        let mut k = key;
        loop {
            if let Some(o) = self.by_key.get(k) {
                return o;
            }
            match k.rfind('.') {
                Some(i) => k = &k[..i],
                None => return &self.fallback,
            }
        }
    }

    fn record(&mut self, prefix: &str, value: &toml::Value, origin: &str) {
        self.by_key.insert(prefix.to_string(), origin.to_string());
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                self.record(&format!("{prefix}.{k}"), v, origin);
            }
        }
    }
}

/// The preset for `(algo, env)` (env by its registry name).
pub fn preset(algo: &str, env: &str) -> Option<&'static str> {
    PRESETS
        .iter()
        .find(|(a, e, _)| *a == algo && *e == env)
        .map(|(_, _, text)| *text)
}

fn preset_list() -> String {
    PRESETS
        .iter()
        .map(|(a, e, _)| format!("--algo {a} --env {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn syntax_message(e: &toml::de::Error) -> String {
    // toml's message spans several lines (a source excerpt); keep it on one.
    let one_line = e.message().replace('\n', " ");
    match e.span() {
        Some(span) => format!("TOML syntax error at byte {}: {one_line}", span.start),
        None => format!("TOML syntax error: {one_line}"),
    }
}

/// Merge `over` into `base`, recursing into tables (later layers win key by key).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Put `value` at the dotted `key` of `table`, creating sections on the way.
fn set_dotted(
    table: &mut toml::Table,
    key: &str,
    value: toml::Value,
    origin: &str,
) -> Result<(), ConfigError> {
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::new(
            key,
            origin,
            "is not a dotted key like ppo.learning_rate",
        ));
    }
    let (last, sections) = parts.split_last().expect("split gives at least one part");
    let mut t = table;
    let mut path = String::new();
    for s in sections {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(s);
        let entry = t
            .entry(s.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError::new(&path, origin, "is a value, not a section"));
            }
        };
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// A `--set` value: TOML if it parses as a TOML value (`3`, `1e-3`, `true`, `[64, 64]`,
/// `"text"`), else the text itself.
fn parse_value(text: &str) -> toml::Value {
    let text = text.trim();
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

fn deserialize(table: toml::Table, origins: &Origins) -> Result<Config, ConfigError> {
    let value = toml::Value::Table(table);
    serde_path_to_error::deserialize::<_, Config>(value).map_err(|e| {
        let mut key = e.path().to_string();
        if key == "." {
            key.clear();
        }
        let inner = e.into_inner().to_string();
        let inner = inner.trim().replace('\n', " ");
        // serde names an unknown field in its message; put it into the key.
        let message = match inner
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((field, rest)) => {
                if !key.ends_with(field) {
                    key = if key.is_empty() {
                        field.to_string()
                    } else {
                        format!("{key}.{field}")
                    };
                }
                format!(
                    "unknown key{}",
                    rest.replacen(", expected", "; allowed:", 1)
                )
            }
            None => inner,
        };
        let origin = origins.of(&key).to_string();
        ConfigError::new(&key, &origin, message)
    })
}

/// Layer the preset for (algo, env), the file, the flags and `--set`s, then check it all.
pub fn resolve(request: &ConfigRequest) -> Result<Config, ConfigError> {
    let mut origins = Origins::default();
    let file_table = match &request.file {
        Some(path) => Some(read_table(path)?),
        None => None,
    };
    let file_origin = request
        .file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let from_file = |section: &str, key: &str| {
        file_table
            .as_ref()
            .and_then(|t| t.get(section))
            .and_then(|s| s.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let algo = request
        .algo
        .clone()
        .or_else(|| from_file("run", "algo"))
        .unwrap_or_else(|| "ppo".to_string());
    if !ALGOS.contains(&algo.as_str()) {
        return Err(ConfigError::new(
            "run.algo",
            if request.algo.is_some() {
                "--algo"
            } else {
                &file_origin
            },
            format!("unknown algorithm `{algo}`; allowed: {}", ALGOS.join(", ")),
        ));
    }
    let env = request.env.clone().or_else(|| from_file("env", "name"));
    let Some(env) = env else {
        return Err(ConfigError::new(
            "env.name",
            &file_origin,
            "no environment: give --env ENV (see `agent envs`)",
        ));
    };
    let family = agentry_envs::registry::find(&env)
        .map_err(|e| {
            ConfigError::new(
                "env.name",
                if request.env.is_some() {
                    "--env"
                } else {
                    &file_origin
                },
                e.to_string(),
            )
        })?
        .name;

    let mut table = toml::Table::new();
    match preset(&algo, family) {
        Some(text) => {
            let origin = format!("preset {algo}-{family}");
            let preset: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::new("", &origin, syntax_message(&e)))?;
            for (k, v) in &preset {
                origins.record(k, v, &origin);
            }
            table = preset;
        }
        None if file_table.is_some() => {}
        None => {
            return Err(ConfigError::new(
                "",
                "",
                format!(
                    "no preset for --algo {algo} --env {family}; give --config FILE, or use \
                     one of: {}",
                    preset_list()
                ),
            ));
        }
    }
    if let Some(file) = file_table {
        for (k, v) in &file {
            origins.record(k, v, &file_origin);
        }
        merge(&mut table, file);
    }
    let mut flag = |key: &str, value: toml::Value, origin: &str| -> Result<(), ConfigError> {
        origins.record(key, &value, origin);
        set_dotted(&mut table, key, value, origin)
    };
    flag("run.algo", toml::Value::String(algo.clone()), "--algo")?;
    if request.env.is_some() {
        flag("env.name", toml::Value::String(family.to_string()), "--env")?;
    }
    if let Some(steps) = request.steps {
        let steps = i64::try_from(steps)
            .map_err(|_| ConfigError::new("run.steps", "--steps", "is too large"))?;
        flag("run.steps", toml::Value::Integer(steps), "--steps")?;
    }
    if let Some(seed) = request.seed {
        let seed = i64::try_from(seed)
            .map_err(|_| ConfigError::new("run.seed", "--seed", "must be below 2^63"))?;
        flag("run.seed", toml::Value::Integer(seed), "--seed")?;
    }
    if let Some(actors) = request.actors {
        flag(
            "run.actors",
            toml::Value::Integer(actors as i64),
            "--actors",
        )?;
    }
    for item in &request.sets {
        let origin = format!("--set {item}");
        let Some((key, value)) = item.split_once('=') else {
            return Err(ConfigError::new(
                item,
                &origin,
                "is not of the form section.key=value",
            ));
        };
        let key = key.trim();
        if !key.contains('.') {
            return Err(ConfigError::new(
                key,
                &origin,
                "name the section too, e.g. ppo.learning_rate=3e-4",
            ));
        }
        flag(key, parse_value(value), &origin)?;
    }
    let config = deserialize(table, &origins)?;
    config.validate(&origins)?;
    Ok(config)
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", &origin, format!("cannot read the file: {e}")))?;
    text.parse()
        .map_err(|e: toml::de::Error| ConfigError::new("", &origin, syntax_message(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(env: &str, sets: &[&str]) -> ConfigRequest {
        ConfigRequest {
            env: Some(env.into()),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn every_preset_parses_and_validates() {
        for (algo, env, text) in PRESETS {
            let config = Config::from_toml(text, "preset").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((&config.run.algo[..], &config.env.name[..]), (*algo, *env));
            let resolved = resolve(&req(env, &[])).unwrap();
            assert_eq!(resolved, config, "{algo}-{env}");
        }
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("agentry-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[ppo]\nepochs = 7\nlearning_rate = 1e-2\n[run]\nseed = 9\n",
        )
        .unwrap();
        let config = resolve(&ConfigRequest {
            env: Some("CartPole-v1".into()),
            file: Some(file.clone()),
            sets: vec!["ppo.epochs=3".into(), "ppo.hidden=[32]".into()],
            steps: Some(800),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.ppo.epochs, 3); // --set beats the file
        assert_eq!(config.ppo.learning_rate, 1e-2); // the file beats the preset
        assert_eq!(config.ppo.hidden, vec![32]);
        assert_eq!(config.run.seed, 9);
        assert_eq!(config.run.steps, 800);
        assert_eq!(config.ppo.gae_lambda, 0.8); // from the preset
        // The resolved configuration round-trips through config.toml.
        assert_eq!(Config::from_toml(&config.to_toml(), "x").unwrap(), config);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn errors_name_the_key_the_origin_and_what_is_allowed() {
        let e = resolve(&req("cartpole", &["ppo.learning_rat=3"])).unwrap_err();
        assert_eq!(e.key, "ppo.learning_rat");
        assert_eq!(e.origin, "--set ppo.learning_rat=3");
        assert!(e.message.contains("learning_rate"), "{e}");

        let e = resolve(&req("cartpole", &["ppo.epochs=many"])).unwrap_err();
        assert_eq!(e.key, "ppo.epochs");
        assert!(e.message.contains("invalid type"), "{e}");

        let e = resolve(&req("cartpole", &["ppo.gamma=1.5"])).unwrap_err();
        assert_eq!(e.key, "ppo.gamma");
        assert!(e.message.contains("[0, 1]"), "{e}");

        let e = resolve(&req("cartpole", &["run.steps=1001"])).unwrap_err();
        assert_eq!(e.key, "run.steps");

        let e = resolve(&req("cartpol", &[])).unwrap_err();
        assert_eq!((e.key.as_str(), e.origin.as_str()), ("env.name", "--env"));
        assert!(e.message.contains("cartpole"), "{e}");

        let e = resolve(&req("mountain-car", &[])).unwrap_err();
        assert!(e.message.contains("--algo ppo --env cartpole"), "{e}");

        let e = resolve(&ConfigRequest {
            algo: Some("sarsa".into()),
            ..req("cartpole", &[])
        })
        .unwrap_err();
        assert_eq!(e.key, "run.algo");

        let e = resolve(&req("cartpole", &["nosection=1"])).unwrap_err();
        assert!(e.to_string().contains("section"), "{e}");
        let e = resolve(&req("cartpole", &["bogus.key=1"])).unwrap_err();
        assert_eq!(e.key, "bogus");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("agentry-config-e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[ppo\nepochs = 3\n").unwrap();
        let e = resolve(&ConfigRequest {
            file: Some(bad.clone()),
            ..req("cartpole", &[])
        })
        .unwrap_err();
        assert_eq!(e.origin, bad.display().to_string());
        assert!(e.message.contains("syntax"), "{e}");
        let typo = dir.join("typo.toml");
        std::fs::write(&typo, "[ppo]\nepochs = 3\nclip_cof = 0.1\n").unwrap();
        let e = resolve(&ConfigRequest {
            file: Some(typo.clone()),
            ..req("cartpole", &[])
        })
        .unwrap_err();
        assert_eq!(e.key, "ppo.clip_cof");
        assert_eq!(e.origin, typo.display().to_string());
        assert!(!e.to_string().contains('\n'));
        let missing = dir.join("missing.toml");
        let e = resolve(&ConfigRequest {
            file: Some(missing.clone()),
            ..req("cartpole", &[])
        })
        .unwrap_err();
        assert!(e.to_string().contains("missing.toml"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
