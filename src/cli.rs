//! The `agent` command line: argument types (parsed by clap, no I/O) and `run`, which
//! resolves them and does the work. The binary only calls [`main_with_args`].

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use agentry_agents::AgentError;
use agentry_agents::config::{Config, ConfigRequest, EnvConfig, resolve};
use agentry_agents::continual::{ContinualError, Intervention, Stream, SupervisedBench};
use agentry_agents::experiment::{PlasticityRl, mean_std, plasticity_rl_experiment, rl_task_steps};
use agentry_agents::runner::{Control, RunState};
use agentry_agents::train::{self, EvalOptions, Observer, Start};
use agentry_envs::bench::{bench_single, bench_vector};
use agentry_envs::{EnvError, Params, registry};

/// agentry: reinforcement-learning agents and environments.
#[derive(Debug, Parser)]
#[command(name = "agent", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every registered environment with its spaces and parameters.
    Envs,
    /// Train an agent: a new run (`--env`) or a run continued (`--resume DIR`).
    Train(TrainArgs),
    /// Evaluate a run's newest policy and record the result in its summary.json.
    Eval(EvalArgs),
    /// Draw learning curves of one or more runs (PNG or SVG).
    Plot(PlotArgs),
    /// Record episodes of a trained policy into a dataset file (for offline learners).
    Collect(CollectArgs),
    /// Write a run's newest policy as one self-contained file, to embed in a program
    /// (`agentry::Agent::load`) or evaluate (`agent eval --policy FILE`).
    Export(ExportArgs),
    /// Measure speed.
    Bench {
        /// What to measure.
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Run a study: several configurations over several seeds, then plot them.
    Experiment {
        /// Which study.
        #[command(subcommand)]
        what: ExperimentCommand,
    },
}

/// The studies `agent experiment` runs.
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Rainbow vs Rainbow + macro-actions vs + credit sharing (learned and fixed Σ) on
    /// the corridor grid-world (Hosu, Rebedea & Pascanu 2025).
    Macros(MacroArgs),
}

/// Arguments of `agent experiment macros`.
#[derive(Debug, Args)]
pub struct MacroArgs {
    /// Seeds, comma-separated.
    #[arg(long, default_value = "1,2,3,4,5", value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Env steps per run (default: the rainbow-grid-world preset's).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Macro length k of "repeat each primitive k times".
    #[arg(long, default_value_t = 4)]
    pub repeat: usize,
    /// λ of the credit-sharing regulariser.
    #[arg(long, default_value_t = 1.0)]
    pub credit: f64,
    /// Runs trained at once.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Directory for the runs, the plot and summary.json.
    #[arg(long, default_value = "runs/experiment-macros")]
    pub out: PathBuf,
}

/// What `agent bench` measures.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Environment steps per second: one environment, then a vector of them.
    Envs(BenchEnvsArgs),
    /// Single-observation policy latency and allocations per call: a PPO policy (MLP
    /// or Nature CNN) acting through `agentry::Agent`, as an embedding program runs it.
    Inference(BenchInferenceArgs),
    /// Replay-memory sampling: uniform, and prioritized with priority updates.
    Replay(BenchReplayArgs),
    /// Plasticity loss on non-stationary supervised task streams, with each remedy.
    Plasticity(BenchPlasticityArgs),
    /// Per-token inference latency and state size of the xLSTM (LRAM) and the
    /// Transformer with a KV cache (DT) as the context grows.
    Sequence(BenchSequenceArgs),
    /// RA-DT's retrieval index: exact top-k (f32/f16/i8 keys) against the machine's
    /// memory bandwidth, and HNSW's recall and speed-up.
    Retrieval(BenchRetrievalArgs),
}

/// Arguments of `agent bench retrieval` (defaults: the figures, ~25 min).
#[derive(Debug, Args)]
pub struct BenchRetrievalArgs {
    /// Values per key.
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// Index sizes for exact search.
    #[arg(long, default_value = "10000,100000,1000000", value_delimiter = ',')]
    pub sizes: Vec<usize>,
    /// Key types for exact search (f32, f16, i8).
    #[arg(long, default_value = "f32,f16,i8", value_delimiter = ',')]
    pub key_types: Vec<String>,
    /// Thread counts.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// k values.
    #[arg(long, default_value = "10,50", value_delimiter = ',')]
    pub k: Vec<usize>,
    /// Queries per figure.
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Keys of the HNSW graph (0: no HNSW).
    #[arg(long, default_value_t = 1_000_000)]
    pub hnsw_n: usize,
    /// ef_search values measured.
    #[arg(long, default_value = "16,32,64,128,256,512", value_delimiter = ',')]
    pub ef_search: Vec<usize>,
}

/// Arguments of `agent bench sequence`.
#[derive(Debug, Args)]
pub struct BenchSequenceArgs {
    /// Model width (both models).
    #[arg(long, default_value_t = 128)]
    pub d_model: usize,
    /// Blocks / layers (both models; the xLSTM's block 1 is an sLSTM).
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Context lengths in environment steps of `--tokens-per-step` tokens each: what the
    /// xLSTM has read / the DT's cache holds before the timed steps.
    #[arg(long, default_value = "50,200,1000,4000", value_delimiter = ',')]
    pub contexts: Vec<usize>,
    /// Tokens fed per environment step, all of them timed as one action: 3 is the LRAM
    /// and DT agents' (state, return-to-go, reward); 1 times a single token with the
    /// context counted in tokens.
    #[arg(long, default_value_t = 3)]
    pub tokens_per_step: usize,
    /// Batch sizes (sequences stepped together).
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    pub batches: Vec<usize>,
    /// Timed steps per measurement.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Which implementation of the single-token steps to time: `burn` (the models'
    /// `step` through burn's tensor operations), `rust` (the plain-Rust kernels
    /// `XLstmWeights::step` and `GptWeights::step`) or `both` (one row each).
    #[arg(long, default_value = "both", value_parser = ["burn", "rust", "both"])]
    pub engine: String,
    /// What the µs/step columns report over the timed steps, each timed alone: `median`
    /// (robust to a shared machine's preemptions), `mean` or `min`.
    #[arg(long, default_value = "median", value_parser = ["median", "mean", "min"])]
    pub stat: String,
}

/// Arguments of `agent bench envs`.
#[derive(Debug, Args)]
pub struct BenchEnvsArgs {
    /// Registered environment name (see `agent envs`).
    #[arg(long, default_value = "cartpole")]
    pub env: String,
    /// An environment parameter, `KEY=VALUE` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Copies in the vectorized measurement.
    #[arg(long, default_value_t = 16)]
    pub num_envs: usize,
    /// Threads stepping the copies (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Environment steps per measurement (summed over copies when vectorized).
    #[arg(long, default_value_t = 2_000_000)]
    pub steps: u64,
    /// Seed of the environments and the random actions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Arguments of `agent bench plasticity` (see `agentry_agents::continual` for what is
/// measured and how).
#[derive(Debug, Args)]
pub struct BenchPlasticityArgs {
    /// Seeds per (stream, intervention): seeds 1..=N.
    #[arg(long, default_value_t = SupervisedBench::DEFAULT_SEEDS)]
    pub seeds: u64,
    /// Tasks per stream.
    #[arg(long, default_value_t = SupervisedBench::DEFAULT_TASKS)]
    pub tasks: usize,
    /// Gradient steps per task (minibatches of 64).
    #[arg(long, default_value_t = SupervisedBench::DEFAULT_STEPS_PER_TASK)]
    pub steps_per_task: usize,
    /// The final tasks the accuracy and the plasticity gap are averaged over [default:
    /// 5, or all the tasks if there are fewer].
    #[arg(long)]
    pub last_tasks: Option<usize>,
    /// Task streams, comma-separated, or `all`: permuted_inputs, permuted_labels,
    /// random_labels.
    #[arg(long, default_value = "all", value_delimiter = ',')]
    pub streams: Vec<String>,
    /// Interventions, comma-separated, or `all`: vanilla, layer_norm, l2_init, nap,
    /// soft_reset, hard_reset, shrink_perturb, redo.
    #[arg(long, default_value = "all", value_delimiter = ',')]
    pub interventions: Vec<String>,
    /// Runs trained at once (threads).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Directory for plasticity-supervised.json and plasticity-supervised.png, and
    /// `rl/` (the RL runs, plasticity-rl.json and plasticity-rl.png).
    #[arg(long, default_value = "bench-plasticity")]
    pub out: PathBuf,
    /// The suites, comma-separated: `supervised` (the task streams above) and `rl` (PPO
    /// on a Dark-Room whose goal moves; see `agentry_agents::experiment::PlasticityRl`).
    #[arg(long, default_value = "supervised,rl", value_delimiter = ',')]
    pub suite: Vec<String>,
    /// RL: tasks (goal positions) per run.
    #[arg(long, default_value_t = 8)]
    pub rl_tasks: u64,
    /// RL: episodes per task (a task is 200 × this many env steps).
    #[arg(long, default_value_t = 100)]
    pub rl_switch_every: u64,
    /// RL: PPO epochs per batch.
    #[arg(long, default_value_t = 16)]
    pub rl_epochs: usize,
    /// RL interventions, comma-separated, or `all`: vanilla, pfo, layer_norm, l2_init,
    /// nap, soft_reset, hard_reset, shrink_perturb, redo, fresh (the reference).
    #[arg(long, default_value = "all", value_delimiter = ',')]
    pub rl_interventions: Vec<String>,
}

/// Arguments of `agent train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Registered environment (see `agent envs`); picks the preset `configs/{algo}-{env}.toml`.
    #[arg(long, conflicts_with = "resume", required_unless_present_any = ["resume", "config", "datasets"])]
    pub env: Option<String>,
    /// Dataset files or directories for an offline learner (`--algo lram` or `dt`);
    /// see `agent collect`.
    #[arg(long = "dataset", value_name = "PATH", num_args = 1.., conflicts_with_all = ["resume", "env"])]
    pub datasets: Vec<PathBuf>,
    /// Continue the run in DIR from its newest checkpoint.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// The algorithm (default: ppo).
    #[arg(long, conflicts_with = "resume")]
    pub algo: Option<String>,
    /// A TOML file layered over the preset.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub config: Option<PathBuf>,
    /// `section.key=value`, layered last (repeatable).
    #[arg(long = "set", value_name = "K=V", conflicts_with = "resume")]
    pub sets: Vec<String>,
    /// Total environment steps (with --resume: the new total).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed of everything random in the run.
    #[arg(long, conflicts_with = "resume")]
    pub seed: Option<u64>,
    /// Actor threads.
    #[arg(long, conflicts_with = "resume")]
    pub actors: Option<usize>,
    /// The run directory (default: runs/{algo}-{env}-seed{seed}).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `agent eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run directory (its newest policy; the result goes into its summary.json).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "policy",
        conflicts_with = "policy"
    )]
    pub run: Option<PathBuf>,
    /// A policy file (`checkpoints/policy-N.agentry` or an exported policy).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Evaluate on this environment instead of the one the policy was trained on.
    #[arg(long)]
    pub env: Option<String>,
    /// An environment parameter, `KEY=VALUE`, over the training environment's (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Episodes to play.
    #[arg(long, default_value_t = 100)]
    pub episodes: usize,
    /// Print every frame as ANSI text.
    #[arg(long)]
    pub render: bool,
    /// Greedy actions instead of sampled ones.
    #[arg(long)]
    pub deterministic: bool,
    /// Seed of the evaluation episodes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cut an episode after this many steps.
    #[arg(long, default_value_t = 100_000)]
    pub max_steps: u64,
    /// A DT run (trained on Dark-Room with dt.task_embedding = false): evaluate it in
    /// context on the held-out goals, as RA-DT runs always are (40 consecutive
    /// episodes each; writes DIR/in_context.csv).
    #[arg(long)]
    pub in_context: bool,
}

/// Arguments of `agent export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run directory whose newest policy is exported.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// The file to write (conventionally `NAME.agentry`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `agent collect`.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The run directory whose newest policy plays.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["policy", "learner"],
        conflicts_with_all = ["policy", "learner"]
    )]
    pub run: Option<PathBuf>,
    /// A policy file instead of a run.
    #[arg(long, value_name = "FILE", conflicts_with = "learner")]
    pub policy: Option<PathBuf>,
    /// Instead of a trained policy's episodes, the learning history of a learner
    /// trained from scratch on --env while it records: `q-learning` (a table with
    /// optimistic initial values, for grid-worlds and tic-tac-toe; --epsilon is its
    /// exploration). The source of histories for in-context learners.
    #[arg(long, value_name = "ALGO", requires = "env")]
    pub learner: Option<String>,
    /// Q-learning's step size α (default 0.5).
    #[arg(long, requires = "learner")]
    pub alpha: Option<f64>,
    /// Q-learning's discount γ (default 0.99).
    #[arg(long, requires = "learner")]
    pub gamma: Option<f64>,
    /// Q-learning's initial value of every entry (default 1).
    #[arg(long, requires = "learner")]
    pub initial_q: Option<f64>,
    /// Record on this environment instead of the one the policy was trained on.
    #[arg(long)]
    pub env: Option<String>,
    /// An environment parameter, `KEY=VALUE`, over the training environment's (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Episodes to record.
    #[arg(long)]
    pub episodes: usize,
    /// Probability of a uniformly random (legal) action at each step.
    #[arg(long, default_value_t = 0.0)]
    pub epsilon: f64,
    /// Greedy actions instead of sampled ones.
    #[arg(long)]
    pub deterministic: bool,
    /// Seed of the episodes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The task number the episodes carry.
    #[arg(long, default_value_t = 0)]
    pub task: u32,
    /// Episodes of a random policy played for the dataset's `random_return`
    /// (the 0 of normalised scores).
    #[arg(long, default_value_t = 100)]
    pub random_episodes: usize,
    /// Episodes the policy plays for the dataset's `expert_return` (the 1 of normalised
    /// scores): the recorded ones, and more when this is larger.
    #[arg(long, default_value_t = 100)]
    pub reference_episodes: usize,
    /// Cut an episode after this many steps.
    #[arg(long, default_value_t = 100_000)]
    pub max_steps: u64,
    /// The dataset file to write (`.agds`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `agent plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directories; runs that differ only in their seed are drawn as mean ± std.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// The metrics.csv column to plot.
    #[arg(long, default_value = "episode_return_mean")]
    pub metric: String,
    /// The output file, .png or .svg.
    #[arg(long, default_value = "plot.png")]
    pub out: PathBuf,
    /// Trailing moving-average window, in rows.
    #[arg(long, default_value_t = 1)]
    pub smooth: usize,
    /// Plot the runs' in-context curves (their in_context.csv, see `agent eval
    /// --in-context`) against the episode index, mean ± std over the seeds of each
    /// learner, and write them as FILE.csv next to the plot.
    #[arg(long, conflicts_with_all = ["metric", "smooth"])]
    pub in_context: bool,
}

/// Arguments of `agent bench inference`.
#[derive(Debug, Args)]
pub struct BenchInferenceArgs {
    /// Observation width.
    #[arg(long, default_value_t = 4)]
    pub obs: usize,
    /// Discrete actions.
    #[arg(long, default_value_t = 2)]
    pub actions: usize,
    /// Hidden widths, comma-separated.
    #[arg(long, default_value = "64,64", value_delimiter = ',')]
    pub hidden: Vec<usize>,
    /// Calls per measurement [default: 1000000 for the MLP, 500 for the CNN].
    #[arg(long)]
    pub calls: Option<u64>,
    /// The network: `mlp` (a PPO actor, --obs/--hidden) or `cnn` (the Nature CNN on 4
    /// stacked 84×84 frames, Atari's policy).
    #[arg(long, default_value = "mlp")]
    pub net: String,
    /// Time a saved policy instead (a run directory or a policy file, as `Agent::load`
    /// reads it): `Agent::act` + `Agent::observe` per call over episodes of
    /// `--episode-steps` steps; a sequence model both through burn and through the
    /// plain-Rust step kernels where they cover it [default calls: 20000].
    #[arg(long, conflicts_with = "net")]
    pub policy: Option<PathBuf>,
    /// With --policy: steps per episode (`Agent::reset_state` after each).
    #[arg(long, default_value_t = 100)]
    pub episode_steps: u64,
}

/// Arguments of `agent bench replay`.
#[derive(Debug, Args)]
pub struct BenchReplayArgs {
    /// Transitions the memories hold (filled before timing).
    #[arg(long, default_value_t = 1_000_000)]
    pub capacity: usize,
    /// Observation width.
    #[arg(long, default_value_t = 4)]
    pub obs_dim: usize,
    /// Batch sizes, comma-separated.
    #[arg(long, default_value = "32,256", value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Samples per figure (divided into batches).
    #[arg(long, default_value_t = 2_000_000)]
    pub samples: usize,
}

/// Why a command failed, which decides the exit code.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or configuration (exit code 2).
    Usage(String),
    /// A failure while working (exit code 1).
    Runtime(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Runtime(m) => f.write_str(m),
        }
    }
}

impl From<AgentError> for CliError {
    fn from(e: AgentError) -> Self {
        match e {
            // A damaged or foreign file the user pointed at is bad input, as a damaged
            // dataset is: code 2, naming the file.
            AgentError::Config(_) | AgentError::Usage(_) | AgentError::Checkpoint { .. } => {
                CliError::Usage(e.to_string())
            }
            AgentError::EnvSetup(env) => env.into(),
            other => CliError::Runtime(other.to_string()),
        }
    }
}

impl From<EnvError> for CliError {
    fn from(e: EnvError) -> Self {
        match e {
            EnvError::UnknownEnv { .. } | EnvError::BadParam { .. } | EnvError::Invalid(_) => {
                CliError::Usage(e.to_string())
            }
            other => CliError::Runtime(other.to_string()),
        }
    }
}

fn io_err(e: std::io::Error) -> CliError {
    CliError::Runtime(format!("cannot write output: {e}"))
}

/// Run a parsed command, writing results to `out` and progress notes to `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    match cli.command {
        Command::Envs => list_envs(out),
        Command::Train(args) => train(args, out, err),
        Command::Eval(args) => eval(args, out, err),
        Command::Plot(args) => plot(args, out),
        Command::Collect(args) => collect(args, out, err),
        Command::Export(args) => export(args, out),
        Command::Bench {
            what: BenchCommand::Envs(args),
        } => bench_envs(&args, out, err),
        Command::Bench {
            what: BenchCommand::Inference(args),
        } => bench_inference(&args, out),
        Command::Bench {
            what: BenchCommand::Replay(args),
        } => bench_replay(&args, out),
        Command::Bench {
            what: BenchCommand::Plasticity(args),
        } => bench_plasticity(&args, out, err),
        Command::Bench {
            what: BenchCommand::Sequence(args),
        } => bench_sequence(&args, out),
        Command::Bench {
            what: BenchCommand::Retrieval(args),
        } => bench_retrieval(&args, out, err),
        Command::Experiment {
            what: ExperimentCommand::Macros(args),
        } => experiment_macros(args, out, err),
    }
}

fn experiment_macros(
    args: MacroArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    use agentry_agents::experiment::{MacroExperiment, macro_experiment, mean_std};
    if args.seeds.is_empty() || args.jobs == 0 || args.repeat < 2 {
        return Err(CliError::Usage(
            "give at least one seed, --jobs ≥ 1 and --repeat ≥ 2".into(),
        ));
    }
    let spec = MacroExperiment {
        seeds: args.seeds,
        steps: args.steps,
        repeat: args.repeat,
        credit_sharing: args.credit,
        jobs: args.jobs,
        out: args.out,
    };
    let _ = writeln!(
        err,
        "{} variants × {} seeds into {}",
        4,
        spec.seeds.len(),
        spec.out.display()
    );
    // Runs finish on worker threads: their notes go straight to the process's stderr.
    let note = |line: &str| eprintln!("{line}");
    let (results, plot) = macro_experiment(&spec, &note)?;
    for v in &results {
        let (f, fs) = mean_std(&v.final_returns);
        let (b, bs) = mean_std(&v.best_returns);
        let (t, _) = mean_std(&v.seconds);
        writeln!(
            out,
            "{:<24} final episode_return_mean {f:.3} ± {fs:.3}, best {b:.3} ± {bs:.3} \
             ({} seeds, {t:.1} s per run)",
            v.name,
            v.runs.len()
        )
        .map_err(io_err)?;
    }
    writeln!(out, "wrote {}", plot.display()).map_err(io_err)?;
    Ok(())
}

impl From<ContinualError> for CliError {
    fn from(e: ContinualError) -> Self {
        if e.is_usage() {
            CliError::Usage(e.to_string())
        } else {
            CliError::Runtime(e.to_string())
        }
    }
}

fn bench_plasticity(
    args: &BenchPlasticityArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    use agentry_agents::continual::run_supervised;
    for suite in &args.suite {
        if !["supervised", "rl"].contains(&suite.as_str()) {
            return Err(CliError::Usage(format!(
                "unknown suite `{suite}`; allowed: supervised, rl"
            )));
        }
    }
    let rl = args.suite.iter().any(|s| s == "rl").then(|| PlasticityRl {
        seeds: (1..=args.seeds).collect(),
        tasks: args.rl_tasks,
        switch_every: args.rl_switch_every,
        epochs: args.rl_epochs,
        interventions: if args.rl_interventions.iter().any(|s| s == "all") {
            Vec::new()
        } else {
            args.rl_interventions.clone()
        },
        jobs: args.jobs,
        out: args.out.join("rl"),
    });
    if let Some(spec) = &rl {
        spec.check()?;
    }
    let bench = SupervisedBench {
        seeds: args.seeds,
        tasks: args.tasks,
        steps_per_task: args.steps_per_task,
        last_tasks: args
            .last_tasks
            .unwrap_or(SupervisedBench::DEFAULT_LAST_TASKS.min(args.tasks)),
        streams: Stream::parse_list(&args.streams)?,
        interventions: Intervention::parse_list(&args.interventions)?,
        ..SupervisedBench::default()
    };
    bench.check()?;
    if args.jobs == 0 {
        return Err(CliError::Usage("--jobs must be at least 1".into()));
    }
    // A directory that cannot be made should fail now, not after the runs.
    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::Usage(format!("--out {}: {e}", args.out.display())))?;
    let _ = writeln!(
        err,
        "{} streams × {} interventions × {} seeds, {} tasks of {} steps, on {} threads",
        bench.streams.len(),
        bench.interventions.len(),
        bench.seeds,
        bench.tasks,
        bench.steps_per_task,
        args.jobs
    );
    // Runs finish on worker threads: their notes go straight to the process's stderr.
    let note = |line: &str| eprintln!("{line}");
    if args.suite.iter().any(|s| s == "supervised") {
        let report = run_supervised(&bench, args.jobs, &note)?;
        write!(out, "{}", report.table()).map_err(io_err)?;
        writeln!(
            out,
            "{} seeds, {} tasks × {} steps; {:.0} s",
            bench.seeds, bench.tasks, bench.steps_per_task, report.wall_time_s
        )
        .map_err(io_err)?;
        for file in report.write(&args.out)? {
            writeln!(out, "wrote {}", file.display()).map_err(io_err)?;
        }
    }
    if let Some(spec) = rl {
        let _ = writeln!(
            err,
            "RL: PPO ({} epochs) on a 5×5 Dark-Room whose goal moves every {} episodes, \
             {} tasks, {} seeds",
            spec.epochs,
            spec.switch_every,
            spec.tasks,
            spec.seeds.len()
        );
        let start = std::time::Instant::now();
        let (results, plot) = plasticity_rl_experiment(&spec, &note)?;
        writeln!(
            out,
            "{:<16} {:>22} {:>22}",
            "intervention", "return (tasks 2..)", "gap (fresh − this)"
        )
        .map_err(io_err)?;
        for r in &results {
            let (s, ss) = mean_std(&r.scores);
            let (g, gs) = mean_std(&r.gaps);
            writeln!(
                out,
                "{:<16} {:>13.2} ± {:<6.2} {:>13.2} ± {:<6.2}",
                r.name, s, ss, g, gs
            )
            .map_err(io_err)?;
        }
        writeln!(
            out,
            "{} seeds, {} tasks × {} env steps; {:.0} s",
            spec.seeds.len(),
            spec.tasks,
            rl_task_steps(spec.switch_every),
            start.elapsed().as_secs_f64()
        )
        .map_err(io_err)?;
        writeln!(out, "wrote {}", plot.display()).map_err(io_err)?;
    }
    Ok(())
}

fn list_envs(out: &mut dyn Write) -> Result<(), CliError> {
    for spec in registry() {
        let aliases = if spec.aliases.is_empty() {
            String::new()
        } else {
            format!(" ({})", spec.aliases.join(", "))
        };
        writeln!(out, "{}{aliases}\n    {}", spec.name, spec.summary).map_err(io_err)?;
        match spec.make(&Params::new()) {
            Ok(env) => {
                writeln!(
                    out,
                    "    observation: {}\n    action: {}",
                    env.observation_space(),
                    env.action_space()
                )
                .map_err(io_err)?;
                if env.action_mask_len() > 0 {
                    writeln!(
                        out,
                        "    legal-action mask: {} entries",
                        env.action_mask_len()
                    )
                    .map_err(io_err)?;
                }
                if !env.extra_names().is_empty() {
                    writeln!(out, "    extras: {}", env.extra_names().join(", "))
                        .map_err(io_err)?;
                }
            }
            Err(e) => writeln!(out, "    (cannot build with defaults: {e})").map_err(io_err)?,
        }
        writeln!(out, "    parameters:").map_err(io_err)?;
        for p in spec.all_params() {
            let default = p
                .default
                .as_deref()
                .map(|d| format!(" = {}", d.replace('\n', "/")))
                .unwrap_or_default();
            writeln!(out, "      {}: {}{default} — {}", p.name, p.kind, p.doc).map_err(io_err)?;
        }
    }
    Ok(())
}

fn bench_inference(args: &BenchInferenceArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use agentry_agents::ppo::{ActionKind, Ppo, PpoShape};
    if let Some(path) = &args.policy {
        return bench_policy_inference(path, args.calls.unwrap_or(20_000), args.episode_steps, out);
    }
    let calls = args
        .calls
        .unwrap_or(if args.net == "cnn" { 500 } else { 1_000_000 });
    if args.net == "cnn" {
        return bench_cnn_inference(args.actions, calls, out);
    }
    if args.net != "mlp" {
        return Err(CliError::Usage(format!(
            "unknown --net `{}`; allowed: mlp, cnn",
            args.net
        )));
    }
    if args.obs == 0 || args.actions == 0 || calls == 0 || args.hidden.contains(&0) {
        return Err(CliError::Usage(
            "--obs, --actions, --calls and every --hidden width must be at least 1".into(),
        ));
    }
    let config = agentry_agents::config::PpoConfig {
        hidden: args.hidden.clone(),
        ..Default::default()
    };
    let shape = PpoShape::flat(
        args.obs,
        ActionKind::Discrete {
            n: args.actions,
            masked: false,
        },
    );
    let policy = Ppo::new(&config, &Default::default(), shape, 1)?.acting_policy();
    let actor = policy.actor.clone();
    let mut agent = bench_agent(policy, "cartpole");
    let mut scratch = actor.scratch();
    let mut logits = vec![0f32; args.actions];
    let mut sink = 0f32;
    let mut x: Vec<f32> = (0..args.obs).map(|i| 0.1 * i as f32 - 0.2).collect();
    let forward = time_calls(calls, &mut |i| {
        x[0] = (i & 7) as f32 * 0.01;
        actor.forward(std::hint::black_box(&x), &mut scratch, &mut logits);
        sink += logits[0];
    });
    std::hint::black_box(sink);
    let (act, sample) = time_agent(&mut agent, &mut x, calls, |x, i| {
        x[0] = (i & 7) as f32 * 0.01;
    })?;
    let dims: Vec<String> = std::iter::once(args.obs)
        .chain(args.hidden.iter().copied())
        .chain(std::iter::once(args.actions))
        .map(|d| d.to_string())
        .collect();
    writeln!(
        out,
        "{} tanh MLP PPO policy, one observation per call, {calls} calls, 1 thread",
        dims.join("-")
    )
    .map_err(io_err)?;
    writeln!(
        out,
        "{:<36} {:>12} {:>18}",
        "", "ns/call", "allocations/call"
    )
    .map_err(io_err)?;
    for (name, t) in [
        ("actor forward (MlpWeights)", forward),
        ("Agent::act (greedy)", act),
        ("Agent::sample (forward + sample)", sample),
    ] {
        writeln!(out, "{name:<36} {:>12.0} {:>18}", t.ns, t.allocations()).map_err(io_err)?;
    }
    Ok(())
}

/// `agent bench inference --policy PATH`: a saved policy's `Agent::act` +
/// `Agent::observe(0)` per call, on observations that change every call, a new episode
/// every `episode_steps` calls; a sequence model through burn, then through the
/// plain-Rust kernels if they cover it.
fn bench_policy_inference(
    path: &Path,
    calls: u64,
    episode_steps: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if calls == 0 || episode_steps == 0 {
        return Err(CliError::Usage(
            "--calls and --episode-steps must be at least 1".into(),
        ));
    }
    let mut agent = crate::Agent::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    let info = agent.info().clone();
    let mut obs: Vec<f32> = (0..info.obs_dim).map(|i| 0.1 * i as f32 - 0.2).collect();
    writeln!(
        out,
        "{} policy on {} ({} observation values), act + observe per call, {calls} calls, \
         episodes of {episode_steps} steps, 1 thread",
        info.algo, info.env.name, info.obs_dim
    )
    .map_err(io_err)?;
    writeln!(
        out,
        "{:<36} {:>12} {:>18}",
        "", "ns/call", "allocations/call"
    )
    .map_err(io_err)?;
    let engines: &[(bool, &str)] = if info.recurrent {
        &[
            (false, "Agent::act+observe (burn)"),
            (true, "Agent::act+observe (kernels)"),
        ]
    } else {
        &[(true, "Agent::act+observe")]
    };
    for &(kernels, name) in engines {
        if agent.use_kernels(kernels) != kernels {
            writeln!(out, "{name:<36} {:>12} {:>18}", "(not covered)", "-").map_err(io_err)?;
            continue;
        }
        // Errors (a wrong width) show here, not as silently skipped calls below.
        agent.act(&obs[..])?;
        agent.observe(0.0)?;
        let mut picked = 0usize;
        let t = time_calls(calls, &mut |i| {
            if i % episode_steps == 0 {
                agent.reset_state();
            }
            obs[0] = (i & 7) as f32 * 0.1;
            if let Ok(agentry_envs::Action::Discrete(a)) = agent.act(std::hint::black_box(&obs[..]))
            {
                picked += a;
            }
            let _ = agent.observe(0.0);
        });
        std::hint::black_box(picked);
        writeln!(out, "{name:<36} {:>12.0} {:>18}", t.ns, t.allocations()).map_err(io_err)?;
    }
    Ok(())
}

/// An [`Agent`](crate::Agent) acting with `policy`, as if loaded from a run on
/// environment `env`.
fn bench_agent(policy: agentry_agents::ppo::PpoPolicy, env: &str) -> crate::Agent {
    use agentry_agents::train::{LoadedPolicy, Policy, PolicyMeta};
    crate::Agent::from_policy(LoadedPolicy {
        path: PathBuf::from("(freshly initialised)"),
        meta: PolicyMeta {
            algo: "ppo".into(),
            env: EnvConfig {
                name: env.into(),
                params: Params::new(),
            },
            env_steps: 0,
        },
        policy: Policy::Ppo(policy),
    })
}

/// Time per call and allocations per call of a measurement.
#[derive(Clone, Copy, Debug)]
struct Timed {
    ns: f64,
    /// Allocations over the timed calls (`None`: the global allocator does not count).
    allocations: Option<u64>,
    calls: u64,
}

impl Timed {
    /// Allocations per call, as printed.
    fn allocations(&self) -> String {
        match self.allocations {
            Some(0) => "0".into(),
            Some(n) => format!("{:.3}", n as f64 / self.calls as f64),
            None => "not counted".into(),
        }
    }
}

/// `f` called `calls` times after a tenth as many to warm up: nanoseconds per call,
/// and the allocations of the timed calls (counted when the program's global allocator
/// is [`crate::alloc::Counting`], as the `agent` binary's is).
fn time_calls(calls: u64, f: &mut dyn FnMut(u64)) -> Timed {
    for i in 0..calls / 10 {
        f(i);
    }
    let before = crate::alloc::allocations();
    let t = Instant::now();
    for i in 0..calls {
        f(i);
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / calls as f64;
    let after = crate::alloc::allocations();
    Timed {
        ns,
        // A program that counts has allocated long before this point.
        allocations: (before > 0).then_some(after - before),
        calls,
    }
}

/// `Agent::act` and `Agent::sample` on `obs` (changed by `vary` before each call).
fn time_agent<T>(
    agent: &mut crate::Agent,
    obs: &mut [T],
    calls: u64,
    vary: impl Fn(&mut [T], u64),
) -> Result<(Timed, Timed), CliError>
where
    [T]: agentry_agents::embed::AsObs,
{
    use agentry_envs::Action;
    use rand::SeedableRng;
    // Errors (a wrong width) show here, not as a silently skipped call below.
    agent.act(&*obs)?;
    let mut picked = 0usize;
    let act = time_calls(calls, &mut |i| {
        vary(obs, i);
        if let Ok(Action::Discrete(a)) = agent.act(std::hint::black_box(&*obs)) {
            picked += a;
        }
    });
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let sample = time_calls(calls, &mut |i| {
        vary(obs, i);
        if let Ok(Action::Discrete(a)) = agent.sample(std::hint::black_box(&*obs), &mut rng) {
            picked += a;
        }
    });
    std::hint::black_box(picked);
    Ok((act, sample))
}

/// `agent bench inference --net cnn`: the Nature CNN's acting copy on one frame stack,
/// alone and as a PPO policy behind an `Agent`.
fn bench_cnn_inference(actions: usize, calls: u64, out: &mut dyn Write) -> Result<(), CliError> {
    use agentry_agents::ppo::{ActionKind, Ppo, PpoShape};
    use agentry_models::{CnnWeights, NatureCnnConfig};
    if actions == 0 || calls == 0 {
        return Err(CliError::Usage(
            "--actions and --calls must be at least 1".into(),
        ));
    }
    let config = NatureCnnConfig::new(4, actions).with_output_gain(0.01);
    let cnn = config.init_seeded(&agentry_models::cpu(), 1);
    let weights = CnnWeights::from_cnn(&cnn, &config);
    let mut scratch = weights.scratch();
    let mut frames: Vec<u8> = (0..weights.input_len())
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let mut logits = vec![0f32; actions];
    let mut sink = 0f32;
    let forward = time_calls(calls, &mut |i| {
        frames[0] = i as u8;
        weights.forward(std::hint::black_box(&frames), &mut scratch, &mut logits);
        sink += logits[0];
    });
    std::hint::black_box(sink);
    // PPO's network for Atari: `network = auto` picks the Nature CNN for u8 frames.
    let shape = PpoShape {
        obs_dim: weights.input_len(),
        action: ActionKind::Discrete {
            n: actions,
            masked: false,
        },
        obs_shape: vec![4, 84, 84],
        obs_u8: true,
    };
    let config = agentry_agents::config::PpoConfig::default();
    let policy = Ppo::new(&config, &Default::default(), shape, 1)?.acting_policy();
    let mut agent = bench_agent(policy, "atari");
    let (act, sample) = time_agent(&mut agent, &mut frames, calls, |f, i| f[0] = i as u8)?;
    writeln!(
        out,
        "Nature CNN 4×84×84 → {actions}, one observation per call, {calls} calls, 1 thread"
    )
    .map_err(io_err)?;
    writeln!(
        out,
        "{:<36} {:>12} {:>18}",
        "", "µs/call", "allocations/call"
    )
    .map_err(io_err)?;
    for (name, t) in [
        ("forward (CnnWeights)", forward),
        ("PPO Agent::act (greedy)", act),
        ("PPO Agent::sample", sample),
    ] {
        writeln!(
            out,
            "{name:<36} {:>12.0} {:>18}",
            t.ns / 1e3,
            t.allocations()
        )
        .map_err(io_err)?;
    }
    Ok(())
}

/// `agent bench sequence`: for each batch and context, feed the xLSTM and the Transformer's
/// cache `context` environment steps of `--tokens-per-step` tokens, then time `steps` more
/// environment steps, each its tokens fed one by one (the Transformer's attending to the
/// whole cache), through burn and/or through the plain-Rust kernels (`--engine`), one row
/// per engine.
fn bench_sequence(args: &BenchSequenceArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use agentry_models::gpt::GptWeights;
    use agentry_models::xlstm::XLstmWeights;
    use agentry_models::{GptConfig, XLstmConfig};
    if args.steps == 0
        || args.tokens_per_step == 0
        || args.contexts.contains(&0)
        || args.batches.contains(&0)
        || args.contexts.is_empty()
        || args.batches.is_empty()
    {
        return Err(CliError::Usage(
            "--steps, --tokens-per-step, every --contexts and every --batches value must be at \
             least 1"
                .into(),
        ));
    }
    let (burn, rust) = match args.engine.as_str() {
        "burn" => (true, false),
        "rust" => (false, true),
        _ => (true, true),
    };
    let device = agentry_models::cpu();
    let (d, layers, heads, n) = (args.d_model, args.layers, args.heads, args.tokens_per_step);
    let slstm = if layers > 1 { vec![1] } else { vec![] };
    let xlstm = XLstmConfig::new(d, layers, heads)
        .with_slstm_at(slstm)
        .try_init_seeded(&device, 1)
        .map_err(|e| CliError::Usage(format!("xLSTM: {e}")))?;
    let xlstm_rust = XLstmWeights::from_model(&xlstm);
    writeln!(
        out,
        "d_model {d}, {layers} layers, {heads} heads; context in steps of {n} token(s); {} \
         timed steps, {} µs per step ({n} token(s) fed one by one); burn flex CPU and/or plain \
         Rust",
        args.steps, args.stat
    )
    .map_err(io_err)?;
    writeln!(
        out,
        "{:>6} {:>7} {:>14} {:>14} {:>14} {:>14} {:>8} {:>6}",
        "batch",
        "context",
        "xlstm us/step",
        "xlstm state B",
        "dt us/step",
        "dt cache B",
        "dt/xlstm",
        "engine"
    )
    .map_err(io_err)?;
    for &b in &args.batches {
        for &c in &args.contexts {
            let gpt = GptConfig::new(d, layers, heads, c * n)
                .init_seeded(&device, 1)
                .map_err(|e| CliError::Usage(format!("Transformer: {e}")))?;
            let mut rows = Vec::new();
            if burn {
                rows.push((
                    "burn",
                    bench_sequence_burn(&xlstm, &gpt, b, c, n, args.steps, &args.stat),
                ));
            }
            if rust {
                let gpt_rust = GptWeights::from_model(&gpt)
                    .map_err(|e| CliError::Usage(format!("Transformer: {e}")))?;
                rows.push((
                    "rust",
                    bench_sequence_rust(&xlstm_rust, &gpt_rust, b, c, n, args.steps, &args.stat),
                ));
            }
            for (engine, [xl_us, xl_bytes, dt_us, dt_bytes]) in rows {
                writeln!(
                    out,
                    "{b:>6} {c:>7} {xl_us:>14.1} {xl_bytes:>14} {dt_us:>14.1} {dt_bytes:>14} {:>8.2} {engine:>6}",
                    dt_us / xl_us
                )
                .map_err(io_err)?;
            }
        }
    }
    Ok(())
}

/// burn's `XLstm::step` and `Gpt::step` for `batch` rows after `context` steps of `per_step`
/// tokens, each timed call feeding `per_step` tokens one by one:
/// [xLSTM µs/step, xLSTM state bytes, DT µs/step, DT cache bytes].
fn bench_sequence_burn(
    xlstm: &agentry_models::XLstm,
    gpt: &agentry_models::Gpt,
    batch: usize,
    context: usize,
    per_step: usize,
    steps: usize,
    stat: &str,
) -> [f64; 4] {
    use agentry_models::burn::tensor::{Distribution, Tensor};
    let device = agentry_models::cpu();
    let d = xlstm.d_model();
    let token = || Tensor::<2>::random([batch, d], Distribution::Normal(0.0, 1.0), &device);
    let mut state = xlstm.init_state(batch, &device);
    for _ in 0..context * per_step {
        let _ = xlstm.step(token(), &mut state);
    }
    let xs: Vec<_> = (0..per_step).map(|_| token()).collect();
    let xl_us = time_steps(steps, stat, || {
        for x in &xs {
            let y = xlstm.step(x.clone(), &mut state);
            std::hint::black_box(y.into_data());
        }
    });
    let mut cache = gpt.init_cache(batch, &device);
    let mut filled = 0;
    while filled < context * per_step {
        let n = (context * per_step - filled).min(256);
        let block = Tensor::<3>::random([batch, n, d], Distribution::Normal(0.0, 1.0), &device);
        let _ = gpt.step_many(block, &mut cache);
        filled += n;
    }
    let dt_us = time_steps(steps, stat, || {
        for x in &xs {
            let y = gpt.step(x.clone(), &mut cache);
            std::hint::black_box(y.into_data());
        }
    });
    [
        xl_us,
        (state.num_values() * 4) as f64,
        dt_us,
        (cache.num_values() * 4) as f64,
    ]
}

/// Run `step` `steps` times, timing each call, and return the `stat` (`median`, `mean` or
/// `min`) of the times in µs.
fn time_steps(steps: usize, stat: &str, mut step: impl FnMut()) -> f64 {
    let mut us = Vec::with_capacity(steps);
    for _ in 0..steps {
        let start = Instant::now();
        step();
        us.push(start.elapsed().as_secs_f64() * 1e6);
    }
    us.sort_by(f64::total_cmp);
    match stat {
        "mean" => us.iter().sum::<f64>() / steps as f64,
        "min" => us[0],
        _ => us[steps / 2],
    }
}

/// The plain-Rust kernels, as [`bench_sequence_burn`]; the DT's cache is filled by stepping
/// the context's tokens through it.
fn bench_sequence_rust(
    xlstm: &agentry_models::xlstm::XLstmWeights,
    gpt: &agentry_models::gpt::GptWeights,
    batch: usize,
    context: usize,
    per_step: usize,
    steps: usize,
    stat: &str,
) -> [f64; 4] {
    use rand::{RngExt, SeedableRng};
    let d = xlstm.d_model();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(context as u64);
    // A pool of random tokens, cycled through while filling.
    let pool: Vec<Vec<f32>> = (0..16)
        .map(|_| {
            (0..batch * d)
                .map(|_| rng.random::<f32>() * 2.0 - 1.0)
                .collect()
        })
        .collect();
    let mut y = vec![0.0; batch * d];
    let mut state = xlstm.state(batch);
    let mut scratch = xlstm.scratch(batch);
    let fill = context * per_step;
    for t in 0..fill {
        xlstm.step(&pool[t % pool.len()], &mut state, &mut scratch, &mut y);
    }
    let xs = &pool[..per_step.min(pool.len())];
    let action = |step: &mut dyn FnMut(&[f32])| {
        for k in 0..per_step {
            step(&xs[k % xs.len()]);
        }
    };
    let xl_us = time_steps(steps, stat, || {
        action(&mut |x| xlstm.step(x, &mut state, &mut scratch, &mut y));
        std::hint::black_box(&y);
    });
    let mut cache = gpt.cache(batch);
    let mut gpt_scratch = gpt.scratch(batch);
    for t in 0..fill {
        gpt.step(&pool[t % pool.len()], &mut cache, &mut gpt_scratch, &mut y);
    }
    let dt_us = time_steps(steps, stat, || {
        action(&mut |x| gpt.step(x, &mut cache, &mut gpt_scratch, &mut y));
        std::hint::black_box(&y);
    });
    [
        xl_us,
        (state.num_values() * 4) as f64,
        dt_us,
        (cache.num_values() * 4) as f64,
    ]
}

fn bench_retrieval(
    args: &BenchRetrievalArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    use agentry_memory::retrieval::KeyType;
    use agentry_memory::retrieval::bench::{RetrievalBenchConfig, bench_retrieval};
    let defaults = RetrievalBenchConfig::default();
    let key_types = args
        .key_types
        .iter()
        .map(|k| {
            KeyType::from_name(k).ok_or_else(|| {
                CliError::Usage(format!("unknown --key-types `{k}`; allowed: f32, f16, i8"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hnsw = (args.hnsw_n > 0).then(|| {
        let mut h = defaults.hnsw.clone().expect("the default measures HNSW");
        h.n = args.hnsw_n;
        h.checkpoint = h.checkpoint.min(args.hnsw_n);
        h.ef_search = args.ef_search.clone();
        h
    });
    let config = RetrievalBenchConfig {
        dim: args.dim,
        sizes: args.sizes.clone(),
        key_types,
        threads: args.threads.clone(),
        ks: args.k.clone(),
        queries: args.queries,
        hnsw,
        ..defaults
    };
    let report = bench_retrieval(&config, &mut |line| {
        let _ = writeln!(err, "{line}");
    })
    .map_err(|e| CliError::Usage(e.to_string()))?;
    writeln!(out, "{report}").map_err(io_err)?;
    Ok(())
}

fn bench_replay(args: &BenchReplayArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.capacity == 0 || args.obs_dim == 0 || args.batch.contains(&0) {
        return Err(CliError::Usage(
            "--capacity, --obs-dim and every --batch must be at least 1".into(),
        ));
    }
    for &batch in &args.batch {
        let iters = (args.samples / batch).max(1);
        let r = agentry_memory::bench::bench_sampling(args.capacity, args.obs_dim, batch, iters)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        writeln!(
            out,
            "capacity {}, obs_dim {}, batch {batch}: uniform {:.2} M samples/s, prioritized \
             (sample + update) {:.2} M samples/s, prioritized inserts {:.2} M/s",
            args.capacity,
            args.obs_dim,
            r.uniform_samples_per_sec / 1e6,
            r.prioritized_samples_per_sec / 1e6,
            r.prioritized_inserts_per_sec / 1e6
        )
        .map_err(io_err)?;
    }
    Ok(())
}

fn bench_envs(
    args: &BenchEnvsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    let params = Params::parse_assignments(&args.params)?;
    let spec = agentry_envs::find(&args.env)?;
    // Build once up front so a bad parameter is reported before any measuring.
    spec.make(&params)?;
    if args.steps == 0 {
        return Err(CliError::Usage("--steps must be at least 1".into()));
    }
    if args.num_envs == 0 {
        return Err(CliError::Usage("--num-envs must be at least 1".into()));
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err(CliError::Usage("--threads must be at least 1".into()));
    }
    let _ = writeln!(
        err,
        "benchmarking {} with random actions, {} steps per figure",
        spec.name, args.steps
    );
    let single = bench_single(spec.name, &params, args.steps, args.seed)?;
    writeln!(out, "{:.0} steps/s", single.steps_per_sec()).map_err(io_err)?;
    let vector = bench_vector(
        spec.name,
        &params,
        args.num_envs,
        threads,
        args.steps,
        args.seed,
    )?;
    writeln!(
        out,
        "{} vectorized, {} envs, {} threads: {:.0} steps/s",
        spec.name,
        args.num_envs,
        threads.min(args.num_envs),
        vector.steps_per_sec()
    )
    .map_err(io_err)?;
    Ok(())
}

fn train(args: TrainArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    let start = match &args.resume {
        Some(dir) => Start::Resume {
            dir: dir.clone(),
            steps: args.steps,
        },
        None => {
            let config = resolve(&ConfigRequest {
                algo: args.algo.clone(),
                env: args.env.clone(),
                file: args.config.clone(),
                sets: args.sets.clone(),
                steps: args.steps,
                seed: args.seed,
                actors: args.actors,
                datasets: args
                    .datasets
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect(),
            })
            .map_err(|e| CliError::Usage(e.to_string()))?;
            Start::New {
                config: Box::new(config),
                out: args.out.clone(),
            }
        }
    };
    let mut progress = Progress::new(err, args.quiet);
    let outcome = train::train(start, &mut progress)?;
    progress.finish();
    let s = &outcome.state;
    if agentry_agents::config::is_offline(&outcome.config.run.algo) {
        writeln!(
            out,
            "{}: {} updates, {:.1} s{}",
            outcome.dir.display(),
            s.env_steps,
            s.wall_time_s,
            s.best_return_mean
                .map(|n| format!(", best mean normalised score {n:.3}"))
                .unwrap_or_default()
        )
        .map_err(io_err)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} env steps, {} episodes, episode_return_mean {}, {:.1} s",
        outcome.dir.display(),
        s.env_steps,
        s.episodes,
        fmt_return(s.return_mean()),
        s.wall_time_s
    )
    .map_err(io_err)?;
    Ok(())
}

fn fmt_return(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}")
    } else {
        "n/a (no episode finished)".into()
    }
}

/// Progress of a training run on stderr: a redrawn line on a terminal, a plain line
/// every few seconds otherwise.
struct Progress<'a> {
    err: &'a mut dyn Write,
    quiet: bool,
    tty: bool,
    total: u64,
    last: Option<Instant>,
    drew: bool,
}

impl<'a> Progress<'a> {
    fn new(err: &'a mut dyn Write, quiet: bool) -> Self {
        Progress {
            err,
            quiet,
            tty: std::io::stderr().is_terminal(),
            total: 0,
            last: None,
            drew: false,
        }
    }

    fn finish(&mut self) {
        if self.drew && self.tty {
            let _ = writeln!(self.err);
        }
    }
}

impl Observer for Progress<'_> {
    fn start(&mut self, dir: &Path, config: &Config, state: &RunState, resumed: Option<u64>) {
        self.total = config.run.steps;
        if self.quiet {
            return;
        }
        let what = match resumed {
            Some(step) => format!("resuming at env step {step}"),
            None if state.env_steps == 0 => "starting".to_string(),
            None => String::new(),
        };
        let _ = writeln!(
            self.err,
            "{}: {} {} on {} to {} env steps ({} actors × {} envs), {what}",
            dir.display(),
            config.run.algo,
            config.run.seed,
            config.env.name,
            config.run.steps,
            config.run.actors,
            config.run.envs_per_actor,
        );
    }

    fn update(&mut self, state: &RunState, _names: &[String], row: &[f64]) -> Control {
        if self.quiet {
            return Control::Continue;
        }
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        let done = state.env_steps >= self.total;
        if !done && self.last.is_some_and(|t| t.elapsed() < every) {
            return Control::Continue;
        }
        self.last = Some(Instant::now());
        let frac = state.env_steps as f64 / self.total.max(1) as f64;
        let sps = row.get(5).copied().unwrap_or(f64::NAN);
        let ret = state.return_mean();
        let ret = if ret.is_finite() {
            format!("{ret:.2}")
        } else {
            "-".into()
        };
        if self.tty {
            const WIDTH: usize = 30;
            let filled = ((frac * WIDTH as f64) as usize).min(WIDTH);
            let _ = write!(
                self.err,
                "\r[{}{}] {:>5.1}% {}/{} steps  {:.0} SPS  return {ret}   ",
                "#".repeat(filled),
                ".".repeat(WIDTH - filled),
                100.0 * frac,
                state.env_steps,
                self.total,
                sps
            );
            self.drew = true;
        } else {
            let _ = writeln!(
                self.err,
                "env_steps {} ({:.1}%)  episodes {}  SPS {:.0}  episode_return_mean {ret}",
                state.env_steps,
                100.0 * frac,
                state.episodes,
                sps
            );
        }
        let _ = self.err.flush();
        Control::Continue
    }
}

fn eval(args: EvalArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    if args.episodes == 0 {
        return Err(CliError::Usage("--episodes must be at least 1".into()));
    }
    if let Some(dir) = &args.run
        && agentry_agents::config::is_offline(&train::read_config(dir)?.run.algo)
    {
        let policy = agentry_agents::offline::load_run(dir)?;
        return eval_offline(policy, Some(dir), &args, out, err);
    }
    if let Some(file) = &args.policy {
        let s = agentry_agents::checkpoint::Sections::read(file)?;
        if s.kind == agentry_agents::offline::SEQ_POLICY {
            let policy = agentry_agents::offline::SeqPolicy::from_sections(s, file)?;
            return eval_offline(policy, None, &args, out, err);
        }
    }
    if args.in_context {
        return Err(CliError::Usage(
            "--in-context evaluates dt and radt runs (offline sequence models)".into(),
        ));
    }
    let (loaded, env) = policy_and_env(&args.run, &args.policy, &args.env, &args.params)?;
    let _ = writeln!(
        err,
        "evaluating {} ({} env steps of training) on {} for {} episodes",
        loaded.path.display(),
        loaded.meta.env_steps,
        env.name,
        args.episodes
    );
    let opts = EvalOptions {
        episodes: args.episodes,
        deterministic: args.deterministic,
        seed: args.seed,
        max_steps: args.max_steps,
    };
    let report = if args.render {
        train::evaluate(&loaded, Some(&env), &opts, Some(out))?
    } else {
        train::evaluate(&loaded, Some(&env), &opts, None)?
    };
    if let Some(dir) = &args.run {
        train::record_eval(dir, &report)?;
    }
    writeln!(
        out,
        "return {:.2} ± {:.2} over {} episodes (min {:.2}, max {:.2}; {:.1}% positive, \
         {:.1}% negative; length {:.1}, {})",
        report.return_mean,
        report.return_std,
        report.episodes,
        report.return_min,
        report.return_max,
        100.0 * report.positive_fraction,
        100.0 * report.negative_fraction,
        report.length_mean,
        if report.deterministic {
            "greedy"
        } else {
            "sampled"
        }
    )
    .map_err(io_err)?;
    Ok(())
}

/// `agent eval` of an offline (LRAM, DT, RA-DT) policy, from its run `dir` (the result
/// is recorded there) or an exported file: every task it was trained on, from the
/// target return its configuration gives.
fn eval_offline(
    mut policy: agentry_agents::offline::SeqPolicy,
    dir: Option<&Path>,
    args: &EvalArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    use agentry_agents::offline;
    if args.env.is_some() || !args.params.is_empty() || args.render {
        return Err(CliError::Usage(
            "an offline policy is evaluated on the tasks it was trained on: --env, -p and \
             --render do not apply"
                .into(),
        ));
    }
    let source = match (dir, &args.policy) {
        (Some(d), _) => d.display().to_string(),
        (None, Some(f)) => f.display().to_string(),
        (None, None) => String::new(),
    };
    if args.deterministic {
        policy.config.deterministic = true;
    }
    if args.in_context && policy.algo != "dt" && policy.algo != "radt" {
        return Err(CliError::Usage(format!(
            "--in-context evaluates dt and radt runs on held-out Dark-Room goals, not {}",
            policy.algo
        )));
    }
    if policy.algo == "radt" || args.in_context {
        let _ = writeln!(
            err,
            "evaluating {source} in context: {} consecutive episodes on each held-out task",
            policy.config.retrieval.in_context_episodes
        );
        let results = offline::in_context_eval(&policy, args.seed, None)?;
        let curves = agentry_agents::radt::curves(&results);
        let n = curves.iter().map(|c| c.1.len()).min().unwrap_or(0);
        for i in 0..n {
            let mut line = format!("episode {:>3}:", i + 1);
            for (label, c) in &curves {
                line.push_str(&format!("  {label} {:.2} ± {:.2}", c[i].0, c[i].1));
            }
            writeln!(out, "{line}").map_err(io_err)?;
        }
        if let Some(dir) = dir {
            agentry_agents::radt::write_curve(dir, &results)?;
            writeln!(out, "wrote {}", dir.join("in_context.csv").display()).map_err(io_err)?;
        }
        return Ok(());
    }
    let _ = writeln!(
        err,
        "evaluating {source} ({}) on {} tasks for {} episodes each",
        policy.algo,
        policy.set.tasks.len(),
        args.episodes
    );
    let scores = offline::evaluate_policy(&policy, args.episodes, args.seed, args.max_steps)?;
    for s in &scores {
        writeln!(
            out,
            "{}: return {:.2} (target {:.2}){}",
            s.task,
            s.return_mean,
            s.target_return,
            s.normalised
                .map(|n| format!(", normalised {n:.3}"))
                .unwrap_or_default()
        )
        .map_err(io_err)?;
    }
    if let Some(dir) = dir {
        offline::record_eval(dir, &scores)?;
    }
    Ok(())
}

/// The policy of `--run`/`--policy` and the environment it plays: its own, or `--env`
/// with `-p` parameters over it.
fn policy_and_env(
    run: &Option<PathBuf>,
    policy: &Option<PathBuf>,
    env: &Option<String>,
    params: &[String],
) -> Result<(train::LoadedPolicy, EnvConfig), CliError> {
    let loaded = match (run, policy) {
        (Some(dir), _) => train::load_run_policy(dir)?,
        (None, Some(file)) => train::load_policy(file)?,
        (None, None) => unreachable!("clap requires --run or --policy"),
    };
    let given = Params::parse_assignments(params)?;
    let env = match env {
        Some(name) if agentry_envs::find(name)?.name != loaded.meta.env.name => EnvConfig {
            name: agentry_envs::find(name)?.name.to_string(),
            params: given,
        },
        _ => {
            let mut env = loaded.meta.env.clone();
            env.params.0.extend(given.0);
            env
        }
    };
    agentry_envs::make(&env.name, &env.params)?;
    Ok((loaded, env))
}

fn export(args: ExportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let report = agentry_agents::embed::export(&args.run, &args.out)?;
    writeln!(
        out,
        "wrote {}: {} policy ({}), {} {} of training, {} bytes",
        report.path.display(),
        report.algo,
        report.kind,
        report.trained_steps,
        if report.kind == agentry_agents::offline::SEQ_POLICY {
            "updates"
        } else {
            "env steps"
        },
        report.bytes
    )
    .map_err(io_err)?;
    Ok(())
}

fn collect(args: CollectArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    if let Some(learner) = &args.learner {
        return collect_history(learner, &args, out, err);
    }
    let (loaded, env) = policy_and_env(&args.run, &args.policy, &args.env, &args.params)?;
    let _ = writeln!(
        err,
        "recording {} episodes of {} ({} env steps of training) on {}",
        args.episodes,
        loaded.path.display(),
        loaded.meta.env_steps,
        env.name
    );
    let opts = agentry_agents::dataset::CollectOptions {
        episodes: args.episodes,
        epsilon: args.epsilon,
        deterministic: args.deterministic,
        seed: args.seed,
        task: args.task,
        max_steps: args.max_steps,
        random_episodes: args.random_episodes,
        reference_episodes: args.reference_episodes,
    };
    let report = agentry_agents::dataset::collect(&loaded, Some(&env), &opts, &args.out)?;
    writeln!(
        out,
        "wrote {}: {} episodes, {} steps, return {:.2}{}",
        report.path.display(),
        report.episodes,
        report.steps,
        report.return_mean,
        report
            .random_return
            .map(|r| format!(" (random policy {r:.2})"))
            .unwrap_or_default()
    )
    .map_err(io_err)?;
    Ok(())
}

/// `agent collect --learner`: record a learner's history from scratch.
fn collect_history(
    learner: &str,
    args: &CollectArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    use agentry_agents::tabular::{Q_LEARNING, QLearningOptions, record_history};
    if learner != Q_LEARNING {
        return Err(CliError::Usage(format!(
            "--learner {learner}: the learners that record histories here are: {Q_LEARNING}"
        )));
    }
    if args.deterministic {
        return Err(CliError::Usage(
            "--deterministic is for a trained policy; q-learning is greedy with --epsilon \
             random actions"
                .into(),
        ));
    }
    let name = args
        .env
        .as_deref()
        .expect("clap requires --env with --learner");
    let env = EnvConfig {
        name: agentry_envs::find(name)?.name.to_string(),
        params: Params::parse_assignments(&args.params)?,
    };
    let defaults = QLearningOptions::default();
    let opts = QLearningOptions {
        alpha: args.alpha.unwrap_or(defaults.alpha),
        gamma: args.gamma.unwrap_or(defaults.gamma),
        initial_q: args.initial_q.unwrap_or(defaults.initial_q),
        epsilon: args.epsilon,
        ..defaults
    };
    let _ = writeln!(
        err,
        "recording {} episodes of {learner} learning {} from scratch",
        args.episodes, env.name
    );
    let report = record_history(
        &env,
        args.episodes,
        &opts,
        args.seed,
        args.task,
        args.max_steps,
        &args.out,
    )?;
    let blocks: Vec<String> = report
        .returns
        .chunks(10)
        .map(|c| format!("{:.2}", c.iter().sum::<f64>() / c.len() as f64))
        .collect();
    writeln!(
        out,
        "wrote {}: {} episodes, {} steps, {} distinct observations; mean return per 10 \
         episodes: {}",
        report.path.display(),
        report.returns.len(),
        report.steps,
        report.states,
        blocks.join(" ")
    )
    .map_err(io_err)?;
    Ok(())
}

fn plot(args: PlotArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use agentry_agents::plot::{PlotError, PlotOptions, plot_in_context, plot_runs};
    if args.in_context {
        let report = plot_in_context(&args.runs, &args.out).map_err(|e| match e {
            PlotError::Io {
                ref path,
                ref source,
            } if source.kind() == std::io::ErrorKind::NotFound
                && path.ends_with("in_context.csv") =>
            {
                CliError::Usage(format!(
                    "{e}: evaluate the run in context first (agent eval --run DIR --in-context)"
                ))
            }
            PlotError::Draw(_) | PlotError::Io { .. } => CliError::Runtime(e.to_string()),
            other => CliError::Usage(other.to_string()),
        })?;
        for s in &report.series {
            writeln!(out, "{s}").map_err(io_err)?;
        }
        writeln!(out, "wrote {}", report.csv.display()).map_err(io_err)?;
        writeln!(out, "wrote {}", report.out.display()).map_err(io_err)?;
        return Ok(());
    }
    let opts = PlotOptions {
        metric: args.metric,
        out: args.out,
        smooth: args.smooth,
    };
    let report = plot_runs(&args.runs, &opts).map_err(|e| match e {
        PlotError::Draw(_) | PlotError::Io { .. } => CliError::Runtime(e.to_string()),
        other => CliError::Usage(other.to_string()),
    })?;
    for s in &report.series {
        writeln!(out, "{s}").map_err(io_err)?;
    }
    writeln!(out, "wrote {}", report.out.display()).map_err(io_err)?;
    Ok(())
}

/// Parse `args` (including the program name) and run; print errors; return the exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // A panic is a bug: it ends with one line and exit code 1, not a backtrace (the
    // actors' panics are caught by the runtime and reported as errors anyway).
    std::panic::set_hook(Box::new(|_| {}));
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(cli, &mut stdout, &mut stderr)
    }))
    .unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(CliError::Runtime(format!(
            "internal error (please report it): {msg}"
        )))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
