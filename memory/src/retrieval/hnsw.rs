//! A hierarchical navigable small world graph (Malkov and Yashunin 2018) over inner
//! products, built deterministically.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;

use rayon::prelude::*;

use super::exact::{check_batch, reconstruct};
use super::keys::{Keep, KeyStore, KeyType};
use super::topk::Hit;
use super::{BatchFilter, Filter, VectorIndex};
use crate::error::{MemoryError, Result};

/// The largest `m` a configuration may have.
const MAX_M: usize = 1024;
/// Levels above this are never drawn (with M ≥ 2 a level of 31 has probability 2⁻³¹).
pub(crate) const MAX_LEVEL: u8 = 31;

/// Parameters of an [`HnswIndex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HnswConfig {
    /// Links per node on the upper layers, and links a new node makes on every layer;
    /// layer 0 keeps up to `2·m` (hnswlib's `M`). At least 2.
    pub m: usize,
    /// Candidates kept while finding a new node's neighbours (`efConstruction`).
    pub ef_construction: usize,
    /// Candidates kept while searching, at least `k` (`efSearch`).
    pub ef_search: usize,
    /// Seeds the level of every node: the same keys added in the same calls give the
    /// same graph, whatever the number of threads.
    pub seed: u64,
    /// How the keys are stored (distances while building use the stored keys).
    pub key_type: KeyType,
}

impl Default for HnswConfig {
    /// `m` 16, `ef_construction` 200, `ef_search` 64, seed 0, `f32` keys (hnswlib's
    /// recommended starting point).
    fn default() -> Self {
        HnswConfig {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            seed: 0,
            key_type: KeyType::F32,
        }
    }
}

impl HnswConfig {
    pub(crate) fn check(&self) -> Result<()> {
        if !(2..=MAX_M).contains(&self.m) || self.ef_construction == 0 || self.ef_search == 0 {
            return Err(MemoryError::InvalidConfig(format!(
                "HNSW needs 2 ≤ m ≤ 1024 and ef_construction, ef_search ≥ 1; got m {}, \
                 ef_construction {}, ef_search {}",
                self.m, self.ef_construction, self.ef_search
            )));
        }
        Ok(())
    }

    /// Link slots of a node on `layer`.
    pub(crate) fn cap(&self, layer: usize) -> usize {
        if layer == 0 { 2 * self.m } else { self.m }
    }
}

/// The level of node `id`: `⌊−ln(u) / ln m⌋` for `u` uniform in (0, 1], drawn from a
/// hash of the seed and the id, so that no generator state needs saving.
pub(crate) fn level_of(seed: u64, id: u32, m: usize) -> u8 {
    let mut z = seed ^ (u64::from(id) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = ((z >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let level = (-u.ln() / (m as f64).ln()).floor();
    level.min(f64::from(MAX_LEVEL)) as u8
}

/// Approximate top-k by inner product over an HNSW graph (see the
/// [module docs](super)).
///
/// Nodes are the keys, with ids `0, 1, 2, …` in insertion order. Each node has a level
/// drawn from the seed; on each layer up to its level a new node links to up to `m`
/// others, chosen by the neighbour-selection heuristic of Malkov and Yashunin (a
/// candidate is skipped when it is more similar to a neighbour already chosen than to
/// the new node), and lists grow through back-links to `m` (`2m` on layer 0), as in
/// hnswlib. A search descends greedily from the
/// top layer and explores layer 0 with `max(ef_search, k)` candidates; a filter
/// decides which nodes may be returned, not which are traversed.
///
/// [`add_batch`](VectorIndex::add_batch) inserts large batches in parallel yet
/// deterministically: the keys are cut into groups (`len / 32` keys, at most 256, so
/// each is small next to the graph); every node of a group finds its neighbours in
/// parallel on the graph as it was before the group, plus the other nodes of its
/// group compared directly; then the links are written and each node that receives
/// new back-links re-selects its own list (in parallel, one node per task). The graph
/// therefore depends only on the keys, the configuration and how they were split into
/// `add`/`add_batch` calls.
///
/// ```
/// use agentry_memory::retrieval::{HnswConfig, HnswIndex, VectorIndex};
///
/// let mut index = HnswIndex::new(2, HnswConfig::default())?;
/// for i in 0..100 {
///     let a = i as f32 * 0.06;
///     index.add(&[a.cos(), a.sin()])?;
/// }
/// let hits = index.search(&[1.0, 0.0], 3, None)?;
/// assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [0, 1, 2]);
/// # Ok::<(), agentry_memory::MemoryError>(())
/// ```
#[derive(Clone)]
pub struct HnswIndex {
    pub(crate) config: HnswConfig,
    pub(crate) store: KeyStore,
    pub(crate) levels: Vec<u8>,
    /// Layer 0: per node `1 + 2m` slots, the link count then the links.
    pub(crate) layer0: Vec<u32>,
    /// Layers 1..=level: per node `level × (1 + m)` slots, empty for level 0.
    pub(crate) upper: Vec<Vec<u32>>,
    pub(crate) entry: Option<u32>,
}

/// A hit ordered so that the heap's maximum is the best.
#[derive(Clone, Copy)]
struct Near(Hit);
/// A hit ordered so that the heap's maximum is the worst.
#[derive(Clone, Copy)]
struct Far(Hit);

macro_rules! heap_order {
    ($t:ident, $a:ident, $b:ident, $cmp:expr) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == Ordering::Equal
            }
        }
        impl Eq for $t {}
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> Ordering {
                let ($a, $b) = (&self.0, &other.0);
                $cmp
            }
        }
    };
}
heap_order!(Near, a, b, b.rank(a));
heap_order!(Far, a, b, a.rank(b));

/// Nodes seen by the current search on this thread: a mark per node, valid when it
/// equals the epoch, so starting a search costs nothing.
struct Visited {
    epoch: u32,
    marks: Vec<u32>,
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { epoch: 0, marks: Vec::new() }) };
}

impl Visited {
    fn begin(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `id`; whether it was new.
    #[inline]
    fn insert(&mut self, id: u32) -> bool {
        let m = &mut self.marks[id as usize];
        if *m == self.epoch {
            false
        } else {
            *m = self.epoch;
            true
        }
    }
}

/// Runs `f` with this thread's visited set, cleared for `n` nodes.
fn with_visited<R>(n: usize, f: impl FnOnce(&mut Visited) -> R) -> R {
    VISITED.with(|v| {
        let mut v = v.borrow_mut();
        v.begin(n);
        f(&mut v)
    })
}

impl HnswIndex {
    /// An empty index of keys with `dim` values.
    pub fn new(dim: usize, config: HnswConfig) -> Result<Self> {
        config.check()?;
        if dim == 0 {
            return Err(MemoryError::InvalidConfig(
                "a vector index needs dim ≥ 1".into(),
            ));
        }
        Ok(HnswIndex {
            config,
            store: KeyStore::new(dim, config.key_type),
            levels: Vec::new(),
            layer0: Vec::new(),
            upper: Vec::new(),
            entry: None,
        })
    }

    /// The parameters.
    pub fn config(&self) -> &HnswConfig {
        &self.config
    }

    /// Sets `ef_search` (at least 1) for later searches.
    pub fn set_ef_search(&mut self, ef_search: usize) -> Result<()> {
        let config = HnswConfig {
            ef_search,
            ..self.config
        };
        config.check()?;
        self.config = config;
        Ok(())
    }

    /// Bytes of the keys and of the graph's links.
    pub fn bytes(&self) -> usize {
        self.store.bytes()
            + 4 * self.layer0.len()
            + self.upper.iter().map(|u| 4 * u.len()).sum::<usize>()
            + self.levels.len()
    }

    /// The top layer (of the entry point); `None` when empty.
    pub fn top_level(&self) -> Option<u8> {
        self.entry.map(|e| self.levels[e as usize])
    }

    /// The links of `node` on `layer` (which must be ≤ its level).
    #[inline]
    pub(crate) fn links(&self, node: u32, layer: usize) -> &[u32] {
        let slots = if layer == 0 {
            let w = 1 + self.config.cap(0);
            &self.layer0[node as usize * w..(node as usize + 1) * w]
        } else {
            let w = 1 + self.config.m;
            &self.upper[node as usize][(layer - 1) * w..layer * w]
        };
        &slots[1..1 + slots[0] as usize]
    }

    fn set_links(&mut self, node: u32, layer: usize, links: &[u32]) {
        let cap = self.config.cap(layer);
        debug_assert!(links.len() <= cap);
        let slots = if layer == 0 {
            let w = 1 + cap;
            &mut self.layer0[node as usize * w..(node as usize + 1) * w]
        } else {
            let w = 1 + cap;
            &mut self.upper[node as usize][(layer - 1) * w..layer * w]
        };
        slots[0] = links.len() as u32;
        slots[1..1 + links.len()].copy_from_slice(links);
    }

    /// The similarity of two stored keys; `scratch` holds a decoded key when the keys
    /// are not `f32`.
    fn pair(&self, a: u32, b: u32, scratch: &mut Vec<f32>) -> f32 {
        match self.store.f32_key(a as usize) {
            Some(q) => self.store.dot(q, b as usize),
            None => {
                scratch.resize(self.store.dim(), 0.0);
                self.store.reconstruct(a as usize, scratch);
                self.store.dot(scratch, b as usize)
            }
        }
    }

    fn hit(&self, q: &[f32], id: u32) -> Hit {
        Hit {
            id,
            score: self.store.dot(q, id as usize),
        }
    }

    /// Greedy descent on one layer: moves to the best neighbour while it improves.
    fn greedy(&self, q: &[f32], mut cur: Hit, layer: usize) -> Hit {
        loop {
            let mut moved = false;
            for &nb in self.links(cur.id, layer) {
                let h = self.hit(q, nb);
                if h.rank(&cur) == Ordering::Less {
                    cur = h;
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// The best `ef` nodes kept by `keep` found from `entries` on `layer`, best first.
    fn search_layer(
        &self,
        q: &[f32],
        entries: &[Hit],
        ef: usize,
        layer: usize,
        keep: Keep<'_>,
        visited: &mut Visited,
    ) -> Vec<Hit> {
        let mut candidates: BinaryHeap<Near> = BinaryHeap::with_capacity(ef * 4);
        let mut results: BinaryHeap<Far> = BinaryHeap::with_capacity(ef + 1);
        let kept = |id: u32| keep.is_none_or(|f| f(id));
        let mut fresh: Vec<u32> = Vec::with_capacity(self.config.cap(0));
        for &e in entries {
            if !visited.insert(e.id) {
                continue;
            }
            candidates.push(Near(e));
            if kept(e.id) {
                results.push(Far(e));
                if results.len() > ef {
                    results.pop();
                }
            }
        }
        while let Some(Near(c)) = candidates.pop() {
            if results.len() >= ef
                && let Some(worst) = results.peek()
                && c.rank(&worst.0) == Ordering::Greater
            {
                break;
            }
            // The neighbours not seen yet, prefetched together before any is scored.
            fresh.clear();
            for &nb in self.links(c.id, layer) {
                if visited.insert(nb) {
                    self.store.prefetch(nb as usize);
                    fresh.push(nb);
                }
            }
            for &nb in &fresh {
                let h = self.hit(q, nb);
                let enters = results.len() < ef
                    || results
                        .peek()
                        .is_some_and(|w| h.rank(&w.0) == Ordering::Less);
                if enters {
                    candidates.push(Near(h));
                    if kept(nb) {
                        results.push(Far(h));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<Hit> = results.into_iter().map(|f| f.0).collect();
        out.sort_by(Hit::rank);
        out
    }

    /// Malkov and Yashunin's heuristic over `candidates` (best first, scored against
    /// the node being linked): keeps a candidate unless it is more similar to one
    /// already kept than to that node; at most `m`.
    fn select(&self, candidates: &[Hit], m: usize, scratch: &mut Vec<f32>) -> Vec<u32> {
        let mut chosen: Vec<u32> = Vec::with_capacity(m);
        for c in candidates {
            if chosen.len() >= m {
                break;
            }
            if chosen
                .iter()
                .all(|&r| self.pair(c.id, r, scratch) <= c.score)
            {
                chosen.push(c.id);
            }
        }
        chosen
    }

    /// The links of new node `x` (query `q`) on each of its layers, found on the graph
    /// as it stands (nodes before `group`) and among the other nodes of `group`.
    fn plan(&self, x: u32, q: &[f32], group: Range<u32>, visited: &mut Visited) -> Vec<Vec<u32>> {
        let mut scratch = Vec::new();
        let lx = self.levels[x as usize] as usize;
        let entry = self
            .entry
            .expect("the first node is placed before any plan");
        let top = self.levels[entry as usize] as usize;
        let mut cur = self.hit(q, entry);
        for layer in (lx + 1..=top).rev() {
            cur = self.greedy(q, cur, layer);
        }
        let peers: Vec<Hit> = group.filter(|&y| y != x).map(|y| self.hit(q, y)).collect();
        let mut entries = vec![cur];
        let mut plan = vec![Vec::new(); lx + 1];
        for layer in (0..=lx).rev() {
            let mut candidates = if layer <= top {
                visited.begin(self.levels.len());
                let found = self.search_layer(
                    q,
                    &entries,
                    self.config.ef_construction,
                    layer,
                    None,
                    visited,
                );
                entries.clone_from(&found);
                found
            } else {
                Vec::new()
            };
            candidates.extend(
                peers
                    .iter()
                    .filter(|h| self.levels[h.id as usize] as usize >= layer),
            );
            candidates.sort_by(Hit::rank);
            plan[layer] = self.select(&candidates, self.config.m, &mut scratch);
        }
        plan
    }

    /// The new list of `target` on `layer` after links from `sources`: appended while
    /// there is room, else re-selected by the heuristic among old and new.
    fn relink(&self, target: u32, layer: usize, sources: &[u32]) -> Vec<u32> {
        let mut links = self.links(target, layer).to_vec();
        for &s in sources {
            if s != target && !links.contains(&s) {
                links.push(s);
            }
        }
        let cap = self.config.cap(layer);
        if links.len() <= cap {
            return links;
        }
        let mut scratch = Vec::new();
        let mut q = vec![0f32; self.store.dim()];
        self.store.reconstruct(target as usize, &mut q);
        links.iter().for_each(|&y| self.store.prefetch(y as usize));
        let mut candidates: Vec<Hit> = links.iter().map(|&y| self.hit(&q, y)).collect();
        candidates.sort_by(Hit::rank);
        self.select(&candidates, cap, &mut scratch)
    }

    /// Links the nodes `first..first + count`, whose keys are stored already;
    /// `keys` are their `f32` values.
    fn link(&mut self, keys: &[f32], first: u32, count: usize) {
        let dim = self.store.dim();
        let end = first + count as u32;
        let mut next = first;
        if self.entry.is_none() {
            self.entry = Some(first);
            next += 1;
        }
        while next < end {
            let size = (next as usize / 32)
                .clamp(1, 256)
                .min((end - next) as usize) as u32;
            let group = next..next + size;
            let plans: Vec<Vec<Vec<u32>>> = {
                let this = &*self;
                let plan = |x: u32| {
                    let i = (x - first) as usize;
                    let q = &keys[i * dim..(i + 1) * dim];
                    VISITED.with(|v| this.plan(x, q, group.clone(), &mut v.borrow_mut()))
                };
                if size == 1 {
                    vec![plan(next)]
                } else {
                    group.clone().into_par_iter().map(plan).collect()
                }
            };
            let mut requests: Vec<(u32, u8, u32)> = Vec::new();
            for (x, plan) in group.clone().zip(&plans) {
                for (layer, links) in plan.iter().enumerate() {
                    self.set_links(x, layer, links);
                    requests.extend(links.iter().map(|&t| (t, layer as u8, x)));
                }
            }
            requests.sort_unstable();
            let mut targets: Vec<(u32, u8, Range<usize>)> = Vec::new();
            let mut i = 0;
            while i < requests.len() {
                let (t, l, _) = requests[i];
                let j = i + requests[i..]
                    .iter()
                    .take_while(|r| r.0 == t && r.1 == l)
                    .count();
                targets.push((t, l, i..j));
                i = j;
            }
            let relinked: Vec<Vec<u32>> = {
                let this = &*self;
                let requests = &requests;
                let relink = |(t, l, r): &(u32, u8, Range<usize>)| {
                    let sources: Vec<u32> = requests[r.clone()].iter().map(|q| q.2).collect();
                    this.relink(*t, *l as usize, &sources)
                };
                if targets.len() < 8 {
                    targets.iter().map(relink).collect()
                } else {
                    targets.par_iter().map(relink).collect()
                }
            };
            for ((t, l, _), links) in targets.iter().zip(&relinked) {
                self.set_links(*t, *l as usize, links);
            }
            for x in group {
                let entry = self.entry.expect("set above");
                if self.levels[x as usize] > self.levels[entry as usize] {
                    self.entry = Some(x);
                }
            }
            next += size;
        }
    }
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("dim", &self.store.dim())
            .field("len", &self.store.len())
            .field("config", &self.config)
            .field("top_level", &self.top_level())
            .finish_non_exhaustive()
    }
}

impl VectorIndex for HnswIndex {
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
        let (first, count) = check_batch(&self.store, keys)?;
        let dim = self.store.dim();
        self.store.reserve(count);
        let w0 = 1 + self.config.cap(0);
        self.layer0.reserve(count * w0);
        for (i, key) in keys.chunks_exact(dim).enumerate() {
            self.store.push(key);
            let level = level_of(self.config.seed, first + i as u32, self.config.m);
            self.levels.push(level);
            self.layer0.extend(std::iter::repeat_n(0, w0));
            self.upper
                .push(vec![0; level as usize * (1 + self.config.m)]);
        }
        self.link(keys, first, count);
        Ok(first..first + count as u32)
    }

    fn search(&self, query: &[f32], k: usize, filter: Option<Filter<'_>>) -> Result<Vec<Hit>> {
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
        let (Some(entry), k) = (self.entry, k.min(self.store.len())) else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut cur = self.hit(query, entry);
        for layer in (1..=self.levels[entry as usize] as usize).rev() {
            cur = self.greedy(query, cur, layer);
        }
        let ef = self.config.ef_search.max(k);
        let mut hits = with_visited(self.store.len(), |v| {
            self.search_layer(query, &[cur], ef, 0, filter, v)
        });
        hits.truncate(k);
        Ok(hits)
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
        queries
            .par_chunks_exact(dim)
            .enumerate()
            .map(|(qi, q)| match filter {
                Some(f) => self.search(q, k, Some(&move |id: u32| f(qi, id))),
                None => self.search(q, k, None),
            })
            .collect()
    }

    fn reconstruct(&self, id: u32, out: &mut [f32]) -> Result<()> {
        reconstruct(&self.store, id, out)
    }
}
