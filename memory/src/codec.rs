//! The byte format of saved replay state.
//!
//! Little-endian throughout:
//!
//! ```text
//! magic      4 bytes  "AGRM"
//! version    u32      2 (version 1, written before byte observations existed, is
//!                     version 2 without dtype and stack, its observations f32 and whole)
//! kind       u8       1 = uniform, 2 = prioritized
//! dtype      u8       1 = f32, 2 = u8: the observations' element type
//! capacity   u64
//! obs_dim    u64
//! stack      u64      0: observations kept whole; K: stacks of K frames stored once each
//! inserted   u64      items inserted so far; len = min(inserted, capacity) are stored
//! [prioritized only: alpha f64, epsilon f64, max_priority f64]
//! observations, whole:  obs, next_obs   len × obs_dim values of dtype each, slot order
//!               frames: frames u64 (F ≤ 2K·len), F × obs_dim/K values of dtype (the
//!                       distinct frames, in order of first use), then 2K u32 frame
//!                       numbers per item (its obs's K frames, then its next_obs's)
//! actions    len u32
//! rewards    len f32
//! discounts  len f32
//! steps      len u32
//! [prioritized only: priorities len f64]
//! checksum   u64      of every byte before it
//! ```
//!
//! Loading reads into the memory's own arrays (a frame store's pool grows to the saved
//! frames, which the input's length bounds). It checks the header, then that the input
//! has exactly the length the header implies, then the checksum, then the values, and
//! only then overwrites anything: a failed load leaves the memory as it was.

use crate::element::{Element, name_of_tag};
use crate::error::{MemoryError, Result};
use crate::storage::{Observations, Storage};

pub(crate) const MAGIC: [u8; 4] = *b"AGRM";
pub(crate) const VERSION: u32 = 2;
/// The version without dtype and stack (whole f32 observations only).
const VERSION_1: u32 = 1;
pub(crate) const KIND_UNIFORM: u8 = 1;
pub(crate) const KIND_PRIORITIZED: u8 = 2;
/// magic, version, kind, dtype, capacity, obs_dim, stack, inserted.
pub(crate) const HEADER_BYTES: usize = 4 + 4 + 1 + 1 + 8 + 8 + 8 + 8;
/// Version 1's: no dtype, no stack.
const HEADER_BYTES_1: usize = HEADER_BYTES - 9;
/// alpha, epsilon, max_priority.
pub(crate) const PRIORITY_HEADER_BYTES: usize = 3 * 8;
pub(crate) const CHECKSUM_BYTES: usize = 8;

/// A 64-bit checksum against truncation and corruption (not against tampering). Every
/// round is a bijection of the state for a fixed input word, so inputs of equal length
/// that differ in a single 8-byte word always give different sums.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = K ^ (bytes.len() as u64).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    let mut round = |w: u64| {
        h = (h ^ w)
            .wrapping_mul(0x0000_0100_0000_01B3)
            .rotate_left(31)
            .wrapping_add(K);
    };
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        round(u64::from_le_bytes([
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
        ]));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    round(u64::from_le_bytes(tail));
    // SplitMix64's finaliser (a bijection) spreads the last rounds over every bit.
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// The header of saved state, as read.
pub(crate) struct Header {
    pub(crate) kind: u8,
    pub(crate) capacity: u64,
    pub(crate) obs_dim: u64,
    pub(crate) inserted: u64,
}

/// Reads consecutive fields, failing instead of reading past the end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let rest = self.bytes.len() - self.pos;
        if n > rest {
            return Err(MemoryError::Load(format!(
                "truncated: {what} needs {n} bytes at offset {}, {rest} left",
                self.pos
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn f64(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// `count` elements of 4 or 8 bytes, checked against the remaining input first.
    pub(crate) fn column(&mut self, count: usize, width: usize, what: &str) -> Result<&'a [u8]> {
        let n = count
            .checked_mul(width)
            .ok_or_else(|| MemoryError::Load(format!("{what}: length overflows")))?;
        self.take(n, what)
    }
}

/// The name of an observation layout.
fn layout(stack: u64) -> String {
    match stack {
        0 => "whole observations".into(),
        k => format!("stacks of {k} frames"),
    }
}

/// Bytes of the saved observations of `len` items: whole, or `frames` frames and the
/// items' frame numbers.
fn observation_bytes<T: Element>(storage: &Storage<T>, len: usize, frames: usize) -> usize {
    match storage.stack() {
        None => 2 * len * storage.obs_dim * T::BYTES,
        Some(k) => 8 + frames * (storage.obs_dim / k) * T::BYTES + len * 2 * k * 4,
    }
}

/// Reads and checks the fixed header and the overall length; returns the header and
/// a reader positioned after it, over the input without its checksum.
pub(crate) fn open<'a, T: Element>(
    bytes: &'a [u8],
    storage: &Storage<T>,
    kind: u8,
) -> Result<(Header, Reader<'a>)> {
    let mut r = Reader::new(bytes);
    if r.take(4, "magic")? != MAGIC {
        return Err(MemoryError::Load(
            "not agentry replay state (bad magic bytes)".into(),
        ));
    }
    let version = r.u32("version")?;
    if version != VERSION && version != VERSION_1 {
        return Err(MemoryError::Load(format!(
            "format version {version}, this build reads versions {VERSION_1} and {VERSION}"
        )));
    }
    let old = version == VERSION_1;
    let header_bytes = if old { HEADER_BYTES_1 } else { HEADER_BYTES };
    let saved_kind = r.u8("kind")?;
    let dtype = if old { f32::TAG } else { r.u8("dtype")? };
    let capacity = r.u64("capacity")?;
    let obs_dim = r.u64("obs_dim")?;
    let stack = if old { 0 } else { r.u64("stack")? };
    let header = Header {
        kind: saved_kind,
        capacity,
        obs_dim,
        inserted: r.u64("inserted")?,
    };
    if header.kind != kind {
        let name = |k| match k {
            KIND_UNIFORM => "uniform",
            KIND_PRIORITIZED => "prioritized",
            _ => "unknown",
        };
        return Err(MemoryError::Load(format!(
            "saved by a {} replay memory (kind {}), loading into a {} one",
            name(header.kind),
            header.kind,
            name(kind)
        )));
    }
    if dtype != T::TAG {
        return Err(MemoryError::Load(format!(
            "saved with {} observations, this memory stores {}",
            name_of_tag(dtype),
            T::NAME
        )));
    }
    if header.capacity != storage.capacity as u64 || header.obs_dim != storage.obs_dim as u64 {
        return Err(MemoryError::Load(format!(
            "saved with capacity {} and obs_dim {}, this memory has capacity {} and obs_dim {}",
            header.capacity, header.obs_dim, storage.capacity, storage.obs_dim
        )));
    }
    let ours = storage.stack().map_or(0, |k| k as u64);
    if stack != ours {
        return Err(MemoryError::Load(format!(
            "saved with {}, this memory keeps {}",
            layout(stack),
            layout(ours)
        )));
    }
    if header.inserted > u64::MAX / 2 {
        return Err(MemoryError::Load(format!(
            "implausible item count {}",
            header.inserted
        )));
    }
    // The header now fixes the exact length (given a frame store's frame count);
    // capacity and obs_dim match this memory's, whose arrays exist, so none of this
    // can overflow.
    let len = header.inserted.min(header.capacity) as usize;
    let prioritized = kind == KIND_PRIORITIZED;
    let extra = if prioritized {
        PRIORITY_HEADER_BYTES
    } else {
        0
    };
    let frames = match storage.stack() {
        None => 0,
        Some(k) => {
            let at = header_bytes + extra;
            let count = bytes
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| MemoryError::Load(format!("truncated: {} bytes", bytes.len())))?;
            if count > (2 * k * len) as u64 {
                return Err(MemoryError::Load(format!(
                    "{count} frames for {len} items of {k} frames"
                )));
            }
            count as usize
        }
    };
    let per_item = 16 + if prioritized { 8 } else { 0 };
    let expected = header_bytes
        + extra
        + observation_bytes(storage, len, frames)
        + len * per_item
        + CHECKSUM_BYTES;
    if bytes.len() != expected {
        return Err(MemoryError::Load(format!(
            "{} bytes, expected {expected} for {len} items ({})",
            bytes.len(),
            if bytes.len() < expected {
                "truncated"
            } else {
                "trailing bytes"
            }
        )));
    }
    let (body, sum) = bytes.split_at(expected - CHECKSUM_BYTES);
    let mut stored = [0u8; 8];
    stored.copy_from_slice(sum);
    if u64::from_le_bytes(stored) != checksum(body) {
        return Err(MemoryError::Load(
            "checksum mismatch: the data is damaged".into(),
        ));
    }
    let mut r = Reader::new(body);
    r.take(header_bytes, "header")?;
    Ok((header, r))
}

/// Saved observations, borrowed from the input.
enum SavedObservations<'a> {
    Whole {
        obs: &'a [u8],
        next_obs: &'a [u8],
    },
    Frames {
        count: usize,
        pool: &'a [u8],
        numbers: &'a [u8],
    },
}

/// The storage columns of saved state, borrowed from the input.
pub(crate) struct Columns<'a> {
    inserted: u64,
    observations: SavedObservations<'a>,
    actions: &'a [u8],
    rewards: &'a [u8],
    discounts: &'a [u8],
    steps: &'a [u8],
}

/// Reads (without storing) the storage columns of `inserted` items and checks them.
pub(crate) fn read_columns<'a, T: Element>(
    r: &mut Reader<'a>,
    storage: &Storage<T>,
    inserted: u64,
) -> Result<Columns<'a>> {
    let len = inserted.min(storage.capacity as u64) as usize;
    let observations = match &storage.observations {
        Observations::Whole { .. } => {
            let values = len * storage.obs_dim;
            SavedObservations::Whole {
                obs: r.column(values, T::BYTES, "obs")?,
                next_obs: r.column(values, T::BYTES, "next_obs")?,
            }
        }
        Observations::Frames(f) => {
            // `open` checked the count against the length.
            let count = r.u64("frames")? as usize;
            let frame_len = storage.obs_dim / f.stack();
            let pool = r.column(count * frame_len, T::BYTES, "frames")?;
            let numbers = r.column(len * 2 * f.stack(), 4, "frame numbers")?;
            f.check_saved(count, numbers)?;
            SavedObservations::Frames {
                count,
                pool,
                numbers,
            }
        }
    };
    let cols = Columns {
        inserted,
        observations,
        actions: r.column(len, 4, "actions")?,
        rewards: r.column(len, 4, "rewards")?,
        discounts: r.column(len, 4, "discounts")?,
        steps: r.column(len, 4, "steps")?,
    };
    if let Some(d) = f32s(cols.discounts).find(|d| !(0.0..=1.0).contains(d)) {
        return Err(MemoryError::Load(format!("discount {d} outside [0, 1]")));
    }
    Ok(cols)
}

/// Overwrites `storage` with checked columns.
pub(crate) fn store_columns<T: Element>(cols: &Columns<'_>, storage: &mut Storage<T>) {
    fn fill<V>(dst: &mut [V], src: impl Iterator<Item = V>) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    }
    match (&cols.observations, &mut storage.observations) {
        (
            SavedObservations::Whole { obs, next_obs },
            Observations::Whole {
                obs: o,
                next_obs: n,
            },
        ) => {
            let values = obs.len() / T::BYTES;
            T::read_le(obs, &mut o[..values]);
            T::read_le(next_obs, &mut n[..values]);
        }
        (
            SavedObservations::Frames {
                count,
                pool,
                numbers,
            },
            Observations::Frames(f),
        ) => f.load_saved(*count, pool, numbers),
        _ => unreachable!("read_columns reads the storage's own layout"),
    }
    fill(&mut storage.actions, u32s(cols.actions));
    fill(&mut storage.rewards, f32s(cols.rewards));
    fill(&mut storage.discounts, f32s(cols.discounts));
    fill(&mut storage.steps, u32s(cols.steps));
    storage.inserted = cols.inserted;
}

pub(crate) fn u32s(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

pub(crate) fn f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    u32s(bytes).map(f32::from_bits)
}

pub(crate) fn f64s(bytes: &[u8]) -> impl Iterator<Item = f64> + '_ {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
}

/// Writes the header and the storage columns.
pub(crate) fn write_storage<T: Element>(
    out: &mut Vec<u8>,
    storage: &Storage<T>,
    kind: u8,
    priority_header: Option<[f64; 3]>,
) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(kind);
    out.push(T::TAG);
    out.extend_from_slice(&(storage.capacity as u64).to_le_bytes());
    out.extend_from_slice(&(storage.obs_dim as u64).to_le_bytes());
    out.extend_from_slice(&(storage.stack().unwrap_or(0) as u64).to_le_bytes());
    out.extend_from_slice(&storage.inserted.to_le_bytes());
    for v in priority_header.into_iter().flatten() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let len = storage.len();
    match &storage.observations {
        Observations::Whole { obs, next_obs } => {
            let values = len * storage.obs_dim;
            T::write_le(&obs[..values], out);
            T::write_le(&next_obs[..values], out);
        }
        Observations::Frames(f) => f.write_saved(len, out),
    }
    let f32s = |out: &mut Vec<u8>, xs: &[f32]| {
        xs.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
    };
    storage.actions[..len]
        .iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    f32s(out, &storage.rewards[..len]);
    f32s(out, &storage.discounts[..len]);
    storage.steps[..len]
        .iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
}

/// Appends the checksum of everything written so far.
pub(crate) fn finish(out: &mut Vec<u8>) {
    let sum = checksum(out);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// Exact size of saved state of `storage` (`prioritized` or not) now.
pub(crate) fn saved_len<T: Element>(storage: &Storage<T>, prioritized: bool) -> usize {
    let len = storage.len();
    let frames = match &storage.observations {
        Observations::Whole { .. } => 0,
        Observations::Frames(f) => f.frames(),
    };
    let (extra, per_item) = if prioritized {
        (PRIORITY_HEADER_BYTES, 24)
    } else {
        (0, 16)
    };
    HEADER_BYTES + extra + observation_bytes(storage, len, frames) + len * per_item + CHECKSUM_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_sees_every_single_byte_change_and_the_length() {
        let bytes: Vec<u8> = (0..37u8).collect();
        let sum = checksum(&bytes);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert_ne!(checksum(&damaged), sum, "byte {i} bit {bit}");
            }
        }
        assert_ne!(checksum(&bytes[..36]), sum);
        let mut padded = bytes.clone();
        padded.push(0);
        assert_ne!(checksum(&padded), sum);
    }
}
