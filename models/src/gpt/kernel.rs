//! Plain-Rust, allocation-free single-token inference for a [`Gpt`] with a key/value
//! cache: the same function as [`Gpt::step`] (to f32 rounding, tested to 1e-4) without a
//! tensor framework's per-operation dispatch, so that it can be compared with the xLSTM's
//! plain-Rust step ([`crate::xlstm::XLstmWeights`]) on equal footing.
//!
//! [`GptWeights::from_model`] copies the parameters out, the projections packed as the
//! xLSTM kernel's are (register-blocked products, AVX2 + FMA chosen at run time);
//! [`GptWeights::cache`] preallocates, per layer, the keys and values of `context` tokens
//! for `batch` rows (a ring buffer, as [`super::KvCache`]: it fills up to `context`
//! tokens, then each new token replaces the oldest, with no reallocation), and
//! [`GptWeights::scratch`] the working space, so [`GptWeights::step`] allocates nothing.
//!
//! [`GptWeights::prefill`] feeds several tokens of one sequence at once (each projection
//! reads its weights once for every four tokens instead of once per token), with the
//! same result as stepping them one by one.
//!
//! Not covered by this fast path: cross-attention (RA-DT's memory; a model built with it
//! is refused by [`GptWeights::from_model`]) and resetting one row of a batch (all rows
//! advance together; [`GptRustCache::reset`] clears them all).
//!
//! ```
//! use agentry_models::gpt::{GptConfig, GptWeights};
//! let gpt = GptConfig::new(16, 2, 4, 8).init_seeded(&agentry_models::cpu(), 0).unwrap();
//! let weights = GptWeights::from_model(&gpt).unwrap();
//! let mut cache = weights.cache(1);
//! let mut scratch = weights.scratch(1);
//! let mut y = vec![0.0; 16];
//! for t in 0..12 {
//!     weights.step(&[t as f32 * 0.1; 16], &mut cache, &mut scratch, &mut y);
//! }
//! assert_eq!(cache.len(), 8);
//! ```

use std::fmt;

use super::Gpt;
use crate::inference::{Norm, layer_norm, norm_of};
use crate::step_math::{Isa, Packed, gelu, packed_of, scores, softmax_unnormalised, weighted_rows};

/// Why a [`Gpt`] cannot run on the plain-Rust fast path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GptWeightsError {
    /// The model has cross-attention sub-layers (RA-DT), which the fast path does not run.
    CrossAttention,
}

impl fmt::Display for GptWeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptWeightsError::CrossAttention => write!(
                f,
                "gpt: the plain-Rust step does not support cross-attention; use Gpt::step"
            ),
        }
    }
}

impl std::error::Error for GptWeightsError {}

#[derive(Clone, Debug)]
struct BlockWeights {
    ln_attn: Norm,
    /// `d → 3·d`: queries, keys, values.
    qkv: Packed,
    out: Packed,
    ln_mlp: Norm,
    mlp_in: Packed,
    mlp_out: Packed,
}

/// The parameters of a [`Gpt`] (without cross-attention) as plain vectors; see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct GptWeights {
    d_model: usize,
    num_heads: usize,
    context: usize,
    relu: bool,
    blocks: Vec<BlockWeights>,
    ln_final: Norm,
}

/// Keys and values of the last `capacity` tokens of `batch` rows, per layer,
/// preallocated; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct GptRustCache {
    batch: usize,
    capacity: usize,
    /// Tokens fed per row since the last reset.
    fed: usize,
    /// Per layer `[batch, heads, d_head, capacity]`: keys stored transposed, so that the
    /// scores of one query are a sum of `d_head` contiguous rows.
    keys: Vec<Vec<f32>>,
    /// Per layer `[batch, heads, capacity, d_head]`.
    values: Vec<Vec<f32>>,
}

impl GptRustCache {
    /// Number of rows.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Tokens held per row (as [`super::KvCache::len`]): at most `capacity`.
    pub fn len(&self) -> usize {
        self.fed.min(self.capacity)
    }

    /// Whether no token has been fed since the last reset.
    pub fn is_empty(&self) -> bool {
        self.fed == 0
    }

    /// Most tokens held (the model's context).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Values the buffers hold (× 4 bytes), allocated up front.
    pub fn num_values(&self) -> usize {
        self.keys.iter().chain(&self.values).map(Vec::len).sum()
    }

    /// Forget every row's tokens (the buffers are kept and overwritten).
    pub fn reset(&mut self) {
        self.fed = 0;
    }
}

/// Working space for [`GptWeights::step`] with a given batch size.
#[derive(Clone, Debug)]
pub struct GptScratch {
    batch: usize,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attended: Vec<f32>,
    delta: Vec<f32>,
    hidden: Vec<f32>,
    scores: Vec<f32>,
    isa: Isa,
}

impl GptScratch {
    /// Run the steps with this scratch on `isa` instead of the best the CPU has (tests
    /// compare the portable path with the SIMD one).
    #[cfg(test)]
    pub(crate) fn set_isa(&mut self, isa: Isa) {
        self.isa = isa;
    }
}

impl GptWeights {
    /// Copy the parameters out of `gpt` (on any device, autodiff or not), or refuse a
    /// model with cross-attention.
    pub fn from_model(gpt: &Gpt) -> Result<Self, GptWeightsError> {
        if gpt.blocks.iter().any(|b| b.cross.is_some()) {
            return Err(GptWeightsError::CrossAttention);
        }
        let blocks = gpt
            .blocks
            .iter()
            .map(|b| BlockWeights {
                ln_attn: norm_of(&b.ln_attn),
                qkv: packed_of(&b.attn.qkv),
                out: packed_of(&b.attn.out),
                ln_mlp: norm_of(&b.ln_mlp),
                mlp_in: packed_of(&b.mlp_in),
                mlp_out: packed_of(&b.mlp_out),
            })
            .collect();
        Ok(GptWeights {
            d_model: gpt.d_model,
            num_heads: gpt.num_heads,
            context: gpt.context,
            relu: gpt.blocks.first().is_some_and(|b| b.relu),
            blocks,
            ln_final: norm_of(&gpt.ln_final),
        })
    }

    /// Token width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Most tokens a token attends to, itself included (the cache's capacity).
    pub fn context(&self) -> usize {
        self.context
    }

    /// An empty cache for `batch` rows, its buffers allocated for `context` tokens.
    pub fn cache(&self, batch: usize) -> GptRustCache {
        let per_layer = batch * self.d_model * self.context;
        GptRustCache {
            batch,
            capacity: self.context,
            fed: 0,
            keys: vec![vec![0.0; per_layer]; self.blocks.len()],
            values: vec![vec![0.0; per_layer]; self.blocks.len()],
        }
    }

    /// Working space for [`step`](Self::step) on `batch` rows.
    pub fn scratch(&self, batch: usize) -> GptScratch {
        let d = self.d_model;
        let hidden = self.blocks.first().map_or(0, |b| b.mlp_in.fan_out());
        GptScratch {
            batch,
            normed: vec![0.0; batch * d],
            qkv: vec![0.0; batch * 3 * d],
            attended: vec![0.0; batch * d],
            delta: vec![0.0; batch * d],
            hidden: vec![0.0; batch * hidden],
            scores: vec![0.0; self.context],
            isa: Isa::detect(),
        }
    }

    /// One new token per row, as [`Gpt::step`]: it attends to itself and the row's last
    /// `context − 1` tokens, and its keys and values enter the cache. Writes the hidden
    /// state (after the final layer norm) into `out`. Allocates nothing.
    ///
    /// # Shapes
    /// - `x`, `out`: `[batch, d_model]` row-major, `batch` being the cache's
    ///
    /// # Panics
    /// If the sizes do not fit (cache or scratch made for another batch size or model):
    /// a programming error.
    pub fn step(
        &self,
        x: &[f32],
        cache: &mut GptRustCache,
        scratch: &mut GptScratch,
        out: &mut [f32],
    ) {
        let batch = cache.batch;
        assert_eq!(
            scratch.batch, batch,
            "gpt step: scratch for another batch size"
        );
        assert_eq!(x.len(), batch * self.d_model, "gpt step: input size");
        assert_eq!(out.len(), batch * self.d_model, "gpt step: output size");
        self.run(x, cache, scratch, out, batch, false);
    }

    /// Feed `n` tokens of one sequence (`x`: `[n, d_model]`, oldest first) to a cache of
    /// batch 1, as `n` calls of [`step`](Self::step) would (token `i` attends to itself
    /// and what came before it), writing every token's output into `out` (`[n, d_model]`).
    /// The projections run on all `n` tokens together. Allocates nothing.
    ///
    /// # Panics
    /// If the cache is not of batch 1, the scratch has fewer than `n` rows
    /// ([`scratch`](Self::scratch)`(n)` or more), or `x` and `out` are not `n` tokens.
    pub fn prefill(
        &self,
        x: &[f32],
        cache: &mut GptRustCache,
        scratch: &mut GptScratch,
        out: &mut [f32],
    ) {
        let d = self.d_model;
        let n = x.len() / d;
        assert!(cache.batch == 1, "gpt prefill: a cache of one sequence");
        assert!(
            scratch.batch >= n,
            "gpt prefill: scratch for fewer than {n} tokens"
        );
        assert_eq!(x.len(), n * d, "gpt prefill: input size");
        assert_eq!(out.len(), n * d, "gpt prefill: output size");
        self.run(x, cache, scratch, out, n, true);
    }

    /// [`run_body`](Self::run_body) on the scratch's instruction set, once the cache is
    /// checked to be this model's.
    fn run(
        &self,
        x: &[f32],
        cache: &mut GptRustCache,
        scratch: &mut GptScratch,
        out: &mut [f32],
        rows: usize,
        one_sequence: bool,
    ) {
        assert!(
            cache.capacity == self.context && cache.keys.len() == self.blocks.len(),
            "gpt: the cache was made for another model"
        );
        match scratch.isa {
            Isa::Portable => self.run_body(x, cache, scratch, out, rows, one_sequence),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the scratch holds `Avx2Fma` only if the CPU has both (`Isa::detect`).
            Isa::Avx2Fma => unsafe {
                self.run_avx2_fma(x, cache, scratch, out, rows, one_sequence)
            },
        }
    }

    /// [`run_body`](Self::run_body) compiled with AVX2 and FMA, so that its own loops use
    /// them too.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2_fma(
        &self,
        x: &[f32],
        cache: &mut GptRustCache,
        scratch: &mut GptScratch,
        out: &mut [f32],
        rows: usize,
        one_sequence: bool,
    ) {
        self.run_body(x, cache, scratch, out, rows, one_sequence);
    }

    /// `rows` tokens: one per sequence of the cache (a step), or, with `one_sequence`,
    /// consecutive tokens of its only sequence (a prefill). Token by token within a layer,
    /// a token's keys and values enter the cache before it attends, so that a prefill's
    /// token sees exactly what a step would have shown it (also when the ring wraps: a
    /// slot is overwritten only after the tokens that read it).
    #[inline(always)]
    fn run_body(
        &self,
        x: &[f32],
        cache: &mut GptRustCache,
        s: &mut GptScratch,
        out: &mut [f32],
        rows: usize,
        one_sequence: bool,
    ) {
        let (d, heads, cap) = (self.d_model, self.num_heads, cache.capacity);
        let dh = d / heads;
        let isa = s.isa;
        let scale = 1.0 / (dh as f32).sqrt();
        let normed = &mut s.normed[..rows * d];
        let qkv = &mut s.qkv[..rows * 3 * d];
        let attended = &mut s.attended[..rows * d];
        let delta = &mut s.delta[..rows * d];
        let width = s.hidden.len() / s.batch;
        let hidden = &mut s.hidden[..rows * width];
        out.copy_from_slice(x);
        for (l, b) in self.blocks.iter().enumerate() {
            normed.copy_from_slice(out);
            normed
                .chunks_exact_mut(d)
                .for_each(|r| layer_norm(&b.ln_attn, r));
            b.qkv.apply(isa, normed, rows, qkv);
            let (keys, values) = (&mut cache.keys[l], &mut cache.values[l]);
            for r in 0..rows {
                // The sequence this token belongs to, and how many tokens it has seen.
                let (seq, fed) = if one_sequence {
                    (0, cache.fed + r)
                } else {
                    (r, cache.fed)
                };
                // The new token goes over the oldest when full; then every held token is
                // visible.
                let slot = fed % cap;
                let len = (fed + 1).min(cap);
                let row = &qkv[r * 3 * d..(r + 1) * 3 * d];
                for h in 0..heads {
                    let q = &row[h * dh..(h + 1) * dh];
                    let k = &row[d + h * dh..d + (h + 1) * dh];
                    let v = &row[2 * d + h * dh..2 * d + (h + 1) * dh];
                    let base = (seq * heads + h) * dh * cap;
                    let kt = &mut keys[base..base + dh * cap];
                    for (i, &ki) in k.iter().enumerate() {
                        kt[i * cap + slot] = ki;
                    }
                    let vs = &mut values[base..base + cap * dh];
                    vs[slot * dh..(slot + 1) * dh].copy_from_slice(v);
                    let sc = &mut s.scores[..len];
                    scores(isa, q, scale, kt, cap, sc);
                    let sum = softmax_unnormalised(sc);
                    let a = &mut attended[r * d + h * dh..r * d + (h + 1) * dh];
                    weighted_rows(isa, sc, &vs[..len * dh], a);
                    let inv = 1.0 / sum;
                    a.iter_mut().for_each(|v| *v *= inv);
                }
            }
            b.out.apply(isa, attended, rows, delta);
            out.iter_mut()
                .zip(delta.iter())
                .for_each(|(o, dl)| *o += dl);
            normed.copy_from_slice(out);
            normed
                .chunks_exact_mut(d)
                .for_each(|r| layer_norm(&b.ln_mlp, r));
            b.mlp_in.apply(isa, normed, rows, hidden);
            if self.relu {
                hidden.iter_mut().for_each(|v| *v = v.max(0.0));
            } else {
                hidden.iter_mut().for_each(|v| *v = gelu(*v));
            }
            b.mlp_out.apply(isa, hidden, rows, delta);
            out.iter_mut()
                .zip(delta.iter())
                .for_each(|(o, dl)| *o += dl);
        }
        cache.fed += if one_sequence { rows } else { 1 };
        out.chunks_exact_mut(d)
            .for_each(|r| layer_norm(&self.ln_final, r));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GptActivation, GptConfig};
    use super::*;
    use crate::inference::to_vec;
    use burn::module::Module;
    use burn::tensor::{Tensor, TensorData};
    use rand::{RngExt, SeedableRng};
    use rand_distr::StandardNormal;

    // Weights scaled up (`Scale`) make attention sharp, so that a mixed-up cache slot
    // cannot hide below the tolerance.
    use super::super::tests::Scale;

    /// Max |burn step − plain-Rust step| over `seq` random tokens for `batch` rows.
    fn max_step_diff(config: &GptConfig, batch: usize, seq: usize, seed: u64) -> f32 {
        max_step_diff_on(Isa::detect(), config, batch, seq, seed)
    }

    /// [`max_step_diff`] with the plain-Rust step on `isa`.
    fn max_step_diff_on(isa: Isa, config: &GptConfig, batch: usize, seq: usize, seed: u64) -> f32 {
        let device = crate::cpu();
        let d = config.d_model;
        let gpt = config
            .init_seeded(&device, seed)
            .unwrap()
            .map(&mut Scale(8.0));
        let weights = GptWeights::from_model(&gpt).unwrap();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed + 1);
        let xs: Vec<f32> = (0..seq * batch * d)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        let mut kv = gpt.init_cache(batch, &device);
        let mut cache = weights.cache(batch);
        let mut scratch = weights.scratch(batch);
        scratch.set_isa(isa);
        let mut y = vec![0.0; batch * d];
        let mut worst = 0.0f32;
        for t in 0..seq {
            let xt = &xs[t * batch * d..(t + 1) * batch * d];
            let want = to_vec(gpt.step(
                Tensor::from_data(TensorData::new(xt.to_vec(), [batch, d]), &device),
                &mut kv,
            ));
            weights.step(xt, &mut cache, &mut scratch, &mut y);
            let diff = want
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff.is_finite(), "step {t}: {diff}");
            worst = worst.max(diff);
        }
        assert_eq!(cache.len(), kv.len());
        worst
    }

    #[test]
    fn gpt_rust_step_matches_burn_step() {
        // Context 24 < 64 tokens: the ring buffer wraps around more than twice.
        for (batch, activation) in [
            (1, GptActivation::Gelu),
            (3, GptActivation::Gelu),
            (3, GptActivation::Relu),
        ] {
            let config = GptConfig::new(32, 3, 4, 24).with_activation(activation);
            let diff = max_step_diff(&config, batch, 64, 80 + batch as u64);
            eprintln!("GPT batch {batch} {activation:?}: max |burn − rust| = {diff:e}");
            assert!(diff < 1e-4, "batch {batch}: {diff}");
        }
        // A context longer than the sequence: the cache never wraps.
        let diff = max_step_diff(&GptConfig::new(16, 2, 2, 100), 2, 64, 90);
        assert!(diff < 1e-4, "{diff}");
        // The path of CPUs without AVX2 + FMA (run here on any CPU); d_head 6 also takes
        // the attention's non-multiple-of-8 loops.
        for (config, batch) in [
            (GptConfig::new(32, 2, 4, 24), 5),
            (GptConfig::new(24, 2, 4, 40), 2),
        ] {
            let diff = max_step_diff_on(Isa::Portable, &config, batch, 64, 91);
            assert!(diff < 1e-4, "portable, batch {batch}: {diff}");
        }
        let diff = max_step_diff(&GptConfig::new(24, 2, 4, 40), 2, 64, 92);
        assert!(diff < 1e-4, "d_head 6: {diff}");
    }

    /// Feeding tokens in blocks (prefill) gives every token the output stepping gives
    /// it, and leaves the cache as stepping does: blocks that fill, wrap around and
    /// follow steps, on both instruction paths.
    #[test]
    fn gpt_prefill_equals_stepping_token_by_token() {
        let device = crate::cpu();
        let (d, cap) = (32, 12);
        let gpt = GptConfig::new(d, 2, 4, cap)
            .init_seeded(&device, 95)
            .unwrap()
            .map(&mut Scale(8.0));
        let weights = GptWeights::from_model(&gpt).unwrap();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(96);
        let xs: Vec<f32> = (0..40 * d).map(|_| rng.sample(StandardNormal)).collect();
        for isa in [Isa::detect(), Isa::Portable] {
            let (mut stepped, mut filled) = (weights.cache(1), weights.cache(1));
            let mut one = weights.scratch(1);
            let mut many = weights.scratch(cap);
            one.set_isa(isa);
            many.set_isa(isa);
            let mut want = vec![0.0; 40 * d];
            for t in 0..40 {
                let (x, y) = (&xs[t * d..(t + 1) * d], &mut want[t * d..(t + 1) * d]);
                weights.step(x, &mut stepped, &mut one, y);
            }
            // Blocks of 5, 1, 7 (the cache full at 12), 12 (wrapping), then steps.
            let mut got = vec![0.0; 40 * d];
            let mut t = 0;
            for n in [5, 1, 7, 12, 1, 1, 10] {
                let (x, y) = (&xs[t * d..(t + n) * d], &mut got[t * d..(t + n) * d]);
                weights.prefill(x, &mut filled, &mut many, y);
                t += n;
            }
            let (x, y) = (&xs[t * d..(t + 3) * d], &mut got[t * d..(t + 3) * d]);
            weights.prefill(x, &mut filled, &mut many, y);
            t += 3;
            assert_eq!(t, 40);
            let diff = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-5, "{isa:?}: {diff}");
            assert_eq!(filled.len(), stepped.len());
        }
    }

    #[test]
    fn gpt_rust_step_refuses_cross_attention_and_resets() {
        let device = crate::cpu();
        let gpt = GptConfig::new(16, 1, 2, 8)
            .with_cross_attention(true)
            .init_seeded(&device, 0)
            .unwrap();
        assert_eq!(
            GptWeights::from_model(&gpt).unwrap_err(),
            GptWeightsError::CrossAttention
        );
        let gpt = GptConfig::new(16, 1, 2, 8).init_seeded(&device, 0).unwrap();
        let weights = GptWeights::from_model(&gpt).unwrap();
        let mut cache = weights.cache(1);
        let mut scratch = weights.scratch(1);
        let (mut first, mut again) = (vec![0.0; 16], vec![0.0; 16]);
        weights.step(&[0.5; 16], &mut cache, &mut scratch, &mut first);
        weights.step(&[-0.3; 16], &mut cache, &mut scratch, &mut again);
        assert_eq!(cache.len(), 2);
        cache.reset();
        assert!(cache.is_empty());
        weights.step(&[0.5; 16], &mut cache, &mut scratch, &mut again);
        assert_eq!(first, again);
        assert_eq!(cache.num_values(), 2 * 16 * 8);
    }
}
