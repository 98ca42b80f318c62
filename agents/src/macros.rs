//! Macro-actions with credit sharing (Hosu, Rebedea & Pascanu, NeurIPS 2025: the
//! Macro-Action Similarity Penalty, MASP), as we read it: no official code was found,
//! and of the paper we could consult the abstract, reviews and summaries, which give
//! the regulariser's form (a similarity-weighted penalty on Q-value differences added
//! to the TD loss, Σ meta-learned jointly with the policy) but not every detail; the
//! choices below that are ours are marked so.
//!
//! **Macro-actions.** The agent's action set is augmented with fixed sequences of
//! primitive actions: with `n` primitive actions and macros `m_0 … m_{M−1}`, action
//! `n + j` runs `m_j` open-loop. The actors execute a chosen macro one primitive step
//! per environment step (so `env_steps` counts primitive steps and a run still stops
//! at exactly its target), accumulate `Σ_i γ^i r_i`, stop early at an episode end or
//! when the next action is illegal, and then hand the adder one step of duration `k`
//! (the primitive steps taken): the transition's bootstrap is discounted by `γ^k`.
//! [`agentry_envs::wrappers::MacroActions`] is the same rule as a wrapper, for a single
//! environment (evaluation and embedding use it).
//!
//! **Credit sharing.** Treating each macro as an unrelated atomic action makes the
//! larger action set slower to learn. The regulariser
//!
//! ```text
//! R(θ, Σ) = mean_i Σ_{a'} Σ[a_i, a'] · (Q_θ(s_i, a_i) − Q_θ(s_i, a'))²
//! ```
//!
//! (on expected values for C51) is added to the TD loss with weight λ, pulling the
//! values of similar actions together, so experience with one action informs the
//! values of those similar to it. Σ ∈ [0, 1]^{A×A} is `sigmoid` of a logit matrix.
//!
//! **Meta-learning Σ.** One-step look-ahead: after the update
//! `θ' = θ − α ∇_θ (L_TD(θ; B₁) + λ R(θ, Σ; B₁))`, Σ moves down the gradient of the TD
//! loss on a fresh batch, `L_TD(θ'; B₂)`. By the chain rule, with `r_{aa'}(θ) = ∂R/∂Σ[a, a']`
//! (the batch mean of `1[a_i = a]·(Q(s_i, a) − Q(s_i, a'))²`),
//!
//! ```text
//! ∂L_TD(θ'; B₂)/∂Σ[a, a'] = −α λ ⟨∇_θ' L_TD(θ'; B₂), ∇_θ r_{aa'}(θ; B₁)⟩,
//! ```
//!
//! and the inner product is the directional derivative of `r_{aa'}` along
//! `g = ∇_θ' L_TD(θ'; B₂)`, which we take by a central difference
//! `(r(θ + εg) − r(θ − εg)) / 2ε`: two forward passes, no second-order autodiff.
//! Two approximations, both ours: the look-ahead treats the update as an SGD step of
//! size α (the learning rate) although the parameters move by Adam, and the
//! derivative is a finite difference (exact for the quadratic `r` up to the network's
//! curvature along `g`).
//!
//! The ablations are the config's switches: macros without the regulariser
//! (`credit_sharing = 0`), and the regulariser with a fixed Σ (`similarity = "prefix"`:
//! `Σ[a, a']` = the length of the common prefix of the two action sequences over the
//! longer one's length, so a primitive and the macro that repeats it share credit,
//! two different primitives do not).

use agentry_envs::wrappers::repeat_macros;
use serde::{Deserialize, Serialize};

use crate::config::{RainbowConfig, Similarity};

/// The macros a run adds to `n` primitive actions: the configured ones, then one
/// "repeat a for k steps" per primitive when `macro_repeat = k`.
pub fn macro_set(n: usize, rainbow: &RainbowConfig) -> Vec<Vec<usize>> {
    let mut macros = rainbow.macros.clone();
    if rainbow.macro_repeat > 1 {
        macros.extend(repeat_macros(n, rainbow.macro_repeat));
    }
    macros
}

/// The action sequence of every action of the augmented set: `[a]` for a primitive
/// `a < n`, then the macros.
pub fn sequences(n: usize, macros: &[Vec<usize>]) -> Vec<Vec<usize>> {
    (0..n)
        .map(|a| vec![a])
        .chain(macros.iter().cloned())
        .collect()
}

/// Σ[a, a'] = |common prefix of seq(a) and seq(a')| / max(|seq(a)|, |seq(a')|), with a
/// zero diagonal (an action shares no credit with itself), row-major.
pub fn prefix_similarity(sequences: &[Vec<usize>]) -> Vec<f64> {
    let k = sequences.len();
    let mut sigma = vec![0.0; k * k];
    for (a, x) in sequences.iter().enumerate() {
        for (b, y) in sequences.iter().enumerate() {
            if a == b {
                continue;
            }
            let common = x.iter().zip(y).take_while(|(p, q)| p == q).count();
            sigma[a * k + b] = common as f64 / x.len().max(y.len()) as f64;
        }
    }
    sigma
}

/// Logits are kept inside this range so that Σ never saturates at exactly 0 or 1.
const LOGIT_BOUND: f64 = 6.0;

fn logit(p: f64) -> f64 {
    let p = p.clamp(0.02, 0.98);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The credit-sharing regulariser's state: λ, and Σ (fixed or meta-learned).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreditSharing {
    /// λ.
    pub weight: f64,
    /// Meta-learned or fixed.
    pub learned: bool,
    /// Step size of the meta-gradient on the logits.
    pub meta_lr: f64,
    /// Number of actions A of the augmented set.
    pub actions: usize,
    /// Σ's logits, `A × A` row-major (the diagonal is unused).
    pub logits: Vec<f64>,
    /// For the fixed variant, Σ itself (the logits are then unused).
    pub fixed: Vec<f64>,
    /// Adam's first and second moments of the logits' meta-gradient, and its step count.
    #[serde(default)]
    pub adam: (Vec<f64>, Vec<f64>, u64),
}

impl CreditSharing {
    /// The regulariser of a run over the augmented action set `sequences`, or None
    /// when it is off.
    pub fn new(rainbow: &RainbowConfig, sequences: &[Vec<usize>]) -> Option<Self> {
        if rainbow.credit_sharing <= 0.0 {
            return None;
        }
        let prior = prefix_similarity(sequences);
        Some(CreditSharing {
            weight: rainbow.credit_sharing,
            learned: rainbow.similarity == Similarity::Learned,
            meta_lr: rainbow.meta_learning_rate,
            actions: sequences.len(),
            logits: prior.iter().map(|&p| logit(p)).collect(),
            adam: (vec![0.0; prior.len()], vec![0.0; prior.len()], 0),
            fixed: prior,
        })
    }

    /// Σ, row-major, with a zero diagonal.
    pub fn sigma(&self) -> Vec<f64> {
        let k = self.actions;
        if !self.learned {
            return self.fixed.clone();
        }
        let mut s: Vec<f64> = self.logits.iter().map(|&l| sigmoid(l)).collect();
        for a in 0..k {
            s[a * k + a] = 0.0;
        }
        s
    }

    /// The rows of Σ for each action of a batch, flattened (`batch × A`).
    pub fn rows(&self, actions: &[u32]) -> Vec<f32> {
        let sigma = self.sigma();
        let k = self.actions;
        let mut out = Vec::with_capacity(actions.len() * k);
        for &a in actions {
            let a = a as usize;
            out.extend(sigma[a * k..(a + 1) * k].iter().map(|&v| v as f32));
        }
        out
    }

    /// `r_{aa'}` of a batch: the mean over rows `i` with `a_i = a` of
    /// `(q_i[a] − q_i[a'])²`, divided by the batch size (so that `R = Σ_{aa'} Σ[a,a'] r_{aa'}`).
    /// `q` holds the batch's Q-values, `batch × A`.
    pub fn pair_terms(&self, q: &[f32], actions: &[u32]) -> Vec<f64> {
        let k = self.actions;
        let b = actions.len().max(1) as f64;
        let mut r = vec![0.0; k * k];
        for (row, &a) in q.chunks_exact(k).zip(actions) {
            let a = a as usize;
            for (j, &qj) in row.iter().enumerate() {
                let d = (row[a] - qj) as f64;
                r[a * k + j] += d * d / b;
            }
        }
        r
    }

    /// One meta-gradient step on the logits, given the directional derivatives
    /// `dr[a, a'] ≈ ⟨g, ∇_θ r_{aa'}(θ)⟩` and the inner step size `alpha`:
    /// `∂L/∂Σ[a,a'] = −α λ dr[a,a']`, through the sigmoid to the logits, applied by
    /// Adam (β = 0.9, 0.999) with step size `meta_lr`: the raw meta-gradient scales with
    /// α and with the squared Q-value gaps, so a normalised step keeps `meta_lr`
    /// meaningful (in logits per update). Returns the mean absolute change of Σ.
    pub fn meta_step(&mut self, dr: &[f64], alpha: f64) -> f64 {
        if !self.learned {
            return 0.0;
        }
        let k = self.actions;
        let (m, v, t) = &mut self.adam;
        if m.len() != k * k || v.len() != k * k {
            *m = vec![0.0; k * k];
            *v = vec![0.0; k * k];
            *t = 0;
        }
        *t += 1;
        let (b1, b2) = (0.9f64, 0.999f64);
        let (c1, c2) = (1.0 - b1.powi(*t as i32), 1.0 - b2.powi(*t as i32));
        let mut change = 0.0;
        for a in 0..k {
            for b in 0..k {
                if a == b {
                    continue;
                }
                let i = a * k + b;
                let s = sigmoid(self.logits[i]);
                let grad = -alpha * self.weight * dr[i] * s * (1.0 - s);
                if !grad.is_finite() {
                    continue;
                }
                m[i] = b1 * m[i] + (1.0 - b1) * grad;
                v[i] = b2 * v[i] + (1.0 - b2) * grad * grad;
                let step = self.meta_lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-12);
                self.logits[i] = (self.logits[i] - step).clamp(-LOGIT_BOUND, LOGIT_BOUND);
                change += (sigmoid(self.logits[i]) - s).abs();
            }
        }
        change / (k * k.saturating_sub(1)).max(1) as f64
    }

    /// The mean of Σ off the diagonal.
    pub fn mean_sigma(&self) -> f64 {
        let k = self.actions;
        let s = self.sigma();
        s.iter().sum::<f64>() / (k * k.saturating_sub(1)).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_similarity_hand_computed() {
        // Primitives 0, 1; macros [0, 0, 0] and [0, 1].
        let seqs = sequences(2, &[vec![0, 0, 0], vec![0, 1]]);
        let s = prefix_similarity(&seqs);
        let k = 4;
        let at = |a: usize, b: usize| s[a * k + b];
        assert_eq!(at(0, 1), 0.0); // different primitives
        assert!((at(0, 2) - 1.0 / 3.0).abs() < 1e-12); // 0 vs 000
        assert_eq!(at(0, 3), 0.5); // 0 vs 01
        assert_eq!(at(1, 3), 0.0); // 1 vs 01: no common prefix
        assert!((at(2, 3) - 1.0 / 3.0).abs() < 1e-12); // 000 vs 01
        assert_eq!(at(2, 2), 0.0);
        assert_eq!(at(2, 0), at(0, 2)); // symmetric
    }

    #[test]
    fn macro_sets_and_pair_terms() {
        let rb = RainbowConfig {
            macros: vec![vec![1, 0]],
            macro_repeat: 3,
            credit_sharing: 0.5,
            ..RainbowConfig::off()
        };
        let macros = macro_set(2, &rb);
        assert_eq!(macros, vec![vec![1, 0], vec![0, 0, 0], vec![1, 1, 1]]);
        let seqs = sequences(2, &macros);
        let cs = CreditSharing::new(&rb, &seqs).unwrap();
        assert_eq!(cs.actions, 5);
        // Learned Σ starts at the prefix prior (clamped into [0.02, 0.98]).
        let s = cs.sigma();
        assert!((s[3 * 5] - 1.0 / 3.0).abs() < 1e-9, "{}", s[3 * 5]); // [0,0,0] vs [0]
        assert!((s[2 * 5] - 0.02).abs() < 1e-9, "{}", s[2 * 5]); // [1,0] vs [0]: 0, clamped
        // r: two rows, actions 0 and 1, A = 5.
        let q = [1.0f32, 2.0, 0.0, 0.0, 0.0, 3.0, 1.0, 1.0, 1.0, 1.0];
        let r = cs.pair_terms(&q, &[0, 1]);
        assert_eq!(r[1], 0.5); // (1 − 2)² / 2
        assert_eq!(r[5], 2.0); // row 2: (1 − 3)² / 2
        assert_eq!(r[5 + 2], 0.0);
        // R = Σ Σ[a,a'] r[a,a'] equals the batch regulariser computed directly.
        let rows = cs.rows(&[0, 1]);
        let direct: f64 = q
            .chunks(5)
            .zip([0usize, 1])
            .zip(rows.chunks(5))
            .map(|((qr, a), sr)| {
                qr.iter()
                    .zip(sr)
                    .map(|(&qj, &sj)| sj as f64 * ((qr[a] - qj) as f64).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / 2.0;
        let via: f64 = s.iter().zip(&r).map(|(a, b)| a * b).sum();
        assert!((direct - via).abs() < 1e-6, "{direct} vs {via}");
    }

    #[test]
    fn the_meta_step_raises_sigma_where_sharing_helps() {
        let rb = RainbowConfig {
            macro_repeat: 2,
            credit_sharing: 1.0,
            meta_learning_rate: 0.1,
            ..RainbowConfig::off()
        };
        let seqs = sequences(2, &macro_set(2, &rb));
        let mut cs = CreditSharing::new(&rb, &seqs).unwrap();
        let before = cs.sigma();
        // dr > 0: r grows along the validation loss's gradient, so the regulariser's
        // step −∇r also descends the validation loss: more sharing helps, Σ rises.
        let mut dr = vec![0.0; 16];
        dr[1] = 1.0;
        dr[4] = -1.0;
        let change = cs.meta_step(&dr, 0.1);
        let after = cs.sigma();
        assert!(change > 0.0);
        assert!(after[1] > before[1], "{} -> {}", before[1], after[1]);
        assert!(after[4] < before[4], "{} -> {}", before[4], after[4]);
        assert_eq!(after[0], 0.0);
        // The fixed variant never moves.
        let mut fixed = CreditSharing::new(
            &RainbowConfig {
                similarity: Similarity::Prefix,
                ..rb
            },
            &seqs,
        )
        .unwrap();
        let s0 = fixed.sigma();
        assert_eq!(fixed.meta_step(&dr, 0.1), 0.0);
        assert_eq!(fixed.sigma(), s0);
    }
}
