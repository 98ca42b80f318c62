//! Offline sequence-model learners: LRAM (an xLSTM backbone, Schmied et al. 2024) and
//! the Decision Transformer (a causal Transformer), trained on recorded datasets
//! (`agent train --algo lram|dt --dataset FILE...`) and evaluated online with a target
//! return.
//!
//! # Tasks and families
//!
//! The dataset files of one environment configuration (name and parameters) form a
//! **task**; the tasks of one environment (`dark-room` with several goals) form a
//! **family**, which owns a state encoder (an MLP for vectors, the Nature CNN for
//! images), an action encoder and an action head, so one model trains on environments
//! of different observation and action sizes. A learned task embedding (optional) is
//! added to the state tokens, so tasks of one family that look alike (Dark-Room goals
//! are invisible) are told apart.
//!
//! # Tokens
//!
//! Each environment step `t` contributes the tokens
//!
//! ```text
//! s_t (state)  R_t (return-to-go)  [a_t (action)]  r_t (reward)
//! ```
//!
//! and the action `a_t` is predicted from the backbone's output at `R_t`: it has seen
//! the state and the return still wanted, never `a_t` itself. LRAM leaves the action
//! tokens out (`actions_in_context = false`, as the paper does against the copycat
//! problem); the DT feeds them back. A learned embedding of the episode's time step is
//! added to every token when `timestep_embedding` is on (DT style; the Transformer has
//! no positional encoding of its own, which is what makes its sliding KV cache exact).
//! Returns-to-go are divided by the task's scale (its largest absolute episode return in
//! the data) and rewards by its reward scale (its largest absolute reward of one step),
//! so every task's tokens are of order 1: a reward token must show a single reward as
//! clearly as a return-to-go shows the return still wanted (Dark-Room's +1 for reaching
//! the goal, divided by a return scale of ~90, would be a change of ~1% in the token).
//!
//! Discrete actions are a softmax over the family's actions (illegal moves masked when
//! acting); continuous ones are discretised into 256 bins per dimension over the
//! action space's bounds and predicted bin by bin, as LRAM does.
//!
//! # Training and evaluation
//!
//! Each update draws `batch_size` sequences of `context` steps (split evenly over the
//! tasks; a sequence starts at a uniformly drawn step of the task's data and is padded
//! past its episode's end, the padding masked out of the loss — or, with
//! `across_episodes`, runs on into the task's next episodes as Algorithm Distillation
//! reads a learning history) and minimises the
//! cross-entropy of the actions taken, with AdamW (decoupled weight decay), linear
//! warm-up, cosine decay and a global gradient-norm clip. `run.steps` counts these
//! updates.
//!
//! Evaluation plays `eval_episodes` episodes of each task from a return-to-go of
//! `target_return` × the task's expert return, and reports each task's mean return and
//! its normalised score `(return − random) / (expert − random)` from the datasets'
//! reference returns. `inference = "cache"` steps the backbone one token at a time
//! (the xLSTM's recurrent form, constant cost per token; the Transformer with its KV
//! cache over the last `context` steps' tokens); `inference = "window"` runs the
//! backbone over the last `context` steps for every action, as the original DT does.
//! For the Transformer the two differ once an episode outgrows the window: a cached key
//! of a deeper layer was computed from tokens that have left the window, which training
//! (windows starting from nothing) never showed it. The DT preset therefore acts with
//! the window; LRAM keeps its recurrent state over the whole episode (its training
//! windows also start from an empty state, and the measured scores show no loss).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use agentry_envs::{Action, Dtype, EpisodeEnd, ObsMut, Out, Space, derive_seed, registry};
use agentry_memory::dataset::{DatasetReader, EpisodeRecord, Observations};
use agentry_models::gpt::{Gpt, GptConfig, KvCache, Memory};
use agentry_models::xlstm::{XLstm, XLstmConfig, XLstmState};
use agentry_models::{Mlp, MlpConfig, NatureCnn, NatureCnnConfig};
use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bool, Bytes, Device, Int, Tensor, TensorData, activation};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

mod kernels;
pub use kernels::{KernelRun, SeqKernels};

use crate::checkpoint::Sections;
use crate::config::{Config, ConfigError, EnvConfig, Inference, SeqConfig};
use crate::dataset::{DatasetMeta, dataset_files, dataset_info};
use crate::error::AgentError;
use crate::grads::clip_grad_norm;
use crate::ppo::ActionKind;
use crate::runner::{Control, Episode, RunState};
use crate::train::{Observer, RunDir, TrainOutcome};

/// Bins per dimension of a continuous action.
pub const ACTION_BINS: usize = 256;
/// The learner checkpoint kind.
pub const SEQ_LEARNER: &str = "seq-learner";

/// One environment the data covers: the model's encoder and head are per family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// The registry name.
    pub env: String,
    /// The observation shape.
    pub obs_shape: Vec<usize>,
    /// Byte observations (images) rather than floats.
    pub obs_u8: bool,
    /// The action space.
    pub action: ActionKind,
    /// Per-value mean of the family's observations in the data, subtracted before the
    /// state encoder. Empty for images (the CNN scales bytes by 1/255) and in
    /// checkpoints written before it existed (their observations go in as they are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obs_mean: Vec<f32>,
    /// Per-value standard deviation of the same observations (1 for a value that never
    /// changes), dividing after the mean is subtracted; empty when `obs_mean` is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obs_std: Vec<f32>,
}

impl Family {
    /// Values per observation.
    pub fn obs_dim(&self) -> usize {
        self.obs_shape.iter().product()
    }

    /// Whether observations are images (`[C, H, W]` bytes), read by a CNN.
    pub(crate) fn image(&self) -> bool {
        self.obs_u8 && self.obs_shape.len() == 3
    }

    /// The head's outputs: one logit per action, or 256 per continuous dimension.
    pub(crate) fn head_outputs(&self) -> usize {
        match &self.action {
            ActionKind::Discrete { n, .. } => *n,
            ActionKind::Continuous { low, .. } => low.len() * ACTION_BINS,
        }
    }
}

/// One environment configuration and what the model needs to know of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The environment and its parameters.
    pub env: EnvConfig,
    /// Its family's index.
    pub family: usize,
    /// Returns-to-go are divided by this.
    pub scale: f32,
    /// Rewards are divided by this (the largest absolute reward of one step in the data,
    /// 1 when every reward is 0). 0 in checkpoints written before it existed: their
    /// rewards were divided by `scale`, and still are.
    #[serde(default)]
    pub reward_scale: f32,
    /// Mean return of the recorded policy (normalised score 1), when known.
    pub expert_return: Option<f64>,
    /// Mean return of a random policy (normalised score 0), when known.
    pub random_return: Option<f64>,
    /// The best episode return in the data (the target when no expert return is known).
    pub best_return: f64,
    /// Episodes and steps of data.
    pub episodes: u64,
    /// Steps of data.
    pub steps: u64,
}

/// What a task's tokens are divided by: returns-to-go and rewards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scales {
    /// Returns-to-go.
    pub rtg: f32,
    /// Rewards.
    pub reward: f32,
}

impl TaskInfo {
    /// The task's divisors for returns-to-go and rewards.
    pub fn scales(&self) -> Scales {
        Scales {
            rtg: self.scale,
            reward: if self.reward_scale > 0.0 {
                self.reward_scale
            } else {
                self.scale
            },
        }
    }

    /// A short name for messages and tables: the environment and its parameters.
    pub fn name(&self) -> String {
        if self.env.params.0.is_empty() {
            self.env.name.clone()
        } else {
            let params: Vec<String> = self
                .env
                .params
                .0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{}({})", self.env.name, params.join(" "))
        }
    }

    /// The return-to-go an evaluation starts from.
    pub fn target(&self, multiple: f64) -> f64 {
        multiple * self.expert_return.unwrap_or(self.best_return)
    }

    /// `(ret − random) / (expert − random)` when both references are known.
    pub fn normalised(&self, ret: f64) -> Option<f64> {
        let (e, r) = (self.expert_return?, self.random_return?);
        ((e - r).abs() > 1e-9).then(|| (ret - r) / (e - r))
    }
}

/// What the model is built for: families and tasks (saved with every checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSet {
    /// The families.
    pub families: Vec<Family>,
    /// The tasks.
    pub tasks: Vec<TaskInfo>,
}

impl TaskSet {
    /// Check that the parts fit together (a set read from a file may not): at least one
    /// task, every task's family exists, every family has a non-empty observation shape
    /// and a usable action space, every number is finite.
    pub fn check(&self) -> Result<(), String> {
        if self.tasks.is_empty() || self.families.is_empty() {
            return Err("no task or no family".into());
        }
        for (i, f) in self.families.iter().enumerate() {
            let values = f
                .obs_shape
                .iter()
                .try_fold(1usize, |a, &x| a.checked_mul(x));
            if values.is_none_or(|v| v == 0) {
                return Err(format!("family {i}: observation shape {:?}", f.obs_shape));
            }
            let ok = match &f.action {
                ActionKind::Discrete { n, .. } => *n >= 1,
                ActionKind::Continuous { low, high } => {
                    !low.is_empty()
                        && low.len() == high.len()
                        && low
                            .iter()
                            .zip(high)
                            .all(|(l, h)| l.is_finite() && h.is_finite() && l <= h)
                }
            };
            if !ok {
                return Err(format!("family {i}: action space {:?}", f.action));
            }
            let stats = (f.obs_mean.is_empty() && f.obs_std.is_empty())
                || (f.obs_mean.len() == f.obs_dim()
                    && f.obs_std.len() == f.obs_dim()
                    && f.obs_mean.iter().all(|m| m.is_finite())
                    && f.obs_std.iter().all(|s| s.is_finite() && *s > 0.0));
            if !stats {
                return Err(format!(
                    "family {i}: observation mean and standard deviation must both be empty \
                     or hold {} finite values each (deviations positive)",
                    f.obs_dim()
                ));
            }
        }
        for (i, t) in self.tasks.iter().enumerate() {
            if t.family >= self.families.len() {
                return Err(format!("task {i}: family {} does not exist", t.family));
            }
            let numbers = [t.scale as f64, t.reward_scale as f64, t.best_return]
                .into_iter()
                .chain(t.expert_return)
                .chain(t.random_return);
            if t.scale <= 0.0 || t.reward_scale < 0.0 || numbers.into_iter().any(|x| !x.is_finite())
            {
                return Err(format!(
                    "task {i}: a non-finite or non-positive scale or return"
                ));
            }
        }
        Ok(())
    }
}

/// The datasets, in memory: each task's episodes.
#[derive(Clone, Debug)]
pub struct Data {
    /// Families and tasks.
    pub set: TaskSet,
    /// Episodes per task.
    pub episodes: Vec<Vec<EpisodeRecord>>,
}

/// Read the dataset files `paths` (files or directories) and group them into tasks.
pub fn load_data(paths: &[String]) -> Result<Data, AgentError> {
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let files = dataset_files(&paths)?;
    let mut set = TaskSet {
        families: Vec::new(),
        tasks: Vec::new(),
    };
    let mut episodes: Vec<Vec<EpisodeRecord>> = Vec::new();
    // Per task: (Σ expert × episodes, episodes with an expert return), likewise random.
    let mut refs: Vec<[(f64, u64); 2]> = Vec::new();
    for file in &files {
        let info = dataset_info(file)?;
        let meta: &DatasetMeta = &info.meta;
        let family = Family {
            env: meta.env.name.clone(),
            obs_shape: meta.obs_shape.clone(),
            obs_u8: info.header.obs_type == agentry_memory::ObsType::U8,
            action: meta.action.clone(),
            obs_mean: Vec::new(),
            obs_std: Vec::new(),
        };
        if family.obs_dim() != info.header.obs_dim {
            return Err(AgentError::Usage(format!(
                "{}: observation shape {:?} does not match the header's width {}",
                file.display(),
                meta.obs_shape,
                info.header.obs_dim
            )));
        }
        let f = match set.families.iter().position(|g| g.env == family.env) {
            Some(i) if set.families[i] == family => i,
            Some(i) => {
                return Err(AgentError::Usage(format!(
                    "{}: `{}` data with observations {:?} and actions {:?}, but other files \
                     of it have {:?} and {:?}",
                    file.display(),
                    family.env,
                    family.obs_shape,
                    family.action,
                    set.families[i].obs_shape,
                    set.families[i].action
                )));
            }
            None => {
                set.families.push(family);
                set.families.len() - 1
            }
        };
        let t = match set.tasks.iter().position(|t| t.env == meta.env) {
            Some(t) => t,
            None => {
                set.tasks.push(TaskInfo {
                    env: meta.env.clone(),
                    family: f,
                    scale: 1.0,
                    reward_scale: 1.0,
                    expert_return: None,
                    random_return: None,
                    best_return: f64::NEG_INFINITY,
                    episodes: 0,
                    steps: 0,
                });
                episodes.push(Vec::new());
                refs.push([(0.0, 0), (0.0, 0)]);
                set.tasks.len() - 1
            }
        };
        // A damaged file is the user's input: a usage error (exit 2) naming it.
        let mut reader = DatasetReader::open(file).map_err(|e| AgentError::Usage(e.to_string()))?;
        let mut n = 0u64;
        while let Some(e) = reader
            .next_episode()
            .map_err(|e| AgentError::Usage(e.to_string()))?
        {
            n += 1;
            episodes[t].push(e);
        }
        for (slot, value) in [meta.expert_return, meta.random_return]
            .into_iter()
            .enumerate()
        {
            if let Some(v) = value {
                refs[t][slot].0 += v * n as f64;
                refs[t][slot].1 += n;
            }
        }
    }
    for (t, task) in set.tasks.iter_mut().enumerate() {
        if episodes[t].is_empty() {
            return Err(AgentError::Usage(format!(
                "the datasets of {} hold no episodes",
                task.name()
            )));
        }
        let [(es, en), (rs, rn)] = refs[t];
        task.expert_return = (en > 0).then(|| es / en as f64);
        task.random_return = (rn > 0).then(|| rs / rn as f64);
    }
    let mut data = Data { set, episodes };
    data.count();
    Ok(data)
}

impl Data {
    /// Keep every `stride`-th episode of each task (the first, then every `stride`-th
    /// after it, in recorded order), and recount the tasks' episodes, steps, best
    /// returns and return scales. The expert and random references stay.
    pub fn keep_every(&mut self, stride: usize) {
        assert!(stride > 0, "a stride of at least 1");
        if stride == 1 {
            return;
        }
        for eps in &mut self.episodes {
            let mut i = 0;
            eps.retain(|_| {
                i += 1;
                (i - 1) % stride == 0
            });
        }
        self.count();
    }

    /// Each task's episodes, steps, best return and return and reward scales from its
    /// episodes, and each vector family's observation mean and standard deviation.
    fn count(&mut self) {
        self.observation_stats();
        for (task, eps) in self.set.tasks.iter_mut().zip(&self.episodes) {
            task.episodes = eps.len() as u64;
            task.steps = eps.iter().map(|e| e.len() as u64).sum();
            task.best_return = eps
                .iter()
                .map(|e| e.ret())
                .fold(f64::NEG_INFINITY, f64::max);
            let biggest = eps.iter().map(|e| e.ret().abs()).fold(0.0, f64::max);
            task.scale = biggest.max(1.0) as f32;
            let reward = eps
                .iter()
                .flat_map(|e| e.rewards.iter())
                .fold(0.0f32, |m, r| m.max(r.abs()));
            task.reward_scale = if reward > 0.0 { reward } else { 1.0 };
        }
    }

    /// Per value of each vector family's observations: the mean and standard deviation
    /// over every step of its tasks' episodes (a value that never changes gets a
    /// deviation of 1). Images are left to the CNN's 1/255.
    fn observation_stats(&mut self) {
        for (f, family) in self.set.families.iter_mut().enumerate() {
            family.obs_mean.clear();
            family.obs_std.clear();
            if family.image() {
                continue;
            }
            let dim = family.obs_dim();
            let (mut sum, mut squares, mut rows) = (vec![0.0f64; dim], vec![0.0f64; dim], 0u64);
            let mut add = |values: &mut dyn Iterator<Item = f64>| {
                for (i, x) in values.enumerate() {
                    sum[i % dim] += x;
                    squares[i % dim] += x * x;
                }
            };
            let tasks = self.set.tasks.iter().zip(&self.episodes);
            for (_, eps) in tasks.filter(|(t, _)| t.family == f) {
                for e in eps {
                    match &e.obs {
                        Observations::F32(v) => add(&mut v.iter().map(|&x| f64::from(x))),
                        Observations::U8(v) => add(&mut v.iter().map(|&x| f64::from(x))),
                    }
                    rows += e.len() as u64;
                }
            }
            if rows == 0 {
                continue;
            }
            let n = rows as f64;
            for (s, q) in sum.iter().zip(&squares) {
                let mean = s / n;
                let std = (q / n - mean * mean).max(0.0).sqrt();
                family.obs_mean.push(mean as f32);
                family
                    .obs_std
                    .push(if std > 1e-6 { std as f32 } else { 1.0 });
            }
        }
    }
}

/// The sequence backbone: the algorithm's.
#[derive(Module, Debug)]
pub enum Backbone {
    /// LRAM's xLSTM.
    XLstm(XLstm),
    /// The Decision Transformer's causal Transformer.
    Gpt(Gpt),
}

/// The backbone's inference state: the xLSTM's recurrent state or the Transformer's
/// KV cache.
#[derive(Clone, Debug)]
// One state per acting episode: boxing would only add an indirection.
#[allow(clippy::large_enum_variant)]
pub enum BackboneState {
    /// xLSTM state.
    XLstm(XLstmState),
    /// Transformer cache.
    Gpt(KvCache),
}

impl Backbone {
    /// The backbone `algo` uses, built for `config`.
    pub fn build(
        algo: &str,
        config: &SeqConfig,
        device: &Device,
        seed: u64,
    ) -> Result<Backbone, AgentError> {
        let bad = |e: String| AgentError::Usage(format!("{algo}: {e}"));
        Ok(match algo {
            "lram" => Backbone::XLstm(
                XLstmConfig::new(config.d_model, config.layers, config.heads)
                    .with_slstm_at(config.slstm_at.clone())
                    .try_init_seeded(device, seed)
                    .map_err(|e| bad(e.to_string()))?,
            ),
            _ => Backbone::Gpt(
                GptConfig::new(
                    config.d_model,
                    config.layers,
                    config.heads,
                    config.context * tokens_per_step(config),
                )
                .with_cross_attention(algo == "radt")
                .init_seeded(device, seed)
                .map_err(|e| bad(e.to_string()))?,
            ),
        })
    }

    /// `[batch, tokens, d]` → `[batch, tokens, d]`, causal.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_with_memory(x, None)
    }

    /// [`forward`](Self::forward) reading `memory` through cross-attention (RA-DT's
    /// Transformer; `None` for the others).
    pub fn forward_with_memory(&self, x: Tensor<3>, memory: Option<Memory>) -> Tensor<3> {
        match (self, memory) {
            (Backbone::XLstm(m), _) => m.forward(x),
            (Backbone::Gpt(m), memory) if m.has_cross_attention() => {
                m.forward_with_memory(x, memory)
            }
            (Backbone::Gpt(m), _) => m.forward(x),
        }
    }

    /// `n` tokens per sequence at once through the inference state, `[batch, n, d]` →
    /// `[batch, n, d]`: the same as `n` calls of [`step`](Self::step).
    pub fn step_many(&self, x: Tensor<3>, state: &mut BackboneState) -> Tensor<3> {
        match (self, state) {
            (Backbone::Gpt(m), BackboneState::Gpt(c)) => m.step_many(x, c),
            (Backbone::XLstm(m), BackboneState::XLstm(s)) => {
                let [b, n, d] = x.dims();
                let steps = (0..n)
                    .map(|i| {
                        let t = x.clone().slice([0..b, i..i + 1, 0..d]).reshape([b, d]);
                        m.step(t, s).reshape([b, 1, d])
                    })
                    .collect();
                Tensor::cat(steps, 1)
            }
            _ => unreachable!("a state is made by its own backbone"),
        }
    }

    /// A fresh inference state for `batch` sequences.
    pub fn init_state(&self, batch: usize, device: &Device) -> BackboneState {
        match self {
            Backbone::XLstm(m) => BackboneState::XLstm(m.init_state(batch, device)),
            Backbone::Gpt(m) => BackboneState::Gpt(m.init_cache(batch, device)),
        }
    }

    /// One token per sequence, `[batch, d]` → `[batch, d]`.
    pub fn step(&self, x: Tensor<2>, state: &mut BackboneState) -> Tensor<2> {
        match (self, state) {
            (Backbone::XLstm(m), BackboneState::XLstm(s)) => m.step(x, s),
            (Backbone::Gpt(m), BackboneState::Gpt(c)) => m.step(x, c),
            _ => unreachable!("a state is made by its own backbone"),
        }
    }
}

/// Tokens per environment step: state, return-to-go, (action,) reward.
pub fn tokens_per_step(config: &SeqConfig) -> usize {
    3 + usize::from(config.actions_in_context)
}

/// The tokens an acting window holds with `inference = "window"`: the window training
/// saw, `context` steps, the last one up to its return-to-go token (the tokens after it
/// are not read by it anyway).
pub(crate) fn window_tokens(config: &SeqConfig) -> usize {
    (config.context - 1) * tokens_per_step(config) + 2
}

/// A family's state encoder.
#[derive(Module, Debug)]
// A module built once per family; boxing would only add an indirection.
#[allow(clippy::large_enum_variant)]
pub enum Encoder {
    /// For vectors: a linear map, tanh, a linear map.
    Mlp(Mlp),
    /// For images: the Nature CNN.
    Cnn(NatureCnn),
}

/// A family's action encoder (for actions in context).
#[derive(Module, Debug)]
pub enum ActionEncoder {
    /// Discrete actions: a table.
    Table(Embedding),
    /// Continuous actions (scaled into [−1, 1]): a linear map.
    Linear(Mlp),
}

/// The sequence model: per-family encoders and heads around a shared backbone.
#[derive(Module, Debug)]
pub struct SeqModel {
    states: Vec<Encoder>,
    actions: Vec<ActionEncoder>,
    heads: Vec<Mlp>,
    rtg: Mlp,
    reward: Mlp,
    task: Option<Embedding>,
    time: Option<Embedding>,
    norm: LayerNorm,
    pub(crate) backbone: Backbone,
    /// Per family: the observation shift and scale (the data's mean and 1/std) applied
    /// before the state encoder, or none. From the task set, not the weights' record.
    #[module(skip)]
    obs_norm: Vec<Option<ObsNorm>>,
}

/// Observations go into a vector family's state encoder as `(obs − shift) × scale`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ObsNorm {
    pub(crate) shift: Vec<f32>,
    pub(crate) scale: Vec<f32>,
}

impl ObsNorm {
    fn of(family: &Family) -> Option<ObsNorm> {
        (!family.obs_mean.is_empty() && !family.image()).then(|| ObsNorm {
            shift: family.obs_mean.clone(),
            scale: family.obs_std.iter().map(|s| 1.0 / s).collect(),
        })
    }
}

fn embedding(rows: usize, d: usize, rng: &mut rand_pcg::Pcg64Mcg, device: &Device) -> Embedding {
    let values: Vec<f32> = (0..rows * d)
        .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal) * 0.02)
        .collect();
    Embedding {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(values, [rows, d]),
            device,
        )),
    }
}

impl SeqModel {
    /// A model for `set`, initialised from `seed`.
    pub fn new(
        algo: &str,
        config: &SeqConfig,
        set: &TaskSet,
        device: &Device,
        seed: u64,
    ) -> Result<SeqModel, AgentError> {
        let d = config.d_model;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(derive_seed(seed, 0xE4B));
        let mut next = || rng.random::<u64>();
        let linear = |i: usize, o: usize, s: u64| MlpConfig::new(i, &[], o).init_seeded(device, s);
        let mut states = Vec::new();
        let mut actions = Vec::new();
        let mut heads = Vec::new();
        for f in &set.families {
            states.push(match (f.image(), &f.obs_shape[..]) {
                (true, &[c, h, w]) => Encoder::Cnn(
                    NatureCnnConfig {
                        height: h,
                        width: w,
                        ..NatureCnnConfig::new(c, d)
                    }
                    .init_seeded(device, next()),
                ),
                _ => Encoder::Mlp(
                    MlpConfig::new(f.obs_dim(), &[d], d)
                        .with_activation(agentry_models::Activation::Tanh)
                        .init_seeded(device, next()),
                ),
            });
            let mut table_rng = rand_pcg::Pcg64Mcg::seed_from_u64(next());
            actions.push(match &f.action {
                ActionKind::Discrete { n, .. } => {
                    ActionEncoder::Table(embedding(*n, d, &mut table_rng, device))
                }
                ActionKind::Continuous { low, .. } => {
                    ActionEncoder::Linear(linear(low.len(), d, next()))
                }
            });
            heads.push(linear(d, f.head_outputs(), next()));
        }
        let mut table_rng = rand_pcg::Pcg64Mcg::seed_from_u64(next());
        let task = config
            .task_embedding
            .then(|| embedding(set.tasks.len(), d, &mut table_rng, device));
        let time = config
            .timestep_embedding
            .then(|| embedding(config.max_timestep, d, &mut table_rng, device));
        let (rtg, reward) = (linear(1, d, next()), linear(1, d, next()));
        let backbone = Backbone::build(algo, config, device, next())?;
        Ok(SeqModel {
            states,
            actions,
            heads,
            rtg,
            reward,
            task,
            time,
            norm: LayerNormConfig::new(d).init(device),
            backbone,
            obs_norm: set.families.iter().map(ObsNorm::of).collect(),
        })
    }

    fn encode_states(&self, family: usize, obs: Tensor<2>, image: &[usize]) -> Tensor<2> {
        match &self.states[family] {
            Encoder::Mlp(m) => match &self.obs_norm[family] {
                Some(n) => {
                    let device = obs.device();
                    let row = |v: &[f32]| {
                        Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), &device)
                    };
                    m.forward((obs - row(&n.shift)) * row(&n.scale))
                }
                None => m.forward(obs),
            },
            Encoder::Cnn(c) => {
                let [rows, _] = obs.dims();
                c.forward(obs.reshape([rows, image[0], image[1], image[2]]))
            }
        }
    }

    fn encode_actions(&self, family: usize, batch: &SeqBatch, device: &Device) -> Tensor<2> {
        let rows = batch.rows();
        match &self.actions[family] {
            ActionEncoder::Table(e) => {
                let idx = Tensor::<2, Int>::from_data(
                    TensorData::new(batch.action_index.clone(), [rows, 1]),
                    device,
                );
                let [_, _, d] = [rows, 1, e.weight.dims()[1]];
                e.forward(idx).reshape([rows, d])
            }
            ActionEncoder::Linear(m) => {
                let dims = batch.action_values.len() / rows.max(1);
                m.forward(Tensor::from_data(
                    TensorData::new(batch.action_values.clone(), [rows, dims]),
                    device,
                ))
            }
        }
    }

    fn add_embedding(
        x: Tensor<2>,
        table: &Option<Embedding>,
        ids: &[i64],
        device: &Device,
    ) -> Tensor<2> {
        match table {
            Some(e) => {
                let rows = ids.len();
                let d = e.weight.dims()[1];
                let idx =
                    Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [rows, 1]), device);
                x + e.forward(idx).reshape([rows, d])
            }
            None => x,
        }
    }

    /// RA-DT's key of each sequence of `batch`: the mean of the backbone's last hidden
    /// states at the state tokens of its valid steps, L2-normalised; `[sequences × d]`.
    pub(crate) fn embed(
        &self,
        config: &SeqConfig,
        set: &TaskSet,
        batch: &SeqBatch,
        device: &Device,
    ) -> Vec<f32> {
        let per = tokens_per_step(config);
        let (n, k, d) = (batch.sequences, batch.steps, config.d_model);
        let x = self.tokens(config, set, batch, device);
        let h = self.backbone.forward(x).reshape([n, k, per, d]);
        let states = h.slice([0..n, 0..k, 0..1, 0..d]).reshape([n, k, d]);
        let mask = Tensor::<3>::from_data(TensorData::new(batch.mask.clone(), [n, k, 1]), device);
        let summed = (states * mask.clone()).sum_dim(1).reshape([n, d]);
        let count = mask.sum_dim(1).reshape([n, 1]).clamp_min(1.0);
        let mean = summed / count;
        let norm = mean
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .sqrt()
            .clamp_min(1e-8);
        (mean / norm)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 keys")
    }

    /// The memory tokens of retrieved sub-trajectories for the cross-attention:
    /// `batch` holds `per_query` sequences for each query, one after the other, and each
    /// query reads its own, padding marked.
    pub(crate) fn memory(
        &self,
        config: &SeqConfig,
        set: &TaskSet,
        batch: &SeqBatch,
        per_query: usize,
        device: &Device,
    ) -> Memory {
        let per = tokens_per_step(config);
        let (n, k, d) = (batch.sequences, batch.steps, config.d_model);
        let queries = n / per_query;
        let m = per_query * k * per;
        let tokens = self
            .tokens(config, set, batch, device)
            .reshape([queries, m, d]);
        let padding: Vec<bool> = batch
            .mask
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v == 0.0, per))
            .collect();
        let padding = Tensor::<2, Bool>::from_data(TensorData::new(padding, [queries, m]), device);
        Memory::new(tokens).with_padding(padding)
    }

    /// The action head of family `family` over backbone outputs `[rows, d]`.
    pub(crate) fn head(&self, family: usize, h: Tensor<2>) -> Tensor<2> {
        self.heads[family].forward(h)
    }

    /// The tokens of a batch, `[batch, steps × tokens_per_step, d]`, normalised.
    pub(crate) fn tokens(
        &self,
        config: &SeqConfig,
        set: &TaskSet,
        batch: &SeqBatch,
        device: &Device,
    ) -> Tensor<3> {
        let family = &set.families[set.tasks[batch.task].family];
        let f = set.tasks[batch.task].family;
        let (n, k, rows) = (batch.sequences, batch.steps, batch.rows());
        let obs = Tensor::<2>::from_data(
            TensorData::new(batch.obs.clone(), [rows, family.obs_dim()]),
            device,
        );
        let column =
            |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, 1]), device);
        let time = &self.time;
        let s = self.encode_states(f, obs, &family.obs_shape);
        let ids: Vec<i64> = batch
            .row_tasks
            .iter()
            .flat_map(|&t| std::iter::repeat_n(t as i64, k))
            .collect();
        let s = Self::add_embedding(s, &self.task, &ids, device);
        let s = Self::add_embedding(s, time, &batch.timesteps, device);
        // Without return conditioning (Algorithm Distillation) the token carries only
        // its time step: the action is predicted from what came before it.
        let rtg_values = if config.returns_to_go {
            column(&batch.rtg)
        } else {
            Tensor::zeros([rows, 1], device)
        };
        let r_to_go =
            Self::add_embedding(self.rtg.forward(rtg_values), time, &batch.timesteps, device);
        let reward = Self::add_embedding(
            self.reward.forward(column(&batch.rewards)),
            time,
            &batch.timesteps,
            device,
        );
        let mut parts = vec![s, r_to_go];
        if config.actions_in_context {
            let a = self.encode_actions(f, batch, device);
            parts.push(Self::add_embedding(a, time, &batch.timesteps, device));
        }
        parts.push(reward);
        let per = parts.len();
        let d = config.d_model;
        // [rows, per, d] → [n, k·per, d]: step after step, each step's tokens in order.
        let stacked = Tensor::stack::<3>(parts, 1).reshape([n, k * per, d]);
        self.norm.forward(stacked)
    }

    /// Action logits at every step of the batch: `[rows, head outputs]`.
    #[cfg(test)]
    fn logits(
        &self,
        config: &SeqConfig,
        set: &TaskSet,
        batch: &SeqBatch,
        device: &Device,
    ) -> Tensor<2> {
        self.logits_with_memory(config, set, batch, None, device)
    }

    /// [`logits`](Self::logits) with a memory for the cross-attention (RA-DT).
    pub(crate) fn logits_with_memory(
        &self,
        config: &SeqConfig,
        set: &TaskSet,
        batch: &SeqBatch,
        memory: Option<Memory>,
        device: &Device,
    ) -> Tensor<2> {
        let x = self.tokens(config, set, batch, device);
        let per = tokens_per_step(config);
        let (n, k, d) = (batch.sequences, batch.steps, config.d_model);
        let h = self
            .backbone
            .forward_with_memory(x, memory)
            .reshape([n, k, per, d]);
        let at_rtg = h.slice([0..n, 0..k, 1..2, 0..d]).reshape([n * k, d]);
        self.heads[set.tasks[batch.task].family].forward(at_rtg)
    }

    /// The masked cross-entropy of the batch's actions, and its accuracy.
    pub(crate) fn loss(
        &self,
        config: &SeqConfig,
        set: &TaskSet,
        batch: &SeqBatch,
        memory: Option<Memory>,
        device: &Device,
    ) -> (Tensor<1>, f64) {
        let logits = self.logits_with_memory(config, set, batch, memory, device);
        let rows = batch.rows();
        let family = &set.families[set.tasks[batch.task].family];
        let (classes, per_row) = match &family.action {
            ActionKind::Discrete { n, .. } => (*n, 1),
            ActionKind::Continuous { low, .. } => (ACTION_BINS, low.len()),
        };
        let logits = logits.reshape([rows * per_row, classes]);
        let log_p = activation::log_softmax(logits, 1);
        let targets = Tensor::<2, Int>::from_data(
            TensorData::new(batch.targets.clone(), [rows * per_row, 1]),
            device,
        );
        let predicted = log_p.clone().argmax(1).reshape([rows * per_row]);
        let nll = log_p
            .gather(1, targets.clone())
            .reshape([rows * per_row])
            .neg();
        let mask: Vec<f32> = batch
            .mask
            .iter()
            .flat_map(|&m| std::iter::repeat_n(m, per_row))
            .collect();
        let valid = mask.iter().sum::<f32>().max(1.0);
        let mask_t =
            Tensor::<1>::from_data(TensorData::new(mask.clone(), [rows * per_row]), device);
        let loss = (nll * mask_t).sum().div_scalar(valid);
        let hits = predicted
            .equal(targets.reshape([rows * per_row]))
            .into_data()
            .convert::<bool>()
            .try_into_vec::<bool>()
            .unwrap_or_default();
        let correct: f32 = hits
            .iter()
            .zip(&mask)
            .map(|(&h, &m)| if h { m } else { 0.0 })
            .sum();
        (loss, (correct / valid) as f64)
    }
}

/// Sequences of one task, as flat host arrays (`rows = sequences × steps`).
#[derive(Clone, Debug, Default)]
pub struct SeqBatch {
    task: usize,
    /// Each sequence's task (all of `task`'s family).
    row_tasks: Vec<usize>,
    sequences: usize,
    steps: usize,
    obs: Vec<f32>,
    rtg: Vec<f32>,
    rewards: Vec<f32>,
    timesteps: Vec<i64>,
    action_index: Vec<i64>,
    action_values: Vec<f32>,
    /// Targets: the action, or each dimension's bin.
    targets: Vec<i64>,
    mask: Vec<f32>,
}

impl SeqBatch {
    pub(crate) fn rows(&self) -> usize {
        self.sequences * self.steps
    }
}

/// The bin of `value` in `[low, high]` (256 bins).
pub fn action_bin(value: f32, low: f32, high: f32) -> usize {
    let span = (high - low).max(f32::MIN_POSITIVE);
    (((value - low) / span) * ACTION_BINS as f32)
        .floor()
        .clamp(0.0, (ACTION_BINS - 1) as f32) as usize
}

/// `value` in `[low, high]` mapped linearly onto `[-1, 1]` (the input of a linear action
/// encoder).
pub(crate) fn unit_action(value: f32, low: f32, high: f32) -> f32 {
    2.0 * (value - low) / (high - low).max(f32::MIN_POSITIVE) - 1.0
}

/// The centre of bin `bin` of `[low, high]`.
pub fn bin_value(bin: usize, low: f32, high: f32) -> f32 {
    low + (bin as f32 + 0.5) / ACTION_BINS as f32 * (high - low)
}

impl SeqBatch {
    /// The task the sequences belong to.
    pub(crate) fn task(&self) -> usize {
        self.task
    }

    /// Set step `r` (a row) of a discrete-action sequence by hand: what acting builds.
    pub(crate) fn set_step(
        &mut self,
        r: usize,
        obs: &[f32],
        rtg: f32,
        reward: f32,
        action: f32,
        timestep: usize,
    ) {
        let dim = obs.len();
        self.obs[r * dim..(r + 1) * dim].copy_from_slice(obs);
        self.rtg[r] = rtg;
        self.rewards[r] = reward;
        self.timesteps[r] = timestep as i64;
        self.action_index[r] = action as i64;
        self.targets[r] = action as i64;
        self.mask[r] = 1.0;
    }

    /// `n` empty (fully padded) sequences of `k` steps of task `task` of `family`.
    pub(crate) fn empty(task: usize, n: usize, k: usize, family: &Family) -> SeqBatch {
        let rows = n * k;
        let adim = crate::dataset::action_dim(&family.action);
        let per_row = match family.action {
            ActionKind::Discrete { .. } => 1,
            ActionKind::Continuous { .. } => adim,
        };
        SeqBatch {
            task,
            row_tasks: vec![task; n],
            sequences: n,
            steps: k,
            obs: vec![0.0; rows * family.obs_dim()],
            rtg: vec![0.0; rows],
            rewards: vec![0.0; rows],
            timesteps: vec![0; rows],
            action_index: vec![0; rows],
            action_values: vec![0.0; rows * adim],
            targets: vec![0; rows * per_row],
            mask: vec![0.0; rows],
        }
    }

    /// Fill sequence `s` with up to `steps` steps of `e` from step `start` (the rest
    /// stays padding); returns-to-go are divided by `scale.rtg`, rewards by `scale.reward`.
    pub(crate) fn fill(
        &mut self,
        s: usize,
        e: &EpisodeRecord,
        start: usize,
        family: &Family,
        scale: Scales,
        max_timestep: usize,
    ) {
        self.fill_len(s, e, start, self.steps, family, scale, max_timestep);
    }

    /// [`fill`](Self::fill) with at most `len` steps.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fill_len(
        &mut self,
        s: usize,
        e: &EpisodeRecord,
        start: usize,
        len: usize,
        family: &Family,
        scale: Scales,
        max_timestep: usize,
    ) {
        self.fill_at(s, 0, e, start, len, family, scale, max_timestep);
    }

    /// Fill sequence `s` with `episodes` laid end to end, from step `start` of episode
    /// `first` on, running on across their boundaries (a learning history: each step
    /// keeps its own episode's time step and return-to-go); padding only past the
    /// last episode.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fill_across(
        &mut self,
        s: usize,
        episodes: &[EpisodeRecord],
        first: usize,
        start: usize,
        family: &Family,
        scale: Scales,
        max_timestep: usize,
    ) {
        let (mut at, mut start) = (0, start);
        for e in episodes.iter().skip(first) {
            if at == self.steps {
                break;
            }
            let n = e.len().saturating_sub(start).min(self.steps - at);
            self.fill_at(s, at, e, start, n, family, scale, max_timestep);
            at += n;
            start = 0;
        }
    }

    /// Fill steps `offset..offset + len` of sequence `s` (at most to its end) with the
    /// steps of `e` from `start` on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fill_at(
        &mut self,
        s: usize,
        offset: usize,
        e: &EpisodeRecord,
        start: usize,
        len: usize,
        family: &Family,
        scale: Scales,
        max_timestep: usize,
    ) {
        let (k, dim) = (self.steps.saturating_sub(offset).min(len), family.obs_dim());
        let stride = self.steps;
        let adim = crate::dataset::action_dim(&family.action);
        let rtg = e.returns_to_go();
        let mut row_buf = Vec::with_capacity(dim);
        for j in 0..k.min(e.len().saturating_sub(start)) {
            let (u, r) = (start + j, s * stride + offset + j);
            row_buf.clear();
            e.obs.row_into(u, dim, &mut row_buf);
            self.obs[r * dim..(r + 1) * dim].copy_from_slice(&row_buf);
            self.rtg[r] = rtg[u] / scale.rtg;
            self.rewards[r] = e.rewards[u] / scale.reward;
            self.timesteps[r] = u.min(max_timestep - 1) as i64;
            self.mask[r] = 1.0;
            let a = &e.actions[u * adim..(u + 1) * adim];
            match &family.action {
                ActionKind::Discrete { n, .. } => {
                    let i = (a[0].max(0.0) as usize).min(n - 1) as i64;
                    self.action_index[r] = i;
                    self.targets[r] = i;
                }
                ActionKind::Continuous { low, high } => {
                    for (j, &v) in a.iter().enumerate() {
                        self.targets[r * adim + j] = action_bin(v, low[j], high[j]) as i64;
                        self.action_values[r * adim + j] = unit_action(v, low[j], high[j]);
                    }
                }
            }
        }
    }
}

/// The episode that holds step `step` of `episodes` laid end to end, and the step's
/// index inside it.
fn locate_step(episodes: &[EpisodeRecord], mut step: u64) -> (usize, u64) {
    let i = episodes
        .iter()
        .position(|e| {
            if step < e.len() as u64 {
                true
            } else {
                step -= e.len() as u64;
                false
            }
        })
        .expect("the step is inside the data");
    (i, step)
}

/// Draw `n` sequences of `k` steps of task `t`: each starts at a uniformly drawn step of
/// the task's data (so episodes are drawn in proportion to their length) and is padded
/// past its episode's end. Also returns each sequence's (episode index, start).
#[cfg(test)]
pub(crate) fn sample_sequences(
    data: &Data,
    t: usize,
    n: usize,
    k: usize,
    max_timestep: usize,
    rng: &mut rand_pcg::Pcg64Mcg,
) -> (SeqBatch, Vec<(usize, usize)>) {
    let task = &data.set.tasks[t];
    let family = &data.set.families[task.family];
    let episodes = &data.episodes[t];
    let mut b = SeqBatch::empty(t, n, k, family);
    let mut picked = Vec::with_capacity(n);
    for s in 0..n {
        let (i, step) = locate_step(episodes, rng.random_range(0..task.steps));
        b.fill(
            s,
            &episodes[i],
            step as usize,
            family,
            task.scales(),
            max_timestep,
        );
        picked.push((i, step as usize));
    }
    (b, picked)
}

/// Draw `n` sequences of `k` steps of the tasks of family `family`, each of a uniformly
/// drawn task of it, as in [`sample_sequences`]; also returns each sequence's (task,
/// episode, start). One batch per family: its tasks share the encoders and head.
/// `across`: a sequence runs on into the task's next episodes (Algorithm
/// Distillation's learning-history context) instead of being padded at its episode's
/// end.
pub(crate) fn sample_family(
    data: &Data,
    family: usize,
    n: usize,
    k: usize,
    max_timestep: usize,
    across: bool,
    rng: &mut rand_pcg::Pcg64Mcg,
) -> (SeqBatch, Vec<(usize, usize, usize)>) {
    let tasks: Vec<usize> = (0..data.set.tasks.len())
        .filter(|&t| data.set.tasks[t].family == family)
        .collect();
    let fam = &data.set.families[family];
    let mut b = SeqBatch::empty(tasks[0], n, k, fam);
    let mut picked = Vec::with_capacity(n);
    for s in 0..n {
        let t = tasks[rng.random_range(0..tasks.len())];
        let task = &data.set.tasks[t];
        let (i, step) = locate_step(&data.episodes[t], rng.random_range(0..task.steps));
        b.row_tasks[s] = t;
        if across {
            b.fill_across(
                s,
                &data.episodes[t],
                i,
                step as usize,
                fam,
                task.scales(),
                max_timestep,
            );
        } else {
            b.fill(
                s,
                &data.episodes[t][i],
                step as usize,
                fam,
                task.scales(),
                max_timestep,
            );
        }
        picked.push((t, i, step as usize));
    }
    (b, picked)
}

/// [`sample_sequences`] without the positions.
#[cfg(test)]
fn sample_batch(
    data: &Data,
    t: usize,
    n: usize,
    k: usize,
    max_timestep: usize,
    rng: &mut rand_pcg::Pcg64Mcg,
) -> SeqBatch {
    sample_sequences(data, t, n, k, max_timestep, rng).0
}

/// The learning rate after `update` updates: linear warm-up, then cosine decay to
/// `final_lr_fraction` of the peak at `total`.
pub fn learning_rate(config: &SeqConfig, update: u64, total: u64) -> f64 {
    let peak = config.learning_rate;
    if update < config.warmup_steps {
        return peak * (update + 1) as f64 / config.warmup_steps as f64;
    }
    let span = total.saturating_sub(config.warmup_steps).max(1) as f64;
    let progress = ((update - config.warmup_steps) as f64 / span).min(1.0);
    let floor = peak * config.final_lr_fraction;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The offline learner: the model, its optimiser and the data.
pub struct SeqLearner {
    algo: String,
    config: SeqConfig,
    data: Data,
    device: Device,
    model: Option<SeqModel>,
    optim: ModuleOptimizer,
    rng: rand_pcg::Pcg64Mcg,
    /// RA-DT's retrieval memory, once its embedding model is frozen.
    retrieval: Option<crate::radt::Retrieval>,
    seed: u64,
}

/// The metric columns after the leading ones (per-task columns follow these).
pub const METRICS: &[&str] = &[
    "charts/learning_rate",
    "losses/action_loss",
    "losses/action_accuracy",
    "losses/grad_norm",
    "charts/SPS",
    "eval/normalised_mean",
];

impl SeqLearner {
    /// A fresh learner for `config` (its `[lram]` or `[dt]` section) on `data`.
    pub fn new(config: &Config, data: Data) -> Result<Self, AgentError> {
        let algo = config.run.algo.clone();
        let seq = config.seq().clone();
        let device = agentry_models::training_device();
        let model = SeqModel::new(&algo, &seq, &data.set, &device, config.run.seed)?;
        Ok(SeqLearner {
            optim: Self::optimizer(&seq),
            rng: rand_pcg::Pcg64Mcg::seed_from_u64(derive_seed(config.run.seed, 0xDA7A)),
            algo,
            config: seq,
            data,
            device,
            model: Some(model),
            retrieval: None,
            seed: config.run.seed,
        })
    }

    fn optimizer(config: &SeqConfig) -> ModuleOptimizer {
        AdamWConfig::new()
            .with_weight_decay(config.weight_decay as f32)
            .with_epsilon(1e-8)
            .init()
    }

    /// The tasks the model covers.
    pub fn tasks(&self) -> &TaskSet {
        &self.data.set
    }

    fn model(&self) -> &SeqModel {
        self.model
            .as_ref()
            .expect("the model is only taken during an update")
    }

    /// One gradient update at `update` of `total`; returns (loss, accuracy, grad norm, lr).
    pub fn update(&mut self, update: u64, total: u64) -> Result<[f64; 4], AgentError> {
        let tasks = self.data.set.tasks.len();
        let families = self.data.set.families.len();
        // RA-DT: after the plain-DT phase, freeze the embedding model and index the data.
        let pretrain = (self.config.retrieval.pretrain_fraction * total as f64) as u64;
        if self.algo == "radt" && update >= pretrain && self.retrieval.is_none() {
            self.retrieval = Some(crate::radt::Retrieval::build(
                self.model().valid(),
                &self.config,
                &self.data,
            )?);
        }
        let model = self.model.take().expect("model present");
        let mut total_loss: Option<Tensor<1>> = None;
        let mut accuracy = 0.0;
        // One batch per family, its share of the sequences in proportion to its tasks.
        for f in 0..families {
            let members = self.data.set.tasks.iter().filter(|t| t.family == f).count();
            let n = (self.config.batch_size * members).div_ceil(tasks).max(1);
            let (batch, picked) = sample_family(
                &self.data,
                f,
                n,
                self.config.context,
                self.config.max_timestep,
                self.config.across_episodes,
                &mut self.rng,
            );
            let memory = match &self.retrieval {
                Some(r) => {
                    let read = match r.memory_batch(&self.config, &self.data, &batch, &picked) {
                        Ok(read) => read,
                        Err(e) => {
                            self.model = Some(model);
                            return Err(e);
                        }
                    };
                    let n = self.config.retrieval.retrieved;
                    Some(model.memory(&self.config, &self.data.set, &read, n, &self.device))
                }
                None => None,
            };
            let (loss, acc) =
                model.loss(&self.config, &self.data.set, &batch, memory, &self.device);
            accuracy += acc / families as f64;
            total_loss = Some(match total_loss {
                Some(l) => l + loss,
                None => loss,
            });
        }
        let loss = total_loss
            .expect("at least one family")
            .div_scalar(families as f32);
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            self.model = Some(model);
            return Err(AgentError::Numeric(format!(
                "the action loss is {loss_value} at update {}; the parameters were not changed",
                update + 1
            )));
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = clip_grad_norm(&model, &mut grads, self.config.max_grad_norm as f32);
        if !norm.is_finite() {
            self.model = Some(model);
            return Err(AgentError::Numeric(format!(
                "the gradient norm is {norm} at update {}; the parameters were not changed",
                update + 1
            )));
        }
        let lr = learning_rate(&self.config, update, total);
        self.model = Some(self.optim.step(lr, model, grads));
        Ok([loss_value, accuracy, norm as f64, lr])
    }

    /// The policy: the model without autodiff, and what it was built for.
    pub fn policy(&self) -> SeqPolicy {
        SeqPolicy {
            algo: self.algo.clone(),
            config: self.config.clone(),
            set: self.data.set.clone(),
            model: self.model().valid(),
            embedder: self.retrieval.as_ref().map(|r| r.embedder.clone()),
            seed: self.seed,
        }
    }

    fn save(&self, out: &mut Sections) -> Result<(), AgentError> {
        out.put("model", model_bytes(self.model())?);
        if let Some(r) = &self.retrieval {
            out.put("embedder", model_bytes(&r.embedder)?);
        }
        let optim = self
            .optim
            .into_bytes()
            .map_err(|e| AgentError::Invalid(format!("serialising the optimizer: {e}")))?;
        out.put("optimizer", optim.to_vec());
        out.put(
            "rng",
            serde_json::to_vec(&self.rng).expect("the generator serialises"),
        );
        out.put(
            "tasks",
            serde_json::to_vec(&self.data.set).expect("the tasks serialise"),
        );
        Ok(())
    }

    fn load(&mut self, s: &mut Sections, path: &Path) -> Result<(), AgentError> {
        let set: TaskSet = serde_json::from_slice(&s.take("tasks", path)?)
            .map_err(|e| AgentError::checkpoint(path, format!("section `tasks`: {e}")))?;
        if set.families != self.data.set.families
            || set
                .tasks
                .iter()
                .map(|t| &t.env)
                .ne(self.data.set.tasks.iter().map(|t| &t.env))
        {
            return Err(AgentError::checkpoint(
                path,
                "was trained on other tasks than the run's datasets now hold",
            ));
        }
        let fresh = self.model.clone().expect("model present");
        let model = load_model(fresh, s.take("model", path)?)
            .map_err(|m| AgentError::checkpoint(path, m))?;
        let optim = s.take("optimizer", path)?;
        let adam = Self::optimizer(&self.config);
        let optim = crate::runner::catch(|| adam.from_bytes(Bytes::from_bytes_vec(optim)))
            .map_err(|e| AgentError::checkpoint(path, format!("optimizer record: {e}")))?
            .map_err(|e| AgentError::checkpoint(path, format!("optimizer record: {e}")))?;
        self.rng = serde_json::from_slice(&s.take("rng", path)?)
            .map_err(|e| AgentError::checkpoint(path, format!("section `rng`: {e}")))?;
        // RA-DT past its plain-DT phase: the frozen embedding model, and the index
        // rebuilt from it (the keys are a function of the model and the data).
        if s.get("embedder").is_some() {
            let embedder =
                load_embedder(&self.algo, &self.config, &self.data.set, self.seed, s, path)?;
            self.retrieval = Some(crate::radt::Retrieval::build(
                embedder,
                &self.config,
                &self.data,
            )?);
        }
        self.model = Some(model);
        self.optim = optim;
        Ok(())
    }
}

/// The `embedder` section of an RA-DT checkpoint, on the inference device.
fn load_embedder(
    algo: &str,
    config: &SeqConfig,
    set: &TaskSet,
    seed: u64,
    s: &mut Sections,
    path: &Path,
) -> Result<SeqModel, AgentError> {
    let fresh = SeqModel::new(algo, config, set, &agentry_models::cpu(), seed)?;
    load_model(fresh, s.take("embedder", path)?).map_err(|m| AgentError::checkpoint(path, m))
}

fn model_bytes(model: &SeqModel) -> Result<Vec<u8>, AgentError> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| AgentError::Invalid(format!("serialising the model: {e}")))?;
    Ok(bytes.to_vec())
}

/// Load `bytes` (burn's record format) into `fresh`, a panic in burn caught.
fn load_model(fresh: SeqModel, bytes: Vec<u8>) -> Result<SeqModel, String> {
    let record = crate::runner::catch(|| ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)))
        .map_err(|e| format!("model record: {e}"))?
        .map_err(|e| format!("model record: {e}"))?;
    crate::runner::catch(|| fresh.try_load_record(record))
        .map_err(|e| format!("model record: {e}"))?
        .map_err(|e| format!("model record: {e}"))
}

/// A trained sequence model, ready to act (no autodiff).
#[derive(Clone, Debug)]
pub struct SeqPolicy {
    /// `lram` or `dt`.
    pub algo: String,
    /// The model's configuration.
    pub config: SeqConfig,
    /// The tasks it was trained on.
    pub set: TaskSet,
    /// The model.
    pub model: SeqModel,
    /// RA-DT's frozen embedding model (the retrieval keys), once trained.
    pub embedder: Option<SeqModel>,
    /// The seed the model was initialised from (rebuilding the modules before their
    /// weights are loaded needs it).
    pub seed: u64,
}

/// One task's evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    /// The task's name.
    pub task: String,
    /// Episodes played.
    pub episodes: usize,
    /// Mean return.
    pub return_mean: f64,
    /// The normalised score (expert 1, random 0), when the data has both references.
    pub normalised: Option<f64>,
    /// The return-to-go it started from.
    pub target_return: f64,
}

/// Per-episode inference state of a [`SeqPolicy`] playing one task. `P` is how the
/// actor holds its policy: a borrow (`&SeqPolicy`, the evaluation loops) or a shared
/// owner (`Arc<SeqPolicy>`, an embedded [`Agent`](crate::embed::Agent)).
#[derive(Clone)]
pub struct SeqActor<P: std::ops::Deref<Target = SeqPolicy> + Clone> {
    policy: P,
    task: usize,
    device: Device,
    state: BackboneState,
    /// With `inference = "window"`: the normalised tokens of the window, oldest first.
    window: std::collections::VecDeque<Tensor<2>>,
    rtg: f64,
    t: usize,
    /// Plain-Rust acting ([`SeqKernels`]) instead of burn, when the policy allows it.
    fast: Option<kernels::Fast>,
    /// The last logits (on the plain-Rust path, in the run).
    logits: Vec<f32>,
}

impl<P: std::ops::Deref<Target = SeqPolicy> + Clone> SeqActor<P> {
    /// Start an episode of task `task` with return-to-go `target`.
    pub fn new(policy: P, task: usize, target: f64) -> Self {
        let device = agentry_models::cpu();
        SeqActor {
            state: policy.model.backbone.init_state(1, &device),
            window: std::collections::VecDeque::new(),
            policy,
            task,
            device,
            rtg: target,
            t: 0,
            fast: None,
            logits: Vec::new(),
        }
    }

    /// [`new`](Self::new), acting through `kernels` (made from this policy's model by
    /// [`SeqKernels::new`]): the same logits to f32 rounding, without burn, and without
    /// allocating per step.
    pub fn with_kernels(policy: P, kernels: Arc<SeqKernels>, task: usize, target: f64) -> Self {
        let run = Box::new(kernels.run());
        SeqActor {
            fast: Some((kernels, run)),
            ..SeqActor::new(policy, task, target)
        }
    }

    /// Whether it acts through [`SeqKernels`].
    pub fn is_plain_rust(&self) -> bool {
        self.fast.is_some()
    }

    /// Start a new episode of task `task` with return-to-go `target`, keeping the
    /// plain-Rust path's buffers (its reset allocates nothing).
    pub fn restart(&mut self, task: usize, target: f64) {
        self.task = task;
        self.rtg = target;
        self.t = 0;
        self.window.clear();
        match &mut self.fast {
            Some((_, run)) => run.reset(),
            None => self.state = self.policy.model.backbone.init_state(1, &self.device),
        }
    }

    /// The return-to-go the next step is conditioned on.
    pub fn return_to_go(&self) -> f64 {
        self.rtg
    }

    /// Steps played in this episode.
    pub fn steps(&self) -> usize {
        self.t
    }

    /// Feed one token; its output (in window mode, only computed when `output`).
    fn feed(&mut self, token: Tensor<2>, output: bool) -> Option<Tensor<2>> {
        let policy = self.policy.clone();
        let m = &policy.model;
        let config = &policy.config;
        let d = config.d_model;
        let x = m.norm.forward(token.reshape([1, 1, d])).reshape([1, d]);
        match config.inference {
            Inference::Cache => Some(m.backbone.step(x, &mut self.state)),
            Inference::Window => {
                self.window.push_back(x);
                let keep = window_tokens(config);
                while self.window.len() > keep {
                    self.window.pop_front();
                }
                output.then(|| {
                    let n = self.window.len();
                    let seq =
                        Tensor::cat(self.window.iter().cloned().collect(), 0).reshape([1, n, d]);
                    m.backbone
                        .forward(seq)
                        .slice([0..1, n - 1..n, 0..d])
                        .reshape([1, d])
                })
            }
        }
    }

    fn time(&self, x: Tensor<2>) -> Tensor<2> {
        let t = self.t.min(self.policy.config.max_timestep - 1) as i64;
        SeqModel::add_embedding(x, &self.policy.model.time, &[t], &self.device)
    }

    fn scalar(&self, v: f32) -> Tensor<2> {
        Tensor::from_data(TensorData::new(vec![v], [1, 1]), &self.device)
    }

    /// The head's outputs for observation `obs`: action logits (256 per dimension for
    /// continuous actions). Feeds the state and return-to-go tokens.
    pub fn logits(&mut self, obs: &[f32]) -> Vec<f32> {
        self.compute_logits(obs).to_vec()
    }

    /// [`logits`](Self::logits), kept in the actor.
    fn compute_logits(&mut self, obs: &[f32]) -> &[f32] {
        if self.fast.is_none() {
            self.logits = self.burn_logits(obs);
            return &self.logits;
        }
        let (kernels, run) = self.fast.as_mut().expect("checked just above");
        let p = &*self.policy;
        let task = &p.set.tasks[self.task];
        let rtg = if p.config.returns_to_go {
            (self.rtg / task.scale as f64) as f32
        } else {
            0.0
        };
        kernels.logits(run, obs, task.family, self.task, self.t, rtg);
        &run.logits
    }

    fn burn_logits(&mut self, obs: &[f32]) -> Vec<f32> {
        let policy = self.policy.clone();
        let p = &*policy;
        let task = &p.set.tasks[self.task];
        let family = &p.set.families[task.family];
        let m = &p.model;
        let o = Tensor::<2>::from_data(TensorData::new(obs.to_vec(), [1, obs.len()]), &self.device);
        let s = m.encode_states(task.family, o, &family.obs_shape);
        let s = SeqModel::add_embedding(s, &m.task, &[self.task as i64], &self.device);
        let s = self.time(s);
        self.feed(s, false);
        let rtg = if p.config.returns_to_go {
            (self.rtg / task.scale as f64) as f32
        } else {
            0.0
        };
        let r = self.time(m.rtg.forward(self.scalar(rtg)));
        let h = self.feed(r, true).expect("an output is asked for");
        m.heads[task.family]
            .forward(h)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits")
    }

    /// The action for observation `obs` (`mask[a]`: legal), greedy or sampled; its
    /// values are written to `out` (a discrete action's index as one value).
    pub fn act<R: rand::Rng + ?Sized>(
        &mut self,
        obs: &[f32],
        mask: Option<&[bool]>,
        deterministic: bool,
        rng: &mut R,
        out: &mut Vec<f32>,
    ) {
        let policy = self.policy.clone();
        let p = &*policy;
        let family = &p.set.families[p.set.tasks[self.task].family];
        let values = self.compute_logits(obs);
        out.clear();
        match &family.action {
            ActionKind::Discrete { .. } => {
                out.push(choose(values, mask, deterministic, rng) as f32)
            }
            ActionKind::Continuous { low, high } => {
                for (j, chunk) in values.chunks(ACTION_BINS).enumerate() {
                    let bin = choose(chunk, None, deterministic, rng);
                    out.push(bin_value(bin, low[j], high[j]));
                }
            }
        }
    }

    /// What the action (`action`, as [`act`](Self::act) wrote it) earned: feeds the
    /// action (if in context) and reward tokens and lowers the return-to-go.
    pub fn observe(&mut self, action: &[f32], reward: f64) {
        let policy = self.policy.clone();
        let p = &*policy;
        let task = &p.set.tasks[self.task];
        let family = &p.set.families[task.family];
        if let Some((kernels, run)) = &mut self.fast {
            kernels.observe(
                run,
                task.family,
                &family.action,
                action,
                p.config.actions_in_context,
                self.t,
                reward as f32 / task.scales().reward,
            );
            self.rtg -= reward;
            self.t += 1;
            return;
        }
        let m = &p.model;
        if p.config.actions_in_context {
            let a = match (&m.actions[task.family], &family.action) {
                (ActionEncoder::Table(e), _) => {
                    let idx = Tensor::<2, Int>::from_data(
                        TensorData::new(vec![action[0] as i64], [1, 1]),
                        &self.device,
                    );
                    e.forward(idx).reshape([1, p.config.d_model])
                }
                (ActionEncoder::Linear(l), ActionKind::Continuous { low, high }) => {
                    let scaled: Vec<f32> = action
                        .iter()
                        .enumerate()
                        .map(|(j, &v)| unit_action(v, low[j], high[j]))
                        .collect();
                    let n = scaled.len();
                    l.forward(Tensor::from_data(
                        TensorData::new(scaled, [1, n]),
                        &self.device,
                    ))
                }
                (ActionEncoder::Linear(_), ActionKind::Discrete { .. }) => {
                    unreachable!("discrete actions have a table")
                }
            };
            let a = self.time(a);
            self.feed(a, false);
        }
        let r = self.time(
            m.reward
                .forward(self.scalar(reward as f32 / task.scales().reward)),
        );
        self.feed(r, false);
        self.rtg -= reward;
        self.t += 1;
    }
}

/// Argmax (greedy) or a softmax sample over `logits` among the legal entries.
pub(crate) fn choose<R: rand::Rng + ?Sized>(
    logits: &[f32],
    mask: Option<&[bool]>,
    greedy: bool,
    rng: &mut R,
) -> usize {
    let legal = |i: usize| mask.is_none_or(|m| m.get(i).copied().unwrap_or(false));
    let best = (0..logits.len())
        .filter(|&i| legal(i))
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap_or(0);
    if greedy {
        return best;
    }
    // Two passes over the weights instead of a vector of them: acting allocates nothing.
    let weight = |i: usize| {
        if legal(i) {
            ((logits[i] - logits[best]) as f64).exp()
        } else {
            0.0
        }
    };
    let mut u = rng.random::<f64>() * (0..logits.len()).map(weight).sum::<f64>();
    for i in 0..logits.len() {
        let w = weight(i);
        if u < w {
            return i;
        }
        u -= w;
    }
    best
}

/// Play `episodes` episodes of each task and score them.
pub fn evaluate_policy(
    policy: &SeqPolicy,
    episodes: usize,
    seed: u64,
    max_steps: u64,
) -> Result<Vec<TaskScore>, AgentError> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(derive_seed(seed, 0xE7A1));
    let mut scores = Vec::new();
    for (t, task) in policy.set.tasks.iter().enumerate() {
        let mut env = registry::make(&task.env.name, &task.env.params)?;
        let dtype = env.observation_space().dtype();
        let dim = env.observation_space().flat_dim();
        let mut obs_f32 = vec![0f32; dim];
        let mut obs_u8 = vec![0u8; if dtype == Dtype::U8 { dim } else { 0 }];
        let mut mask = vec![false; env.action_mask_len()];
        let mut extras = vec![0f64; env.extra_names().len()];
        let target = task.target(policy.config.target_return);
        let mut action = Vec::new();
        let mut total = 0.0;
        for episode in 0..episodes {
            let mut actor = SeqActor::new(policy, t, target);
            let out = Out {
                obs: if dtype == Dtype::U8 {
                    ObsMut::U8(&mut obs_u8)
                } else {
                    ObsMut::F32(&mut obs_f32)
                },
                action_mask: &mut mask,
                extras: &mut extras,
            };
            env.reset_into(
                Some(derive_seed(seed, (t as u64) << 32 | episode as u64)),
                out,
            )?;
            let (mut ret, mut len) = (0.0, 0u64);
            loop {
                if dtype == Dtype::U8 {
                    for (f, &b) in obs_f32.iter_mut().zip(&obs_u8) {
                        *f = b as f32;
                    }
                }
                let m = (!mask.is_empty()).then_some(mask.as_slice());
                actor.act(
                    &obs_f32,
                    m,
                    policy.config.deterministic,
                    &mut rng,
                    &mut action,
                );
                let a = match env.action_space() {
                    Space::Discrete(_) => Action::Discrete(action[0] as usize),
                    _ => Action::Continuous(&action),
                };
                let out = Out {
                    obs: if dtype == Dtype::U8 {
                        ObsMut::U8(&mut obs_u8)
                    } else {
                        ObsMut::F32(&mut obs_f32)
                    },
                    action_mask: &mut mask,
                    extras: &mut extras,
                };
                let step = env.step_into(a, out)?;
                ret += step.reward;
                len += 1;
                actor.observe(&action, step.reward);
                if step.done() {
                    if let EpisodeEnd::Whole { ret: r, .. } = env.episode_end() {
                        ret = r;
                    }
                    break;
                }
                if len >= max_steps {
                    break;
                }
            }
            total += ret;
        }
        let mean = total / episodes.max(1) as f64;
        scores.push(TaskScore {
            task: task.name(),
            episodes,
            return_mean: mean,
            normalised: task.normalised(mean),
            target_return: target,
        });
    }
    Ok(scores)
}

/// The columns of an offline run's metrics.csv.
fn metric_names(set: &TaskSet) -> Vec<String> {
    // The five leading columns every run has (no policy lag: there are no actors).
    let mut names: Vec<String> = crate::runner::LEADING_COLUMNS[..5]
        .iter()
        .chain(METRICS)
        .map(|s| s.to_string())
        .collect();
    for t in 0..set.tasks.len() {
        names.push(format!("eval/task{t}/return"));
        names.push(format!("eval/task{t}/normalised"));
    }
    names
}

/// What an offline run's summary adds: the tasks and the last evaluation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OfflineSummary {
    /// The algorithm.
    pub algo: String,
    /// Updates made.
    pub updates: u64,
    /// Training wall time, seconds.
    pub wall_time_s: f64,
    /// The tasks (`eval/task{i}` columns are in this order).
    pub tasks: Vec<TaskInfo>,
    /// The last evaluation, per task.
    pub eval: Vec<TaskScore>,
    /// The mean normalised score of the last evaluation.
    pub normalised_mean: Option<f64>,
    /// RA-DT's in-context evaluation on held-out tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_context: Vec<crate::radt::InContext>,
}

fn normalised_mean(scores: &[TaskScore]) -> Option<f64> {
    let n: Vec<f64> = scores.iter().filter_map(|s| s.normalised).collect();
    (!n.is_empty() && n.len() == scores.len()).then(|| n.iter().sum::<f64>() / n.len() as f64)
}

/// Train the offline run in `dir` (new or resumed) to `config.run.steps` updates.
pub(crate) fn drive(
    dir: &Path,
    config: Config,
    resume: bool,
    rewrite_steps: bool,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, AgentError> {
    let rd = RunDir::new(dir);
    let mut data = load_data(&config.seq().datasets)?;
    data.keep_every(config.seq().episode_stride);
    let mut learner = SeqLearner::new(&config, data)?;
    let mut state = RunState::default();
    let mut resumed_from = None;
    if resume && let Some((_, path)) = rd.latest("learner")? {
        let mut s = Sections::read_kind(&path, SEQ_LEARNER)?;
        let saved = crate::train::check_checkpoint_config(&mut s, &path, &config)?;
        if saved.env_steps > config.run.steps {
            return Err(ConfigError::new(
                "run.steps",
                "--steps",
                format!(
                    "{} is below the {} updates the run has already made",
                    config.run.steps, saved.env_steps
                ),
            )
            .into());
        }
        learner.load(&mut s, &path)?;
        resumed_from = Some(saved.env_steps);
        state = saved;
    }
    if rewrite_steps {
        crate::checkpoint::write_atomic(&rd.config(), config.to_toml().as_bytes())?;
    }
    let names = metric_names(&learner.data.set);
    let mut metrics = crate::train::Metrics::open(&rd.metrics(), &names.join(","), resumed_from)?;
    observer.start(dir, &config, &state, resumed_from);
    let seq = config.seq().clone();
    let total = config.run.steps;
    let interval = config.run.checkpoint_interval;
    let started = Instant::now();
    let wall_before = state.wall_time_s;
    let mut last_eval: Vec<TaskScore> = Vec::new();
    let mut window = (Instant::now(), state.env_steps);
    let mut stopped = false;
    let mut last_saved = resumed_from;
    while state.env_steps < total {
        let update = state.env_steps;
        let [loss, accuracy, grad_norm, lr] = learner.update(update, total)?;
        state.env_steps += 1;
        state.updates += 1;
        state.wall_time_s = wall_before + started.elapsed().as_secs_f64();
        let done = state.env_steps == total;
        let eval_now =
            done || (seq.eval_interval > 0 && state.env_steps.is_multiple_of(seq.eval_interval));
        // RA-DT is evaluated in context on held-out tasks, once, after training.
        let eval_now = eval_now && config.run.algo != "radt";
        if eval_now && seq.eval_episodes > 0 {
            let policy = learner.policy();
            last_eval = evaluate_policy(
                &policy,
                seq.eval_episodes,
                derive_seed(config.run.seed, state.env_steps),
                100_000,
            )?;
            for s in &last_eval {
                for _ in 0..s.episodes {
                    state.episodes += 1;
                    if state.recent.len() == crate::runner::RECENT_EPISODES {
                        state.recent.pop_front();
                    }
                    state.recent.push_back(Episode {
                        ret: s.return_mean,
                        len: 0,
                    });
                }
            }
            if let Some(n) = normalised_mean(&last_eval) {
                state.best_return_mean = Some(state.best_return_mean.map_or(n, |b: f64| b.max(n)));
            }
        }
        if eval_now || state.env_steps.is_multiple_of(seq.log_interval) {
            let sps =
                (state.env_steps - window.1) as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
            window = (Instant::now(), state.env_steps);
            let mut row = vec![
                state.env_steps as f64,
                state.wall_time_s,
                state.episodes as f64,
                if eval_now {
                    last_eval.iter().map(|s| s.return_mean).sum::<f64>()
                        / last_eval.len().max(1) as f64
                } else {
                    f64::NAN
                },
                f64::NAN,
                lr,
                loss,
                accuracy,
                grad_norm,
                sps,
                if eval_now {
                    normalised_mean(&last_eval).unwrap_or(f64::NAN)
                } else {
                    f64::NAN
                },
            ];
            for t in 0..learner.data.set.tasks.len() {
                let s = last_eval.get(t).filter(|_| eval_now);
                row.push(s.map_or(f64::NAN, |s| s.return_mean));
                row.push(s.and_then(|s| s.normalised).unwrap_or(f64::NAN));
            }
            metrics.row(&row)?;
            if observer.update(&state, &names, &row) == Control::Stop {
                stopped = true;
                break;
            }
        }
        if interval > 0 && state.env_steps.is_multiple_of(interval) && !done {
            metrics.sync()?;
            save(&learner, &rd, &config, &state)?;
            last_saved = Some(state.env_steps);
            observer.checkpoint(state.env_steps);
        }
    }
    metrics.sync()?;
    if !stopped {
        if last_saved != Some(state.env_steps) {
            save(&learner, &rd, &config, &state)?;
            observer.checkpoint(state.env_steps);
        }
        let in_context = if config.run.algo == "radt" {
            let policy = learner.policy();
            let results = in_context_eval(&policy, derive_seed(config.run.seed, 0x1C1), None)?;
            crate::radt::write_curve(dir, &results)?;
            results
        } else {
            Vec::new()
        };
        let summary = OfflineSummary {
            algo: config.run.algo.clone(),
            updates: state.updates,
            wall_time_s: state.wall_time_s,
            tasks: learner.data.set.tasks.clone(),
            normalised_mean: normalised_mean(&last_eval),
            eval: last_eval,
            in_context,
        };
        let mut text = serde_json::to_string_pretty(&summary).expect("a summary serialises");
        text.push('\n');
        crate::checkpoint::write_atomic(&rd.summary(), text.as_bytes())?;
    }
    Ok(TrainOutcome {
        dir: dir.to_path_buf(),
        state,
        stopped,
        config,
    })
}

fn save(
    learner: &SeqLearner,
    rd: &RunDir,
    config: &Config,
    state: &RunState,
) -> Result<(), AgentError> {
    let mut s = Sections::new(SEQ_LEARNER);
    crate::train::put_checkpoint_meta(&mut s, config, state);
    learner.save(&mut s)?;
    fs::create_dir_all(rd.checkpoints()).map_err(|e| AgentError::io(rd.checkpoints(), e))?;
    crate::train::write_checkpoint(rd, "learner", state.env_steps, &s)
}

/// The in-context evaluation of `policy` (RA-DT, or a DT trained with
/// `task_embedding = false`) on the held-out Dark-Room goals (the first `goals` of them
/// when given): `retrieval.in_context_episodes` consecutive episodes each.
pub fn in_context_eval(
    policy: &SeqPolicy,
    seed: u64,
    goals: Option<usize>,
) -> Result<Vec<crate::radt::InContext>, AgentError> {
    crate::radt::evaluate_in_context(
        policy,
        policy.config.retrieval.in_context_episodes,
        seed,
        goals,
    )
}

/// The policy of an offline run's newest checkpoint (for `agent eval --run`).
pub fn load_run(dir: &Path) -> Result<SeqPolicy, AgentError> {
    let rd = RunDir::new(dir);
    let config = crate::train::read_config(dir)?;
    let Some((_, path)) = rd.latest("learner")? else {
        return Err(AgentError::Usage(format!(
            "{} has no checkpoint yet: train it first (agent train --resume {0})",
            dir.display()
        )));
    };
    let mut s = Sections::read_kind(&path, SEQ_LEARNER)?;
    let set: TaskSet = serde_json::from_slice(&s.take("tasks", &path)?)
        .map_err(|e| AgentError::checkpoint(&path, format!("section `tasks`: {e}")))?;
    set.check()
        .map_err(|m| AgentError::checkpoint(&path, format!("section `tasks`: {m}")))?;
    let device = agentry_models::cpu();
    let fresh = SeqModel::new(
        &config.run.algo,
        config.seq(),
        &set,
        &device,
        config.run.seed,
    )?;
    let model =
        load_model(fresh, s.take("model", &path)?).map_err(|m| AgentError::checkpoint(&path, m))?;
    let embedder = match s.get("embedder") {
        Some(_) => Some(load_embedder(
            &config.run.algo,
            config.seq(),
            &set,
            config.run.seed,
            &mut s,
            &path,
        )?),
        None => None,
    };
    Ok(SeqPolicy {
        algo: config.run.algo.clone(),
        config: config.seq().clone(),
        set,
        model,
        embedder,
        seed: config.run.seed,
    })
}

/// A lower bound on the parameters of the model `config` and `set` describe (each
/// block's 4·d² projections, the embeddings, every family's encoder, action encoder
/// and head), saturating: a hostile description cannot overflow it.
fn least_parameters(config: &SeqConfig, set: &TaskSet) -> u64 {
    let d = config.d_model as u64;
    let mut n = 4u64
        .saturating_mul(d)
        .saturating_mul(d)
        .saturating_mul(config.layers as u64);
    if config.timestep_embedding {
        n = n.saturating_add(d.saturating_mul(config.max_timestep as u64));
    }
    n = n.saturating_add(d.saturating_mul(set.tasks.len() as u64));
    for f in &set.families {
        let values = f
            .obs_shape
            .iter()
            .fold(1u64, |a, &x| a.saturating_mul(x as u64));
        let encoder = if f.obs_u8 && f.obs_shape.len() == 3 {
            // The Nature CNN's last convolution's output feeds a 512-wide layer.
            let side = |x: usize| {
                let a = (x.saturating_sub(8) / 4 + 1).saturating_sub(4) / 2 + 1;
                a.saturating_sub(2) as u64
            };
            side(f.obs_shape[1])
                .saturating_mul(side(f.obs_shape[2]))
                .saturating_mul(64 * 512)
        } else {
            values.saturating_mul(d)
        };
        let (head, actions) = match &f.action {
            ActionKind::Discrete { n, .. } => (*n as u64, *n as u64),
            ActionKind::Continuous { low, .. } => (
                (low.len() as u64).saturating_mul(ACTION_BINS as u64),
                low.len() as u64,
            ),
        };
        n = n
            .saturating_add(encoder)
            .saturating_add(head.saturating_add(actions).saturating_mul(d));
    }
    n
}

/// The record kind of a sequence policy file (`agent export` of an offline run).
pub const SEQ_POLICY: &str = "seq-policy";

/// What a sequence policy file says about its model besides the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SeqPolicyMeta {
    algo: String,
    config: SeqConfig,
    set: TaskSet,
    seed: u64,
}

impl SeqPolicy {
    /// The policy as a self-contained file's sections (kind [`SEQ_POLICY`]): the
    /// model's configuration, its tasks and the weights (RA-DT: and the embedder's).
    pub fn to_sections(&self) -> Result<Sections, AgentError> {
        let mut s = Sections::new(SEQ_POLICY);
        let meta = SeqPolicyMeta {
            algo: self.algo.clone(),
            config: self.config.clone(),
            set: self.set.clone(),
            seed: self.seed,
        };
        s.put(
            "seq",
            serde_json::to_vec(&meta).expect("the meta serialises"),
        );
        s.put("model", model_bytes(&self.model)?);
        if let Some(e) = &self.embedder {
            s.put("embedder", model_bytes(e)?);
        }
        Ok(s)
    }

    /// A policy from a file's sections (kind [`SEQ_POLICY`]); `path` names the file in
    /// errors. A configuration that does not build, or weights that do not fit it, is
    /// an error naming the section.
    pub fn from_sections(mut s: Sections, path: &Path) -> Result<SeqPolicy, AgentError> {
        if s.kind != SEQ_POLICY {
            return Err(AgentError::checkpoint(
                path,
                format!("holds a {} record, not a {SEQ_POLICY}", s.kind),
            ));
        }
        let meta: SeqPolicyMeta = serde_json::from_slice(&s.take("seq", path)?)
            .map_err(|e| AgentError::checkpoint(path, format!("section `seq`: {e}")))?;
        let bad = |m: String| AgentError::checkpoint(path, m);
        meta.set
            .check()
            .map_err(|m| bad(format!("section `seq`: {m}")))?;
        meta.config
            .check(&meta.algo)
            .map_err(|(k, m)| bad(format!("section `seq`: {k}: {m}")))?;
        // The modules are built before their weights are read: a configuration far
        // larger than the weights it comes with is damage, not a model.
        let least = least_parameters(&meta.config, &meta.set).saturating_mul(2);
        let have = s.get("model").map_or(0, |m| m.len() as u64);
        if least > have {
            return Err(bad(format!(
                "section `seq` describes a model of at least {least} bytes of weights, \
                 section `model` holds {have}"
            )));
        }
        let device = agentry_models::cpu();
        let fresh = |what: &str| {
            crate::runner::catch(|| {
                SeqModel::new(&meta.algo, &meta.config, &meta.set, &device, meta.seed)
            })
            .map_err(|e| bad(format!("section `seq`: building the {what}: {e}")))?
            .map_err(|e| bad(format!("section `seq`: building the {what}: {e}")))
        };
        let model = load_model(fresh("model")?, s.take("model", path)?).map_err(bad)?;
        let embedder = match s.get("embedder") {
            Some(_) => {
                Some(load_model(fresh("embedder")?, s.take("embedder", path)?).map_err(bad)?)
            }
            None => None,
        };
        Ok(SeqPolicy {
            algo: meta.algo,
            config: meta.config,
            set: meta.set,
            model,
            embedder,
            seed: meta.seed,
        })
    }
}

/// Record an evaluation in an offline run's `summary.json`.
pub fn record_eval(dir: &Path, scores: &[TaskScore]) -> Result<(), AgentError> {
    let rd = RunDir::new(dir);
    let path = rd.summary();
    let mut summary: OfflineSummary = match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| AgentError::Invalid(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let policy = load_run(dir)?;
            OfflineSummary {
                algo: policy.algo,
                updates: 0,
                wall_time_s: 0.0,
                tasks: policy.set.tasks,
                eval: Vec::new(),
                normalised_mean: None,
                in_context: Vec::new(),
            }
        }
        Err(e) => return Err(AgentError::io(&path, e)),
    };
    summary.normalised_mean = normalised_mean(scores);
    summary.eval = scores.to_vec();
    let mut text = serde_json::to_string_pretty(&summary).expect("a summary serialises");
    text.push('\n');
    crate::checkpoint::write_atomic(&path, text.as_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{ConfigRequest, resolve};
    use crate::dataset::tests::StopAt;
    use crate::dataset::{META_FORMAT, Source, write_dataset};
    use crate::train::{Silent, Start, train};
    use agentry_envs::Params;

    /// One episode of `env` (float observations of width `dim`, reset with `seed`),
    /// acting with `policy` (an action's values: a discrete index as one value).
    fn record_episode(
        env: &mut dyn agentry_envs::Env,
        dim: usize,
        seed: u64,
        mut policy: impl FnMut(&[f32]) -> Vec<f32>,
    ) -> EpisodeRecord {
        let mut obs = vec![0f32; dim];
        let (mut mask, mut extras) = (vec![], vec![]);
        env.reset_into(
            Some(seed),
            Out {
                obs: ObsMut::F32(&mut obs),
                action_mask: &mut mask,
                extras: &mut extras,
            },
        )
        .unwrap();
        let discrete = matches!(env.action_space(), Space::Discrete(_));
        let mut e = crate::dataset::EpisodeBuilder::new(0, false);
        loop {
            let a = policy(&obs);
            e.act_f32(&obs, &a);
            let action = if discrete {
                Action::Discrete(a[0] as usize)
            } else {
                Action::Continuous(&a)
            };
            let step = env
                .step_into(
                    action,
                    Out {
                        obs: ObsMut::F32(&mut obs),
                        action_mask: &mut mask,
                        extras: &mut extras,
                    },
                )
                .unwrap();
            e.outcome(step.reward as f32, step.terminated, step.truncated);
            if step.done() {
                return e.take();
            }
        }
    }

    /// Record `episodes` episodes of Dark-Room (`size`, goal `goal`) played by a
    /// scripted walker that heads for the goal, taking a random action with
    /// probability `epsilon`; written as a dataset in `dir`, with the greedy walker's
    /// and a random policy's mean returns as its references.
    pub(crate) fn dark_room_data(
        dir: &Path,
        size: usize,
        goal: (usize, usize),
        episodes: usize,
        epsilon: f64,
        seed: u64,
    ) -> PathBuf {
        let params = Params::parse_assignments(&[
            format!("size={size}"),
            format!("goal=[{}, {}]", goal.0, goal.1),
        ])
        .unwrap();
        let env_config = EnvConfig {
            name: "dark-room".into(),
            params: params.clone(),
        };
        let mut env = registry::make("dark-room", &params).unwrap();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        // Head for the goal, or a random move with probability `eps`.
        let mut play = |eps: f64, rng: &mut rand_pcg::Pcg64Mcg| {
            let reset = rng.random();
            record_episode(env.as_mut(), 2, reset, |obs| {
                let (x, y) = (obs[0] as usize, obs[1] as usize);
                let toward = if x < goal.0 {
                    1
                } else if x > goal.0 {
                    3
                } else if y < goal.1 {
                    2
                } else if y > goal.1 {
                    0
                } else {
                    4
                };
                let a = if rng.random::<f64>() < eps {
                    rng.random_range(0..5)
                } else {
                    toward
                };
                vec![a as f32]
            })
        };
        let recorded: Vec<EpisodeRecord> = (0..episodes).map(|_| play(epsilon, &mut rng)).collect();
        let mean =
            |eps: &[EpisodeRecord]| eps.iter().map(|e| e.ret()).sum::<f64>() / eps.len() as f64;
        let expert: Vec<EpisodeRecord> = (0..5).map(|_| play(0.0, &mut rng)).collect();
        let random: Vec<EpisodeRecord> = (0..20).map(|_| play(1.0, &mut rng)).collect();
        let probe = registry::make("dark-room", &params).unwrap();
        let meta = DatasetMeta {
            format: META_FORMAT.into(),
            env: env_config,
            task: 0,
            source: Source::Policy {
                path: "scripted".into(),
                algo: "scripted".into(),
                env_steps: 0,
                epsilon,
                deterministic: true,
                seed,
            },
            obs_shape: vec![2],
            action: ActionKind::Discrete {
                n: 5,
                masked: false,
            },
            expert_return: Some(mean(&expert)),
            random_return: Some(mean(&random)),
        };
        let path = dir.join(format!("dark-room-{}-{}.agds", goal.0, goal.1));
        write_dataset(&path, probe.observation_space(), &meta, &recorded).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("agentry-offline-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Train a new run of `config` in `dir` to its end.
    fn train_new(config: Config, dir: &Path) {
        train(
            Start::New {
                config: Box::new(config),
                out: Some(dir.to_path_buf()),
            },
            &mut Silent,
        )
        .unwrap();
    }

    fn config(algo: &str, datasets: &[&Path], steps: u64, sets: &[&str]) -> Config {
        resolve(&ConfigRequest {
            algo: Some(algo.into()),
            datasets: datasets.iter().map(|p| p.display().to_string()).collect(),
            steps: Some(steps),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..ConfigRequest::default()
        })
        .unwrap()
    }

    /// Pendulum episodes of uniformly random torques, as a dataset in `dir`.
    fn pendulum_data(dir: &Path, episodes: usize) -> PathBuf {
        let params = Params::new();
        let mut env = registry::make("pendulum", &params).unwrap();
        let space = env.action_space().clone();
        let Space::Box(bounds) = &space else {
            panic!("pendulum has a Box action space")
        };
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(5);
        let mut recorded = Vec::new();
        for _ in 0..episodes {
            let reset = rng.random();
            recorded.push(record_episode(env.as_mut(), 3, reset, |_| {
                let mut a = [0f32];
                agentry_envs::space::sample_box(bounds, &mut rng, &mut a);
                a.to_vec()
            }));
        }
        let meta = DatasetMeta {
            format: META_FORMAT.into(),
            env: EnvConfig {
                name: "pendulum".into(),
                params,
            },
            task: 0,
            source: Source::Policy {
                path: "random".into(),
                algo: "random".into(),
                env_steps: 0,
                epsilon: 1.0,
                deterministic: false,
                seed: 5,
            },
            obs_shape: vec![3],
            action: ActionKind::of(&space, 0).unwrap(),
            expert_return: None,
            random_return: None,
        };
        let path = dir.join("pendulum.agds");
        write_dataset(&path, env.observation_space(), &meta, &recorded).unwrap();
        path
    }

    /// Continuous actions are learned as 256 bins per dimension next to a discrete
    /// task of another observation width, and acted as bin centres inside the bounds.
    #[test]
    fn continuous_and_discrete_tasks_train_together() {
        let dir = temp_dir("mixed");
        let pendulum = pendulum_data(&dir, 2);
        let room = dark_room_data(&dir, 4, (2, 2), 2, 0.5, 3);
        let data =
            load_data(&[pendulum.display().to_string(), room.display().to_string()]).unwrap();
        assert_eq!(data.set.families.len(), 2);
        assert_eq!(data.set.families[0].head_outputs(), 256);
        assert_eq!(data.set.families[1].head_outputs(), 5);
        // Without reference returns the target is the best episode's return.
        assert_eq!(data.set.tasks[0].expert_return, None);
        let best = data.episodes[0]
            .iter()
            .map(|e| e.ret())
            .fold(f64::MIN, f64::max);
        assert_eq!(data.set.tasks[0].target(1.0), best);
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let b = sample_batch(&data, 0, 4, 8, 1000, &mut rng);
        for r in 0..b.rows() {
            if b.mask[r] == 1.0 {
                let v = b.action_values[r];
                assert!((-1.0..=1.0).contains(&v));
                // The scaled value and the bin agree: bin of the action in [-2, 2].
                assert_eq!(
                    b.targets[r] as usize,
                    action_bin(2.0 * v, -2.0, 2.0).min(255)
                );
            }
        }
        for algo in ["lram", "dt"] {
            let cfg = config(
                algo,
                &[&pendulum, &room],
                3,
                &[
                    &format!("{algo}.d_model=16"),
                    &format!("{algo}.context=4"),
                    &format!("{algo}.eval_episodes=1"),
                    "run.checkpoint_interval=0",
                ],
            );
            let run = dir.join(algo);
            train_new(cfg, &run);
            let policy = load_run(&run).unwrap();
            let mut actor = SeqActor::new(&policy, 0, -100.0);
            let mut out = Vec::new();
            for _ in 0..5 {
                actor.act(&[1.0, 0.0, 0.5], None, false, &mut rng, &mut out);
                assert_eq!(out.len(), 1);
                assert!((-2.0..=2.0).contains(&out[0]), "{out:?}");
                actor.observe(&out, -1.0);
            }
            let scores = evaluate_policy(&policy, 1, 0, 1000).unwrap();
            assert_eq!(scores.len(), 2);
            assert!(scores[0].normalised.is_none() && scores[1].normalised.is_some());
        }
    }

    /// Acting token by token (cache), re-running the window, and the training forward
    /// pass give the same logits while an episode fits in the context, for both
    /// backbones: the three paths read the same tokens.
    #[test]
    fn acting_paths_agree_with_the_training_forward_within_the_context() {
        let dir = temp_dir("paths");
        let path = dark_room_data(&dir, 5, (3, 1), 2, 0.5, 4);
        let data = load_data(&[path.display().to_string()]).unwrap();
        let device = agentry_models::cpu();
        let e = &data.episodes[0][0];
        let k = 6;
        for algo in ["lram", "dt"] {
            let mut config = config(algo, &[&path], 10, &[]).seq().clone();
            config.context = k;
            config.d_model = 32;
            let model = SeqModel::new(algo, &config, &data.set, &device, 3).unwrap();
            // The training path: one sequence of the episode's first k steps.
            let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
            let mut batch = sample_batch(&data, 0, 1, k, 1000, &mut rng);
            let rtg = e.returns_to_go();
            #[allow(clippy::needless_range_loop)] // t indexes six arrays
            for t in 0..k {
                batch.obs[t * 2..t * 2 + 2].copy_from_slice(&e.obs_f32()[t * 2..t * 2 + 2]);
                batch.rtg[t] = rtg[t] / data.set.tasks[0].scale;
                batch.rewards[t] = e.rewards[t] / data.set.tasks[0].scales().reward;
                batch.timesteps[t] = t as i64;
                batch.action_index[t] = e.actions[t] as i64;
                batch.mask[t] = 1.0;
            }
            let trained = model
                .logits(&config, &data.set, &batch, &device)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap();
            for inference in [Inference::Cache, Inference::Window] {
                let policy = SeqPolicy {
                    algo: algo.into(),
                    config: SeqConfig {
                        inference,
                        ..config.clone()
                    },
                    set: data.set.clone(),
                    model: model.clone(),
                    embedder: None,
                    seed: 0,
                };
                let mut actor = SeqActor::new(&policy, 0, rtg[0] as f64);
                for t in 0..k {
                    let got = actor.logits(&e.obs_f32()[t * 2..t * 2 + 2]);
                    for (a, b) in got.iter().zip(&trained[t * 5..(t + 1) * 5]) {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "{algo} {inference:?} step {t}: {a} vs {b}"
                        );
                    }
                    actor.observe(&[e.actions[t]], e.rewards[t] as f64);
                }
            }
        }
    }

    /// RA-DT end to end on a small room: the plain-DT phase, the frozen embedding
    /// model and the index at the switch, a resume after it (the embedder comes back
    /// from the checkpoint), and the in-context evaluation on held-out goals, whose
    /// memory is read (it changes the actions' logits).
    /// Acting through the plain-Rust kernels gives burn's logits and actions, step after
    /// step over episodes three times the context (the DT's cache wraps), for both
    /// backbones, discrete and continuous tasks, with and without actions in context,
    /// token by token and re-running the window; a restarted episode starts afresh.
    #[test]
    fn plain_rust_acting_matches_burn_over_episodes() {
        let dir = temp_dir("kernels");
        let room = dark_room_data(&dir, 5, (3, 1), 2, 0.5, 4);
        let pendulum = pendulum_data(&dir, 2);
        let data =
            load_data(&[pendulum.display().to_string(), room.display().to_string()]).unwrap();
        let device = agentry_models::cpu();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(9);
        let cases = [false, true]
            .into_iter()
            .flat_map(|c| [Inference::Cache, Inference::Window].map(|i| (c, i)));
        for algo in ["lram", "dt"] {
            for (in_context, inference) in cases.clone() {
                let mut config = config(algo, &[&pendulum, &room], 10, &[]).seq().clone();
                config.context = 4;
                config.d_model = 32;
                config.actions_in_context = in_context;
                // Both settings of the return-to-go, paired with the two above.
                config.returns_to_go = !in_context;
                config.inference = inference;
                let policy = SeqPolicy {
                    algo: algo.into(),
                    config: config.clone(),
                    set: data.set.clone(),
                    model: SeqModel::new(algo, &config, &data.set, &device, 7).unwrap(),
                    embedder: None,
                    seed: 7,
                };
                let kernels = Arc::new(SeqKernels::new(&policy.model, &policy.config).unwrap());
                for task in 0..data.set.tasks.len() {
                    let dim = data.set.families[data.set.tasks[task].family].obs_dim();
                    let mut burn = SeqActor::new(&policy, task, 5.0);
                    let mut fast = SeqActor::with_kernels(&policy, kernels.clone(), task, 5.0);
                    assert!(fast.is_plain_rust() && !burn.is_plain_rust());
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    for episode in 0..2 {
                        for t in 0..3 * config.context {
                            let obs: Vec<f32> =
                                (0..dim).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect();
                            let want = burn.logits(&obs);
                            let got = fast.logits(&obs);
                            let diff = want
                                .iter()
                                .zip(&got)
                                .map(|(x, y)| (x - y).abs())
                                .fold(0.0, f32::max);
                            assert!(
                                diff < 1e-4,
                                "{algo} {inference:?} in context {in_context} task {task} \
                                 episode {episode} step {t}: {diff}"
                            );
                            // The same action from the same logits: feed burn's to both.
                            let greedy = choose(&want, None, true, &mut rng);
                            a.clear();
                            match &data.set.families[data.set.tasks[task].family].action {
                                ActionKind::Discrete { .. } => a.push(greedy as f32),
                                ActionKind::Continuous { low, high } => {
                                    a.push(bin_value(greedy, low[0], high[0]))
                                }
                            }
                            let reward = rng.random::<f64>() - 0.5;
                            burn.observe(&a, reward);
                            fast.observe(&a, reward);
                        }
                        burn.restart(task, 5.0);
                        fast.restart(task, 5.0);
                    }
                    // `act` picks the same greedy action on both paths.
                    let obs = vec![0.5; dim];
                    burn.act(&obs, None, true, &mut rng, &mut a);
                    fast.act(&obs, None, true, &mut rng, &mut b);
                    assert_eq!(a, b, "{algo} {inference:?} task {task}");
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }

    /// The embedding API acts through the kernels wherever they cover the model, and its
    /// actions are burn's over episodes longer than the context (LRAM and a DT, token by
    /// token and re-running the window, actions in context); `use_kernels` switches
    /// between the paths.
    #[test]
    fn agent_acts_alike_through_kernels_and_burn() {
        use crate::embed::Agent;
        let dir = temp_dir("agent-kernels");
        let room = dark_room_data(&dir, 5, (3, 1), 2, 0.5, 4);
        let data = load_data(&[room.display().to_string()]).unwrap();
        let device = agentry_models::cpu();
        for (algo, inference) in [
            ("lram", Inference::Cache),
            ("dt", Inference::Cache),
            ("dt", Inference::Window),
        ] {
            let mut config = config(algo, &[&room], 10, &[]).seq().clone();
            config.context = 4;
            config.d_model = 32;
            config.actions_in_context = true;
            config.inference = inference;
            let policy = SeqPolicy {
                algo: algo.into(),
                config: config.clone(),
                set: data.set.clone(),
                model: SeqModel::new(algo, &config, &data.set, &device, 11).unwrap(),
                embedder: None,
                seed: 11,
            };
            let mut fast = Agent::from_seq(policy.clone(), 0, dir.clone()).unwrap();
            let mut slow = Agent::from_seq(policy.clone(), 0, dir.clone()).unwrap();
            assert!(fast.use_kernels(true), "{algo} {inference:?}");
            assert!(!slow.use_kernels(false), "{algo} {inference:?}");
            let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(12);
            for _episode in 0..2 {
                for t in 0..15 {
                    let obs = [rng.random_range(0..5) as f32, rng.random_range(0..5) as f32];
                    let discrete = |a: Action<'_>| match a {
                        Action::Discrete(i) => i,
                        other => panic!("{other:?}"),
                    };
                    let a = discrete(fast.act(&obs[..]).unwrap());
                    let b = discrete(slow.act(&obs[..]).unwrap());
                    assert_eq!(a, b, "{algo} {inference:?} step {t}");
                    let reward = f64::from(u8::from(t % 3 == 0));
                    fast.observe(reward).unwrap();
                    slow.observe(reward).unwrap();
                }
                fast.reset_state();
                slow.reset_state();
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn radt_trains_with_retrieval_resumes_and_evaluates_in_context() {
        let dir = temp_dir("radt");
        let data_dir = dir.join("data");
        fs::create_dir_all(&data_dir).unwrap();
        // "Learning histories": noisier and better walkers on four training goals.
        for (i, goal) in [(1, 4), (4, 1), (3, 3), (0, 2)].into_iter().enumerate() {
            dark_room_data(&data_dir, 5, goal, 6, 0.2 + 0.15 * i as f64, i as u64);
        }
        let sets = [
            "radt.d_model=16",
            "radt.context=8",
            "radt.batch_size=8",
            "radt.warmup_steps=5",
            "radt.retrieval.chunk_len=5",
            "radt.retrieval.pretrain_fraction=0.5",
            "radt.retrieval.in_context_episodes=3",
            "radt.retrieval.retrieve_every=2",
            "radt.log_interval=4",
            "run.checkpoint_interval=15",
        ];
        let run = dir.join("run");
        let cfg = config("radt", &[&data_dir], 20, &sets);
        let first = train(
            Start::New {
                config: Box::new(cfg),
                out: Some(run.clone()),
            },
            &mut StopAt(16),
        )
        .unwrap();
        assert!(first.stopped);
        // The checkpoint at 15 is past the switch at 10: it holds the embedder.
        let policy = load_run(&run).unwrap();
        assert!(policy.embedder.is_some());
        train(
            Start::Resume {
                dir: run.clone(),
                steps: None,
            },
            &mut Silent,
        )
        .unwrap();
        let summary: OfflineSummary =
            serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
        // The held-out goals of a 5×5 room: 5 of its 25 cells.
        assert_eq!(summary.in_context.len(), 5);
        for r in &summary.in_context {
            let (radt, dt) = (&r.curves["radt"], &r.curves["frozen_dt"]);
            assert_eq!((radt.len(), dt.len(), r.curves.len()), (3, 3, 2));
            assert!(radt.iter().chain(dt).all(|x| (0.0..=25.0).contains(x)));
        }
        let csv = fs::read_to_string(run.join("in_context.csv")).unwrap();
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert!(csv.starts_with(
            "episode,radt_return_mean,radt_return_std,frozen_dt_return_mean,frozen_dt_return_std\n"
        ));
        // An embedded agent plays the in-context evaluation's episodes on the first
        // held-out goal: same seeds, same memory, same returns.
        let mut agent =
            crate::embed::Agent::from_seq(load_run(&run).unwrap(), 20, run.clone()).unwrap();
        let run_seed = crate::train::read_config(&run).unwrap().run.seed;
        let seed = derive_seed(derive_seed(run_seed, 0x1C1), 0);
        let goal = &summary.in_context[0].env;
        let greedy = agent_config_greedy(&run);
        let (returns, held) = replay_in_context(&mut agent, goal, seed, 3, greedy);
        assert_eq!(held, [1, 2, 3]);
        assert_eq!(returns, summary.in_context[0].curves["radt"]);
        agent.clear_memory().unwrap();
        assert_eq!(agent.remembered_episodes(), 0);
        // The memory is read: the same window with and without a retrieved
        // sub-trajectory gives different logits.
        let policy = load_run(&run).unwrap();
        let data = load_data(&[data_dir.display().to_string()]).unwrap();
        let family = &data.set.families[0];
        let device = agentry_models::cpu();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(2);
        let (window, _) = sample_sequences(&data, 0, 1, 8, 1000, &mut rng);
        let mut read = SeqBatch::empty(0, 1, 10, family);
        read.fill(
            0,
            &data.episodes[1][0],
            0,
            family,
            data.set.tasks[1].scales(),
            1000,
        );
        let config = &policy.config;
        let plain = policy
            .model
            .logits_with_memory(config, &data.set, &window, None, &device)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let memory = policy.model.memory(config, &data.set, &read, 1, &device);
        let with = policy
            .model
            .logits_with_memory(config, &data.set, &window, Some(memory), &device)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let diff = plain
            .iter()
            .zip(&with)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff > 1e-4, "the memory changed nothing ({diff})");
    }

    /// `episodes` episodes of `goal` played by an embedded `agent` with the seeds the
    /// in-context evaluation uses (`seed`): the returns, and the agent's remembered
    /// episodes after each.
    fn replay_in_context(
        agent: &mut crate::embed::Agent,
        goal: &EnvConfig,
        seed: u64,
        episodes: u64,
        greedy: bool,
    ) -> (Vec<f64>, Vec<usize>) {
        use agentry_envs::EnvExt;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(derive_seed(seed, 0xAC7));
        let mut env = registry::make(&goal.name, &goal.params).unwrap();
        let (mut returns, mut held) = (Vec::new(), Vec::new());
        for episode in 0..episodes {
            let (mut obs, _) = env.reset(Some(derive_seed(seed, episode))).unwrap();
            let mut ret = 0.0;
            loop {
                let a = if greedy {
                    agent.act(&obs).unwrap().into_owned()
                } else {
                    agent.sample(&obs, &mut rng).unwrap().into_owned()
                };
                let step = env.step(a.as_action()).unwrap();
                agent.observe(step.reward).unwrap();
                ret += step.reward;
                if step.terminated || step.truncated {
                    break;
                }
                obs = step.obs;
            }
            agent.reset_state();
            held.push(agent.remembered_episodes());
            returns.push(ret);
        }
        (returns, held)
    }

    fn agent_config_greedy(run: &Path) -> bool {
        crate::train::read_config(run).unwrap().seq().deterministic
    }

    /// Image observations (`u8 [4, 84, 84]`) go through a Nature CNN state encoder:
    /// a dataset of frames trains and acts.
    #[test]
    fn image_tasks_use_the_cnn_encoder() {
        let dir = temp_dir("images");
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(8);
        let frame = 4 * 84 * 84;
        let episodes: Vec<EpisodeRecord> = (0..2)
            .map(|_| {
                let len = 6;
                EpisodeRecord {
                    task: 0,
                    obs: agentry_memory::Observations::U8(
                        (0..len * frame).map(|_| rng.random::<u8>()).collect(),
                    ),
                    actions: (0..len).map(|i| (i % 3) as f32).collect(),
                    rewards: vec![1.0; len],
                    terminated: (0..len).map(|i| i + 1 == len).collect(),
                    truncated: vec![false; len],
                }
            })
            .collect();
        let meta = DatasetMeta {
            format: META_FORMAT.into(),
            env: EnvConfig {
                name: "frames".into(),
                params: Params::new(),
            },
            task: 0,
            source: Source::Policy {
                path: "synthetic".into(),
                algo: "none".into(),
                env_steps: 0,
                epsilon: 1.0,
                deterministic: false,
                seed: 8,
            },
            obs_shape: vec![4, 84, 84],
            action: ActionKind::Discrete {
                n: 3,
                masked: false,
            },
            expert_return: Some(6.0),
            random_return: Some(0.0),
        };
        let space = Space::Box(agentry_envs::BoxSpace::uniform(
            0.0,
            255.0,
            &[4, 84, 84],
            agentry_envs::Dtype::U8,
        ));
        let path = dir.join("frames.agds");
        write_dataset(&path, &space, &meta, &episodes).unwrap();
        let data = load_data(&[path.display().to_string()]).unwrap();
        assert!(data.set.families[0].image());
        let cfg = config("lram", &[&path], 2, &["lram.d_model=16", "lram.context=3"]);
        let mut learner = SeqLearner::new(&cfg, data).unwrap();
        assert!(matches!(learner.model().states[0], Encoder::Cnn(_)));
        for u in 0..2 {
            let [loss, ..] = learner.update(u, 2).unwrap();
            assert!(loss.is_finite());
        }
        let policy = learner.policy();
        let mut actor = SeqActor::new(&policy, 0, 6.0);
        let obs: Vec<f32> = (0..frame).map(|i| (i % 256) as f32).collect();
        let mut out = Vec::new();
        actor.act(&obs, None, true, &mut rng, &mut out);
        assert!(out[0] < 3.0);
    }

    #[test]
    fn the_learning_rate_warms_up_then_decays_to_its_floor() {
        let c = SeqConfig {
            learning_rate: 1e-3,
            warmup_steps: 10,
            final_lr_fraction: 0.1,
            ..SeqConfig::default()
        };
        assert!((learning_rate(&c, 0, 100) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(&c, 9, 100) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(&c, 10, 100) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(&c, 55, 100) - 0.55e-3).abs() < 1e-9);
        assert!((learning_rate(&c, 100, 100) - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn actions_bin_and_unbin() {
        assert_eq!(action_bin(-2.0, -2.0, 2.0), 0);
        assert_eq!(action_bin(2.0, -2.0, 2.0), 255);
        assert_eq!(action_bin(9.0, -2.0, 2.0), 255);
        for bin in [0, 17, 128, 255] {
            assert_eq!(action_bin(bin_value(bin, -2.0, 2.0), -2.0, 2.0), bin);
        }
    }

    #[test]
    fn sequences_hold_the_data_and_mask_the_padding() {
        let dir = temp_dir("batch");
        let path = dark_room_data(&dir, 5, (3, 2), 3, 0.5, 1);
        let data = load_data(&[path.display().to_string()]).unwrap();
        let task = &data.set.tasks[0];
        assert_eq!(task.episodes, 3);
        assert_eq!(task.steps, 75);
        // Rewards are divided by the largest single reward (Dark-Room's 1 when the goal
        // was reached, 1 when it never was), returns-to-go by the largest return.
        let biggest = data.episodes[0]
            .iter()
            .map(|e| e.ret().abs())
            .fold(0.0, f64::max);
        assert_eq!(task.scale, biggest.max(1.0) as f32);
        assert_eq!(task.reward_scale, 1.0);
        // A checkpoint from before the reward scale (0 there) divides rewards as it did.
        let old = TaskInfo {
            reward_scale: 0.0,
            ..task.clone()
        };
        assert_eq!(old.scales().reward, task.scale);
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
        let b = sample_batch(&data, 0, 8, 30, 1000, &mut rng);
        for s in 0..8 {
            let valid: Vec<f32> = b.mask[s * 30..(s + 1) * 30].to_vec();
            // Valid steps first, then padding; at most the 25 steps of an episode.
            let n = valid.iter().filter(|&&m| m == 1.0).count();
            assert!((1..=25).contains(&n));
            assert!(valid[..n].iter().all(|&m| m == 1.0));
            // Returns-to-go fall by each step's reward (each divided by its own scale).
            let scale = task.scales();
            for j in 0..n - 1 {
                let r = s * 30 + j;
                let diff = (b.rtg[r] - b.rtg[r + 1]) * scale.rtg;
                assert!((diff - b.rewards[r] * scale.reward).abs() < 1e-4);
            }
            let t0 = b.timesteps[s * 30] as usize;
            assert_eq!(t0 + n, 25, "a sequence runs to its episode's end or fills");
        }
    }

    /// A vector family's observations are normalised by the data's per-value mean and
    /// standard deviation before the state encoder; the set checks the statistics, and
    /// a family read from a checkpoint without them goes in unnormalised.
    #[test]
    fn observations_are_normalised_by_the_data() {
        let dir = temp_dir("obsnorm");
        let path = dark_room_data(&dir, 5, (3, 2), 4, 0.5, 2);
        let mut data = load_data(&[path.display().to_string()]).unwrap();
        let rows: Vec<&[f32]> = data.episodes[0]
            .iter()
            .flat_map(|e| e.obs_f32().chunks_exact(2).collect::<Vec<_>>())
            .collect();
        let family = &data.set.families[0];
        assert_eq!((family.obs_mean.len(), family.obs_std.len()), (2, 2));
        for d in 0..2 {
            let n = rows.len() as f64;
            let mean = rows.iter().map(|r| r[d] as f64).sum::<f64>() / n;
            let var = rows
                .iter()
                .map(|r| (r[d] as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            assert!(
                (family.obs_mean[d] as f64 - mean).abs() < 1e-4,
                "{family:?}"
            );
            assert!(
                (family.obs_std[d] as f64 - var.sqrt()).abs() < 1e-4,
                "{family:?}"
            );
        }
        let device = agentry_models::cpu();
        let config = config("dt", &[&path], 10, &[]).seq().clone();
        let model = SeqModel::new("dt", &config, &data.set, &device, 1).unwrap();
        let norm = model.obs_norm[0]
            .clone()
            .expect("a vector family is normalised");
        assert_eq!(norm.shift, family.obs_mean);
        assert!((norm.scale[0] * family.obs_std[0] - 1.0).abs() < 1e-6);
        // The encoder sees a normalised row: the mean goes in as zeros.
        let mean_row =
            Tensor::<2>::from_data(TensorData::new(family.obs_mean.clone(), [1, 2]), &device);
        let zeros = Tensor::<2>::zeros([1, 2], &device);
        let Encoder::Mlp(mlp) = &model.states[0] else {
            panic!("Dark-Room has a vector encoder")
        };
        let direct: Vec<f32> = mlp
            .forward(zeros)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let through: Vec<f32> = model
            .encode_states(0, mean_row, &[2])
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        for (a, b) in direct.iter().zip(&through) {
            assert!((a - b).abs() < 1e-5, "{direct:?} vs {through:?}");
        }
        // A value that never changes is shifted but not scaled.
        for e in &mut data.episodes[0] {
            if let Observations::F32(v) = &mut e.obs {
                v.chunks_exact_mut(2).for_each(|r| r[1] = 4.0);
            }
        }
        data.count();
        assert_eq!(data.set.families[0].obs_mean[1], 4.0);
        assert_eq!(data.set.families[0].obs_std[1], 1.0);
        // The set's check refuses statistics that do not fit the family.
        let mut bad = data.set.clone();
        bad.families[0].obs_std = vec![1.0];
        assert!(bad.check().unwrap_err().contains("standard deviation"));
        bad.families[0].obs_std = vec![1.0, 0.0];
        assert!(bad.check().is_err());
        bad.families[0].obs_std.clear();
        bad.families[0].obs_mean.clear();
        assert!(bad.check().is_ok());
        // A family serialised before the statistics existed reads back without them.
        let mut json = serde_json::to_value(&data.set.families[0]).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("obs_mean");
        object.remove("obs_std");
        let old: Family = serde_json::from_value(json).unwrap();
        assert!(old.obs_mean.is_empty() && ObsNorm::of(&old).is_none());
    }

    /// Algorithm Distillation's sequences run on across the episodes of a task's
    /// learning history (each step keeping its own episode's time step and
    /// return-to-go), where a plain DT's are padded at the episode's end.
    #[test]
    fn ad_sequences_run_across_episode_boundaries() {
        let dir = temp_dir("across");
        let path = dark_room_data(&dir, 5, (3, 2), 4, 0.5, 1);
        let data = load_data(&[path.display().to_string()]).unwrap();
        let eps = &data.episodes[0];
        assert!(eps.iter().all(|e| e.len() == 25));
        let family = &data.set.families[0];
        let scale = data.set.tasks[0].scales();
        // From step 20 of episode 1: its last 5 steps, all of episode 2, 10 of episode 3.
        let mut b = SeqBatch::empty(0, 1, 40, family);
        b.fill_across(0, eps, 1, 20, family, scale, 1000);
        assert!(b.mask.iter().all(|&m| m == 1.0));
        let mut row = Vec::new();
        for (j, (e, u)) in (20..25)
            .map(|u| (1, u))
            .chain((0..25).map(|u| (2, u)))
            .chain((0..10).map(|u| (3, u)))
            .enumerate()
        {
            assert_eq!(b.timesteps[j], u as i64, "row {j}");
            row.clear();
            eps[e].obs.row_into(u, 2, &mut row);
            assert_eq!(&b.obs[j * 2..j * 2 + 2], &row[..], "row {j}");
            assert_eq!(b.rtg[j], eps[e].returns_to_go()[u] / scale.rtg);
            assert_eq!(b.rewards[j], eps[e].rewards[u] / scale.reward);
            assert_eq!(b.targets[j], eps[e].actions[u] as i64);
        }
        // Past the last episode: padding.
        let mut end = SeqBatch::empty(0, 1, 40, family);
        end.fill_across(0, eps, 3, 10, family, scale, 1000);
        assert_eq!(end.mask.iter().filter(|&&m| m == 1.0).count(), 15);
        assert!(end.mask[..15].iter().all(|&m| m == 1.0));
        // Sampled batches: every sequence fills its window unless it reaches the end of
        // the data; without `across` none runs past its episode.
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        let (b, picked) = sample_family(&data, 0, 16, 40, 1000, true, &mut rng);
        let mut crossed = 0;
        for (s, &(_, i, start)) in picked.iter().enumerate() {
            let left = (eps.len() - i) * 25 - start;
            let valid = b.mask[s * 40..(s + 1) * 40]
                .iter()
                .filter(|&&m| m == 1.0)
                .count();
            assert_eq!(valid, left.min(40));
            crossed += usize::from(b.timesteps[s * 40..s * 40 + valid].contains(&0) && start > 0);
        }
        assert!(
            crossed > 0,
            "no sampled sequence crossed an episode boundary"
        );
        let (b, picked) = sample_family(&data, 0, 16, 40, 1000, false, &mut rng);
        for (s, &(_, _, start)) in picked.iter().enumerate() {
            let valid = b.mask[s * 40..(s + 1) * 40]
                .iter()
                .filter(|&&m| m == 1.0)
                .count();
            assert_eq!(valid, 25 - start);
        }
    }

    /// Without return conditioning (AD) the return-to-go tokens carry nothing: the
    /// logits do not depend on them; with it (DT) they do.
    #[test]
    fn returns_to_go_can_be_left_out() {
        let dir = temp_dir("no-rtg");
        let path = dark_room_data(&dir, 5, (3, 2), 2, 0.5, 1);
        let data = load_data(&[path.display().to_string()]).unwrap();
        let device = agentry_models::cpu();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
        let (b, _) = sample_sequences(&data, 0, 2, 10, 1000, &mut rng);
        let mut shifted = b.clone();
        for v in &mut shifted.rtg {
            *v += 0.5;
        }
        for returns_to_go in [true, false] {
            let cfg = config(
                "dt",
                &[&path],
                1,
                &[&format!("dt.returns_to_go={returns_to_go}")],
            );
            let model = SeqModel::new("dt", cfg.seq(), &data.set, &device, 1).unwrap();
            let logits = |batch: &SeqBatch| {
                model
                    .logits(cfg.seq(), &data.set, batch, &device)
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap()
            };
            let (a, c) = (logits(&b), logits(&shifted));
            let diff = a
                .iter()
                .zip(&c)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert_eq!(diff > 1e-5, returns_to_go, "diff {diff}");
        }
    }

    /// `episode_stride` keeps the first episode of each task's history and every
    /// stride-th after it, recounting the task; a training run reads the subsampled
    /// data; a stride of 0 is a config error.
    #[test]
    fn episode_stride_subsamples_each_history() {
        let dir = temp_dir("stride");
        let path = dark_room_data(&dir, 5, (3, 1), 10, 0.5, 4);
        let full = load_data(&[path.display().to_string()]).unwrap();
        let mut data = full.clone();
        data.keep_every(3);
        let kept: Vec<_> = [0, 3, 6, 9].map(|i| full.episodes[0][i].clone()).into();
        assert_eq!(data.episodes[0], kept);
        let task = &data.set.tasks[0];
        assert_eq!(task.episodes, 4);
        assert_eq!(task.steps, kept.iter().map(|e| e.len() as u64).sum::<u64>());
        let best = kept
            .iter()
            .map(|e| e.ret())
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(task.best_return, best);
        assert_eq!(task.expert_return, full.set.tasks[0].expert_return);
        let mut same = full.clone();
        same.keep_every(1);
        assert_eq!(same.episodes, full.episodes);
        // A run trains on what the stride keeps, and 0 is refused by name.
        let run = dir.join("run");
        let cfg = config("dt", &[&path], 2, &["dt.d_model=16", "dt.episode_stride=3"]);
        train_new(cfg, &run);
        assert_eq!(load_run(&run).unwrap().set.tasks[0].episodes, 4);
        let bad = resolve(&ConfigRequest {
            algo: Some("dt".into()),
            datasets: vec![path.display().to_string()],
            sets: vec!["dt.episode_stride=0".into()],
            ..ConfigRequest::default()
        })
        .unwrap_err();
        assert!(bad.to_string().contains("dt.episode_stride"), "{bad}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// The baselines train as DTs and are evaluated through the same in-context loop
    /// as RA-DT: the AD-style DT's window holds its earlier episodes (its first action
    /// of a new episode depends on them), the plain DT's does not; each run's curve
    /// is labelled by what it is.
    #[test]
    fn ad_and_dt_baselines_are_evaluated_in_context() {
        let dir = temp_dir("baselines");
        let data_dir = dir.join("data");
        fs::create_dir_all(&data_dir).unwrap();
        for (i, goal) in [(1, 4), (4, 1), (3, 3), (0, 2)].into_iter().enumerate() {
            dark_room_data(&data_dir, 5, goal, 4, 0.2 + 0.15 * i as f64, i as u64);
        }
        let data = load_data(&[data_dir.display().to_string()]).unwrap();
        for (across, label) in [(true, "ad"), (false, "dt")] {
            let sets = [
                "dt.d_model=16".to_string(),
                "dt.context=30".into(),
                "dt.batch_size=4".into(),
                "dt.task_embedding=false".into(),
                "dt.eval_episodes=0".into(),
                "dt.deterministic=false".into(),
                format!("dt.across_episodes={across}"),
                format!("dt.returns_to_go={}", !across),
            ];
            let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
            let run = dir.join(label);
            let cfg = config("dt", &[&data_dir], 3, &sets);
            train_new(cfg, &run);
            let mut policy = load_run(&run).unwrap();
            policy.config.retrieval.in_context_episodes = 2;
            assert_eq!(crate::radt::label(&policy).unwrap(), label);
            let results = in_context_eval(&policy, 7, Some(2)).unwrap();
            assert_eq!(results.len(), 2);
            for r in &results {
                assert_eq!(r.curves.keys().collect::<Vec<_>>(), [label]);
                assert_eq!(r.curves[label].len(), 2);
            }
            // Acting through the KV cache is the window until the window fills up
            // (the whole run for the DT, whose context holds an episode; AD's first
            // 30 steps, the whole first episode, before it rebuilds).
            let env = &results[0].env;
            let mut cached = policy.clone();
            cached.config.inference = Inference::Cache;
            let mut windowed = policy.clone();
            windowed.config.inference = Inference::Window;
            let a = crate::radt::play_in_context(&cached, false, env, 3, 5).unwrap();
            let b = crate::radt::play_in_context(&windowed, false, env, 3, 5).unwrap();
            if across {
                assert_eq!(a[0], b[0]);
            } else {
                assert_eq!(a, b);
            }
            // An act left without its reward, then a new episode: the next act rebuilds
            // the cache from what was played (it once indexed before the cache's start).
            let mut actor = crate::radt::InContextActor::new(&cached, false).unwrap();
            let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
            for _ in 0..2 {
                actor.act(&[0.0, 0.0], None, false, &mut rng).unwrap();
                actor.end_episode().unwrap();
            }
            actor.act(&[0.0, 0.0], None, false, &mut rng).unwrap();
            // An embedded AD keeps its earlier episodes in context as its evaluation
            // does (same seeds, same returns); a plain DT's context is one episode.
            let mut agent = crate::embed::Agent::from_seq(cached.clone(), 0, run.clone()).unwrap();
            let (returns, held) = replay_in_context(&mut agent, env, 5, 3, false);
            assert_eq!(held, if across { vec![1, 2, 3] } else { vec![0; 3] });
            if across {
                assert_eq!(returns, a);
            }
            crate::radt::write_curve(&run, &results).unwrap();
            let csv = fs::read_to_string(run.join("in_context.csv")).unwrap();
            assert!(csv.starts_with(&format!("episode,{label}_return_mean,{label}_return_std\n")));
            // The window at the first step of a new episode, after one played episode.
            let family = &data.set.families[0];
            let played = [data.episodes[0][0].clone()];
            let obs = [0.0f32, 0.0];
            let config = &policy.config;
            let scale = Scales {
                rtg: 25.0,
                reward: 1.0,
            };
            let (with, last) =
                crate::radt::window(config, family, 0, &played, &obs, &[], &[], 20.0, scale);
            let (without, first) =
                crate::radt::window(config, family, 0, &[], &obs, &[], &[], 20.0, scale);
            assert_eq!(first, 0);
            let logits = |b: &SeqBatch, row: usize| {
                let all = policy
                    .model
                    .logits(config, &data.set, b, &agentry_models::cpu())
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap();
                all[row * 5..(row + 1) * 5].to_vec()
            };
            let diff = logits(&with, last)
                .iter()
                .zip(logits(&without, first))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            if across {
                // The played episode's 25 steps (room for 29), then the current state.
                assert_eq!(last, 25);
                assert_eq!((with.timesteps[0], with.timesteps[24]), (0, 24));
                assert_eq!(with.timesteps[25], 0);
                assert_eq!(with.mask.iter().filter(|&&m| m == 1.0).count(), 26);
                assert!(diff > 1e-5, "the earlier episode changed nothing");
            } else {
                assert_eq!(last, 0);
                assert_eq!(diff, 0.0);
            }
        }
        // A DT with task embeddings cannot play goals it was not trained on.
        let cfg = config("dt", &[&data_dir], 1, &["dt.eval_episodes=0"]);
        let run = dir.join("task-embedding");
        train_new(cfg, &run);
        let err = in_context_eval(&load_run(&run).unwrap(), 1, Some(1)).unwrap_err();
        assert!(err.to_string().contains("task_embedding = false"), "{err}");
    }

    /// The Decision Transformer learns the same task (fewer updates: it reads the
    /// actions too).
    #[test]
    fn dt_learns_a_dark_room_task_and_resumes() {
        let dir = temp_dir("dt-learns");
        let path = dark_room_data(&dir, 6, (2, 4), 60, 0.3, 9);
        let sets = [
            "dt.d_model=32",
            "dt.context=10",
            "dt.batch_size=16",
            "dt.warmup_steps=30",
            "dt.eval_interval=100",
            "dt.eval_episodes=2",
            "dt.log_interval=25",
            "run.checkpoint_interval=100",
        ];
        let run = dir.join("run");
        // Stopped after 150 updates, then resumed to 300: the checkpoint at 100 holds.
        let first = train(
            Start::New {
                config: Box::new(config("dt", &[&path], 300, &sets)),
                out: Some(run.clone()),
            },
            &mut StopAt(150),
        )
        .unwrap();
        assert!(first.stopped);
        let resumed = train(
            Start::Resume {
                dir: run.clone(),
                steps: None,
            },
            &mut Silent,
        )
        .unwrap();
        assert_eq!(resumed.state.env_steps, 300);
        let text = fs::read_to_string(run.join("metrics.csv")).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=12).map(|i| i * 25).collect();
        assert_eq!(steps, expected, "no row lost or repeated across the resume");
        let header = text.lines().next().unwrap();
        assert!(header.contains("losses/action_loss") && header.contains("eval/task0/normalised"));
        let columns = header.split(',').count();
        for line in text.lines() {
            assert_eq!(line.split(',').count(), columns, "{line}");
        }
        // Rows at an evaluation carry its figures.
        let names: Vec<&str> = header.split(',').collect();
        let at = |name: &str| names.iter().position(|&n| n == name).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        let eval_row = &rows[3]; // update 100
        assert_eq!(eval_row[0], "100");
        assert!(!eval_row[at("eval/task0/return")].is_empty());
        assert!(rows[0][at("eval/task0/return")].is_empty());
        assert!(!rows[0][at("losses/action_loss")].is_empty());
        let policy = load_run(&run).unwrap();
        assert!(policy.config.actions_in_context);
        let scores = evaluate_policy(&policy, 5, 3, 1000).unwrap();
        let n = scores[0].normalised.unwrap();
        assert!(n >= 0.9, "normalised score {n} ({scores:?})");
        let summary: OfflineSummary =
            serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary.updates, 300);
        assert_eq!(summary.eval.len(), 1);
    }

    /// The learning check the issue asks for: LRAM trained on one Dark-Room task's
    /// noisy-expert data reaches ≥ 0.9 normalised score with a greedy rollout.
    #[test]
    fn lram_learns_a_dark_room_task_from_noisy_expert_data() {
        let dir = temp_dir("lram-learns");
        let path = dark_room_data(&dir, 6, (4, 3), 60, 0.3, 7);
        let cfg = config(
            "lram",
            &[&path],
            300,
            &[
                "lram.d_model=32",
                "lram.context=10",
                "lram.batch_size=16",
                "lram.warmup_steps=30",
                "lram.eval_interval=0",
                "lram.eval_episodes=5",
                "run.checkpoint_interval=0",
            ],
        );
        let run = dir.join("run");
        train_new(cfg, &run);
        let policy = load_run(&run).unwrap();
        let scores = evaluate_policy(&policy, 5, 3, 1000).unwrap();
        let n = scores[0].normalised.unwrap();
        assert!(n >= 0.9, "normalised score {n} ({scores:?})");
    }
}
