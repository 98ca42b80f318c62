//! The one error type of the memory crate.

use thiserror::Error;

/// Everything that can go wrong when building, filling, sampling or restoring a memory.
///
/// Errors are values: a wrong observation length, a non-finite TD error or a damaged
/// saved state come back as a `MemoryError`, never as a panic.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// A constructor argument is out of range (capacity 0, γ outside `[0, 1]`, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A slice or buffer has the wrong length.
    #[error("{what} has length {got}, expected {expected}")]
    Length {
        /// What was measured (`"obs"`, `"batch obs_dim"`, ...).
        what: &'static str,
        /// The length this memory was built for.
        expected: usize,
        /// The length it was given.
        got: usize,
    },
    /// Sampling from a memory that holds no items.
    #[error("cannot sample from an empty replay memory")]
    Empty,
    /// A TD error passed to `update_priorities` is NaN or infinite.
    #[error("TD error {value} at position {position} is not finite")]
    NonFiniteTdError {
        /// Position in the `td_errors` slice.
        position: usize,
        /// The offending value.
        value: f32,
    },
    /// An insertion index that no item has had yet.
    #[error("index {index} was never inserted ({inserted} items inserted so far)")]
    UnknownIndex {
        /// The index that was given.
        index: u64,
        /// How many items the memory has received.
        inserted: u64,
    },
    /// `sample` was given an importance-sampling exponent β that is negative or not finite.
    #[error("importance-sampling exponent beta = {0} must be finite and >= 0")]
    InvalidBeta(f64),
    /// Saved replay state that is truncated, damaged, of another version, or made by a
    /// memory with another shape or configuration. The memory is left unchanged.
    #[error("cannot load replay state: {0}")]
    Load(String),
    /// A dataset file that cannot be written or read: missing, truncated, damaged, of
    /// another format version. The message names the file.
    #[error("dataset {0}")]
    Dataset(String),
    /// A key or query vector of a retrieval index that cannot be used: a value that is
    /// not finite (or not representable in the index's key type), or a zero vector
    /// where a direction is needed.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A trajectory id that a retrieval memory has no chunk of.
    #[error("trajectory {0} has no chunk in the retrieval memory")]
    UnknownTrajectory(u64),
    /// A saved retrieval memory or index that is truncated, damaged, of another
    /// version, or inconsistent. Nothing is built from it.
    #[error("cannot load retrieval memory: {0}")]
    RetrievalLoad(String),
}

/// Result alias for this crate.
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;
