//! What an observation value is stored as: `f32` for vectors, `u8` for image frames.
//!
//! Every memory, adder and batch is generic over its [`Element`], with `f32` the
//! default. A memory of `u8` frames keeps them as bytes from the environment to the
//! minibatch, a quarter of the space of floats: the learner converts them to `f32`
//! only when it builds the network's input tensor (`Into<f32>` gives the raw value,
//! 0–255; scaling is the network's business).

use std::fmt::Debug;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u8 {}
}

/// An observation value a memory can store: `f32` or `u8` (sealed).
pub trait Element:
    Copy + Default + PartialEq + Debug + Send + Sync + 'static + Into<f32> + sealed::Sealed
{
    /// Bytes per value, in memory and in saved state.
    const BYTES: usize;
    /// The tag saved state records the type with.
    const TAG: u8;
    /// The type's name, for messages.
    const NAME: &'static str;

    /// Appends `values` little-endian to `out`.
    fn write_le(values: &[Self], out: &mut Vec<u8>);

    /// Overwrites `dst` with the little-endian values in `bytes`
    /// (`bytes.len() == dst.len() × BYTES`).
    fn read_le(bytes: &[u8], dst: &mut [Self]);

    /// A fast 64-bit hash of `values` (not for adversarial input): how a memory of
    /// stacked frames finds a frame it already holds.
    fn hash(values: &[Self]) -> u64;
}

/// Mixes a word into a running hash (FxHash's step), then [`finish`] spreads the bits.
#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95)
}

/// SplitMix64's finaliser, so that the low bits of a hash depend on every word.
fn finish(h: u64) -> u64 {
    let h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

impl Element for f32 {
    const BYTES: usize = 4;
    const TAG: u8 = 1;
    const NAME: &'static str = "f32";

    fn write_le(values: &[f32], out: &mut Vec<u8>) {
        out.reserve(values.len() * 4);
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn read_le(bytes: &[u8], dst: &mut [f32]) {
        debug_assert_eq!(bytes.len(), dst.len() * 4);
        for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
            *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }

    fn hash(values: &[f32]) -> u64 {
        finish(
            values
                .iter()
                .fold(values.len() as u64, |h, v| mix(h, u64::from(v.to_bits()))),
        )
    }
}

impl Element for u8 {
    const BYTES: usize = 1;
    const TAG: u8 = 2;
    const NAME: &'static str = "u8";

    fn write_le(values: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(values);
    }

    fn read_le(bytes: &[u8], dst: &mut [u8]) {
        dst.copy_from_slice(bytes);
    }

    fn hash(values: &[u8]) -> u64 {
        let mut words = values.chunks_exact(8);
        let mut h = values.len() as u64;
        for w in &mut words {
            h = mix(
                h,
                u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
            );
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        finish(mix(h, u64::from_le_bytes(tail)))
    }
}

/// The name of the element type with saved-state tag `tag`.
pub(crate) fn name_of_tag(tag: u8) -> &'static str {
    match tag {
        t if t == f32::TAG => f32::NAME,
        t if t == u8::TAG => u8::NAME,
        _ => "an unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_their_bytes() {
        let floats = [0.0f32, -1.5, f32::MAX, 1e-30];
        let mut out = Vec::new();
        f32::write_le(&floats, &mut out);
        assert_eq!(out.len(), 16);
        let mut back = [9.0f32; 4];
        f32::read_le(&out, &mut back);
        assert_eq!(back, floats);
        let bytes = [0u8, 7, 255];
        let mut out = Vec::new();
        u8::write_le(&bytes, &mut out);
        let mut back = [1u8; 3];
        u8::read_le(&out, &mut back);
        assert_eq!((out.as_slice(), back), (&bytes[..], bytes));
        assert_eq!(
            (name_of_tag(1), name_of_tag(2), name_of_tag(0)),
            ("f32", "u8", "an unknown type")
        );
        // Hashes see every value and the length.
        let frame: Vec<u8> = (0..29).collect();
        let h = u8::hash(&frame);
        for i in 0..frame.len() {
            let mut other = frame.clone();
            other[i] ^= 1;
            assert_ne!(u8::hash(&other), h, "byte {i}");
        }
        assert_ne!(u8::hash(&frame[..28]), h);
        assert_ne!(f32::hash(&[0.0, 1.0]), f32::hash(&[1.0, 0.0]));
    }
}
