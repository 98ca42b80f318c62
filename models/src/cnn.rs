//! The Nature CNN (Mnih et al. 2015), the network of the Atari protocol: stacked 84×84
//! `u8` frames scaled to [0, 1] → 32 filters 8×8 stride 4 → 64 4×4 stride 2 → 64 3×3
//! stride 1 → 512 units → the outputs, ReLU between. [`NatureCnn`] trains with burn;
//! [`CnnWeights`] is its acting copy in plain Rust (no device, no allocation per call),
//! as [`crate::MlpWeights`] is for the MLP.
//!
//! The acting copy runs each convolution as an im2col product: every output position's
//! receptive field is copied into a row, then multiplied by the filters laid out
//! `[fan_in × filters]`, so the inner loop is a contiguous multiply-add over the
//! filters that the compiler vectorises. Its feature maps are kept channels-last.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData, activation};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::inference::{Dense, dense, dense_rows, to_vec};
use crate::init::orthogonal;

/// The three convolutions: (filters, kernel, stride).
const CONVS: [(usize, usize, usize); 3] = [(32, 8, 4), (64, 4, 2), (64, 3, 1)];

/// Builds a [`NatureCnn`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NatureCnnConfig {
    /// Stacked frames (input channels).
    pub channels: usize,
    /// Frame height.
    pub height: usize,
    /// Frame width.
    pub width: usize,
    /// Width of the fully connected layer (512 in the paper).
    pub features: usize,
    /// Outputs of the head.
    pub outputs: usize,
    /// Orthogonal gain of the head (CleanRL: 0.01 for a policy, 1 for a value).
    pub output_gain: f32,
}

impl NatureCnnConfig {
    /// `channels` stacked 84×84 frames to `outputs`, 512 features, head gain 1.
    pub fn new(channels: usize, outputs: usize) -> Self {
        NatureCnnConfig {
            channels,
            height: 84,
            width: 84,
            features: 512,
            outputs,
            output_gain: 1.0,
        }
    }

    /// The head's orthogonal gain.
    pub fn with_output_gain(mut self, gain: f32) -> Self {
        self.output_gain = gain;
        self
    }

    /// `(channels, height, width)` after each convolution, or an error naming a frame
    /// too small for the kernels.
    pub fn shapes(&self) -> Result<Vec<(usize, usize, usize)>, String> {
        let (mut h, mut w) = (self.height, self.width);
        let mut out = Vec::new();
        for (filters, k, s) in CONVS {
            if h < k || w < k {
                return Err(format!(
                    "{}×{} frames are too small for the Nature CNN's {k}×{k} kernel",
                    self.height, self.width
                ));
            }
            h = (h - k) / s + 1;
            w = (w - k) / s + 1;
            out.push((filters, h, w));
        }
        Ok(out)
    }

    /// Build the module on `device`, weights orthogonal (gain √2, the head
    /// `output_gain`) and biases zero, drawn from `seed` (CleanRL's `layer_init`).
    ///
    /// # Panics
    /// If the frames are too small for the kernels (check [`shapes`](Self::shapes)).
    pub fn init_seeded(&self, device: &Device, seed: u64) -> NatureCnn {
        let shapes = self.shapes().expect("frames large enough");
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let gain = std::f32::consts::SQRT_2;
        let convs = conv_layers(self.channels, device, |fan_in, filters| {
            // orthogonal() gives [fan_in × filters]; burn wants [filters][fan_in].
            let m = orthogonal(&mut rng, fan_in, filters, gain);
            let mut w = vec![0.0f32; filters * fan_in];
            for i in 0..fan_in {
                for o in 0..filters {
                    w[o * fan_in + i] = m[i * filters + o];
                }
            }
            (w, vec![0.0; filters])
        });
        let (c, h, w) = *shapes.last().expect("three convolutions");
        let flat = c * h * w;
        let linear = |rng: &mut rand_pcg::Pcg64Mcg, fan_in: usize, fan_out: usize, g: f32| Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(orthogonal(rng, fan_in, fan_out, g), [fan_in, fan_out]),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::zeros([fan_out], device))),
        };
        let fc = linear(&mut rng, flat, self.features, gain);
        let head = linear(&mut rng, self.features, self.outputs, self.output_gain);
        let mut convs = convs.into_iter();
        NatureCnn {
            channels: self.channels,
            height: self.height,
            width: self.width,
            conv1: convs.next().expect("conv 1"),
            conv2: convs.next().expect("conv 2"),
            conv3: convs.next().expect("conv 3"),
            fc,
            head,
        }
    }
}

/// The three convolutions for `channels` input channels, each filter bank's weights
/// (`[filters][channels · k · k]`, burn's layout) and biases from `init(fan_in, filters)`.
pub(crate) fn conv_layers(
    channels: usize,
    device: &Device,
    mut init: impl FnMut(usize, usize) -> (Vec<f32>, Vec<f32>),
) -> Vec<Conv2d> {
    let mut c_in = channels;
    let mut convs = Vec::new();
    for (filters, k, s) in CONVS {
        let (w, b) = init(c_in * k * k, filters);
        let mut conv = Conv2dConfig::new([c_in, filters], [k, k])
            .with_stride([s, s])
            .with_padding(PaddingConfig2d::Valid)
            .init(device);
        conv.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(w, [filters, c_in, k, k]),
            device,
        ));
        conv.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [filters]),
            device,
        )));
        convs.push(conv);
        c_in = filters;
    }
    convs
}

/// The three convolutions (ReLU after each) on pixel values 0–255, scaled to [0, 1]
/// first, their last feature maps flattened (channel, row, column).
///
/// # Shapes
/// - `x`: `[batch, channels, height, width]`
/// - output: `[batch, 64 · h₃ · w₃]`
pub(crate) fn conv_forward(convs: [&Conv2d; 3], x: Tensor<4>) -> Tensor<2> {
    let mut h = x.div_scalar(255.0);
    for conv in convs {
        h = activation::relu(conv.forward(h));
    }
    h.flatten(1, 3)
}

/// A `[batch, channels · height · width]` batch of flattened frames as images.
pub(crate) fn images(x: Tensor<2>, [c, h, w]: [usize; 3]) -> Tensor<4> {
    let b = x.dims()[0];
    x.reshape([b, c, h, w])
}

/// The Layered description of three convolutions whose first is `from_first` layers
/// from the output. Their units (the filters) are not described: dormancy and ReDo act
/// on the fully connected layers.
pub(crate) fn conv_layer_descriptions(
    convs: [&Conv2d; 3],
    from_first: usize,
) -> Vec<crate::plasticity::Layer> {
    convs
        .into_iter()
        .enumerate()
        .map(|(i, conv)| crate::plasticity::Layer {
            name: format!("conv{}", i + 1),
            from_output: from_first - i,
            weights: vec![conv.weight.id],
            others: conv.bias.iter().map(|p| p.id).collect(),
            noise: Vec::new(),
            norm: Vec::new(),
            units: None,
        })
        .collect()
}

/// The Nature CNN; see the [module docs](self).
#[derive(Module, Debug)]
pub struct NatureCnn {
    channels: usize,
    height: usize,
    width: usize,
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    fc: Linear,
    head: Linear,
}

impl NatureCnn {
    /// The 512 features before the head.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, height, width]`, pixel values 0–255
    /// - output: `[batch, features]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        activation::relu(self.trunk(x))
    }

    /// The fully connected layer's pre-activations.
    fn trunk(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc
            .forward(conv_forward([&self.conv1, &self.conv2, &self.conv3], x))
    }

    /// The head's outputs.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, height, width]`, pixel values 0–255
    /// - output: `[batch, outputs]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.features(x))
    }

    /// The head's outputs and the fully connected layer's pre-activations (the last
    /// hidden layer's, which PFO regularises), for flattened observations.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels · height · width]`, channel-first, pixel values 0–255
    /// - outputs: `[batch, outputs]` and `[batch, features]`
    pub fn forward_with_features(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let z = self.trunk(self.image(x));
        (self.head.forward(activation::relu(z.clone())), z)
    }

    /// Flattened observations as images.
    fn image(&self, x: Tensor<2>) -> Tensor<4> {
        images(x, [self.channels, self.height, self.width])
    }

    /// Values per observation (channels × height × width).
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl crate::plasticity::Layered for NatureCnn {
    /// Five layers: the three convolutions (whose units, the filters, are not
    /// described: dormancy and ReDo act on the fully connected layer), the fully
    /// connected layer, the head.
    fn layers(&self) -> Vec<crate::plasticity::Layer> {
        use crate::plasticity::{Layer, Units};
        let bias = |b: &Option<Param<Tensor<1>>>| b.iter().map(|p| p.id).collect::<Vec<_>>();
        let mut layers: Vec<Layer> =
            conv_layer_descriptions([&self.conv1, &self.conv2, &self.conv3], 4);
        let fc_bias = bias(&self.fc.bias);
        let mut incoming = vec![self.fc.weight.id];
        incoming.extend(&fc_bias);
        layers.push(Layer {
            name: "fc".into(),
            from_output: 1,
            weights: vec![self.fc.weight.id],
            others: fc_bias,
            noise: Vec::new(),
            norm: Vec::new(),
            units: Some(Units {
                width: self.fc.weight.dims()[1],
                incoming,
                outgoing: vec![self.head.weight.id],
            }),
        });
        layers.push(Layer {
            name: "head".into(),
            from_output: 0,
            weights: vec![self.head.weight.id],
            others: bias(&self.head.bias),
            noise: Vec::new(),
            norm: Vec::new(),
            units: None,
        });
        layers
    }

    /// The fully connected layer's activations (the one layer with units).
    fn hidden_activations(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        vec![activation::relu(self.trunk(self.image(x)))]
    }

    fn probe_outputs(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_with_features(x).0
    }
}

/// One convolution of the acting copy: filters laid out `[fan_in × filters]` with
/// fan-in ordered (channel, row, column) as burn's weights are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ConvWeights {
    dense: Dense,
    channels: usize,
    kernel: usize,
    stride: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
}

/// The acting copy of the Nature CNN's three convolutions (ReLU after each): what
/// [`CnnWeights`] and a CNN [`crate::QWeights`] run before their dense layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConvTorso {
    convs: Vec<ConvWeights>,
}

/// Reusable buffers for [`ConvTorso`]: the im2col rows and two feature maps.
#[derive(Clone, Debug)]
pub struct ConvScratch {
    cols: Vec<f32>,
    maps: [Vec<f32>; 2],
}

impl ConvTorso {
    /// A copy of three burn convolutions for `[channels, height, width]` inputs.
    ///
    /// # Panics
    /// If the convolutions do not fit the input (a programming error).
    pub(crate) fn from_convs(convs: [&Conv2d; 3], [channels, height, width]: [usize; 3]) -> Self {
        let config = NatureCnnConfig {
            height,
            width,
            ..NatureCnnConfig::new(channels, 1)
        };
        let shapes = config.shapes().expect("frames large enough");
        let mut out = Vec::new();
        let (mut c_in, mut h, mut w) = (channels, height, width);
        for (conv, ((filters, k, s), &(_, oh, ow))) in
            convs.into_iter().zip(CONVS.iter().zip(&shapes))
        {
            let fan_in = c_in * k * k;
            let burn_w = to_vec(conv.weight.val());
            assert_eq!(burn_w.len(), filters * fan_in, "the configuration's shape");
            let mut weight = vec![0.0f32; fan_in * filters];
            for o in 0..*filters {
                for i in 0..fan_in {
                    weight[i * filters + o] = burn_w[o * fan_in + i];
                }
            }
            let bias = conv
                .bias
                .as_ref()
                .map(|b| to_vec(b.val()))
                .unwrap_or_else(|| vec![0.0; *filters]);
            out.push(ConvWeights {
                dense: Dense {
                    fan_in,
                    fan_out: *filters,
                    weight,
                    bias,
                },
                channels: c_in,
                kernel: *k,
                stride: *s,
                in_h: h,
                in_w: w,
                out_h: oh,
                out_w: ow,
            });
            (c_in, h, w) = (*filters, oh, ow);
        }
        ConvTorso { convs: out }
    }

    /// The convolutions' dense products.
    pub(crate) fn dense_layers(&self) -> impl Iterator<Item = &Dense> {
        self.convs.iter().map(|c| &c.dense)
    }

    /// Input values per observation (channels × height × width).
    pub fn input_len(&self) -> usize {
        let c = &self.convs[0];
        c.channels * c.in_h * c.in_w
    }

    /// The last feature maps' `(channels, height, width)`.
    pub fn output_shape(&self) -> (usize, usize, usize) {
        let c = self.convs.last().expect("three convolutions");
        (c.dense.fan_out, c.out_h, c.out_w)
    }

    /// Values the convolutions output per observation.
    pub fn output_len(&self) -> usize {
        let (c, h, w) = self.output_shape();
        c * h * w
    }

    /// Buffers for running the convolutions.
    pub fn scratch(&self) -> ConvScratch {
        let cols = self
            .convs
            .iter()
            .map(|c| c.out_h * c.out_w * c.dense.fan_in)
            .max()
            .unwrap_or(0);
        let maps = self
            .convs
            .iter()
            .map(|c| c.out_h * c.out_w * c.dense.fan_out)
            .max()
            .unwrap_or(0);
        ConvScratch {
            cols: vec![0.0; cols],
            maps: [vec![0.0; maps], vec![0.0; maps]],
        }
    }

    /// Check that the shapes fit together and every value is finite.
    pub fn check(&self) -> Result<(), String> {
        if self.convs.len() != CONVS.len() {
            return Err(format!(
                "{} convolutions, the Nature CNN has {}",
                self.convs.len(),
                CONVS.len()
            ));
        }
        let (mut c_in, mut h, mut w) = {
            let c = &self.convs[0];
            (c.channels, c.in_h, c.in_w)
        };
        for (i, (c, &(filters, k, s))) in self.convs.iter().zip(&CONVS).enumerate() {
            let fits = c.channels == c_in
                && c.in_h == h
                && c.in_w == w
                && c.kernel == k
                && c.stride == s
                && h >= k
                && w >= k
                && c.out_h == (h - k) / s + 1
                && c.out_w == (w - k) / s + 1
                && c.dense.fan_out == filters
                && c.dense.fan_in == c_in * k * k;
            if !fits || c_in == 0 {
                return Err(format!("convolution {} does not fit its input", i + 1));
            }
            check_dense(&c.dense).map_err(|m| format!("convolution {}: {m}", i + 1))?;
            (c_in, h, w) = (filters, c.out_h, c.out_w);
        }
        Ok(())
    }

    /// Runs the convolutions on one observation `obs` (`channels × height × width`
    /// pixel values 0–255, channel-first; bytes or floats) and returns the last
    /// feature maps, channels-last (row, column, channel), from `s`.
    ///
    /// # Panics
    /// If `obs` has the wrong length or `s` was made for another torso.
    pub fn forward<'s, T: Copy + Into<f32>>(&self, obs: &[T], s: &'s mut ConvScratch) -> &'s [f32] {
        assert_eq!(obs.len(), self.input_len(), "observation size");
        let [a, b] = &mut s.maps;
        let (mut input, mut output) = (a, b);
        for (layer, conv) in self.convs.iter().enumerate() {
            let (k, st, fan_in) = (conv.kernel, conv.stride, conv.dense.fan_in);
            // im2col: one row of (channel, ky, kx) per output position.
            for oy in 0..conv.out_h {
                for ox in 0..conv.out_w {
                    let row = &mut s.cols[(oy * conv.out_w + ox) * fan_in..][..fan_in];
                    let mut i = 0;
                    for ch in 0..conv.channels {
                        for ky in 0..k {
                            let y = oy * st + ky;
                            for kx in 0..k {
                                let x = ox * st + kx;
                                row[i] = if layer == 0 {
                                    obs[(ch * conv.in_h + y) * conv.in_w + x].into() / 255.0
                                } else {
                                    input[(y * conv.in_w + x) * conv.channels + ch]
                                };
                                i += 1;
                            }
                        }
                    }
                }
            }
            let positions = conv.out_h * conv.out_w;
            let y = &mut output[..positions * conv.dense.fan_out];
            dense_rows(&conv.dense, &s.cols[..positions * fan_in], positions, y);
            y.iter_mut().for_each(|v| *v = v.max(0.0));
            std::mem::swap(&mut input, &mut output);
        }
        &input[..self.output_len()]
    }

    /// [`forward`](Self::forward), with the feature maps written into `out` flattened
    /// as burn flattens them (channel, row, column).
    pub fn forward_channel_first<T: Copy + Into<f32>>(
        &self,
        obs: &[T],
        s: &mut ConvScratch,
        out: &mut [f32],
    ) {
        let (c, h, w) = self.output_shape();
        let maps = self.forward(obs, s);
        for p in 0..h * w {
            for ch in 0..c {
                out[ch * h * w + p] = maps[p * c + ch];
            }
        }
    }
}

/// The acting copy of a [`NatureCnn`]; see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnnWeights {
    convs: ConvTorso,
    fc: Dense,
    head: Dense,
}

/// Reusable buffers for [`CnnWeights::forward`].
#[derive(Clone, Debug)]
pub struct CnnScratch {
    convs: ConvScratch,
    features: Vec<f32>,
}

impl CnnWeights {
    /// A copy of `cnn`'s parameters for a `config`-shaped input.
    ///
    /// # Panics
    /// If `config` does not describe `cnn` (a programming error).
    pub fn from_cnn(cnn: &NatureCnn, config: &NatureCnnConfig) -> Self {
        let convs = ConvTorso::from_convs(
            [&cnn.conv1, &cnn.conv2, &cnn.conv3],
            [config.channels, config.height, config.width],
        );
        let (c_in, h, w) = convs.output_shape();
        // burn flattens (channel, row, column); the copy's maps are (row, column,
        // channel): reorder the rows of the fully connected weights to match.
        let fc_w = to_vec(cnn.fc.weight.val());
        let features = cnn.fc.weight.dims()[1];
        let mut weight = vec![0.0f32; fc_w.len()];
        for ch in 0..c_in {
            for y in 0..h {
                for x in 0..w {
                    let burn_row = ch * h * w + y * w + x;
                    let our_row = (y * w + x) * c_in + ch;
                    weight[our_row * features..(our_row + 1) * features]
                        .copy_from_slice(&fc_w[burn_row * features..(burn_row + 1) * features]);
                }
            }
        }
        let linear = |l: &Linear, weight: Vec<f32>| {
            let [fan_in, fan_out] = l.weight.dims();
            Dense {
                fan_in,
                fan_out,
                weight,
                bias: l
                    .bias
                    .as_ref()
                    .map(|b| to_vec(b.val()))
                    .unwrap_or_else(|| vec![0.0; fan_out]),
            }
        };
        CnnWeights {
            convs,
            fc: linear(&cnn.fc, weight),
            head: linear(&cnn.head, to_vec(cnn.head.weight.val())),
        }
    }

    /// A copy of `cnn`'s parameters (its shape read from the module itself).
    pub fn from_nature_cnn(cnn: &NatureCnn) -> Self {
        let config = NatureCnnConfig {
            channels: cnn.channels,
            height: cnn.height,
            width: cnn.width,
            features: cnn.fc.weight.dims()[1],
            outputs: cnn.head.weight.dims()[1],
            output_gain: 1.0,
        };
        Self::from_cnn(cnn, &config)
    }

    /// The dense products: three convolutions, the fully connected layer, the head.
    pub(crate) fn dense_layers(&self) -> impl Iterator<Item = &Dense> {
        self.convs.dense_layers().chain([&self.fc, &self.head])
    }

    /// Input values per observation (channels × height × width).
    pub fn input_len(&self) -> usize {
        self.convs.input_len()
    }

    /// Number of outputs.
    pub fn output_dim(&self) -> usize {
        self.head.fan_out
    }

    /// Keep the head's first `n` outputs (see [`Dense::keep_outputs`]).
    pub fn keep_outputs(&mut self, n: usize) {
        self.head.keep_outputs(n);
    }

    /// Buffers for [`forward`](Self::forward).
    pub fn scratch(&self) -> CnnScratch {
        CnnScratch {
            convs: self.convs.scratch(),
            features: vec![0.0; self.fc.fan_out],
        }
    }

    /// Width of the fully connected layer (the features PFO reads).
    pub fn feature_dim(&self) -> usize {
        self.fc.fan_out
    }

    /// Check that the shapes fit together and every value is finite (a network read
    /// from a file may not).
    pub fn check(&self) -> Result<(), String> {
        self.convs.check()?;
        if self.fc.fan_in != self.convs.output_len() || self.head.fan_in != self.fc.fan_out {
            return Err("the fully connected layers do not fit the convolutions".into());
        }
        check_dense(&self.fc).map_err(|m| format!("fully connected layer: {m}"))?;
        check_dense(&self.head).map_err(|m| format!("head: {m}"))
    }

    /// The outputs for one observation `obs` (`channels × height × width` pixel values
    /// 0–255, channel-first, as a frame stack holds them; bytes or floats).
    ///
    /// # Panics
    /// If `obs` or `out` has the wrong length (a programming error).
    pub fn forward<T: Copy + Into<f32>>(&self, obs: &[T], s: &mut CnnScratch, out: &mut [f32]) {
        self.run(obs, s, out, None);
    }

    /// [`forward`](Self::forward), also writing the fully connected layer's
    /// pre-activations into `features` ([`feature_dim`](Self::feature_dim) values).
    pub fn forward_with_features<T: Copy + Into<f32>>(
        &self,
        obs: &[T],
        s: &mut CnnScratch,
        out: &mut [f32],
        features: &mut [f32],
    ) {
        self.run(obs, s, out, Some(features));
    }

    fn run<T: Copy + Into<f32>>(
        &self,
        obs: &[T],
        s: &mut CnnScratch,
        out: &mut [f32],
        features: Option<&mut [f32]>,
    ) {
        assert_eq!(out.len(), self.output_dim(), "output size");
        let maps = self.convs.forward(obs, &mut s.convs);
        dense(&self.fc, maps, &mut s.features);
        if let Some(f) = features {
            f.copy_from_slice(&s.features);
        }
        s.features.iter_mut().for_each(|v| *v = v.max(0.0));
        dense(&self.head, &s.features, out);
    }
}

/// A dense layer's sizes against its values, and every value finite.
fn check_dense(d: &Dense) -> Result<(), String> {
    if d.fan_in == 0
        || d.fan_out == 0
        || d.fan_in.checked_mul(d.fan_out) != Some(d.weight.len())
        || d.bias.len() != d.fan_out
    {
        return Err(format!(
            "claims {}×{} but holds {} weights and {} biases",
            d.fan_in,
            d.fan_out,
            d.weight.len(),
            d.bias.len()
        ));
    }
    if d.weight.iter().chain(&d.bias).any(|v| !v.is_finite()) {
        return Err("holds a NaN or infinite value".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acting_copy_matches_the_burn_module() {
        let device = crate::cpu();
        let config = NatureCnnConfig::new(4, 6).with_output_gain(0.5);
        assert_eq!(
            config.shapes().unwrap(),
            vec![(32, 20, 20), (64, 9, 9), (64, 7, 7)]
        );
        let cnn = config.init_seeded(&device, 3);
        let copy = CnnWeights::from_cnn(&cnn, &config);
        let mut z = 7u64;
        let obs: Vec<u8> = (0..2 * 4 * 84 * 84)
            .map(|_| {
                z ^= z << 13;
                z ^= z >> 7;
                z ^= z << 17;
                (z >> 56) as u8
            })
            .collect();
        let x = Tensor::<4>::from_data(
            TensorData::new(obs.iter().map(|&v| v as f32).collect(), [2, 4, 84, 84]),
            &device,
        );
        let want = to_vec(cnn.forward(x));
        let mut s = copy.scratch();
        for b in 0..2 {
            let mut out = vec![0.0f32; 6];
            copy.forward(
                &obs[b * 4 * 84 * 84..(b + 1) * 4 * 84 * 84],
                &mut s,
                &mut out,
            );
            for (o, w) in out.iter().zip(&want[b * 6..(b + 1) * 6]) {
                assert!(
                    (o - w).abs() < 1e-4 * w.abs().max(1.0),
                    "{out:?} vs {want:?}"
                );
            }
        }
        assert!(want.iter().any(|v| v.abs() > 1e-3), "a non-trivial output");
    }

    #[test]
    fn small_frames_are_an_error_and_a_seed_fixes_the_network() {
        let mut c = NatureCnnConfig::new(4, 2);
        c.height = 20;
        assert!(c.shapes().unwrap_err().contains("20×84"));
        let device = crate::cpu();
        let c = NatureCnnConfig::new(1, 2);
        let a = CnnWeights::from_cnn(&c.init_seeded(&device, 1), &c);
        let b = CnnWeights::from_cnn(&c.init_seeded(&device, 1), &c);
        assert_eq!(a, b);
        let d = CnnWeights::from_cnn(&c.init_seeded(&device, 2), &c);
        assert_ne!(a, d);
    }
}
