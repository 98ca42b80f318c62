//! Plasticity under a non-stationary supervised task stream: the supervised half of
//! `agent bench plasticity`.
//!
//! A network trained on one task after another can lose the ability to fit the next
//! one (Lyle et al. 2023, 2024; Dohare et al. 2024). This benchmark measures that loss,
//! and what each remedy of [`agentry_models::plasticity`] does about it, on data made
//! in-process from a seed:
//!
//! - **The pool**: `pool` inputs x ~ N(0, I) of width `input`, labelled into `classes`
//!   classes by a fixed random teacher (a tanh MLP with one hidden layer; each class's
//!   logit is standardised over the pool before the argmax, so the classes are of
//!   similar size). A network of the default size fits one task to high accuracy in the
//!   default budget (a test checks it).
//! - **The streams** ([`Stream`]), each a sequence of `tasks` tasks of `steps_per_task`
//!   gradient steps: `permuted_inputs` (each task permutes the input features afresh),
//!   `permuted_labels` (each task permutes the classes afresh) and `random_labels` (each
//!   task draws new uniformly random labels for the pool: memorisation).
//! - **Training**: an [`Mlp`] (ReLU, hidden widths `hidden`), softmax cross-entropy,
//!   Adam (burn's defaults, ε = 1e-5) with a constant learning rate, minibatches of
//!   `batch` drawn without replacement, epoch after epoch, from the task's pool.
//! - **Trainability**: after each task's steps, the accuracy on that task's pool.
//! - **The plasticity gap** of a run: the mean over the last `last_tasks` tasks of the
//!   accuracy of a freshly initialised network trained on that task alone for the same
//!   steps, minus the accuracy of the continually trained network. Fresh baselines are
//!   computed once per (stream, seed, architecture) and shared by the interventions of
//!   that architecture: the plain network, and the one with layer norm (for
//!   `layer_norm`, `l2_init` and `nap`), so a gap measures the stream's effect, not the
//!   architecture's.
//!
//! # Driving the remedies
//!
//! Each [`Intervention`] is a [`PlasticityConfig`], driven as the plasticity module
//! documents it (see [`train_tasks`]): [`Plasticity::new`] on the initial network; every
//! `update_every` (50) steps and at the start of every task, `begin_update` (the drift of
//! the soft reset needs repeated batches of new data, and a task of 500 steps would
//! otherwise give it one drift per task); every step `regularise`, `before_step`, the
//! Adam step at `learning_rate × lr_scale()`, `after_step`. The schedules of
//! [`PlasticityConfig`] count gradient steps here: `hard_reset` and `shrink_perturb`
//! fall on every task boundary (`hard_reset_every = shrink_perturb_every =
//! steps_per_task`), each with a freshly initialised network and followed by a fresh
//! Adam (the documented convention), and `redo` runs every `redo_every` (100) steps,
//! judged on the current minibatch, keeping Adam's state.
//!
//! # Determinism
//!
//! Everything random is drawn from generators seeded by the seed and a purpose: the
//! pool and the teacher (per seed), each task's permutation or labels and its
//! minibatch order (per seed, stream and task: every intervention and the fresh
//! baseline see the same batches), and networks. The network a run uses at gradient
//! step t (the initial one at t = 0, the one a reset draws at t) is
//! `init_seeded(net_seed(seed, t))`, which is also the fresh baseline of the task
//! starting at t: resetting every layer at every boundary, with a fresh Adam, reproduces
//! the fresh baselines exactly (a test checks it). Results do not depend on `--jobs`.
//!
//! # Example
//!
//! ```
//! use agentry_agents::continual::{Intervention, Stream, SupervisedBench, run_supervised};
//!
//! let bench = SupervisedBench {
//!     seeds: 1,
//!     tasks: 2,
//!     steps_per_task: 20,
//!     last_tasks: 1,
//!     streams: vec![Stream::RandomLabels],
//!     interventions: vec![Intervention::Vanilla, Intervention::HardReset],
//!     pool: 128,
//!     ..SupervisedBench::default()
//! };
//! let report = run_supervised(&bench, 1, &|_| {})?;
//! assert_eq!(report.runs.len(), 2);
//! assert!(report.runs.iter().all(|r| r.accuracy.len() == 2));
//! println!("{}", report.table());
//! # Ok::<(), agentry_agents::continual::ContinualError>(())
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Instant;

use agentry_models::burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use agentry_models::burn::tensor::{Device, Int, Tensor, TensorData};
use agentry_models::plasticity::{DecayKind, Plasticity, PlasticityConfig};
use agentry_models::{
    Activation, Mlp, MlpConfig, categorical_log_prob, masked_log_softmax, training_device,
};
use plotters::coord::Shift;
use plotters::prelude::*;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::experiment::mean_std;
use crate::plot::{COLORS, FONT, ensure_font};
use crate::runner::panic_message;

/// The JSON file [`SupervisedReport::write`] writes.
pub const JSON_FILE: &str = "plasticity-supervised.json";
/// The plot [`SupervisedReport::write`] draws.
pub const PLOT_FILE: &str = "plasticity-supervised.png";

/// Why the benchmark could not run or write its results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContinualError {
    /// A stream name that is not one of [`Stream::ALL`].
    #[error("unknown stream `{name}` (known: {})", names(&Stream::ALL))]
    UnknownStream {
        /// The name given.
        name: String,
    },
    /// An intervention name that is not one of [`Intervention::ALL`].
    #[error("unknown intervention `{name}` (known: {})", names(&Intervention::ALL))]
    UnknownIntervention {
        /// The name given.
        name: String,
    },
    /// A setting out of its range.
    #[error("{setting} {message}")]
    BadSetting {
        /// The [`SupervisedBench`] field (or `jobs`).
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A run panicked (a bug).
    #[error("{run} panicked: {message}")]
    Panicked {
        /// Which run.
        run: String,
        /// The panic message.
        message: String,
    },
    /// Writing a result file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Drawing the plot failed.
    #[error("drawing {}: {message}", path.display())]
    Plot {
        /// The plot file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl ContinualError {
    /// Whether the user asked for something impossible (a bad name or setting), as
    /// opposed to a failure while running.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ContinualError::UnknownStream { .. }
                | ContinualError::UnknownIntervention { .. }
                | ContinualError::BadSetting { .. }
        )
    }

    fn bad(setting: &'static str, message: impl Into<String>) -> Self {
        ContinualError::BadSetting {
            setting,
            message: message.into(),
        }
    }
}

fn names<T: fmt::Display>(all: &[T]) -> String {
    all.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A sequence of tasks on the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Teacher labels; each task permutes the input features afresh.
    PermutedInputs,
    /// Teacher labels; each task permutes the classes afresh.
    PermutedLabels,
    /// Each task draws new uniformly random labels (memorisation).
    RandomLabels,
}

impl Stream {
    /// Every stream, in report order.
    pub const ALL: [Stream; 3] = [
        Stream::PermutedInputs,
        Stream::PermutedLabels,
        Stream::RandomLabels,
    ];

    /// The name used on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Stream::PermutedInputs => "permuted_inputs",
            Stream::PermutedLabels => "permuted_labels",
            Stream::RandomLabels => "random_labels",
        }
    }

    /// `names` (`all` for every stream) as streams, without repeats.
    pub fn parse_list(names: &[String]) -> Result<Vec<Stream>, ContinualError> {
        parse_list(names, &Stream::ALL)
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stream {
    type Err = ContinualError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stream::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| ContinualError::UnknownStream { name: s.into() })
    }
}

/// A remedy for plasticity loss, as a [`PlasticityConfig`] (see [`Intervention::config`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intervention {
    /// No remedy.
    Vanilla,
    /// Layer norm before each hidden nonlinearity.
    LayerNorm,
    /// Layer norm and L2 toward the initial parameters (Kumar et al.'s regenerative
    /// regularisation) with coefficient [`SupervisedBench::weight_decay`].
    L2Init,
    /// Layer norm and Normalize-and-Project (Lyle et al. 2024).
    Nap,
    /// Soft parameter reset with a learned per-layer γ (Galashov et al. 2024), the
    /// toolkit's default γ settings.
    SoftReset,
    /// The output layer reinitialised at every task boundary (Nikishin et al. 2022).
    HardReset,
    /// Shrink-and-perturb at every task boundary (Ash & Adams 2020; the toolkit's
    /// λ = 0.4, σ = 0.1).
    ShrinkPerturb,
    /// ReDo every [`SupervisedBench::redo_every`] steps (Sokar et al. 2023; τ = 0.1).
    Redo,
}

impl Intervention {
    /// Every intervention, in report order.
    pub const ALL: [Intervention; 8] = [
        Intervention::Vanilla,
        Intervention::LayerNorm,
        Intervention::L2Init,
        Intervention::Nap,
        Intervention::SoftReset,
        Intervention::HardReset,
        Intervention::ShrinkPerturb,
        Intervention::Redo,
    ];

    /// The name used on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Intervention::Vanilla => "vanilla",
            Intervention::LayerNorm => "layer_norm",
            Intervention::L2Init => "l2_init",
            Intervention::Nap => "nap",
            Intervention::SoftReset => "soft_reset",
            Intervention::HardReset => "hard_reset",
            Intervention::ShrinkPerturb => "shrink_perturb",
            Intervention::Redo => "redo",
        }
    }

    /// `names` (`all` for every intervention) as interventions, without repeats.
    pub fn parse_list(names: &[String]) -> Result<Vec<Intervention>, ContinualError> {
        parse_list(names, &Intervention::ALL)
    }

    /// The remedies of this intervention in `bench`; the schedules count gradient steps.
    pub fn config(self, bench: &SupervisedBench) -> PlasticityConfig {
        let base = PlasticityConfig {
            diagnostics_every: 0,
            ..PlasticityConfig::default()
        };
        let task = bench.steps_per_task as u64;
        match self {
            Intervention::Vanilla => base,
            Intervention::LayerNorm => PlasticityConfig {
                layer_norm: true,
                ..base
            },
            Intervention::L2Init => PlasticityConfig {
                layer_norm: true,
                weight_decay: bench.weight_decay,
                weight_decay_kind: DecayKind::L2Init,
                ..base
            },
            Intervention::Nap => PlasticityConfig {
                layer_norm: true,
                nap: true,
                ..base
            },
            Intervention::SoftReset => PlasticityConfig {
                soft_reset: true,
                ..base
            },
            Intervention::HardReset => PlasticityConfig {
                hard_reset_every: task,
                ..base
            },
            Intervention::ShrinkPerturb => PlasticityConfig {
                shrink_perturb_every: task,
                ..base
            },
            Intervention::Redo => PlasticityConfig {
                redo_every: bench.redo_every,
                ..base
            },
        }
    }
}

impl fmt::Display for Intervention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Intervention {
    type Err = ContinualError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Intervention::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| ContinualError::UnknownIntervention { name: s.into() })
    }
}

fn parse_list<T>(names: &[String], all: &[T]) -> Result<Vec<T>, ContinualError>
where
    T: FromStr<Err = ContinualError> + Copy + PartialEq,
{
    let mut out = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let items = if name == "all" {
            all.to_vec()
        } else {
            vec![name.parse()?]
        };
        for item in items {
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    Ok(out)
}

/// What the benchmark runs: the streams, the interventions, the seeds and the budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisedBench {
    /// Seeds 1..=`seeds`; each draws its own pool, teacher, tasks and networks.
    pub seeds: u64,
    /// Tasks per stream.
    pub tasks: usize,
    /// Gradient steps per task.
    pub steps_per_task: usize,
    /// The final tasks the accuracy and the plasticity gap are averaged over.
    pub last_tasks: usize,
    /// The streams.
    pub streams: Vec<Stream>,
    /// The interventions.
    pub interventions: Vec<Intervention>,
    /// Samples in the pool.
    pub pool: usize,
    /// Input width.
    pub input: usize,
    /// Classes.
    pub classes: usize,
    /// Hidden width of the random teacher.
    pub teacher_hidden: usize,
    /// Hidden widths of the trained network.
    pub hidden: Vec<usize>,
    /// Minibatch size.
    pub batch: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Gradient steps between soft reset's `begin_update` calls (also called at the
    /// start of every task).
    pub update_every: usize,
    /// Gradient steps between ReDo passes of the `redo` intervention.
    pub redo_every: u64,
    /// λ of the `l2_init` intervention.
    pub weight_decay: f64,
}

impl SupervisedBench {
    /// Default number of seeds.
    pub const DEFAULT_SEEDS: u64 = 5;
    /// Default number of tasks per stream. With 500 steps per task, enough for the
    /// plain network to lose a large part of its trainability on every stream (by 0.12
    /// to 0.44 of accuracy), while the whole default benchmark takes about 7 minutes on
    /// 2 cores.
    pub const DEFAULT_TASKS: usize = 60;
    /// Default gradient steps per task (a fresh plain network reaches about 0.9 on a
    /// teacher task, so a task is neither trivial nor saturated).
    pub const DEFAULT_STEPS_PER_TASK: usize = 500;
    /// Default number of final tasks averaged over.
    pub const DEFAULT_LAST_TASKS: usize = 5;

    /// Check every setting; the error names the first one out of range.
    pub fn check(&self) -> Result<(), ContinualError> {
        let at_least = |setting: &'static str, v: usize, min: usize| {
            if v < min {
                Err(ContinualError::bad(
                    setting,
                    format!("must be at least {min} (got {v})"),
                ))
            } else {
                Ok(())
            }
        };
        if self.seeds == 0 {
            return Err(ContinualError::bad("seeds", "must be at least 1 (got 0)"));
        }
        at_least("tasks", self.tasks, 1)?;
        at_least("steps_per_task", self.steps_per_task, 1)?;
        at_least("last_tasks", self.last_tasks, 1)?;
        if self.last_tasks > self.tasks {
            return Err(ContinualError::bad(
                "last_tasks",
                format!(
                    "({}) must not exceed tasks ({})",
                    self.last_tasks, self.tasks
                ),
            ));
        }
        if self.streams.is_empty() {
            return Err(ContinualError::bad(
                "streams",
                "must name at least one stream",
            ));
        }
        if self.interventions.is_empty() {
            return Err(ContinualError::bad(
                "interventions",
                "must name at least one intervention",
            ));
        }
        at_least("input", self.input, 1)?;
        at_least("classes", self.classes, 2)?;
        at_least("teacher_hidden", self.teacher_hidden, 1)?;
        at_least("batch", self.batch, 1)?;
        at_least("pool", self.pool, self.batch)?;
        at_least("update_every", self.update_every, 1)?;
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(ContinualError::bad(
                "hidden",
                format!(
                    "must be one or more widths of at least 1 (got {:?})",
                    self.hidden
                ),
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(ContinualError::bad(
                "learning_rate",
                format!("must be positive (got {})", self.learning_rate),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(ContinualError::bad(
                "weight_decay",
                format!("must be at least 0 (got {})", self.weight_decay),
            ));
        }
        for i in &self.interventions {
            i.config(self).check().map_err(|(key, message)| {
                ContinualError::bad("interventions", format!("{i}: {key}: {message}"))
            })?;
        }
        Ok(())
    }

    /// The network trained, with or without layer norm.
    pub fn network(&self, layer_norm: bool) -> MlpConfig {
        MlpConfig::new(self.input, &self.hidden, self.classes)
            .with_activation(Activation::Relu)
            .with_layer_norm(layer_norm)
    }
}

impl Default for SupervisedBench {
    fn default() -> Self {
        SupervisedBench {
            seeds: Self::DEFAULT_SEEDS,
            tasks: Self::DEFAULT_TASKS,
            steps_per_task: Self::DEFAULT_STEPS_PER_TASK,
            last_tasks: Self::DEFAULT_LAST_TASKS,
            streams: Stream::ALL.to_vec(),
            interventions: Intervention::ALL.to_vec(),
            pool: 1024,
            input: 32,
            classes: 10,
            teacher_hidden: 64,
            hidden: vec![64, 64],
            batch: 64,
            learning_rate: 1e-3,
            update_every: 50,
            redo_every: 100,
            weight_decay: 1e-2,
        }
    }
}

/// Purposes of the random generators (mixed with the seed, see [`seed_for`]); a
/// task's generators also mix in the stream, as `purpose + 16 × stream`.
const POOL: u64 = 1;
const TASK: u64 = 2;
const BATCHES: u64 = 3;
const NET: u64 = 4;

/// SplitMix64's finaliser: a well-mixed 64-bit value of `x`.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The generator seed for `purpose` and `index` (a task, a step) under `seed`.
fn seed_for(seed: u64, purpose: u64, index: u64) -> u64 {
    splitmix(splitmix(splitmix(seed) ^ purpose) ^ index)
}

/// The seed of the network drawn at gradient step `step` (the initial network at 0,
/// a reset's fresh network at its step; also the fresh baseline of a task starting there).
pub fn net_seed(seed: u64, step: u64) -> u64 {
    seed_for(seed, NET, step)
}

/// One stream of one seed: the pool and its teacher labels, from which the tasks are made.
#[derive(Clone, Debug)]
pub struct TaskStream {
    stream: Stream,
    seed: u64,
    input: usize,
    classes: usize,
    /// `[pool, input]`, row-major.
    x: Vec<f32>,
    teacher: Vec<usize>,
}

/// One task: the pool's inputs and labels as this task presents them.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// `[pool, input]`, row-major.
    pub x: Vec<f32>,
    /// One label per sample.
    pub labels: Vec<usize>,
    /// Input width.
    pub input: usize,
}

impl TaskStream {
    /// The pool and the teacher of `seed` (the same for every stream), for `stream`.
    pub fn new(bench: &SupervisedBench, stream: Stream, seed: u64) -> Self {
        let mut rng = Pcg64Mcg::seed_from_u64(seed_for(seed, POOL, 0));
        let (m, d, h, c) = (bench.pool, bench.input, bench.teacher_hidden, bench.classes);
        let mut normal = |n: usize, std: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    std * z
                })
                .collect::<Vec<f32>>()
        };
        let x = normal(m * d, 1.0);
        // The teacher: tanh(x·W1)·W2 with W1 ~ N(0, 4/d) (pre-activations of std 2, so
        // the tanh bends), W2 ~ N(0, 1/h).
        let w1 = normal(d * h, 2.0 / (d as f32).sqrt());
        let w2 = normal(h * c, 1.0 / (h as f32).sqrt());
        let mut logits = vec![0f64; m * c];
        for (row, out) in x.chunks_exact(d).zip(logits.chunks_exact_mut(c)) {
            for j in 0..h {
                let z: f32 = row
                    .iter()
                    .zip(w1[j..].iter().step_by(h))
                    .map(|(a, w)| a * w)
                    .sum();
                let t = z.tanh() as f64;
                for (k, o) in out.iter_mut().enumerate() {
                    *o += t * w2[j * c + k] as f64;
                }
            }
        }
        // Standardise each class's logit over the pool: classes of similar size.
        for k in 0..c {
            let column: Vec<f64> = logits.iter().skip(k).step_by(c).copied().collect();
            let (mean, std) = mean_std(&column);
            for row in logits.chunks_exact_mut(c) {
                row[k] = (row[k] - mean) / std.max(1e-12);
            }
        }
        let teacher = logits.chunks_exact(c).map(argmax).collect();
        TaskStream {
            stream,
            seed,
            input: d,
            classes: c,
            x,
            teacher,
        }
    }

    /// The stream.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The teacher's label of every sample.
    pub fn teacher(&self) -> &[usize] {
        &self.teacher
    }

    /// Task `k` (0-based).
    pub fn task(&self, k: usize) -> Task {
        let mut rng =
            Pcg64Mcg::seed_from_u64(seed_for(self.seed, TASK + 16 * self.code(), k as u64));
        let d = self.input;
        match self.stream {
            Stream::PermutedInputs => {
                let mut perm: Vec<usize> = (0..d).collect();
                perm.shuffle(&mut rng);
                let x = self
                    .x
                    .chunks_exact(d)
                    .flat_map(|row| perm.iter().map(move |&j| row[j]))
                    .collect();
                Task {
                    x,
                    labels: self.teacher.clone(),
                    input: d,
                }
            }
            Stream::PermutedLabels => {
                let mut perm: Vec<usize> = (0..self.classes).collect();
                perm.shuffle(&mut rng);
                Task {
                    x: self.x.clone(),
                    labels: self.teacher.iter().map(|&y| perm[y]).collect(),
                    input: d,
                }
            }
            Stream::RandomLabels => Task {
                x: self.x.clone(),
                labels: (0..self.teacher.len())
                    .map(|_| rng.random_range(0..self.classes))
                    .collect(),
                input: d,
            },
        }
    }

    /// The minibatch order of task `k`: the same for every intervention.
    fn batches(&self, k: usize, batch: usize) -> Batches {
        let rng =
            Pcg64Mcg::seed_from_u64(seed_for(self.seed, BATCHES + 16 * self.code(), k as u64));
        Batches {
            order: (0..self.teacher.len()).collect(),
            at: usize::MAX,
            batch,
            rng,
        }
    }

    fn code(&self) -> u64 {
        self.stream as u64
    }
}

/// Minibatches without replacement, reshuffled every epoch (an epoch's remainder of
/// fewer than `batch` samples is skipped).
struct Batches {
    order: Vec<usize>,
    at: usize,
    batch: usize,
    rng: Pcg64Mcg,
}

impl Batches {
    fn next(&mut self) -> &[usize] {
        if self.at.saturating_add(self.batch) > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.at = 0;
        }
        let b = &self.order[self.at..self.at + self.batch];
        self.at += self.batch;
        b
    }
}

impl Task {
    /// The rows `rows` as an input tensor and a label tensor.
    ///
    /// # Shapes
    /// - output: `([rows, input], [rows])`
    fn tensors(&self, rows: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let d = self.input;
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|&i| self.x[i * d..(i + 1) * d].iter().copied())
            .collect();
        let y: Vec<i64> = rows.iter().map(|&i| self.labels[i] as i64).collect();
        (
            Tensor::from_data(TensorData::new(x, [rows.len(), d]), device),
            Tensor::from_data(TensorData::new(y, [rows.len()]), device),
        )
    }

    /// The fraction of the pool `model` classifies correctly (NaN if an output is not
    /// finite: a diverged network shows as such).
    pub fn accuracy(&self, model: &Mlp, device: &Device) -> f64 {
        let n = self.labels.len();
        let x = Tensor::<2>::from_data(TensorData::new(self.x.clone(), [n, self.input]), device);
        let logits = model
            .forward(x)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        if logits.iter().any(|v| !v.is_finite()) {
            return f64::NAN;
        }
        let classes = logits.len() / n.max(1);
        let right = logits
            .chunks_exact(classes)
            .zip(&self.labels)
            .filter(|(row, y)| argmax(row) == **y)
            .count();
        right as f64 / n as f64
    }
}

/// The index of the largest value (the first of ties).
fn argmax<T: PartialOrd + Copy>(row: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

fn adam() -> ModuleOptimizer {
    AdamConfig::new().init()
}

/// Whether a schedule of period `every` (0: never) falls on gradient step `step`.
fn due(every: u64, step: u64) -> bool {
    every > 0 && step.is_multiple_of(every)
}

/// Softmax cross-entropy, averaged over the batch.
///
/// # Shapes
/// - `logits`: `[batch, classes]`; `labels`: `[batch]`
/// - output: `[1]`
fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    categorical_log_prob(masked_log_softmax(logits, None), labels)
        .mean()
        .neg()
}

/// Train through the tasks `tasks` of `data` with the remedies of `config` and return
/// the accuracy on each task's pool after its steps.
///
/// The run starts at gradient step `tasks.start × steps_per_task` with the network
/// drawn there ([`net_seed`]) and a fresh Adam, so `tasks = k..k + 1` with a plain
/// config is the fresh baseline of task k and `0..tasks` a continual run.
pub fn train_tasks(
    bench: &SupervisedBench,
    data: &TaskStream,
    config: &PlasticityConfig,
    tasks: Range<usize>,
) -> Vec<f64> {
    let device = training_device();
    let arch = bench.network(config.layer_norm);
    let fresh = |step: u64| arch.init_seeded(&device, net_seed(data.seed, step));
    let (n, lr) = (bench.steps_per_task as u64, bench.learning_rate);
    let first = tasks.start as u64 * n;
    let mut model = fresh(first);
    let mut plasticity = Plasticity::new(config, &model);
    let mut optim = adam();
    let mut accuracy = Vec::with_capacity(tasks.len());
    for k in tasks {
        let task = data.task(k);
        let mut batches = data.batches(k, bench.batch);
        for s in 0..n {
            let step = k as u64 * n + s;
            let (x, y) = task.tensors(batches.next(), &device);
            // The schedules: resets on task boundaries, ReDo on the current batch.
            if step > first {
                let mut reset = false;
                if due(config.hard_reset_every, step) {
                    model = plasticity.hard_reset(model, &fresh(step)).0;
                    reset = true;
                }
                if due(config.shrink_perturb_every, step) {
                    model = plasticity.shrink_perturb(model, &fresh(step));
                    reset = true;
                }
                if reset {
                    optim = adam();
                }
                if due(config.redo_every, step) {
                    model = plasticity.redo(model, &fresh(step), x.clone()).0;
                }
            }
            if s == 0 || step.is_multiple_of(bench.update_every as u64) {
                model = plasticity.begin_update(model);
            }
            let loss = cross_entropy(model.forward(x), y);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            plasticity.regularise(&model, &mut grads);
            let before = plasticity.before_step(&model);
            model = optim.step(lr * plasticity.lr_scale(), model, grads);
            model = plasticity.after_step(model, lr, before);
        }
        accuracy.push(task.accuracy(&model, &device));
    }
    accuracy
}

/// One continual run: an intervention on a stream with a seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The stream.
    pub stream: Stream,
    /// The intervention.
    pub intervention: Intervention,
    /// The seed.
    pub seed: u64,
    /// Accuracy on each task's pool after its steps, task 0 first.
    pub accuracy: Vec<f64>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

/// The fresh baselines of one (stream, seed, architecture).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FreshRecord {
    /// The stream.
    pub stream: Stream,
    /// Whether the network has layer norm (the baseline of `layer_norm`, `l2_init`, `nap`).
    pub layer_norm: bool,
    /// The seed.
    pub seed: u64,
    /// The tasks (0-based) a fresh network was trained on: the last `last_tasks`.
    pub tasks: Vec<usize>,
    /// The accuracy of each, in the order of `tasks`.
    pub accuracy: Vec<f64>,
    /// Wall-clock seconds of all of them.
    pub seconds: f64,
}

/// One line of the table: mean ± std over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// The stream.
    pub stream: Stream,
    /// The intervention, or `fresh` / `fresh_layer_norm` for the baselines.
    pub name: String,
    /// Seeds averaged.
    pub seeds: usize,
    /// Mean over seeds of the accuracy averaged over the last tasks.
    pub final_accuracy_mean: f64,
    /// Standard deviation over seeds of the same (population).
    pub final_accuracy_std: f64,
    /// Mean over seeds of the plasticity gap (fresh − continual; none for baselines).
    pub gap_mean: Option<f64>,
    /// Standard deviation over seeds of the gap (population).
    pub gap_std: Option<f64>,
}

/// Everything [`run_supervised`] measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SupervisedReport {
    /// The settings.
    pub settings: SupervisedBench,
    /// Every continual run.
    pub runs: Vec<RunRecord>,
    /// Every fresh baseline.
    pub fresh: Vec<FreshRecord>,
    /// The table, stream by stream: the baselines, then the interventions.
    pub summary: Vec<SummaryRow>,
    /// Wall-clock seconds of the whole benchmark.
    pub wall_time_s: f64,
    /// When it finished, in seconds since the Unix epoch.
    pub finished_unix_s: u64,
}

/// A unit of work for the thread pool.
#[derive(Clone, Copy, Debug)]
enum Job {
    Continual {
        stream: Stream,
        seed: u64,
        intervention: Intervention,
    },
    Fresh {
        stream: Stream,
        seed: u64,
        layer_norm: bool,
    },
}

enum Done {
    Continual(RunRecord),
    Fresh(FreshRecord),
}

impl Job {
    fn label(&self) -> String {
        match self {
            Job::Continual {
                stream,
                seed,
                intervention,
            } => format!("{stream} {intervention} seed {seed}"),
            Job::Fresh {
                stream,
                seed,
                layer_norm,
            } => format!("{stream} {} seed {seed}", fresh_name(*layer_norm)),
        }
    }

    fn run(self, bench: &SupervisedBench) -> Done {
        let start = Instant::now();
        match self {
            Job::Continual {
                stream,
                seed,
                intervention,
            } => {
                let data = TaskStream::new(bench, stream, seed);
                let config = intervention.config(bench);
                let accuracy = train_tasks(bench, &data, &config, 0..bench.tasks);
                Done::Continual(RunRecord {
                    stream,
                    intervention,
                    seed,
                    accuracy,
                    seconds: start.elapsed().as_secs_f64(),
                })
            }
            Job::Fresh {
                stream,
                seed,
                layer_norm,
            } => {
                let data = TaskStream::new(bench, stream, seed);
                let config = if layer_norm {
                    Intervention::LayerNorm.config(bench)
                } else {
                    Intervention::Vanilla.config(bench)
                };
                let tasks: Vec<usize> = (bench.tasks - bench.last_tasks..bench.tasks).collect();
                let accuracy = tasks
                    .iter()
                    .map(|&k| train_tasks(bench, &data, &config, k..k + 1)[0])
                    .collect();
                Done::Fresh(FreshRecord {
                    stream,
                    layer_norm,
                    seed,
                    tasks,
                    accuracy,
                    seconds: start.elapsed().as_secs_f64(),
                })
            }
        }
    }
}

fn fresh_name(layer_norm: bool) -> &'static str {
    if layer_norm {
        "fresh_layer_norm"
    } else {
        "fresh"
    }
}

/// Run every (stream, seed, intervention) and the fresh baselines on `jobs` threads;
/// `progress` gets a line per finished run.
pub fn run_supervised(
    bench: &SupervisedBench,
    jobs: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SupervisedReport, ContinualError> {
    bench.check()?;
    if jobs == 0 {
        return Err(ContinualError::bad("jobs", "must be at least 1 (got 0)"));
    }
    let start = Instant::now();
    let archs: Vec<bool> = [false, true]
        .into_iter()
        .filter(|&ln| {
            bench
                .interventions
                .iter()
                .any(|i| i.config(bench).layer_norm == ln)
        })
        .collect();
    let mut work = Vec::new();
    for &stream in &bench.streams {
        for seed in 1..=bench.seeds {
            for &intervention in &bench.interventions {
                work.push(Job::Continual {
                    stream,
                    seed,
                    intervention,
                });
            }
            for &layer_norm in &archs {
                work.push(Job::Fresh {
                    stream,
                    seed,
                    layer_norm,
                });
            }
        }
    }
    let total = work.len();
    let queue = Mutex::new(work.into_iter());
    let done: Mutex<Vec<Result<Done, ContinualError>>> = Mutex::new(Vec::with_capacity(total));
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(total) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(job) = next else { return };
                    let result = std::panic::catch_unwind(|| job.run(bench)).map_err(|p| {
                        ContinualError::Panicked {
                            run: job.label(),
                            message: panic_message(p.as_ref()),
                        }
                    });
                    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                    if let Ok(d) = &result {
                        let seconds = match d {
                            Done::Continual(r) => r.seconds,
                            Done::Fresh(r) => r.seconds,
                        };
                        progress(&format!(
                            "[{}/{total}] {} in {seconds:.1} s",
                            done.len() + 1,
                            job.label()
                        ));
                    }
                    done.push(result);
                }
            });
        }
    });
    let (mut runs, mut fresh) = (Vec::new(), Vec::new());
    for result in done.into_inner().unwrap_or_else(|e| e.into_inner()) {
        match result? {
            Done::Continual(r) => runs.push(r),
            Done::Fresh(r) => fresh.push(r),
        }
    }
    // Report order, whatever order the threads finished in.
    let stream_at = |s: Stream| bench.streams.iter().position(|&x| x == s);
    let intervention_at = |i: Intervention| bench.interventions.iter().position(|&x| x == i);
    runs.sort_by_key(|r| (stream_at(r.stream), intervention_at(r.intervention), r.seed));
    fresh.sort_by_key(|r| (stream_at(r.stream), r.layer_norm, r.seed));
    let summary = summarise(bench, &runs, &fresh);
    Ok(SupervisedReport {
        settings: bench.clone(),
        runs,
        fresh,
        summary,
        wall_time_s: start.elapsed().as_secs_f64(),
        finished_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// The table rows: per stream the baselines, then each intervention.
fn summarise(
    bench: &SupervisedBench,
    runs: &[RunRecord],
    fresh: &[FreshRecord],
) -> Vec<SummaryRow> {
    let last = bench.tasks - bench.last_tasks;
    let mut rows = Vec::new();
    for &stream in &bench.streams {
        for layer_norm in [false, true] {
            let finals: Vec<f64> = fresh
                .iter()
                .filter(|f| f.stream == stream && f.layer_norm == layer_norm)
                .map(|f| mean(&f.accuracy))
                .collect();
            if finals.is_empty() {
                continue;
            }
            let (m, s) = mean_std(&finals);
            rows.push(SummaryRow {
                stream,
                name: fresh_name(layer_norm).into(),
                seeds: finals.len(),
                final_accuracy_mean: m,
                final_accuracy_std: s,
                gap_mean: None,
                gap_std: None,
            });
        }
        for &intervention in &bench.interventions {
            let layer_norm = intervention.config(bench).layer_norm;
            let (mut finals, mut gaps) = (Vec::new(), Vec::new());
            for r in runs
                .iter()
                .filter(|r| r.stream == stream && r.intervention == intervention)
            {
                let tail = &r.accuracy[last..];
                finals.push(mean(tail));
                if let Some(f) = fresh
                    .iter()
                    .find(|f| f.stream == stream && f.seed == r.seed && f.layer_norm == layer_norm)
                {
                    let gap: Vec<f64> = f.accuracy.iter().zip(tail).map(|(f, c)| f - c).collect();
                    gaps.push(mean(&gap));
                }
            }
            let (m, s) = mean_std(&finals);
            let (gm, gs) = mean_std(&gaps);
            rows.push(SummaryRow {
                stream,
                name: intervention.name().into(),
                seeds: finals.len(),
                final_accuracy_mean: m,
                final_accuracy_std: s,
                gap_mean: Some(gm),
                gap_std: Some(gs),
            });
        }
    }
    rows
}

impl SupervisedReport {
    /// The summary as a text table.
    pub fn table(&self) -> String {
        let k = self.settings.last_tasks;
        let mut out = format!(
            "{:<16} {:<17} {:>22} {:>26}\n",
            "stream",
            "intervention",
            format!("accuracy (last {k})"),
            "gap (fresh − continual)"
        );
        for r in &self.summary {
            let gap = match (r.gap_mean, r.gap_std) {
                (Some(m), Some(s)) => format!("{m:+.3} ± {s:.3}"),
                _ => "—".into(),
            };
            out.push_str(&format!(
                "{:<16} {:<17} {:>22} {:>26}\n",
                r.stream.name(),
                r.name,
                format!("{:.3} ± {:.3}", r.final_accuracy_mean, r.final_accuracy_std),
                gap
            ));
        }
        out
    }

    /// Write [`JSON_FILE`] (every accuracy of every run) and [`PLOT_FILE`] (accuracy
    /// against task, a panel per stream) into `dir`, creating it; returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ContinualError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ContinualError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let json = dir.join(JSON_FILE);
        let text = serde_json::to_string_pretty(self).expect("the report serialises");
        std::fs::write(&json, text).map_err(io(&json))?;
        let png = dir.join(PLOT_FILE);
        self.draw(&png)?;
        Ok(vec![json, png])
    }

    /// Mean over seeds of each task's accuracy, per (stream, intervention).
    fn curve(&self, stream: Stream, intervention: Intervention) -> Vec<(f64, f64)> {
        let runs: Vec<&RunRecord> = self
            .runs
            .iter()
            .filter(|r| r.stream == stream && r.intervention == intervention)
            .collect();
        (0..self.settings.tasks)
            .map(|k| {
                let at: Vec<f64> = runs.iter().map(|r| r.accuracy[k]).collect();
                ((k + 1) as f64, mean(&at))
            })
            .filter(|p| p.1.is_finite())
            .collect()
    }

    fn draw(&self, path: &Path) -> Result<(), ContinualError> {
        let plot_err = |message: String| ContinualError::Plot {
            path: path.to_path_buf(),
            message,
        };
        ensure_font().map_err(|e| plot_err(e.to_string()))?;
        let width = PANEL.0 * self.settings.streams.len() as u32;
        let entries = self.lines(self.settings.streams[0]).len() as u32;
        let rows = entries.div_ceil((width / LEGEND_COLUMN).max(1));
        let root = BitMapBackend::new(path, (width, PANEL.1 + 16 + 24 * rows)).into_drawing_area();
        self.draw_figure(&root).map_err(plot_err)?;
        root.present().map_err(|e| plot_err(e.to_string()))
    }

    /// The lines of the plot: each intervention's mean curve, then each baseline's level.
    fn lines(&self, stream: Stream) -> Vec<Line> {
        let mut lines: Vec<Line> = self
            .settings
            .interventions
            .iter()
            .enumerate()
            .map(|(i, &intervention)| Line {
                label: intervention.name().into(),
                color: line_color(i),
                dashed: false,
                points: self.curve(stream, intervention),
            })
            .collect();
        let x_max = self.settings.tasks as f64 + 0.5;
        for row in self
            .summary
            .iter()
            .filter(|r| r.stream == stream && r.gap_mean.is_none())
        {
            let level = row.final_accuracy_mean;
            lines.push(Line {
                label: format!("{} (last {} tasks)", row.name, self.settings.last_tasks),
                color: if row.name == fresh_name(false) {
                    BLACK
                } else {
                    RGBColor(130, 130, 130)
                },
                dashed: true,
                points: vec![(0.5, level), (x_max, level)],
            });
        }
        lines
    }

    fn draw_figure<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let (charts, legend) = root.split_vertically(PANEL.1);
        let streams = &self.settings.streams;
        let per_stream: Vec<Vec<Line>> = streams.iter().map(|&s| self.lines(s)).collect();
        // One y range for every panel, from the lowest point drawn (in steps of 0.1).
        let lowest = per_stream
            .iter()
            .flatten()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .filter(|y| y.is_finite())
            .fold(1.0f64, f64::min);
        let y0 = ((lowest - 0.02) * 10.0).floor().max(0.0) / 10.0;
        let x_max = self.settings.tasks as f64 + 0.5;
        for ((area, stream), lines) in charts
            .split_evenly((1, streams.len()))
            .iter()
            .zip(streams)
            .zip(&per_stream)
        {
            let mut chart = ChartBuilder::on(area)
                .caption(stream.name(), (FONT, 22).into_font().color(&BLACK))
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(56)
                .build_cartesian_2d(0.5..x_max, y0..1.01)
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc("task")
                .y_desc("accuracy on the task's pool")
                .axis_desc_style((FONT, 16))
                .label_style((FONT, 13))
                .x_labels(self.settings.tasks.min(10))
                .x_label_formatter(&|x| {
                    if (x - x.round()).abs() < 1e-9 {
                        format!("{x:.0}")
                    } else {
                        String::new()
                    }
                })
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(210, 210, 210))
                .draw()
                .map_err(e)?;
            for line in lines {
                let style = line.color.stroke_width(2);
                if line.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(line.points.clone(), 8, 5, style))
                        .map_err(e)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(line.points.clone(), style))
                        .map_err(e)?;
                }
            }
        }
        // One legend for every panel, below them.
        let columns = (root.dim_in_pixel().0 / LEGEND_COLUMN).max(1) as usize;
        for (i, line) in per_stream.first().into_iter().flatten().enumerate() {
            let x = 70 + (i % columns) as i32 * LEGEND_COLUMN as i32;
            let y = 18 + (i / columns) as i32 * 24;
            let style = line.color.stroke_width(2);
            if line.dashed {
                for dash in [0, 11, 22] {
                    legend
                        .draw(&PathElement::new(
                            vec![(x + dash, y), (x + dash + 7, y)],
                            style,
                        ))
                        .map_err(e)?;
                }
            } else {
                legend
                    .draw(&PathElement::new(vec![(x, y), (x + 28, y)], style))
                    .map_err(e)?;
            }
            legend
                .draw(&Text::new(
                    line.label.clone(),
                    (x + 36, y - 8),
                    (FONT, 14).into_font().color(&BLACK),
                ))
                .map_err(e)?;
        }
        Ok(())
    }
}

/// One line of a panel.
struct Line {
    label: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// The size of one panel of the plot, in pixels.
const PANEL: (u32, u32) = (560, 500);
/// The width of one column of the legend below the panels.
const LEGEND_COLUMN: u32 = 250;

/// Line colours: [`crate::plot`]'s Tableau 10 without its grey (index 7), which the
/// baselines use.
fn line_color(i: usize) -> RGBColor {
    let k = i % (COLORS.len() - 1);
    COLORS[if k >= 7 { k + 1 } else { k }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentry_models::plasticity::ResetLayers;

    fn small() -> SupervisedBench {
        SupervisedBench {
            seeds: 1,
            tasks: 3,
            steps_per_task: 100,
            last_tasks: 2,
            pool: 256,
            ..SupervisedBench::default()
        }
    }

    #[test]
    fn data_is_deterministic_per_seed_and_the_streams_change_what_they_should() {
        let bench = SupervisedBench::default();
        let a = TaskStream::new(&bench, Stream::PermutedInputs, 3);
        let b = TaskStream::new(&bench, Stream::PermutedInputs, 3);
        let c = TaskStream::new(&bench, Stream::PermutedInputs, 4);
        assert_eq!(a.task(2), b.task(2));
        assert_ne!(a.task(2), c.task(2));
        assert_ne!(a.teacher(), c.teacher());
        // Every class is used, none dominates.
        let mut counts = vec![0usize; bench.classes];
        a.teacher().iter().for_each(|&y| counts[y] += 1);
        assert!(
            counts
                .iter()
                .all(|&n| n > bench.pool / 40 && n < bench.pool / 4),
            "{counts:?}"
        );

        // Permuted inputs: same labels, the same rows with their features permuted.
        let (t0, t1) = (a.task(0), a.task(1));
        assert_eq!(t0.labels, a.teacher());
        assert_eq!(t0.labels, t1.labels);
        assert_ne!(t0.x, t1.x);
        let d = bench.input;
        let mut r0 = t0.x[..d].to_vec();
        let mut r1 = t1.x[..d].to_vec();
        r0.sort_by(f32::total_cmp);
        r1.sort_by(f32::total_cmp);
        assert_eq!(r0, r1);

        // Permuted labels: same inputs, a bijection of the teacher's classes.
        let s = TaskStream::new(&bench, Stream::PermutedLabels, 3);
        let (p0, p1) = (s.task(0), s.task(1));
        assert_eq!(p0.x, p1.x);
        assert_ne!(p0.labels, p1.labels);
        let mut map = vec![None; bench.classes];
        for (&t, &y) in s.teacher().iter().zip(&p1.labels) {
            assert!(map[t].is_none_or(|m| m == y), "not a permutation");
            map[t] = Some(y);
        }

        // Random labels: new labels every task, near-uniform, unrelated to the teacher.
        let r = TaskStream::new(&bench, Stream::RandomLabels, 3);
        let (l0, l1) = (r.task(0).labels, r.task(1).labels);
        let same = |u: &[usize], v: &[usize]| u.iter().zip(v).filter(|(a, b)| a == b).count();
        assert!(same(&l0, &l1) < bench.pool / 5, "{}", same(&l0, &l1));
        assert!(same(&l0, r.teacher()) < bench.pool / 5);
        assert_eq!(r.task(1).labels, l1);
    }

    #[test]
    fn a_fresh_network_learns_one_teacher_task_in_the_default_budget() {
        let bench = SupervisedBench::default();
        let data = TaskStream::new(&bench, Stream::PermutedInputs, 1);
        let config = Intervention::Vanilla.config(&bench);
        let acc = train_tasks(&bench, &data, &config, 0..1)[0];
        assert!(acc > 0.85, "accuracy {acc}");
    }

    #[test]
    fn every_intervention_runs_and_gives_finite_accuracies() {
        let bench = small();
        let data = TaskStream::new(&bench, Stream::RandomLabels, 2);
        for i in Intervention::ALL {
            let acc = train_tasks(&bench, &data, &i.config(&bench), 0..bench.tasks);
            assert_eq!(acc.len(), bench.tasks);
            assert!(
                acc.iter().all(|a| a.is_finite() && (0.0..=1.0).contains(a)),
                "{i}: {acc:?}"
            );
            // Above chance after 100 steps on 256 samples.
            assert!(acc[0] > 0.15, "{i}: {acc:?}");
        }
    }

    #[test]
    fn resetting_every_layer_at_every_boundary_reproduces_the_fresh_baselines() {
        let bench = small();
        let data = TaskStream::new(&bench, Stream::PermutedLabels, 5);
        let plain = Intervention::Vanilla.config(&bench);
        let fresh: Vec<f64> = (0..bench.tasks)
            .map(|k| train_tasks(&bench, &data, &plain, k..k + 1)[0])
            .collect();
        let reset_all = PlasticityConfig {
            hard_reset_every: bench.steps_per_task as u64,
            hard_reset_layers: ResetLayers::All,
            ..plain.clone()
        };
        let reset = train_tasks(&bench, &data, &reset_all, 0..bench.tasks);
        assert_eq!(reset, fresh);
        // Not by accident: resetting only the output layer, or nothing, differs.
        let vanilla = train_tasks(&bench, &data, &plain, 0..bench.tasks);
        assert_eq!(vanilla[0], fresh[0]);
        assert_ne!(vanilla[1..], fresh[1..]);
        let last = Intervention::HardReset.config(&bench);
        assert_ne!(
            train_tasks(&bench, &data, &last, 0..bench.tasks)[1..],
            fresh[1..]
        );
    }

    #[test]
    fn names_parse_and_bad_settings_are_errors_naming_the_problem() {
        let list = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        assert_eq!(Stream::parse_list(&list("all")).unwrap(), Stream::ALL);
        assert_eq!(
            Intervention::parse_list(&list("redo,nap,redo")).unwrap(),
            [Intervention::Redo, Intervention::Nap]
        );
        for i in Intervention::ALL {
            assert_eq!(i.name().parse::<Intervention>().unwrap(), i);
        }
        let err = Stream::parse_list(&list("permuted_inputs,shuffled")).unwrap_err();
        assert!(err.is_usage());
        let text = err.to_string();
        assert!(
            text.contains("`shuffled`") && text.contains("random_labels"),
            "{text}"
        );
        let err = Intervention::parse_list(&list("dropout")).unwrap_err();
        assert!(
            err.to_string().contains("`dropout`") && err.to_string().contains("shrink_perturb")
        );

        let cases: [(SupervisedBench, &str); 4] = [
            (
                SupervisedBench {
                    seeds: 0,
                    ..small()
                },
                "seeds",
            ),
            (
                SupervisedBench {
                    last_tasks: 4,
                    ..small()
                },
                "last_tasks",
            ),
            (
                SupervisedBench {
                    streams: vec![],
                    ..small()
                },
                "streams",
            ),
            (
                SupervisedBench {
                    weight_decay: -1.0,
                    ..small()
                },
                "weight_decay",
            ),
        ];
        for (bench, needle) in cases {
            let err = run_supervised(&bench, 1, &|_| {}).unwrap_err();
            assert!(err.is_usage() && err.to_string().contains(needle), "{err}");
        }
        let err = run_supervised(&small(), 0, &|_| {}).unwrap_err();
        assert!(err.to_string().contains("jobs"), "{err}");
    }

    #[test]
    fn the_report_summarises_writes_json_and_a_png() {
        let bench = SupervisedBench {
            tasks: 2,
            steps_per_task: 20,
            last_tasks: 1,
            streams: vec![Stream::PermutedLabels, Stream::RandomLabels],
            interventions: vec![Intervention::Vanilla, Intervention::Nap],
            pool: 128,
            ..small()
        };
        let report = run_supervised(&bench, 2, &|_| {}).unwrap();
        assert_eq!(report.runs.len(), 4);
        // A plain and a layer-norm baseline per (stream, seed).
        assert_eq!(report.fresh.len(), 4);
        let names: Vec<&str> = report.summary.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["fresh", "fresh_layer_norm", "vanilla", "nap"].repeat(2)
        );
        // With one seed the gap is the fresh minus the continual accuracy of the last task.
        let run = &report.runs[0];
        let base = report
            .fresh
            .iter()
            .find(|f| f.stream == run.stream && !f.layer_norm)
            .unwrap();
        let row = &report.summary[2];
        assert_eq!(row.gap_mean, Some(base.accuracy[0] - run.accuracy[1]));
        assert!(report.table().contains("permuted_labels  nap"));

        let dir = std::env::temp_dir().join(format!("agentry-continual-{}", std::process::id()));
        let files = report.write(&dir).unwrap();
        let back: SupervisedReport =
            serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
        assert_eq!(back.runs, report.runs);
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
