//! Retrieval for RA-DT: vector indexes and a memory of sub-trajectory chunks.
//!
//! (Module docs are completed below.)

pub mod bench;
mod exact;
mod format;
mod hnsw;
mod kernels;
mod keys;
mod memory;
#[cfg(test)]
mod tests;
mod topk;

use std::ops::Range;

pub use exact::{ExactIndex, PARALLEL_MIN_VALUES};
pub use hnsw::{HnswConfig, HnswIndex};
pub use kernels::{Simd, simd};
pub use keys::KeyType;
pub use memory::{Chunk, IndexConfig, Query, RetrievalConfig, RetrievalMemory, Retrieved};
pub use topk::Hit;

use crate::error::Result;

/// Keeps the key ids it returns `true` for (e.g. `|id| trajectory_of[id] != mine`).
pub type Filter<'a> = &'a (dyn Fn(u32) -> bool + Sync);

/// A filter for a batch of queries: `(query index, key id) → keep`.
pub type BatchFilter<'a> = &'a (dyn Fn(usize, u32) -> bool + Sync);

/// An index of fixed-length `f32` keys, searched by inner product.
///
/// Keys get the ids `0, 1, 2, …` in insertion order. Searches return hits best first
/// in the order of [`Hit::rank`] (higher score, then lower id). Keys and queries must
/// be finite; they are meant to be L2-normalised (so the inner product is the cosine
/// similarity), which the index does not check — [`RetrievalMemory`] normalises
/// before inserting and querying.
pub trait VectorIndex: Send + Sync {
    /// Values per key.
    fn dim(&self) -> usize;

    /// Keys held.
    fn len(&self) -> usize;

    /// Whether the index holds no key.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How keys are stored.
    fn key_type(&self) -> KeyType;

    /// Adds one key; returns its id.
    fn add(&mut self, key: &[f32]) -> Result<u32>;

    /// Adds `keys.len() / dim` keys laid end to end; returns their ids. Every key is
    /// checked before any is added, so an error adds nothing.
    fn add_batch(&mut self, keys: &[f32]) -> Result<Range<u32>>;

    /// The best `k` keys for `query` among those `filter` keeps (all without one),
    /// best first; fewer if fewer are kept.
    fn search(&self, query: &[f32], k: usize, filter: Option<Filter<'_>>) -> Result<Vec<Hit>>;

    /// [`search`](Self::search) for `queries.len() / dim` queries laid end to end.
    fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        filter: Option<BatchFilter<'_>>,
    ) -> Result<Vec<Vec<Hit>>>;

    /// Writes the stored key `id` (decoded to `f32`) into `out`.
    fn reconstruct(&self, id: u32, out: &mut [f32]) -> Result<()>;
}
