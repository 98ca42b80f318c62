//! RA-DT (Schmied et al. 2024): a Decision Transformer that reads sub-trajectories
//! retrieved from an external memory through cross-attention.
//!
//! The model is the offline learners' ([`crate::offline`]) with a Transformer whose
//! blocks have a cross-attention sub-layer. Training (`agent train --algo radt`) runs
//! in two phases:
//!
//! 1. For the first `retrieval.pretrain_fraction` of the updates it is a plain DT (no
//!    memory).
//! 2. Then a copy of the model is frozen as the **embedding model**, and every chunk of
//!    `chunk_len` steps of the training data is indexed: its key is the embedding
//!    model's mean last hidden state over the chunk's state tokens, L2-normalised
//!    ([`SeqModel::embed`]); its value is the chunk and the `chunk_len` steps after it.
//!    Each training sequence then retrieves, with its own embedding as the query, the
//!    best `retrieved` values among the `top_l` most similar chunks — other
//!    trajectories only, near-duplicates (similarity ≥ `dedup`) and the query's own
//!    near-copies (≥ 0.98) dropped, rescored `minmax(similarity) + w_task·[same task]`
//!    as the official code trains — and the model reads their tokens through the
//!    cross-attention while it learns to predict the sequence's actions.
//!
//! **In-context evaluation** (`agent eval --run DIR`): on each Dark-Room goal held out
//! of training (RA-DT's 80/20 split of the room's cells, [`goal_split`]), the model
//! plays `in_context_episodes` consecutive episodes. The memory starts empty and after
//! each episode holds its chunks, keyed by the embedding model, with the episode's
//! return as their utility; while acting, every `retrieve_every` steps the current
//! window (the last `context` steps) queries it, rescored
//! `minmax(similarity) + w_ret·minmax(utility)`, and the model reads what it found.
//! Reported: the mean return at each episode index over the goals (± std), for RA-DT and
//! for the frozen plain DT of phase 1 acting without memory.
//!
//! **Baselines** go through the same loop ([`evaluate_in_context`], [`InContextActor`]):
//! a DT trained separately on the same histories, whose window is the current episode
//! ([`DT`]), and an Algorithm-Distillation-style DT ([`AD`]: `dt.across_episodes`),
//! trained on sequences that run across the episodes of a learning history and acting
//! with its own earlier episodes in its window. `agent plot --in-context` draws the
//! runs' curves together, mean ± std over seeds.
//!
//! Deviations from the paper, for 2 CPU cores: a width-64 model of 2 layers (the paper:
//! 4 layers of width 512), one retrieved sub-trajectory, retrieval every few steps
//! rather than every step, and the embedding model trained on the same data in the same
//! run (the paper pre-trains a separate DT).

use std::path::Path;

use agentry_envs::grid::goal_split;
use agentry_envs::{Action, ObsMut, Out, ParamValue, Params, registry};
use agentry_memory::EpisodeRecord;
use agentry_memory::retrieval::{Chunk, IndexConfig, Query, RetrievalConfig, RetrievalMemory};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::config::{EnvConfig, SeqConfig};
use crate::error::AgentError;
use crate::offline::{Data, Family, Scales, SeqBatch, SeqModel, SeqPolicy, TaskSet};

fn memory_error(e: agentry_memory::MemoryError) -> AgentError {
    AgentError::Invalid(format!("retrieval memory: {e}"))
}

/// The training data's retrieval memory and the frozen model that keys it.
pub(crate) struct Retrieval {
    /// The embedding model (no autodiff).
    pub(crate) embedder: SeqModel,
    memory: RetrievalMemory,
    /// The first trajectory id of each task (a trajectory is an episode).
    offsets: Vec<u64>,
}

/// Chunks of `e` (trajectory `trajectory` of task `task`): every `chunk_len` steps,
/// the value running `2 × chunk_len` steps (shorter at the episode's end).
fn chunks_of(e: &EpisodeRecord, trajectory: u64, task: u32, chunk_len: usize) -> Vec<Chunk> {
    (0..e.len())
        .step_by(chunk_len)
        .map(|start| Chunk {
            trajectory,
            task,
            start: start as u64,
            len: (2 * chunk_len).min(e.len() - start) as u32,
        })
        .collect()
}

/// Keys of `chunks` of episodes `episode(c)`, `chunk_len` steps each, by `embedder`.
fn chunk_keys<'a>(
    embedder: &SeqModel,
    config: &SeqConfig,
    set: &TaskSet,
    chunks: &[Chunk],
    episode: impl Fn(&Chunk) -> (&'a EpisodeRecord, usize),
    device: &Device,
) -> Vec<f32> {
    let mut keys = Vec::with_capacity(chunks.len() * config.d_model);
    for block in chunks.chunks(256) {
        let (_, t0) = episode(&block[0]);
        let family = &set.families[set.tasks[t0].family];
        let mut b = SeqBatch::empty(t0, block.len(), config.retrieval.chunk_len, family);
        for (s, c) in block.iter().enumerate() {
            let (e, t) = episode(c);
            let scale = set.tasks[t].scales();
            b.fill(s, e, c.start as usize, family, scale, config.max_timestep);
        }
        keys.extend(embedder.embed(config, set, &b, device));
    }
    keys
}

impl Retrieval {
    /// Freeze `embedder` and index every chunk of `data`.
    pub(crate) fn build(
        embedder: SeqModel,
        config: &SeqConfig,
        data: &Data,
    ) -> Result<Retrieval, AgentError> {
        let device = agentry_models::cpu();
        let mut memory =
            RetrievalMemory::new(config.d_model, IndexConfig::default()).map_err(memory_error)?;
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for (t, episodes) in data.episodes.iter().enumerate() {
            offsets.push(next);
            let mut chunks = Vec::new();
            for (i, e) in episodes.iter().enumerate() {
                chunks.extend(chunks_of(
                    e,
                    next + i as u64,
                    t as u32,
                    config.retrieval.chunk_len,
                ));
            }
            let base = next;
            let keys = chunk_keys(
                &embedder,
                config,
                &data.set,
                &chunks,
                |c| (&episodes[(c.trajectory - base) as usize], t),
                &device,
            );
            memory.insert_batch(&chunks, &keys).map_err(memory_error)?;
            for (i, e) in episodes.iter().enumerate() {
                memory
                    .set_utility(next + i as u64, e.ret() as f32)
                    .map_err(memory_error)?;
            }
            next += episodes.len() as u64;
        }
        Ok(Retrieval {
            embedder,
            memory,
            offsets,
        })
    }

    fn locate(&self, trajectory: u64) -> (usize, usize) {
        let t = self.offsets.partition_point(|&o| o <= trajectory) - 1;
        (t, (trajectory - self.offsets[t]) as usize)
    }

    /// What the sequences of `batch` (drawn at `picked` = (task, episode, start))
    /// read: `retrieved` values each, as a batch of `sequences × retrieved` sequences
    /// of `2 × chunk_len` steps (padding where fewer were found).
    pub(crate) fn memory_batch(
        &self,
        config: &SeqConfig,
        data: &Data,
        batch: &SeqBatch,
        picked: &[(usize, usize, usize)],
    ) -> Result<SeqBatch, AgentError> {
        let device = agentry_models::cpu();
        let t = batch.task();
        let keys = self.embedder.embed(config, &data.set, batch, &device);
        let d = config.d_model;
        let queries: Vec<Query<'_>> = picked
            .iter()
            .enumerate()
            .map(|(s, &(task, episode, _))| Query {
                key: &keys[s * d..(s + 1) * d],
                trajectory: Some(self.offsets[task] + episode as u64),
                task: Some(task as u32),
            })
            .collect();
        let r = &config.retrieval;
        let settings = RetrievalConfig {
            top_l: r.top_l,
            n: r.retrieved,
            dedup: Some(r.dedup as f32),
            w_task: r.w_task as f32,
            ..RetrievalConfig::training()
        };
        let found = self
            .memory
            .retrieve_batch(&queries, &settings)
            .map_err(memory_error)?;
        let family = &data.set.families[data.set.tasks[t].family];
        let n = r.retrieved;
        let mut mem = SeqBatch::empty(t, picked.len() * n, 2 * r.chunk_len, family);
        for (s, hits) in found.iter().enumerate() {
            for (j, hit) in hits.iter().take(n).enumerate() {
                let (task, episode) = self.locate(hit.chunk.trajectory);
                let e = &data.episodes[task][episode];
                let scale = data.set.tasks[task].scales();
                mem.fill_len(
                    s * n + j,
                    e,
                    hit.chunk.start as usize,
                    hit.chunk.len as usize,
                    family,
                    scale,
                    config.max_timestep,
                );
            }
        }
        Ok(mem)
    }
}

/// The label of RA-DT's curve (with retrieval).
pub const RADT: &str = "radt";
/// The label of the curve of RA-DT's frozen plain DT (its embedding model), acting
/// without memory.
pub const FROZEN_DT: &str = "frozen_dt";
/// The label of an Algorithm-Distillation-style DT (`dt` with `across_episodes`).
pub const AD: &str = "ad";
/// The label of a plain DT (one episode of context).
pub const DT: &str = "dt";
/// The labels in the order curves are written and drawn.
pub const LABELS: &[&str] = &[RADT, AD, DT, FROZEN_DT];

/// The in-context learning curves of a held-out task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InContext {
    /// The environment.
    pub env: EnvConfig,
    /// The return of each consecutive episode, per learner label ([`RADT`] and
    /// [`FROZEN_DT`] for an RA-DT run, [`AD`] or [`DT`] for a DT run).
    pub curves: std::collections::BTreeMap<String, Vec<f64>>,
}

/// The label of a policy's in-context curve: [`RADT`], [`AD`] (a DT whose context
/// runs across episodes) or [`DT`]; an error for other algorithms.
pub fn label(policy: &SeqPolicy) -> Result<&'static str, AgentError> {
    match (policy.algo.as_str(), policy.config.across_episodes) {
        ("radt", _) => Ok(RADT),
        ("dt", true) => Ok(AD),
        ("dt", false) => Ok(DT),
        (other, _) => Err(AgentError::Usage(format!(
            "the in-context evaluation on held-out Dark-Room goals is for radt and dt runs, \
             not {other}"
        ))),
    }
}

/// The held-out Dark-Room goals of the family the tasks belong to (RA-DT's 80/20 split
/// of the room's cells), as environments.
pub fn held_out_tasks(set: &TaskSet) -> Result<Vec<EnvConfig>, AgentError> {
    let first = set
        .tasks
        .first()
        .ok_or_else(|| AgentError::Usage("RA-DT: no tasks".into()))?;
    if set.families.len() != 1 || first.env.name != "dark-room" {
        return Err(AgentError::Usage(
            "RA-DT's in-context evaluation holds out Dark-Room goals: train it on Dark-Room \
             learning histories only"
                .into(),
        ));
    }
    let env = registry::make(&first.env.name, &first.env.params)?;
    let agentry_envs::Space::Box(b) = env.observation_space() else {
        return Err(AgentError::Invalid("Dark-Room observes a Box".into()));
    };
    let (w, h) = (b.high[0] as usize + 1, b.high[1] as usize + 1);
    let (_, held_out) = goal_split(w, h);
    Ok(held_out
        .into_iter()
        .map(|(x, y)| {
            let mut params: Params = first.env.params.clone();
            params.0.insert(
                "goal".into(),
                ParamValue::List(vec![ParamValue::Int(x as i64), ParamValue::Int(y as i64)]),
            );
            EnvConfig {
                name: first.env.name.clone(),
                params,
            }
        })
        .collect())
}

/// The tokens of the window (the last `context` steps, the last one up to its state
/// and return-to-go), as one sequence, and the row of its last step. The window holds
/// the current episode's steps; with `config.across_episodes` (Algorithm Distillation)
/// it is filled up from the end of the `played` episodes before it, as training laid
/// the learning histories end to end (each earlier step with its episode's own
/// return-to-go and time step).
#[allow(clippy::too_many_arguments)]
pub(crate) fn window(
    config: &SeqConfig,
    family: &Family,
    task: usize,
    played: &[EpisodeRecord],
    obs: &[f32],
    actions: &[f32],
    rewards: &[f32],
    target: f64,
    scale: Scales,
) -> (SeqBatch, usize) {
    let dim = family.obs_dim();
    let t = obs.len() / dim;
    let k = config.context;
    let first = t.saturating_sub(k);
    let mut b = SeqBatch::empty(task, 1, k, family);
    // The earlier episodes' steps that fit before the current ones, oldest first.
    let mut room = if config.across_episodes {
        k - (t - first)
    } else {
        0
    };
    let mut earlier = Vec::new();
    for e in played.iter().rev() {
        if room == 0 {
            break;
        }
        let n = e.len().min(room);
        earlier.push((e, e.len() - n, n));
        room -= n;
    }
    let mut at = 0;
    for &(e, start, n) in earlier.iter().rev() {
        b.fill_at(0, at, e, start, n, family, scale, config.max_timestep);
        at += n;
    }
    let mut got: f64 = rewards[..first].iter().map(|&r| r as f64).sum();
    for (r, u) in (first..t).enumerate() {
        let action = actions.get(u).copied().unwrap_or(0.0);
        let reward = rewards.get(u).copied().unwrap_or(0.0);
        b.set_step(
            at + r,
            &obs[u * dim..(u + 1) * dim],
            ((target - got) / scale.rtg as f64) as f32,
            reward / scale.reward,
            action,
            u.min(config.max_timestep - 1),
        );
        got += reward as f64;
    }
    (b, at + t - first - 1)
}

/// A sequence model acting in context: the current episode's window (an AD-style DT's
/// also holding its earlier episodes), and (RA-DT, with an embedding model) a retrieval
/// memory of its own finished episodes that it reads from. One actor plays
/// one environment's episodes in a row; [`end_episode`](Self::end_episode) files the
/// episode into the memory, which is what the next episodes learn from.
#[derive(Clone)]
pub struct InContextActor<P: std::ops::Deref<Target = SeqPolicy> + Clone> {
    policy: P,
    /// Read retrieved sub-trajectories (false: the plain-DT baseline).
    retrieve: bool,
    memory: RetrievalMemory,
    played: Vec<EpisodeRecord>,
    builder: crate::dataset::EpisodeBuilder,
    obs: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    read: Option<agentry_models::gpt::Memory>,
    /// Incremental acting (`inference = "cache"`, a DT without retrieval): the
    /// backbone's KV cache and the tokens it holds.
    cache: Option<(crate::offline::BackboneState, usize)>,
    ret: f64,
    /// The last observed step ended the episode.
    done: bool,
    target: f64,
    device: Device,
}

impl<P: std::ops::Deref<Target = SeqPolicy> + Clone> InContextActor<P> {
    /// An actor with an empty memory. It reads the memory when `retrieve` and the
    /// policy has its embedding model; the return-to-go it aims at is the best return
    /// of the training tasks times `target_return` (a held-out goal is no training
    /// task: its tokens are scaled like the first task's).
    pub fn new(policy: P, retrieve: bool) -> Result<Self, AgentError> {
        let memory = RetrievalMemory::new(policy.config.d_model, IndexConfig::default())
            .map_err(memory_error)?;
        let target = policy.config.target_return
            * policy
                .set
                .tasks
                .iter()
                .map(|t| t.best_return)
                .fold(f64::NEG_INFINITY, f64::max);
        Ok(InContextActor {
            retrieve: retrieve && policy.embedder.is_some(),
            policy,
            memory,
            played: Vec::new(),
            builder: crate::dataset::EpisodeBuilder::new(0, false),
            obs: Vec::new(),
            actions: Vec::new(),
            rewards: Vec::new(),
            read: None,
            cache: None,
            ret: 0.0,
            done: false,
            target,
            device: agentry_models::cpu(),
        })
    }

    /// The policy it plays.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// Episodes filed into the memory so far.
    pub fn episodes(&self) -> usize {
        self.played.len()
    }

    /// The action at observation `obs` (`mask[a]`: legal): sampled with `rng` unless
    /// `greedy` (in-context learning needs the policy's own exploration: a greedy policy
    /// repeats one walk).
    pub fn act<R: rand::Rng + ?Sized>(
        &mut self,
        obs: &[f32],
        mask: Option<&[bool]>,
        greedy: bool,
        rng: &mut R,
    ) -> Result<usize, AgentError> {
        let policy = self.policy.clone();
        let (model, config, set) = (&policy.model, &policy.config, &policy.set);
        let family = &set.families[0];
        let step = self.actions.len();
        if self.rewards.len() < step {
            return Err(AgentError::Usage(
                "act called twice without the reward of the first action".into(),
            ));
        }
        self.obs.extend_from_slice(obs);
        let scale = set.tasks[0].scales();
        if policy.algo == "dt" && config.inference == crate::config::Inference::Cache {
            let row = self.cached_logits(&policy, scale);
            let a = crate::offline::choose(&row, mask, greedy, rng);
            self.actions.push(a as f32);
            return Ok(a);
        }
        let (b, last) = window(
            config,
            family,
            0,
            &self.played,
            &self.obs,
            &self.actions,
            &self.rewards,
            self.target,
            scale,
        );
        let r = &config.retrieval;
        if let Some(embedder) = policy.embedder.as_ref().filter(|_| self.retrieve)
            && !self.memory.is_empty()
            && step.is_multiple_of(r.retrieve_every)
        {
            let key = embedder.embed(config, set, &b, &self.device);
            let settings = RetrievalConfig {
                top_l: r.top_l,
                n: r.retrieved,
                dedup: Some(r.dedup as f32),
                w_ret: r.w_ret as f32,
                ..RetrievalConfig::default()
            };
            let query = Query {
                key: &key,
                trajectory: None,
                task: None,
            };
            let hits = self
                .memory
                .retrieve(&query, &settings)
                .map_err(memory_error)?;
            let mut mem = SeqBatch::empty(0, r.retrieved, 2 * r.chunk_len, family);
            for (j, hit) in hits.iter().enumerate() {
                let e = &self.played[hit.chunk.trajectory as usize];
                mem.fill_len(
                    j,
                    e,
                    hit.chunk.start as usize,
                    hit.chunk.len as usize,
                    family,
                    scale,
                    config.max_timestep,
                );
            }
            self.read = Some(model.memory(config, set, &mem, r.retrieved, &self.device));
        }
        let logits = model
            .logits_with_memory(config, set, &b, self.read.clone(), &self.device)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        let n = family.head_outputs();
        let row = &logits[last * n..(last + 1) * n];
        let a = crate::offline::choose(row, mask, greedy, rng);
        self.actions.push(a as f32);
        Ok(a)
    }

    /// The logits of the current step, acting incrementally: the new tokens (the last
    /// step's action and reward, this step's state and return-to-go) go through the KV
    /// cache. When the window is full or an episode starts (the cache is dropped at
    /// every episode's end) the cache is rebuilt from the last half of the window, so
    /// every output is what the training forward gives over a window starting at the
    /// rebuild, never one whose early tokens were computed from steps that have left it
    /// (nor a finished episode's tokens with the return-to-go it was played with rather
    /// than the one it earned). A DT whose context covers an episode never rebuilds
    /// within one: there it is exactly the window.
    fn cached_logits(&mut self, policy: &SeqPolicy, scale: Scales) -> Vec<f32> {
        let (model, config, set) = (&policy.model, &policy.config, &policy.set);
        let family = &set.families[0];
        let per = crate::offline::tokens_per_step(config);
        let k = config.context;
        let restart = self.actions.is_empty() && !config.across_episodes;
        let held = match &self.cache {
            Some((_, held)) if !restart && held + per <= k * per => Some(*held),
            _ => None,
        };
        let steps = if held.is_some() { 2 } else { (k / 2).max(1) };
        let part = SeqConfig {
            context: steps,
            ..config.clone()
        };
        let (b, last) = window(
            &part,
            family,
            0,
            &self.played,
            &self.obs,
            &self.actions,
            &self.rewards,
            self.target,
            scale,
        );
        let end = last * per + 2;
        let from = if held.is_some() { end - per } else { 0 };
        let d = config.d_model;
        let x = model
            .tokens(config, set, &b, &self.device)
            .slice([0..1, from..end, 0..d]);
        let mut state = match (held, self.cache.take()) {
            (Some(_), Some((state, _))) => state,
            _ => model.backbone.init_state(1, &self.device),
        };
        let h = model.backbone.step_many(x, &mut state);
        let n = end - from;
        let out = h.slice([0..1, n - 1..n, 0..d]).reshape([1, d]);
        self.cache = Some((state, held.map_or(end, |held| held + per)));
        model
            .head(0, out)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits")
    }

    /// What the last action earned, and whether the episode ended with it; an error
    /// when no action waits for its reward.
    pub fn observe(
        &mut self,
        reward: f64,
        terminated: bool,
        truncated: bool,
    ) -> Result<(), AgentError> {
        let t = self.rewards.len();
        let Some(&action) = self.actions.get(t) else {
            return Err(AgentError::Usage(
                "observe: no action is waiting for its reward (one observe per act)".into(),
            ));
        };
        let dim = self.policy.set.families[0].obs_dim();
        self.builder
            .act_f32(&self.obs[t * dim..(t + 1) * dim], &[action]);
        self.builder.outcome(reward as f32, terminated, truncated);
        self.rewards.push(reward as f32);
        self.ret += reward;
        self.done = terminated || truncated;
        Ok(())
    }

    /// File the episode played since the last call into the memory (its chunks keyed by
    /// the embedding model, its return their utility) and start the next; the episode's
    /// return. An episode cut before its end is filed as truncated.
    pub fn end_episode(&mut self) -> Result<f64, AgentError> {
        let ret = self.ret;
        // (An action without its reward never happened: the builder holds only the
        // steps that were observed.)
        if !self.builder.is_empty() {
            if !self.done {
                self.builder.cut();
            }
            let e = self.builder.take();
            let policy = self.policy.clone();
            if let Some(embedder) = policy.embedder.as_ref().filter(|_| self.retrieve) {
                let (config, set) = (&policy.config, &policy.set);
                let id = self.played.len() as u64;
                let chunks = chunks_of(&e, id, 0, config.retrieval.chunk_len);
                let keys = chunk_keys(embedder, config, set, &chunks, |_| (&e, 0), &self.device);
                self.memory
                    .insert_batch(&chunks, &keys)
                    .map_err(memory_error)?;
                self.memory
                    .set_utility(id, ret as f32)
                    .map_err(memory_error)?;
            }
            self.played.push(e);
        }
        self.obs.clear();
        self.actions.clear();
        self.rewards.clear();
        self.read = None;
        // The cache holds this episode's tokens as played (an action perhaps without its
        // reward, the return-to-go of the target): the next act rebuilds it from `played`.
        self.cache = None;
        self.ret = 0.0;
        self.done = false;
        Ok(ret)
    }
}

/// Play `episodes` consecutive episodes of `env` with `policy` (reading retrieved
/// sub-trajectories of its own earlier episodes when `retrieve`); the returns.
pub(crate) fn play_in_context(
    policy: &SeqPolicy,
    retrieve: bool,
    env_config: &EnvConfig,
    episodes: usize,
    seed: u64,
) -> Result<Vec<f64>, AgentError> {
    let dim = policy.set.families[0].obs_dim();
    let mut actor = InContextActor::new(policy, retrieve)?;
    let mut rng = <rand_pcg::Pcg64Mcg as rand::SeedableRng>::seed_from_u64(
        agentry_envs::derive_seed(seed, 0xAC7),
    );
    let mut env = registry::make(&env_config.name, &env_config.params)?;
    let mut returns = Vec::with_capacity(episodes);
    let (mut mask, mut extras) = (vec![], vec![]);
    for episode in 0..episodes {
        let mut o = vec![0f32; dim];
        env.reset_into(
            Some(agentry_envs::derive_seed(seed, episode as u64)),
            Out {
                obs: ObsMut::F32(&mut o),
                action_mask: &mut mask,
                extras: &mut extras,
            },
        )?;
        for step in 0usize.. {
            let a = actor.act(&o, None, policy.config.deterministic, &mut rng)?;
            let s = env.step_into(
                Action::Discrete(a),
                Out {
                    obs: ObsMut::F32(&mut o),
                    action_mask: &mut mask,
                    extras: &mut extras,
                },
            )?;
            actor.observe(s.reward, s.terminated, s.truncated)?;
            if s.done() || step >= 100_000 {
                break;
            }
        }
        returns.push(actor.end_episode()?);
    }
    Ok(returns)
}

/// The in-context evaluation: `episodes` consecutive episodes on each held-out goal,
/// the policy keeping what it played (its context or memory) from one episode to the
/// next. An RA-DT run plays with retrieval ([`RADT`]) and, as its own baseline, its
/// frozen plain DT without memory ([`FROZEN_DT`]); a DT run plays with its window
/// ([`DT`]: the current episode; [`AD`]: across the episodes, as it was trained).
pub fn evaluate_in_context(
    policy: &SeqPolicy,
    episodes: usize,
    seed: u64,
    goals: Option<usize>,
) -> Result<Vec<InContext>, AgentError> {
    let label = label(policy)?;
    // (label, policy, retrieve)
    let mut players: Vec<(&str, SeqPolicy, bool)> = Vec::new();
    if label == RADT {
        let embedder = policy.embedder.clone().ok_or_else(|| {
            AgentError::Usage(
                "this RA-DT run has not reached its retrieval phase yet (no embedding \
                 model): train it further"
                    .into(),
            )
        })?;
        players.push((RADT, policy.clone(), true));
        players.push((
            FROZEN_DT,
            SeqPolicy {
                model: embedder,
                embedder: None,
                ..policy.clone()
            },
            false,
        ));
    } else {
        if policy.config.task_embedding {
            return Err(AgentError::Usage(
                "the in-context evaluation plays held-out goals, which have no task \
                 embedding: train the DT with dt.task_embedding = false"
                    .into(),
            ));
        }
        players.push((label, policy.clone(), false));
    }
    let mut tasks = held_out_tasks(&policy.set)?;
    if let Some(g) = goals {
        tasks.truncate(g);
    }
    tasks
        .into_iter()
        .enumerate()
        .map(|(i, env)| {
            let seed = agentry_envs::derive_seed(seed, i as u64);
            let mut curves = std::collections::BTreeMap::new();
            for (label, player, retrieve) in &players {
                curves.insert(
                    label.to_string(),
                    play_in_context(player, *retrieve, &env, episodes, seed)?,
                );
            }
            Ok(InContext { env, curves })
        })
        .collect()
}

/// Mean and standard deviation over the tasks at each episode index.
pub fn curve(runs: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let n = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let xs: Vec<f64> = runs.iter().map(|r| r[i]).collect();
            crate::experiment::mean_std(&xs)
        })
        .collect()
}

/// Each label's curve over `results` (mean and std over the goals at each episode
/// index), in [`LABELS`] order.
pub fn curves(results: &[InContext]) -> Vec<(&'static str, Vec<(f64, f64)>)> {
    LABELS
        .iter()
        .filter_map(|&label| {
            let runs: Option<Vec<Vec<f64>>> = results
                .iter()
                .map(|r| r.curves.get(label).cloned())
                .collect();
            runs.filter(|r| !r.is_empty()).map(|r| (label, curve(&r)))
        })
        .collect()
}

/// Write `DIR/in_context.csv`: the episode index, then each label's mean and std over
/// the goals (`{label}_return_mean`, `{label}_return_std`).
pub fn write_curve(dir: &Path, results: &[InContext]) -> Result<(), AgentError> {
    let curves = curves(results);
    let mut text = String::from("episode");
    for (label, _) in &curves {
        text.push_str(&format!(",{label}_return_mean,{label}_return_std"));
    }
    text.push('\n');
    let n = curves.iter().map(|c| c.1.len()).min().unwrap_or(0);
    for i in 0..n {
        text.push_str(&(i + 1).to_string());
        for (_, c) in &curves {
            text.push_str(&format!(",{},{}", c[i].0, c[i].1));
        }
        text.push('\n');
    }
    crate::checkpoint::write_atomic(&dir.join("in_context.csv"), text.as_bytes())
}
