//! Tabular Q-learning with optimistic initial values, for worlds with few distinct
//! observations (Dark-Room, the corridor, tic-tac-toe).
//!
//! One table entry per (observation, action): observations are told apart by their
//! exact values, so any environment works whose episodes visit a small set of them; a
//! continuous one fills the table and stops with an error that says so. Every entry
//! starts at `initial_q`; an optimistic start makes the greedy policy try each action of
//! each state it meets before settling, so on Dark-Room it sweeps the room, finds the
//! goal within a few episodes and walks straight to it a few dozen episodes later
//! (Sutton & Barto 2018, §2.6 and §6.5).
//!
//! Its purpose here is the source of learning histories for in-context learners
//! (`agent collect --learner q-learning`, [`record_history`]): Algorithm Distillation
//! and RA-DT can only distil the speed their histories show, and a learner that
//! improves within tens of episodes gives histories whose windows show that progress.
//!
//! ```
//! use agentry_agents::config::EnvConfig;
//! use agentry_agents::tabular::{QLearningOptions, learn_history};
//! let env = EnvConfig { name: "dark-room".into(), params: Default::default() };
//! let history = learn_history(&env, 30, &QLearningOptions::default(), 1, 0, 1000).unwrap();
//! assert_eq!(history.returns.len(), 30);
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use agentry_envs::{Action, Env, EnvExt, EnvRng, Observation, Space, derive_seed, rng_from_seed};
use rand::RngExt;
use serde::Serialize;

use crate::bandits::Argmax;
use crate::config::EnvConfig;
use crate::dataset::{DatasetMeta, EpisodeBuilder, META_FORMAT, Source, write_dataset};
use crate::error::AgentError;
use crate::ppo::ActionKind;
use agentry_memory::dataset::EpisodeRecord;

/// The algorithm name datasets and reports carry.
pub const Q_LEARNING: &str = "q-learning";

/// Q-learning's settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QLearningOptions {
    /// Step size α ∈ (0, 1].
    pub alpha: f64,
    /// Discount γ ∈ [0, 1].
    pub gamma: f64,
    /// The value every entry starts at (optimism drives the exploration).
    pub initial_q: f64,
    /// Probability of a uniformly random legal action at each step.
    pub epsilon: f64,
    /// The most distinct observations the table may hold.
    pub max_states: usize,
}

impl Default for QLearningOptions {
    /// α = 0.5, γ = 0.99, Q₀ = 1, no random actions, at most 100 000 observations: on
    /// Dark-Room 10×10 the mean return rises from about 10 in the first 10 episodes to
    /// about 50–60 by episodes 31–40.
    fn default() -> Self {
        QLearningOptions {
            alpha: 0.5,
            gamma: 0.99,
            initial_q: 1.0,
            epsilon: 0.0,
            max_states: 100_000,
        }
    }
}

impl QLearningOptions {
    fn check(&self) -> Result<(), AgentError> {
        let bad = |what: String| Err(AgentError::Usage(format!("q-learning: {what}")));
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return bad(format!("alpha = {} must lie in (0, 1]", self.alpha));
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return bad(format!("gamma = {} must lie in [0, 1]", self.gamma));
        }
        if !self.initial_q.is_finite() {
            return bad(format!("initial_q = {} must be finite", self.initial_q));
        }
        if !(0.0..=1.0).contains(&self.epsilon) {
            return bad(format!("epsilon = {} must lie in [0, 1]", self.epsilon));
        }
        if self.max_states == 0 {
            return bad("max_states must be at least 1".into());
        }
        Ok(())
    }
}

/// A Q-table over the observations met so far.
#[derive(Clone, Debug)]
pub struct QTable {
    actions: usize,
    opts: QLearningOptions,
    index: HashMap<Vec<u32>, usize>,
    q: Vec<f64>,
    key: Vec<u32>,
    rng: EnvRng,
}

impl QTable {
    /// An empty table for `actions` discrete actions.
    pub fn new(actions: usize, opts: QLearningOptions, seed: u64) -> Result<Self, AgentError> {
        opts.check()?;
        if actions == 0 {
            return Err(AgentError::Usage(
                "q-learning needs at least one action".into(),
            ));
        }
        Ok(QTable {
            actions,
            opts,
            index: HashMap::new(),
            q: Vec::new(),
            key: Vec::new(),
            rng: rng_from_seed(seed),
        })
    }

    /// Distinct observations met so far.
    pub fn states(&self) -> usize {
        self.index.len()
    }

    /// The value of `action` in `obs`, if `obs` has been met.
    pub fn value(&self, obs: &Observation, action: usize) -> Option<f64> {
        let key = key_of(obs, Vec::new());
        self.index
            .get(&key)
            .map(|&s| self.q[s * self.actions + action])
    }

    /// The row of `obs`, added (at `initial_q`) when it is new.
    fn state(&mut self, obs: &Observation) -> Result<usize, AgentError> {
        self.key = key_of(obs, std::mem::take(&mut self.key));
        if let Some(&s) = self.index.get(&self.key) {
            return Ok(s);
        }
        let s = self.index.len();
        if s >= self.opts.max_states {
            return Err(AgentError::Usage(format!(
                "q-learning met more than {} distinct observations: the environment is too \
                 large (or continuous) for a table",
                self.opts.max_states
            )));
        }
        self.index.insert(self.key.clone(), s);
        self.q
            .extend(std::iter::repeat_n(self.opts.initial_q, self.actions));
        Ok(s)
    }

    /// ε-greedy over the legal actions (all when `mask` is `None`), ties at random.
    pub fn act(&mut self, obs: &Observation, mask: Option<&[bool]>) -> Result<usize, AgentError> {
        let s = self.state(obs)?;
        let legal = |a: usize| is_legal(mask, a);
        if self.opts.epsilon > 0.0 && self.rng.random::<f64>() < self.opts.epsilon {
            let n = (0..self.actions).filter(|&a| legal(a)).count();
            if n > 0 {
                let k = self.rng.random_range(0..n);
                return Ok((0..self.actions).filter(|&a| legal(a)).nth(k).unwrap_or(0));
            }
        }
        let mut best = Argmax::new();
        let row = &self.q[s * self.actions..(s + 1) * self.actions];
        for (a, &v) in row.iter().enumerate().filter(|&(a, _)| legal(a)) {
            best.offer(a, v, &mut self.rng);
        }
        Ok(best.best)
    }

    /// One Q-learning update: Q(s, a) += α (r + γ max_a' Q(s', a') − Q(s, a)), without
    /// the bootstrap when the episode `terminated` (a truncated one bootstraps), the
    /// maximum over the next state's legal actions.
    pub fn learn(
        &mut self,
        obs: &Observation,
        action: usize,
        reward: f64,
        next: &Observation,
        next_mask: Option<&[bool]>,
        terminated: bool,
    ) -> Result<(), AgentError> {
        if action >= self.actions {
            return Err(AgentError::Usage(format!(
                "action {action} outside the table's {} actions",
                self.actions
            )));
        }
        let s = self.state(obs)?;
        let bootstrap = if terminated {
            0.0
        } else {
            let n = self.state(next)?;
            let row = &self.q[n * self.actions..(n + 1) * self.actions];
            let best = (0..self.actions)
                .filter(|&a| is_legal(next_mask, a))
                .map(|a| row[a])
                .fold(f64::NEG_INFINITY, f64::max);
            // No legal action next: nothing to bootstrap from.
            if best.is_finite() { best } else { 0.0 }
        };
        let q = &mut self.q[s * self.actions + action];
        *q += self.opts.alpha * (reward + self.opts.gamma * bootstrap - *q);
        Ok(())
    }
}

/// Whether `mask` (none: every action legal) allows action `a`.
fn is_legal(mask: Option<&[bool]>, a: usize) -> bool {
    mask.is_none_or(|m| m.get(a).copied().unwrap_or(false))
}

/// The exact bits of an observation's values, as a table key.
fn key_of(obs: &Observation, mut key: Vec<u32>) -> Vec<u32> {
    key.clear();
    match obs {
        // +0.0 and −0.0 are one observation.
        Observation::F32(x) => key.extend(x.iter().map(|v| (v + 0.0).to_bits())),
        Observation::U8(x) => key.extend(x.iter().map(|&v| v as u32)),
    }
    key
}

/// A learner's episodes, in the order it played them, and their returns.
#[derive(Clone, Debug)]
pub struct LearnedHistory {
    /// Every episode, as a dataset records it.
    pub episodes: Vec<EpisodeRecord>,
    /// Each episode's return.
    pub returns: Vec<f64>,
    /// Distinct observations in the table at the end.
    pub states: usize,
}

/// Train a fresh Q-table on `env` for `episodes` episodes (the first reset seeded by
/// `seed`), recording every episode with task number `task`; an episode the environment
/// has not ended after `max_steps` steps is cut there (truncated).
pub fn learn_history(
    env: &EnvConfig,
    episodes: usize,
    opts: &QLearningOptions,
    seed: u64,
    task: u32,
    max_steps: u64,
) -> Result<LearnedHistory, AgentError> {
    let mut e = agentry_envs::registry::make(&env.name, &env.params)?;
    let actions = match e.action_space() {
        Space::Discrete(n) => *n,
        other => {
            return Err(AgentError::Usage(format!(
                "q-learning acts in Discrete action spaces; `{}` has {other:?}",
                env.name
            )));
        }
    };
    let mut table = QTable::new(actions, opts.clone(), derive_seed(seed, 0x7AB))?;
    let u8_obs = e.observation_space().dtype() == agentry_envs::Dtype::U8;
    let mut builder = EpisodeBuilder::new(task, u8_obs);
    let mut out = LearnedHistory {
        episodes: Vec::with_capacity(episodes),
        returns: Vec::with_capacity(episodes),
        states: 0,
    };
    for i in 0..episodes {
        let (mut obs, mut info) = e.reset((i == 0).then_some(seed))?;
        let mut ret = 0.0;
        for step in 1.. {
            let a = table.act(&obs, info.action_mask.as_deref())?;
            match &obs {
                Observation::F32(x) => builder.act_f32(x, &[a as f32]),
                Observation::U8(x) => builder.act_u8(x, &[a as f32]),
            }
            let t = e.step(Action::Discrete(a))?;
            table.learn(
                &obs,
                a,
                t.reward,
                &t.obs,
                t.info.action_mask.as_deref(),
                t.terminated,
            )?;
            let cut = !t.terminated && step >= max_steps;
            builder.outcome(t.reward as f32, t.terminated, t.truncated || cut);
            ret += t.reward;
            if t.terminated || t.truncated || cut {
                break;
            }
            (obs, info) = (t.obs, t.info);
        }
        out.episodes.push(builder.take());
        out.returns.push(ret);
    }
    out.states = table.states();
    Ok(out)
}

/// What [`record_history`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryReport {
    /// The dataset file.
    pub path: PathBuf,
    /// Steps recorded.
    pub steps: usize,
    /// Each episode's return, in order.
    pub returns: Vec<f64>,
    /// Distinct observations the table ended with.
    pub states: usize,
}

/// [`learn_history`], written as the dataset file `out` (every episode, in order; its
/// source names the learner, its settings and seed).
pub fn record_history(
    env: &EnvConfig,
    episodes: usize,
    opts: &QLearningOptions,
    seed: u64,
    task: u32,
    max_steps: u64,
    out: &Path,
) -> Result<HistoryReport, AgentError> {
    if episodes == 0 || max_steps == 0 {
        return Err(AgentError::Usage(
            "--episodes and --max-steps must be at least 1".into(),
        ));
    }
    let history = learn_history(env, episodes, opts, seed, task, max_steps)?;
    let probe = agentry_envs::registry::make(&env.name, &env.params)?;
    let obs_space = probe.observation_space().clone();
    let meta = DatasetMeta {
        format: META_FORMAT.into(),
        env: env.clone(),
        task,
        source: Source::Learner {
            algo: Q_LEARNING.into(),
            settings: serde_json::to_value(opts).expect("the settings serialise"),
            seed,
        },
        obs_shape: obs_space.shape(),
        action: ActionKind::of(probe.action_space(), probe.action_mask_len())?,
        expert_return: None,
        random_return: None,
    };
    write_dataset(out, &obs_space, &meta, &history.episodes)?;
    Ok(HistoryReport {
        path: out.to_path_buf(),
        steps: history.episodes.iter().map(|e| e.len()).sum(),
        returns: history.returns,
        states: history.states,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentry_envs::Params;

    fn dark_room(goal: &str) -> EnvConfig {
        EnvConfig {
            name: "dark-room".into(),
            params: Params::parse_assignments(&[format!("goal={goal}")]).unwrap(),
        }
    }

    fn mean(x: &[f64]) -> f64 {
        x.iter().sum::<f64>() / x.len() as f64
    }

    /// The property the histories are for: on Dark-Room the returns rise within tens
    /// of episodes, from a few in the first ten to over half the optimum by the fourth
    /// ten (goal (7, 6): 13 steps from the start, so the best return is 88).
    #[test]
    fn optimistic_q_learning_finds_the_dark_room_goal_within_tens_of_episodes() {
        let env = dark_room("[7, 6]");
        let opts = QLearningOptions::default();
        let mut first = Vec::new();
        let mut fourth = Vec::new();
        for seed in 1..=3 {
            let h = learn_history(&env, 40, &opts, seed, 0, 1000).unwrap();
            assert_eq!(h.episodes.len(), 40);
            assert!(h.episodes.iter().all(|e| e.len() == 100));
            assert!(h.states >= 50, "{} cells visited", h.states);
            first.push(mean(&h.returns[..10]));
            fourth.push(mean(&h.returns[30..]));
        }
        let (first, fourth) = (mean(&first), mean(&fourth));
        // Seeds 1–3 give 8.2 and 49.7; a uniformly random walk scores under 1.
        assert!(first < 20.0, "episodes 1–10: {first}");
        assert!(fourth > 40.0, "episodes 31–40: {fourth} (from {first})");
    }

    #[test]
    fn the_table_applies_the_q_learning_update() {
        let opts = QLearningOptions {
            alpha: 0.5,
            gamma: 0.9,
            initial_q: 2.0,
            ..QLearningOptions::default()
        };
        let mut t = QTable::new(2, opts, 0).unwrap();
        let (s, s2) = (Observation::F32(vec![0.0]), Observation::F32(vec![1.0]));
        t.learn(&s, 1, 1.0, &s2, None, false).unwrap();
        // 2 + 0.5 (1 + 0.9 · 2 − 2) = 2.4
        assert!((t.value(&s, 1).unwrap() - 2.4).abs() < 1e-12);
        assert_eq!(t.value(&s, 0), Some(2.0));
        // Terminated: no bootstrap; 2.4 + 0.5 (1 − 2.4) = 1.7.
        t.learn(&s, 1, 1.0, &s2, None, true).unwrap();
        assert!((t.value(&s, 1).unwrap() - 1.7).abs() < 1e-12);
        // −0.0 is the same observation as +0.0.
        assert_eq!(t.act(&Observation::F32(vec![-0.0]), None).unwrap(), 0);
        assert_eq!(t.states(), 2);
        // The bootstrap's maximum is over the next state's legal actions only.
        t.learn(&s2, 0, 0.0, &s, Some(&[false, true]), false)
            .unwrap();
        // 2 + 0.5 (0 + 0.9 · 1.7 − 2) = 1.765
        assert!((t.value(&s2, 0).unwrap() - 1.765).abs() < 1e-12);
    }

    #[test]
    fn masked_actions_are_never_chosen() {
        let mut t = QTable::new(9, QLearningOptions::default(), 3).unwrap();
        let obs = Observation::U8(vec![1, 2, 3]);
        let mask = [false, true, false, false, true, false, false, false, false];
        for _ in 0..50 {
            let a = t.act(&obs, Some(&mask)).unwrap();
            assert!(a == 1 || a == 4);
        }
    }

    #[test]
    fn bad_settings_and_environments_are_named() {
        let bad = QLearningOptions {
            alpha: 0.0,
            ..QLearningOptions::default()
        };
        let e = QTable::new(2, bad, 0).unwrap_err().to_string();
        assert!(e.contains("alpha"), "{e}");
        let small = QLearningOptions {
            max_states: 50,
            ..QLearningOptions::default()
        };
        let e = learn_history(&dark_room("[9, 9]"), 5, &small, 1, 0, 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 50 distinct observations"), "{e}");
        let pendulum = EnvConfig {
            name: "pendulum".into(),
            params: Default::default(),
        };
        let e = learn_history(&pendulum, 1, &QLearningOptions::default(), 1, 0, 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Discrete"), "{e}");
    }

    #[test]
    fn a_recorded_history_reads_back_in_order() {
        let dir = std::env::temp_dir().join(format!("agentry-qhist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("goal.agds");
        let env = dark_room("[3, 4]");
        let report =
            record_history(&env, 12, &QLearningOptions::default(), 5, 0, 1000, &path).unwrap();
        assert_eq!(report.steps, 1200);
        let again = learn_history(&env, 12, &QLearningOptions::default(), 5, 0, 1000).unwrap();
        assert_eq!(report.returns, again.returns, "seeded: the same history");
        let info = crate::dataset::dataset_info(&path).unwrap();
        assert_eq!(info.meta.env, env);
        assert!(
            matches!(info.meta.source, Source::Learner { ref algo, seed: 5, .. } if algo == Q_LEARNING)
        );
        let episodes = agentry_memory::dataset::read_all(&path).unwrap().1;
        let returns: Vec<f64> = episodes
            .iter()
            .map(|e| e.rewards.iter().map(|&r| r as f64).sum())
            .collect();
        assert_eq!(returns, report.returns);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
