//! Models for agentry: burn networks, policy heads and plasticity diagnostics.
//!
//! # Choosing a backend
//!
//! Modules carry no backend type parameter (burn 0.22): where a tensor lives is decided by
//! the `Device` value it is created on, at run time. The embedded default is burn's
//! pure-Rust `flex` CPU backend ([`cpu`]); training code uses its autodiff decoration
//! ([`cpu_autodiff`]), and an acting copy of a model on the plain device takes no
//! gradient bookkeeping. The `agent` binary sets mimalloc as the global allocator (a
//! library never does: embedders choose their own).
#![warn(missing_docs)]

pub mod diagnostics;
pub mod heads;
pub mod inference;
mod init;
pub mod mlp;

pub use burn;
pub use heads::{GaussianHead, categorical_entropy, categorical_log_prob, masked_log_softmax};
pub use inference::MlpWeights;
pub use mlp::{Activation, Init, Mlp, MlpConfig};

use burn::tensor::Device;

/// The default CPU device (burn's `flex` backend).
pub fn cpu() -> Device {
    Device::flex()
}

/// The default CPU device with automatic differentiation, for training.
pub fn cpu_autodiff() -> Device {
    Device::flex().autodiff()
}
