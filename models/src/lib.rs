//! Models for agentry: burn networks, policy heads and plasticity diagnostics.
//!
//! # Choosing a backend
//!
//! Modules carry no backend type parameter (burn 0.22): where a tensor lives is decided by
//! the `Device` value it is created on, at run time, so algorithm code never names a
//! backend. Learners take their device from [`training_device`]:
//!
//! - Default build: burn's pure-Rust `flex` CPU backend with autodiff ([`cpu_autodiff`]),
//!   with burn's default features (SIMD, rayon). For the small networks of classic
//!   control, grid-worlds and bandits this is the fastest choice: a GPU launch costs more
//!   than a 64-64 MLP's whole update.
//! - `--features gpu` (on this crate or on the `agentry` facade): burn's `wgpu` backend
//!   is compiled in and [`training_device`] returns burn's default device, which prefers
//!   an accelerator (`cuda` if also enabled, then wgpu) over the CPU; the environment
//!   variable `BURN_DEVICE` (`wgpu`, `vulkan`, `cuda`, `flex`, ...) overrides the choice
//!   at run time. `--features cuda` adds burn's CUDA runtime (needs the CUDA toolkit).
//!
//! Acting never uses burn: actors and embedded agents run a plain-Rust copy of the
//! weights ([`inference::MlpWeights`]), which needs no device, takes no locks and
//! allocates nothing per call. The `agent` binary sets mimalloc as the global allocator
//! (a library never does: embedders choose their own).
//!
//! The sequence models have the same kind of acting copy for single-token inference:
//! [`xlstm::XLstmWeights`] (the xLSTM's recurrent step) and [`gpt::GptWeights`] (the GPT
//! with a preallocated key/value cache), each matching the burn model's `step` to f32
//! rounding.
#![warn(missing_docs)]

pub mod cnn;
pub mod diagnostics;
pub mod gpt;
pub mod heads;
pub mod inference;
mod init;
pub mod mlp;
pub mod net;
pub mod plasticity;
pub mod qnet;
mod step_math;
pub mod xlstm;

pub use burn;
pub use cnn::{CnnWeights, NatureCnn, NatureCnnConfig};
pub use gpt::{Gpt, GptActivation, GptConfig, GptConfigError, KvCache, Memory};
pub use heads::{GaussianHead, categorical_entropy, categorical_log_prob, masked_log_softmax};
pub use inference::MlpWeights;
pub use mlp::{Activation, Init, Mlp, MlpConfig};
pub use net::{Net, NetScratch, NetWeights};
pub use qnet::{QNet, QNetConfig, QNoise, QWeights};
pub use xlstm::{XLstm, XLstmConfig, XLstmConfigError, XLstmState};

use burn::tensor::Device;

/// The default CPU device (burn's `flex` backend).
pub fn cpu() -> Device {
    Device::flex()
}

/// The default CPU device with automatic differentiation, for training.
pub fn cpu_autodiff() -> Device {
    Device::flex().autodiff()
}

/// The device learners train on: the CPU ([`cpu_autodiff`]) unless a GPU feature is
/// compiled in, then burn's default device (honouring `BURN_DEVICE`) with autodiff.
/// See [the crate docs](crate#choosing-a-backend).
pub fn training_device() -> Device {
    #[cfg(any(feature = "gpu", feature = "cuda"))]
    {
        Device::default().autodiff()
    }
    #[cfg(not(any(feature = "gpu", feature = "cuda")))]
    {
        cpu_autodiff()
    }
}
