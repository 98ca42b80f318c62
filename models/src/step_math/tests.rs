//! The scalar functions against the standard library's.

use super::*;

#[test]
fn log_sigmoid_matches_the_library_form() {
    let mut worst = 0.0f64;
    let mut x = -120.0f32;
    while x < 120.0 {
        let want = if x >= 0.0 {
            -(-(x as f64)).exp().ln_1p()
        } else {
            x as f64 - (x as f64).exp().ln_1p()
        };
        let got = log_sigmoid(x) as f64;
        // Absolute for small results, relative for large ones (x itself, far left).
        worst = worst.max((got - want).abs() / want.abs().max(1.0));
        x += 7.3e-3;
    }
    assert!(worst < 3e-7, "max error {worst:e}");
    assert_eq!(log_sigmoid(200.0), 0.0);
    assert!((log_sigmoid(0.0) + std::f32::consts::LN_2).abs() < 1e-7);
}

#[test]
fn ln_1p_matches_std_on_the_unit_interval() {
    let mut worst = 0.0f32;
    for i in 0..=100_000 {
        let y = i as f32 / 100_000.0;
        worst = worst.max((ln_1p(y) - y.ln_1p()).abs());
    }
    // And tiny arguments, where 1 + y rounds.
    for y in [1e-9f32, 1e-7, 3e-6] {
        worst = worst.max((ln_1p(y) - y.ln_1p()).abs());
    }
    assert!(worst < 2e-7, "max |err| {worst:e}");
}

#[test]
fn softmax_unnormalised_matches_the_direct_sum() {
    for n in [1, 7, 8, 9, 64, 1003] {
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.3)
            .collect();
        let mut got = v.clone();
        let sum = softmax_unnormalised(&mut got);
        let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let want: Vec<f64> = v.iter().map(|&x| ((x - max) as f64).exp()).collect();
        let want_sum: f64 = want.iter().sum();
        assert!(
            ((sum as f64) - want_sum).abs() < 1e-5 * want_sum,
            "n {n}: {sum} vs {want_sum}"
        );
        for (g, w) in got.iter().zip(&want) {
            assert!(((*g as f64) - w).abs() < 1e-6, "n {n}: {g} vs {w}");
        }
        assert!(got.contains(&1.0), "the maximum maps to 1");
    }
}
