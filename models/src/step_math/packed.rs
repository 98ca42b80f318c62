//! Matrix–vector products of the step kernels with the weights laid out at load time for
//! the way a single token reads them.
//!
//! A row-major `x·W` over a wide output keeps the whole output row in memory and loads and
//! stores it once per input (two memory operations per multiply-add). [`Packed`] instead
//! cuts the outputs into *panels* of [`LANES`] columns and stores each panel's weights
//! contiguously, input after input; the kernel keeps a few panels' sums in registers for
//! the whole input loop, so the weights stream through once and every multiply-add is one
//! fused instruction. A block-diagonal map (per-head projections, the sLSTM's recurrent
//! matrix) is the same structure: each panel reads only the window of inputs its heads
//! use, with zeros where a panel straddles two heads.
//!
//! [`Isa`] is chosen once per step: AVX2 + FMA where the CPU has both, else portable Rust
//! (what the compiler makes of plain loops for the build target). The two agree to f32
//! rounding (FMA rounds once where the portable path rounds twice; sums are also split
//! differently), tested here against a naive product.

/// Outputs per panel: one AVX register of f32.
pub(crate) const LANES: usize = 8;

/// Instruction sets the step kernels choose between at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Plain Rust for the build target (any CPU).
    Portable,
    /// x86-64 with AVX2 and FMA (only made by [`Isa::detect`], after checking the CPU).
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Isa {
    /// The best this CPU runs.
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2Fma;
        }
        Isa::Portable
    }
}

/// A dense or block-diagonal map `y = x·W + b` with its weights in panels; see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    fan_in: usize,
    fan_out: usize,
    /// Inputs each panel reads (the same for all panels).
    k: usize,
    /// Per panel, the first input it reads.
    offsets: Vec<usize>,
    /// `[panels, k, LANES]`, zero where a panel's column is past `fan_out` or in another
    /// head than its input.
    weight: Vec<f32>,
    /// `[panels · LANES]`, zero-padded.
    bias: Vec<f32>,
}

impl Packed {
    /// A dense map from row-major `weight` (`fan_in × fan_out`) and `bias` (`fan_out`).
    pub(crate) fn dense(fan_in: usize, fan_out: usize, weight: &[f32], bias: &[f32]) -> Self {
        Self::block_diag(1, fan_in, fan_out, weight, Some(bias))
    }

    /// A block-diagonal map of `heads` blocks, `weight` `[heads, d_in, d_out]` row-major,
    /// optional `bias` (`heads · d_out`).
    pub(crate) fn block_diag(
        heads: usize,
        d_in: usize,
        d_out: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Self {
        assert!(heads > 0 && d_in > 0 && d_out > 0, "packed: empty map");
        assert_eq!(weight.len(), heads * d_in * d_out, "packed: weight size");
        let (fan_in, fan_out) = (heads * d_in, heads * d_out);
        let panels = fan_out.div_ceil(LANES);
        // The heads a panel's columns belong to, and so the inputs it needs.
        let window = |p: usize| {
            let first = p * LANES / d_out;
            let last = ((p * LANES + LANES).min(fan_out) - 1) / d_out;
            (first * d_in, (last + 1) * d_in)
        };
        let k = (0..panels)
            .map(|p| {
                let (a, b) = window(p);
                b - a
            })
            .max()
            .unwrap_or(0);
        let mut offsets = Vec::with_capacity(panels);
        let mut packed = vec![0.0; panels * k * LANES];
        for p in 0..panels {
            let offset = window(p).0.min(fan_in - k);
            offsets.push(offset);
            for a in 0..k {
                let input = offset + a;
                for c in 0..LANES {
                    let col = p * LANES + c;
                    if col < fan_out && input / d_in == col / d_out {
                        let h = col / d_out;
                        packed[(p * k + a) * LANES + c] =
                            weight[(h * d_in + input % d_in) * d_out + col % d_out];
                    }
                }
            }
        }
        let mut b = vec![0.0; panels * LANES];
        if let Some(bias) = bias {
            assert_eq!(bias.len(), fan_out, "packed: bias size");
            b[..fan_out].copy_from_slice(bias);
        }
        Packed {
            fan_in,
            fan_out,
            k,
            offsets,
            weight: packed,
            bias: b,
        }
    }

    /// Output width.
    pub(crate) fn fan_out(&self) -> usize {
        self.fan_out
    }

    fn panels(&self) -> usize {
        self.offsets.len()
    }

    /// `y[r] = x[r]·W + b` for `rows` rows, row `r` of `x` at `r · x_stride` and of `y` at
    /// `r · y_stride` (each row `fan_in` / `fan_out` long).
    ///
    /// # Panics
    /// If a row lies outside `x` or `y`.
    #[inline]
    pub(crate) fn apply_strided(
        &self,
        isa: Isa,
        x: &[f32],
        x_stride: usize,
        rows: usize,
        y: &mut [f32],
        y_stride: usize,
    ) {
        if rows == 0 {
            return;
        }
        assert!(
            x_stride >= self.fan_in
                && y_stride >= self.fan_out
                && x.len() >= (rows - 1) * x_stride + self.fan_in
                && y.len() >= (rows - 1) * y_stride + self.fan_out,
            "packed: sizes"
        );
        match isa {
            Isa::Portable => self.apply_portable(x, x_stride, rows, y, y_stride),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2Fma` is only made after checking the CPU has both, and the
            // sizes were checked just above.
            Isa::Avx2Fma => unsafe { self.apply_avx2_fma(x, x_stride, rows, y, y_stride) },
        }
    }

    /// [`apply_strided`](Self::apply_strided) with rows packed back to back.
    #[inline]
    pub(crate) fn apply(&self, isa: Isa, x: &[f32], rows: usize, y: &mut [f32]) {
        self.apply_strided(isa, x, self.fan_in, rows, y, self.fan_out);
    }

    fn apply_portable(&self, x: &[f32], xs: usize, rows: usize, y: &mut [f32], ys: usize) {
        let k = self.k;
        for r in 0..rows {
            for (p, &off) in self.offsets.iter().enumerate() {
                let mut acc = [0f32; LANES];
                acc.copy_from_slice(&self.bias[p * LANES..(p + 1) * LANES]);
                let xr = &x[r * xs + off..r * xs + off + k];
                let w = &self.weight[p * k * LANES..(p + 1) * k * LANES];
                for (&xi, wi) in xr.iter().zip(w.chunks_exact(LANES)) {
                    for (a, &wc) in acc.iter_mut().zip(wi) {
                        *a += xi * wc;
                    }
                }
                let col = p * LANES;
                let n = (self.fan_out - col).min(LANES);
                y[r * ys + col..r * ys + col + n].copy_from_slice(&acc[..n]);
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA, and the sizes must be as
    /// [`apply_strided`](Self::apply_strided) checks them.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn apply_avx2_fma(&self, x: &[f32], xs: usize, rows: usize, y: &mut [f32], ys: usize) {
        // Register budget (16 ymm): rows × panels × 2 partial sums (even and odd inputs)
        // ≤ 8 accumulators, so that 8 independent FMA chains hide the latency, plus the
        // broadcast inputs and the weights. Every output is summed the same way whatever
        // the number of rows (bias + even + odd, or 8 partial sums for the panels left
        // over), so a row's result does not depend on the batch it is in.
        let mut r = 0;
        // SAFETY (all calls): rows r..r+R exist (the loop bounds) and the caller checked
        // the sizes and the CPU.
        unsafe {
            while r < rows {
                let step = match rows - r {
                    1 => {
                        self.rows_block::<1, 4>(x, xs, r, y, ys);
                        1
                    }
                    2 => {
                        self.rows_block::<2, 2>(x, xs, r, y, ys);
                        2
                    }
                    3 => {
                        self.rows_block::<3, 1>(x, xs, r, y, ys);
                        3
                    }
                    _ => {
                        self.rows_block::<4, 1>(x, xs, r, y, ys);
                        4
                    }
                };
                r += step;
            }
        }
    }

    /// Rows `r0..r0 + R`: the panels in groups of 4, `G` at a time with 2 partial sums,
    /// then the leftover panels one at a time and row by row with 8 partial sums.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn rows_block<const R: usize, const G: usize>(
        &self,
        x: &[f32],
        xs: usize,
        r0: usize,
        y: &mut [f32],
        ys: usize,
    ) {
        // Which panels take the 2-sum path must not depend on `G` (so on the rows): the
        // panels in whole groups of 4, whatever `G` (1, 2 or 4) walks them by.
        let grouped = self.panels() - self.panels() % 4;
        let panels = self.panels();
        let mut p = 0;
        // SAFETY: as the caller's; panels p..p+G exist.
        unsafe {
            while p + G <= grouped {
                self.tile::<R, G, 2>(x, xs, r0, p, y, ys);
                p += G;
            }
            while p < panels {
                for r in r0..r0 + R {
                    self.tile::<1, 1, 8>(x, xs, r, p, y, ys);
                }
                p += 1;
            }
        }
    }

    /// Rows `r0..r0 + R` × panels `p0..p0 + G`, all sums in registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    // Index loops over the register tile (partial sum × row × panel) read as the sums do.
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile<const R: usize, const G: usize, const U: usize>(
        &self,
        x: &[f32],
        xs: usize,
        r0: usize,
        p0: usize,
        y: &mut [f32],
        ys: usize,
    ) {
        use std::arch::x86_64::*;
        let k = self.k;
        let mut acc = [[[_mm256_setzero_ps(); G]; R]; U];
        let mut xp = [[std::ptr::null::<f32>(); G]; R];
        let mut wp = [std::ptr::null::<f32>(); G];
        // SAFETY: every pointer below stays inside its slice: panel p0+g's weights are
        // `k · LANES` long, its inputs `k` long from its offset, which `block_diag` keeps
        // within `fan_in` (and the caller checked each row holds `fan_in` inputs).
        unsafe {
            for g in 0..G {
                let p = p0 + g;
                wp[g] = self.weight.as_ptr().add(p * k * LANES);
                let b = _mm256_loadu_ps(self.bias.as_ptr().add(p * LANES));
                for r in 0..R {
                    acc[0][r][g] = b;
                    xp[r][g] = x.as_ptr().add((r0 + r) * xs + self.offsets[p]);
                }
            }
            let main = k - k % U;
            let mut i = 0;
            while i < main {
                for (u, acc) in acc.iter_mut().enumerate() {
                    for g in 0..G {
                        let w = _mm256_loadu_ps(wp[g].add((i + u) * LANES));
                        for r in 0..R {
                            let xv = _mm256_broadcast_ss(&*xp[r][g].add(i + u));
                            acc[r][g] = _mm256_fmadd_ps(xv, w, acc[r][g]);
                        }
                    }
                }
                i += U;
            }
            while i < k {
                for g in 0..G {
                    let w = _mm256_loadu_ps(wp[g].add(i * LANES));
                    for r in 0..R {
                        let xv = _mm256_broadcast_ss(&*xp[r][g].add(i));
                        acc[0][r][g] = _mm256_fmadd_ps(xv, w, acc[0][r][g]);
                    }
                }
                i += 1;
            }
            for u in 1..U {
                for r in 0..R {
                    for g in 0..G {
                        acc[0][r][g] = _mm256_add_ps(acc[0][r][g], acc[u][r][g]);
                    }
                }
            }
            for r in 0..R {
                for g in 0..G {
                    let col = (p0 + g) * LANES;
                    let at = (r0 + r) * ys + col;
                    if col + LANES <= self.fan_out {
                        _mm256_storeu_ps(y.as_mut_ptr().add(at), acc[0][r][g]);
                    } else {
                        let mut tmp = [0f32; LANES];
                        _mm256_storeu_ps(tmp.as_mut_ptr(), acc[0][r][g]);
                        let n = self.fan_out - col;
                        y[at..at + n].copy_from_slice(&tmp[..n]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn random(n: usize, rng: &mut rand_pcg::Pcg64Mcg) -> Vec<f32> {
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    /// `x·W + b` of the block-diagonal map, one product at a time.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        heads: usize,
        d_in: usize,
        d_out: usize,
        w: &[f32],
        b: &[f32],
        x: &[f32],
        rows: usize,
    ) -> Vec<f32> {
        let mut y = vec![0.0; rows * heads * d_out];
        for r in 0..rows {
            for h in 0..heads {
                for j in 0..d_out {
                    let mut s = b[h * d_out + j] as f64;
                    for a in 0..d_in {
                        s += x[r * heads * d_in + h * d_in + a] as f64
                            * w[(h * d_in + a) * d_out + j] as f64;
                    }
                    y[(r * heads + h) * d_out + j] = s as f32;
                }
            }
        }
        y
    }

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            v.push(Isa::detect());
        }
        v
    }

    #[test]
    fn packed_matches_naive_for_dense_and_block_diagonal_shapes() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        // (heads, d_in, d_out): dense with and without a partial last panel, tiny and
        // large blocks, blocks that straddle panels, a single output.
        for (heads, d_in, d_out) in [
            (1, 33, 40),
            (1, 7, 13),
            (1, 768, 8),
            (1, 5, 1),
            (64, 4, 4),
            (4, 32, 64),
            (4, 32, 128),
            (5, 3, 12),
            (3, 6, 5),
        ] {
            let w = random(heads * d_in * d_out, &mut rng);
            let b = random(heads * d_out, &mut rng);
            let packed = Packed::block_diag(heads, d_in, d_out, &w, Some(&b));
            for rows in [1, 2, 3, 4, 7] {
                let x = random(rows * heads * d_in, &mut rng);
                let want = naive(heads, d_in, d_out, &w, &b, &x, rows);
                for isa in isas() {
                    let mut y = vec![f32::NAN; rows * heads * d_out];
                    packed.apply(isa, &x, rows, &mut y);
                    for (i, (a, b)) in want.iter().zip(&y).enumerate() {
                        assert!(
                            (a - b).abs() < 1e-5 * (d_in as f32).sqrt().max(1.0),
                            "{heads}×{d_in}×{d_out}, {rows} rows, {isa:?}, output {i}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn packed_strided_rows_equal_single_rows_and_leave_the_gaps_alone() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(4);
        let (fan_in, fan_out, rows) = (20, 12, 5);
        let w = random(fan_in * fan_out, &mut rng);
        let b = random(fan_out, &mut rng);
        let packed = Packed::dense(fan_in, fan_out, &w, &b);
        let x = random(rows * 30, &mut rng);
        for isa in isas() {
            let mut y = vec![7.0; rows * 15];
            packed.apply_strided(isa, &x, 30, rows, &mut y, 15);
            for r in 0..rows {
                let mut one = vec![0.0; fan_out];
                packed.apply(isa, &x[r * 30..r * 30 + fan_in], 1, &mut one);
                // Bit for bit: a row's sums do not depend on the rows around it.
                assert_eq!(&y[r * 15..r * 15 + fan_out], &one[..], "{isa:?} row {r}");
                assert_eq!(&y[r * 15 + fan_out..(r + 1) * 15], &[7.0; 3], "{isa:?}");
            }
        }
    }
}
