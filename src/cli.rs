//! The `agent` command line: argument types (parsed by clap, no I/O) and `run`, which
//! resolves them and does the work. The binary only calls [`main_with_args`].

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

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
    /// Measure speed.
    Bench {
        /// What to measure.
        #[command(subcommand)]
        what: BenchCommand,
    },
}

/// What `agent bench` measures.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Environment steps per second: one environment, then a vector of them.
    Envs(BenchEnvsArgs),
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
        Command::Bench {
            what: BenchCommand::Envs(args),
        } => bench_envs(&args, out, err),
    }
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
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    match run(cli, &mut stdout, &mut stderr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
