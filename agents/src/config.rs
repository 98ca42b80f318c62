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
        "lram",
        "offline",
        include_str!("../../configs/lram-offline.toml"),
    ),
    (
        "dt",
        "offline",
        include_str!("../../configs/dt-offline.toml"),
    ),
    (
        "radt",
        "offline",
        include_str!("../../configs/radt-offline.toml"),
    ),
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
    ("ppo", "atari", include_str!("../../configs/ppo-atari.toml")),
    (
        "dqn",
        "cartpole",
        include_str!("../../configs/dqn-cartpole.toml"),
    ),
    (
        "rainbow",
        "cartpole",
        include_str!("../../configs/rainbow-cartpole.toml"),
    ),
    (
        "rainbow",
        "dark-room",
        include_str!("../../configs/rainbow-dark-room.toml"),
    ),
    (
        "rainbow",
        "grid-world",
        include_str!("../../configs/rainbow-grid-world.toml"),
    ),
    (
        "rainbow",
        "atari",
        include_str!("../../configs/rainbow-atari.toml"),
    ),
];

/// The algorithms `--algo` accepts (those implemented so far).
pub const ALGOS: &[&str] = &["ppo", "dqn", "rainbow", "lram", "dt", "radt"];

/// The algorithms that learn offline from datasets (`--dataset`), not from an
/// environment (`--env`).
pub const OFFLINE_ALGOS: &[&str] = &["lram", "dt", "radt"];

/// Whether `algo` learns offline from datasets.
pub fn is_offline(algo: &str) -> bool {
    OFFLINE_ALGOS.contains(&algo)
}

/// The algorithm sections, and the algorithms that read each.
const ALGO_SECTIONS: &[(&str, &[&str])] = &[
    ("ppo", &["ppo"]),
    ("dqn", &["dqn", "rainbow"]),
    ("rainbow", &["rainbow"]),
    ("lram", &["lram"]),
    ("dt", &["dt"]),
    ("radt", &["radt"]),
];

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
    /// Record every episode the actors finish into `DIR/history/` (a learning history
    /// dataset, one part per checkpoint; see [`crate::dataset`]).
    pub record_history: bool,
    /// Seconds the learner waits for an actor's chunk of experience before it ends the
    /// run with an error (an environment step that hangs); 0 waits forever.
    pub actor_timeout_s: f64,
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
            record_history: false,
            actor_timeout_s: 600.0,
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

/// A network kind (`ppo.network`, `dqn.network`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The Nature CNN for `u8` frames of shape `[channels, height, width]`, else the MLP.
    Auto,
    /// The MLP of `ppo.hidden` (for DQN: the fully connected layers alone).
    Mlp,
    /// The Nature CNN (Mnih et al. 2015).
    Cnn,
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
    /// Environment steps the annealing of the step size and of the clipping ε spans: 0
    /// is the run's `--steps`. A longer span runs the first part of a longer schedule
    /// (for example `10000000`, CleanRL's Atari budget, for a 500k-step run); the
    /// factor stops at 0 past it.
    pub anneal_steps: u64,
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
    /// Weight of an auxiliary value head on the actor: the actor network gets one more
    /// output, trained by ½(v_aux − G)² toward the same returns as the critic, so its
    /// trunk learns state features where the policy gradient carries almost none (as
    /// Phasic Policy Gradient's auxiliary head, Cobbe et al. 2021, here trained in the
    /// same loss). The networks stay separate; acting ignores the output. 0 = off.
    pub aux_value_coef: f64,
    /// The actor's and the critic's network (separate networks, as the PFO paper
    /// trains them): `auto` (the Nature CNN for `u8` frames `[channels, height, width]`,
    /// else the MLP), `mlp` or `cnn`.
    pub network: Network,
    /// Hidden widths of the actor and of the critic MLPs (the CNN is the Nature CNN's).
    pub hidden: Vec<usize>,
    /// Hidden nonlinearity of the MLPs (the CNN's is ReLU).
    pub activation: Activation,
    /// Initial log σ of the Gaussian policy (Box action spaces).
    pub init_log_std: f64,
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
            anneal_steps: 0,
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
            aux_value_coef: 0.0,
            network: Network::Auto,
            hidden: vec![64, 64],
            activation: Activation::Tanh,
            init_log_std: 0.0,
            normalize_obs: false,
        }
    }
}

/// `[dqn]`: the hyperparameters DQN and Rainbow share, named after Stable-Baselines3's
/// `DQN` where it has them. The defaults are SB3's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DqnConfig {
    /// Adam step size.
    pub learning_rate: f64,
    /// Anneal the step size linearly to 0 over the run (rl-zoo's `lin_` schedules).
    pub anneal_lr: bool,
    /// Adam ε.
    pub adam_eps: f64,
    /// Transitions per gradient step.
    pub batch_size: usize,
    /// Replay capacity in transitions.
    pub buffer_size: usize,
    /// Environment steps (over all environments) of uniformly random actions before
    /// learning starts.
    pub learning_starts: u64,
    /// Discount γ.
    pub gamma: f64,
    /// Steps each environment takes between updates (SB3's `train_freq`): the size of
    /// an actor's chunk.
    pub train_freq: usize,
    /// Gradient steps per environment step (SB3's `gradient_steps / (train_freq ×
    /// n_envs)`): the replay ratio.
    pub replay_ratio: f64,
    /// Environment steps between copies of the online network into the target network.
    pub target_update_interval: u64,
    /// Polyak coefficient of those updates, target ← τ·online + (1 − τ)·target
    /// (Stable-Baselines3's `tau`; 1: a hard copy).
    pub tau: f64,
    /// Fraction of the run over which ε falls linearly from its initial to its final value.
    pub exploration_fraction: f64,
    /// ε at the start.
    pub exploration_initial_eps: f64,
    /// ε at the end of the exploration fraction and after.
    pub exploration_final_eps: f64,
    /// Global gradient-norm clip (0: none).
    pub max_grad_norm: f64,
    /// The Q-network's torso: `auto` (the Nature CNN's convolutions for `u8` frames
    /// `[channels, height, width]`, else none), `mlp` (none) or `cnn`.
    pub network: Network,
    /// Hidden widths (after the convolutions, with a CNN): all but the last form the
    /// trunk; the last is the hidden layer of each stream (see `agentry_models::qnet`).
    pub hidden: Vec<usize>,
    /// Hidden nonlinearity (of the fully connected layers; the convolutions' is ReLU).
    pub activation: Activation,
}

impl Default for DqnConfig {
    fn default() -> Self {
        DqnConfig {
            learning_rate: 1e-4,
            anneal_lr: false,
            adam_eps: 1e-8,
            batch_size: 32,
            buffer_size: 1_000_000,
            learning_starts: 100,
            gamma: 0.99,
            train_freq: 4,
            replay_ratio: 0.25,
            target_update_interval: 10_000,
            tau: 1.0,
            exploration_fraction: 0.1,
            exploration_initial_eps: 1.0,
            exploration_final_eps: 0.05,
            max_grad_norm: 10.0,
            network: Network::Auto,
            hidden: vec![64, 64],
            activation: Activation::Relu,
        }
    }
}

/// `[rainbow]`: Rainbow's components, each a switch (Hessel et al. 2018, with
/// Dopamine's names). All off is DQN; the defaults (all on) are Rainbow. Only
/// `--algo rainbow` reads this section; `--algo dqn` runs with every switch off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RainbowConfig {
    /// Double Q-learning: the online network picks the next action, the target
    /// network values it.
    pub double: bool,
    /// Separate value and advantage streams.
    pub dueling: bool,
    /// Factorised-Gaussian noisy layers in the streams.
    pub noisy: bool,
    /// σ₀ of the noisy layers.
    pub noisy_sigma0: f64,
    /// C51: a categorical return distribution on `atoms` points in `[v_min, v_max]`.
    pub distributional: bool,
    /// Atoms of the distribution.
    pub atoms: usize,
    /// Lowest return of the support.
    pub v_min: f64,
    /// Highest return of the support.
    pub v_max: f64,
    /// n of the n-step returns (1: one-step).
    pub n_step: usize,
    /// Prioritized replay (else uniform).
    pub prioritized: bool,
    /// Priority exponent α.
    pub priority_alpha: f64,
    /// Importance-sampling exponent β at the start, annealed linearly to 1 over the run.
    pub priority_beta0: f64,
    /// ε added to |δ| in the priorities.
    pub priority_eps: f64,
    /// Macro-actions (Hosu, Rebedea & Pascanu 2025): sequences of primitive actions the
    /// agent can choose as one action, run open-loop. Action `n + j` of the augmented
    /// set is macro `j` (after the `n` primitive actions).
    pub macros: Vec<Vec<usize>>,
    /// Also add "repeat primitive `a` for k steps" for every primitive `a` (0: none).
    pub macro_repeat: usize,
    /// λ of the credit-sharing regulariser `Σ[a, a'] · (Q(s, a) − Q(s, a'))²` (0: off).
    pub credit_sharing: f64,
    /// How Σ is set: `learned` (meta-learned by a one-step look-ahead, starting from
    /// the shared-prefix similarity) or `prefix` (fixed: the shared-prefix similarity).
    pub similarity: Similarity,
    /// Step size of the meta-gradient on Σ's logits (Adam, in logits per update).
    pub meta_learning_rate: f64,
}

/// How the credit-sharing similarity Σ is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// Meta-learned jointly with the Q-network.
    Learned,
    /// Fixed: the length of the shared prefix of two action sequences over the longer
    /// one's length.
    Prefix,
}

impl Default for RainbowConfig {
    fn default() -> Self {
        RainbowConfig {
            double: true,
            dueling: true,
            noisy: true,
            noisy_sigma0: 0.5,
            distributional: true,
            atoms: 51,
            v_min: -10.0,
            v_max: 10.0,
            n_step: 3,
            prioritized: true,
            priority_alpha: 0.5,
            priority_beta0: 0.4,
            priority_eps: 1e-6,
            macros: Vec::new(),
            macro_repeat: 0,
            credit_sharing: 0.0,
            similarity: Similarity::Learned,
            meta_learning_rate: 1e-3,
        }
    }
}

impl RainbowConfig {
    /// Every component off: DQN.
    pub fn off() -> Self {
        RainbowConfig {
            double: false,
            dueling: false,
            noisy: false,
            distributional: false,
            n_step: 1,
            prioritized: false,
            ..RainbowConfig::default()
        }
    }
}

/// `[plasticity]`: tools against plasticity loss, for any learner (defined with the
/// tools, in `agentry_models::plasticity`).
pub use agentry_models::plasticity::{DecayKind, PlasticityConfig, ResetLayers};

/// A whole run's configuration, as written to `config.toml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[run]`.
    pub run: RunConfig,
    /// `[env]`.
    pub env: EnvConfig,
    /// `[ppo]` (`--algo ppo`).
    pub ppo: PpoConfig,
    /// `[dqn]` (`--algo dqn` and `--algo rainbow`).
    pub dqn: DqnConfig,
    /// `[rainbow]` (`--algo rainbow`).
    pub rainbow: RainbowConfig,
    /// `[plasticity]`.
    pub plasticity: PlasticityConfig,
    /// `[lram]` (`--algo lram`).
    pub lram: SeqConfig,
    /// `[dt]` (`--algo dt`).
    pub dt: SeqConfig,
    /// `[radt]` (`--algo radt`), with `[radt.retrieval]`.
    pub radt: SeqConfig,
}

/// `[lram]` and `[dt]`: a sequence model trained offline on datasets (the backbone is
/// the algorithm's: xLSTM for `lram`, a causal Transformer for `dt`).
///
/// `run.steps` counts gradient updates for these algorithms, and
/// `run.checkpoint_interval` updates between checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeqConfig {
    /// Dataset files or directories of them (`--dataset`); files of one environment
    /// configuration form one task.
    pub datasets: Vec<String>,
    /// Model width.
    pub d_model: usize,
    /// Blocks (xLSTM) or layers (Transformer).
    pub layers: usize,
    /// Attention or memory heads.
    pub heads: usize,
    /// The indices of the sLSTM blocks (LRAM only; the rest are mLSTM).
    pub slstm_at: Vec<usize>,
    /// Environment steps per training sequence (the DT's context window).
    pub context: usize,
    /// Sequences per update (split evenly over the tasks).
    pub batch_size: usize,
    /// Peak learning rate of AdamW.
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Updates of linear warm-up before the cosine decay.
    pub warmup_steps: u64,
    /// The learning rate the cosine decays to, as a fraction of the peak.
    pub final_lr_fraction: f64,
    /// Global gradient-norm clip (0: none).
    pub max_grad_norm: f64,
    /// Feed the actions taken back as tokens (DT: yes; LRAM: no, as in the paper).
    pub actions_in_context: bool,
    /// Add a learned embedding of the episode's time step to every token (DT style).
    pub timestep_embedding: bool,
    /// Add a learned embedding of the task to the state tokens.
    pub task_embedding: bool,
    /// Condition on the return-to-go (DT); false feeds 0 in its place, so actions are
    /// predicted from states, actions and rewards only (Algorithm Distillation).
    pub returns_to_go: bool,
    /// Training sequences run on across the episode boundaries of each task's data,
    /// laid end to end in recorded order (a learning history), and the in-context
    /// evaluation keeps the earlier episodes in the window: Algorithm Distillation's
    /// multi-episode context (Laskin et al. 2022). `dt` only.
    pub across_episodes: bool,
    /// Keep every `episode_stride`-th episode of each task's data (the first, then every
    /// stride-th after it; 1 keeps all). Subsampling a learning history this way packs
    /// more of its improvement into one context, as Algorithm Distillation does.
    #[serde(skip_serializing_if = "is_one")]
    pub episode_stride: usize,
    /// Largest time step the timestep embedding covers (later steps share the last).
    pub max_timestep: usize,
    /// Updates between metric rows.
    pub log_interval: u64,
    /// Updates between online evaluations (0: only at the end).
    pub eval_interval: u64,
    /// Episodes per task in each evaluation.
    pub eval_episodes: usize,
    /// The return-to-go an evaluation starts with, as a multiple of the task's expert
    /// return.
    pub target_return: f64,
    /// Greedy actions in evaluation (else sampled).
    pub deterministic: bool,
    /// How evaluation steps the model: `cache` (the xLSTM's recurrent state, the
    /// Transformer's sliding KV cache: constant or linear cost per token) or `window`
    /// (run the model over the last `context` steps' tokens for every action, as the
    /// original DT does: what training saw, at `context` times the cost).
    pub inference: Inference,
    /// RA-DT's retrieval (`[radt.retrieval]`; only `--algo radt` reads it).
    #[serde(skip_serializing_if = "RetrievalSettings::is_default")]
    pub retrieval: RetrievalSettings,
}

/// `[radt.retrieval]`: RA-DT's external memory of sub-trajectories.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalSettings {
    /// Steps per chunk; a chunk's value is it and the `chunk_len` steps after it.
    pub chunk_len: usize,
    /// Candidates taken by similarity before rescoring (the paper's top-l).
    pub top_l: usize,
    /// Sub-trajectories the model reads per query.
    pub retrieved: usize,
    /// Candidates this similar to one kept are dropped.
    pub dedup: f64,
    /// Weight of the trajectory's return (utility) in the rescoring when acting.
    pub w_ret: f64,
    /// Weight of "same task" in the rescoring when training.
    pub w_task: f64,
    /// The fraction of `run.steps` trained as a plain DT before the embedding model is
    /// frozen (a copy of the model at that point) and retrieval starts.
    pub pretrain_fraction: f64,
    /// Steps between retrievals when acting.
    pub retrieve_every: usize,
    /// Consecutive episodes of each held-out task in the in-context evaluation.
    pub in_context_episodes: usize,
}

impl Default for RetrievalSettings {
    fn default() -> Self {
        RetrievalSettings {
            chunk_len: 25,
            top_l: 50,
            retrieved: 1,
            dedup: 0.98,
            w_ret: 1.0,
            w_task: 1.0,
            pretrain_fraction: 0.3,
            retrieve_every: 5,
            in_context_episodes: 40,
        }
    }
}

impl RetrievalSettings {
    fn is_default(&self) -> bool {
        *self == RetrievalSettings::default()
    }
}

/// How an offline sequence model is stepped when it acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inference {
    /// One token at a time through the recurrent state or the KV cache.
    Cache,
    /// The whole window of the last `context` steps for each action.
    Window,
}

impl Default for SeqConfig {
    fn default() -> Self {
        SeqConfig {
            datasets: Vec::new(),
            d_model: 64,
            layers: 2,
            heads: 4,
            slstm_at: vec![1],
            context: 20,
            batch_size: 32,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            warmup_steps: 200,
            final_lr_fraction: 0.1,
            max_grad_norm: 0.25,
            actions_in_context: false,
            timestep_embedding: false,
            task_embedding: true,
            returns_to_go: true,
            across_episodes: false,
            episode_stride: 1,
            max_timestep: 1000,
            log_interval: 50,
            eval_interval: 1000,
            eval_episodes: 5,
            target_return: 1.0,
            deterministic: true,
            inference: Inference::Cache,
            retrieval: RetrievalSettings::default(),
        }
    }
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

impl SeqConfig {
    /// Check every value; `algo` is `lram` or `dt` (the section's name).
    pub(crate) fn check(&self, algo: &str) -> Result<(), (String, String)> {
        let key = |k: &str| format!("{algo}.{k}");
        if self.datasets.is_empty() {
            return Err((
                key("datasets"),
                "no datasets: give --dataset FILE... (see `agent collect`)".into(),
            ));
        }
        for (k, v, lo, hi) in [
            ("d_model", self.d_model, 1, 8192),
            ("layers", self.layers, 1, 64),
            ("heads", self.heads, 1, 256),
            ("context", self.context, 1, 100_000),
            ("batch_size", self.batch_size, 1, 1 << 20),
            ("max_timestep", self.max_timestep, 1, 1 << 24),
            ("eval_episodes", self.eval_episodes, 0, 1 << 20),
            ("episode_stride", self.episode_stride, 1, 1 << 20),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err((key(k), format!("{v} is not in {lo}..={hi}")));
            }
        }
        if !self.d_model.is_multiple_of(self.heads) {
            return Err((
                key("heads"),
                format!(
                    "{} heads do not divide d_model = {}",
                    self.heads, self.d_model
                ),
            ));
        }
        if algo == "dt" && !self.slstm_at.is_empty() {
            return Err((
                key("slstm_at"),
                "sLSTM blocks are LRAM's (--algo lram); the DT's layers are all attention:                  set dt.slstm_at = []"
                    .into(),
            ));
        }
        if let Some(&i) = self.slstm_at.iter().find(|&&i| i >= self.layers) {
            return Err((
                key("slstm_at"),
                format!("block {i} is not below layers = {}", self.layers),
            ));
        }
        for (k, v, lo, hi) in [
            ("learning_rate", self.learning_rate, f64::MIN_POSITIVE, 1.0),
            ("weight_decay", self.weight_decay, 0.0, 10.0),
            ("final_lr_fraction", self.final_lr_fraction, 0.0, 1.0),
            ("max_grad_norm", self.max_grad_norm, 0.0, 1e6),
            ("target_return", self.target_return, -1e6, 1e6),
        ] {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err((key(k), format!("{v} is not in {}", range_text(lo, hi))));
            }
        }
        if self.log_interval == 0 {
            return Err((key("log_interval"), "must be at least 1".into()));
        }
        if self.across_episodes && algo != "dt" {
            return Err((
                key("across_episodes"),
                "sequences across episode boundaries (Algorithm Distillation) are the DT's: \
                 use --algo dt"
                    .into(),
            ));
        }
        let r = &self.retrieval;
        if algo != "radt" {
            if !r.is_default() {
                return Err((
                    key("retrieval"),
                    "retrieval is RA-DT's (--algo radt)".into(),
                ));
            }
            return Ok(());
        }
        if self.task_embedding {
            return Err((
                key("task_embedding"),
                "RA-DT is evaluated on tasks it was not trained on, which have no \
                 embedding: set radt.task_embedding = false"
                    .into(),
            ));
        }
        for (k, v, lo, hi) in [
            ("retrieval.chunk_len", r.chunk_len, 1, 100_000),
            ("retrieval.top_l", r.top_l, 1, 100_000),
            ("retrieval.retrieved", r.retrieved, 1, 64),
            ("retrieval.retrieve_every", r.retrieve_every, 1, 1_000_000),
            (
                "retrieval.in_context_episodes",
                r.in_context_episodes,
                1,
                100_000,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err((key(k), format!("{v} is not in {lo}..={hi}")));
            }
        }
        for (k, v, lo, hi) in [
            ("retrieval.dedup", r.dedup, 0.0, 1.0),
            ("retrieval.w_ret", r.w_ret, 0.0, 1e3),
            ("retrieval.w_task", r.w_task, 0.0, 1e3),
            ("retrieval.pretrain_fraction", r.pretrain_fraction, 0.0, 1.0),
        ] {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err((key(k), format!("{v} is not in {}", range_text(lo, hi))));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The `[lram]` or `[dt]` section of an offline run.
    pub fn seq(&self) -> &SeqConfig {
        match self.run.algo.as_str() {
            "dt" => &self.dt,
            "radt" => &self.radt,
            _ => &self.lram,
        }
    }

    /// The configuration as TOML (what `config.toml` holds).
    /// Only the sections the run's algorithm reads are written.
    pub fn to_toml(&self) -> String {
        let mut table = toml::Table::try_from(self).expect("a Config always serialises");
        for (section, readers) in ALGO_SECTIONS {
            if !readers.contains(&self.run.algo.as_str()) {
                table.remove(*section);
            }
        }
        if is_offline(&self.run.algo) {
            table.remove("plasticity");
        }
        toml::to_string(&table).expect("a Config always serialises")
    }

    /// The Rainbow components the run uses: `[rainbow]` for `--algo rainbow`, all off
    /// (DQN) otherwise.
    pub fn rainbow_components(&self) -> RainbowConfig {
        if self.run.algo == "rainbow" {
            self.rainbow.clone()
        } else {
            RainbowConfig::off()
        }
    }

    /// Read a resolved configuration back (from a run directory's `config.toml`).
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::new("", origin, syntax_message(&e)))?;
        let origins = Origins::all(origin);
        check_sections(&table, &origins)?;
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
        if is_offline(&r.algo) {
            if !self.env.name.is_empty() {
                return err(
                    "env.name",
                    format!(
                        "--algo {} learns from datasets (--dataset), not from an environment",
                        r.algo
                    ),
                );
            }
            if let Err((key, message)) = self.seq().check(&r.algo) {
                return err(&key, message);
            }
            // The plasticity tools are wired into the online learners only: a setting
            // here would be silently ignored.
            if self.plasticity != PlasticityConfig::default() {
                return err(
                    "plasticity",
                    format!(
                        "the plasticity tools are not available to --algo {} yet (PPO, DQN \
                         and Rainbow only); remove the [plasticity] settings",
                        r.algo
                    ),
                );
            }
            return Ok(());
        }
        if !(1..=256).contains(&r.actors) {
            return err("run.actors", format!("{} is not in 1..=256", r.actors));
        }
        if !(r.actor_timeout_s.is_finite() && (0.0..=1e7).contains(&r.actor_timeout_s)) {
            return err(
                "run.actor_timeout_s",
                format!(
                    "{} is not in [0, 1e7] (seconds; 0 waits forever)",
                    r.actor_timeout_s
                ),
            );
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
        if let Err((key, message)) = self.plasticity.check() {
            return err(key, message);
        }
        if r.algo != "ppo" {
            return self.validate_dqn(origins);
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
        let ranges: [(&str, f64, f64, f64); 11] = [
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
            ("ppo.aux_value_coef", p.aux_value_coef, 0.0, 1e3),
        ];
        for (key, v, lo, hi) in ranges {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return err(key, format!("{v} is not in {}", range_text(lo, hi)));
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

impl Config {
    fn validate_dqn(&self, origins: &Origins) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| Err(ConfigError::new(key, origins.of(key), message));
        let d = &self.dqn;
        for (key, v) in [
            ("dqn.batch_size", d.batch_size),
            ("dqn.buffer_size", d.buffer_size),
            ("dqn.train_freq", d.train_freq),
        ] {
            if v == 0 {
                return err(key, "must be at least 1".into());
            }
        }
        if d.buffer_size > 1 << 30 {
            return err(
                "dqn.buffer_size",
                format!("{} is above 2^30", d.buffer_size),
            );
        }
        if d.batch_size > d.buffer_size {
            return err(
                "dqn.batch_size",
                format!(
                    "{} is larger than dqn.buffer_size = {}",
                    d.batch_size, d.buffer_size
                ),
            );
        }
        if d.target_update_interval == 0 {
            return err("dqn.target_update_interval", "must be at least 1".into());
        }
        let ranges: [(&str, f64, f64, f64); 9] = [
            ("dqn.learning_rate", d.learning_rate, f64::MIN_POSITIVE, 1.0),
            ("dqn.adam_eps", d.adam_eps, f64::MIN_POSITIVE, 1.0),
            ("dqn.gamma", d.gamma, 0.0, 1.0),
            ("dqn.replay_ratio", d.replay_ratio, 0.0, 1e3),
            ("dqn.exploration_fraction", d.exploration_fraction, 0.0, 1.0),
            (
                "dqn.exploration_initial_eps",
                d.exploration_initial_eps,
                0.0,
                1.0,
            ),
            (
                "dqn.exploration_final_eps",
                d.exploration_final_eps,
                0.0,
                1.0,
            ),
            ("dqn.max_grad_norm", d.max_grad_norm, 0.0, 1e6),
            ("dqn.tau", d.tau, 1e-6, 1.0),
        ];
        for (key, v, lo, hi) in ranges {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return err(key, format!("{v} is not in {}", range_text(lo, hi)));
            }
        }
        if d.hidden.is_empty() || d.hidden.iter().any(|&h| h == 0 || h > 65_536) {
            return err(
                "dqn.hidden",
                format!(
                    "{:?}: give one or more widths in 1..=65536, e.g. [256, 256]",
                    d.hidden
                ),
            );
        }
        let b = &self.rainbow;
        if !(1..=4096).contains(&b.atoms) {
            return err("rainbow.atoms", format!("{} is not in 1..=4096", b.atoms));
        }
        if b.distributional && b.atoms < 2 {
            return err(
                "rainbow.atoms",
                "a distribution needs at least 2 atoms (C51 uses 51)".into(),
            );
        }
        if !(b.v_min.is_finite() && b.v_max.is_finite() && b.v_min < b.v_max) {
            return err(
                "rainbow.v_max",
                format!(
                    "the support [{}, {}] is empty: v_min < v_max",
                    b.v_min, b.v_max
                ),
            );
        }
        if !(1..=1000).contains(&b.n_step) {
            return err("rainbow.n_step", format!("{} is not in 1..=1000", b.n_step));
        }
        if b.macro_repeat == 1 || b.macro_repeat > 1000 {
            return err(
                "rainbow.macro_repeat",
                format!(
                    "{} is not 0 (none) or in 2..=1000 (a repeat of 1 is the primitive action)",
                    b.macro_repeat
                ),
            );
        }
        if let Ok(env) = agentry_envs::registry::make(&self.env.name, &self.env.params) {
            if let agentry_envs::Space::Discrete(n) = env.action_space()
                && let Err(e) = agentry_envs::wrappers::check_macros(*n, &b.macros)
            {
                let message = match e {
                    agentry_envs::EnvError::BadParam { message, .. } => message,
                    other => other.to_string(),
                };
                return err("rainbow.macros", message);
            }
            if (!b.macros.is_empty() || b.macro_repeat > 0)
                && !matches!(env.action_space(), agentry_envs::Space::Discrete(_))
            {
                return err(
                    "rainbow.macros",
                    "macro-actions need a Discrete action space".into(),
                );
            }
        }
        if b.credit_sharing > 0.0 && b.macros.is_empty() && b.macro_repeat == 0 {
            return err(
                "rainbow.credit_sharing",
                "shares credit among macro-actions: give rainbow.macros or rainbow.macro_repeat"
                    .into(),
            );
        }
        let ranges: [(&str, f64, f64, f64); 6] = [
            ("rainbow.credit_sharing", b.credit_sharing, 0.0, 1e6),
            ("rainbow.meta_learning_rate", b.meta_learning_rate, 0.0, 1e6),
            ("rainbow.noisy_sigma0", b.noisy_sigma0, 0.0, 10.0),
            ("rainbow.priority_alpha", b.priority_alpha, 0.0, 10.0),
            ("rainbow.priority_beta0", b.priority_beta0, 0.0, 1.0),
            (
                "rainbow.priority_eps",
                b.priority_eps,
                f64::MIN_POSITIVE,
                1.0,
            ),
        ];
        for (key, v, lo, hi) in ranges {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return err(key, format!("{v} is not in {}", range_text(lo, hi)));
            }
        }
        Ok(())
    }
}

/// `[lo, hi]`, or `(0, hi]` when `lo` is the smallest positive number (a strictly
/// positive value).
fn range_text<T: std::fmt::Display + PartialEq + Copy + 'static>(lo: T, hi: T) -> String {
    if let Some(&lo) = (&lo as &dyn std::any::Any).downcast_ref::<f64>()
        && lo == f64::MIN_POSITIVE
    {
        return format!("(0, {hi}]");
    }
    format!("[{lo}, {hi}]")
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
    /// `--dataset` (offline algorithms).
    pub datasets: Vec<String>,
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

/// The preset for `(algo, env)` (env by its registry name; every `atari:{Game}`
/// shares the `atari` preset).
pub fn preset(algo: &str, env: &str) -> Option<&'static str> {
    let family = if env.starts_with("atari:") {
        "atari"
    } else {
        env
    };
    PRESETS
        .iter()
        .find(|(a, e, _)| *a == algo && *e == family)
        .map(|(_, _, text)| *text)
}

fn preset_list() -> String {
    PRESETS
        .iter()
        .map(|(a, e, _)| match *e {
            "atari" => format!("--algo {a} --env atari:{{Game}}"),
            "offline" => format!("--algo {a} --dataset FILE..."),
            e => format!("--algo {a} --env {e}"),
        })
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

/// Keys that moved between sections, as `(old section, new section, key)`: a file (or
/// a run's config.toml) written before the move still reads, with the value where it
/// lives now.
const MOVED: &[(&str, &str, &str)] = &[("ppo", "plasticity", "diagnostics_every")];

fn deserialize(mut table: toml::Table, origins: &Origins) -> Result<Config, ConfigError> {
    for (from, to, key) in MOVED {
        let moved = match table.get_mut(*from) {
            Some(toml::Value::Table(section)) => section.remove(*key),
            _ => None,
        };
        if let Some(value) = moved {
            let target = table
                .entry(to.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(section) = target {
                section.entry(key.to_string()).or_insert(value);
            }
        }
    }
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
    if !request.datasets.is_empty() && !is_offline(&algo) {
        return Err(ConfigError::new(
            "run.algo",
            "--dataset",
            format!(
                "--algo {algo} learns from an environment (--env); datasets are for --algo {}",
                OFFLINE_ALGOS.join(" or --algo ")
            ),
        ));
    }
    if is_offline(&algo) && request.env.is_some() {
        return Err(ConfigError::new(
            "env.name",
            "--env",
            format!("--algo {algo} learns from datasets: give --dataset FILE... instead"),
        ));
    }
    let env = request.env.clone().or_else(|| from_file("env", "name"));
    let env = match env {
        None if is_offline(&algo) => Some(String::new()),
        e => e,
    };
    let Some(env) = env else {
        return Err(ConfigError::new(
            "env.name",
            &file_origin,
            "no environment: give --env ENV (see `agent envs`)",
        ));
    };
    let family = if is_offline(&algo) {
        "offline"
    } else {
        agentry_envs::registry::find(&env)
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
            .name
    };

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
        // A game of the user's own (`agentry_envs::register`): the algorithm's defaults,
        // which `--set` and a file adjust as for any environment.
        None if agentry_envs::registry::is_user_registered(family) => {}
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
    if !request.datasets.is_empty() {
        let list = request
            .datasets
            .iter()
            .map(|d| toml::Value::String(d.clone()))
            .collect();
        flag(
            &format!("{algo}.datasets"),
            toml::Value::Array(list),
            "--dataset",
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
    check_sections(&table, &origins)?;
    let config = deserialize(table, &origins)?;
    config.validate(&origins)?;
    Ok(config)
}

/// An algorithm section the run's algorithm does not read is an error (a `[rainbow]`
/// switch under `--algo dqn` would otherwise be silently ignored).
fn check_sections(table: &toml::Table, origins: &Origins) -> Result<(), ConfigError> {
    let algo = table
        .get("run")
        .and_then(|r| r.get("algo"))
        .and_then(|a| a.as_str())
        .unwrap_or("ppo");
    for (section, readers) in ALGO_SECTIONS {
        if table.contains_key(*section) && !readers.contains(&algo) {
            return Err(ConfigError::new(
                section,
                origins.of(section),
                format!(
                    "is read only by --algo {}; this run's algorithm is {algo}",
                    readers.join(" or --algo ")
                ),
            ));
        }
    }
    Ok(())
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
            if *env == "atari" {
                // One preset for every game; its own game needs the `atari` feature and
                // the ROMs (the suite runs with both): without them, only its syntax.
                let table: toml::Table = text.parse().expect("TOML");
                let name = table["env"]["name"].as_str().expect("env.name");
                assert!(name.starts_with("atari:"), "{name}");
                if agentry_envs::registry::find(name).is_err() {
                    continue;
                }
            }
            if *env == "offline" {
                // A preset without its datasets (the user's `--dataset`) is incomplete.
                let err = Config::from_toml(text, "preset").unwrap_err();
                assert_eq!(err.key, format!("{algo}.datasets"));
                let config = resolve(&ConfigRequest {
                    algo: Some(algo.to_string()),
                    datasets: vec!["a.agds".into(), "b".into()],
                    ..Default::default()
                })
                .unwrap();
                assert_eq!(config.seq().datasets, ["a.agds", "b"]);
                let text = config.to_toml();
                assert!(text.contains(&format!("[{algo}]")) && !text.contains("[ppo]"));
                assert_eq!(Config::from_toml(&text, "x").unwrap(), config);
                continue;
            }
            let config = Config::from_toml(text, "preset").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&config.run.algo[..], *algo);
            if *env != "atari" {
                assert_eq!(&config.env.name[..], *env);
            }
            let env = &config.env.name[..];
            let resolved = resolve(&ConfigRequest {
                algo: Some(algo.to_string()),
                ..req(env, &[])
            })
            .unwrap();
            assert_eq!(resolved, config, "{algo}-{env}");
            // config.toml holds only the sections the algorithm reads, and reads back.
            let text = config.to_toml();
            assert_eq!(text.contains("[ppo]"), *algo == "ppo", "{algo}-{env}");
            assert_eq!(
                text.contains("[rainbow]"),
                *algo == "rainbow",
                "{algo}-{env}"
            );
            assert_eq!(Config::from_toml(&text, "x").unwrap(), config);
        }
    }

    #[test]
    fn offline_algorithms_take_datasets_not_environments() {
        let with = |algo: &str, env: Option<&str>, datasets: &[&str]| {
            resolve(&ConfigRequest {
                algo: Some(algo.into()),
                env: env.map(String::from),
                datasets: datasets.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
        };
        let e = with("ppo", Some("cartpole"), &["x.agds"]).unwrap_err();
        assert!(e.to_string().contains("--algo lram or --algo dt"), "{e}");
        let e = with("lram", Some("cartpole"), &["x.agds"]).unwrap_err();
        assert!(e.to_string().contains("--dataset"), "{e}");
        let e = with("dt", None, &[]).unwrap_err();
        assert_eq!(e.key, "dt.datasets");
        let e = resolve(&ConfigRequest {
            algo: Some("dt".into()),
            datasets: vec!["x.agds".into()],
            sets: vec!["dt.slstm_at=[0]".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "dt.slstm_at");
        let e = resolve(&ConfigRequest {
            algo: Some("lram".into()),
            datasets: vec!["x.agds".into()],
            sets: vec!["lram.heads=3".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "lram.heads");
        let e = resolve(&ConfigRequest {
            algo: Some("lram".into()),
            datasets: vec!["x.agds".into()],
            sets: vec!["plasticity.soft_reset=true".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "plasticity");
        let c = with("lram", None, &["x.agds"]).unwrap();
        assert!(!c.to_toml().contains("[plasticity]"));
        assert_eq!(c.seq().slstm_at, [1]);
        assert!(!c.seq().actions_in_context);
        let c = with("dt", None, &["x.agds"]).unwrap();
        assert!(c.seq().actions_in_context && c.seq().timestep_embedding);
    }

    #[test]
    fn plasticity_keys_are_checked_by_name() {
        let config = resolve(&req(
            "cartpole",
            &[
                "plasticity.layer_norm=true",
                "plasticity.nap=true",
                "plasticity.weight_decay_kind=\"l2_init\"",
                "plasticity.hard_reset_layers={ last_n = 2 }",
            ],
        ))
        .unwrap();
        assert!(config.plasticity.nap);
        assert_eq!(config.plasticity.weight_decay_kind, DecayKind::L2Init);
        assert_eq!(config.plasticity.hard_reset_layers, ResetLayers::LastN(2));
        for (set, key, says) in [
            ("plasticity.nap=true", "plasticity.nap", "layer_norm"),
            (
                "plasticity.weight_decay=-1",
                "plasticity.weight_decay",
                "-1",
            ),
            ("plasticity.shrink=2", "plasticity.shrink", "2"),
            ("plasticity.soft_reset_s=0", "plasticity.soft_reset_s", "0"),
            (
                "plasticity.hard_reset_layers={ last_n = 0 }",
                "plasticity.hard_reset_layers",
                "at least 1",
            ),
            ("plasticity.target_elr=nan", "plasticity.target_elr", "NaN"),
        ] {
            let e = resolve(&req("cartpole", &[set])).unwrap_err();
            assert_eq!(e.key, key, "{set}: {e}");
            assert!(e.message.contains(says), "{set}: {e}");
        }
        // A key that moved: a config.toml written before still reads.
        let old = resolve(&req("cartpole", &["ppo.diagnostics_every=3"])).unwrap();
        assert_eq!(old.plasticity.diagnostics_every, 3);
        assert!(!old.to_toml().contains("[ppo]\ndiagnostics_every"));
        for set in [
            "plasticity.weight_decay_kind=\"l3\"",
            "plasticity.dropout=0.1",
            "plasticity.hard_reset_layers=\"first\"",
        ] {
            let e = resolve(&req("cartpole", &[set])).unwrap_err().to_string();
            assert!(e.contains("plasticity"), "{set}: {e}");
        }
    }

    #[test]
    fn algorithm_sections_belong_to_their_algorithm() {
        let dqn = |sets: &[&str]| {
            resolve(&ConfigRequest {
                algo: Some("dqn".into()),
                ..req("cartpole", sets)
            })
        };
        let config = dqn(&["dqn.batch_size=32"]).unwrap();
        assert_eq!(config.dqn.batch_size, 32);
        // DQN runs with every Rainbow component off; Rainbow with its section.
        assert_eq!(config.rainbow_components(), RainbowConfig::off());
        let e = dqn(&["rainbow.noisy=true"]).unwrap_err();
        assert_eq!(e.key, "rainbow");
        assert!(e.message.contains("--algo rainbow"), "{e}");
        let e = dqn(&["ppo.epochs=3"]).unwrap_err();
        assert_eq!(e.key, "ppo");
        let e = resolve(&req("cartpole", &["dqn.batch_size=3"])).unwrap_err();
        assert!(e.message.contains("this run's algorithm is ppo"), "{e}");
        let rainbow = |sets: &[&str]| {
            resolve(&ConfigRequest {
                algo: Some("rainbow".into()),
                ..req("cartpole", sets)
            })
        };
        let config = rainbow(&["rainbow.n_step=5"]).unwrap();
        assert_eq!(config.rainbow_components().n_step, 5);
        for (set, key) in [
            ("rainbow.v_min=200", "rainbow.v_max"),
            ("rainbow.atoms=1", "rainbow.atoms"),
            ("rainbow.n_step=0", "rainbow.n_step"),
            ("rainbow.priority_beta0=2", "rainbow.priority_beta0"),
            ("dqn.batch_size=0", "dqn.batch_size"),
            ("dqn.batch_size=1000000", "dqn.batch_size"),
            ("dqn.gamma=-1", "dqn.gamma"),
            ("dqn.hidden=[]", "dqn.hidden"),
        ] {
            let e = rainbow(&[set]).unwrap_err();
            assert_eq!(e.key, key, "{set}: {e}");
        }
        // Bad macro definitions name the macro, the step and what is allowed.
        let e = rainbow(&["rainbow.macros=[[0, 1], [0, 7]]"]).unwrap_err();
        assert_eq!(e.key, "rainbow.macros");
        assert!(
            e.message.contains("macro 1 step 1: action 7") && e.message.contains("Discrete(2)"),
            "{e}"
        );
        let e = rainbow(&["rainbow.macros=[[1], []]"]).unwrap_err();
        assert_eq!(e.key, "rainbow.macros");
        assert!(e.message.contains("macro 1 is empty"), "{e}");
        let e = rainbow(&["rainbow.macros=[[-1]]"]).unwrap_err();
        assert_eq!(e.key, "rainbow.macros[0][0]");
        let e = rainbow(&["rainbow.macro_repeat=1"]).unwrap_err();
        assert_eq!(e.key, "rainbow.macro_repeat");
        let e = rainbow(&["rainbow.credit_sharing=0.5"]).unwrap_err();
        assert!(e.message.contains("rainbow.macros"), "{e}");
        let e = rainbow(&["rainbow.similarity=\"cosine\""]).unwrap_err();
        assert_eq!(e.key, "rainbow.similarity");
        assert!(e.message.contains("learned"), "{e}");
        let ok = rainbow(&["rainbow.macro_repeat=4", "rainbow.credit_sharing=0.5"]).unwrap();
        assert_eq!(ok.rainbow.macro_repeat, 4);
        // No preset pairs DQN with a continuous-action environment.
        let e = resolve(&ConfigRequest {
            algo: Some("dqn".into()),
            ..req("pendulum", &[])
        })
        .unwrap_err();
        assert!(e.message.contains("no preset"), "{e}");
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
