//! The error type of the runtime, the learners and the run directory.

use std::path::PathBuf;

use agentry_envs::EnvError;

use crate::config::ConfigError;

/// Why a run, an evaluation or a checkpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A bad configuration (exit code 2 in the binary).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// An environment failed inside an actor.
    #[error("actor {actor}: {source}")]
    Env {
        /// The actor whose environment failed.
        actor: usize,
        /// What the environment said.
        source: EnvError,
    },
    /// An environment failed outside the actors (evaluation, set-up).
    #[error(transparent)]
    EnvSetup(#[from] EnvError),
    /// An actor thread panicked.
    #[error("actor {actor} panicked: {message}")]
    ActorPanicked {
        /// The actor.
        actor: usize,
        /// The panic message.
        message: String,
    },
    /// A checkpoint or policy file is missing, damaged or does not fit the run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a file of the run failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The user asked for something that cannot be done (not a run directory, a run
    /// directory already in use, a policy that does not fit the environment): exit 2.
    #[error("{0}")]
    Usage(String),
    /// The numbers went wrong (a NaN loss, ...).
    #[error("{0}")]
    Numeric(String),
    /// Anything else that cannot go on.
    #[error("{0}")]
    Invalid(String),
    /// Actors sent no experience within `run.actor_timeout_s`.
    #[error(
        "actor(s) {actors:?} sent no experience for {seconds} s (run.actor_timeout_s): an \
         environment step hangs, or takes longer than the limit allows"
    )]
    Hung {
        /// The actors waited for.
        actors: Vec<usize>,
        /// The limit.
        seconds: f64,
    },
    /// A training run stopped on an error: where (environment, env step, update) and
    /// what is left (the last checkpoint), then the error.
    #[error("{context}: {source}")]
    Stopped {
        /// Where the run was and what to do.
        context: String,
        /// The error.
        source: Box<AgentError>,
    },
}

impl AgentError {
    /// An environment error inside actor `actor`.
    pub fn actor_env(actor: usize, source: EnvError) -> Self {
        AgentError::Env { actor, source }
    }

    /// Attach the actor index to an environment error raised while collecting.
    pub fn in_actor(self, actor: usize) -> Self {
        match self {
            AgentError::EnvSetup(source) => AgentError::Env { actor, source },
            other => other,
        }
    }

    /// A file-system error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AgentError::Io {
            path: path.into(),
            source,
        }
    }

    /// A bad checkpoint at `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        AgentError::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Whether this is a configuration or usage error (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, AgentError::Config(_) | AgentError::Usage(_))
    }
}
