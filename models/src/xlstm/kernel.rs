//! Plain-Rust, allocation-free single-token inference for an [`XLstm`]: the same function
//! as [`XLstm::step`] (to f32 rounding, tested to 1e-4), without a tensor framework's
//! per-operation dispatch, which dominates a step at the widths an agent uses (a width-128
//! step is a few hundred small operations through burn).
//!
//! [`XLstmWeights::from_model`] copies the parameters out, every projection packed in
//! panels of 8 output columns read contiguously by a register-blocked product (AVX2 + FMA
//! chosen at run time, portable Rust otherwise; the same code as the GPT kernel's);
//! [`XLstmWeights::state`] preallocates
//! the recurrent state of `batch` sequences and [`XLstmWeights::scratch`] the working
//! space, so [`XLstmWeights::step`] allocates nothing.
//!
//! ```
//! use agentry_models::xlstm::{XLstmConfig, XLstmWeights};
//! let model = XLstmConfig::new(32, 2, 4).init_seeded(&agentry_models::cpu(), 0);
//! let weights = XLstmWeights::from_model(&model);
//! let (batch, d) = (2, 32);
//! let mut state = weights.state(batch);
//! let mut scratch = weights.scratch(batch);
//! let mut y = vec![0.0; batch * d];
//! for t in 0..5 {
//!     let x = vec![t as f32 * 0.1; batch * d];
//!     weights.step(&x, &mut state, &mut scratch, &mut y);
//! }
//! assert!(y.iter().all(|v| v.is_finite()));
//! ```

use super::mlstm::MLstmBlock;
use super::parts::{CausalConv, Headwise, M_EMPTY, NORM_EPS};
use super::slstm::SLstmBlock;
use super::{XLstm, XLstmBlock};
use crate::inference::{Norm, layer_norm, norm_of, tanh, to_vec};
use crate::step_math::{Isa, Packed, exp, gelu, log_sigmoid, packed_of, scale_norm, sigmoid, silu};

/// Added to the mLSTM normaliser (as in [`super::mlstm_step`]).
const MLSTM_EPS: f32 = 1e-6;

/// A causal depthwise convolution: `weight` `[kernel, channels]`, the last row for the
/// current input.
#[derive(Clone, Debug)]
struct Conv {
    kernel: usize,
    channels: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Conv {
    fn of(conv: &CausalConv) -> Self {
        let [kernel, channels] = conv.weight.dims();
        Conv {
            kernel,
            channels,
            weight: to_vec(conv.weight.val().inner()),
            bias: to_vec(conv.bias.val().inner()),
        }
    }

    /// Values of the window state per row (the last `kernel − 1` inputs).
    fn window(&self) -> usize {
        (self.kernel - 1) * self.channels
    }

    /// `y = SiLU(conv(x))` for one row; shifts `past` (oldest input first) by one.
    #[inline(always)]
    fn step_silu(&self, past: &mut [f32], x: &[f32], y: &mut [f32]) {
        let c = self.channels;
        y.copy_from_slice(&self.bias);
        for (j, p) in past.chunks_exact(c).enumerate() {
            for ((yi, &w), &pi) in y.iter_mut().zip(&self.weight[j * c..(j + 1) * c]).zip(p) {
                *yi += w * pi;
            }
        }
        let last = &self.weight[(self.kernel - 1) * c..];
        for ((yi, &w), &xi) in y.iter_mut().zip(last).zip(x) {
            *yi += w * xi;
        }
        y.iter_mut().for_each(|v| *v = silu(*v));
        if !past.is_empty() {
            let n = past.len();
            past.copy_within(c.., 0);
            past[n - c..].copy_from_slice(x);
        }
    }
}

/// A burn [`Headwise`] (block-diagonal, no bias) packed for the step.
fn packed_headwise(h: &Headwise) -> Packed {
    let [heads, d_in, d_out] = h.weight.dims();
    Packed::block_diag(heads, d_in, d_out, &to_vec(h.weight.val().inner()), None)
}

#[derive(Clone, Debug)]
struct MLstmWeights {
    norm: Norm,
    /// `d → 2·inner`: x, then z.
    up: Packed,
    conv: Option<Conv>,
    q: Packed,
    k: Packed,
    v: Packed,
    /// `3·inner → 2·heads`: input gates, then forget gates.
    gates: Packed,
    head_norm: Vec<f32>,
    skip: Vec<f32>,
    down: Packed,
    inner: usize,
    heads: usize,
}

#[derive(Clone, Debug)]
struct SLstmWeights {
    norm: Norm,
    conv: Option<Conv>,
    /// Per head `head_dim → 2·head_dim`: input and forget gates from the conv path.
    gates_if: Packed,
    /// Per head `head_dim → 2·head_dim`: cell input and output gates from the normed input.
    gates_zo: Packed,
    /// Per head `head_dim → 4·head_dim` (`[i, f, z, o]`) from the previous h, with the
    /// gate biases.
    recurrent: Packed,
    group_norm: Vec<f32>,
    ffn_norm: Norm,
    ffn_up: Packed,
    ffn_down: Packed,
    ffn_inner: usize,
    heads: usize,
}

#[derive(Clone, Debug)]
enum BlockWeights {
    MLstm(MLstmWeights),
    SLstm(SLstmWeights),
}

/// The parameters of an [`XLstm`] as plain vectors; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct XLstmWeights {
    d_model: usize,
    blocks: Vec<BlockWeights>,
    norm: Norm,
}

/// The recurrent state of `batch` sequences for [`XLstmWeights::step`], preallocated:
/// per mLSTM block C, n, m per head, per sLSTM block h, c, n, m per unit, and each
/// convolution's last inputs.
#[derive(Clone, Debug)]
pub struct XLstmRustState {
    batch: usize,
    blocks: Vec<BlockState>,
}

#[derive(Clone, Debug)]
enum BlockState {
    MLstm {
        /// `[batch, heads, head_dim, head_dim]` (key, value).
        c: Vec<f32>,
        /// `[batch, inner]`.
        n: Vec<f32>,
        /// `[batch, heads]`.
        m: Vec<f32>,
        /// `[batch, kernel − 1, inner]`.
        conv: Vec<f32>,
    },
    SLstm {
        /// Each `[batch, d_model]`.
        h: Vec<f32>,
        c: Vec<f32>,
        n: Vec<f32>,
        m: Vec<f32>,
        /// `[batch, kernel − 1, d_model]`.
        conv: Vec<f32>,
    },
}

impl BlockState {
    /// Empty the memory of `row` (of `batch`).
    fn clear_row(&mut self, row: usize, batch: usize) {
        let clear = |v: &mut Vec<f32>, value: f32| {
            let per = v.len() / batch;
            v[row * per..(row + 1) * per].fill(value);
        };
        match self {
            BlockState::MLstm { c, n, m, conv } => {
                clear(c, 0.0);
                clear(n, 0.0);
                clear(m, M_EMPTY);
                clear(conv, 0.0);
            }
            BlockState::SLstm { h, c, n, m, conv } => {
                clear(h, 0.0);
                clear(c, 0.0);
                clear(n, 0.0);
                clear(m, M_EMPTY);
                clear(conv, 0.0);
            }
        }
    }

    fn num_values(&self) -> usize {
        match self {
            BlockState::MLstm { c, n, m, conv } => c.len() + n.len() + m.len() + conv.len(),
            BlockState::SLstm { h, c, n, m, conv } => {
                h.len() + c.len() + n.len() + m.len() + conv.len()
            }
        }
    }
}

impl XLstmRustState {
    /// Number of sequences.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Values the state holds (× 4 bytes): fixed, whatever the number of tokens seen.
    pub fn num_values(&self) -> usize {
        self.blocks.iter().map(BlockState::num_values).sum()
    }

    /// Forget the past of `row` (e.g. its episode ended); the other rows keep theirs.
    ///
    /// # Panics
    /// If `row` is not below [`batch`](Self::batch).
    pub fn reset_row(&mut self, row: usize) {
        assert!(
            row < self.batch,
            "xLSTM reset_row: row {row} of {}",
            self.batch
        );
        let batch = self.batch;
        self.blocks.iter_mut().for_each(|b| b.clear_row(row, batch));
    }

    /// Forget every row's past.
    pub fn reset(&mut self) {
        for row in 0..self.batch {
            self.reset_row(row);
        }
    }
}

/// Working space for [`XLstmWeights::step`] with a given batch size.
#[derive(Clone, Debug)]
pub struct XLstmScratch {
    batch: usize,
    normed: Vec<f32>,
    up: Vec<f32>,
    conv: Vec<f32>,
    qkv: Vec<f32>,
    gates: Vec<f32>,
    mixed: Vec<f32>,
    delta: Vec<f32>,
    rec: Vec<f32>,
    num: Vec<f32>,
    isa: Isa,
}

impl XLstmScratch {
    /// Run the steps with this scratch on `isa` instead of the best the CPU has (tests
    /// compare the portable path with the SIMD one).
    #[cfg(test)]
    pub(crate) fn set_isa(&mut self, isa: Isa) {
        self.isa = isa;
    }
}

/// The mLSTM memory's step for one head: `C ← f·C + i·k vᵀ` and `num = Cᵀ q` (`C`
/// `[d, d]`, key rows). `num` is overwritten.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn memory_update(
    isa: Isa,
    c: &mut [f32],
    k: &[f32],
    v: &[f32],
    q: &[f32],
    forget: f32,
    input: f32,
    num: &mut [f32],
) {
    let dh = v.len();
    assert!(c.len() == dh * dh && k.len() == dh && q.len() == dh && num.len() == dh);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2Fma` is only made after checking the CPU; sizes checked above.
        Isa::Avx2Fma if dh.is_multiple_of(8) => unsafe {
            memory_update_avx2_fma(c, k, v, q, forget, input, num)
        },
        _ => {
            num.fill(0.0);
            for ((crow, &ki), &qi) in c.chunks_exact_mut(dh).zip(k).zip(q) {
                let ka = input * ki;
                for ((cj, &vj), nj) in crow.iter_mut().zip(v).zip(num.iter_mut()) {
                    *cj = forget * *cj + ka * vj;
                    *nj += qi * *cj;
                }
            }
        }
    }
}

/// [`memory_update`] with up to 32 columns at a time, their `v` and `num` in registers
/// across all key rows (the memory itself is read and written once).
///
/// # Safety
/// AVX2 and FMA; `v.len()` a multiple of 8; the sizes [`memory_update`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn memory_update_avx2_fma(
    c: &mut [f32],
    k: &[f32],
    v: &[f32],
    q: &[f32],
    forget: f32,
    input: f32,
    num: &mut [f32],
) {
    let dh = v.len();
    let mut j0 = 0;
    // SAFETY (all calls): columns j0..j0 + 8·N exist (the loop bounds), the rest as ours.
    unsafe {
        while j0 + 32 <= dh {
            memory_columns::<4>(c, k, v, q, forget, input, num, j0);
            j0 += 32;
        }
        match (dh - j0) / 8 {
            3 => memory_columns::<3>(c, k, v, q, forget, input, num, j0),
            2 => memory_columns::<2>(c, k, v, q, forget, input, num, j0),
            1 => memory_columns::<1>(c, k, v, q, forget, input, num, j0),
            _ => {}
        }
    }
}

/// Columns `j0..j0 + 8·N` of [`memory_update_avx2_fma`]. `N` is a constant so that the
/// column loop unrolls and the sums stay in registers (a loop over a run-time count kept
/// them on the stack, a store and a reload per row).
///
/// # Safety
/// As [`memory_update_avx2_fma`], and `j0 + 8·N ≤ dh`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn memory_columns<const N: usize>(
    c: &mut [f32],
    k: &[f32],
    v: &[f32],
    q: &[f32],
    forget: f32,
    input: f32,
    num: &mut [f32],
    j0: usize,
) {
    use std::arch::x86_64::*;
    let dh = v.len();
    // SAFETY: loads and stores stay at rows < dh and columns < j0 + 8·N ≤ dh.
    unsafe {
        let f = _mm256_set1_ps(forget);
        let mut vr = [_mm256_setzero_ps(); N];
        let mut acc = [_mm256_setzero_ps(); N];
        for (u, vr) in vr.iter_mut().enumerate() {
            *vr = _mm256_loadu_ps(v.as_ptr().add(j0 + 8 * u));
        }
        for a in 0..dh {
            let ka = _mm256_set1_ps(input * *k.get_unchecked(a));
            let qa = _mm256_set1_ps(*q.get_unchecked(a));
            let row = c.as_mut_ptr().add(a * dh + j0);
            for u in 0..N {
                let cv = _mm256_loadu_ps(row.add(8 * u));
                let cv = _mm256_fmadd_ps(ka, vr[u], _mm256_mul_ps(f, cv));
                _mm256_storeu_ps(row.add(8 * u), cv);
                acc[u] = _mm256_fmadd_ps(qa, cv, acc[u]);
            }
        }
        for (u, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(num.as_mut_ptr().add(j0 + 8 * u), *acc);
        }
    }
}

impl MLstmWeights {
    fn of(b: &MLstmBlock) -> Self {
        let heads = b.cell.num_heads;
        MLstmWeights {
            norm: norm_of(&b.norm),
            up: packed_of(&b.up),
            conv: b.conv.as_ref().map(Conv::of),
            q: packed_headwise(&b.q),
            k: packed_headwise(&b.k),
            v: packed_headwise(&b.v),
            gates: packed_of(&b.cell.gates),
            head_norm: to_vec(b.cell.norm.val().inner()),
            skip: to_vec(b.skip.val().inner()),
            down: packed_of(&b.down),
            inner: b.inner,
            heads,
        }
    }

    fn head_dim(&self) -> usize {
        self.inner / self.heads
    }

    /// One token for every row; `x` (`[batch, d]`) is the residual stream, updated in place.
    #[inline(always)]
    fn step(&self, x: &mut [f32], state: &mut BlockState, s: &mut XLstmScratch) {
        let BlockState::MLstm { c, n, m, conv } = state else {
            unreachable!("block kinds are checked by the caller")
        };
        let (batch, d, inner, heads) = (s.batch, self.norm.gamma.len(), self.inner, self.heads);
        let isa = s.isa;
        let dh = self.head_dim();
        let normed = &mut s.normed[..batch * d];
        normed.copy_from_slice(x);
        normed
            .chunks_exact_mut(d)
            .for_each(|r| layer_norm(&self.norm, r));
        let up = &mut s.up[..batch * 2 * inner];
        self.up.apply(isa, normed, batch, up);
        let qkv = &mut s.qkv[..batch * 3 * inner];
        let xconv = &mut s.conv[..batch * inner];
        let window = self.conv.as_ref().map_or(0, Conv::window);
        for r in 0..batch {
            let x_cell = &up[r * 2 * inner..r * 2 * inner + inner];
            let xc = &mut xconv[r * inner..(r + 1) * inner];
            match &self.conv {
                Some(cv) => cv.step_silu(&mut conv[r * window..(r + 1) * window], x_cell, xc),
                None => xc.copy_from_slice(x_cell),
            }
        }
        // q and k from the conv path, v from the cell input; rows of qkv are [q, k, v].
        self.q
            .apply_strided(isa, xconv, inner, batch, qkv, 3 * inner);
        self.k
            .apply_strided(isa, xconv, inner, batch, &mut qkv[inner..], 3 * inner);
        self.v
            .apply_strided(isa, up, 2 * inner, batch, &mut qkv[2 * inner..], 3 * inner);
        let gates = &mut s.gates[..batch * 2 * heads];
        self.gates.apply(isa, qkv, batch, gates);
        let scale = 1.0 / (dh as f32).sqrt();
        let hbuf = &mut s.mixed[..batch * inner];
        let num = &mut s.num[..dh];
        for r in 0..batch {
            let row = &qkv[r * 3 * inner..(r + 1) * 3 * inner];
            let g = &gates[r * 2 * heads..(r + 1) * 2 * heads];
            for h in 0..heads {
                let (ig, fg) = (g[h], g[heads + h]);
                let mh = &mut m[r * heads + h];
                let decayed = log_sigmoid(fg) + *mh;
                let m_new = decayed.max(ig);
                let forget = (decayed - m_new).exp();
                let input = (ig - m_new).exp() * scale;
                *mh = m_new;
                let q = &row[h * dh..(h + 1) * dh];
                let k = &row[inner + h * dh..inner + (h + 1) * dh];
                let v = &row[2 * inner + h * dh..2 * inner + (h + 1) * dh];
                let nh = &mut n[r * inner + h * dh..r * inner + (h + 1) * dh];
                let mut qn = 0.0;
                for ((ni, &ki), &qi) in nh.iter_mut().zip(k).zip(q) {
                    *ni = forget * *ni + input * ki;
                    qn += qi * *ni;
                }
                let ch = &mut c[(r * heads + h) * dh * dh..(r * heads + h + 1) * dh * dh];
                memory_update(isa, ch, k, v, q, forget, input, num);
                let denom = qn.abs().max((-m_new).exp()) + MLSTM_EPS;
                let out = &mut hbuf[r * inner + h * dh..r * inner + (h + 1) * dh];
                for (o, &nj) in out.iter_mut().zip(num.iter()) {
                    *o = nj / denom;
                }
                scale_norm(out, &self.head_norm[h * dh..(h + 1) * dh], NORM_EPS as f32);
            }
            // (h + skip ⊙ conv path) ⊙ SiLU(z)
            let out = &mut hbuf[r * inner..(r + 1) * inner];
            let xc = &xconv[r * inner..(r + 1) * inner];
            let z = &up[r * 2 * inner + inner..(r + 1) * 2 * inner];
            for (((o, &xi), &si), &zi) in out.iter_mut().zip(xc).zip(&self.skip).zip(z) {
                *o = (*o + xi * si) * silu(zi);
            }
        }
        let delta = &mut s.delta[..batch * d];
        self.down.apply(isa, hbuf, batch, delta);
        x.iter_mut().zip(delta.iter()).for_each(|(a, b)| *a += b);
    }
}

impl SLstmWeights {
    fn of(b: &SLstmBlock) -> Self {
        SLstmWeights {
            norm: norm_of(&b.norm),
            conv: b.conv.as_ref().map(Conv::of),
            gates_if: packed_headwise(&b.gates_if),
            gates_zo: packed_headwise(&b.gates_zo),
            recurrent: {
                let [heads, dh, four_dh] = b.cell.recurrent.dims();
                let bias = to_vec(b.cell.bias.val().inner());
                let weight = to_vec(b.cell.recurrent.val().inner());
                Packed::block_diag(heads, dh, four_dh, &weight, Some(&bias))
            },
            group_norm: to_vec(b.group_norm.val().inner()),
            ffn_norm: norm_of(&b.ffn_norm),
            ffn_up: packed_of(&b.ffn.up),
            ffn_down: packed_of(&b.ffn.down),
            ffn_inner: b.ffn.inner,
            heads: b.num_heads,
        }
    }

    /// One token for every row; `x` (`[batch, d]`) is the residual stream, updated in place.
    #[inline(always)]
    fn step(&self, x: &mut [f32], state: &mut BlockState, s: &mut XLstmScratch) {
        let BlockState::SLstm { h, c, n, m, conv } = state else {
            unreachable!("block kinds are checked by the caller")
        };
        let (batch, d, heads) = (s.batch, self.norm.gamma.len(), self.heads);
        let isa = s.isa;
        let dh = d / heads;
        let window = self.conv.as_ref().map_or(0, Conv::window);
        let normed = &mut s.normed[..batch * d];
        normed.copy_from_slice(x);
        normed
            .chunks_exact_mut(d)
            .for_each(|r| layer_norm(&self.norm, r));
        let cp = &mut s.conv[..batch * d];
        for r in 0..batch {
            let (nr, cr) = (&normed[r * d..(r + 1) * d], &mut cp[r * d..(r + 1) * d]);
            match &self.conv {
                Some(cv) => cv.step_silu(&mut conv[r * window..(r + 1) * window], nr, cr),
                None => cr.copy_from_slice(nr),
            }
        }
        // Per row and head: wif [i, f], wzo [z, o] from the input, rec [i, f, z, o] (with
        // the biases) from the previous h.
        let (wif, wzo) = s.qkv[..batch * 4 * d].split_at_mut(batch * 2 * d);
        self.gates_if.apply(isa, cp, batch, wif);
        self.gates_zo.apply(isa, normed, batch, wzo);
        let rec = &mut s.rec[..batch * 4 * d];
        self.recurrent.apply(isa, h, batch, rec);
        for r in 0..batch {
            let y = &mut s.mixed[..d];
            for hd in 0..heads {
                let units = r * d + hd * dh..r * d + (hd + 1) * dh;
                let rec = &rec[(r * heads + hd) * 4 * dh..(r * heads + hd + 1) * 4 * dh];
                let wif = &wif[(r * heads + hd) * 2 * dh..(r * heads + hd + 1) * 2 * dh];
                let wzo = &wzo[(r * heads + hd) * 2 * dh..(r * heads + hd + 1) * 2 * dh];
                let (ri, rest) = rec.split_at(dh);
                let (rf, rest) = rest.split_at(dh);
                let (rz, ro) = rest.split_at(dh);
                let (wi, wf) = wif.split_at(dh);
                let (wz, wo) = wzo.split_at(dh);
                // One unit per lane: no branches or library calls, so this vectorises.
                for (((((((ri, wi), (rf, wf)), (rz, wz)), (ro, wo)), cu), nu), (mu, hu)) in ri
                    .iter()
                    .zip(wi)
                    .zip(rf.iter().zip(wf))
                    .zip(rz.iter().zip(wz))
                    .zip(ro.iter().zip(wo))
                    .zip(&mut c[units.clone()])
                    .zip(&mut n[units.clone()])
                    .zip(m[units.clone()].iter_mut().zip(&mut h[units.clone()]))
                {
                    let (ig, fg, zg, og) = (ri + wi, rf + wf, rz + wz, ro + wo);
                    let decayed = log_sigmoid(fg) + *mu;
                    let m_new = decayed.max(ig);
                    // Both exponents ≤ 0: the fast exp's clamp at −87 only turns a
                    // vanishing gate (e.g. the first token's forget) into ~1e-38.
                    let i = exp(ig - m_new);
                    let f = exp(decayed - m_new);
                    *cu = f * *cu + i * tanh(zg);
                    *nu = f * *nu + i;
                    *mu = m_new;
                    *hu = sigmoid(og) * *cu / *nu;
                }
                let yh = &mut y[hd * dh..(hd + 1) * dh];
                yh.copy_from_slice(&h[units]);
                scale_norm(
                    yh,
                    &self.group_norm[hd * dh..(hd + 1) * dh],
                    NORM_EPS as f32,
                );
            }
            x[r * d..(r + 1) * d]
                .iter_mut()
                .zip(y.iter())
                .for_each(|(a, b)| *a += b);
        }
        // Gated feed-forward on all rows at once.
        let inner = self.ffn_inner;
        let normed = &mut s.normed[..batch * d];
        normed.copy_from_slice(x);
        normed
            .chunks_exact_mut(d)
            .for_each(|r| layer_norm(&self.ffn_norm, r));
        let up = &mut s.up[..batch * 2 * inner];
        self.ffn_up.apply(isa, normed, batch, up);
        let mid = &mut s.mixed[..batch * inner];
        for r in 0..batch {
            let (gate, value) = up[r * 2 * inner..(r + 1) * 2 * inner].split_at(inner);
            for ((o, &g), &v) in mid[r * inner..(r + 1) * inner]
                .iter_mut()
                .zip(gate)
                .zip(value)
            {
                *o = gelu(g) * v;
            }
        }
        let delta = &mut s.delta[..batch * d];
        self.ffn_down.apply(isa, mid, batch, delta);
        x.iter_mut().zip(delta.iter()).for_each(|(a, b)| *a += b);
    }
}

impl XLstmWeights {
    /// Copy the parameters out of `model` (on any device, autodiff or not).
    pub fn from_model(model: &XLstm) -> Self {
        let blocks = model
            .blocks()
            .iter()
            .map(|b| match b {
                XLstmBlock::MLstm(b) => BlockWeights::MLstm(MLstmWeights::of(b)),
                XLstmBlock::SLstm(b) => BlockWeights::SLstm(SLstmWeights::of(b)),
            })
            .collect();
        XLstmWeights {
            d_model: model.d_model(),
            blocks,
            norm: norm_of(&model.norm),
        }
    }

    /// Width of the input and output.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// An empty state (no tokens seen) for `batch` sequences.
    pub fn state(&self, batch: usize) -> XLstmRustState {
        let d = self.d_model;
        let blocks = self
            .blocks
            .iter()
            .map(|b| match b {
                BlockWeights::MLstm(w) => {
                    let dh = w.head_dim();
                    BlockState::MLstm {
                        c: vec![0.0; batch * w.heads * dh * dh],
                        n: vec![0.0; batch * w.inner],
                        m: vec![M_EMPTY; batch * w.heads],
                        conv: vec![0.0; batch * w.conv.as_ref().map_or(0, Conv::window)],
                    }
                }
                BlockWeights::SLstm(w) => BlockState::SLstm {
                    h: vec![0.0; batch * d],
                    c: vec![0.0; batch * d],
                    n: vec![0.0; batch * d],
                    m: vec![M_EMPTY; batch * d],
                    conv: vec![0.0; batch * w.conv.as_ref().map_or(0, Conv::window)],
                },
            })
            .collect();
        XLstmRustState { batch, blocks }
    }

    /// Working space for [`step`](Self::step) on `batch` rows.
    pub fn scratch(&self, batch: usize) -> XLstmScratch {
        let d = self.d_model;
        let (mut inner, mut ffn, mut heads, mut dh) = (0, 0, 0, 0);
        for b in &self.blocks {
            match b {
                BlockWeights::MLstm(w) => {
                    inner = inner.max(w.inner);
                    heads = heads.max(w.heads);
                    dh = dh.max(w.head_dim());
                }
                BlockWeights::SLstm(w) => ffn = ffn.max(w.ffn_inner),
            }
        }
        let buf = |n: usize| vec![0.0; n];
        XLstmScratch {
            batch,
            normed: buf(batch * d),
            up: buf(batch * 2 * inner.max(ffn)),
            conv: buf(batch * inner.max(d)),
            qkv: buf(batch * (3 * inner).max(4 * d)),
            gates: buf(batch * 2 * heads),
            mixed: buf(batch * inner.max(ffn).max(d)),
            delta: buf(batch * d),
            rec: buf(batch * 4 * d),
            num: buf(dh),
            isa: Isa::detect(),
        }
    }

    /// One token per sequence, as [`XLstm::step`]; updates `state` and writes the output
    /// (after the final layer norm) into `out`. Allocates nothing.
    ///
    /// # Shapes
    /// - `x`, `out`: `[batch, d_model]` row-major, `batch` being the state's
    ///
    /// # Panics
    /// If the sizes do not fit (the state or scratch made for another batch size or
    /// model): a programming error.
    pub fn step(
        &self,
        x: &[f32],
        state: &mut XLstmRustState,
        scratch: &mut XLstmScratch,
        out: &mut [f32],
    ) {
        let batch = state.batch;
        assert_eq!(
            scratch.batch, batch,
            "xLSTM step: scratch for another batch size"
        );
        assert_eq!(x.len(), batch * self.d_model, "xLSTM step: input size");
        assert_eq!(out.len(), batch * self.d_model, "xLSTM step: output size");
        assert_eq!(state.blocks.len(), self.blocks.len(), "xLSTM step: state");
        match scratch.isa {
            Isa::Portable => self.step_body(x, state, scratch, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the scratch holds `Avx2Fma` only if the CPU has both (`Isa::detect`).
            Isa::Avx2Fma => unsafe { self.step_avx2_fma(x, state, scratch, out) },
        }
    }

    /// [`step_body`](Self::step_body) compiled with AVX2 and FMA, so that its own loops
    /// use them too.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn step_avx2_fma(
        &self,
        x: &[f32],
        state: &mut XLstmRustState,
        scratch: &mut XLstmScratch,
        out: &mut [f32],
    ) {
        self.step_body(x, state, scratch, out);
    }

    #[inline(always)]
    fn step_body(
        &self,
        x: &[f32],
        state: &mut XLstmRustState,
        scratch: &mut XLstmScratch,
        out: &mut [f32],
    ) {
        out.copy_from_slice(x);
        for (w, s) in self.blocks.iter().zip(state.blocks.iter_mut()) {
            match (w, &*s) {
                (BlockWeights::MLstm(w), BlockState::MLstm { .. }) => w.step(out, s, scratch),
                (BlockWeights::SLstm(w), BlockState::SLstm { .. }) => w.step(out, s, scratch),
                _ => panic!("xLSTM step: the state's block kinds do not match the model's"),
            }
        }
        out.chunks_exact_mut(self.d_model)
            .for_each(|r| layer_norm(&self.norm, r));
    }
}

#[cfg(test)]
mod tests {
    use super::super::XLstmConfig;
    use super::super::testing::{hot_gates, random};
    use super::*;
    use burn::tensor::Tensor;

    /// Max |burn step − plain-Rust step| over `seq` random tokens for `batch` rows.
    fn max_step_diff(config: &XLstmConfig, batch: usize, seq: usize, seed: u64) -> f32 {
        max_step_diff_on(Isa::detect(), config, batch, seq, seed)
    }

    /// [`max_step_diff`] with the plain-Rust step on `isa`.
    fn max_step_diff_on(
        isa: Isa,
        config: &XLstmConfig,
        batch: usize,
        seq: usize,
        seed: u64,
    ) -> f32 {
        let device = crate::cpu();
        let d = config.d_model;
        let model = hot_gates(config.init_seeded(&device, seed), seed + 1);
        let weights = XLstmWeights::from_model(&model);
        let x = random([seq, batch, d], 1.0, seed + 2, &device);
        let xs = to_vec(x.clone());
        let mut state = model.init_state(batch, &device);
        let mut rust_state = weights.state(batch);
        let mut scratch = weights.scratch(batch);
        scratch.set_isa(isa);
        let mut y = vec![0.0; batch * d];
        let mut worst = 0.0f32;
        for t in 0..seq {
            let xt: Tensor<2> = x.clone().narrow(0, t, 1).reshape([batch, d]);
            let want = to_vec(model.step(xt, &mut state));
            weights.step(
                &xs[t * batch * d..(t + 1) * batch * d],
                &mut rust_state,
                &mut scratch,
                &mut y,
            );
            let diff = want
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff.is_finite(), "step {t}: {diff}");
            worst = worst.max(diff);
        }
        worst
    }

    #[test]
    fn xlstm_rust_step_matches_burn_step_mlstm_only() {
        let config = XLstmConfig::new(32, 2, 4).with_slstm_at(vec![]);
        for batch in [1, 3] {
            let diff = max_step_diff(&config, batch, 64, 40 + batch as u64);
            eprintln!("mLSTM only, batch {batch}: max |burn − rust| = {diff:e}");
            assert!(diff < 1e-4, "batch {batch}: {diff}");
        }
    }

    #[test]
    fn xlstm_rust_step_matches_burn_step_with_slstm() {
        let config = XLstmConfig::new(32, 3, 4).with_slstm_at(vec![1]);
        for batch in [1, 3] {
            let diff = max_step_diff(&config, batch, 64, 50 + batch as u64);
            eprintln!("with sLSTM, batch {batch}: max |burn − rust| = {diff:e}");
            assert!(diff < 1e-4, "batch {batch}: {diff}");
        }
    }

    #[test]
    fn xlstm_rust_portable_step_matches_burn_step() {
        // The path of CPUs without AVX2 + FMA (run here on any CPU).
        let config = XLstmConfig::new(32, 3, 4).with_slstm_at(vec![1]);
        for batch in [1, 5] {
            let diff = max_step_diff_on(Isa::Portable, &config, batch, 64, 55 + batch as u64);
            eprintln!("portable, batch {batch}: max |burn − rust| = {diff:e}");
            assert!(diff < 1e-4, "batch {batch}: {diff}");
        }
    }

    #[test]
    fn xlstm_rust_step_matches_burn_step_without_conv_or_rounding() {
        let config = XLstmConfig::new(24, 2, 2)
            .with_conv_kernel(0)
            .with_round_up_to(1);
        let diff = max_step_diff(&config, 2, 64, 60);
        assert!(diff < 1e-4, "{diff}");
        let config = XLstmConfig::new(24, 2, 2).with_conv_kernel(1);
        let diff = max_step_diff(&config, 2, 64, 61);
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn xlstm_rust_reset_row_starts_that_row_afresh() {
        let device = crate::cpu();
        let model = hot_gates(XLstmConfig::new(32, 2, 4).init_seeded(&device, 70), 71);
        let weights = XLstmWeights::from_model(&model);
        let (batch, d) = (2, 32);
        let xs = to_vec(random([40, batch, d], 1.0, 72, &device));
        let mut state = weights.state(batch);
        let mut scratch = weights.scratch(batch);
        let mut y = vec![0.0; batch * d];
        for t in 0..20 {
            weights.step(
                &xs[t * batch * d..][..batch * d],
                &mut state,
                &mut scratch,
                &mut y,
            );
        }
        state.reset_row(1);
        let mut fresh = weights.state(1);
        let mut fresh_scratch = weights.scratch(1);
        let mut y1 = vec![0.0; d];
        for t in 20..40 {
            let x = &xs[t * batch * d..][..batch * d];
            weights.step(x, &mut state, &mut scratch, &mut y);
            weights.step(&x[d..], &mut fresh, &mut fresh_scratch, &mut y1);
            assert_eq!(&y[d..], &y1[..], "step {t}");
        }
        assert_eq!(state.num_values(), 2 * fresh.num_values());
    }
}
