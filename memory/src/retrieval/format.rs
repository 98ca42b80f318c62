//! The saved form of a [`RetrievalMemory`] (layout in the [module docs](super)).

use std::collections::HashMap;

use super::exact::ExactIndex;
use super::hnsw::{HnswConfig, HnswIndex, level_of};
use super::keys::{KeyStore, KeyType};
use super::memory::{AnyIndex, RetrievalMemory, Stored, Trajectory};
use crate::codec::{Reader, checksum};
use crate::error::{MemoryError, Result};

const MAGIC: [u8; 4] = *b"AGRT";
/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
const KIND_EXACT: u8 = 1;
const KIND_HNSW: u8 = 2;
/// magic, version, dim, key type, index kind, trajectories, chunks.
const HEADER_BYTES: usize = 4 + 4 + 8 + 1 + 1 + 8 + 8;
/// m, ef_construction, ef_search, seed, entry.
const HNSW_HEADER_BYTES: usize = 4 + 4 + 4 + 8 + 4;
/// id, task, utility.
const TRAJECTORY_BYTES: usize = 8 + 4 + 4;
/// slot, len, start.
const CHUNK_BYTES: usize = 4 + 4 + 8;
const CHECKSUM_BYTES: usize = 8;
/// The entry point of an empty graph.
const NO_ENTRY: u32 = u32::MAX;
/// Larger keys are refused (a key of 2²⁴ values is 64 MB).
const MAX_DIM: u64 = 1 << 24;

fn bad<T>(message: impl Into<String>) -> Result<T> {
    Err(MemoryError::RetrievalLoad(message.into()))
}

/// The codec's reader reports `Load`; this format reports `RetrievalLoad`.
fn ours(e: MemoryError) -> MemoryError {
    match e {
        MemoryError::Load(m) => MemoryError::RetrievalLoad(m),
        e => e,
    }
}

pub(crate) fn write(memory: &RetrievalMemory) -> Vec<u8> {
    let index = memory.index.get();
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(index.dim() as u64).to_le_bytes());
    out.push(index.key_type().tag());
    out.push(match memory.index {
        AnyIndex::Exact(_) => KIND_EXACT,
        AnyIndex::Hnsw(_) => KIND_HNSW,
    });
    out.extend_from_slice(&(memory.trajectories.len() as u64).to_le_bytes());
    out.extend_from_slice(&(memory.chunks.len() as u64).to_le_bytes());
    if let AnyIndex::Hnsw(h) = &memory.index {
        let c = &h.config;
        out.extend_from_slice(&(c.m as u32).to_le_bytes());
        out.extend_from_slice(&(c.ef_construction as u32).to_le_bytes());
        out.extend_from_slice(&(c.ef_search as u32).to_le_bytes());
        out.extend_from_slice(&c.seed.to_le_bytes());
        out.extend_from_slice(&h.entry.unwrap_or(NO_ENTRY).to_le_bytes());
    }
    for t in &memory.trajectories {
        out.extend_from_slice(&t.id.to_le_bytes());
        out.extend_from_slice(&t.task.to_le_bytes());
        out.extend_from_slice(&t.utility.to_le_bytes());
    }
    for c in &memory.chunks {
        out.extend_from_slice(&c.slot.to_le_bytes());
        out.extend_from_slice(&c.len.to_le_bytes());
        out.extend_from_slice(&c.start.to_le_bytes());
    }
    match &memory.index {
        AnyIndex::Exact(e) => e.store().write(&mut out),
        AnyIndex::Hnsw(h) => {
            h.store.write(&mut out);
            h.layer0
                .iter()
                .chain(h.upper.iter().flatten())
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Saved sizes, from the header.
struct Layout {
    dim: usize,
    key_type: KeyType,
    trajectories: usize,
    chunks: usize,
    hnsw: Option<(HnswConfig, u32, Vec<u8>)>,
}

pub(crate) fn read(bytes: &[u8]) -> Result<RetrievalMemory> {
    let layout = read_layout(bytes)?;
    // The header fixes the exact length: check it, then the checksum, before
    // allocating anything in proportion to what the header claims.
    let n = layout.chunks;
    let key_bytes = KeyStore::saved_bytes(layout.key_type, layout.dim, n);
    let graph_values = match &layout.hnsw {
        None => Some(0),
        Some((c, _, levels)) => n.checked_mul(1 + c.cap(0)).and_then(|layer0| {
            levels.iter().try_fold(layer0, |acc, &l| {
                acc.checked_add(usize::from(l) * (1 + c.m))
            })
        }),
    };
    let expected = key_bytes
        .zip(graph_values.and_then(|v| v.checked_mul(4)))
        .and_then(|(k, g)| {
            let fixed = HEADER_BYTES
                + layout.hnsw.as_ref().map_or(0, |_| HNSW_HEADER_BYTES)
                + CHECKSUM_BYTES;
            fixed
                .checked_add(layout.trajectories.checked_mul(TRAJECTORY_BYTES)?)?
                .checked_add(n.checked_mul(CHUNK_BYTES)?)?
                .checked_add(k)?
                .checked_add(g)
        });
    let Some(expected) = expected else {
        return bad("the sizes in the header overflow");
    };
    if bytes.len() != expected {
        return bad(format!(
            "{} bytes, expected {expected} for {n} chunks of dim {} ({})",
            bytes.len(),
            layout.dim,
            if bytes.len() < expected {
                "truncated"
            } else {
                "trailing bytes"
            }
        ));
    }
    let (body, sum) = bytes.split_at(expected - CHECKSUM_BYTES);
    if checksum(body).to_le_bytes() != sum {
        return bad("checksum mismatch: the data is damaged");
    }

    let mut r = Reader::new(body);
    let fixed = HEADER_BYTES + layout.hnsw.as_ref().map_or(0, |_| HNSW_HEADER_BYTES);
    r.take(fixed, "header").map_err(ours)?;
    let mut trajectories = Vec::with_capacity(layout.trajectories);
    let mut slots = HashMap::with_capacity(layout.trajectories);
    for slot in 0..layout.trajectories {
        let id = r.u64("trajectory id").map_err(ours)?;
        let task = r.u32("trajectory task").map_err(ours)?;
        let utility = f32::from_bits(r.u32("trajectory utility").map_err(ours)?);
        if !utility.is_finite() {
            return bad(format!("trajectory {id} has utility {utility}"));
        }
        if slots.insert(id, slot as u32).is_some() {
            return bad(format!("trajectory {id} appears twice"));
        }
        trajectories.push(Trajectory { id, task, utility });
    }
    let mut chunks = Vec::with_capacity(n);
    let mut used = vec![false; layout.trajectories];
    for i in 0..n {
        let slot = r.u32("chunk trajectory").map_err(ours)?;
        let len = r.u32("chunk len").map_err(ours)?;
        let start = r.u64("chunk start").map_err(ours)?;
        if slot as usize >= layout.trajectories {
            return bad(format!(
                "chunk {i} names trajectory slot {slot} of {}",
                layout.trajectories
            ));
        }
        if len == 0 || start.checked_add(u64::from(len)).is_none() {
            return bad(format!("chunk {i} has start {start} and len {len}"));
        }
        used[slot as usize] = true;
        chunks.push(Stored { slot, start, len });
    }
    if let Some(slot) = used.iter().position(|u| !u) {
        return bad(format!("trajectory {} has no chunk", trajectories[slot].id));
    }
    let keys = r.take(key_bytes.unwrap_or(0), "keys").map_err(ours)?;
    let store = KeyStore::read(layout.key_type, layout.dim, n, keys)?;
    let index = match layout.hnsw {
        None => AnyIndex::Exact(ExactIndex::from_store(store)),
        Some((config, entry, levels)) => {
            let graph = r
                .take(graph_values.unwrap_or(0) * 4, "graph")
                .map_err(ours)?;
            AnyIndex::Hnsw(read_graph(config, store, entry, levels, graph)?)
        }
    };
    Ok(RetrievalMemory {
        index,
        trajectories,
        slots,
        chunks,
    })
}

fn read_layout(bytes: &[u8]) -> Result<Layout> {
    let mut r = Reader::new(bytes);
    if r.take(4, "magic").map_err(ours)? != MAGIC {
        return bad("not an agentry retrieval memory (bad magic bytes)");
    }
    let version = r.u32("version").map_err(ours)?;
    if version != VERSION {
        return bad(format!(
            "format version {version}, this build reads version {VERSION}"
        ));
    }
    let dim = r.u64("dim").map_err(ours)?;
    let tag = r.u8("key type").map_err(ours)?;
    let kind = r.u8("index kind").map_err(ours)?;
    let trajectories = r.u64("trajectory count").map_err(ours)?;
    let chunks = r.u64("chunk count").map_err(ours)?;
    let Some(key_type) = KeyType::from_tag(tag) else {
        return bad(format!("unknown key type {tag}"));
    };
    if dim == 0 || dim > MAX_DIM {
        return bad(format!("dim {dim} outside 1..={MAX_DIM}"));
    }
    // Every chunk takes CHUNK_BYTES, which bounds the counts by the input's length
    // before anything is allocated for them.
    let room = (bytes.len() / CHUNK_BYTES) as u64;
    if chunks > room || chunks > u64::from(u32::MAX) {
        return bad(format!(
            "{chunks} chunks cannot fit in {} bytes",
            bytes.len()
        ));
    }
    if trajectories > chunks {
        return bad(format!("{trajectories} trajectories for {chunks} chunks"));
    }
    let (dim, trajectories, chunks) = (dim as usize, trajectories as usize, chunks as usize);
    let hnsw = match kind {
        KIND_EXACT => None,
        KIND_HNSW => {
            let m = r.u32("m").map_err(ours)? as usize;
            let ef_construction = r.u32("ef_construction").map_err(ours)? as usize;
            let ef_search = r.u32("ef_search").map_err(ours)? as usize;
            let seed = r.u64("seed").map_err(ours)?;
            let entry = r.u32("entry point").map_err(ours)?;
            let config = HnswConfig {
                m,
                ef_construction,
                ef_search,
                seed,
                key_type,
            };
            config
                .check()
                .map_err(|e| MemoryError::RetrievalLoad(e.to_string()))?;
            // Levels follow from the seed and the ids, so they are not saved.
            let levels = (0..chunks as u32).map(|i| level_of(seed, i, m)).collect();
            Some((config, entry, levels))
        }
        other => return bad(format!("unknown index kind {other}")),
    };
    Ok(Layout {
        dim,
        key_type,
        trajectories,
        chunks,
        hnsw,
    })
}

fn read_graph(
    config: HnswConfig,
    store: KeyStore,
    entry: u32,
    levels: Vec<u8>,
    bytes: &[u8],
) -> Result<HnswIndex> {
    let n = levels.len();
    let values: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let w0 = 1 + config.cap(0);
    let (layer0, mut rest) = values.split_at(n * w0);
    let mut upper = Vec::with_capacity(n);
    for &level in &levels {
        let (mine, after) = rest.split_at(usize::from(level) * (1 + config.m));
        upper.push(mine.to_vec());
        rest = after;
    }
    let index = HnswIndex {
        config,
        store,
        layer0: layer0.to_vec(),
        upper,
        entry: None,
        levels,
    };
    for node in 0..n {
        for layer in 0..=usize::from(index.levels[node]) {
            let (slots, cap) = if layer == 0 {
                (&index.layer0[node * w0..(node + 1) * w0], config.cap(0))
            } else {
                let w = 1 + config.m;
                (&index.upper[node][(layer - 1) * w..layer * w], config.m)
            };
            let count = slots[0] as usize;
            if count > cap {
                return bad(format!(
                    "node {node} has {count} links on layer {layer}, at most {cap}"
                ));
            }
            for &to in &slots[1..1 + count] {
                if to as usize >= n
                    || to as usize == node
                    || usize::from(index.levels[to as usize]) < layer
                {
                    return bad(format!(
                        "node {node} links to {to} on layer {layer}, which is not a node of that layer"
                    ));
                }
            }
        }
    }
    let top = index.levels.iter().copied().max();
    let entry = match (n, entry) {
        (0, NO_ENTRY) => None,
        (_, e) if (e as usize) < n && Some(index.levels[e as usize]) == top => Some(e),
        _ => {
            return bad(format!(
                "entry point {entry} is not a node of the top layer"
            ));
        }
    };
    Ok(HnswIndex { entry, ..index })
}

impl RetrievalMemory {
    /// The memory, its index and its keys as bytes (see the [module docs](super) for
    /// the format).
    pub fn to_bytes(&self) -> Vec<u8> {
        write(self)
    }

    /// Rebuilds a memory saved by [`to_bytes`](Self::to_bytes). Truncated, trailing,
    /// damaged or inconsistent input is a [`MemoryError::RetrievalLoad`] naming the
    /// problem; no input panics or makes it allocate much more than the input's size.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        read(bytes)
    }
}
