//! Models for agentry: so far the plasticity diagnostics ([`diagnostics`]), which work
//! on plain feature matrices; the burn networks (MLP, Nature CNN, heads, xLSTM,
//! Decision Transformer) and plasticity interventions arrive with the learners.
#![warn(missing_docs)]

pub mod diagnostics;
