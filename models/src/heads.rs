//! Policy heads: a categorical distribution over discrete actions (with legal-action
//! masking) and a diagonal Gaussian over continuous ones.

use burn::module::{Module, Param};
use burn::tensor::{Bool, Device, Int, Tensor, activation};

/// The logit given to illegal actions: far below any real logit, yet finite, so that
/// masked entries get zero probability and no NaN appears in the arithmetic.
const MASKED_LOGIT: f32 = -1e9;

/// Log-probabilities of a categorical distribution whose illegal actions (`mask` false)
/// get probability 0 and no gradient.
///
/// # Shapes
/// - `logits`: `[batch, actions]`; `mask`: `[batch, actions]`, `true` = legal
/// - output: `[batch, actions]`
pub fn masked_log_softmax(logits: Tensor<2>, mask: Option<Tensor<2, Bool>>) -> Tensor<2> {
    let logits = match mask {
        // mask_fill replaces the masked entries, so no gradient flows to their logits.
        Some(legal) => logits.mask_fill(legal.bool_not(), MASKED_LOGIT),
        None => logits,
    };
    activation::log_softmax(logits, 1)
}

/// Log-probability of each row's action.
///
/// # Shapes
/// - `log_probs`: `[batch, actions]`; `actions`: `[batch]`
/// - output: `[batch]`
pub fn categorical_log_prob(log_probs: Tensor<2>, actions: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = log_probs.dims();
    log_probs
        .gather(1, actions.reshape([batch, 1]))
        .reshape([batch])
}

/// Entropy of each row's distribution (masked actions contribute 0).
///
/// # Shapes
/// - `log_probs`: `[batch, actions]`
/// - output: `[batch]`
pub fn categorical_entropy(log_probs: Tensor<2>) -> Tensor<1> {
    let [batch, _] = log_probs.dims();
    let p = log_probs.clone().exp();
    // p·log p is 0·(−1e9) = −0 for masked entries after exp underflows to 0.
    (p * log_probs).sum_dim(1).neg().reshape([batch])
}

/// A state-independent log standard deviation for a diagonal Gaussian policy (as in
/// CleanRL's `ppo_continuous_action.py`); the mean comes from the actor network.
#[derive(Module, Debug)]
pub struct GaussianHead {
    /// log σ per action dimension.
    pub log_std: Param<Tensor<1>>,
}

impl GaussianHead {
    /// log σ = `init_log_std` in each of `dims` dimensions.
    pub fn new(dims: usize, init_log_std: f32, device: &Device) -> Self {
        GaussianHead {
            log_std: Param::from_tensor(Tensor::<1>::ones([dims], device).mul_scalar(init_log_std)),
        }
    }

    /// log N(action; mean, σ²), summed over dimensions.
    ///
    /// # Shapes
    /// - `mean`, `actions`: `[batch, dims]`
    /// - output: `[batch]`
    pub fn log_prob(&self, mean: Tensor<2>, actions: Tensor<2>) -> Tensor<1> {
        let [batch, dims] = mean.dims();
        let log_std = self.log_std.val().reshape([1, dims]);
        let z = (actions - mean) / log_std.clone().exp();
        let per_dim =
            z.powf_scalar(2.0).mul_scalar(-0.5) - log_std - (2.0 * std::f32::consts::PI).ln() * 0.5;
        per_dim.sum_dim(1).reshape([batch])
    }

    /// Entropy of the Gaussian, the same for every state: Σ (log σ + ½ log 2πe).
    ///
    /// # Shapes
    /// - output: `[1]`
    pub fn entropy(&self) -> Tensor<1> {
        let half_log_2pi_e = 0.5 * (2.0 * std::f32::consts::PI * std::f32::consts::E).ln();
        self.log_std.val().add_scalar(half_log_2pi_e).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn vec1(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn vec2(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn masked_actions_get_no_probability_and_no_gradient() {
        let device = crate::cpu_autodiff();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 0.5, 0.5, 0.5], [2, 3]),
            &device,
        )
        .require_grad();
        let mask = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![true, false, true, true, true, false], [2, 3]),
            &device,
        );
        let logp = masked_log_softmax(logits.clone(), Some(mask));
        let p = vec2(logp.clone().exp());
        assert!(p[1] == 0.0 && p[5] == 0.0, "{p:?}");
        assert!((p[0] + p[2] - 1.0).abs() < 1e-6 && (p[3] + p[4] - 1.0).abs() < 1e-6);
        assert!((p[3] - 0.5).abs() < 1e-6);
        // Gradient of the chosen actions' log-probabilities and the entropy.
        let actions = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0], [2]), &device);
        let loss =
            categorical_log_prob(logp.clone(), actions).sum() + categorical_entropy(logp).sum();
        let grads = loss.backward();
        let g = vec2(logits.grad(&grads).unwrap());
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
        assert_eq!(
            (g[1], g[5]),
            (0.0, 0.0),
            "masked logits took gradient: {g:?}"
        );
        assert!(g[0] != 0.0 && g[3] != 0.0);
    }

    #[test]
    fn log_prob_and_entropy_match_hand_computation() {
        let device = crate::cpu();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, (2.0f32).ln(), 0.0, 0.0], [2, 2]),
            &device,
        );
        let logp = masked_log_softmax(logits, None);
        let actions = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), &device);
        let lp = vec1(categorical_log_prob(logp.clone(), actions));
        assert!(
            (lp[0] - (2.0f32 / 3.0).ln()).abs() < 1e-6 && (lp[1] - 0.5f32.ln()).abs() < 1e-6,
            "{lp:?}"
        );
        let h = vec1(categorical_entropy(logp));
        let h0 = -(1.0f32 / 3.0 * (1.0f32 / 3.0).ln() + 2.0 / 3.0 * (2.0f32 / 3.0).ln());
        assert!(
            (h[0] - h0).abs() < 1e-6 && (h[1] - 2.0f32.ln()).abs() < 1e-6,
            "{h:?}"
        );
        // Uniform over 3 legal actions of 4: entropy ln 3.
        let mask = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![true, true, false, true], [1, 4]),
            &device,
        );
        let logp = masked_log_softmax(Tensor::<2>::zeros([1, 4], &device), Some(mask));
        assert!((vec1(categorical_entropy(logp))[0] - 3.0f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn gaussian_log_prob_and_entropy() {
        let device = crate::cpu();
        let head = GaussianHead::new(2, 0.5f32.ln(), &device);
        let mean = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2]), &device);
        let action = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, 0.0], [1, 2]), &device);
        let got = vec1(head.log_prob(mean, action))[0];
        let log_n = |x: f32, m: f32, s: f32| {
            -0.5 * ((x - m) / s).powi(2) - s.ln() - 0.5 * (2.0 * std::f32::consts::PI).ln()
        };
        let want = log_n(0.5, 0.0, 0.5) + log_n(0.0, 1.0, 0.5);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let h = vec1(head.entropy())[0];
        let want =
            2.0 * (0.5f32.ln() + 0.5 * (2.0 * std::f32::consts::PI * std::f32::consts::E).ln());
        assert!((h - want).abs() < 1e-5, "{h} vs {want}");
    }
}
