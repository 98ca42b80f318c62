//! PPO (Schulman et al. 2017) as CleanRL's `ppo.py` defines it, with Proximal Feature
//! Optimization (Moalla et al. 2024) and truncation handled correctly.
//!
//! The update reads top to bottom: rollout → advantages (GAE, truncated episodes
//! bootstrapped from the value of their final observation) → minibatch epochs of the
//! clipped surrogate + value loss − entropy bonus + β·PFO → optional KL early stop. The
//! actor and the critic are separate MLPs (no shared trunk), with orthogonal init
//! (√2 hidden, 0.01 policy output, 1 value output) and one Adam over both, under one
//! global gradient-norm clip.
//!
//! PFO's loss is `mean over the batch of ‖z_θ(s) − z_old(s)‖² / d` on the actor's last
//! hidden pre-activations `z`, where `z_old` is what the acting policy computed at
//! collection time (like the old log-probabilities).

use agentry_envs::Space;
use agentry_envs::vector::{VecAction, VecEnv};
use agentry_envs::wrappers::RunningMeanStd;
use agentry_models::diagnostics::{self, FeatureStats};
use agentry_models::{
    GaussianHead, Init, MlpConfig, NatureCnnConfig, Net, NetScratch, NetWeights,
    categorical_entropy, categorical_log_prob, masked_log_softmax,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bool, Bytes, Device, Int, Tensor, TensorData};
use rand::{Rng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::config::{Network, PlasticityConfig, PpoConfig};
use crate::error::AgentError;
use crate::grads::clip_grad_norm;
use crate::returns::{Rollout, gae};
use crate::runner::{self, Chunk, Episode, Progress, catch, obs_row_of};
use agentry_models::plasticity::{Due, Layer, Layered, Plasticity, PlasticityState, prefixed};

/// The action space a policy acts in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ActionKind {
    /// `Discrete(n)`, optionally with a legal-action mask of `n` entries.
    Discrete {
        /// Number of actions.
        n: usize,
        /// The environment gives legal-action masks.
        masked: bool,
    },
    /// A `Box` of `low.len()` dimensions; sampled actions are clipped into it before
    /// they reach the environment (the unclipped sample is what is learned from).
    Continuous {
        /// Lower bounds.
        low: Vec<f32>,
        /// Upper bounds.
        high: Vec<f32>,
    },
}

impl ActionKind {
    /// The action kind of an environment's spaces.
    pub fn of(space: &Space, mask_len: usize) -> Result<Self, AgentError> {
        match space {
            Space::Discrete(n) => Ok(ActionKind::Discrete {
                n: *n,
                masked: mask_len > 0,
            }),
            Space::Box(b) => Ok(ActionKind::Continuous {
                low: b.low.clone(),
                high: b.high.clone(),
            }),
            other => Err(AgentError::Invalid(format!(
                "PPO acts in Discrete or Box action spaces, not {other:?}"
            ))),
        }
    }

    /// Width of the actor's output (logits, or Gaussian means).
    pub fn outputs(&self) -> usize {
        match self {
            ActionKind::Discrete { n, .. } => *n,
            ActionKind::Continuous { low, .. } => low.len(),
        }
    }
}

/// A frozen observation normaliser: `clamp((x − mean) · inv_std, ±clip)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObsNorm {
    /// Mean per observation entry.
    pub mean: Vec<f32>,
    /// 1 / sqrt(var + 1e-8) per entry.
    pub inv_std: Vec<f32>,
    /// Bound of the normalised values.
    pub clip: f32,
}

impl ObsNorm {
    fn apply(&self, obs: &[f32], out: &mut [f32]) {
        for (((o, &x), &m), &s) in out.iter_mut().zip(obs).zip(&self.mean).zip(&self.inv_std) {
            *o = ((x - m) * s).clamp(-self.clip, self.clip);
        }
    }
}

/// The normaliser acting policies use, frozen from the learner's running statistics.
pub fn frozen_norm(stats: &RunningMeanStd) -> ObsNorm {
    ObsNorm {
        mean: stats.mean.iter().map(|&m| m as f32).collect(),
        inv_std: stats
            .var
            .iter()
            .map(|&v| (1.0 / (v + 1e-8).sqrt()) as f32)
            .collect(),
        clip: 10.0,
    }
}

/// How to pick an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActMode {
    /// Sample from the policy.
    Sample,
    /// The most probable legal action (the Gaussian's mean).
    Deterministic,
}

/// The acting copy of a PPO policy: plain weights, no autodiff, no allocation per call.
/// This is what a checkpoint's policy record holds and what a game embeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PpoPolicy {
    /// Observation width.
    pub obs_dim: usize,
    /// The action space.
    pub action: ActionKind,
    /// The actor network (logits or means).
    pub actor: NetWeights,
    /// The critic network (one value).
    pub critic: NetWeights,
    /// log σ of the Gaussian (continuous actions), else empty.
    pub log_std: Vec<f32>,
    /// The observation normaliser the networks expect (with `ppo.normalize_obs`).
    #[serde(default)]
    pub obs_norm: Option<ObsNorm>,
}

/// Per-caller buffers for [`PpoPolicy::act`] (allocated once, reused every call).
#[derive(Clone, Debug)]
pub struct Workspace {
    actor: NetScratch,
    critic: NetScratch,
    out: Vec<f32>,
    features: Vec<f32>,
    /// The last continuous action sampled (unclipped).
    pub action: Vec<f32>,
    value: [f32; 1],
    /// The normalised observation.
    input: Vec<f32>,
}

/// What [`PpoPolicy::act`] chose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Acted {
    /// The discrete action (0 for continuous policies; their action is in
    /// [`Workspace::action`]).
    pub index: usize,
    /// log π(action | obs).
    pub log_prob: f32,
}

const HALF_LN_2PI: f32 = 0.918_938_5;

impl PpoPolicy {
    /// Check that the networks fit the observation width and the action space (a
    /// policy read from a file may not).
    pub fn check(&self) -> Result<(), String> {
        self.actor.check().map_err(|m| format!("actor: {m}"))?;
        self.critic.check().map_err(|m| format!("critic: {m}"))?;
        if self.actor.input_dim() != self.obs_dim || self.critic.input_dim() != self.obs_dim {
            return Err(format!(
                "the networks take {} and {} inputs, the observations have {}",
                self.actor.input_dim(),
                self.critic.input_dim(),
                self.obs_dim
            ));
        }
        if self.actor.output_dim() != self.action.outputs() || self.critic.output_dim() != 1 {
            return Err("the networks' outputs do not fit the action space".into());
        }
        let log_std = match &self.action {
            ActionKind::Continuous { low, high } => {
                if high.len() != low.len() {
                    return Err("the action bounds differ in length".into());
                }
                low.len()
            }
            ActionKind::Discrete { n, .. } => {
                if *n == 0 {
                    return Err("a discrete action space of 0 actions".into());
                }
                0
            }
        };
        if self.log_std.len() != log_std || self.log_std.iter().any(|v| !v.is_finite()) {
            return Err("log_std does not fit the action space".into());
        }
        if let Some(n) = &self.obs_norm
            && (n.mean.len() != self.obs_dim
                || n.inv_std.len() != self.obs_dim
                || n.mean.iter().chain(&n.inv_std).any(|v| !v.is_finite())
                || n.clip.is_nan()
                || n.clip <= 0.0)
        {
            return Err("the observation normaliser does not fit the observations".into());
        }
        Ok(())
    }

    /// Buffers for acting with this policy.
    pub fn workspace(&self) -> Workspace {
        Workspace {
            actor: self.actor.scratch(),
            critic: self.critic.scratch(),
            out: vec![0.0; self.actor.output_dim()],
            features: vec![0.0; self.actor.feature_dim()],
            action: vec![0.0; self.action.outputs()],
            value: [0.0],
            input: vec![
                0.0;
                if self.obs_norm.is_some() {
                    self.obs_dim
                } else {
                    0
                }
            ],
        }
    }

    /// Choose an action for `obs` (`mask[a]` = action `a` is legal; `None` = all legal).
    /// Continuous actions are left in `ws.action`, unclipped.
    pub fn act(
        &self,
        obs: &[f32],
        mask: Option<&[bool]>,
        mode: ActMode,
        rng: &mut impl Rng,
        ws: &mut Workspace,
    ) -> Acted {
        let obs = match &self.obs_norm {
            Some(norm) => {
                norm.apply(obs, &mut ws.input);
                &ws.input[..]
            }
            None => obs,
        };
        self.actor
            .forward_with_features(obs, &mut ws.actor, &mut ws.out, &mut ws.features);
        match &self.action {
            ActionKind::Discrete { .. } => sample_categorical(&ws.out, mask, mode, rng),
            ActionKind::Continuous { .. } => {
                let mut log_prob = 0.0;
                for ((a, &mean), &log_std) in ws.action.iter_mut().zip(&ws.out).zip(&self.log_std) {
                    let z: f32 = match mode {
                        ActMode::Sample => rng.sample(StandardNormal),
                        ActMode::Deterministic => 0.0,
                    };
                    *a = mean + log_std.exp() * z;
                    log_prob += -0.5 * z * z - log_std - HALF_LN_2PI;
                }
                Acted { index: 0, log_prob }
            }
        }
    }

    /// The critic's value of `obs`.
    pub fn value(&self, obs: &[f32], ws: &mut Workspace) -> f32 {
        let obs = match &self.obs_norm {
            Some(norm) => {
                norm.apply(obs, &mut ws.input);
                &ws.input[..]
            }
            None => obs,
        };
        self.critic.forward(obs, &mut ws.critic, &mut ws.value);
        ws.value[0]
    }

    /// `obs` as the networks see it (normalised when the policy normalises), into `out`.
    pub fn network_input(&self, obs: &[f32], out: &mut [f32]) {
        match &self.obs_norm {
            Some(norm) => norm.apply(obs, out),
            None => out.copy_from_slice(obs),
        }
    }

    /// The actor's last hidden pre-activations from the last [`act`](Self::act).
    pub fn last_features<'w>(&self, ws: &'w Workspace) -> &'w [f32] {
        &ws.features
    }
}

/// Sample (or take the argmax of) a categorical distribution given by `logits`, over
/// the legal actions only; returns the action and its log-probability.
fn sample_categorical(
    logits: &[f32],
    mask: Option<&[bool]>,
    mode: ActMode,
    rng: &mut impl Rng,
) -> Acted {
    let legal = |a: usize| mask.is_none_or(|m| m[a]);
    let mut max = f32::NEG_INFINITY;
    let mut best = 0;
    for (a, &l) in logits.iter().enumerate() {
        if legal(a) && l > max {
            max = l;
            best = a;
        }
    }
    let mut total = 0.0f32;
    for (a, &l) in logits.iter().enumerate() {
        if legal(a) {
            total += (l - max).exp();
        }
    }
    let log_z = max + total.ln();
    let index = match mode {
        ActMode::Deterministic => best,
        ActMode::Sample => {
            let u = rng.random::<f32>() * total;
            let mut acc = 0.0;
            let mut chosen = best;
            for (a, &l) in logits.iter().enumerate() {
                if legal(a) {
                    acc += (l - max).exp();
                    chosen = a;
                    if u < acc {
                        break;
                    }
                }
            }
            chosen
        }
    };
    Acted {
        index,
        log_prob: logits[index] - log_z,
    }
}

/// One actor's rollout: `steps × num_envs` transitions, step-major.
#[derive(Clone, Debug, Default)]
pub struct PpoChunk {
    /// Environments M.
    pub num_envs: usize,
    /// Steps per environment T.
    pub steps: usize,
    /// Observations the actions were taken in, `T·M × obs_dim` (empty when they are
    /// kept as bytes in `obs_u8`).
    pub obs: Vec<f32>,
    /// Byte observations (frames) the actions were taken in, `T·M × obs_dim`: an
    /// environment's `u8` observations stay bytes until a minibatch enters the network.
    pub obs_u8: Vec<u8>,
    /// Discrete actions.
    pub actions: Vec<u32>,
    /// Continuous actions (unclipped), `T·M × dim`.
    pub actions_continuous: Vec<f32>,
    /// Legal-action masks, `T·M × n` (empty without masks).
    pub masks: Vec<bool>,
    /// log π_old(a|s).
    pub log_probs: Vec<f32>,
    /// V_old(s).
    pub values: Vec<f32>,
    /// V_old of the next state (of the final observation where truncated).
    pub next_values: Vec<f32>,
    /// Rewards.
    pub rewards: Vec<f32>,
    /// Episode ended in a terminal state.
    pub terminated: Vec<bool>,
    /// Episode ended by truncation.
    pub truncated: Vec<bool>,
    /// The actor's last hidden pre-activations at collection (PFO's z_old), `T·M × d`;
    /// empty when PFO is off.
    pub features: Vec<f32>,
    /// Episodes that ended in this chunk.
    pub episodes: Vec<Episode>,
    /// Per-entry sums and sums of squares of the raw observations (for the running
    /// normaliser; empty when observations are not normalised).
    pub obs_sum: Vec<f64>,
    /// See `obs_sum`.
    pub obs_sumsq: Vec<f64>,
}

impl Chunk for PpoChunk {
    fn env_steps(&self) -> u64 {
        (self.steps * self.num_envs) as u64
    }
    fn episodes(&self) -> &[Episode] {
        &self.episodes
    }
}

/// The acting side of PPO.
pub struct PpoActor {
    rng: rand_pcg::Pcg64Mcg,
    record_features: bool,
    ws: Option<Workspace>,
    obs_row: Vec<f32>,
    discrete: Vec<usize>,
    continuous: Vec<f32>,
    done: Vec<bool>,
}

impl PpoActor {
    fn new(seed: u64, record_features: bool) -> Self {
        PpoActor {
            rng: rand_pcg::Pcg64Mcg::seed_from_u64(seed),
            record_features,
            ws: None,
            obs_row: Vec::new(),
            discrete: Vec::new(),
            continuous: Vec::new(),
            done: Vec::new(),
        }
    }
}

/// Copy row `i` of the current observations as f32 into `row`.
fn obs_row(envs: &dyn VecEnv, i: usize, row: &mut Vec<f32>) {
    let b = envs.buffers();
    obs_row_of(b.obs(), b.obs_dim(), i, row);
}

impl runner::Actor for PpoActor {
    type Policy = PpoPolicy;
    type Chunk = PpoChunk;

    fn collect(
        &mut self,
        policy: &PpoPolicy,
        envs: &mut dyn VecEnv,
        steps: usize,
    ) -> Result<PpoChunk, AgentError> {
        let m = envs.num_envs();
        let dim = policy.obs_dim;
        let n = steps * m;
        let ws = self.ws.get_or_insert_with(|| policy.workspace());
        let (mask_len, masked) = match &policy.action {
            ActionKind::Discrete { n, masked } => (*n, *masked),
            ActionKind::Continuous { .. } => (0, false),
        };
        let act_dim = policy.action.outputs();
        let continuous = matches!(policy.action, ActionKind::Continuous { .. });
        let feat_dim = policy.actor.feature_dim();
        // Frames stay bytes (a normalised observation is a float).
        let bytes = policy.obs_norm.is_none() && envs.buffers().obs().as_u8().is_some();
        let mut c = PpoChunk {
            num_envs: m,
            steps,
            obs: Vec::with_capacity(if bytes { 0 } else { n * dim }),
            obs_u8: Vec::with_capacity(if bytes { n * dim } else { 0 }),
            actions: Vec::with_capacity(if continuous { 0 } else { n }),
            actions_continuous: Vec::with_capacity(if continuous { n * act_dim } else { 0 }),
            masks: Vec::with_capacity(if masked { n * mask_len } else { 0 }),
            log_probs: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
            next_values: vec![0.0; n],
            rewards: Vec::with_capacity(n),
            terminated: Vec::with_capacity(n),
            truncated: Vec::with_capacity(n),
            features: Vec::with_capacity(if self.record_features {
                n * feat_dim
            } else {
                0
            }),
            episodes: Vec::new(),
            obs_sum: vec![0.0; if policy.obs_norm.is_some() { dim } else { 0 }],
            obs_sumsq: vec![0.0; if policy.obs_norm.is_some() { dim } else { 0 }],
        };
        self.discrete.resize(m, 0);
        self.continuous.resize(m * act_dim, 0.0);
        self.done.clear();
        self.done.resize(m, false);
        for t in 0..steps {
            for i in 0..m {
                obs_row(envs, i, &mut self.obs_row);
                let mask = if masked {
                    let all = envs.buffers().action_masks();
                    let row = &all[i * mask_len..(i + 1) * mask_len];
                    c.masks.extend_from_slice(row);
                    Some(row)
                } else {
                    None
                };
                let acted = policy.act(&self.obs_row, mask, ActMode::Sample, &mut self.rng, ws);
                let value = policy.value(&self.obs_row, ws);
                if t > 0 && !self.done[i] {
                    c.next_values[(t - 1) * m + i] = value;
                }
                if policy.obs_norm.is_some() {
                    for ((s, q), &x) in c
                        .obs_sum
                        .iter_mut()
                        .zip(&mut c.obs_sumsq)
                        .zip(&self.obs_row)
                    {
                        *s += x as f64;
                        *q += (x as f64) * (x as f64);
                    }
                    // The learner trains on what the networks saw.
                    let start = c.obs.len();
                    c.obs.resize(start + dim, 0.0);
                    policy.network_input(&self.obs_row, &mut c.obs[start..]);
                } else if bytes {
                    let frames = envs.buffers().obs().as_u8().expect("byte observations");
                    c.obs_u8.extend_from_slice(&frames[i * dim..(i + 1) * dim]);
                } else {
                    c.obs.extend_from_slice(&self.obs_row);
                }
                c.log_probs.push(acted.log_prob);
                c.values.push(value);
                if self.record_features {
                    c.features.extend_from_slice(&ws.features);
                }
                match &policy.action {
                    ActionKind::Discrete { .. } => {
                        c.actions.push(acted.index as u32);
                        self.discrete[i] = acted.index;
                    }
                    ActionKind::Continuous { low, high } => {
                        c.actions_continuous.extend_from_slice(&ws.action);
                        for (j, &a) in ws.action.iter().enumerate() {
                            self.continuous[i * act_dim + j] = a.clamp(low[j], high[j]);
                        }
                    }
                }
            }
            let action = if continuous {
                VecAction::Continuous(&self.continuous)
            } else {
                VecAction::Discrete(&self.discrete)
            };
            let b = envs.step(action).map_err(AgentError::EnvSetup)?;
            c.rewards.extend_from_slice(b.rewards());
            c.terminated.extend_from_slice(b.terminated());
            c.truncated.extend_from_slice(b.truncated());
            for i in 0..m {
                self.done[i] = b.done(i);
                if let Some((ret, len)) = b.finished_episode(i) {
                    c.episodes.push(Episode { ret, len });
                }
                if b.truncated()[i] && !b.terminated()[i] {
                    obs_row_of(b.final_obs(), b.obs_dim(), i, &mut self.obs_row);
                    c.next_values[t * m + i] = policy.value(&self.obs_row, ws);
                }
            }
        }
        // Bootstrap the last step from the observation the rollout stopped at.
        for i in 0..m {
            if !self.done[i] {
                obs_row(envs, i, &mut self.obs_row);
                c.next_values[(steps - 1) * m + i] = policy.value(&self.obs_row, ws);
            }
        }
        Ok(c)
    }
}

/// The actor and critic networks (and the Gaussian's log σ) trained together.
#[derive(Module, Debug)]
pub struct ActorCritic {
    /// The policy network.
    pub actor: Net,
    /// The value network.
    pub critic: Net,
    /// log σ for continuous actions.
    pub head: Option<GaussianHead>,
}

impl Layered for ActorCritic {
    fn layers(&self) -> Vec<Layer> {
        let mut layers = prefixed(Layered::layers(&self.actor), "actor");
        layers.extend(prefixed(Layered::layers(&self.critic), "critic"));
        layers
    }

    fn hidden_activations(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        let mut h = self.actor.hidden_activations(x.clone());
        h.extend(self.critic.hidden_activations(x));
        h
    }

    fn probe_outputs(&self, x: Tensor<2>) -> Tensor<2> {
        Tensor::cat(
            vec![self.actor.forward(x.clone()), self.critic.forward(x)],
            1,
        )
    }
}

/// [`ActorCritic`] as checkpoints before CNN policies laid it out (MLPs only).
#[derive(Module, Debug)]
struct LegacyActorCritic {
    actor: agentry_models::Mlp,
    critic: agentry_models::Mlp,
    head: Option<GaussianHead>,
}

/// The message of a failed record load.
fn record_error<E: std::fmt::Display, F: std::fmt::Display>(
    r: Result<Result<ActorCritic, F>, E>,
) -> String {
    match r {
        Ok(Ok(_)) => "model record: loaded".into(),
        Ok(Err(e)) => format!("model record: {e}"),
        Err(e) => format!("model record: {e}"),
    }
}

/// Everything a PPO learner needs to know about the environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PpoShape {
    /// Observation width.
    pub obs_dim: usize,
    /// The action space.
    pub action: ActionKind,
    /// The observation space's shape (`[channels, height, width]` for stacked frames;
    /// empty: a flat vector of `obs_dim`).
    #[serde(default)]
    pub obs_shape: Vec<usize>,
    /// The observations are bytes (pixels).
    #[serde(default)]
    pub obs_u8: bool,
}

impl PpoShape {
    /// A flat observation of `obs_dim` floats.
    pub fn flat(obs_dim: usize, action: ActionKind) -> Self {
        PpoShape {
            obs_dim,
            action,
            obs_shape: Vec::new(),
            obs_u8: false,
        }
    }

    /// The shape of an environment's spaces (`mask_len`: its legal-action mask's length).
    pub fn of(obs: &Space, action: &Space, mask_len: usize) -> Result<Self, AgentError> {
        let (obs_shape, obs_u8) = match obs {
            Space::Box(b) => (b.shape.clone(), b.dtype == agentry_envs::Dtype::U8),
            _ => (Vec::new(), false),
        };
        Ok(PpoShape {
            obs_dim: obs.flat_dim(),
            action: ActionKind::of(action, mask_len)?,
            obs_shape,
            obs_u8,
        })
    }

    /// Whether a checkpoint written for `self` fits a learner of `other`: the same width,
    /// actions and observation dtype, and the same observation shape (checkpoints written
    /// before shapes were recorded have none, and were all of flat observations).
    pub fn fits(&self, other: &PpoShape) -> bool {
        self.obs_dim == other.obs_dim
            && self.action == other.action
            && observations_fit(
                (&self.obs_shape, self.obs_u8),
                (&other.obs_shape, other.obs_u8),
            )
    }

    /// The network `config.network` asks for on these observations: with `auto`, the
    /// Nature CNN for `u8` frames of shape `[channels, height, width]` (at least 36×36),
    /// else the MLP. An error names what does not fit.
    pub fn network(&self, config: &PpoConfig) -> Result<Network, String> {
        choose_network(config.network, &self.obs_shape, self.obs_u8, "ppo.network")
    }
}

/// Whether observations a checkpoint recorded as `(shape, bytes)` fit a learner's:
/// the same shape and element type, where checkpoints written before shapes were
/// recorded have an empty shape and were all of flat `f32` observations.
pub(crate) fn observations_fit(saved: (&[usize], bool), now: (&[usize], bool)) -> bool {
    if saved.0.is_empty() {
        now.0.len() <= 1 && !now.1
    } else {
        saved == now
    }
}

/// The network `choice` (the setting `key`) asks for on observations of `obs_shape`
/// (bytes when `obs_u8`): with `auto`, the Nature CNN for `u8` frames of shape
/// `[channels, height, width]` (at least 36×36), else the MLP. An error names what does
/// not fit. PPO and DQN choose alike.
pub(crate) fn choose_network(
    choice: Network,
    obs_shape: &[usize],
    obs_u8: bool,
    key: &str,
) -> Result<Network, String> {
    let image = match *obs_shape {
        [c, h, w] => Some(NatureCnnConfig {
            height: h,
            width: w,
            ..NatureCnnConfig::new(c, 1)
        }),
        _ => None,
    };
    match choice {
        Network::Mlp => Ok(Network::Mlp),
        Network::Cnn => match image {
            Some(c) => c.shapes().map(|_| Network::Cnn),
            None => Err(format!(
                "{key} = \"cnn\" needs observations of shape [channels, height, width]; \
                 these have shape {obs_shape:?}"
            )),
        },
        Network::Auto => Ok(match image {
            Some(c) if obs_u8 && c.shapes().is_ok() => Network::Cnn,
            _ => Network::Mlp,
        }),
    }
}

/// The PPO learner.
pub struct Ppo {
    config: PpoConfig,
    plasticity: Plasticity,
    seed: u64,
    shape: PpoShape,
    device: Device,
    model: Option<ActorCritic>,
    optim: ModuleOptimizer,
    rng: rand_pcg::Pcg64Mcg,
    last_stats: Option<(FeatureStats, FeatureStats)>,
    obs_stats: Option<RunningMeanStd>,
}

/// The metric columns PPO logs, after the runner's leading ones.
pub const METRICS: &[&str] = &[
    "charts/learning_rate",
    "charts/clip_coef",
    "losses/value_loss",
    "losses/policy_loss",
    "losses/entropy",
    "losses/pfo_loss",
    "losses/old_approx_kl",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
    "losses/grad_norm",
    "charts/epochs",
    "actor/effective_rank",
    "actor/srank",
    "actor/feature_rank",
    "actor/dead_units",
    "actor/preact_norm",
    "actor/weight_norm",
    "critic/effective_rank",
    "critic/srank",
    "critic/feature_rank",
    "critic/dead_units",
    "critic/preact_norm",
    "critic/weight_norm",
];

impl Ppo {
    /// A fresh learner; the networks are initialised from `seed`.
    ///
    /// An error when the network `config` asks for does not fit the observations, or
    /// the plasticity settings do not fit the network (the CNN has no layer norm).
    pub fn new(
        config: &PpoConfig,
        plasticity: &PlasticityConfig,
        shape: PpoShape,
        seed: u64,
    ) -> Result<Self, AgentError> {
        let network = shape.network(config).map_err(AgentError::Usage)?;
        if network == Network::Cnn && plasticity.layer_norm {
            return Err(AgentError::Usage(
                "plasticity.layer_norm (and nap, which needs it) is for MLPs; the Nature CNN \
                 PPO uses on these observations has no layer norm"
                    .into(),
            ));
        }
        let device = agentry_models::training_device();
        let model = Self::build(config, plasticity.layer_norm, &shape, seed, &device);
        let obs_stats = config
            .normalize_obs
            .then(|| RunningMeanStd::new(shape.obs_dim));
        Ok(Ppo {
            config: config.clone(),
            plasticity: Plasticity::new(plasticity, &model).with_seed(seed),
            seed,
            shape,
            device,
            model: Some(model),
            optim: Self::optimizer(config),
            rng: rand_pcg::Pcg64Mcg::seed_from_u64(agentry_envs::derive_seed(seed, 0x5EED)),
            last_stats: None,
            obs_stats,
        })
    }

    fn optimizer(config: &PpoConfig) -> ModuleOptimizer {
        AdamConfig::new()
            .with_epsilon(config.adam_eps as f32)
            .init()
    }

    /// The actor-critic initialised from `seed`.
    fn build(
        config: &PpoConfig,
        layer_norm: bool,
        shape: &PpoShape,
        seed: u64,
        device: &Device,
    ) -> ActorCritic {
        let network = shape.network(config).expect("checked by Ppo::new");
        let net = |out: usize, gain: f32, seed: u64| match (network, &shape.obs_shape[..]) {
            (Network::Cnn, &[c, h, w]) => Net::Cnn(
                NatureCnnConfig {
                    height: h,
                    width: w,
                    ..NatureCnnConfig::new(c, out).with_output_gain(gain)
                }
                .init_seeded(device, seed),
            ),
            _ => Net::Mlp(
                MlpConfig::new(shape.obs_dim, &config.hidden, out)
                    .with_activation(config.activation)
                    .with_layer_norm(layer_norm)
                    .with_init(Init::Orthogonal {
                        hidden_gain: std::f32::consts::SQRT_2,
                        output_gain: gain,
                    })
                    .init_seeded(device, seed),
            ),
        };
        let aux = usize::from(config.aux_value_coef > 0.0);
        let actor = net(shape.action.outputs() + aux, 0.01, seed ^ 0xAC);
        let critic = net(1, 1.0, seed ^ 0xC0);
        let head = match &shape.action {
            ActionKind::Continuous { low, .. } => Some(GaussianHead::new(
                low.len(),
                config.init_log_std as f32,
                device,
            )),
            ActionKind::Discrete { .. } => None,
        };
        ActorCritic {
            actor,
            critic,
            head,
        }
    }

    /// What builds a newly initialised actor-critic for the `k`-th reset (seeded from
    /// the run's seed).
    fn fresh(&self) -> impl Fn(u64) -> ActorCritic + use<> {
        let (config, shape, device) =
            (self.config.clone(), self.shape.clone(), self.device.clone());
        let (seed, layer_norm) = (self.seed, self.plasticity.config().layer_norm);
        move |k| {
            let seed = agentry_envs::derive_seed(agentry_envs::derive_seed(seed, 0x2E5E7), k);
            Self::build(&config, layer_norm, &shape, seed, &device)
        }
    }

    /// The plasticity tools' persistent state (for checkpoints).
    pub fn plasticity_state(&self) -> PlasticityState {
        self.plasticity.state()
    }

    /// Restore [`plasticity_state`](Self::plasticity_state).
    pub fn set_plasticity_state(&mut self, state: PlasticityState) -> Result<(), String> {
        self.plasticity.set_state(state)
    }

    fn model(&self) -> &ActorCritic {
        self.model
            .as_ref()
            .expect("the model is only taken during a step")
    }

    /// The environment shape the learner was built for.
    pub fn shape(&self) -> &PpoShape {
        &self.shape
    }

    /// The model's parameters as bytes (burn's record format).
    pub fn model_bytes(&self) -> Result<Vec<u8>, AgentError> {
        let record = self.model().clone().into_record();
        let bytes = record
            .into_bytes()
            .map_err(|e| AgentError::Invalid(format!("serialising the model: {e}")))?;
        Ok(bytes.to_vec())
    }

    /// The optimizer state as bytes.
    pub fn optimizer_bytes(&self) -> Result<Vec<u8>, AgentError> {
        let bytes = self
            .optim
            .into_bytes()
            .map_err(|e| AgentError::Invalid(format!("serialising the optimizer: {e}")))?;
        Ok(bytes.to_vec())
    }

    /// The observation statistics (with `ppo.normalize_obs`).
    pub fn obs_stats(&self) -> Option<&RunningMeanStd> {
        self.obs_stats.as_ref()
    }

    /// Replace the observation statistics (restoring a checkpoint).
    pub fn set_obs_stats(&mut self, stats: RunningMeanStd) -> Result<(), String> {
        if self.obs_stats.is_none() {
            return Err("observation statistics for a learner that does not normalise".into());
        }
        if stats.mean.len() != self.shape.obs_dim || stats.var.len() != self.shape.obs_dim {
            return Err("observation statistics of the wrong width".into());
        }
        self.obs_stats = Some(stats);
        Ok(())
    }

    /// The minibatch-shuffling generator's state.
    pub fn rng_state(&self) -> String {
        serde_json::to_string(&self.rng).expect("the generator serialises")
    }

    /// Restore what [`model_bytes`](Self::model_bytes), [`optimizer_bytes`](Self::optimizer_bytes)
    /// and [`rng_state`](Self::rng_state) saved. The byte blobs must be intact (the
    /// checkpoint container verifies their checksum before this is called).
    pub fn restore(&mut self, model: Vec<u8>, optim: Vec<u8>, rng: &str) -> Result<(), String> {
        // burn checks little of a record's inside (tensor byte lengths against shapes,
        // parameter ids), so a record that passed our checksum but was written by
        // something else can still make it panic: every step is caught.
        let record = catch(|| ModuleRecord::from_bytes(Bytes::from_bytes_vec(model)))
            .map_err(|e| format!("model record: {e}"))?
            .map_err(|e| format!("model record: {e}"))?;
        let fresh = self.model.clone().expect("model present");
        let model = match catch(|| fresh.clone().try_load_record(record.clone())) {
            Ok(Ok(model)) => model,
            // Checkpoints written before the networks could be CNNs hold the MLPs at
            // `actor.…` rather than `actor.Mlp.…`.
            first => match fresh {
                ActorCritic {
                    actor: Net::Mlp(actor),
                    critic: Net::Mlp(critic),
                    head,
                } => {
                    let legacy = LegacyActorCritic {
                        actor,
                        critic,
                        head,
                    };
                    let legacy = catch(|| legacy.try_load_record(record))
                        .ok()
                        .and_then(|r| r.ok())
                        .ok_or_else(|| record_error(first))?;
                    ActorCritic {
                        actor: Net::Mlp(legacy.actor),
                        critic: Net::Mlp(legacy.critic),
                        head: legacy.head,
                    }
                }
                _ => return Err(record_error(first)),
            },
        };
        let adam = Self::optimizer(&self.config);
        let optim = catch(|| adam.from_bytes(Bytes::from_bytes_vec(optim)))
            .map_err(|e| format!("optimizer record: {e}"))?
            .map_err(|e| format!("optimizer record: {e}"))?;
        self.model = Some(model);
        self.optim = optim;
        self.rng = serde_json::from_str(rng).map_err(|e| format!("generator state: {e}"))?;
        Ok(())
    }

    /// The acting copy of the current parameters.
    pub fn acting_policy(&self) -> PpoPolicy {
        let model = self.model();
        let mut actor = NetWeights::from_net(&model.actor);
        // The auxiliary value output is for training only.
        actor.keep_outputs(self.shape.action.outputs());
        PpoPolicy {
            obs_dim: self.shape.obs_dim,
            action: self.shape.action.clone(),
            actor,
            critic: NetWeights::from_net(&model.critic),
            log_std: model
                .head
                .as_ref()
                .map(|h| {
                    h.log_std
                        .val()
                        .inner()
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec::<f32>()
                        .expect("f32 data")
                })
                .unwrap_or_default(),
            obs_norm: self.obs_stats.as_ref().map(frozen_norm),
        }
    }
}

/// The whole rollout, flattened actor after actor, with its advantages.
struct Batch {
    len: usize,
    obs: Vec<f32>,
    obs_u8: Vec<u8>,
    actions: Vec<u32>,
    actions_continuous: Vec<f32>,
    masks: Vec<bool>,
    log_probs: Vec<f32>,
    values: Vec<f32>,
    advantages: Vec<f32>,
    returns: Vec<f32>,
    features: Vec<f32>,
}

impl Batch {
    fn of(chunks: &[PpoChunk], gamma: f32, lambda: f32) -> Batch {
        let len: usize = chunks.iter().map(|c| c.rewards.len()).sum();
        let mut b = Batch {
            len,
            obs: Vec::new(),
            obs_u8: Vec::new(),
            actions: Vec::new(),
            actions_continuous: Vec::new(),
            masks: Vec::new(),
            log_probs: Vec::with_capacity(len),
            values: Vec::with_capacity(len),
            advantages: vec![0.0; len],
            returns: vec![0.0; len],
            features: Vec::new(),
        };
        let mut at = 0;
        for c in chunks {
            let n = c.rewards.len();
            let rollout = Rollout {
                num_envs: c.num_envs,
                rewards: &c.rewards,
                values: &c.values,
                next_values: &c.next_values,
                terminated: &c.terminated,
                truncated: &c.truncated,
            };
            gae(
                &rollout,
                gamma,
                lambda,
                &mut b.advantages[at..at + n],
                &mut b.returns[at..at + n],
            );
            b.obs.extend_from_slice(&c.obs);
            b.obs_u8.extend_from_slice(&c.obs_u8);
            b.actions.extend_from_slice(&c.actions);
            b.actions_continuous
                .extend_from_slice(&c.actions_continuous);
            b.masks.extend_from_slice(&c.masks);
            b.log_probs.extend_from_slice(&c.log_probs);
            b.values.extend_from_slice(&c.values);
            b.features.extend_from_slice(&c.features);
            at += n;
        }
        b
    }
}

impl Batch {
    /// Observation rows `idx` as floats (bytes converted here, on their way into the
    /// network).
    fn obs_rows(&self, dim: usize, idx: &[usize]) -> Vec<f32> {
        if self.obs_u8.is_empty() {
            return gather(&self.obs, dim, idx);
        }
        let mut out = Vec::with_capacity(idx.len() * dim);
        for &i in idx {
            out.extend(
                self.obs_u8[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&v| v as f32),
            );
        }
        out
    }
}

fn gather<T: Copy>(src: &[T], width: usize, idx: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(idx.len() * width);
    for &i in idx {
        out.extend_from_slice(&src[i * width..(i + 1) * width]);
    }
    out
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar::<f32>()
}

/// What the critic's half of a minibatch step returns: its gradients (None when the
/// loss is not finite) and the value loss.
type CriticOut = (Option<GradientsParams>, f64);
type CriticJob = Box<dyn FnOnce() -> CriticOut + Send>;

const IDLE: u8 = 0;
const READY: u8 = 1;
const DONE: u8 = 2;
const STOP: u8 = 3;

struct HelperShared {
    state: AtomicU8,
    job: Mutex<Option<CriticJob>>,
    result: Mutex<Option<std::thread::Result<CriticOut>>>,
}

/// A second thread for one update: it runs the critic's half of each minibatch while the
/// learner runs the actor's. Both sides wait by spinning, then yielding (a sleep and
/// wake-up costs tens of microseconds on this VM, a tenth of a minibatch); the thread
/// lives only while the actors are idle, and is joined when the update ends.
struct Helper {
    shared: Arc<HelperShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Spin until `done()` holds, yielding the core now and then.
fn spin_until(mut done: impl FnMut() -> bool) {
    loop {
        for _ in 0..2_000 {
            if done() {
                return;
            }
        }
        std::thread::yield_now();
    }
}

impl Helper {
    fn new() -> Self {
        let shared = Arc::new(HelperShared {
            state: AtomicU8::new(IDLE),
            job: Mutex::new(None),
            result: Mutex::new(None),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("learner-helper".into())
            .spawn(move || {
                loop {
                    let mut state = IDLE;
                    spin_until(|| {
                        state = s.state.load(Ordering::Acquire);
                        state != IDLE && state != DONE
                    });
                    if state == STOP {
                        return;
                    }
                    let job = s.job.lock().unwrap_or_else(|e| e.into_inner()).take();
                    let out = match job {
                        Some(job) => catch_unwind(AssertUnwindSafe(job)),
                        None => Ok((None, f64::NAN)),
                    };
                    *s.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
                    s.state.store(DONE, Ordering::Release);
                }
            })
            .expect("spawning the learner's helper thread");
        Helper {
            shared,
            thread: Some(thread),
        }
    }

    fn submit(&self, job: CriticJob) {
        *self.shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        self.shared.state.store(READY, Ordering::Release);
    }

    fn wait(&self) -> Result<CriticOut, AgentError> {
        spin_until(|| self.shared.state.load(Ordering::Acquire) == DONE);
        let out = self
            .shared
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("a finished job leaves its result");
        self.shared.state.store(IDLE, Ordering::Release);
        out.map_err(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            AgentError::Invalid(format!("the critic's update panicked: {msg}"))
        })
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // A job may still be running when the learner unwinds from a panic: let it
        // finish first, or its DONE would overwrite STOP and the join would never return.
        spin_until(|| matches!(self.shared.state.load(Ordering::Acquire), IDLE | DONE));
        self.shared.state.store(STOP, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the actor's half of a minibatch step returns.
struct ActorSide {
    /// None when the loss is not finite.
    grads: Option<GradientsParams>,
    pg: f64,
    entropy: f64,
    pfo: f64,
    old_kl: f64,
    kl: f64,
    clipfrac: f64,
    aux_value: f64,
}

/// Move the gradients of a module's parameters from one set into another.
struct MoveGrads<'a> {
    from: &'a mut GradientsParams,
    to: &'a mut GradientsParams,
}

impl ModuleVisitor for MoveGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.from.remove::<D>(param.id) {
            self.to.register::<D>(param.id, g);
        }
    }
}

/// L2 norm of all of a network's parameters.
fn weight_norm(w: &NetWeights) -> f64 {
    w.sum_sq().sqrt()
}

fn explained_variance(values: &[f32], returns: &[f32]) -> f64 {
    let n = returns.len() as f64;
    let var = |it: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = it.collect();
        let mean = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n
    };
    let var_y = var(&mut returns.iter().map(|&r| r as f64));
    if var_y == 0.0 {
        return f64::NAN;
    }
    let var_diff = var(&mut returns.iter().zip(values).map(|(&r, &v)| (r - v) as f64));
    1.0 - var_diff / var_y
}

impl runner::Learner for Ppo {
    type Actor = PpoActor;

    fn chunk_steps(&self) -> usize {
        self.config.rollout_steps
    }

    fn policy(&self) -> PpoPolicy {
        self.acting_policy()
    }

    fn actor(&self, _index: usize, seed: u64) -> PpoActor {
        PpoActor::new(seed, true)
    }

    fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = METRICS.iter().map(|s| s.to_string()).collect();
        // Only runs with the auxiliary head have its column, so older runs resume
        // into a metrics file of the same header.
        if self.config.aux_value_coef > 0.0 {
            names.push("losses/aux_value_loss".into());
        }
        names.extend(self.plasticity.metric_names());
        names
    }

    fn update(
        &mut self,
        chunks: Vec<PpoChunk>,
        progress: Progress,
    ) -> Result<Vec<f64>, AgentError> {
        let cfg = self.config.clone();
        let batch = Batch::of(&chunks, cfg.gamma as f32, cfg.gae_lambda as f32);
        // The chunks hold what the networks saw (normalised with the policy's frozen
        // statistics); the raw sums update the statistics the next policy acts with.
        if let Some(stats) = &mut self.obs_stats {
            for c in &chunks {
                let n = (c.steps * c.num_envs) as f64;
                if c.obs_sum.len() == stats.mean.len() {
                    stats.merge_sums(n, &c.obs_sum, &c.obs_sumsq);
                }
            }
        }
        let n = batch.len;
        let frac = progress.remaining_fraction_over(n as u64, cfg.anneal_steps);
        let lr = if cfg.anneal_lr {
            cfg.learning_rate * frac
        } else {
            cfg.learning_rate
        };
        let clip = if cfg.anneal_clip {
            cfg.clip_coef * frac
        } else {
            cfg.clip_coef
        } as f32;
        let dim = self.shape.obs_dim;
        let (n_actions, masked, continuous) = match &self.shape.action {
            ActionKind::Discrete { n, masked } => (*n, *masked, false),
            ActionKind::Continuous { low, .. } => (low.len(), false, true),
        };
        // The feature drift is logged always (PFO's diagnostic); it enters the loss with β > 0.
        let pfo = !batch.features.is_empty();
        let feat_dim = if pfo { batch.features.len() / n } else { 0 };
        let mb = cfg.minibatch_size.min(n).max(1);
        let device = self.device.clone();

        // Plasticity tools: what this update's schedule holds, and soft reset's drift
        // toward the initial parameters on the arrival of new data.
        let due = self.plasticity.due(
            progress.env_steps.saturating_sub(n as u64),
            progress.env_steps,
            progress.updates,
        );
        self.plasticity.set_measuring(due.diagnostics);
        let model = self.model.take().expect("model present");
        self.model = Some(self.plasticity.begin_update(model));

        let mut order: Vec<usize> = (0..n).collect();
        let mut sums = [0.0f64; 9]; // v, pg, ent, pfo, old_kl, kl, clipfrac, grad_norm, aux_v
        let aux_coef = cfg.aux_value_coef as f32;
        let mut count = 0usize;
        let mut epochs_done = 0;
        let helper = Helper::new();
        for _epoch in 0..cfg.epochs {
            // Fisher–Yates with the learner's own generator.
            for i in (1..n).rev() {
                let j = self.rng.random_range(0..=i);
                order.swap(i, j);
            }
            let mut epoch_kl = 0.0f64;
            let mut epoch_count = 0usize;
            for idx in order.chunks(mb) {
                let b = idx.len();
                let obs = Tensor::<2>::from_data(
                    TensorData::new(batch.obs_rows(dim, idx), [b, dim]),
                    &device,
                );
                let old_logp = gather(&batch.log_probs, 1, idx);
                let old_values = gather(&batch.values, 1, idx);
                let returns = gather(&batch.returns, 1, idx);
                let mut adv = gather(&batch.advantages, 1, idx);
                if cfg.norm_adv && b > 1 {
                    let mean = adv.iter().map(|&a| a as f64).sum::<f64>() / b as f64;
                    let var = adv.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>()
                        / (b as f64 - 1.0);
                    let std = var.sqrt();
                    adv.iter_mut()
                        .for_each(|a| *a = ((*a as f64 - mean) / (std + 1e-8)) as f32);
                }
                let t1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [b]), &device);
                let old_logp_t = t1(old_logp);
                let adv_t = t1(adv);
                let returns_t = t1(returns);
                let aux_returns_t = (aux_coef > 0.0).then(|| returns_t.clone());
                let old_values_t = t1(old_values);

                let model = self.model.as_ref().expect("model present");
                let z_old = pfo.then(|| {
                    Tensor::<2>::from_data(
                        TensorData::new(gather(&batch.features, feat_dim, idx), [b, feat_dim]),
                        &device,
                    )
                });
                let acts_continuous = continuous.then(|| {
                    Tensor::<2>::from_data(
                        TensorData::new(
                            gather(&batch.actions_continuous, n_actions, idx),
                            [b, n_actions],
                        ),
                        &device,
                    )
                });
                let mask = (masked && !continuous).then(|| {
                    Tensor::<2, Bool>::from_data(
                        TensorData::new(gather(&batch.masks, n_actions, idx), [b, n_actions]),
                        &device,
                    )
                });
                let acts_discrete = (!continuous).then(|| {
                    let acts: Vec<i64> = idx.iter().map(|&i| batch.actions[i] as i64).collect();
                    Tensor::<1, Int>::from_data(TensorData::new(acts, [b]), &device)
                });
                let obs_critic = obs.clone();
                // The actor's and the critic's losses share no parameter (separate
                // networks, as the PFO paper trains them): their backward passes run on
                // the two cores at once (the critic's on the helper thread, with a clone
                // of the critic whose parameters keep their ids), then the gradients are
                // clipped by their joint norm and applied in one optimizer step, exactly
                // as one backward of the summed loss would give.
                let critic = model.critic.clone();
                let (clip_vloss, vf_coef) = (cfg.clip_vloss, cfg.vf_coef as f32);
                helper.submit(Box::new(move || -> (Option<GradientsParams>, f64) {
                    let new_values = critic.forward(obs_critic).reshape([b]);
                    let v_loss = if clip_vloss {
                        let unclipped = (new_values.clone() - returns_t.clone()).square();
                        let v_clipped =
                            old_values_t.clone() + (new_values - old_values_t).clamp(-clip, clip);
                        let clipped_sq = (v_clipped - returns_t).square();
                        unclipped.max_pair(clipped_sq).mean().mul_scalar(0.5)
                    } else {
                        (new_values - returns_t).square().mean().mul_scalar(0.5)
                    };
                    let v_value = scalar(v_loss.clone()) as f64;
                    let grads = v_value.is_finite().then(|| {
                        GradientsParams::from_grads(v_loss.mul_scalar(vf_coef).backward(), &critic)
                    });
                    (grads, v_value)
                }));
                let actor_half = || -> ActorSide {
                    let (out, z) = model.actor.forward_with_features(obs);
                    // With the auxiliary head, its value is the actor's last output.
                    let (out, aux_loss) = match aux_returns_t {
                        Some(returns) => {
                            let outputs = out.dims()[1] - 1;
                            let v = out.clone().narrow(1, outputs, 1).reshape([b]);
                            let loss = (v - returns).square().mean().mul_scalar(0.5);
                            (out.narrow(1, 0, outputs), Some(loss))
                        }
                        None => (out, None),
                    };
                    let (new_logp, entropy) = match (&model.head, acts_continuous) {
                        (Some(head), Some(acts)) => {
                            let logp = head.log_prob(out, acts);
                            (logp, head.entropy())
                        }
                        _ => {
                            let log_probs = masked_log_softmax(out, mask);
                            let acts = acts_discrete.expect("discrete actions");
                            (
                                categorical_log_prob(log_probs.clone(), acts),
                                categorical_entropy(log_probs),
                            )
                        }
                    };
                    let log_ratio = new_logp - old_logp_t;
                    let ratio = log_ratio.clone().exp();
                    // KL and clip statistics, without gradient, in plain Rust.
                    let lr_v = log_ratio
                        .inner()
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec::<f32>()
                        .expect("f32");
                    let (mut old_kl, mut kl, mut clipped) = (0.0f64, 0.0f64, 0usize);
                    for &l in &lr_v {
                        let r = (l as f64).exp();
                        old_kl += -(l as f64);
                        kl += (r - 1.0) - l as f64;
                        if (r - 1.0).abs() > clip as f64 {
                            clipped += 1;
                        }
                    }
                    let pg1 = adv_t.clone().neg() * ratio.clone();
                    let pg2 = adv_t.neg() * ratio.clamp(1.0 - clip, 1.0 + clip);
                    let pg_loss = pg1.max_pair(pg2).mean();
                    let entropy_loss = entropy.mean();
                    let mut loss =
                        pg_loss.clone() - entropy_loss.clone().mul_scalar(cfg.ent_coef as f32);
                    let mut aux_value = 0.0;
                    if let Some(aux_loss) = aux_loss {
                        aux_value = scalar(aux_loss.clone()) as f64;
                        loss = loss + aux_loss.mul_scalar(aux_coef);
                    }
                    let mut pfo_value = 0.0;
                    if let Some(z_old) = z_old {
                        if cfg.pfo_coef > 0.0 {
                            let pfo_loss = (z - z_old).square().mean();
                            pfo_value = scalar(pfo_loss.clone()) as f64;
                            loss = loss + pfo_loss.mul_scalar(cfg.pfo_coef as f32);
                        } else {
                            pfo_value = scalar((z.detach() - z_old).square().mean()) as f64;
                        }
                    }
                    let pg_value = scalar(pg_loss) as f64;
                    let ent_value = scalar(entropy_loss) as f64;
                    let grads = pg_value
                        .is_finite()
                        .then(|| GradientsParams::from_grads(loss.backward(), model));
                    ActorSide {
                        grads,
                        pg: pg_value,
                        entropy: ent_value,
                        pfo: pfo_value,
                        old_kl: old_kl / b as f64,
                        kl: kl / b as f64,
                        clipfrac: clipped as f64 / b as f64,
                        aux_value,
                    }
                };
                let actor_side = actor_half();
                let critic_side = helper.wait()?;
                let (critic_grads, v_value) = critic_side;
                let ActorSide {
                    grads: actor_grads,
                    pg: pg_value,
                    entropy: ent_value,
                    pfo: pfo_value,
                    old_kl,
                    kl,
                    clipfrac,
                    aux_value,
                } = actor_side;
                let (Some(mut grads), Some(mut critic_grads)) = (actor_grads, critic_grads) else {
                    return Err(AgentError::Numeric(format!(
                        "PPO loss is not finite (policy {pg_value}, value {v_value}) at update {}",
                        progress.updates + 1
                    )));
                };
                model.critic.visit(&mut MoveGrads {
                    from: &mut critic_grads,
                    to: &mut grads,
                });
                let grad_norm = clip_grad_norm(model, &mut grads, cfg.max_grad_norm as f32);
                if !(grad_norm.is_finite()
                    && ent_value.is_finite()
                    && pfo_value.is_finite()
                    && aux_value.is_finite())
                {
                    return Err(AgentError::Numeric(format!(
                        "PPO update {} produced a non-finite value (gradient norm {grad_norm}, \
                         entropy {ent_value}, PFO loss {pfo_value}, auxiliary value loss \
                         {aux_value}); the parameters were not changed",
                        progress.updates + 1
                    )));
                }
                self.plasticity.regularise(model, &mut grads);
                let before = self.plasticity.before_step(model);
                let model = self.model.take().expect("model present");
                let model = self
                    .optim
                    .step(lr * self.plasticity.lr_scale(), model, grads);
                self.model = Some(self.plasticity.after_step(model, lr, before));

                for (s, v) in sums.iter_mut().zip([
                    v_value,
                    pg_value,
                    ent_value,
                    pfo_value,
                    old_kl,
                    kl,
                    clipfrac,
                    grad_norm as f64,
                    aux_value,
                ]) {
                    *s += v;
                }
                count += 1;
                epoch_kl += kl;
                epoch_count += 1;
            }
            epochs_done += 1;
            if cfg.target_kl > 0.0 && epoch_kl / epoch_count as f64 > cfg.target_kl {
                break;
            }
        }
        let avg = |i: usize| sums[i] / count.max(1) as f64;
        let ev = explained_variance(&batch.values, &batch.returns);

        // Scheduled resets, then the diagnostics, on up to 512 observations of the batch.
        let rows = n.min(512);
        if due != Due::default() {
            let sample: Vec<usize> = (0..rows).map(|r| r * n / rows).collect();
            let x = Tensor::<2>::from_data(
                TensorData::new(batch.obs_rows(dim, &sample), [rows, dim]),
                &device,
            );
            let model = self.model.take().expect("model present");
            let act = if model.actor.is_relu() {
                diagnostics::Activation::Relu
            } else {
                diagnostics::Activation::Tanh
            };
            let (model, reset_optimizer) =
                self.plasticity
                    .maintain(model, self.fresh(), x.clone(), due);
            if reset_optimizer {
                self.optim = Self::optimizer(&cfg);
            }
            self.plasticity
                .diagnose(&model, self.fresh(), x, act, cfg.learning_rate, due);
            self.model = Some(model);
        }
        let policy = self.acting_policy();
        if due.diagnostics {
            let stats = |w: &NetWeights| {
                let mut scratch = w.scratch();
                let mut out = vec![0.0; w.output_dim()];
                let d = w.feature_dim();
                let mut feats = vec![0.0f32; rows * d];
                for r in 0..rows {
                    let i = r * n / rows;
                    w.forward_with_features(
                        &batch.obs_rows(dim, &[i]),
                        &mut scratch,
                        &mut out,
                        &mut feats[r * d..(r + 1) * d],
                    );
                }
                let act = if w.is_relu() {
                    diagnostics::Activation::Relu
                } else {
                    diagnostics::Activation::Tanh
                };
                diagnostics::feature_stats(&feats, rows, d, act)
            };
            self.last_stats = Some((stats(&policy.actor), stats(&policy.critic)));
        }
        let missing = FeatureStats {
            effective_rank: f64::NAN,
            srank: 0,
            feature_rank: 0,
            dead_fraction: f64::NAN,
            mean_norm: f64::NAN,
        };
        let (sa, sc) = self
            .last_stats
            .clone()
            .unwrap_or((missing.clone(), missing));
        let mut row = vec![
            lr,
            clip as f64,
            avg(0),
            avg(1),
            avg(2),
            avg(3),
            avg(4),
            avg(5),
            avg(6),
            ev,
            avg(7),
            epochs_done as f64,
        ];
        let known = self.last_stats.is_some();
        let count = |c: usize| if known { c as f64 } else { f64::NAN };
        for (s, w) in [(&sa, &policy.actor), (&sc, &policy.critic)] {
            row.extend([
                s.effective_rank,
                count(s.srank),
                count(s.feature_rank),
                s.dead_fraction,
                s.mean_norm,
                weight_norm(w),
            ]);
        }
        if cfg.aux_value_coef > 0.0 {
            row.push(avg(8));
        }
        row.extend(self.plasticity.metric_row());
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categorical_sampling_respects_masks_and_probabilities() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let logits = [0.0f32, 1.0, 2.0];
        let mask = [true, false, true];
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            let a = sample_categorical(&logits, Some(&mask), ActMode::Sample, &mut rng);
            counts[a.index] += 1;
            let p2 = (2.0f32).exp() / (1.0 + (2.0f32).exp());
            let want = if a.index == 2 {
                p2.ln()
            } else {
                (1.0 - p2).ln()
            };
            assert!((a.log_prob - want).abs() < 1e-5);
        }
        assert_eq!(counts[1], 0);
        let frac2 = counts[2] as f64 / 20_000.0;
        assert!((frac2 - 0.8808).abs() < 0.01, "{frac2}");
        let best = sample_categorical(
            &logits,
            Some(&[true, true, false]),
            ActMode::Deterministic,
            &mut rng,
        );
        assert_eq!(best.index, 1);
    }

    #[test]
    fn explained_variance_of_perfect_and_useless_values() {
        let r = [1.0f32, 2.0, 3.0];
        assert!((explained_variance(&r, &r) - 1.0).abs() < 1e-12);
        assert!(explained_variance(&[2.0, 2.0, 2.0], &r).abs() < 1e-12);
    }
}

#[cfg(test)]
mod helper_tests {
    use super::*;

    #[test]
    fn the_helper_runs_jobs_reports_panics_and_never_hangs_on_drop() {
        let helper = Helper::new();
        for i in 0..100 {
            helper.submit(Box::new(move || (None, i as f64)));
            assert_eq!(helper.wait().unwrap().1, i as f64);
        }
        helper.submit(Box::new(|| panic!("boom")));
        let e = helper.wait().unwrap_err().to_string();
        assert!(e.contains("boom"), "{e}");
        // Dropped with a job still running (as when the learner unwinds).
        helper.submit(Box::new(|| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            (None, 0.0)
        }));
        drop(helper);
    }
}

#[cfg(test)]
mod truncation_tests {
    use super::*;
    use crate::runner::{Control, RunSpec, RunState, run};
    use agentry_envs::testing::ConstantEnv;
    use agentry_envs::vector::{SyncVecEnv, VecEnv};
    use agentry_envs::wrappers::TimeLimit;

    /// An environment whose only ending is truncation after 20 steps, reward 1 per step,
    /// constant observation: the true value is 1/(1 − γ) = 10 for γ = 0.9. Treating the
    /// truncation as a termination would pull it toward the average of the
    /// finite-horizon returns, about 5.6.
    #[test]
    fn truncated_episodes_are_bootstrapped_not_terminal() {
        let config = PpoConfig {
            gamma: 0.9,
            gae_lambda: 0.95,
            rollout_steps: 32,
            minibatch_size: 64,
            epochs: 4,
            learning_rate: 3e-3,
            anneal_lr: false,
            ..PpoConfig::default()
        };
        let shape = PpoShape::flat(
            1,
            ActionKind::Discrete {
                n: 2,
                masked: false,
            },
        );
        let ppo = run_constant(&config, shape);
        let policy = ppo.acting_policy();
        let mut ws = policy.workspace();
        let v = policy.value(&[1.0], &mut ws);
        assert!((v - 10.0).abs() < 0.5, "V = {v}, expected 1/(1 − 0.9) = 10");
    }

    /// 40 000 steps of `config` on 4 constant environments truncated after 20 steps.
    fn run_constant(config: &PpoConfig, shape: PpoShape) -> Ppo {
        let mut ppo = Ppo::new(config, &Default::default(), shape, 7).unwrap();
        let make = |_: usize| -> Result<Box<dyn VecEnv>, agentry_envs::EnvError> {
            let envs: Vec<Box<dyn agentry_envs::Env>> = (0..4)
                .map(|_| {
                    Box::new(TimeLimit::new(ConstantEnv::new(), 20)) as Box<dyn agentry_envs::Env>
                })
                .collect();
            Ok(Box::new(SyncVecEnv::new(envs)?))
        };
        let spec = RunSpec {
            make_envs: &make,
            actors: 1,
            envs_per_actor: 4,
            seed: 3,
            total_steps: 40_000,
            actor_timeout: None,
        };
        let mut state = RunState::default();
        run(&mut ppo, &spec, &mut state, |_, _, _| Ok(Control::Continue)).unwrap();
        assert_eq!(state.episodes, 2000);
        ppo
    }

    /// With `aux_value_coef`, the actor network's extra output learns the state's value
    /// (10 here, as the critic's), and the acting copy keeps only the action logits,
    /// the same as the network's.
    #[test]
    fn the_auxiliary_value_head_learns_values_and_stays_out_of_acting() {
        let config = PpoConfig {
            gamma: 0.9,
            rollout_steps: 32,
            minibatch_size: 64,
            learning_rate: 3e-3,
            anneal_lr: false,
            aux_value_coef: 1.0,
            ..PpoConfig::default()
        };
        let actions = ActionKind::Discrete {
            n: 2,
            masked: false,
        };
        let ppo = run_constant(&config, PpoShape::flat(1, actions));
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32], [1, 1]), &ppo.device);
        let out = ppo
            .model()
            .actor
            .forward(x)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(out.len(), 3, "2 logits and the auxiliary value");
        assert!(
            (out[2] - 10.0).abs() < 0.5,
            "auxiliary V = {}, expected 1/(1 − 0.9) = 10",
            out[2]
        );
        let policy = ppo.acting_policy();
        policy.check().unwrap();
        let mut ws = policy.workspace();
        policy.act(
            &[1.0],
            None,
            ActMode::Deterministic,
            &mut rand_pcg::Pcg64Mcg::seed_from_u64(1),
            &mut ws,
        );
        for (a, b) in ws.out.iter().zip(&out[..2]) {
            assert!(
                (a - b).abs() < 1e-4,
                "acting logits {:?} vs {out:?}",
                ws.out
            );
        }
        assert_eq!(ws.out.len(), 2);
    }

    /// PPO with `network = "auto"` picks the Nature CNN for `u8` images and learns to
    /// read them: from 0.5 (chance) to a greedy mean reward of at least 0.9 in 3 072 steps
    /// (1.0 from about 1 300 steps on, seed 5).
    #[test]
    fn the_cnn_policy_learns_to_read_images() {
        let config = PpoConfig {
            rollout_steps: 64,
            minibatch_size: 64,
            epochs: 4,
            learning_rate: 2.5e-4,
            anneal_lr: false,
            ent_coef: 0.0,
            ..PpoConfig::default()
        };
        use agentry_envs::testing::LitHalf;
        let probe = LitHalf::new();
        use agentry_envs::Env;
        let shape = PpoShape::of(probe.observation_space(), probe.action_space(), 0).unwrap();
        assert_eq!(shape.network(&config), Ok(Network::Cnn));
        let mut ppo = Ppo::new(&config, &Default::default(), shape.clone(), 5).unwrap();
        assert!(matches!(ppo.acting_policy().actor, NetWeights::Cnn(_)));
        // Layer norm is for MLPs.
        let ln = PlasticityConfig {
            layer_norm: true,
            ..Default::default()
        };
        let err = Ppo::new(&config, &ln, shape, 5).err().expect("an error");
        assert!(err.to_string().contains("layer_norm"), "{err}");
        let make = |_: usize| -> Result<Box<dyn VecEnv>, agentry_envs::EnvError> {
            let envs: Vec<Box<dyn agentry_envs::Env>> = (0..4)
                .map(|_| Box::new(LitHalf::new()) as Box<dyn agentry_envs::Env>)
                .collect();
            Ok(Box::new(SyncVecEnv::new(envs)?))
        };
        let spec = RunSpec {
            make_envs: &make,
            actors: 1,
            envs_per_actor: 4,
            seed: 3,
            total_steps: 3_072,
            actor_timeout: None,
        };
        // Frames stay bytes in the rollout.
        let mut envs = make(0).unwrap();
        envs.reset(Some(1)).unwrap();
        let mut actor = PpoActor::new(1, true);
        let chunk =
            runner::Actor::collect(&mut actor, &ppo.acting_policy(), &mut *envs, 2).unwrap();
        assert!(chunk.obs.is_empty());
        assert_eq!(chunk.obs_u8.len(), 2 * 4 * 36 * 36);
        let mut state = RunState::default();
        let mut last = Vec::new();
        run(&mut ppo, &spec, &mut state, |_, _, _| Ok(Control::Continue)).unwrap();
        // The greedy policy on fresh images.
        let policy = ppo.acting_policy();
        let mut ws = policy.workspace();
        let mut env = LitHalf::new();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(9);
        use agentry_envs::EnvExt;
        let mut obs = env.reset(Some(77)).unwrap().0.to_f32();
        for _ in 0..200 {
            let a = policy.act(&obs, None, ActMode::Deterministic, &mut rng, &mut ws);
            let t = env.step(agentry_envs::Action::Discrete(a.index)).unwrap();
            last.push(t.reward);
            obs = t.obs.to_f32();
        }
        let mean = last.iter().sum::<f64>() / last.len() as f64;
        assert!(mean >= 0.9, "greedy mean reward {mean} after training");

        // Every plasticity tool that applies to a CNN runs on it: resets of the last
        // two layers (the fully connected one and the head), shrink-and-perturb, ReDo
        // on the fully connected units, soft reset, decay toward θ₀, the diagnostics
        // and the capacity probe.
        let tools = PlasticityConfig {
            weight_decay: 1e-4,
            weight_decay_kind: agentry_models::plasticity::DecayKind::L2Init,
            soft_reset: true,
            hard_reset_every: 512,
            hard_reset_layers: agentry_models::plasticity::ResetLayers::LastN(2),
            shrink_perturb_every: 768,
            redo_every: 256,
            diagnostics_every: 1,
            probe_every: 512,
            probe_steps: 2,
            ..Default::default()
        };
        let shape = PpoShape::of(probe.observation_space(), probe.action_space(), 0).unwrap();
        let mut ppo = Ppo::new(&config, &tools, shape, 6).unwrap();
        let spec = RunSpec {
            total_steps: 1_024,
            ..spec
        };
        let mut rows = Vec::new();
        run(&mut ppo, &spec, &mut RunState::default(), |_, _, row| {
            rows.push(row.to_vec());
            Ok(Control::Continue)
        })
        .unwrap();
        let names = runner::Learner::metric_names(&ppo);
        let col = |name: &str| names.iter().position(|n| n == name).expect(name);
        let last = rows.last().expect("four updates");
        for name in [
            "actor/feature_rank",
            "actor/weight_norm",
            "critic/effective_rank",
        ] {
            assert!(last[col(name)].is_finite(), "{name} = {}", last[col(name)]);
        }
        assert!(
            ppo.plasticity_state().resets >= 1,
            "{:?}",
            ppo.plasticity_state()
        );
    }

    /// A panic in one actor's environment, or an environment that cannot be built,
    /// ends the run with an error naming the actor; every thread is joined (the test
    /// returning at all shows nothing hangs).
    #[test]
    fn actor_panics_and_env_errors_end_the_run_with_an_error() {
        use agentry_envs::testing::CountEnv;
        let shape = PpoShape::flat(
            2,
            ActionKind::Discrete {
                n: 3,
                masked: false,
            },
        );
        let config = PpoConfig {
            rollout_steps: 8,
            minibatch_size: 8,
            ..PpoConfig::default()
        };
        let mut ppo = Ppo::new(&config, &Default::default(), shape, 1).unwrap();
        let make = |actor: usize| -> Result<Box<dyn VecEnv>, agentry_envs::EnvError> {
            let mut env = CountEnv::new(1000);
            if actor == 1 {
                env.panic_at = Some(20);
            }
            let envs: Vec<Box<dyn agentry_envs::Env>> = vec![Box::new(env)];
            Ok(Box::new(SyncVecEnv::new(envs)?))
        };
        let spec = RunSpec {
            make_envs: &make,
            actors: 2,
            envs_per_actor: 1,
            seed: 3,
            total_steps: 1000,
            actor_timeout: None,
        };
        let e = run(&mut ppo, &spec, &mut RunState::default(), |_, _, _| {
            Ok(Control::Continue)
        })
        .unwrap_err();
        // The vector environment turns its copy's panic into an error; the runtime
        // names the actor.
        assert!(matches!(e, AgentError::Env { actor: 1, .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("panicked") && text.contains("step 20"),
            "{text}"
        );

        let failing = |actor: usize| -> Result<Box<dyn VecEnv>, agentry_envs::EnvError> {
            if actor == 0 {
                Err(agentry_envs::EnvError::Invalid("no such device".into()))
            } else {
                make(actor)
            }
        };
        let spec = RunSpec {
            make_envs: &failing,
            ..spec
        };
        let e = run(&mut ppo, &spec, &mut RunState::default(), |_, _, _| {
            Ok(Control::Continue)
        })
        .unwrap_err();
        assert!(matches!(e, AgentError::Env { actor: 0, .. }), "{e}");
        assert!(e.to_string().contains("no such device"), "{e}");
    }
}
