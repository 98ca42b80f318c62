//! Recording trajectory datasets: from a trained policy (`agent collect`) or from every
//! episode of a training run (a learning history).
//!
//! The file format is [`agentry_memory::dataset`]'s; this module fills its metadata
//! with a [`DatasetMeta`] (JSON): the environment and its parameters, where the
//! episodes came from, the observation shape and action space, and two reference
//! returns that offline learners report normalised scores against — the recorded
//! policy's mean return (`expert_return`, 1 on the normalised scale) and a uniformly
//! random policy's over as many episodes (`random_return`, 0).
//!
//! **Learning histories** (`run.record_history = true`): every episode any actor
//! finishes is recorded, in the order (checkpoint segment, actor, environment copy,
//! completion). At each checkpoint the episodes finished since the last one are
//! written to `DIR/history/part-{env_steps:012}.agds`, before the checkpoint itself, so
//! a resumed run deletes the parts written after its checkpoint and records from there
//! on: the history on disk always matches the checkpoints. Episodes still running at a
//! checkpoint are recorded in the segment in which they end; a resumed run starts
//! fresh episodes, so those of a crashed session that had not ended are lost with it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentry_envs::vector::{VecAction, VecBuffers, VecEnv};
use agentry_envs::{EnvError, Space};
use agentry_memory::dataset::{
    DatasetHeader, DatasetReader, DatasetWriter, EpisodeRecord, ObsType, Observations,
};
use serde::{Deserialize, Serialize};

use crate::config::EnvConfig;
use crate::error::AgentError;
use crate::ppo::ActionKind;

/// The `format` value of [`DatasetMeta`].
pub const META_FORMAT: &str = "agentry-dataset";

/// Where a dataset's episodes came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Played by a trained policy (`agent collect`).
    Policy {
        /// The run directory or policy file.
        path: String,
        /// Its algorithm.
        algo: String,
        /// Its training env steps.
        env_steps: u64,
        /// Probability of a uniformly random action at each step.
        epsilon: f64,
        /// Greedy actions (else sampled from the policy).
        deterministic: bool,
        /// The seed of the episodes.
        seed: u64,
    },
    /// Every episode of a training run, in order.
    History {
        /// The run directory.
        run: String,
        /// Its algorithm.
        algo: String,
        /// Env steps at the start of this part.
        from_env_steps: u64,
        /// Env steps at its end.
        to_env_steps: u64,
    },
    /// Every episode of a learner trained from scratch while recording (`agent
    /// collect --learner`, [`crate::tabular`]), in order.
    Learner {
        /// Its algorithm.
        algo: String,
        /// Its settings.
        settings: serde_json::Value,
        /// The seed of its run.
        seed: u64,
    },
}

/// The metadata agentry writes into a dataset file (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetMeta {
    /// Always [`META_FORMAT`].
    pub format: String,
    /// The environment the episodes were played in.
    pub env: EnvConfig,
    /// The task number the episodes carry.
    pub task: u32,
    /// Where they came from.
    pub source: Source,
    /// The shape of one observation.
    pub obs_shape: Vec<usize>,
    /// The action space.
    pub action: ActionKind,
    /// Mean return of the recorded policy's episodes (normalised score 1).
    pub expert_return: Option<f64>,
    /// Mean return of a uniformly random policy (normalised score 0).
    pub random_return: Option<f64>,
}

impl DatasetMeta {
    /// `(return − random) / (expert − random)`, when both references are known and
    /// differ.
    pub fn normalised(&self, ret: f64) -> Option<f64> {
        let (e, r) = (self.expert_return?, self.random_return?);
        ((e - r).abs() > 1e-9).then(|| (ret - r) / (e - r))
    }
}

/// A dataset file's header and metadata, read without its episodes.
#[derive(Clone, Debug)]
pub struct DatasetInfo {
    /// The file.
    pub path: PathBuf,
    /// Its header.
    pub header: DatasetHeader,
    /// Its metadata.
    pub meta: DatasetMeta,
    /// Episodes it holds.
    pub episodes: u64,
    /// Steps it holds.
    pub steps: u64,
}

/// Open `path` and read its metadata.
pub fn dataset_info(path: &Path) -> Result<DatasetInfo, AgentError> {
    let r = DatasetReader::open(path).map_err(|e| AgentError::Usage(e.to_string()))?;
    let meta: DatasetMeta = serde_json::from_str(&r.header().meta).map_err(|e| {
        AgentError::Usage(format!(
            "{}: its metadata is not an agentry dataset description: {e}",
            path.display()
        ))
    })?;
    if meta.format != META_FORMAT {
        return Err(AgentError::Usage(format!(
            "{}: metadata format `{}`, expected `{META_FORMAT}`",
            path.display(),
            meta.format
        )));
    }
    Ok(DatasetInfo {
        path: path.to_path_buf(),
        header: r.header().clone(),
        meta,
        episodes: r.counts().episodes,
        steps: r.counts().steps,
    })
}

/// The dataset files `paths` name: files as given, directories expanded to the
/// `*.agds` files inside them (sorted), so a learning history's directory is one path.
pub fn dataset_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, AgentError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = fs::read_dir(p)
                .map_err(|e| AgentError::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "agds"))
                .collect();
            if inside.is_empty() {
                return Err(AgentError::Usage(format!(
                    "{} holds no dataset files (*.agds)",
                    p.display()
                )));
            }
            inside.sort();
            out.extend(inside);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(AgentError::Usage(format!(
                "dataset {} does not exist",
                p.display()
            )));
        }
    }
    Ok(out)
}

/// The header of a dataset of `obs` observations and `action` actions.
pub(crate) fn header_for(
    obs: &Space,
    action: &ActionKind,
    meta: &DatasetMeta,
) -> Result<DatasetHeader, AgentError> {
    Ok(DatasetHeader {
        obs_type: match obs.dtype() {
            agentry_envs::Dtype::U8 => ObsType::U8,
            agentry_envs::Dtype::F32 => ObsType::F32,
        },
        obs_dim: obs.flat_dim(),
        action_dim: action_dim(action),
        meta: serde_json::to_string(meta).expect("dataset metadata serialises"),
    })
}

/// Values per recorded action: 1 for a discrete action, the dimension otherwise.
pub fn action_dim(action: &ActionKind) -> usize {
    match action {
        ActionKind::Discrete { .. } => 1,
        ActionKind::Continuous { low, .. } => low.len(),
    }
}

/// One episode being recorded step by step.
#[derive(Clone, Debug)]
pub(crate) struct EpisodeBuilder {
    task: u32,
    obs_f32: Vec<f32>,
    obs_u8: Vec<u8>,
    u8_obs: bool,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
}

impl EpisodeBuilder {
    pub(crate) fn new(task: u32, u8_obs: bool) -> Self {
        EpisodeBuilder {
            task,
            obs_f32: Vec::new(),
            obs_u8: Vec::new(),
            u8_obs,
            actions: Vec::new(),
            rewards: Vec::new(),
            terminated: Vec::new(),
            truncated: Vec::new(),
        }
    }

    /// The observation acted on and the action taken.
    pub(crate) fn act_f32(&mut self, obs: &[f32], action: &[f32]) {
        self.obs_f32.extend_from_slice(obs);
        self.actions.extend_from_slice(action);
    }

    /// [`act_f32`](Self::act_f32) for byte observations.
    pub(crate) fn act_u8(&mut self, obs: &[u8], action: &[f32]) {
        self.obs_u8.extend_from_slice(obs);
        self.actions.extend_from_slice(action);
    }

    /// What the step gave.
    pub(crate) fn outcome(&mut self, reward: f32, terminated: bool, truncated: bool) {
        self.rewards.push(reward);
        self.terminated.push(terminated);
        self.truncated.push(truncated);
    }

    /// Mark the last step as cut (an evaluation's step limit).
    pub(crate) fn cut(&mut self) {
        if let Some(t) = self.truncated.last_mut() {
            *t = true;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    /// The finished episode; the builder starts the next one empty.
    pub(crate) fn take(&mut self) -> EpisodeRecord {
        let obs = if self.u8_obs {
            Observations::U8(std::mem::take(&mut self.obs_u8))
        } else {
            Observations::F32(std::mem::take(&mut self.obs_f32))
        };
        EpisodeRecord {
            task: self.task,
            obs,
            actions: std::mem::take(&mut self.actions),
            rewards: std::mem::take(&mut self.rewards),
            terminated: std::mem::take(&mut self.terminated),
            truncated: std::mem::take(&mut self.truncated),
        }
    }
}

/// What an evaluation records and how it perturbs actions (`agent collect`).
pub(crate) struct Tap {
    /// Probability of replacing the policy's action by a uniformly random one.
    pub(crate) epsilon: f64,
    /// Record episodes (else only act).
    pub(crate) record: bool,
    pub(crate) current: EpisodeBuilder,
    pub(crate) episodes: Vec<EpisodeRecord>,
}

/// Episodes finished by the actors since the last drain, keyed by (actor, order).
#[derive(Default)]
pub(crate) struct HistorySink {
    episodes: Vec<(usize, u64, EpisodeRecord)>,
}

impl HistorySink {
    /// Everything finished since the last drain, in (actor, completion) order.
    pub(crate) fn drain(&mut self) -> Vec<EpisodeRecord> {
        let mut all = std::mem::take(&mut self.episodes);
        all.sort_by_key(|(actor, seq, _)| (*actor, *seq));
        all.into_iter().map(|(_, _, e)| e).collect()
    }
}

/// A vector environment that records every episode its copies finish into a shared
/// [`HistorySink`]: the observation each action was taken in, the action, the reward
/// and the flags.
pub(crate) struct Recorder {
    inner: Box<dyn VecEnv>,
    actor: usize,
    seq: u64,
    lanes: Vec<EpisodeBuilder>,
    action_dim: usize,
    sink: Arc<Mutex<HistorySink>>,
}

impl Recorder {
    pub(crate) fn new(
        inner: Box<dyn VecEnv>,
        actor: usize,
        task: u32,
        sink: Arc<Mutex<HistorySink>>,
    ) -> Self {
        let u8_obs = inner.observation_space().dtype() == agentry_envs::Dtype::U8;
        let action_dim = match inner.action_space() {
            Space::Discrete(_) => 1,
            s => s.flat_dim(),
        };
        let lanes = (0..inner.num_envs())
            .map(|_| EpisodeBuilder::new(task, u8_obs))
            .collect();
        Recorder {
            inner,
            actor,
            seq: 0,
            lanes,
            action_dim,
            sink,
        }
    }
}

impl VecEnv for Recorder {
    fn num_envs(&self) -> usize {
        self.inner.num_envs()
    }

    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }

    fn action_space(&self) -> &Space {
        self.inner.action_space()
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<&VecBuffers, EnvError> {
        // Episodes cut by a reset are not whole: drop them.
        for lane in &mut self.lanes {
            lane.take();
        }
        self.inner.reset(seed)
    }

    fn step(&mut self, actions: VecAction<'_>) -> Result<&VecBuffers, EnvError> {
        {
            let b = self.inner.buffers();
            let dim = b.obs_dim();
            let ad = self.action_dim;
            let mut act = [0f32; 64];
            for (i, lane) in self.lanes.iter_mut().enumerate() {
                let a: &[f32] = match actions {
                    VecAction::Discrete(a) => {
                        act[0] = a.get(i).copied().unwrap_or(0) as f32;
                        &act[..1]
                    }
                    VecAction::MultiDiscrete(a) => {
                        let n = ad.min(64);
                        for (j, v) in act[..n].iter_mut().enumerate() {
                            *v = a.get(i * ad + j).copied().unwrap_or(0) as f32;
                        }
                        &act[..n]
                    }
                    VecAction::Continuous(a) => a.get(i * ad..(i + 1) * ad).unwrap_or(&[]),
                };
                if let Some(o) = b.obs().as_f32() {
                    lane.act_f32(&o[i * dim..(i + 1) * dim], a);
                } else if let Some(o) = b.obs().as_u8() {
                    lane.act_u8(&o[i * dim..(i + 1) * dim], a);
                }
            }
        }
        let result = self.inner.step(actions);
        match result {
            Ok(b) => {
                let mut finished = Vec::new();
                for (i, lane) in self.lanes.iter_mut().enumerate() {
                    let (te, tr) = (b.terminated()[i], b.truncated()[i]);
                    lane.outcome(b.rewards()[i], te, tr);
                    if te || tr {
                        finished.push((self.actor, self.seq, lane.take()));
                        self.seq += 1;
                    }
                }
                if !finished.is_empty() {
                    let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
                    sink.episodes.extend(finished);
                }
                Ok(self.inner.buffers())
            }
            Err(e) => {
                for lane in &mut self.lanes {
                    lane.take();
                }
                Err(e)
            }
        }
    }

    fn buffers(&self) -> &VecBuffers {
        self.inner.buffers()
    }
}

/// The directory a run's learning history goes into.
pub fn history_dir(run: &Path) -> PathBuf {
    run.join("history")
}

fn part_path(run: &Path, env_steps: u64) -> PathBuf {
    history_dir(run).join(format!("part-{env_steps:012}.agds"))
}

/// The env step a history part ends at, from its file name.
fn part_step(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("part-")?
        .strip_suffix(".agds")?
        .parse()
        .ok()
}

/// Delete the history parts that end after `env_steps` (a resumed run's checkpoint),
/// or all of them (`None`, a run started again); returns the step the last kept part
/// ends at.
pub(crate) fn trim_history(run: &Path, env_steps: Option<u64>) -> Result<u64, AgentError> {
    let dir = history_dir(run);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(AgentError::io(&dir, e)),
    };
    let mut last = 0;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // A temporary file of a write a crash interrupted.
        if name.starts_with(".part-") {
            let _ = fs::remove_file(&path);
            continue;
        }
        match (part_step(&path), env_steps) {
            (Some(s), Some(limit)) if s <= limit => last = last.max(s),
            (Some(_), _) => fs::remove_file(&path).map_err(|e| AgentError::io(&path, e))?,
            (None, _) => {}
        }
    }
    Ok(last)
}

/// Write the episodes finished in `(from, to]` env steps as a history part.
pub(crate) fn write_history_part(
    run: &Path,
    meta: &DatasetMeta,
    obs: &Space,
    episodes: &[EpisodeRecord],
) -> Result<(), AgentError> {
    let Source::History { to_env_steps, .. } = meta.source else {
        unreachable!("history parts carry a history source")
    };
    let dir = history_dir(run);
    fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
    let path = part_path(run, to_env_steps);
    let header = header_for(obs, &meta.action, meta)?;
    let mut w =
        DatasetWriter::create(&path, header).map_err(|e| AgentError::Invalid(e.to_string()))?;
    for e in episodes {
        w.push(e).map_err(|e| AgentError::Invalid(e.to_string()))?;
    }
    w.finish().map_err(|e| AgentError::Invalid(e.to_string()))?;
    Ok(())
}

/// Write `episodes` as a dataset file at `out`.
pub(crate) fn write_dataset(
    out: &Path,
    obs: &Space,
    meta: &DatasetMeta,
    episodes: &[EpisodeRecord],
) -> Result<(), AgentError> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| AgentError::io(dir, e))?;
    }
    let header = header_for(obs, &meta.action, meta)?;
    let mut w =
        DatasetWriter::create(out, header).map_err(|e| AgentError::Invalid(e.to_string()))?;
    for e in episodes {
        w.push(e).map_err(|e| AgentError::Invalid(e.to_string()))?;
    }
    w.finish().map_err(|e| AgentError::Invalid(e.to_string()))?;
    Ok(())
}

/// What `agent collect` does.
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// Episodes to record.
    pub episodes: usize,
    /// Probability of a uniformly random (legal) action at each step.
    pub epsilon: f64,
    /// Greedy actions (else sampled from the policy).
    pub deterministic: bool,
    /// Seed of the episodes and of sampling.
    pub seed: u64,
    /// The task number the episodes carry.
    pub task: u32,
    /// An episode is cut (`truncated`) after this many steps.
    pub max_steps: u64,
    /// Episodes of a uniformly random policy played for `random_return` (0: none).
    pub random_episodes: usize,
    /// Episodes the policy plays for `expert_return`: the recorded ones and, when this
    /// is larger, more (a reference from a few episodes of a stochastic game is noisy).
    pub reference_episodes: usize,
}

/// What `agent collect` recorded.
#[derive(Clone, Debug, Serialize)]
pub struct CollectReport {
    /// The dataset file.
    pub path: PathBuf,
    /// Episodes recorded.
    pub episodes: usize,
    /// Steps recorded.
    pub steps: usize,
    /// Mean return of the policy over `max(episodes, reference_episodes)` episodes.
    pub return_mean: f64,
    /// Mean return of a random policy.
    pub random_return: Option<f64>,
}

/// Record `opts.episodes` episodes of `loaded` in its environment (or `env`) into the
/// dataset file `out`, with a random policy's mean return beside them.
pub fn collect(
    loaded: &crate::train::LoadedPolicy,
    env: Option<&EnvConfig>,
    opts: &CollectOptions,
    out: &Path,
) -> Result<CollectReport, AgentError> {
    if !(0.0..=1.0).contains(&opts.epsilon) {
        return Err(AgentError::Usage(format!(
            "--epsilon {} is not a probability in [0, 1]",
            opts.epsilon
        )));
    }
    if opts.episodes == 0 {
        return Err(AgentError::Usage("--episodes must be at least 1".into()));
    }
    let env_config = env.unwrap_or(&loaded.meta.env).clone();
    let make = || agentry_envs::registry::make(&env_config.name, &env_config.params);
    let probe = make()?;
    let obs_space = probe.observation_space().clone();
    let action = ActionKind::of(probe.action_space(), probe.action_mask_len())?;
    let u8_obs = obs_space.dtype() == agentry_envs::Dtype::U8;
    let eval = crate::train::EvalOptions {
        episodes: opts.episodes.max(opts.reference_episodes),
        deterministic: opts.deterministic,
        seed: opts.seed,
        max_steps: opts.max_steps,
    };
    let mut tap = Tap {
        epsilon: opts.epsilon,
        record: true,
        current: EpisodeBuilder::new(opts.task, u8_obs),
        episodes: Vec::with_capacity(opts.episodes),
    };
    let report =
        crate::train::evaluate_in(loaded, probe, &env_config, &eval, None, Some(&mut tap))?;
    let random_return = if opts.random_episodes > 0 {
        let mut random = Tap {
            epsilon: 1.0,
            record: false,
            current: EpisodeBuilder::new(opts.task, u8_obs),
            episodes: Vec::new(),
        };
        let eval = crate::train::EvalOptions {
            episodes: opts.random_episodes,
            seed: agentry_envs::derive_seed(opts.seed, 0x5A4D),
            ..eval
        };
        let r = crate::train::evaluate_in(
            loaded,
            make()?,
            &env_config,
            &eval,
            None,
            Some(&mut random),
        )?;
        Some(r.return_mean)
    } else {
        None
    };
    let meta = DatasetMeta {
        format: META_FORMAT.into(),
        env: env_config.clone(),
        task: opts.task,
        source: Source::Policy {
            path: loaded.path.display().to_string(),
            algo: loaded.meta.algo.clone(),
            env_steps: loaded.meta.env_steps,
            epsilon: opts.epsilon,
            deterministic: opts.deterministic,
            seed: opts.seed,
        },
        obs_shape: obs_space.shape(),
        action,
        expert_return: Some(report.return_mean),
        random_return,
    };
    // The first `episodes` are recorded; the rest only refine the reference.
    tap.episodes.truncate(opts.episodes);
    write_dataset(out, &obs_space, &meta, &tap.episodes)?;
    Ok(CollectReport {
        path: out.to_path_buf(),
        episodes: tap.episodes.len(),
        steps: tap.episodes.iter().map(|e| e.len()).sum(),
        return_mean: report.return_mean,
        random_return,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{ConfigRequest, resolve};
    use crate::ppo::ActMode;
    use crate::runner::{Control, RunState};
    use crate::train::{Observer, Policy, Silent, Start, load_run_policy, read_summary, train};
    use agentry_memory::dataset::read_all;
    use rand::SeedableRng;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("agentry-data-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn config(env: &str, steps: u64, sets: &[&str]) -> crate::config::Config {
        resolve(&ConfigRequest {
            env: Some(env.into()),
            steps: Some(steps),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..ConfigRequest::default()
        })
        .unwrap()
    }

    /// Stops a run at its first update at or past this many steps.
    pub(crate) struct StopAt(pub(crate) u64);
    impl Observer for StopAt {
        fn update(&mut self, state: &RunState, _: &[String], _: &[f64]) -> Control {
            if state.env_steps >= self.0 {
                Control::Stop
            } else {
                Control::Continue
            }
        }
    }

    fn parts(dir: &Path) -> Vec<(u64, PathBuf)> {
        let mut out: Vec<_> = fs::read_dir(history_dir(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| part_step(&p).map(|s| (s, p)))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_learning_history_holds_every_episode_across_a_resume() {
        let cfg = config(
            "cartpole",
            8192,
            &[
                "run.checkpoint_interval=2048",
                "run.record_history=true",
                "run.actors=2",
            ],
        );
        let dir = temp_dir("history");
        let first = train(
            Start::New {
                config: Box::new(cfg.clone()),
                out: Some(dir.clone()),
            },
            &mut StopAt(5000),
        )
        .unwrap();
        assert!(first.stopped);
        let kept: Vec<u64> = parts(&dir).iter().map(|(s, _)| *s).collect();
        assert_eq!(kept, vec![2048, 4096]);
        let before: Vec<Vec<u8>> = parts(&dir)
            .iter()
            .map(|(_, p)| fs::read(p).unwrap())
            .collect();
        // A crash after a part was written but before its checkpoint leaves a part
        // past the last checkpoint: the resumed run must drop it.
        fs::copy(&parts(&dir)[1].1, part_path(&dir, 4100)).unwrap();
        train(
            Start::Resume {
                dir: dir.clone(),
                steps: None,
            },
            &mut Silent,
        )
        .unwrap();
        let all = parts(&dir);
        let steps: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, vec![2048, 4096, 6144, 8192]);
        for (i, old) in before.iter().enumerate() {
            assert_eq!(&fs::read(&all[i].1).unwrap(), old, "part {i} rewritten");
        }
        let summary = read_summary(&dir).unwrap().unwrap();
        let mut episodes = 0;
        let mut from = 0;
        for (step, path) in &all {
            let info = dataset_info(path).unwrap();
            let Source::History {
                from_env_steps,
                to_env_steps,
                ..
            } = info.meta.source
            else {
                panic!("a history part's source")
            };
            assert_eq!((from_env_steps, to_env_steps), (from, *step));
            from = *step;
            let (header, eps) = read_all(path).unwrap();
            assert_eq!((header.obs_dim, header.action_dim), (4, 1));
            for e in &eps {
                let last = e.len() - 1;
                assert!(e.terminated[last] || e.truncated[last]);
                assert!(e.terminated[..last].iter().all(|&t| !t));
                assert!(e.actions.iter().all(|&a| a == 0.0 || a == 1.0));
                // CartPole pays 1 per step.
                assert_eq!(e.ret(), e.len() as f64);
            }
            episodes += eps.len() as u64;
        }
        assert_eq!(
            episodes, summary.episodes,
            "every counted episode is recorded"
        );
    }

    #[test]
    fn collected_episodes_are_what_the_policy_did() {
        let dir = temp_dir("collect");
        let cfg = config("cartpole", 4096, &[]);
        train(
            Start::New {
                config: Box::new(cfg),
                out: Some(dir.clone()),
            },
            &mut Silent,
        )
        .unwrap();
        let loaded = load_run_policy(&dir).unwrap();
        let out = dir.join("data/cartpole.agds");
        let opts = CollectOptions {
            episodes: 6,
            epsilon: 0.0,
            deterministic: true,
            seed: 3,
            task: 2,
            max_steps: 200,
            random_episodes: 10,
            reference_episodes: 0,
        };
        let report = collect(&loaded, None, &opts, &out).unwrap();
        let info = dataset_info(&out).unwrap();
        assert_eq!(info.episodes, 6);
        assert_eq!(info.meta.task, 2);
        assert_eq!(info.meta.expert_return, Some(report.return_mean));
        let random = info.meta.random_return.unwrap();
        assert!(
            (8.0..40.0).contains(&random),
            "random CartPole return {random}"
        );
        let (_, eps) = read_all(&out).unwrap();
        let mean = eps.iter().map(|e| e.ret()).sum::<f64>() / 6.0;
        assert!((mean - report.return_mean).abs() < 1e-9);
        // Greedy actions are a function of the recorded observation.
        let Policy::Ppo(p) = &loaded.policy else {
            panic!("a PPO policy")
        };
        let mut ws = p.workspace();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
        let mut row = Vec::new();
        for e in &eps {
            assert_eq!(e.task, 2);
            assert!(e.len() <= 200);
            for t in 0..e.len() {
                row.clear();
                e.obs.row_into(t, 4, &mut row);
                let a = p
                    .act(&row, None, ActMode::Deterministic, &mut rng, &mut ws)
                    .index;
                assert_eq!(a as f32, e.actions[t], "step {t}");
            }
        }
        // Bad options are usage errors.
        let bad = CollectOptions {
            epsilon: 1.5,
            ..opts.clone()
        };
        assert!(matches!(
            collect(&loaded, None, &bad, &out),
            Err(AgentError::Usage(_))
        ));
    }

    #[test]
    fn random_actions_respect_legal_moves() {
        let dir = temp_dir("collect-ttt");
        let cfg = config("tictactoe", 512, &[]);
        train(
            Start::New {
                config: Box::new(cfg),
                out: Some(dir.clone()),
            },
            &mut Silent,
        )
        .unwrap();
        let loaded = load_run_policy(&dir).unwrap();
        let out = dir.join("ttt.agds");
        let opts = CollectOptions {
            episodes: 30,
            epsilon: 1.0,
            deterministic: false,
            seed: 0,
            task: 0,
            max_steps: 100,
            random_episodes: 0,
            reference_episodes: 40,
        };
        // An illegal move would end collection with the environment's error.
        let report = collect(&loaded, None, &opts, &out).unwrap();
        assert_eq!(report.episodes, 30);
        assert_eq!(dataset_info(&out).unwrap().meta.random_return, None);
        let (_, eps) = read_all(&out).unwrap();
        let mut seen = [false; 9];
        for e in &eps {
            for &a in &e.actions {
                seen[a as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "uniform moves reach every square");
    }
}
