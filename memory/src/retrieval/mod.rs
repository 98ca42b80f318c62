//! Retrieval for RA-DT (Schmied et al. 2024): vector indexes and an external memory of
//! sub-trajectory chunks.
//!
//! RA-DT cuts past trajectories into chunks (25 steps), embeds each with a frozen
//! Decision Transformer (the mean of its last-layer states at the chunk's state
//! tokens, L2-normalised: the *key*), and, while acting, retrieves the chunks whose
//! keys are most similar to the embedding of the current context, reweighted towards
//! useful ones. The agent reads the retrieved chunk's *value* (the chunk and the 25
//! steps after it) through cross-attention. This module is the retrieval half; the
//! agent computes keys and reads values.
//!
//! - [`VectorIndex`]: inner-product top-k over fixed-length keys, with an optional
//!   filter on ids. [`ExactIndex`] (the default) scores every key;
//!   [`HnswIndex`] searches a graph, approximately, for large memories.
//! - [`RetrievalMemory`]: chunks with their trajectory, task and the trajectory's
//!   utility (normalised return), over either index; retrieval with exclusion of the
//!   query's own trajectory, deduplication and rescoring; saving and loading.
//!
//! ```
//! use agentry_memory::retrieval::{
//!     Chunk, IndexConfig, KeyType, Query, RetrievalConfig, RetrievalMemory,
//! };
//!
//! // Keys of dimension 4 stored as f16.
//! let mut memory = RetrievalMemory::new(4, IndexConfig::Exact { key_type: KeyType::F16 })?;
//! // An episode ends: its chunks go in (value = steps start..start + len of the
//! // caller's trajectory 0), then its normalised return.
//! for (i, key) in [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]].iter().enumerate() {
//!     let chunk = Chunk { trajectory: 0, task: 3, start: 25 * i as u64, len: 50 };
//!     memory.insert(chunk, key)?;
//! }
//! memory.set_utility(0, 0.7)?;
//! // While acting in trajectory 1, retrieve for the current context's embedding.
//! let query = Query { key: &[0.9, 0.1, 0.0, 0.0], trajectory: Some(1), task: Some(3) };
//! let got = memory.retrieve(&query, &RetrievalConfig::default())?;
//! assert_eq!((got[0].chunk.start, got[0].chunk.len), (0, 50));
//! // Saved with a run, loaded back whole.
//! let again = RetrievalMemory::from_bytes(&memory.to_bytes())?;
//! assert_eq!(again.retrieve(&query, &RetrievalConfig::default())?, got);
//! # Ok::<(), agentry_memory::MemoryError>(())
//! ```
//!
//! # Exact search
//!
//! Keys lie end to end in one array, so a search is one sequential read of
//! `len × key_bytes` bytes. Each key is scored by a kernel with four eight-lane
//! accumulators (AVX2 + FMA, with F16C for `f16` keys, chosen at run time; a portable
//! loop elsewhere) and offered to a bounded heap of the best `k`; the heap is
//! consulted in O(1) for the usual key that does not beat its worst, and a filter is
//! asked only about keys that would enter it. From [`PARALLEL_MIN_VALUES`] stored
//! values (1 MB of `f32`) the keys are split into contiguous ranges over the current
//! rayon pool, one heap per range, merged at the end. Ranking is by score, then by
//! lower id ([`Hit::rank`]), a total order, so the results are the same for any split
//! and any number of threads. [`ExactIndex::search_batch`](VectorIndex::search_batch)
//! scores blocks of 128 keys against every query while they are in cache, so a
//! training batch of queries reads the keys once.
//!
//! Costs per key of dimension `d`: `4d` bytes in `f32`, `2d` in `f16`, `d + 4` in `i8`
//! (a scale per key); a search reads all of them. On the development machine (2 cores
//! of an AMD EPYC under a VM, shared with other work, whose streaming reads measure
//! 30–32 GB/s) one query over 100k × 512 `f32` keys took 5.6 ms (36 GB/s scanned), over
//! 1M 59 ms (35 GB/s); `f16` took 3.1 and 33 ms, `i8` 2.2 and 23 ms — `i8` is bound by
//! its conversions to float rather than by memory. A second thread did not help: one
//! already reads at the machine's bandwidth. (`agent bench retrieval`; BENCHMARKS.md.)
//!
//! Quantised keys change scores by at most: `f16`, `2⁻¹¹·Σ|q_i·k_i|` (≤ 4.9e-4 for
//! unit vectors); `i8` (`k_i ≈ s·c_i`, `s = max|k_i|/127`), `s/2·Σ|q_i|` — for unit
//! vectors of dimension 512 typically about 1e-3, and the tests check the bound on
//! every key.
//!
//! # HNSW
//!
//! [`HnswIndex`] is our own hierarchical navigable small world graph (Malkov and
//! Yashunin 2018), over inner products, with the key storage of the exact index. A
//! node's level is `⌊−ln u / ln M⌋` with `u` from a hash of the seed and the node's id
//! (no generator state to save). A new node searches each of its layers with
//! `ef_construction` candidates and links to up to `M` of them, chosen by the
//! neighbour heuristic (skip a candidate more similar to a chosen neighbour than to
//! the new node), as hnswlib does; lists grow through back-links to `M` (`2M` on layer
//! 0), and a list that overflows is re-selected by the same heuristic. (Taking `2M`
//! links for a new node on layer 0, as faiss does, gave a few points more recall at
//! equal `ef_search` but about as much at equal latency, and a build 1.5× slower, its
//! pairwise similarities seven times as many, on the benchmark's keys.) Each step of
//! a search prefetches the keys of all the neighbours it is about to score, so their
//! random memory accesses overlap. Search descends greedily, then explores layer 0 with
//! `max(ef_search, k)` candidates. A filter decides what is returned, not what is
//! traversed (as hnswlib's), so a filter that rejects most nodes makes a search
//! explore much of the graph.
//!
//! Batches are linked in parallel but deterministically: a batch is cut into groups
//! (`len/32` nodes, at most 256); each node of a group finds its neighbours on the
//! graph as it was before the group plus, compared directly, the other nodes of the
//! group; then the links are written in id order and every node receiving links
//! re-selects its list in its own task. The graph depends only on the keys, the
//! configuration and the sizes of the `add_batch` calls, never on the thread count —
//! and its recall matched inserting one node at a time in our tests.
//!
//! Memory: the keys, plus `4·(1 + 2M)` bytes per node for layer 0 and `4·(1 + M)` per
//! upper layer (1/M of the nodes have one, 1/M² two, …): about 132 bytes per node at
//! `M = 16`. The unit test asks recall@10 ≥ 0.95 against exact search on 20 000
//! uniformly random unit vectors of dimension 64. On the development machine, 1M × 512
//! `f32` keys (synthetic embeddings, see [`mod@bench`]) with `M = 16`,
//! `ef_construction = 100` took 13 minutes to build (less than one core free); a
//! query at `ef_search = 256` took 1.5 ms with recall@10 0.97, 37× faster than exact
//! search on one thread, and 2.9 ms with recall 0.99 at `ef_search = 512`.
//!
//! # The retrieval memory
//!
//! A chunk's value is a step range of the caller's trajectory storage
//! ([`Chunk`]: trajectory, task, start, len), not a copy of observations: the agent
//! already keeps its trajectories, and the memory stays independent of what a step
//! holds. Utility is a property of a trajectory (its normalised return, known once the
//! episode ends): [`RetrievalMemory::set_utility`] sets it for all its chunks; a
//! trajectory starts at 0.
//!
//! [`RetrievalMemory::retrieve`] follows the paper and the official code
//! (ml-jku/RA-DT, `src/buffers/cache.py`, whose Dark-Room evaluation settings are
//! [`RetrievalConfig::default`]):
//!
//! 1. the `top_l = 50` most similar chunks by cosine similarity (the official code
//!    L2-normalises keys and queries, as [`RetrievalMemory`] does), the query's own
//!    trajectory left out through the index's filter (`exclude_same_trjs`, an
//!    `IDSelectorNot` in faiss), optionally only the query's task (`only_same_task`);
//! 2. optionally, candidates with similarity above `query_cutoff` dropped (the
//!    official `sim_cutoff` 0.98, used in training so a query does not find itself);
//! 3. near-duplicates dropped: going from most to least similar, a candidate whose key
//!    has similarity ≥ `dedup` (0.98) to a candidate already kept;
//! 4. score `= minmax(similarity) + w_ret·minmax(utility) + w_task·[same task]`, with
//!    `minmax(x) = (x − min)/(max − min + 1e-8)` over the candidates left (as the
//!    official `min_max_norm_values`), and the best `n` returned (the official
//!    `reweight_top_k`, 1 for Dark-Room), ranked by score as `f32`, then similarity,
//!    then id.
//!
//! Where we differ: the official code deduplicates its memory once, when it is built
//! from a dataset (each key's 10 nearest keys of the same task, similarity > 0.98,
//! removed); a memory that grows while the agent acts would need that repeated on every
//! insertion, so step 3 applies the same threshold to the retrieved list instead, and
//! the index keeps every chunk. The official code also samples random or same-task
//! chunks with some probabilities in training and orders the chosen chunks by return
//! before the model reads them; those belong to the agent. [`RetrievalConfig::training`]
//! gives the official training weights.
//!
//! # Saved format
//!
//! [`RetrievalMemory::to_bytes`] writes, little-endian:
//!
//! ```text
//! magic "AGRT"  version u32 = 1  dim u64  key type u8 (1 f32, 2 f16, 3 i8)
//! index u8 (1 exact, 2 HNSW)  trajectories u64 (T)  chunks u64 (N)
//! [HNSW: m u32, ef_construction u32, ef_search u32, seed u64, entry u32 (u32::MAX: empty)]
//! trajectories  T × (id u64, task u32, utility f32)
//! chunks        N × (trajectory slot u32, len u32, start u64)
//! keys          N × dim values (f32, f16 bits, or i8 codes), then [i8: N scales f32]
//! [HNSW: layer 0, N × (count u32 + 2m links u32); then for each node in order, its
//!  levels 1..=level × (count u32 + m links u32); levels follow from seed and id]
//! checksum u64 of every byte before it (the replay memories' checksum)
//! ```
//!
//! So `N × (16 + key_bytes [+ 4(1 + 2m) + upper links]) + 16T + 34 [+ 24] + 8` bytes.
//! [`RetrievalMemory::from_bytes`] reads the header, bounds the counts by the input's
//! length, computes the exact length the header implies and checks it (truncated or
//! trailing bytes), then the checksum, and only then allocates and reads, checking
//! every value (finite keys and utilities, codes in ±127, slots and links in range,
//! links only to nodes of their layer, the entry point on the top layer, no
//! trajectory without a chunk). Every failure is a
//! [`MemoryError::RetrievalLoad`](crate::MemoryError::RetrievalLoad) naming what is
//! wrong; no input panics, and nothing is allocated beyond a small multiple of the
//! input's size.

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
