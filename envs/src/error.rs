//! The one error type of the environment crate.

use thiserror::Error;

/// Everything that can go wrong when building or stepping an environment.
///
/// Errors are values: an action outside the action space, an illegal move, a bad
/// parameter or a panicking environment inside a vector environment all come back
/// as an `EnvError`, never as a panic.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum EnvError {
    /// The action is not an element of the action space.
    #[error("action {action} is outside the action space {space}")]
    InvalidAction {
        /// The action, as text.
        action: String,
        /// The action space, as text.
        space: String,
    },
    /// The action is in the action space but the game forbids it in this state.
    #[error("illegal move: {0}")]
    IllegalAction(String),
    /// `step` was called before the first `reset`, or after the episode ended
    /// without a `reset`.
    #[error("step called {0}: call reset first")]
    NeedsReset(&'static str),
    /// A caller-provided buffer has the wrong element type or length.
    #[error("buffer mismatch: {0}")]
    Buffer(String),
    /// No environment is registered under this name.
    #[error("unknown environment `{name}`; registered environments: {valid}")]
    UnknownEnv {
        /// The name that was asked for.
        name: String,
        /// The registered names, comma separated.
        valid: String,
    },
    /// A parameter is unknown, has the wrong type, or an invalid value.
    #[error("environment `{env}`, parameter `{param}`: {message}")]
    BadParam {
        /// The environment's registered name.
        env: String,
        /// The parameter's name.
        param: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// An environment description (for example an ASCII map) is invalid.
    #[error("invalid environment definition: {0}")]
    Invalid(String),
    /// An I/O problem while reading or writing environment state (e.g. a map file).
    #[error("{0}")]
    Io(String),
    /// An error inside one environment of a vector environment.
    #[error("environment {index} of the vector environment: {source}")]
    InVector {
        /// Index of the failing environment.
        index: usize,
        /// The error it returned.
        source: Box<EnvError>,
    },
    /// An environment panicked while stepping inside a vector environment.
    #[error("environment {index} of the vector environment panicked: {message}")]
    Panicked {
        /// Index of the failing environment.
        index: usize,
        /// The panic message.
        message: String,
    },
}

impl EnvError {
    /// Shorthand for [`EnvError::BadParam`].
    pub fn bad_param(env: &str, param: &str, message: impl Into<String>) -> Self {
        EnvError::BadParam {
            env: env.to_string(),
            param: param.to_string(),
            message: message.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = EnvError> = std::result::Result<T, E>;
