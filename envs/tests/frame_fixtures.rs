//! Atari frame resizing against OpenCV's `INTER_AREA` (what Gymnasium's
//! `AtariPreprocessing` uses): 210×160 frames resized by OpenCV itself
//! (`fixtures/frames/generate.py`) must come out the same here, within one intensity
//! level (today they agree bit for bit).

use agentry_envs::wrappers::AreaResize;
use serde_json::Value;

fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = chunk
            .iter()
            .filter(|&&c| c != b'=')
            .map(|&c| value(c))
            .collect();
        let bits = digits
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &d)| acc | (d as u32) << (18 - 6 * i));
        for k in 0..digits.len().saturating_sub(1) {
            out.push((bits >> (16 - 8 * k)) as u8);
        }
    }
    out
}

#[test]
fn area_resize_matches_opencv_within_one_level() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/frames/area_resize.json"
    ))
    .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let mut resize = AreaResize::new(210, 160, 84, 84);
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let input = base64(case["input"].as_str().unwrap());
        let want = base64(case["output"].as_str().unwrap());
        assert_eq!((input.len(), want.len()), (210 * 160, 84 * 84), "{name}");
        let mut got = vec![0u8; 84 * 84];
        resize.resize(&input, &mut got);
        let diffs: Vec<i32> = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .collect();
        let max = diffs.iter().copied().max().unwrap();
        let exact = diffs.iter().filter(|&&d| d == 0).count() as f64 / diffs.len() as f64;
        assert!(max <= 1, "{name}: a pixel differs by {max}");
        assert!(exact >= 0.99, "{name}: only {:.1}% exact", 100.0 * exact);
    }
}
