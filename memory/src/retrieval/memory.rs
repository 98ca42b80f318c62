//! The retrieval memory of RA-DT: sub-trajectory chunks with keys, retrieved by
//! similarity, deduplicated and rescored by utility.

use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;

use super::exact::ExactIndex;
use super::hnsw::{HnswConfig, HnswIndex};
use super::kernels;
use super::keys::KeyType;
use super::topk::Hit;
use super::{BatchFilter, VectorIndex};
use crate::error::{MemoryError, Result};

/// A chunk: where its value lies in the caller's trajectory storage.
///
/// The memory keeps no observations or actions: a chunk's value is the step range
/// `start..start + len` of trajectory `trajectory` in whatever storage the caller
/// keeps (RA-DT's value is the chunk's 25 steps and the 25 after them, so `len` is
/// 50 where the trajectory is long enough). The caller slices its own data with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// The trajectory (episode) it comes from, in the caller's numbering.
    pub trajectory: u64,
    /// The task of that trajectory; every chunk of a trajectory has the same.
    pub task: u32,
    /// First step of the value, in the caller's indexing of the trajectory.
    pub start: u64,
    /// Steps in the value (at least 1).
    pub len: u32,
}

/// Which index a [`RetrievalMemory`] searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexConfig {
    /// [`ExactIndex`] with keys stored as `key_type` (the default: `f32`).
    Exact {
        /// How keys are stored.
        key_type: KeyType,
    },
    /// [`HnswIndex`], approximate, for large memories.
    Hnsw(HnswConfig),
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig::Exact {
            key_type: KeyType::F32,
        }
    }
}

/// How [`RetrievalMemory::retrieve`] selects chunks. The defaults are the official
/// code's evaluation settings for Dark-Room (`configs/agent_params/radt_disc_icl.yaml`:
/// `top_k` 50, `return_weight` 1, `reweight_top_k` 1), with deduplication of the
/// retrieved list at 0.98.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetrievalConfig {
    /// Candidates taken from the index by similarity (the paper's top-l, 50).
    pub top_l: usize,
    /// Chunks returned after rescoring (the official `reweight_top_k`, 1).
    pub n: usize,
    /// Drop a candidate whose key has similarity ≥ this with a candidate already kept
    /// (candidates visited from most to least similar to the query). `None` keeps
    /// near-duplicates. Default 0.98.
    pub dedup: Option<f32>,
    /// Drop candidates whose similarity to the query is above this (the official
    /// `sim_cutoff`, 0.98 while training, so that a training query does not retrieve
    /// itself). Default `None`.
    pub query_cutoff: Option<f32>,
    /// Exclude chunks of the query's own trajectory (`Query::trajectory`). Default
    /// true (the official `exclude_same_trjs`).
    pub exclude_own_trajectory: bool,
    /// Only chunks of the query's task (`Query::task`; the official `only_same_task`).
    /// Default false.
    pub same_task_only: bool,
    /// Weight of the min-max-normalised utility in the score (the official
    /// `return_weight`: 1 in evaluation, 0 in training). Default 1.
    pub w_ret: f32,
    /// Weight of "same task as the query" in the score (the official `task_weight`:
    /// 1 in training, 0 in evaluation). Default 0.
    pub w_task: f32,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            top_l: 50,
            n: 1,
            dedup: Some(0.98),
            query_cutoff: None,
            exclude_own_trajectory: true,
            same_task_only: false,
            w_ret: 1.0,
            w_task: 0.0,
        }
    }
}

impl RetrievalConfig {
    /// The official code's training settings: `task_weight` 1, no return weight,
    /// `sim_cutoff` 0.98, own trajectory excluded.
    pub fn training() -> Self {
        RetrievalConfig {
            query_cutoff: Some(0.98),
            w_ret: 0.0,
            w_task: 1.0,
            ..RetrievalConfig::default()
        }
    }

    fn check(&self) -> Result<()> {
        let finite = |x: Option<f32>| x.is_none_or(f32::is_finite);
        if self.top_l == 0
            || self.n == 0
            || !finite(self.dedup)
            || !finite(self.query_cutoff)
            || !self.w_ret.is_finite()
            || !self.w_task.is_finite()
        {
            return Err(MemoryError::InvalidConfig(format!(
                "retrieval needs top_l, n ≥ 1 and finite thresholds and weights: {self:?}"
            )));
        }
        Ok(())
    }
}

/// What a retrieval is asked with.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The query vector (normalised by the memory; it must not be zero).
    pub key: &'a [f32],
    /// The trajectory the query comes from, whose chunks
    /// [`RetrievalConfig::exclude_own_trajectory`] leaves out.
    pub trajectory: Option<u64>,
    /// The query's task, for [`RetrievalConfig::w_task`] and
    /// [`RetrievalConfig::same_task_only`].
    pub task: Option<u32>,
}

/// One retrieved chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retrieved {
    /// The chunk's id (its insertion position).
    pub id: u32,
    /// Where its value lies.
    pub chunk: Chunk,
    /// Its trajectory's utility when retrieved.
    pub utility: f32,
    /// Cosine similarity of its key and the query.
    pub similarity: f32,
    /// The rescored value it was ranked by.
    pub score: f32,
}

#[derive(Clone)]
pub(crate) enum AnyIndex {
    Exact(ExactIndex),
    Hnsw(HnswIndex),
}

impl AnyIndex {
    pub(crate) fn get(&self) -> &dyn VectorIndex {
        match self {
            AnyIndex::Exact(i) => i,
            AnyIndex::Hnsw(i) => i,
        }
    }

    fn get_mut(&mut self) -> &mut dyn VectorIndex {
        match self {
            AnyIndex::Exact(i) => i,
            AnyIndex::Hnsw(i) => i,
        }
    }
}

/// A trajectory's task and utility.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Trajectory {
    pub(crate) id: u64,
    pub(crate) task: u32,
    pub(crate) utility: f32,
}

/// A chunk as stored: its trajectory by slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stored {
    pub(crate) slot: u32,
    pub(crate) start: u64,
    pub(crate) len: u32,
}

/// RA-DT's external memory (see the [module docs](super)): chunks of past
/// trajectories, each with a key from a frozen embedding model; retrieval by cosine
/// similarity, deduplication, exclusion of the query's own trajectory and rescoring by
/// utility.
///
/// ```
/// use agentry_memory::retrieval::{Chunk, IndexConfig, Query, RetrievalConfig, RetrievalMemory};
///
/// let mut memory = RetrievalMemory::new(2, IndexConfig::default())?;
/// let chunk = |trajectory, start| Chunk { trajectory, task: 0, start, len: 50 };
/// memory.insert(chunk(1, 0), &[1.0, 0.0])?;
/// memory.insert(chunk(2, 0), &[0.8, 0.6])?;
/// memory.insert(chunk(3, 25), &[0.0, 1.0])?;
/// memory.set_utility(1, 0.2)?; // normalised returns, once each episode ends
/// memory.set_utility(2, 0.9)?;
/// memory.set_utility(3, 1.0)?;
/// let config = RetrievalConfig { n: 2, ..RetrievalConfig::default() };
/// let query = Query { key: &[1.0, 0.2], trajectory: Some(4), task: Some(0) };
/// let got = memory.retrieve(&query, &config)?;
/// // Trajectory 2 is less similar than 1 (0.90 against 0.98) and far more useful.
/// assert_eq!(got[0].chunk.trajectory, 2);
/// assert_eq!(got[1].chunk.trajectory, 1);
/// # Ok::<(), agentry_memory::MemoryError>(())
/// ```
#[derive(Clone)]
pub struct RetrievalMemory {
    pub(crate) index: AnyIndex,
    pub(crate) trajectories: Vec<Trajectory>,
    pub(crate) slots: HashMap<u64, u32>,
    pub(crate) chunks: Vec<Stored>,
}

impl std::fmt::Debug for RetrievalMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let index: &dyn std::fmt::Debug = match &self.index {
            AnyIndex::Exact(i) => i,
            AnyIndex::Hnsw(i) => i,
        };
        f.debug_struct("RetrievalMemory")
            .field("chunks", &self.chunks.len())
            .field("trajectories", &self.trajectories.len())
            .field("index", index)
            .finish_non_exhaustive()
    }
}

/// `key / ‖key‖`, or an error for a zero or non-finite key.
fn normalised(key: &[f32], what: &str) -> Result<Vec<f32>> {
    if let Some(i) = key.iter().position(|x| !x.is_finite()) {
        return Err(MemoryError::InvalidKey(format!(
            "{what} value {i} is {}",
            key[i]
        )));
    }
    let norm = key
        .iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(MemoryError::InvalidKey(format!(
            "{what} has norm {norm}; it needs a direction"
        )));
    }
    Ok(key.iter().map(|&x| (f64::from(x) / norm) as f32).collect())
}

/// `(x − min) / (max − min + 1e-8)` over `values`, as the official code min-max
/// normalises similarities and returns.
fn minmax(values: impl Iterator<Item = f64> + Clone) -> impl Fn(f64) -> f64 {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    move |v| (v - lo) / (hi - lo + 1e-8)
}

impl RetrievalMemory {
    /// An empty memory of keys with `dim` values.
    pub fn new(dim: usize, index: IndexConfig) -> Result<Self> {
        let index = match index {
            IndexConfig::Exact { key_type } => AnyIndex::Exact(ExactIndex::new(dim, key_type)?),
            IndexConfig::Hnsw(config) => AnyIndex::Hnsw(HnswIndex::new(dim, config)?),
        };
        Ok(RetrievalMemory {
            index,
            trajectories: Vec::new(),
            slots: HashMap::new(),
            chunks: Vec::new(),
        })
    }

    /// Values per key.
    pub fn dim(&self) -> usize {
        self.index.get().dim()
    }

    /// Chunks held.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether no chunk is held.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Trajectories with at least one chunk.
    pub fn trajectories(&self) -> usize {
        self.trajectories.len()
    }

    /// The index searched.
    pub fn index(&self) -> &dyn VectorIndex {
        self.index.get()
    }

    /// The HNSW index, if that is the kind.
    pub fn hnsw(&self) -> Option<&HnswIndex> {
        match &self.index {
            AnyIndex::Hnsw(h) => Some(h),
            AnyIndex::Exact(_) => None,
        }
    }

    /// Sets an HNSW index's `ef_search`; an error for an exact index.
    pub fn set_ef_search(&mut self, ef_search: usize) -> Result<()> {
        match &mut self.index {
            AnyIndex::Hnsw(h) => h.set_ef_search(ef_search),
            AnyIndex::Exact(_) => Err(MemoryError::InvalidConfig(
                "ef_search is a parameter of the HNSW index; this memory is exact".into(),
            )),
        }
    }

    /// Chunk `id`, if held.
    pub fn chunk(&self, id: u32) -> Option<Chunk> {
        self.chunks.get(id as usize).map(|c| self.public(c))
    }

    /// The utility of `trajectory` (0 until [`set_utility`](Self::set_utility)).
    pub fn utility(&self, trajectory: u64) -> Option<f32> {
        self.slots
            .get(&trajectory)
            .map(|&s| self.trajectories[s as usize].utility)
    }

    fn public(&self, c: &Stored) -> Chunk {
        let t = &self.trajectories[c.slot as usize];
        Chunk {
            trajectory: t.id,
            task: t.task,
            start: c.start,
            len: c.len,
        }
    }

    /// Checks a chunk against the memory and the chunks before it in a batch
    /// (`pending`: new trajectories and their tasks).
    fn check_chunk(&self, chunk: &Chunk, pending: &HashMap<u64, u32>) -> Result<()> {
        if chunk.len == 0 || chunk.start.checked_add(u64::from(chunk.len)).is_none() {
            return Err(MemoryError::InvalidConfig(format!(
                "chunk {chunk:?}: len must be ≥ 1 and start + len must fit in u64"
            )));
        }
        let known = self
            .slots
            .get(&chunk.trajectory)
            .map(|&s| self.trajectories[s as usize].task)
            .or_else(|| pending.get(&chunk.trajectory).copied());
        if let Some(task) = known
            && task != chunk.task
        {
            return Err(MemoryError::InvalidConfig(format!(
                "trajectory {} belongs to task {task}, not {}",
                chunk.trajectory, chunk.task
            )));
        }
        Ok(())
    }

    /// Stores a chunk with its key (normalised here); returns the chunk's id. A new
    /// trajectory starts with utility 0.
    pub fn insert(&mut self, chunk: Chunk, key: &[f32]) -> Result<u32> {
        Ok(self.insert_batch(&[chunk], key)?.start)
    }

    /// Stores `chunks` with their keys laid end to end (`chunks.len() × dim` values);
    /// everything is checked before anything is stored. An HNSW memory links a large
    /// batch in parallel.
    pub fn insert_batch(&mut self, chunks: &[Chunk], keys: &[f32]) -> Result<Range<u32>> {
        let dim = self.dim();
        if keys.len() != chunks.len() * dim || chunks.is_empty() {
            return Err(MemoryError::Length {
                what: "keys (chunks × dim, at least one chunk)",
                expected: chunks.len().max(1) * dim,
                got: keys.len(),
            });
        }
        let mut pending = HashMap::new();
        let mut normal = Vec::with_capacity(keys.len());
        for (chunk, key) in chunks.iter().zip(keys.chunks_exact(dim)) {
            self.check_chunk(chunk, &pending)?;
            if !self.slots.contains_key(&chunk.trajectory) {
                pending.insert(chunk.trajectory, chunk.task);
            }
            normal.extend(normalised(key, "key")?);
        }
        let ids = self.index.get_mut().add_batch(&normal)?;
        for chunk in chunks {
            let slot = match self.slots.get(&chunk.trajectory) {
                Some(&s) => s,
                None => {
                    let s = self.trajectories.len() as u32;
                    self.trajectories.push(Trajectory {
                        id: chunk.trajectory,
                        task: chunk.task,
                        utility: 0.0,
                    });
                    self.slots.insert(chunk.trajectory, s);
                    s
                }
            };
            self.chunks.push(Stored {
                slot,
                start: chunk.start,
                len: chunk.len,
            });
        }
        Ok(ids)
    }

    /// Sets the utility of every chunk of `trajectory` (RA-DT: its return, normalised
    /// by the caller, e.g. to [0, 1] with the task's random and expert returns).
    pub fn set_utility(&mut self, trajectory: u64, utility: f32) -> Result<()> {
        if !utility.is_finite() {
            return Err(MemoryError::InvalidConfig(format!(
                "utility {utility} of trajectory {trajectory} is not finite"
            )));
        }
        let slot = *self
            .slots
            .get(&trajectory)
            .ok_or(MemoryError::UnknownTrajectory(trajectory))?;
        self.trajectories[slot as usize].utility = utility;
        Ok(())
    }

    /// Which chunk ids a query may retrieve under `config`.
    fn keep<'a>(
        &'a self,
        query: &Query<'_>,
        config: &RetrievalConfig,
    ) -> impl Fn(u32) -> bool + Sync + 'a {
        let own = query
            .trajectory
            .filter(|_| config.exclude_own_trajectory)
            .and_then(|t| self.slots.get(&t).copied());
        let task = query.task.filter(|_| config.same_task_only);
        move |id: u32| {
            let slot = self.chunks[id as usize].slot;
            own != Some(slot) && task.is_none_or(|t| self.trajectories[slot as usize].task == t)
        }
    }

    /// The best [`RetrievalConfig::n`] chunks for `query`, best first:
    ///
    /// 1. the [`top_l`](RetrievalConfig::top_l) most similar chunks (cosine), leaving
    ///    out the query's own trajectory (and other tasks, if asked);
    /// 2. without those above [`query_cutoff`](RetrievalConfig::query_cutoff);
    /// 3. without near-duplicates: from most to least similar, a chunk whose key has
    ///    similarity ≥ [`dedup`](RetrievalConfig::dedup) with a chunk kept is dropped;
    /// 4. rescored `minmax(similarity) + w_ret · minmax(utility) + w_task · [same task]`
    ///    over the chunks left, and ranked by score, then similarity, then id.
    pub fn retrieve(&self, query: &Query<'_>, config: &RetrievalConfig) -> Result<Vec<Retrieved>> {
        config.check()?;
        let q = self.query_key(query)?;
        let keep = self.keep(query, config);
        let hits = self.index.get().search(&q, config.top_l, Some(&keep))?;
        Ok(self.rescore(hits, query, config))
    }

    /// [`retrieve`](Self::retrieve) for many queries, in one pass over the keys for an
    /// exact index (the training batch of RA-DT), in parallel for HNSW.
    pub fn retrieve_batch(
        &self,
        queries: &[Query<'_>],
        config: &RetrievalConfig,
    ) -> Result<Vec<Vec<Retrieved>>> {
        config.check()?;
        let mut keys = Vec::with_capacity(queries.len() * self.dim());
        for query in queries {
            keys.extend(self.query_key(query)?);
        }
        let keeps: Vec<_> = queries.iter().map(|q| self.keep(q, config)).collect();
        let filter = |qi: usize, id: u32| keeps[qi](id);
        let filter: BatchFilter<'_> = &filter;
        let hits = self
            .index
            .get()
            .search_batch(&keys, config.top_l, Some(filter))?;
        Ok(hits
            .into_par_iter()
            .zip(queries.par_iter())
            .map(|(h, q)| self.rescore(h, q, config))
            .collect())
    }

    fn query_key(&self, query: &Query<'_>) -> Result<Vec<f32>> {
        if query.key.len() != self.dim() {
            return Err(MemoryError::Length {
                what: "query key",
                expected: self.dim(),
                got: query.key.len(),
            });
        }
        normalised(query.key, "query key")
    }

    /// Steps 2–4 of [`retrieve`](Self::retrieve) on the candidates (best first).
    fn rescore(
        &self,
        mut hits: Vec<Hit>,
        query: &Query<'_>,
        config: &RetrievalConfig,
    ) -> Vec<Retrieved> {
        if let Some(cutoff) = config.query_cutoff {
            hits.retain(|h| h.score <= cutoff);
        }
        if let Some(threshold) = config.dedup {
            hits = self.deduplicate(&hits, threshold);
        }
        let utility = |h: &Hit| {
            let slot = self.chunks[h.id as usize].slot as usize;
            f64::from(self.trajectories[slot].utility)
        };
        let sim = minmax(hits.iter().map(|h| f64::from(h.score)));
        let ret = minmax(hits.iter().map(utility));
        let mut out: Vec<Retrieved> = hits
            .iter()
            .map(|h| {
                let chunk = self.public(&self.chunks[h.id as usize]);
                let same_task = query.task == Some(chunk.task);
                let score = sim(f64::from(h.score))
                    + f64::from(config.w_ret) * ret(utility(h))
                    + if same_task {
                        f64::from(config.w_task)
                    } else {
                        0.0
                    };
                Retrieved {
                    id: h.id,
                    chunk,
                    utility: utility(h) as f32,
                    similarity: h.score,
                    score: score as f32,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.similarity.total_cmp(&a.similarity))
                .then(a.id.cmp(&b.id))
        });
        out.truncate(config.n);
        out
    }

    /// Greedy near-duplicate removal over candidates ordered best first.
    fn deduplicate(&self, hits: &[Hit], threshold: f32) -> Vec<Hit> {
        let dim = self.dim();
        let index = self.index.get();
        let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
        let mut kept_keys: Vec<f32> = Vec::with_capacity(hits.len() * dim);
        let mut key = vec![0f32; dim];
        for h in hits {
            if index.reconstruct(h.id, &mut key).is_err() {
                continue; // ids come from the index itself
            }
            let duplicate = kept_keys
                .chunks_exact(dim)
                .any(|other| kernels::dot_f32(&key, other) >= threshold);
            if !duplicate {
                kept.push(*h);
                kept_keys.extend_from_slice(&key);
            }
        }
        kept
    }
}
