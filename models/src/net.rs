//! One network type for learners whose torso depends on the observations: an [`Mlp`]
//! for vectors, the [`NatureCnn`] for stacked frames. [`Net`] trains with burn;
//! [`NetWeights`] is its acting copy.

use burn::module::Module;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::cnn::{CnnScratch, CnnWeights, NatureCnn};
use crate::inference::{MlpWeights, Scratch};
use crate::mlp::Mlp;
use crate::plasticity::{Layer, Layered};

/// An MLP or a Nature CNN, both taking flattened observations.
// A learner holds two of these: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net {
    /// A multilayer perceptron.
    Mlp(Mlp),
    /// The Nature CNN over channel-first stacked frames.
    Cnn(NatureCnn),
}

impl Net {
    /// The outputs for a batch.
    ///
    /// # Shapes
    /// - `x`: `[batch, input]` (a CNN's input flattened channel-first)
    /// - output: `[batch, outputs]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Net::Mlp(m) => m.forward(x),
            Net::Cnn(c) => c.forward_with_features(x).0,
        }
    }

    /// The outputs and the last hidden layer's pre-activations (the features PFO
    /// regularises).
    ///
    /// # Shapes
    /// - `x`: `[batch, input]`
    /// - outputs: `[batch, outputs]` and `[batch, features]`
    pub fn forward_with_features(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        match self {
            Net::Mlp(m) => m.forward_with_features(x),
            Net::Cnn(c) => c.forward_with_features(x),
        }
    }

    /// ReLU between layers (a CNN always; an MLP when so configured).
    pub fn is_relu(&self) -> bool {
        match self {
            Net::Mlp(m) => m.is_relu(),
            Net::Cnn(_) => true,
        }
    }
}

impl Layered for Net {
    fn layers(&self) -> Vec<Layer> {
        match self {
            Net::Mlp(m) => Layered::layers(m),
            Net::Cnn(c) => Layered::layers(c),
        }
    }

    fn hidden_activations(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        match self {
            Net::Mlp(m) => m.hidden_activations(x),
            Net::Cnn(c) => c.hidden_activations(x),
        }
    }

    fn probe_outputs(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward(x)
    }
}

/// The acting copy of a [`Net`]. Serialised untagged, so the MLP policies written
/// before CNNs existed read unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NetWeights {
    /// A multilayer perceptron.
    Mlp(MlpWeights),
    /// The Nature CNN.
    Cnn(CnnWeights),
}

/// Reusable buffers for [`NetWeights`].
#[derive(Clone, Debug)]
pub enum NetScratch {
    /// For an MLP.
    Mlp(Scratch),
    /// For a CNN.
    Cnn(CnnScratch),
}

impl NetWeights {
    /// A copy of `net`'s parameters.
    pub fn from_net(net: &Net) -> Self {
        match net {
            Net::Mlp(m) => NetWeights::Mlp(MlpWeights::from_mlp(m)),
            Net::Cnn(c) => NetWeights::Cnn(CnnWeights::from_nature_cnn(c)),
        }
    }

    /// ReLU between layers (a CNN always; an MLP when so configured), else tanh.
    pub fn is_relu(&self) -> bool {
        match self {
            NetWeights::Mlp(m) => m.activation == crate::Activation::Relu,
            NetWeights::Cnn(_) => true,
        }
    }

    /// Check that the shapes fit together and every value is finite.
    pub fn check(&self) -> Result<(), String> {
        match self {
            NetWeights::Mlp(m) => m.check(),
            NetWeights::Cnn(c) => c.check(),
        }
    }

    /// Values per observation.
    pub fn input_dim(&self) -> usize {
        match self {
            NetWeights::Mlp(m) => m.input_dim(),
            NetWeights::Cnn(c) => c.input_len(),
        }
    }

    /// Number of outputs.
    pub fn output_dim(&self) -> usize {
        match self {
            NetWeights::Mlp(m) => m.output_dim(),
            NetWeights::Cnn(c) => c.output_dim(),
        }
    }

    /// Keep the first `n` outputs, dropping the others' weights (a head trained for an
    /// auxiliary loss that acting does not use).
    ///
    /// # Panics
    /// If the network has fewer than `n` outputs.
    pub fn keep_outputs(&mut self, n: usize) {
        match self {
            NetWeights::Mlp(m) => m.keep_outputs(n),
            NetWeights::Cnn(c) => c.keep_outputs(n),
        }
    }

    /// Width of the last hidden layer.
    pub fn feature_dim(&self) -> usize {
        match self {
            NetWeights::Mlp(m) => m.feature_dim(),
            NetWeights::Cnn(c) => c.feature_dim(),
        }
    }

    /// Buffers for acting.
    pub fn scratch(&self) -> NetScratch {
        match self {
            NetWeights::Mlp(m) => NetScratch::Mlp(m.scratch()),
            NetWeights::Cnn(c) => NetScratch::Cnn(c.scratch()),
        }
    }

    /// The outputs for one observation.
    ///
    /// # Panics
    /// If the sizes or the scratch do not fit the network (a programming error).
    pub fn forward(&self, x: &[f32], s: &mut NetScratch, out: &mut [f32]) {
        match (self, s) {
            (NetWeights::Mlp(m), NetScratch::Mlp(s)) => m.forward(x, s, out),
            (NetWeights::Cnn(c), NetScratch::Cnn(s)) => c.forward(x, s, out),
            _ => panic!("scratch of another network kind"),
        }
    }

    /// [`forward`](Self::forward), also writing the last hidden layer's
    /// pre-activations into `features`.
    pub fn forward_with_features(
        &self,
        x: &[f32],
        s: &mut NetScratch,
        out: &mut [f32],
        features: &mut [f32],
    ) {
        match (self, s) {
            (NetWeights::Mlp(m), NetScratch::Mlp(s)) => {
                m.forward_with_features(x, s, out, features)
            }
            (NetWeights::Cnn(c), NetScratch::Cnn(s)) => {
                c.forward_with_features(x, s, out, features)
            }
            _ => panic!("scratch of another network kind"),
        }
    }

    /// The sum of squares of every parameter.
    pub fn sum_sq(&self) -> f64 {
        let sq = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
        match self {
            NetWeights::Mlp(m) => {
                m.layers
                    .iter()
                    .map(|l| sq(&l.weight) + sq(&l.bias))
                    .sum::<f64>()
                    + m.norms
                        .iter()
                        .map(|n| sq(&n.gamma) + sq(&n.beta))
                        .sum::<f64>()
            }
            NetWeights::Cnn(c) => c.dense_layers().map(|d| sq(&d.weight) + sq(&d.bias)).sum(),
        }
    }
}
