//! Exact inner-product search over contiguous keys.

use std::ops::Range;

use rayon::prelude::*;

use super::keys::{KeyStore, KeyType};
use super::topk::{Hit, TopK};
use super::{BatchFilter, Filter, VectorIndex};
use crate::error::{MemoryError, Result};

/// Below this many stored values (`len × dim`) a search stays on the calling thread:
/// 2¹⁸ values is 1 MB of `f32` keys, scanned in well under 100 µs, about what handing
/// work to another thread and merging costs.
pub const PARALLEL_MIN_VALUES: usize = 1 << 18;

/// Keys of a multi-query scan processed together: each block of keys is read from
/// memory once and scored against every query while it sits in cache (128 keys of 512
/// `f32` are 256 KB).
const BATCH_KEYS: usize = 128;

/// Exact top-k by inner product: every key is scored (see the [module docs](super)).
///
/// Keys are stored contiguously as [`KeyType::F32`], [`KeyType::F16`] or
/// [`KeyType::I8`]; ids are insertion positions `0, 1, 2, …` (as in faiss' flat
/// index). A search scans the keys in order into a bounded heap; on an index of at
/// least [`PARALLEL_MIN_VALUES`] values it splits the keys into contiguous ranges over
/// the threads of the current rayon pool (run it inside `ThreadPool::install` to choose
/// the pool), one heap per range, merged at the end. Results are identical for any
/// number of threads.
///
/// ```
/// use agentry_memory::retrieval::{ExactIndex, KeyType, VectorIndex};
///
/// let mut index = ExactIndex::new(2, KeyType::F32)?;
/// index.add(&[1.0, 0.0])?;
/// index.add(&[0.0, 1.0])?;
/// index.add(&[0.6, 0.8])?;
/// let hits = index.search(&[0.0, 1.0], 2, None)?;
/// assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [1, 2]);
/// // A filter keeps the ids it returns true for.
/// let hits = index.search(&[0.0, 1.0], 1, Some(&|id| id != 1))?;
/// assert_eq!(hits[0].id, 2);
/// # Ok::<(), agentry_memory::MemoryError>(())
/// ```
#[derive(Clone)]
pub struct ExactIndex {
    store: KeyStore,
    parallel_min_values: usize,
}

impl ExactIndex {
    /// An empty index of keys with `dim` values, stored as `key_type`.
    pub fn new(dim: usize, key_type: KeyType) -> Result<Self> {
        if dim == 0 {
            return Err(MemoryError::InvalidConfig(
                "a vector index needs dim ≥ 1".into(),
            ));
        }
        Ok(ExactIndex {
            store: KeyStore::new(dim, key_type),
            parallel_min_values: PARALLEL_MIN_VALUES,
        })
    }

    /// Sets the size (`len × dim` values) from which searches use several threads
    /// (default [`PARALLEL_MIN_VALUES`]; `usize::MAX` keeps every search on one thread).
    pub fn with_parallel_threshold(mut self, values: usize) -> Self {
        self.parallel_min_values = values;
        self
    }

    /// Bytes the stored keys occupy: what one search reads.
    pub fn key_bytes(&self) -> usize {
        self.store.bytes()
    }

    /// Ensures room for `more` keys.
    pub fn reserve(&mut self, more: usize) {
        self.store.reserve(more);
    }

    pub(crate) fn store(&self) -> &KeyStore {
        &self.store
    }

    pub(crate) fn from_store(store: KeyStore) -> Self {
        ExactIndex {
            store,
            parallel_min_values: PARALLEL_MIN_VALUES,
        }
    }

    /// Contiguous ranges of keys for the threads of the current pool (one range when
    /// the index is small or the pool has one thread).
    fn ranges(&self) -> Vec<Range<usize>> {
        let n = self.store.len();
        let threads = rayon::current_num_threads();
        let values = n.saturating_mul(self.store.dim());
        if threads <= 1 || values < self.parallel_min_values {
            return std::iter::once(0..n).collect();
        }
        // A few ranges per thread, so a thread slowed by other work does not hold
        // the others up; none smaller than the threshold.
        let min_keys = (self.parallel_min_values / self.store.dim()).max(1);
        let parts = (threads * 4).min(n / min_keys).max(1);
        let per = n.div_ceil(parts);
        (0..parts)
            .map(|p| p * per..((p + 1) * per).min(n))
            .filter(|r| !r.is_empty())
            .collect()
    }

    fn check_query(&self, query: &[f32]) -> Result<()> {
        if query.len() != self.store.dim() {
            return Err(MemoryError::Length {
                what: "query",
                expected: self.store.dim(),
                got: query.len(),
            });
        }
        if let Some(i) = query.iter().position(|x| !x.is_finite()) {
            return Err(MemoryError::InvalidKey(format!(
                "query value {i} is {}",
                query[i]
            )));
        }
        Ok(())
    }
}

impl std::fmt::Debug for ExactIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactIndex")
            .field("dim", &self.store.dim())
            .field("len", &self.store.len())
            .field("key_type", &self.store.key_type())
            .finish_non_exhaustive()
    }
}

impl VectorIndex for ExactIndex {
    fn dim(&self) -> usize {
        self.store.dim()
    }

    fn len(&self) -> usize {
        self.store.len()
    }

    fn key_type(&self) -> KeyType {
        self.store.key_type()
    }

    fn add(&mut self, key: &[f32]) -> Result<u32> {
        Ok(self.add_batch(key)?.start)
    }

    fn add_batch(&mut self, keys: &[f32]) -> Result<Range<u32>> {
        let dim = self.store.dim();
        let (first, count) = check_batch(&self.store, keys)?;
        self.store.reserve(count);
        for key in keys.chunks_exact(dim) {
            self.store.push(key);
        }
        Ok(first..first + count as u32)
    }

    fn search(&self, query: &[f32], k: usize, filter: Option<Filter<'_>>) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        let k = k.min(self.store.len());
        let ranges = self.ranges();
        if ranges.len() == 1 {
            let mut top = TopK::new(k);
            self.store
                .scan(query, 0..self.store.len(), &mut top, filter);
            return Ok(top.into_sorted());
        }
        let top = ranges
            .into_par_iter()
            .map(|r| {
                let mut top = TopK::new(k);
                self.store.scan(query, r, &mut top, filter);
                top
            })
            .reduce(
                || TopK::new(k),
                |mut a, b| {
                    a.merge(b);
                    a
                },
            );
        Ok(top.into_sorted())
    }

    fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        filter: Option<BatchFilter<'_>>,
    ) -> Result<Vec<Vec<Hit>>> {
        let dim = self.store.dim();
        if !queries.len().is_multiple_of(dim) {
            return Err(MemoryError::Length {
                what: "queries (a multiple of dim)",
                expected: queries.len() / dim * dim,
                got: queries.len(),
            });
        }
        for q in queries.chunks_exact(dim) {
            self.check_query(q)?;
        }
        let nq = queries.len() / dim;
        let k = k.min(self.store.len());
        // Every range scans its keys block by block against all queries.
        let scan = |r: Range<usize>| -> Vec<TopK> {
            let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
            let mut start = r.start;
            while start < r.end {
                let end = (start + BATCH_KEYS).min(r.end);
                for (qi, (q, top)) in queries.chunks_exact(dim).zip(&mut tops).enumerate() {
                    match filter {
                        Some(f) => {
                            let keep = move |id: u32| f(qi, id);
                            self.store.scan(q, start..end, top, Some(&keep));
                        }
                        None => self.store.scan(q, start..end, top, None),
                    }
                }
                start = end;
            }
            tops
        };
        let ranges = self.ranges();
        let tops = if ranges.len() == 1 {
            scan(0..self.store.len())
        } else {
            ranges.into_par_iter().map(scan).reduce(
                || (0..nq).map(|_| TopK::new(k)).collect(),
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        x.merge(y);
                    }
                    a
                },
            )
        };
        Ok(tops.into_iter().map(TopK::into_sorted).collect())
    }

    fn reconstruct(&self, id: u32, out: &mut [f32]) -> Result<()> {
        reconstruct(&self.store, id, out)
    }
}

/// Checks a batch of keys for `store`; returns the first new id and the count.
pub(crate) fn check_batch(store: &KeyStore, keys: &[f32]) -> Result<(u32, usize)> {
    let dim = store.dim();
    if keys.is_empty() || !keys.len().is_multiple_of(dim) {
        return Err(MemoryError::Length {
            what: "keys (a positive multiple of dim)",
            expected: (keys.len() / dim).max(1) * dim,
            got: keys.len(),
        });
    }
    let count = keys.len() / dim;
    let first = store.len();
    if first + count > u32::MAX as usize {
        return Err(MemoryError::InvalidConfig(format!(
            "a vector index holds at most {} keys",
            u32::MAX
        )));
    }
    for key in keys.chunks_exact(dim) {
        store.check(key, "key")?;
    }
    Ok((first as u32, count))
}

/// [`VectorIndex::reconstruct`] over a key store.
pub(crate) fn reconstruct(store: &KeyStore, id: u32, out: &mut [f32]) -> Result<()> {
    if out.len() != store.dim() {
        return Err(MemoryError::Length {
            what: "reconstruct output",
            expected: store.dim(),
            got: out.len(),
        });
    }
    if id as usize >= store.len() {
        return Err(MemoryError::UnknownIndex {
            index: id as u64,
            inserted: store.len() as u64,
        });
    }
    store.reconstruct(id as usize, out);
    Ok(())
}
