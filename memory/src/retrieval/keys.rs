//! Contiguous key storage in `f32`, `f16` or `i8` (with a scale per key), and the scan
//! that scores a range of keys against a query.

use std::ops::Range;

use super::kernels;
use super::topk::{Hit, TopK};
use crate::error::{MemoryError, Result};

/// How an index stores its keys. Queries are always `f32`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// 4 bytes per value, exact.
    #[default]
    F32,
    /// 2 bytes per value: IEEE half precision, rounded to nearest. A score moves by at
    /// most `2⁻¹¹ · Σ|q_i·k_i|` (≤ 4.9e-4 for unit vectors) plus `f32` rounding.
    F16,
    /// 1 byte per value plus a 4-byte scale per key: `k_i ≈ scale · c_i`, with
    /// `scale = max|k_i| / 127` and `c_i = round(k_i / scale)`. A score moves by at
    /// most `scale / 2 · Σ|q_i|` (for a unit query, `≤ scale/2 · √dim`; typically far
    /// less, as rounding errors cancel).
    I8,
}

impl KeyType {
    /// Bytes per stored value (not counting an `i8` key's scale).
    pub fn width(self) -> usize {
        match self {
            KeyType::F32 => 4,
            KeyType::F16 => 2,
            KeyType::I8 => 1,
        }
    }

    /// Bytes one key of `dim` values takes.
    pub fn key_bytes(self, dim: usize) -> usize {
        dim * self.width() + if self == KeyType::I8 { 4 } else { 0 }
    }

    /// The name (`"f32"`, `"f16"`, `"i8"`).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::F32 => "f32",
            KeyType::F16 => "f16",
            KeyType::I8 => "i8",
        }
    }

    /// The key type of a name given by [`name`](Self::name) (for command lines and
    /// presets).
    pub fn from_name(name: &str) -> Option<KeyType> {
        [KeyType::F32, KeyType::F16, KeyType::I8]
            .into_iter()
            .find(|t| t.name() == name)
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            KeyType::F32 => 1,
            KeyType::F16 => 2,
            KeyType::I8 => 3,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<KeyType> {
        match tag {
            1 => Some(KeyType::F32),
            2 => Some(KeyType::F16),
            3 => Some(KeyType::I8),
            _ => None,
        }
    }
}

/// The largest finite `f16`.
const F16_MAX: f32 = 65504.0;

#[derive(Clone)]
enum Data {
    F32(Vec<f32>),
    F16(Vec<u16>),
    I8 { codes: Vec<i8>, scales: Vec<f32> },
}

/// `len × dim` values, key after key.
#[derive(Clone)]
pub(crate) struct KeyStore {
    dim: usize,
    len: usize,
    data: Data,
}

/// A filter over key ids: `true` keeps the key.
pub(crate) type Keep<'a> = Option<&'a (dyn Fn(u32) -> bool + Sync)>;

impl KeyStore {
    pub(crate) fn new(dim: usize, key_type: KeyType) -> Self {
        let data = match key_type {
            KeyType::F32 => Data::F32(Vec::new()),
            KeyType::F16 => Data::F16(Vec::new()),
            KeyType::I8 => Data::I8 {
                codes: Vec::new(),
                scales: Vec::new(),
            },
        };
        KeyStore { dim, len: 0, data }
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn key_type(&self) -> KeyType {
        match self.data {
            Data::F32(_) => KeyType::F32,
            Data::F16(_) => KeyType::F16,
            Data::I8 { .. } => KeyType::I8,
        }
    }

    /// Bytes the keys occupy (what a full scan reads).
    pub(crate) fn bytes(&self) -> usize {
        self.len * self.key_type().key_bytes(self.dim)
    }

    /// Checks that `key` can be stored: its length, finite values, and for `f16` values
    /// within the format's range.
    pub(crate) fn check(&self, key: &[f32], what: &'static str) -> Result<()> {
        if key.len() != self.dim {
            return Err(MemoryError::Length {
                what,
                expected: self.dim,
                got: key.len(),
            });
        }
        if let Some(i) = key.iter().position(|x| !x.is_finite()) {
            return Err(MemoryError::InvalidKey(format!(
                "{what} value {i} is {}",
                key[i]
            )));
        }
        if matches!(self.data, Data::F16(_))
            && let Some(i) = key.iter().position(|x| x.abs() > F16_MAX)
        {
            return Err(MemoryError::InvalidKey(format!(
                "{what} value {i} = {} is beyond the f16 range (±65504)",
                key[i]
            )));
        }
        Ok(())
    }

    /// Ensures room for `more` keys without reallocating on each push.
    pub(crate) fn reserve(&mut self, more: usize) {
        let values = more * self.dim;
        match &mut self.data {
            Data::F32(v) => v.reserve(values),
            Data::F16(v) => v.reserve(values),
            Data::I8 { codes, scales } => {
                codes.reserve(values);
                scales.reserve(more);
            }
        }
    }

    /// Appends a key that passed [`check`](Self::check).
    pub(crate) fn push(&mut self, key: &[f32]) {
        debug_assert_eq!(key.len(), self.dim);
        match &mut self.data {
            Data::F32(v) => v.extend_from_slice(key),
            Data::F16(v) => v.extend(key.iter().map(|&x| kernels::f32_to_f16(x))),
            Data::I8 { codes, scales } => {
                let max = key.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = max / 127.0;
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                codes.extend(
                    key.iter()
                        .map(|&x| (x * inv).round().clamp(-127.0, 127.0) as i8),
                );
                scales.push(scale);
            }
        }
        self.len += 1;
    }

    /// Writes key `id` as `f32` values into `out` (`dim` long): the stored key,
    /// decoded.
    pub(crate) fn reconstruct(&self, id: usize, out: &mut [f32]) {
        let r = id * self.dim..(id + 1) * self.dim;
        match &self.data {
            Data::F32(v) => out.copy_from_slice(&v[r]),
            Data::F16(v) => {
                for (o, &h) in out.iter_mut().zip(&v[r]) {
                    *o = kernels::f16_to_f32(h);
                }
            }
            Data::I8 { codes, scales } => {
                let s = scales[id];
                for (o, &c) in out.iter_mut().zip(&codes[r]) {
                    *o = s * f32::from(c);
                }
            }
        }
    }

    /// The score of key `id` against `q`.
    #[inline]
    pub(crate) fn dot(&self, q: &[f32], id: usize) -> f32 {
        let r = id * self.dim..(id + 1) * self.dim;
        match &self.data {
            Data::F32(v) => kernels::dot_f32(q, &v[r]),
            Data::F16(v) => kernels::dot_f16(q, &v[r]),
            Data::I8 { codes, scales } => kernels::dot_i8(q, &codes[r]) * scales[id],
        }
    }

    /// Asks the CPU to start loading key `id` into its L2 cache (a hint; no effect
    /// on results). A graph search prefetches every neighbour it is about to score,
    /// so the memory accesses, random at this point, overlap instead of queueing.
    #[inline]
    pub(crate) fn prefetch(&self, id: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
            let (ptr, bytes) = match &self.data {
                Data::F32(v) => (v[id * self.dim..].as_ptr().cast::<u8>(), self.dim * 4),
                Data::F16(v) => (v[id * self.dim..].as_ptr().cast::<u8>(), self.dim * 2),
                Data::I8 { codes, .. } => (codes[id * self.dim..].as_ptr().cast::<u8>(), self.dim),
            };
            for offset in (0..bytes).step_by(64) {
                // SAFETY: a prefetch never faults and `offset < bytes` stays within the
                // key, which is in bounds (the slice indexing above checked its start).
                unsafe { _mm_prefetch::<_MM_HINT_T1>(ptr.add(offset).cast::<i8>()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = id;
    }

    /// The f32 values of key `id`, if stored as f32 (a query can then borrow them).
    pub(crate) fn f32_key(&self, id: usize) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(&v[id * self.dim..(id + 1) * self.dim]),
            _ => None,
        }
    }

    /// Offers every key in `range` to `top`, scored against `q`, key after key (one
    /// sequential stream through memory).
    pub(crate) fn scan(&self, q: &[f32], range: Range<usize>, top: &mut TopK, keep: Keep<'_>) {
        let dim = self.dim;
        let first = range.start;
        let values = range.start * dim..range.end * dim;
        let mut offer = |i: usize, score: f32| {
            top.offer(
                Hit {
                    id: (first + i) as u32,
                    score,
                },
                keep,
            );
        };
        match &self.data {
            Data::F32(v) => {
                for (i, key) in v[values].chunks_exact(dim).enumerate() {
                    offer(i, kernels::dot_f32(q, key));
                }
            }
            Data::F16(v) => {
                for (i, key) in v[values].chunks_exact(dim).enumerate() {
                    offer(i, kernels::dot_f16(q, key));
                }
            }
            Data::I8 { codes, scales } => {
                let keys = codes[values].chunks_exact(dim);
                for (i, (key, &scale)) in keys.zip(&scales[range]).enumerate() {
                    offer(i, kernels::dot_i8(q, key) * scale);
                }
            }
        }
    }

    /// Bytes [`write`](Self::write) appends for `len` keys of `dim` values.
    pub(crate) fn saved_bytes(key_type: KeyType, dim: usize, len: usize) -> Option<usize> {
        len.checked_mul(key_type.key_bytes(dim))
    }

    /// Appends the keys, little-endian: all values, then (`i8`) all scales.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        match &self.data {
            Data::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::F16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::I8 { codes, scales } => {
                out.extend(codes.iter().map(|&c| c as u8));
                scales
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
        }
    }

    /// Reads `len` keys written by [`write`](Self::write) from exactly
    /// [`saved_bytes`](Self::saved_bytes) bytes, checking every value.
    pub(crate) fn read(key_type: KeyType, dim: usize, len: usize, bytes: &[u8]) -> Result<Self> {
        let bad = |m: String| Err(MemoryError::RetrievalLoad(m));
        debug_assert_eq!(Some(bytes.len()), Self::saved_bytes(key_type, dim, len));
        let values = len * dim;
        let data = match key_type {
            KeyType::F32 => {
                let v: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return bad(format!("key {} value {} is {}", i / dim, i % dim, v[i]));
                }
                Data::F32(v)
            }
            KeyType::F16 => {
                let v: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                if let Some(i) = v.iter().position(|&h| !kernels::f16_to_f32(h).is_finite()) {
                    return bad(format!(
                        "key {} value {} is not a finite f16",
                        i / dim,
                        i % dim
                    ));
                }
                Data::F16(v)
            }
            KeyType::I8 => {
                let (codes, scales) = bytes.split_at(values);
                let codes: Vec<i8> = codes.iter().map(|&b| b as i8).collect();
                if let Some(i) = codes.iter().position(|&c| c == i8::MIN) {
                    return bad(format!(
                        "key {} code {} is -128 (codes are in ±127)",
                        i / dim,
                        i % dim
                    ));
                }
                let scales: Vec<f32> = scales
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if let Some(i) = scales.iter().position(|s| !(s.is_finite() && *s >= 0.0)) {
                    return bad(format!("key {i} has scale {}", scales[i]));
                }
                Data::I8 { codes, scales }
            }
        };
        Ok(KeyStore { dim, len, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_keys_decode_within_their_rounding() {
        let key: Vec<f32> = (0..40).map(|i| ((i as f32) * 0.37).sin() * 0.3).collect();
        for key_type in [KeyType::F32, KeyType::F16, KeyType::I8] {
            let mut store = KeyStore::new(key.len(), key_type);
            store.check(&key, "key").unwrap();
            store.push(&key);
            let mut back = vec![0f32; key.len()];
            store.reconstruct(0, &mut back);
            let max = key.iter().fold(0f32, |m, x| m.max(x.abs()));
            let tolerance = match key_type {
                KeyType::F32 => 0.0,
                KeyType::F16 => max * 2f32.powi(-11),
                KeyType::I8 => max / 127.0 / 2.0 * 1.0001,
            };
            for (a, b) in key.iter().zip(&back) {
                assert!((a - b).abs() <= tolerance, "{key_type:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn key_types_are_found_by_name() {
        for t in [KeyType::F32, KeyType::F16, KeyType::I8] {
            assert_eq!(KeyType::from_name(t.name()), Some(t));
            assert_eq!(KeyType::from_tag(t.tag()), Some(t));
        }
        assert_eq!(KeyType::from_name("f64"), None);
    }

    #[test]
    fn a_zero_key_is_stored_as_zeros_and_f16_rejects_values_out_of_range() {
        let mut store = KeyStore::new(3, KeyType::I8);
        store.push(&[0.0; 3]);
        assert_eq!(store.dot(&[1.0, 1.0, 1.0], 0), 0.0);
        let store = KeyStore::new(2, KeyType::F16);
        assert!(store.check(&[1e5, 0.0], "key").is_err());
        assert!(store.check(&[f32::NAN, 0.0], "key").is_err());
        assert!(store.check(&[0.0], "key").is_err());
    }
}
