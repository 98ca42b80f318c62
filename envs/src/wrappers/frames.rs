//! Frame operations of the Atari preprocessing protocol, as allocation-free functions
//! over `u8` images: area-interpolated resizing (OpenCV's `INTER_AREA`, which
//! Gymnasium's `AtariPreprocessing` uses to go from 210×160 to 84×84) and the max-pool
//! of the last two frames of a frame skip.

/// Resizes single-channel `u8` images of one size to another by area averaging: each
/// output pixel is the mean of the input area it covers, with partly covered input
/// pixels weighted by the covered fraction (OpenCV's `INTER_AREA` for shrinking), and
/// the result rounded to the nearest integer (ties to even, as OpenCV's `cvRound`).
///
/// The weights are computed once; [`resize`](Self::resize) allocates nothing.
#[derive(Clone, Debug)]
pub struct AreaResize {
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    /// Per output row: (first input row, weights of the consecutive input rows).
    rows: Vec<(usize, Vec<f32>)>,
    /// Per output column: (first input column, weights).
    cols: Vec<(usize, Vec<f32>)>,
    /// One output row's worth of column sums, per input row of the current output row.
    scratch: Vec<f32>,
}

/// The area weights of each output cell along one axis of `n_in` → `n_out` samples:
/// input sample i covers [i, i + 1), output cell d covers [d·s, (d + 1)·s) with
/// s = n_in / n_out; a sample's weight is its overlap over the cell's width. Overlaps of
/// at most 10⁻³ of a sample are dropped, as OpenCV does.
fn area_weights(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|d| {
            let start = d as f64 * scale;
            let end = (start + scale).min(n_in as f64);
            let cell = end - start;
            let items: Vec<(usize, f32)> = (start.floor() as usize
                ..(end.ceil() as usize).min(n_in))
                .filter_map(|i| {
                    let overlap = ((i + 1) as f64).min(end) - (i as f64).max(start);
                    (overlap > 1e-3).then_some((i, (overlap / cell) as f32))
                })
                .collect();
            let first = items.first().map_or(0, |x| x.0);
            (first, items.into_iter().map(|x| x.1).collect())
        })
        .collect()
}

impl AreaResize {
    /// A resizer from `in_h × in_w` to `out_h × out_w` (for shrinking; enlarging falls
    /// back to the same weighting, which is then a nearest-cell average).
    ///
    /// # Panics
    /// If a size is 0 (a programming error).
    pub fn new(in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Self {
        assert!(
            in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0,
            "empty image size"
        );
        AreaResize {
            in_h,
            in_w,
            out_h,
            out_w,
            rows: area_weights(in_h, out_h),
            cols: area_weights(in_w, out_w),
            scratch: vec![0.0; out_w],
        }
    }

    /// The input size `(height, width)`.
    pub fn input(&self) -> (usize, usize) {
        (self.in_h, self.in_w)
    }

    /// The output size `(height, width)`.
    pub fn output(&self) -> (usize, usize) {
        (self.out_h, self.out_w)
    }

    /// Resize the row-major `src` (`in_h × in_w`) into `dst` (`out_h × out_w`).
    ///
    /// # Panics
    /// If a buffer has the wrong length (a programming error).
    pub fn resize(&mut self, src: &[u8], dst: &mut [u8]) {
        assert_eq!(src.len(), self.in_h * self.in_w, "source size");
        assert_eq!(dst.len(), self.out_h * self.out_w, "destination size");
        for (oy, (first_row, row_weights)) in self.rows.iter().enumerate() {
            self.scratch.iter_mut().for_each(|v| *v = 0.0);
            for (k, &wy) in row_weights.iter().enumerate() {
                if wy == 0.0 {
                    continue;
                }
                let row = &src[(first_row + k) * self.in_w..(first_row + k + 1) * self.in_w];
                for (acc, (first_col, col_weights)) in self.scratch.iter_mut().zip(&self.cols) {
                    let mut sum = 0.0f32;
                    for (j, &wx) in col_weights.iter().enumerate() {
                        sum += wx * row[first_col + j] as f32;
                    }
                    *acc += wy * sum;
                }
            }
            let out = &mut dst[oy * self.out_w..(oy + 1) * self.out_w];
            for (o, &v) in out.iter_mut().zip(&self.scratch) {
                *o = v.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// `out[i] = max(a[i], b[i])`: the max-pool over the last two frames of a frame skip
/// (it removes the flicker of sprites drawn every other frame).
///
/// # Panics
/// If the lengths differ (a programming error).
pub fn max_pool(a: &[u8], b: &[u8], out: &mut [u8]) {
    assert!(
        a.len() == b.len() && a.len() == out.len(),
        "frames of different sizes"
    );
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = (*x).max(*y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_factors_average_blocks_exactly() {
        // 4×4 → 2×2: each output is the mean of a 2×2 block.
        let src: Vec<u8> = (0..16).map(|v| v * 10).collect();
        let mut r = AreaResize::new(4, 4, 2, 2);
        let mut dst = [0u8; 4];
        r.resize(&src, &mut dst);
        // Block (0,0): 0, 10, 40, 50 → 25.
        assert_eq!(dst, [25, 45, 105, 125]);
        // The identity size copies.
        let mut same = AreaResize::new(4, 4, 4, 4);
        let mut copy = [0u8; 16];
        same.resize(&src, &mut copy);
        assert_eq!(copy.to_vec(), src);
    }

    #[test]
    fn fractional_factors_weigh_partial_pixels_and_keep_constants() {
        // A constant image stays constant at any scale (the weights sum to 1).
        for (h, w, oh, ow) in [(210, 160, 84, 84), (5, 3, 2, 2), (7, 7, 3, 5)] {
            let mut r = AreaResize::new(h, w, oh, ow);
            let src = vec![77u8; h * w];
            let mut dst = vec![0u8; oh * ow];
            r.resize(&src, &mut dst);
            assert!(dst.iter().all(|&v| v == 77), "{h}×{w} → {oh}×{ow}");
        }
        // 3 → 2 in one dimension: outputs cover [0, 1.5) and [1.5, 3).
        let mut r = AreaResize::new(1, 3, 1, 2);
        let mut dst = [0u8; 2];
        r.resize(&[0, 100, 200], &mut dst);
        // (0 + 0.5·100)/1.5 = 33.3; (0.5·100 + 200)/1.5 = 166.7.
        assert_eq!(dst, [33, 167]);
    }

    #[test]
    fn max_pool_takes_the_brighter_pixel() {
        let mut out = [0u8; 3];
        max_pool(&[1, 9, 5], &[4, 2, 5], &mut out);
        assert_eq!(out, [4, 9, 5]);
    }
}
