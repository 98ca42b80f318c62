//! Q-networks for DQN and Rainbow, with every Rainbow component a switch.
//!
//! A network is a **trunk** of plain hidden layers followed by one or two **streams**
//! (the "head"): `input → hidden[0] → … → hidden[L−2]` is the trunk, and each stream is
//! `hidden[L−2] → hidden[L−1] → outputs`. For stacked frames ([`QNetConfig::image`]),
//! the Nature CNN's three convolutions (Mnih et al. 2015: 32 8×8 filters stride 4, 64
//! 4×4 stride 2, 64 3×3 stride 1, ReLU; pixels scaled to [0, 1]) come first and the
//! trunk takes their flattened feature maps. With `hidden = [512]` that is Rainbow's
//! Atari network (Hessel et al. 2018; the dueling architecture of Wang et al. 2016): the
//! convolutions, then a 512-wide hidden layer in each stream, noisy when `noisy`.
//!
//! - **Dueling** (Wang et al. 2016): a value stream `V` with `atoms` outputs and an
//!   advantage stream `A` with `actions × atoms`, combined per atom as
//!   `V + A − mean_a A`. Without it, one stream gives `actions × atoms` outputs.
//! - **Noisy** (Fortunato et al. 2018, factorised Gaussian): every stream layer is
//!   `y = (μ_w + σ_w ⊙ f(ε_in) f(ε_out)ᵀ)·x + μ_b + σ_b ⊙ f(ε_out)` with
//!   `f(ε) = sgn(ε)√|ε|`, μ uniform in `±1/√fan_in` and σ = `σ₀/√fan_in`. The noise is
//!   a [`QNoise`] the caller samples, so training and acting draw it from their own
//!   seeded generators; without noise a noisy layer computes its mean `μ_w·x + μ_b`.
//! - **Distributional** (C51, Bellemare et al. 2017): `atoms > 1` outputs are logits
//!   of a categorical distribution over a fixed support per action; `atoms = 1` is a
//!   scalar Q-value.
//!
//! Plain layers use PyTorch's `nn.Linear` initialisation (uniform in `±1/√fan_in`),
//! like the DQN implementations of Stable-Baselines3 and CleanRL; the convolutions
//! PyTorch's `nn.Conv2d` one, which is the same bound over their fan-in. They are never
//! noisy (Rainbow's noisy layers are its fully connected ones).
//!
//! [`QWeights`] is the acting copy: the same function in plain Rust, allocation-free
//! (the convolutions as [`crate::cnn::CnnWeights`] runs them).

use burn::module::{Module, Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor, TensorData, activation};
use rand::{Rng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::cnn::{
    ConvScratch, ConvTorso, NatureCnnConfig, conv_forward, conv_layer_descriptions, conv_layers,
    images,
};
use crate::inference::{Dense, Norm, dense, layer_norm, norm_of, tanh, to_vec};
use crate::init::uniform;
use crate::mlp::{Activation, fast_tanh};

/// Builds a [`QNet`]; see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QNetConfig {
    /// Input width.
    pub input: usize,
    /// Hidden widths (at least one): all but the last form the trunk, the last is each
    /// stream's hidden layer.
    pub hidden: Vec<usize>,
    /// Number of actions.
    pub actions: usize,
    /// Atoms per action (1: a scalar Q-value; C51 uses 51).
    pub atoms: usize,
    /// Separate value and advantage streams.
    pub dueling: bool,
    /// Factorised-Gaussian noisy layers in the streams.
    pub noisy: bool,
    /// σ₀ of the noisy layers (0.5 in the paper).
    pub sigma0: f32,
    /// The nonlinearity.
    pub activation: Activation,
    /// Layer norm before each hidden nonlinearity (of the fully connected layers).
    pub layer_norm: bool,
    /// Channel-first frames `[channels, height, width]` (`input` is their product): the
    /// Nature CNN's convolutions come before the trunk. None: the input feeds the trunk.
    #[serde(default)]
    pub image: Option<[usize; 3]>,
}

impl QNetConfig {
    /// A plain DQN network: `input → hidden… → actions`, ReLU, no Rainbow components.
    pub fn new(input: usize, hidden: &[usize], actions: usize) -> Self {
        QNetConfig {
            input,
            hidden: hidden.to_vec(),
            actions,
            atoms: 1,
            dueling: false,
            noisy: false,
            sigma0: 0.5,
            activation: Activation::Relu,
            layer_norm: false,
            image: None,
        }
    }

    /// The Nature CNN's convolutions first, on `[channels, height, width]` frames (the
    /// input width becomes `channels · height · width`).
    pub fn with_image(mut self, [channels, height, width]: [usize; 3]) -> Self {
        self.image = Some([channels, height, width]);
        self.input = channels * height * width;
        self
    }

    /// An error naming what does not fit: frames too small for the convolutions, or an
    /// input width other than the frames'.
    pub fn check(&self) -> Result<(), String> {
        if let Some([c, h, w]) = self.image {
            if c.checked_mul(h).and_then(|ch| ch.checked_mul(w)) != Some(self.input) {
                return Err(format!(
                    "an input of {} values for frames of shape [{c}, {h}, {w}]",
                    self.input
                ));
            }
            self.cnn().map(|_| ())?;
        }
        Ok(())
    }

    /// The convolutions' output shape, for an image input.
    fn cnn(&self) -> Result<(usize, usize, usize), String> {
        let [c, h, w] = self.image.expect("an image input");
        let config = NatureCnnConfig {
            height: h,
            width: w,
            ..NatureCnnConfig::new(c, 1)
        };
        Ok(*config.shapes()?.last().expect("three convolutions"))
    }

    /// What the trunk's first layer takes: the input, or the convolutions' features.
    fn torso_width(&self) -> usize {
        match self.image {
            Some(_) => {
                let (c, h, w) = self.cnn().expect("frames large enough (QNetConfig::check)");
                c * h * w
            }
            None => self.input,
        }
    }

    fn trunk_widths(&self) -> Vec<usize> {
        let mut w = vec![self.torso_width()];
        w.extend(&self.hidden[..self.hidden.len().saturating_sub(1)]);
        w
    }

    fn stream_widths(&self, outputs: usize) -> Vec<usize> {
        let trunk_out = *self.trunk_widths().last().expect("the input at least");
        match self.hidden.last() {
            Some(&h) => vec![trunk_out, h, outputs],
            None => vec![trunk_out, outputs],
        }
    }

    /// The `(fan_in, fan_out)` of each noisy layer, in the order a [`QNoise`] holds
    /// them (value stream first when dueling, then the advantage stream); empty when
    /// the network is not noisy.
    pub fn noise_shapes(&self) -> Vec<(usize, usize)> {
        if !self.noisy {
            return Vec::new();
        }
        let mut shapes = Vec::new();
        let mut push = |widths: Vec<usize>| {
            for w in widths.windows(2) {
                shapes.push((w[0], w[1]));
            }
        };
        if self.dueling {
            push(self.stream_widths(self.atoms));
        }
        push(self.stream_widths(self.actions * self.atoms));
        shapes
    }

    /// Build the network on `device` with weights drawn from a generator seeded by `seed`.
    ///
    /// # Panics
    /// If the configuration does not fit (see [`check`](Self::check)).
    pub fn init_seeded(&self, device: &Device, seed: u64) -> QNet {
        if let Err(e) = self.check() {
            panic!("a Q-network configuration that does not fit: {e}");
        }
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let convs = match self.image {
            Some([channels, ..]) => conv_layers(channels, device, |fan_in, filters| {
                let bound = 1.0 / (fan_in as f32).sqrt();
                (
                    uniform(&mut rng, filters * fan_in, bound),
                    uniform(&mut rng, filters, bound),
                )
            }),
            None => Vec::new(),
        };
        let norm = |width: usize| LayerNormConfig::new(width).init(device);
        let trunk_widths = self.trunk_widths();
        let trunk = trunk_widths
            .windows(2)
            .map(|w| QLayer::init(&mut rng, w[0], w[1], None, device))
            .collect();
        let trunk_norms = if self.layer_norm {
            trunk_widths[1..].iter().map(|&w| norm(w)).collect()
        } else {
            Vec::new()
        };
        let sigma0 = self.noisy.then_some(self.sigma0);
        let mut stream = |outputs: usize| {
            let widths = self.stream_widths(outputs);
            let layers: Vec<QLayer> = widths
                .windows(2)
                .map(|w| QLayer::init(&mut rng, w[0], w[1], sigma0, device))
                .collect();
            let norms = if self.layer_norm {
                widths[1..widths.len() - 1]
                    .iter()
                    .map(|&w| norm(w))
                    .collect()
            } else {
                Vec::new()
            };
            (layers, norms)
        };
        let (value, value_norms) = if self.dueling {
            stream(self.atoms)
        } else {
            (Vec::new(), Vec::new())
        };
        let (advantage, advantage_norms) = stream(self.actions * self.atoms);
        QNet {
            convs,
            image: self.image.unwrap_or_default(),
            trunk,
            trunk_norms,
            value,
            value_norms,
            advantage,
            advantage_norms,
            relu: self.activation == Activation::Relu,
            actions: self.actions,
            atoms: self.atoms,
        }
    }
}

/// One dense layer `y = x·W + b` (`W` stored `[fan_in, fan_out]`), optionally noisy.
#[derive(Module, Debug)]
pub struct QLayer {
    /// μ of the weights, `[fan_in, fan_out]`.
    pub weight: Param<Tensor<2>>,
    /// μ of the biases, `[fan_out]`.
    pub bias: Param<Tensor<1>>,
    /// σ of the weights (noisy layers only).
    pub weight_sigma: Option<Param<Tensor<2>>>,
    /// σ of the biases (noisy layers only).
    pub bias_sigma: Option<Param<Tensor<1>>>,
}

fn param<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

impl QLayer {
    fn init(
        rng: &mut impl Rng,
        fan_in: usize,
        fan_out: usize,
        sigma0: Option<f32>,
        device: &Device,
    ) -> Self {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let weight = param(
            uniform(rng, fan_in * fan_out, bound),
            [fan_in, fan_out],
            device,
        );
        let bias = param(uniform(rng, fan_out, bound), [fan_out], device);
        let (weight_sigma, bias_sigma) = match sigma0 {
            Some(s) => {
                let sigma = s / (fan_in as f32).sqrt();
                (
                    Some(param(
                        vec![sigma; fan_in * fan_out],
                        [fan_in, fan_out],
                        device,
                    )),
                    Some(param(vec![sigma; fan_out], [fan_out], device)),
                )
            }
            None => (None, None),
        };
        QLayer {
            weight,
            bias,
            weight_sigma,
            bias_sigma,
        }
    }

    /// `x·μ_w + μ_b`, plus the noise term when `noise = (f(ε_in), f(ε_out))` is given
    /// and the layer is noisy. The noisy weights `μ_w + σ_w ⊙ f(ε_in) f(ε_out)ᵀ` are
    /// formed first (an elementwise product the size of the weights), so a noisy layer
    /// costs one matrix product per pass, not two.
    fn forward(&self, x: Tensor<2>, noise: Option<&(Vec<f32>, Vec<f32>)>) -> Tensor<2> {
        let [fan_in, fan_out] = self.weight.val().dims();
        match (noise, &self.weight_sigma, &self.bias_sigma) {
            (Some((e_in, e_out)), Some(ws), Some(bs)) => {
                let device = x.device();
                let e_in =
                    Tensor::<2>::from_data(TensorData::new(e_in.clone(), [fan_in, 1]), &device);
                let e_out =
                    Tensor::<1>::from_data(TensorData::new(e_out.clone(), [fan_out]), &device);
                let w = self.weight.val() + ws.val() * (e_in * e_out.clone().reshape([1, fan_out]));
                let b = self.bias.val() + bs.val() * e_out;
                x.matmul(w) + b.reshape([1, fan_out])
            }
            _ => x.matmul(self.weight.val()) + self.bias.val().reshape([1, fan_out]),
        }
    }
}

/// One sample of factorised noise for every noisy layer of a network: `(f(ε_in),
/// f(ε_out))` per layer, in [`QNetConfig::noise_shapes`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct QNoise {
    /// Per noisy layer, the transformed input and output noise vectors.
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl QNoise {
    /// Zero noise for layers of these shapes (call [`resample`](Self::resample)).
    pub fn new(shapes: &[(usize, usize)]) -> Self {
        QNoise {
            layers: shapes
                .iter()
                .map(|&(i, o)| (vec![0.0; i], vec![0.0; o]))
                .collect(),
        }
    }

    /// Draw fresh noise in place (no allocation): `f(ε) = sgn(ε)√|ε|`, ε ~ N(0, 1).
    pub fn resample(&mut self, rng: &mut impl Rng) {
        for (e_in, e_out) in &mut self.layers {
            for v in e_in.iter_mut().chain(e_out.iter_mut()) {
                let e: f32 = rng.sample(StandardNormal);
                *v = e.signum() * e.abs().sqrt();
            }
        }
    }

    /// Whether there is no noisy layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

/// A Q-network; see the [module docs](self).
#[derive(Module, Debug)]
pub struct QNet {
    /// The Nature CNN's convolutions (none for a vector input).
    convs: Vec<Conv2d>,
    /// The frames' `[channels, height, width]` (zeros for a vector input).
    image: [usize; 3],
    trunk: Vec<QLayer>,
    trunk_norms: Vec<LayerNorm>,
    value: Vec<QLayer>,
    value_norms: Vec<LayerNorm>,
    advantage: Vec<QLayer>,
    advantage_norms: Vec<LayerNorm>,
    relu: bool,
    actions: usize,
    atoms: usize,
}

type NoisePair = (Vec<f32>, Vec<f32>);

impl QNet {
    fn activate(&self, z: Tensor<2>) -> Tensor<2> {
        if self.relu {
            activation::relu(z)
        } else {
            fast_tanh(z)
        }
    }

    fn stream(
        &self,
        layers: &[QLayer],
        norms: &[LayerNorm],
        mut h: Tensor<2>,
        noise: &[NoisePair],
    ) -> Tensor<2> {
        let last = layers.len() - 1;
        for (i, layer) in layers.iter().enumerate() {
            h = layer.forward(h, noise.get(i));
            if i < last {
                if let Some(norm) = norms.get(i) {
                    h = norm.forward(h);
                }
                h = self.activate(h);
            }
        }
        h
    }

    fn hidden_stream(
        &self,
        layers: &[QLayer],
        norms: &[LayerNorm],
        mut h: Tensor<2>,
        out: &mut Vec<Tensor<2>>,
    ) {
        let last = layers.len().saturating_sub(1);
        for (i, layer) in layers[..last].iter().enumerate() {
            h = layer.forward(h, None);
            if let Some(norm) = norms.get(i) {
                h = norm.forward(h);
            }
            h = self.activate(h);
            out.push(h.clone());
        }
    }

    /// The three convolutions, when the network has them.
    fn conv_refs(&self) -> Option<[&Conv2d; 3]> {
        match &self.convs[..] {
            [a, b, c] => Some([a, b, c]),
            _ => None,
        }
    }

    /// The trunk's output, each hidden layer's activations pushed to `hidden` if given
    /// (the convolutions' are not: their units are not described).
    fn trunk_forward(&self, x: Tensor<2>, mut hidden: Option<&mut Vec<Tensor<2>>>) -> Tensor<2> {
        let mut h = match self.conv_refs() {
            Some(convs) => conv_forward(convs, images(x, self.image)),
            None => x,
        };
        for (i, layer) in self.trunk.iter().enumerate() {
            h = layer.forward(h, None);
            if let Some(norm) = self.trunk_norms.get(i) {
                h = norm.forward(h);
            }
            h = self.activate(h);
            if let Some(out) = hidden.as_mut() {
                out.push(h.clone());
            }
        }
        h
    }

    /// The outputs for a batch: Q-values (`atoms = 1`) or per-atom logits, with
    /// `noise` in the noisy layers when given (their means otherwise).
    ///
    /// # Shapes
    /// - `x`: `[batch, input]` (frames flattened channel-first, pixel values 0–255)
    /// - output: `[batch, actions, atoms]`
    pub fn forward(&self, x: Tensor<2>, noise: Option<&QNoise>) -> Tensor<3> {
        let [batch, _] = x.dims();
        let h = self.trunk_forward(x, None);
        let noise: &[NoisePair] = noise.map(|n| n.layers.as_slice()).unwrap_or(&[]);
        let split = self.value.len().min(noise.len());
        let (value_noise, adv_noise) = noise.split_at(split);
        let adv = self
            .stream(&self.advantage, &self.advantage_norms, h.clone(), adv_noise)
            .reshape([batch, self.actions, self.atoms]);
        if self.value.is_empty() {
            return adv;
        }
        let value = self
            .stream(&self.value, &self.value_norms, h, value_noise)
            .reshape([batch, 1, self.atoms]);
        let mean = adv.clone().mean_dim(1);
        value + adv - mean
    }

    /// Number of actions.
    pub fn actions(&self) -> usize {
        self.actions
    }

    /// Atoms per action.
    pub fn atoms(&self) -> usize {
        self.atoms
    }
}

/// A dense layer of the acting copy, with its σ when noisy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoisyDense {
    /// μ of the weights and biases.
    pub mu: Dense,
    /// σ of the weights and biases (noisy layers only).
    pub sigma: Option<Dense>,
}

/// The acting copy of a [`QNet`]: plain vectors, no burn, no allocation per call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QWeights {
    /// The convolutions before the trunk, for frames (absent from policies written
    /// before Q-networks had them, which were all MLPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convs: Option<ConvTorso>,
    /// Trunk layers, input first.
    pub trunk: Vec<Dense>,
    /// One layer norm per trunk layer, or none.
    pub trunk_norms: Vec<Norm>,
    /// Value stream (empty unless dueling).
    pub value: Vec<NoisyDense>,
    /// The value stream's hidden layer norm, or none.
    pub value_norms: Vec<Norm>,
    /// Advantage stream (the only stream without dueling).
    pub advantage: Vec<NoisyDense>,
    /// The advantage stream's hidden layer norm, or none.
    pub advantage_norms: Vec<Norm>,
    /// The nonlinearity.
    pub activation: Activation,
    /// Number of actions.
    pub actions: usize,
    /// Atoms per action.
    pub atoms: usize,
}

/// Scratch space for [`QWeights::forward`].
#[derive(Clone, Debug)]
pub struct QScratch {
    convs: Option<ConvScratch>,
    a: Vec<f32>,
    b: Vec<f32>,
    hidden: Vec<f32>,
    scaled: Vec<f32>,
    z: Vec<f32>,
    value: Vec<f32>,
}

fn dense_of(layer: &QLayer) -> NoisyDense {
    let [fan_in, fan_out] = layer.weight.val().dims();
    let mu = Dense {
        fan_in,
        fan_out,
        weight: to_vec(layer.weight.val().inner()),
        bias: to_vec(layer.bias.val().inner()),
    };
    let sigma = match (&layer.weight_sigma, &layer.bias_sigma) {
        (Some(w), Some(b)) => Some(Dense {
            fan_in,
            fan_out,
            weight: to_vec(w.val().inner()),
            bias: to_vec(b.val().inner()),
        }),
        _ => None,
    };
    NoisyDense { mu, sigma }
}

fn check_dense(what: &str, l: &Dense, fan_in: usize) -> Result<(), String> {
    if l.fan_in != fan_in || l.fan_out == 0 {
        return Err(format!(
            "{what} takes {} inputs where {fan_in} arrive",
            l.fan_in
        ));
    }
    if l.fan_in.checked_mul(l.fan_out) != Some(l.weight.len()) || l.bias.len() != l.fan_out {
        return Err(format!(
            "{what} claims {}×{} but holds {} weights and {} biases",
            l.fan_in,
            l.fan_out,
            l.weight.len(),
            l.bias.len()
        ));
    }
    if l.weight.iter().chain(&l.bias).any(|v| !v.is_finite()) {
        return Err(format!("{what} holds a non-finite value"));
    }
    Ok(())
}

fn check_norms(what: &str, norms: &[Norm], widths: &[usize]) -> Result<(), String> {
    if !norms.is_empty() && norms.len() != widths.len() {
        return Err(format!(
            "{what}: {} layer norms for {} hidden layers",
            norms.len(),
            widths.len()
        ));
    }
    for (n, &w) in norms.iter().zip(widths) {
        if n.gamma.len() != w || n.beta.len() != w {
            return Err(format!("{what}: a layer norm of the wrong width"));
        }
        if n.gamma.iter().chain(&n.beta).any(|v| !v.is_finite())
            || n.epsilon.is_nan()
            || n.epsilon <= 0.0
        {
            return Err(format!("{what}: a layer norm holds a non-finite value"));
        }
    }
    Ok(())
}

impl QWeights {
    /// Copy the parameters out of `net` (on any device, autodiff or not).
    pub fn from_qnet(net: &QNet) -> Self {
        QWeights {
            convs: net.conv_refs().map(|c| ConvTorso::from_convs(c, net.image)),
            trunk: net.trunk.iter().map(|l| dense_of(l).mu).collect(),
            trunk_norms: net.trunk_norms.iter().map(norm_of).collect(),
            value: net.value.iter().map(dense_of).collect(),
            value_norms: net.value_norms.iter().map(norm_of).collect(),
            advantage: net.advantage.iter().map(dense_of).collect(),
            advantage_norms: net.advantage_norms.iter().map(norm_of).collect(),
            activation: if net.relu {
                Activation::Relu
            } else {
                Activation::Tanh
            },
            actions: net.actions,
            atoms: net.atoms,
        }
    }

    /// Input width.
    pub fn input_dim(&self) -> usize {
        if let Some(c) = &self.convs {
            return c.input_len();
        }
        self.trunk
            .first()
            .map(|l| l.fan_in)
            .or_else(|| self.advantage.first().map(|l| l.mu.fan_in))
            .unwrap_or(0)
    }

    /// Output width: `actions × atoms`.
    pub fn output_dim(&self) -> usize {
        self.actions * self.atoms
    }

    /// The `(fan_in, fan_out)` of each noisy layer, in [`QNoise`] order (empty when
    /// the network is not noisy).
    pub fn noise_shapes(&self) -> Vec<(usize, usize)> {
        self.value
            .iter()
            .chain(&self.advantage)
            .filter(|l| l.sigma.is_some())
            .map(|l| (l.mu.fan_in, l.mu.fan_out))
            .collect()
    }

    /// Check that the shapes fit together and every value is finite (a network read
    /// from a file may not).
    pub fn check(&self) -> Result<(), String> {
        if self.actions == 0 || self.atoms == 0 {
            return Err("a network with no actions or no atoms".into());
        }
        if self.actions.checked_mul(self.atoms).is_none() {
            return Err("actions × atoms overflows".into());
        }
        let mut width = self.input_dim();
        if width == 0 {
            return Err("the network has no input".into());
        }
        if let Some(c) = &self.convs {
            c.check()?;
            width = c.output_len();
        }
        for (i, l) in self.trunk.iter().enumerate() {
            check_dense(&format!("trunk layer {i}"), l, width)?;
            width = l.fan_out;
        }
        let trunk_widths: Vec<usize> = self.trunk.iter().map(|l| l.fan_out).collect();
        check_norms("trunk", &self.trunk_norms, &trunk_widths)?;
        if self.advantage.is_empty() {
            return Err("the network has no advantage stream".into());
        }
        let streams = [
            ("value stream", &self.value, &self.value_norms, self.atoms),
            (
                "advantage stream",
                &self.advantage,
                &self.advantage_norms,
                self.actions * self.atoms,
            ),
        ];
        let noisy = self.advantage[0].sigma.is_some();
        for (what, layers, norms, outputs) in streams {
            if layers.is_empty() {
                continue;
            }
            let mut w = width;
            for (i, l) in layers.iter().enumerate() {
                check_dense(&format!("{what} layer {i}"), &l.mu, w)?;
                match &l.sigma {
                    Some(s) => {
                        check_dense(&format!("{what} layer {i} σ"), s, w)?;
                        if s.fan_out != l.mu.fan_out {
                            return Err(format!("{what} layer {i}: σ and μ differ in shape"));
                        }
                    }
                    None if noisy => {
                        return Err(format!("{what} layer {i} has no σ in a noisy network"));
                    }
                    None => {}
                }
                w = l.mu.fan_out;
            }
            if w != outputs {
                return Err(format!("{what} gives {w} outputs, not {outputs}"));
            }
            let hidden: Vec<usize> = layers[..layers.len() - 1]
                .iter()
                .map(|l| l.mu.fan_out)
                .collect();
            check_norms(what, norms, &hidden)?;
        }
        Ok(())
    }

    /// Scratch space sized for this network.
    pub fn scratch(&self) -> QScratch {
        let widest = self
            .trunk
            .iter()
            .map(|l| l.fan_in.max(l.fan_out))
            .chain(
                self.value
                    .iter()
                    .chain(&self.advantage)
                    .map(|l| l.mu.fan_in.max(l.mu.fan_out)),
            )
            .max()
            .unwrap_or(0);
        QScratch {
            convs: self.convs.as_ref().map(|c| c.scratch()),
            a: vec![0.0; widest],
            b: vec![0.0; widest],
            hidden: vec![0.0; widest],
            scaled: vec![0.0; widest],
            z: vec![0.0; widest],
            value: vec![0.0; self.atoms],
        }
    }

    /// The outputs (`actions × atoms`, action-major) for one input row (floats, or
    /// bytes for frames), with `noise` in the noisy layers when given (their means
    /// otherwise).
    ///
    /// # Panics
    /// If `x`, `out` or `scratch` do not fit the network (a programming error).
    pub fn forward<T: Copy + Into<f32>>(
        &self,
        x: &[T],
        noise: Option<&QNoise>,
        s: &mut QScratch,
        out: &mut [f32],
    ) {
        assert_eq!(x.len(), self.input_dim(), "input width");
        assert_eq!(out.len(), self.output_dim(), "output width");
        let QScratch {
            convs,
            a,
            b,
            hidden,
            scaled,
            z,
            value,
        } = s;
        let (mut cur, mut next) = (a.as_mut_slice(), b.as_mut_slice());
        let mut width = match (&self.convs, convs) {
            (Some(c), Some(cs)) => {
                let n = c.output_len();
                c.forward_channel_first(x, cs, &mut cur[..n]);
                n
            }
            (None, _) => {
                for (c, &v) in cur.iter_mut().zip(x) {
                    *c = v.into();
                }
                x.len()
            }
            (Some(_), None) => panic!("scratch of a network without convolutions"),
        };
        for (i, layer) in self.trunk.iter().enumerate() {
            let h = &mut next[..layer.fan_out];
            dense(layer, &cur[..width], h);
            if let Some(norm) = self.trunk_norms.get(i) {
                layer_norm(norm, h);
            }
            activate(self.activation, h);
            width = layer.fan_out;
            std::mem::swap(&mut cur, &mut next);
        }
        let h = &cur[..width];
        let noise: &[NoisePair] = noise.map(|n| n.layers.as_slice()).unwrap_or(&[]);
        let split = self.value.len().min(noise.len());
        let (value_noise, adv_noise) = noise.split_at(split);
        let mut work = StreamScratch {
            hidden,
            input: next,
            scaled,
            z,
        };
        stream(
            self.activation,
            &self.advantage,
            &self.advantage_norms,
            h,
            adv_noise,
            &mut work,
            out,
        );
        if !self.value.is_empty() {
            stream(
                self.activation,
                &self.value,
                &self.value_norms,
                h,
                value_noise,
                &mut work,
                value,
            );
            let atoms = self.atoms;
            for (j, &v) in value.iter().enumerate() {
                let mean = (0..self.actions).map(|a| out[a * atoms + j]).sum::<f32>()
                    / self.actions as f32;
                for a in 0..self.actions {
                    out[a * atoms + j] += v - mean;
                }
            }
        }
    }
}

fn activate(activation: Activation, h: &mut [f32]) {
    match activation {
        Activation::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Tanh => h.iter_mut().for_each(|v| *v = tanh(*v)),
    }
}

struct StreamScratch<'a> {
    hidden: &'a mut [f32],
    input: &'a mut [f32],
    scaled: &'a mut [f32],
    z: &'a mut [f32],
}

/// `y = x·μ_w + μ_b`, plus `(b_σ + (x ⊙ f(ε_in))·W_σ) ⊙ f(ε_out)` with noise.
fn noisy_dense(
    layer: &NoisyDense,
    noise: Option<&NoisePair>,
    x: &[f32],
    scaled: &mut [f32],
    z: &mut [f32],
    y: &mut [f32],
) {
    dense(&layer.mu, x, y);
    if let (Some(sigma), Some((e_in, e_out))) = (&layer.sigma, noise) {
        let scaled = &mut scaled[..x.len()];
        for ((s, &v), &e) in scaled.iter_mut().zip(x).zip(e_in) {
            *s = v * e;
        }
        let z = &mut z[..y.len()];
        dense(sigma, scaled, z);
        for ((yj, &zj), &e) in y.iter_mut().zip(z.iter()).zip(e_out) {
            *yj += zj * e;
        }
    }
}

fn stream(
    activation: Activation,
    layers: &[NoisyDense],
    norms: &[Norm],
    input: &[f32],
    noise: &[NoisePair],
    work: &mut StreamScratch<'_>,
    out: &mut [f32],
) {
    let last = layers.len() - 1;
    let mut width = input.len();
    for (i, layer) in layers.iter().enumerate() {
        let fan_out = layer.mu.fan_out;
        let x: &[f32] = if i == 0 { input } else { &work.input[..width] };
        if i == last {
            noisy_dense(layer, noise.get(i), x, work.scaled, work.z, out);
            return;
        }
        let h = &mut work.hidden[..fan_out];
        noisy_dense(layer, noise.get(i), x, work.scaled, work.z, h);
        if let Some(norm) = norms.get(i) {
            layer_norm(norm, h);
        }
        activate(activation, h);
        work.input[..fan_out].copy_from_slice(h);
        width = fan_out;
    }
}

impl crate::plasticity::Layered for QNet {
    fn layers(&self) -> Vec<crate::plasticity::Layer> {
        use crate::plasticity::{Layer, Units, norm_ids};
        // The weights (μ and, when noisy, σ) a unit's outgoing connections live in.
        let outgoing = |next: &[&QLayer]| -> Vec<ParamId> {
            next.iter()
                .flat_map(|l| {
                    std::iter::once(l.weight.id).chain(l.weight_sigma.as_ref().map(|p| p.id))
                })
                .collect()
        };
        let stream_len = self.advantage.len();
        let trunk_len = self.trunk.len();
        // The convolutions come before the first trunk layer (or the streams).
        let mut out = match self.conv_refs() {
            Some(convs) => conv_layer_descriptions(convs, stream_len + trunk_len + 2),
            None => Vec::new(),
        };
        let mut push = |name: String,
                        from_output: usize,
                        layer: &QLayer,
                        norm: Option<&LayerNorm>,
                        next: Option<Vec<ParamId>>| {
            let others = vec![layer.bias.id];
            let noise: Vec<ParamId> = layer
                .weight_sigma
                .iter()
                .map(|p| p.id)
                .chain(layer.bias_sigma.iter().map(|p| p.id))
                .collect();
            let norm = norm.map(norm_ids).unwrap_or_default();
            let units = next.map(|outgoing| {
                let mut incoming = vec![layer.weight.id];
                incoming.extend(&others);
                incoming.extend(&noise);
                incoming.extend(&norm);
                Units {
                    width: layer.weight.dims()[1],
                    incoming,
                    outgoing,
                }
            });
            out.push(Layer {
                name,
                from_output,
                weights: vec![layer.weight.id],
                others,
                noise,
                norm,
                units,
            });
        };
        let stream_firsts: Vec<&QLayer> = [&self.value, &self.advantage]
            .iter()
            .filter_map(|s| s.first())
            .collect();
        for (i, layer) in self.trunk.iter().enumerate() {
            let next = match self.trunk.get(i + 1) {
                Some(n) => outgoing(&[n]),
                None => outgoing(&stream_firsts),
            };
            push(
                format!("trunk.{i}"),
                stream_len + trunk_len - 1 - i,
                layer,
                self.trunk_norms.get(i),
                Some(next),
            );
        }
        for (name, layers, norms) in [
            ("value", &self.value, &self.value_norms),
            ("advantage", &self.advantage, &self.advantage_norms),
        ] {
            for (i, layer) in layers.iter().enumerate() {
                let next = layers.get(i + 1).map(|n| outgoing(&[n]));
                push(
                    format!("{name}.{i}"),
                    layers.len() - 1 - i,
                    layer,
                    norms.get(i),
                    next,
                );
            }
        }
        out
    }

    fn hidden_activations(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        let mut out = Vec::new();
        let h = self.trunk_forward(x, Some(&mut out));
        self.hidden_stream(&self.value, &self.value_norms, h.clone(), &mut out);
        self.hidden_stream(&self.advantage, &self.advantage_norms, h, &mut out);
        out
    }

    fn probe_outputs(&self, x: Tensor<2>) -> Tensor<2> {
        let [b, _] = x.dims();
        self.forward(x, None)
            .reshape([b, self.actions * self.atoms])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn configs() -> Vec<QNetConfig> {
        let base = QNetConfig::new(5, &[16, 12], 3);
        vec![
            base.clone(),
            QNetConfig {
                atoms: 7,
                dueling: true,
                noisy: true,
                ..base.clone()
            },
            QNetConfig {
                atoms: 4,
                noisy: true,
                layer_norm: true,
                activation: Activation::Tanh,
                ..base.clone()
            },
            QNetConfig {
                hidden: vec![8],
                dueling: true,
                layer_norm: true,
                ..base
            },
        ]
    }

    #[test]
    fn the_acting_copy_matches_the_module_with_and_without_noise() {
        let device = crate::cpu();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        for (k, config) in configs().iter().enumerate() {
            let net = config.init_seeded(&device, k as u64);
            let weights = QWeights::from_qnet(&net);
            weights.check().unwrap();
            assert_eq!(weights.noise_shapes(), config.noise_shapes());
            let mut noise = QNoise::new(&config.noise_shapes());
            noise.resample(&mut rng);
            let x = Tensor::<2>::random([4, config.input], Distribution::Normal(0.0, 1.0), &device);
            let xs = to_vec(x.clone());
            let mut scratch = weights.scratch();
            let mut out = vec![0.0; weights.output_dim()];
            for noisy in [false, true] {
                let n = noisy.then_some(&noise);
                let y = to_vec(net.forward(x.clone(), n));
                assert_eq!(y.len(), 4 * config.actions * config.atoms);
                for r in 0..4 {
                    let row = &xs[r * config.input..(r + 1) * config.input];
                    weights.forward(row, n, &mut scratch, &mut out);
                    let want = &y[r * out.len()..(r + 1) * out.len()];
                    for (o, w) in out.iter().zip(want) {
                        assert!((o - w).abs() < 1e-4, "config {k} noisy {noisy}: {o} vs {w}");
                    }
                }
            }
            // Noise changes a noisy network's outputs and nothing else's.
            let plain = to_vec(net.forward(x.clone(), None));
            let with = to_vec(net.forward(x, Some(&noise)));
            assert_eq!(plain != with, config.noisy, "config {k}");
        }
    }

    #[test]
    fn dueling_advantages_have_zero_mean_over_actions() {
        let device = crate::cpu();
        let config = QNetConfig {
            dueling: true,
            ..QNetConfig::new(3, &[8, 8], 4)
        };
        let net = config.init_seeded(&device, 1);
        let weights = QWeights::from_qnet(&net);
        // V(s) = mean_a Q(s, a): the value stream alone, as the advantages cancel.
        let mut value_only = weights.clone();
        let mut s = weights.scratch();
        let (mut q, mut v) = (vec![0.0; 4], vec![0.0; 1]);
        let x = [0.3, -1.0, 0.5];
        weights.forward(&x, None, &mut s, &mut q);
        value_only.advantage = value_only.value.clone();
        value_only.value.clear();
        value_only.actions = 1;
        value_only.forward(&x, None, &mut s, &mut v);
        let mean = q.iter().sum::<f32>() / 4.0;
        assert!((mean - v[0]).abs() < 1e-5, "{mean} vs {}", v[0]);
    }

    #[test]
    fn initial_sigma_and_noise_statistics_follow_the_paper() {
        let device = crate::cpu();
        let config = QNetConfig {
            noisy: true,
            ..QNetConfig::new(4, &[64], 2)
        };
        let w = QWeights::from_qnet(&config.init_seeded(&device, 0));
        let layer = &w.advantage[0];
        let sigma = layer.sigma.as_ref().unwrap();
        assert!(sigma.weight.iter().all(|&s| (s - 0.5 / 2.0).abs() < 1e-7));
        assert!(layer.mu.weight.iter().all(|&m| m.abs() <= 0.5));
        // f(ε) = sgn(ε)√|ε| has E[f²] = E|ε| = √(2/π).
        let mut noise = QNoise::new(&[(1000, 1000)]);
        noise.resample(&mut rand_pcg::Pcg64Mcg::seed_from_u64(9));
        let (e_in, e_out) = &noise.layers[0];
        let m2 = e_in.iter().chain(e_out).map(|v| v * v).sum::<f32>() / 2000.0;
        assert!(
            (m2 - (2.0 / std::f32::consts::PI).sqrt()).abs() < 0.05,
            "{m2}"
        );
    }

    #[test]
    fn damaged_weights_are_rejected() {
        let config = configs()[1].clone();
        let w = QWeights::from_qnet(&config.init_seeded(&crate::cpu(), 0));
        let mut bad = w.clone();
        bad.advantage[1].mu.weight.pop();
        assert!(
            bad.check()
                .unwrap_err()
                .contains("advantage stream layer 1")
        );
        let mut bad = w.clone();
        bad.value[0].sigma = None;
        assert!(bad.check().unwrap_err().contains("no σ"));
        let mut bad = w.clone();
        bad.trunk[0].bias[0] = f32::NAN;
        assert!(bad.check().unwrap_err().contains("non-finite"));
        let mut bad = w;
        bad.atoms = 3;
        assert!(bad.check().is_err());
    }

    /// Bytes from a fixed xorshift stream.
    fn pixels(n: usize) -> Vec<u8> {
        let mut z = 11u64;
        (0..n)
            .map(|_| {
                z ^= z << 13;
                z ^= z >> 7;
                z ^= z << 17;
                (z >> 56) as u8
            })
            .collect()
    }

    /// A CNN Q-network (dueling, noisy, C51) on non-square two-channel frames: the
    /// acting copy runs the convolutions as burn does, on bytes or on floats, with and
    /// without noise.
    #[test]
    fn the_acting_copy_of_a_cnn_q_network_matches_the_module() {
        let device = crate::cpu();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(5);
        let image = QNetConfig::new(0, &[32], 3).with_image([2, 44, 40]);
        assert_eq!(image.input, 2 * 44 * 40);
        let configs = [
            QNetConfig {
                atoms: 5,
                dueling: true,
                noisy: true,
                ..image.clone()
            },
            QNetConfig {
                hidden: vec![24, 16],
                layer_norm: true,
                ..image
            },
        ];
        for (k, config) in configs.iter().enumerate() {
            let net = config.init_seeded(&device, 2);
            let weights = QWeights::from_qnet(&net);
            weights.check().unwrap();
            assert_eq!(weights.input_dim(), config.input);
            assert_eq!(weights.noise_shapes(), config.noise_shapes());
            // 44×40 → 10×9 → 4×3 → 2×1 maps of 64 channels.
            assert_eq!(weights.convs.as_ref().unwrap().output_len(), 128);
            let mut noise = QNoise::new(&config.noise_shapes());
            noise.resample(&mut rng);
            let bytes = pixels(3 * config.input);
            let floats: Vec<f32> = bytes.iter().map(|&b| b as f32).collect();
            let x =
                Tensor::<2>::from_data(TensorData::new(floats.clone(), [3, config.input]), &device);
            let mut scratch = weights.scratch();
            let mut out = vec![0.0; weights.output_dim()];
            let mut out_f = vec![0.0; weights.output_dim()];
            for noisy in [false, true] {
                let n = noisy.then_some(&noise);
                let y = to_vec(net.forward(x.clone(), n));
                assert!(y.iter().any(|v| v.abs() > 1e-3), "a non-trivial output");
                for r in 0..3 {
                    let row = r * config.input..(r + 1) * config.input;
                    weights.forward(&bytes[row.clone()], n, &mut scratch, &mut out);
                    weights.forward(&floats[row], n, &mut scratch, &mut out_f);
                    assert_eq!(out, out_f, "bytes and floats are the same pixels");
                    let want = &y[r * out.len()..(r + 1) * out.len()];
                    for (o, w) in out.iter().zip(want) {
                        assert!(
                            (o - w).abs() < 1e-4 * w.abs().max(1.0),
                            "config {k} noisy {noisy}: {o} vs {w}"
                        );
                    }
                }
            }
        }
        let mut small = QNetConfig::new(0, &[8], 2).with_image([1, 20, 84]);
        assert!(small.check().unwrap_err().contains("20×84"));
        small.image = Some([1, 84, 84]);
        assert!(small.check().unwrap_err().contains("an input of 1680"));
    }

    /// The convolutions are described to the plasticity tools as layers without units,
    /// before the fully connected ones; every parameter belongs to one layer.
    #[test]
    fn a_cnn_q_networks_layers_start_with_its_convolutions() {
        let config = QNetConfig {
            dueling: true,
            noisy: true,
            ..QNetConfig::new(0, &[16], 2).with_image([1, 36, 36])
        };
        let net = config.init_seeded(&crate::cpu_autodiff(), 1);
        let layers = crate::plasticity::Layered::layers(&net);
        let names: Vec<(&str, usize, bool)> = layers
            .iter()
            .map(|l| (l.name.as_str(), l.from_output, l.units.is_some()))
            .collect();
        assert_eq!(
            names,
            [
                ("conv1", 4, false),
                ("conv2", 3, false),
                ("conv3", 2, false),
                ("value.0", 1, true),
                ("value.1", 0, false),
                ("advantage.0", 1, true),
                ("advantage.1", 0, false)
            ]
        );
        let mut owned: Vec<ParamId> = layers
            .iter()
            .flat_map(|l| {
                l.weights
                    .iter()
                    .chain(&l.others)
                    .chain(&l.noise)
                    .chain(&l.norm)
            })
            .copied()
            .collect();
        let mut all = crate::plasticity::param_ids(&net);
        assert_eq!(owned.len(), all.len());
        owned.sort_by_key(|id| id.val());
        all.sort_by_key(|id| id.val());
        assert_eq!(owned, all);
        // One activation per layer with units: the streams' hidden layers.
        let x = Tensor::<2>::zeros([2, 36 * 36], &crate::cpu_autodiff());
        let acts = crate::plasticity::Layered::hidden_activations(&net, x);
        assert_eq!(
            acts.iter().map(|a| a.dims()).collect::<Vec<_>>(),
            [[2, 16]; 2]
        );
    }
}
