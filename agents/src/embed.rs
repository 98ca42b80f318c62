//! Trained agents inside your own program: load a policy, then `act` every frame.
//!
//! [`Agent`] is the one type an embedding program needs. It loads any policy agentry
//! trains (PPO, DQN/Rainbow with or without macro-actions, LRAM, DT, RA-DT) from a run
//! directory or from one exported file (`agent export`), and turns an observation into
//! an action of the environment's action space:
//!
//! ```no_run
//! use agentry_agents::embed::Agent;
//! use agentry_envs::{make, Action, EnvExt, Params};
//!
//! let mut agent = Agent::load("runs/cartpole-ppo")?; // or "policy.agentry"
//! let mut env = make("cartpole", &Params::new())?;
//! let (mut obs, _) = env.reset(Some(0))?;
//! loop {
//!     let action = agent.act(&obs)?.into_owned();
//!     let step = env.step(action.as_action())?;
//!     agent.observe(step.reward)?; // what the action earned (sequence models read it)
//!     if step.terminated || step.truncated {
//!         break;
//!     }
//!     obs = step.obs;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What an `Agent` does and does not do
//! - **Greedy or sampled.** [`act`](Agent::act) is greedy (argmax, the Gaussian's mean);
//!   [`sample`](Agent::sample) draws from the policy with a generator you pass, so a
//!   seeded game replays exactly. DQN's "sampled" action is ε-greedy with the ε the
//!   policy was saved with. Both have `_masked` forms for games with illegal moves.
//! - **State.** Sequence models (LRAM, DT, RA-DT) condition on the episode so far: call
//!   [`observe`](Agent::observe) with the reward of every action, and
//!   [`reset_state`](Agent::reset_state) when an episode ends. Acting twice without
//!   observing is an error for them (it would silently desynchronise the model's
//!   context). RA-DT also keeps a retrieval memory of its own finished episodes
//!   (filed by `reset_state`; [`clear_memory`](Agent::clear_memory) empties it) and
//!   reads it while it acts — the in-context learning of its evaluation, which needs
//!   [`sample`](Agent::sample): a greedy policy repeats one walk. Feed-forward policies
//!   ignore both, except that a DQN policy with
//!   macro-actions plays a chosen macro's actions over the next calls and
//!   `reset_state` drops the rest of it.
//! - **No training code, no autodiff, no locks.** MLP and Nature-CNN policies (PPO,
//!   DQN, Rainbow) run a plain-Rust copy of their weights on the calling thread and
//!   allocate nothing per call once the first call has sized the buffers (the
//!   allocation count is measured by `agent bench inference`). LRAM and DT policies
//!   with vector observations run plain-Rust copies too (the step kernels
//!   `XLstmWeights` / `GptWeights`; token by token with `inference = "cache"`, the
//!   window re-run from a fresh backbone per action with `"window"`), on the calling
//!   thread, allocating nothing per call (see [`use_kernels`](Agent::use_kernels)).
//!   The other sequence models (RA-DT, image observations) run
//!   burn's CPU backend without autodiff; they allocate per call, and burn's backend
//!   may run a large product on rayon's global thread pool, which it starts on first
//!   use (set `RAYON_NUM_THREADS=1` before the first call to keep it to one thread).
//!   Nothing else starts a thread.
//! - **Threads.** `Agent` is `Send` (move it to the thread that runs your game loop);
//!   `act` takes `&mut self`, so one agent serves one caller at a time: give each
//!   thread its own (`Clone`).
//! - **Bad input is an error, never a panic**: an observation of the wrong width, a
//!   mask of the wrong length, a mask with no legal action, an unreadable file.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentry_envs::Action;
use rand::SeedableRng;

use crate::checkpoint::Sections;
use crate::config::EnvConfig;
use crate::dqn::{QPolicy, QWorkspace};
use crate::error::AgentError;
use crate::offline::{SEQ_LEARNER, SEQ_POLICY, SeqActor, SeqKernels, SeqPolicy};
use crate::ppo::{ActMode, ActionKind, PpoPolicy, Workspace};
use crate::radt::InContextActor;
use crate::train::{self, LoadedPolicy, Policy, PolicyMeta};

/// An observation an [`Agent`] reads: `f32` features or `u8` pixels, flat.
#[derive(Clone, Copy, Debug)]
pub enum ObsView<'a> {
    /// Feature vectors (classic control, grid-worlds, bandits, board games).
    F32(&'a [f32]),
    /// Pixels (Atari frame stacks), read as their values 0–255.
    U8(&'a [u8]),
}

/// Anything that can be read as an observation: `&[f32]`, `&[u8]`, vectors and arrays
/// of either, and an environment's [`Observation`](agentry_envs::Observation).
pub trait AsObs {
    /// The observation's values.
    fn view(&self) -> ObsView<'_>;
}

impl AsObs for [f32] {
    fn view(&self) -> ObsView<'_> {
        ObsView::F32(self)
    }
}
impl AsObs for [u8] {
    fn view(&self) -> ObsView<'_> {
        ObsView::U8(self)
    }
}
impl AsObs for Vec<f32> {
    fn view(&self) -> ObsView<'_> {
        ObsView::F32(self)
    }
}
impl AsObs for Vec<u8> {
    fn view(&self) -> ObsView<'_> {
        ObsView::U8(self)
    }
}
impl<const N: usize> AsObs for [f32; N] {
    fn view(&self) -> ObsView<'_> {
        ObsView::F32(self)
    }
}
impl<const N: usize> AsObs for [u8; N] {
    fn view(&self) -> ObsView<'_> {
        ObsView::U8(self)
    }
}
impl AsObs for agentry_envs::Observation {
    fn view(&self) -> ObsView<'_> {
        match self {
            agentry_envs::Observation::F32(v) => ObsView::F32(v),
            agentry_envs::Observation::U8(v) => ObsView::U8(v),
        }
    }
}
impl<T: AsObs + ?Sized> AsObs for &T {
    fn view(&self) -> ObsView<'_> {
        (**self).view()
    }
}

/// What an [`Agent`] is: the algorithm, the spaces it acts in, where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentInfo {
    /// The algorithm that trained it (`ppo`, `dqn`, `rainbow`, `lram`, `dt`, `radt`).
    pub algo: String,
    /// The environment it was trained on (a sequence model: its current task's).
    pub env: EnvConfig,
    /// Observation width (flat).
    pub obs_dim: usize,
    /// The action space it acts in (macro-actions are played as their primitive
    /// actions, so this is the environment's own action space).
    pub action: ActionKind,
    /// Whether it carries state across calls ([`Agent::observe`] and
    /// [`Agent::reset_state`] matter).
    pub recurrent: bool,
    /// Training behind it: env steps (online learners) or updates (offline ones).
    pub trained_steps: u64,
    /// The file it was loaded from.
    pub source: PathBuf,
}

/// A trained policy, ready to act; see the [module docs](self).
pub struct Agent {
    info: AgentInfo,
    brain: Brain,
    /// `u8` observations as `f32` (the networks' input type).
    obs: Vec<f32>,
    /// The last action's values (continuous actions are returned from here).
    action: Vec<f32>,
    /// A mask extended over macro-actions.
    mask: Vec<bool>,
    /// A generator for the greedy paths, whose signatures take one (never drawn from).
    greedy_rng: rand_pcg::Pcg64Mcg,
}

#[derive(Clone)]
enum Brain {
    Ppo {
        policy: Box<PpoPolicy>,
        ws: Box<Workspace>,
    },
    Q {
        policy: Box<QPolicy>,
        ws: Box<QWorkspace>,
        /// The rest of the macro being played, next action first.
        pending: VecDeque<usize>,
    },
    /// RA-DT: the window of the current episode and a retrieval memory of the earlier
    /// ones.
    InContext {
        actor: Box<InContextActor<Arc<SeqPolicy>>>,
        /// An error filing the last episode, returned by the next `act`.
        failed: Option<String>,
    },
    Seq {
        actor: Box<SeqActor<Arc<SeqPolicy>>>,
        policy: Arc<SeqPolicy>,
        task: usize,
        target: f64,
        /// An action was chosen and its reward not yet observed.
        awaiting: bool,
    },
}

/// A copy with its own state and buffers, sized as [`Agent::load`] sizes them (a
/// derived clone would drop the reserved room for macros and widened masks, and the
/// copy's first macro would allocate).
impl Clone for Agent {
    fn clone(&self) -> Agent {
        let mut brain = self.brain.clone();
        if let Brain::Q {
            policy, pending, ..
        } = &mut brain
        {
            pending.reserve(policy.macros.iter().map(Vec::len).max().unwrap_or(0));
        }
        let mut mask = Vec::with_capacity(self.mask.capacity());
        mask.extend_from_slice(&self.mask);
        Agent {
            info: self.info.clone(),
            brain,
            obs: self.obs.clone(),
            action: self.action.clone(),
            mask,
            greedy_rng: self.greedy_rng.clone(),
        }
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("info", &self.info).finish()
    }
}

impl Agent {
    /// Load the newest policy of a run directory, or a policy file: an exported one
    /// (`agent export`), a run's `checkpoints/policy-N.agentry`, or an offline run's
    /// `checkpoints/learner-N.agentry`.
    pub fn load(path: impl AsRef<Path>) -> Result<Agent, AgentError> {
        let path = path.as_ref();
        if path.is_dir() {
            return Agent::from_run(path);
        }
        Agent::from_file(path)
    }

    /// The newest policy of a run directory (online or offline).
    pub fn from_run(dir: &Path) -> Result<Agent, AgentError> {
        let config = train::read_config(dir)?;
        if crate::config::is_offline(&config.run.algo) {
            let policy = crate::offline::load_run(dir)?;
            let rd = train::RunDir::new(dir);
            let (steps, source) = rd.latest("learner")?.unwrap_or((0, dir.to_path_buf()));
            return Agent::from_seq(policy, steps, source);
        }
        Ok(Agent::from_policy(train::load_run_policy(dir)?))
    }

    /// A policy file of any kind agentry writes; an unknown kind or a damaged file is
    /// an error naming the file and what is wrong.
    pub fn from_file(path: &Path) -> Result<Agent, AgentError> {
        let s = Sections::read(path)?;
        match s.kind.as_str() {
            SEQ_POLICY => {
                let steps = s
                    .get("trained_steps")
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_le_bytes);
                Agent::from_seq(SeqPolicy::from_sections(s, path)?, steps, path.into())
            }
            SEQ_LEARNER => {
                let dir = path
                    .parent()
                    .and_then(Path::parent)
                    .filter(|d| d.join("config.toml").exists())
                    .ok_or_else(|| {
                        AgentError::checkpoint(
                            path,
                            "is an offline learner checkpoint outside its run directory: \
                             load the run directory, or export it (agent export --run DIR)",
                        )
                    })?;
                Agent::from_run(dir)
            }
            _ => Ok(Agent::from_policy(train::load_policy(path)?)),
        }
    }

    /// An agent from a loaded online policy (PPO, DQN, Rainbow).
    pub fn from_policy(loaded: LoadedPolicy) -> Agent {
        let LoadedPolicy { path, meta, policy } = loaded;
        let PolicyMeta {
            algo,
            env,
            env_steps,
        } = meta;
        let (brain, action) = match policy {
            Policy::Ppo(p) => {
                let action = p.action.clone();
                let ws = Box::new(p.workspace());
                (
                    Brain::Ppo {
                        policy: Box::new(p),
                        ws,
                    },
                    action,
                )
            }
            Policy::Q(q) => {
                let action = ActionKind::Discrete {
                    n: q.actions - q.macros.len(),
                    masked: q.masked,
                };
                let ws = Box::new(q.workspace());
                // Sized now: the first macro played must not allocate mid-game.
                let longest = q.macros.iter().map(Vec::len).max().unwrap_or(0);
                (
                    Brain::Q {
                        policy: Box::new(q),
                        ws,
                        pending: VecDeque::with_capacity(longest),
                    },
                    action,
                )
            }
        };
        let obs_dim = match &brain {
            Brain::Ppo { policy, .. } => policy.obs_dim,
            Brain::Q { policy, .. } => policy.obs_dim,
            Brain::Seq { .. } | Brain::InContext { .. } => unreachable!("built above"),
        };
        Agent::assemble(
            AgentInfo {
                algo,
                env,
                obs_dim,
                action,
                recurrent: false,
                trained_steps: env_steps,
                source: path,
            },
            brain,
        )
    }

    /// An agent from a sequence policy (LRAM, DT, RA-DT), acting in its first task
    /// from the return-to-go its configuration sets (see [`set_task`](Self::set_task)).
    pub fn from_seq(
        policy: SeqPolicy,
        trained_steps: u64,
        source: PathBuf,
    ) -> Result<Agent, AgentError> {
        if policy.set.tasks.is_empty() {
            return Err(AgentError::checkpoint(&source, "holds a model of no task"));
        }
        let policy = Arc::new(policy);
        let task = 0;
        let target = policy.set.tasks[task].target(policy.config.target_return);
        let info = seq_info(&policy, task, trained_steps, source);
        // RA-DT, and an AD-style DT (`dt.across_episodes`) whose context runs on across
        // its own episodes, act as their in-context evaluation does (one discrete
        // environment family); every other sequence model restarts its context per episode.
        let across = policy.config.across_episodes
            && policy.set.families.len() == 1
            && matches!(policy.set.families[0].action, ActionKind::Discrete { .. });
        if policy.algo == "radt" || across {
            let actor = Box::new(InContextActor::new(policy, true)?);
            return Ok(Agent::assemble(
                info,
                Brain::InContext {
                    actor,
                    failed: None,
                },
            ));
        }
        // Plain-Rust acting where the kernels cover the model, burn otherwise.
        let actor = Box::new(match SeqKernels::new(&policy.model, &policy.config) {
            Some(kernels) => {
                SeqActor::with_kernels(policy.clone(), Arc::new(kernels), task, target)
            }
            None => SeqActor::new(policy.clone(), task, target),
        });
        Ok(Agent::assemble(
            info,
            Brain::Seq {
                actor,
                policy,
                task,
                target,
                awaiting: false,
            },
        ))
    }

    fn assemble(info: AgentInfo, brain: Brain) -> Agent {
        let outputs = info.action.outputs().max(1);
        let widened_mask = match &brain {
            Brain::Q { policy, .. } if !policy.macros.is_empty() => policy.actions,
            _ => 0,
        };
        Agent {
            obs: vec![0.0; info.obs_dim],
            action: vec![0.0; outputs],
            mask: Vec::with_capacity(widened_mask),
            greedy_rng: rand_pcg::Pcg64Mcg::seed_from_u64(0),
            info,
            brain,
        }
    }

    /// What it is and what it acts in.
    pub fn info(&self) -> &AgentInfo {
        &self.info
    }

    /// The greedy action for `obs`.
    pub fn act<O: AsObs + ?Sized>(&mut self, obs: &O) -> Result<Action<'_>, AgentError> {
        let mut rng = self.greedy_rng.clone();
        self.decide(obs.view(), None, None::<&mut rand_pcg::Pcg64Mcg>, &mut rng)
    }

    /// The greedy action for `obs` among the legal ones (`mask[a]`: action `a` is legal).
    pub fn act_masked<O: AsObs + ?Sized>(
        &mut self,
        obs: &O,
        mask: &[bool],
    ) -> Result<Action<'_>, AgentError> {
        let mut rng = self.greedy_rng.clone();
        self.decide(
            obs.view(),
            Some(mask),
            None::<&mut rand_pcg::Pcg64Mcg>,
            &mut rng,
        )
    }

    /// An action drawn from the policy at `obs` with `rng`.
    pub fn sample<O: AsObs + ?Sized, R: rand::Rng>(
        &mut self,
        obs: &O,
        rng: &mut R,
    ) -> Result<Action<'_>, AgentError> {
        let mut spare = self.greedy_rng.clone();
        self.decide(obs.view(), None, Some(rng), &mut spare)
    }

    /// An action drawn from the policy at `obs` among the legal ones.
    pub fn sample_masked<O: AsObs + ?Sized, R: rand::Rng>(
        &mut self,
        obs: &O,
        mask: &[bool],
        rng: &mut R,
    ) -> Result<Action<'_>, AgentError> {
        let mut spare = self.greedy_rng.clone();
        self.decide(obs.view(), Some(mask), Some(rng), &mut spare)
    }

    /// Tell the agent what its last action earned. Sequence models feed it into their
    /// context (and must get it before the next `act`); other policies ignore it.
    pub fn observe(&mut self, reward: f64) -> Result<(), AgentError> {
        if !reward.is_finite() {
            return Err(AgentError::Usage(format!(
                "observe: the reward {reward} is not a finite number"
            )));
        }
        if let Brain::InContext { actor, .. } = &mut self.brain {
            return actor.observe(reward, false, false);
        }
        if let Brain::Seq {
            actor, awaiting, ..
        } = &mut self.brain
        {
            if !*awaiting {
                return Err(AgentError::Usage(
                    "observe: no action is waiting for its reward (call act first; one \
                     observe per act)"
                        .into(),
                ));
            }
            actor.observe(&self.action, reward);
            *awaiting = false;
        }
        Ok(())
    }

    /// Start a new episode: a sequence model forgets its context and aims at its
    /// target return again; a macro being played is dropped. RA-DT files the episode
    /// into its retrieval memory, which the next episodes read (in-context learning;
    /// [`clear_memory`](Self::clear_memory) empties it).
    pub fn reset_state(&mut self) {
        match &mut self.brain {
            Brain::Ppo { .. } => {}
            Brain::InContext { actor, failed } => {
                if let Err(e) = actor.end_episode() {
                    *failed = Some(e.to_string());
                }
            }
            Brain::Q { pending, .. } => pending.clear(),
            Brain::Seq {
                actor,
                task,
                target,
                awaiting,
                ..
            } => {
                actor.restart(*task, *target);
                *awaiting = false;
            }
        }
    }

    /// Start a new episode with an empty memory: RA-DT forgets every earlier episode;
    /// other policies do what [`reset_state`](Self::reset_state) does.
    pub fn clear_memory(&mut self) -> Result<(), AgentError> {
        if let Brain::InContext { actor, failed } = &mut self.brain {
            let policy = actor.policy().clone();
            **actor = InContextActor::new(policy, true)?;
            *failed = None;
            return Ok(());
        }
        self.reset_state();
        Ok(())
    }

    /// Episodes in RA-DT's retrieval memory, or in the context of an AD-style DT
    /// (`dt.across_episodes`); 0 for other policies.
    pub fn remembered_episodes(&self) -> usize {
        match &self.brain {
            Brain::InContext { actor, .. } => actor.episodes(),
            _ => 0,
        }
    }

    /// The tasks a sequence model was trained on (an online policy: its one
    /// environment), by name.
    pub fn tasks(&self) -> Vec<String> {
        match &self.brain {
            Brain::Seq { policy, .. } => policy.set.tasks.iter().map(|t| t.name()).collect(),
            Brain::InContext { actor, .. } => {
                actor.policy().set.tasks.iter().map(|t| t.name()).collect()
            }
            _ => vec![self.info.env.name.clone()],
        }
    }

    /// Act in task `task` of a sequence model (its index in [`tasks`](Self::tasks))
    /// from the return-to-go the configuration sets for it; resets the state. An
    /// online policy has only task 0.
    pub fn set_task(&mut self, task: usize) -> Result<(), AgentError> {
        let count = self.tasks().len();
        if task >= count {
            return Err(AgentError::Usage(format!(
                "task {task} does not exist: this policy has {count} task(s): {}",
                self.tasks().join(", ")
            )));
        }
        if let Brain::Seq {
            policy,
            task: t,
            target,
            ..
        } = &mut self.brain
        {
            *t = task;
            *target = policy.set.tasks[task].target(policy.config.target_return);
            self.info = seq_info(
                policy,
                task,
                self.info.trained_steps,
                self.info.source.clone(),
            );
            self.obs = vec![0.0; self.info.obs_dim];
            self.action = vec![0.0; self.info.action.outputs().max(1)];
        }
        self.reset_state();
        Ok(())
    }

    /// Act through the plain-Rust step kernels (`true`, what [`load`](Self::load)
    /// chooses wherever they cover the model) or through burn (`false`); starts a new
    /// episode ([`reset_state`](Self::reset_state)). Returns whether the kernels are in
    /// use: only sequence models (LRAM, DT) with vector observations run on them (either
    /// `inference` setting); RA-DT and image encoders stay on burn, and online policies
    /// always run plain Rust.
    pub fn use_kernels(&mut self, on: bool) -> bool {
        let Brain::Seq {
            actor,
            policy,
            task,
            target,
            ..
        } = &mut self.brain
        else {
            return matches!(self.brain, Brain::Ppo { .. } | Brain::Q { .. });
        };
        **actor = match on
            .then(|| SeqKernels::new(&policy.model, &policy.config))
            .flatten()
        {
            Some(k) => SeqActor::with_kernels(policy.clone(), Arc::new(k), *task, *target),
            None => SeqActor::new(policy.clone(), *task, *target),
        };
        let fast = actor.is_plain_rust();
        self.reset_state();
        fast
    }

    /// Condition a sequence model on return-to-go `target` from the next episode on
    /// (resets the state); other policies ignore it.
    pub fn set_target_return(&mut self, target: f64) -> Result<(), AgentError> {
        if !target.is_finite() {
            return Err(AgentError::Usage(format!(
                "the target return {target} is not a finite number"
            )));
        }
        if let Brain::Seq { target: t, .. } = &mut self.brain {
            *t = target;
        }
        self.reset_state();
        Ok(())
    }

    fn decide<R: rand::Rng>(
        &mut self,
        obs: ObsView<'_>,
        mask: Option<&[bool]>,
        rng: Option<&mut R>,
        spare: &mut rand_pcg::Pcg64Mcg,
    ) -> Result<Action<'_>, AgentError> {
        let dim = self.info.obs_dim;
        let got = match obs {
            ObsView::F32(v) => v.len(),
            ObsView::U8(v) => v.len(),
        };
        if got != dim {
            return Err(AgentError::Usage(format!(
                "the observation has {got} values; this policy reads {dim} (trained on {})",
                self.info.env.name
            )));
        }
        let obs: &[f32] = match obs {
            ObsView::F32(v) => {
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(AgentError::Usage(format!(
                        "the observation's value {i} is {}: not a finite number",
                        v[i]
                    )));
                }
                v
            }
            ObsView::U8(v) => {
                for (f, &b) in self.obs.iter_mut().zip(v) {
                    *f = b as f32;
                }
                &self.obs
            }
        };
        let n = match &self.info.action {
            ActionKind::Discrete { n, .. } => Some(*n),
            ActionKind::Continuous { .. } => None,
        };
        if let Some(m) = mask {
            match n {
                Some(n) if m.len() == n => {}
                Some(n) => {
                    return Err(AgentError::Usage(format!(
                        "the mask has {} entries; the action space has {n} actions",
                        m.len()
                    )));
                }
                None => {
                    return Err(AgentError::Usage(
                        "a mask was given, but this policy's actions are continuous".into(),
                    ));
                }
            }
            if !m.contains(&true) {
                return Err(AgentError::Usage(
                    "the mask allows no action: there is nothing to choose".into(),
                ));
            }
        }
        let greedy = rng.is_none();
        let mode = if greedy {
            ActMode::Deterministic
        } else {
            ActMode::Sample
        };
        match &mut self.brain {
            Brain::Ppo { policy, ws } => {
                let acted = match rng {
                    Some(rng) => policy.act(obs, mask, mode, rng, ws),
                    None => policy.act(obs, mask, mode, spare, ws),
                };
                Ok(match &policy.action {
                    ActionKind::Discrete { .. } => Action::Discrete(acted.index),
                    ActionKind::Continuous { low, high } => {
                        for (j, a) in self.action.iter_mut().enumerate() {
                            *a = ws.action[j].clamp(low[j], high[j]);
                        }
                        Action::Continuous(&self.action)
                    }
                })
            }
            Brain::Q {
                policy,
                ws,
                pending,
            } => {
                let primitives = policy.actions - policy.macros.len();
                // The macro being played goes on while its next action is legal.
                if let Some(&next) = pending.front() {
                    if mask.is_none_or(|m| m[next]) {
                        pending.pop_front();
                        return Ok(Action::Discrete(next));
                    }
                    pending.clear();
                }
                let mask = match mask {
                    Some(m) if !policy.macros.is_empty() => {
                        self.mask.clear();
                        self.mask.extend_from_slice(m);
                        self.mask.extend(policy.macros.iter().map(|mac| m[mac[0]]));
                        Some(&self.mask[..])
                    }
                    other => other,
                };
                let chosen = match rng {
                    Some(rng) => policy.act(obs, mask, mode, rng, ws),
                    None => policy.act(obs, mask, mode, spare, ws),
                };
                if chosen < primitives {
                    return Ok(Action::Discrete(chosen));
                }
                let actions = &policy.macros[chosen - primitives];
                pending.extend(&actions[1..]);
                Ok(Action::Discrete(actions[0]))
            }
            Brain::InContext { actor, failed } => {
                if let Some(e) = failed.take() {
                    return Err(AgentError::Invalid(format!(
                        "filing the last episode into the retrieval memory: {e}"
                    )));
                }
                let a = match rng {
                    Some(rng) => actor.act(obs, mask, false, rng)?,
                    None => actor.act(obs, mask, true, spare)?,
                };
                Ok(Action::Discrete(a))
            }
            Brain::Seq {
                actor, awaiting, ..
            } => {
                if *awaiting {
                    return Err(AgentError::Usage(
                        "act called twice without observe: a sequence model needs the \
                         reward of each action (agent.observe(reward)) before the next"
                            .into(),
                    ));
                }
                let mut values = std::mem::take(&mut self.action);
                match rng {
                    Some(rng) => actor.act(obs, mask, false, rng, &mut values),
                    None => actor.act(obs, mask, true, spare, &mut values),
                }
                self.action = values;
                *awaiting = true;
                Ok(match &self.info.action {
                    ActionKind::Discrete { .. } => Action::Discrete(self.action[0] as usize),
                    ActionKind::Continuous { .. } => Action::Continuous(&self.action),
                })
            }
        }
    }
}

/// The [`AgentInfo`] of task `task` of a sequence policy.
fn seq_info(policy: &SeqPolicy, task: usize, trained_steps: u64, source: PathBuf) -> AgentInfo {
    let t = &policy.set.tasks[task];
    let family = &policy.set.families[t.family];
    AgentInfo {
        algo: policy.algo.clone(),
        env: t.env.clone(),
        obs_dim: family.obs_dim(),
        action: family.action.clone(),
        recurrent: true,
        trained_steps,
        source,
    }
}

/// Write the newest policy of run `dir` as one self-contained file (`agent export`):
/// the acting weights, architecture, observation normaliser, action space and the
/// run's metadata, in the versioned, checksummed container (written atomically). An
/// offline run's file holds its model without the optimizer.
pub fn export(dir: &Path, out: &Path) -> Result<ExportReport, AgentError> {
    let config = train::read_config(dir)?;
    let rd = train::RunDir::new(dir);
    let (kind, steps, mut s) = if crate::config::is_offline(&config.run.algo) {
        let policy = crate::offline::load_run(dir)?;
        let (steps, _) = rd.latest("learner")?.unwrap_or((0, PathBuf::new()));
        let mut s = policy.to_sections()?;
        s.put("trained_steps", steps.to_le_bytes().to_vec());
        (SEQ_POLICY.to_string(), steps, s)
    } else {
        // Through the loader: a policy file lost in a crash is restored from its
        // learner checkpoint, and whatever is exported has been checked.
        let loaded = train::load_run_policy(dir)?;
        let s = Sections::read(&loaded.path)?;
        (s.kind.clone(), loaded.meta.env_steps, s)
    };
    let exported = serde_json::json!({
        "agentry": env!("CARGO_PKG_VERSION"),
        "run": dir.display().to_string(),
        "algo": config.run.algo,
        "trained_steps": steps,
    });
    s.put("exported", exported.to_string().into_bytes());
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
    }
    s.write_atomic(out)?;
    let bytes = std::fs::metadata(out)
        .map_err(|e| AgentError::io(out, e))?
        .len();
    Ok(ExportReport {
        path: out.to_path_buf(),
        kind,
        algo: config.run.algo,
        trained_steps: steps,
        bytes,
    })
}

/// What [`export`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportReport {
    /// The file.
    pub path: PathBuf,
    /// Its record kind (`ppo-policy`, `q-policy`, `seq-policy`).
    pub kind: String,
    /// The algorithm.
    pub algo: String,
    /// Env steps (online) or updates (offline) of training behind it.
    pub trained_steps: u64,
    /// Its size.
    pub bytes: u64,
}
