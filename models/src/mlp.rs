//! Multi-layer perceptrons with a choice of activation and optional layer norm.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, activation};
use serde::{Deserialize, Serialize};

/// The nonlinearity between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// tanh (CleanRL's and the PFO paper's choice for classic control).
    Tanh,
    /// max(0, x).
    Relu,
}

/// Builds an [`Mlp`]: `input → hidden… → output`, the activation after every hidden
/// layer, optionally a layer norm before each activation (h = act(LN(W·x))).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Input width.
    pub input: usize,
    /// Hidden widths (empty: a linear map).
    pub hidden: Vec<usize>,
    /// Output width.
    pub output: usize,
    /// The nonlinearity.
    pub activation: Activation,
    /// Layer norm before each nonlinearity.
    pub layer_norm: bool,
}

impl MlpConfig {
    /// `input → hidden… → output` with tanh and no layer norm.
    pub fn new(input: usize, hidden: &[usize], output: usize) -> Self {
        MlpConfig {
            input,
            hidden: hidden.to_vec(),
            output,
            activation: Activation::Tanh,
            layer_norm: false,
        }
    }

    /// Use `activation` between layers.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Put a layer norm before each nonlinearity.
    pub fn with_layer_norm(mut self, on: bool) -> Self {
        self.layer_norm = on;
        self
    }

    /// Build the module on `device`.
    pub fn init(&self, device: &Device) -> Mlp {
        let mut widths = vec![self.input];
        widths.extend(&self.hidden);
        widths.push(self.output);
        let layers = widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        let norms = if self.layer_norm {
            self.hidden
                .iter()
                .map(|&h| LayerNormConfig::new(h).init(device))
                .collect()
        } else {
            Vec::new()
        };
        Mlp {
            layers,
            norms,
            relu: self.activation == Activation::Relu,
        }
    }
}

/// A multi-layer perceptron; see [`MlpConfig`].
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    norms: Vec<LayerNorm>,
    relu: bool,
}

impl Mlp {
    /// The output for a batch.
    ///
    /// # Shapes
    /// - `x`: `[batch, input]`
    /// - output: `[batch, output]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_with_features(x).0
    }

    /// The output and the last hidden layer's pre-activations (after the layer norm, if
    /// any, before the nonlinearity): the features PFO regularises and the diagnostics read.
    ///
    /// # Shapes
    /// - `x`: `[batch, input]`
    /// - output: `([batch, output], [batch, last hidden width])` (for a network without hidden
    ///   layers the second is the input)
    pub fn forward_with_features(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let last = self.layers.len() - 1;
        let mut h = x;
        let mut pre = h.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let z = layer.forward(h);
            if i == last {
                return (z, pre);
            }
            let z = match self.norms.get(i) {
                Some(norm) => norm.forward(z),
                None => z,
            };
            pre = z.clone();
            h = if self.relu {
                activation::relu(z)
            } else {
                activation::tanh(z)
            };
        }
        unreachable!("an Mlp has at least one layer")
    }

    /// Number of linear layers.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Distribution, TensorData};

    #[test]
    fn shapes_and_features() {
        let device = crate::cpu();
        for (act, ln) in [(Activation::Tanh, false), (Activation::Relu, true)] {
            let mlp = MlpConfig::new(4, &[16, 8], 3)
                .with_activation(act)
                .with_layer_norm(ln)
                .init(&device);
            assert_eq!(mlp.depth(), 3);
            let x = Tensor::<2>::random([5, 4], Distribution::Normal(0.0, 1.0), &device);
            let (y, z) = mlp.forward_with_features(x);
            assert_eq!((y.dims(), z.dims()), ([5, 3], [5, 8]));
            if ln {
                // Layer-normed pre-activations have zero mean per sample.
                let means = z.mean_dim(1).into_data().try_to_vec::<f32>().unwrap();
                assert!(means.iter().all(|m| m.abs() < 1e-4), "{means:?}");
            }
        }
        let linear = MlpConfig::new(3, &[], 2).init(&device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3]), &device);
        let (y, z) = linear.forward_with_features(x.clone());
        assert_eq!(y.dims(), [1, 2]);
        assert_eq!(z.into_data(), x.into_data());
    }

    #[test]
    fn trains_on_the_autodiff_device() {
        let device = crate::cpu_autodiff();
        let mut mlp = MlpConfig::new(2, &[32], 1).init(&device);
        let mut opt = AdamConfig::new().init();
        let x = Tensor::<2>::random([64, 2], Distribution::Uniform(-1.0, 1.0), &device);
        let y = (x.clone().slice([0..64, 0..1]) * x.clone().slice([0..64, 1..2])).mul_scalar(2.0);
        let mut losses = Vec::new();
        for _ in 0..400 {
            let loss = (mlp.forward(x.clone()) - y.clone()).powf_scalar(2.0).mean();
            losses.push(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &mlp);
            mlp = opt.step(3e-3, mlp, grads);
        }
        assert!(
            losses[399] < 0.1 * losses[0],
            "loss {} -> {}",
            losses[0],
            losses[399]
        );
    }
}
