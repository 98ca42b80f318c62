//! Retrieval speed and recall, for `agent bench retrieval` (and
//! `cargo bench -p agentry-memory --bench retrieval`).
//!
//! [`bench_retrieval`] measures, in this order:
//!
//! 1. **Memory bandwidth** of this machine, for comparison: the best of five sums of a
//!    1 GiB buffer of `f32` (a streaming read, sixteen independent accumulators), on
//!    each thread count asked for.
//! 2. **Exact search**: for each size, key type, thread count and `k`, the median
//!    latency of single queries, and the keys' bytes divided by it (GB/s scanned).
//!    Thread counts are rayon pools installed around the search; one thread is the
//!    calling thread alone.
//! 3. **HNSW**: the build time (in parallel batches, on every thread of the global
//!    pool), then for each `ef_search` the median single-thread latency and recall@10
//!    against exact `f32` search over the same keys, and the speed-up over exact
//!    search at the same size. The graph is built up to `checkpoint` keys first; the
//!    build continues to `n` only if the time so far, scaled by `n / checkpoint`
//!    and by `ln n / ln checkpoint` (HNSW insertion cost grows with the log of the
//!    size), stays within `max_build_seconds`, and the figures are for the size
//!    reached.
//!
//! Keys are a stand-in for a frozen model's embeddings, which occupy a low-dimensional
//! part of their space: `normalise(W·z + 0.5·ε)` with `z` 32 latent factors and `ε`
//! noise in every dimension (20% of the energy), deterministic from the seed. Queries
//! are fresh draws from the same distribution. Uniformly random vectors (no structure
//! at all) are much harder for any graph index; the unit test on 20 000 random
//! vectors of dimension 64 covers that case.

use std::fmt;
use std::hint::black_box;
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::VectorIndex;
use super::exact::ExactIndex;
use super::hnsw::{HnswConfig, HnswIndex};
use super::kernels;
use super::keys::KeyType;
use super::topk::Hit;
use crate::error::{MemoryError, Result};

/// Latent factors of the synthetic keys.
const RANK: usize = 32;
/// Keys generated (and added) per batch.
const GENERATE: usize = 16_384;

/// The HNSW part of a [`RetrievalBenchConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct HnswBenchConfig {
    /// Keys the graph should reach.
    pub n: usize,
    /// Keys built first, timed, to project the time to `n`.
    pub checkpoint: usize,
    /// The index's parameters (`ef_search` is overridden by [`ef_search`](Self::ef_search)).
    pub config: HnswConfig,
    /// `ef_search` values measured.
    pub ef_search: Vec<usize>,
    /// The build continues past `checkpoint` only if projected to finish within this.
    pub max_build_seconds: f64,
}

/// What [`bench_retrieval`] measures.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievalBenchConfig {
    /// Values per key.
    pub dim: usize,
    /// Index sizes for exact search.
    pub sizes: Vec<usize>,
    /// Key types for exact search.
    pub key_types: Vec<KeyType>,
    /// Thread counts.
    pub threads: Vec<usize>,
    /// `k` values for exact search.
    pub ks: Vec<usize>,
    /// Queries per figure (at most; exact search stops a figure after about a second
    /// once it has five).
    pub queries: usize,
    /// The HNSW measurement, if any.
    pub hnsw: Option<HnswBenchConfig>,
    /// Size of the buffer the bandwidth is measured on (1 GiB; far beyond the caches).
    pub bandwidth_bytes: usize,
    /// Seeds the keys and queries.
    pub seed: u64,
}

impl Default for RetrievalBenchConfig {
    /// The figures: dimension 512; 10k, 100k and 1M keys in `f32`, `f16` and
    /// `i8`; 1 and 2 threads; k 10 and 50; HNSW (M 16, ef_construction 100) towards
    /// 1M keys with a 100k checkpoint and a 15-minute build budget; 100 queries.
    fn default() -> Self {
        RetrievalBenchConfig {
            dim: 512,
            sizes: vec![10_000, 100_000, 1_000_000],
            key_types: vec![KeyType::F32, KeyType::F16, KeyType::I8],
            threads: vec![1, 2],
            ks: vec![10, 50],
            queries: 100,
            hnsw: Some(HnswBenchConfig {
                n: 1_000_000,
                checkpoint: 100_000,
                config: HnswConfig {
                    m: 16,
                    ef_construction: 100,
                    ef_search: 64,
                    seed: 0,
                    key_type: KeyType::F32,
                },
                ef_search: vec![16, 32, 64, 128, 256, 512],
                max_build_seconds: 900.0,
            }),
            bandwidth_bytes: 1 << 30,
            seed: 0x5EED,
        }
    }
}

/// One exact-search figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExactRow {
    /// Keys in the index.
    pub n: usize,
    /// How they are stored.
    pub key_type: KeyType,
    /// Threads searching.
    pub threads: usize,
    /// Results asked for.
    pub k: usize,
    /// Median latency of one query, milliseconds.
    pub latency_ms: f64,
    /// Key bytes scanned per second at the median latency, GB/s (10⁹ bytes).
    pub gb_per_sec: f64,
    /// The fastest query, milliseconds (the machine may be shared: the median
    /// includes other work's interference, the best shows what the code can do).
    pub best_ms: f64,
}

/// One HNSW figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HnswRow {
    /// The `ef_search` used.
    pub ef_search: usize,
    /// Median latency of one query on one thread, milliseconds.
    pub latency_ms: f64,
    /// Fraction of the exact top 10 found in the HNSW top 10, over all queries.
    pub recall_at_10: f64,
    /// Exact `f32` single-thread latency at the same size divided by this latency.
    pub speedup_vs_exact: f64,
}

/// The HNSW figures.
#[derive(Clone, Debug, PartialEq)]
pub struct HnswReport {
    /// Keys in the graph measured.
    pub n: usize,
    /// Time to build it, seconds.
    pub build_seconds: f64,
    /// Processor time (all threads) spent building it, seconds, where the operating
    /// system tells (Linux).
    pub build_cpu_seconds: Option<f64>,
    /// Keys at the checkpoint and the time to reach it, seconds.
    pub checkpoint: (usize, f64),
    /// The projected build time to the target size when the build stopped at the
    /// checkpoint.
    pub projected_seconds: Option<f64>,
    /// Exact `f32` single-thread latency at `n`, milliseconds.
    pub exact_latency_ms: f64,
    /// Per `ef_search`.
    pub rows: Vec<HnswRow>,
    /// Keys and links, bytes.
    pub bytes: usize,
}

/// All figures of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievalBench {
    /// The kernels' instruction set.
    pub simd: &'static str,
    /// Streaming-read bandwidth (threads, GB/s).
    pub bandwidth: Vec<(usize, f64)>,
    /// Exact search.
    pub exact: Vec<ExactRow>,
    /// HNSW, if asked for.
    pub hnsw: Option<HnswReport>,
}

impl fmt::Display for RetrievalBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernels: {}", self.simd)?;
        for (threads, gbs) in &self.bandwidth {
            writeln!(
                f,
                "memory bandwidth (streaming read), {threads} thread(s): {gbs:.1} GB/s"
            )?;
        }
        writeln!(f, "exact search:")?;
        writeln!(
            f,
            "{:>9} {:>4} {:>7} {:>3} {:>10} {:>7} {:>8} {:>7}",
            "keys", "type", "threads", "k", "median ms", "GB/s", "best ms", "GB/s"
        )?;
        for r in &self.exact {
            let bytes = r.gb_per_sec * r.latency_ms;
            writeln!(
                f,
                "{:>9} {:>4} {:>7} {:>3} {:>10.3} {:>7.1} {:>8.3} {:>7.1}",
                r.n,
                r.key_type.name(),
                r.threads,
                r.k,
                r.latency_ms,
                r.gb_per_sec,
                r.best_ms,
                bytes / r.best_ms
            )?;
        }
        if let Some(h) = &self.hnsw {
            writeln!(
                f,
                "HNSW: {} keys built in {:.1} s{} ({} keys in {:.1} s{}), {:.0} MB; exact f32 1 thread {:.3} ms",
                h.n,
                h.build_seconds,
                h.build_cpu_seconds
                    .map(|c| format!(", {c:.0} s of processor time"))
                    .unwrap_or_default(),
                h.checkpoint.0,
                h.checkpoint.1,
                h.projected_seconds
                    .map(|s| format!("; the target size was projected at {s:.0} s, over budget"))
                    .unwrap_or_default(),
                h.bytes as f64 / 1e6,
                h.exact_latency_ms
            )?;
            writeln!(
                f,
                "{:>9} {:>12} {:>10} {:>9}",
                "ef_search", "latency ms", "recall@10", "speed-up"
            )?;
            for r in &h.rows {
                writeln!(
                    f,
                    "{:>9} {:>12.3} {:>10.3} {:>8.1}x",
                    r.ef_search, r.latency_ms, r.recall_at_10, r.speedup_vs_exact
                )?;
            }
        }
        Ok(())
    }
}

/// The synthetic key distribution (see the module docs).
struct Keys {
    dim: usize,
    /// `dim × RANK`, row-major.
    w: Vec<f32>,
    seed: u64,
}

impl Keys {
    fn new(dim: usize, seed: u64) -> Self {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        // Uniform in ±√(3/RANK): each coordinate of W·z has variance 1 for z of
        // variance 1.
        let a = (3.0 / RANK as f32).sqrt();
        let w = (0..dim * RANK).map(|_| rng.random_range(-a..a)).collect();
        Keys { dim, w, seed }
    }

    /// Keys `first..first + count` (batch `first / GENERATE` has its own generator,
    /// so any range is the same whoever generates it), in parallel.
    fn generate(&self, stream: u64, first: usize, count: usize) -> Vec<f32> {
        let dim = self.dim;
        let mut out = vec![0f32; count * dim];
        out.par_chunks_mut(dim)
            .enumerate()
            .with_min_len(256)
            .for_each(|(i, key)| {
                let id = (first + i) as u64;
                let mut rng = Pcg64Mcg::seed_from_u64(
                    self.seed
                        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        ^ id.wrapping_mul(0xD1B5_4A32_D192_ED03),
                );
                // Unit-variance uniforms stand in for Gaussians.
                let u = 3f32.sqrt();
                let z: Vec<f32> = (0..RANK).map(|_| rng.random_range(-u..u)).collect();
                for (d, x) in key.iter_mut().enumerate() {
                    let w = &self.w[d * RANK..(d + 1) * RANK];
                    *x = kernels::dot_f32(&z, w) + 0.5 * rng.random_range(-u..u);
                }
                let norm = key.iter().map(|x| x * x).sum::<f32>().sqrt();
                key.iter_mut().for_each(|x| *x /= norm);
            });
        out
    }

    fn fill(&self, index: &mut dyn VectorIndex, to: usize) -> Result<()> {
        let mut next = index.len();
        while next < to {
            let count = GENERATE.min(to - next);
            index.add_batch(&self.generate(0, next, count))?;
            next += count;
        }
        Ok(())
    }
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| MemoryError::InvalidConfig(format!("cannot start {threads} threads: {e}")))
}

/// Streaming-read bandwidth on `threads` threads, GB/s: the best of five sums of a
/// buffer of `bytes` bytes of `f32`.
pub fn memory_bandwidth(threads: usize, bytes: usize) -> Result<f64> {
    let buffer: Vec<f32> = (0..(bytes / 4).max(16))
        .map(|i| (i & 0xFF) as f32)
        .collect();
    let sum = |part: &[f32]| {
        let mut acc = [0f32; 16];
        for c in part.chunks_exact(16) {
            for l in 0..16 {
                acc[l] += c[l];
            }
        }
        acc.iter().sum::<f32>()
    };
    let pool = pool(threads)?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let total: f32 = if threads == 1 {
            sum(&buffer)
        } else {
            pool.install(|| {
                buffer
                    .par_chunks(buffer.len().div_ceil(threads * 4))
                    .map(sum)
                    .sum()
            })
        };
        black_box(total);
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok((buffer.len() * 4) as f64 / best / 1e9)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Processor time of this process so far (user and system, all threads), seconds, from
/// `/proc/self/stat` (in units of 1/100 s, Linux's fixed `USER_HZ`); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Median and best latency (seconds) of `search` over the queries, stopping after
/// about a second once five are timed.
fn time_queries(queries: &[f32], dim: usize, mut search: impl FnMut(&[f32])) -> (f64, f64) {
    search(&queries[..dim]); // warm-up
    let mut times = Vec::new();
    let started = Instant::now();
    for q in queries.chunks_exact(dim) {
        let start = Instant::now();
        search(q);
        times.push(start.elapsed().as_secs_f64());
        if times.len() >= 5 && started.elapsed().as_secs_f64() > 1.0 {
            break;
        }
    }
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    (median(times), best)
}

fn recall(got: &[Vec<Hit>], want: &[Vec<Hit>]) -> f64 {
    let found: usize = got
        .iter()
        .zip(want)
        .map(|(g, w)| g.iter().filter(|h| w.iter().any(|x| x.id == h.id)).count())
        .sum();
    found as f64 / want.iter().map(Vec::len).sum::<usize>().max(1) as f64
}

/// Runs the benchmark described in the [module docs](self); `progress` gets a line as
/// each figure is measured (the whole default run takes tens of minutes).
pub fn bench_retrieval(
    config: &RetrievalBenchConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<RetrievalBench> {
    let dim = config.dim;
    if dim == 0 || config.queries == 0 || config.threads.contains(&0) || config.ks.contains(&0) {
        return Err(MemoryError::InvalidConfig(
            "the retrieval benchmark needs dim, queries, threads and k ≥ 1".into(),
        ));
    }
    let keys = Keys::new(dim, config.seed);
    let queries = keys.generate(1, 0, config.queries);

    let mut bandwidth = Vec::new();
    for &threads in &config.threads {
        let gbs = memory_bandwidth(threads, config.bandwidth_bytes)?;
        progress(&format!(
            "memory bandwidth, {threads} thread(s): {gbs:.1} GB/s"
        ));
        bandwidth.push((threads, gbs));
    }

    let mut exact_rows = Vec::new();
    for &n in &config.sizes {
        for &key_type in &config.key_types {
            let mut index = ExactIndex::new(dim, key_type)?;
            index.reserve(n);
            keys.fill(&mut index, n)?;
            for &threads in &config.threads {
                let pool = pool(threads)?;
                for &k in &config.ks {
                    let (seconds, best) = pool.install(|| {
                        time_queries(&queries, dim, |q| {
                            black_box(index.search(q, k, None).map(|h| h.len()).unwrap_or(0));
                        })
                    });
                    let row = ExactRow {
                        n,
                        key_type,
                        threads,
                        k,
                        latency_ms: seconds * 1e3,
                        gb_per_sec: index.key_bytes() as f64 / seconds / 1e9,
                        best_ms: best * 1e3,
                    };
                    progress(&format!(
                        "exact {n} × {dim} {}, {threads} thread(s), k {k}: {:.3} ms, {:.1} GB/s",
                        key_type.name(),
                        row.latency_ms,
                        row.gb_per_sec
                    ));
                    exact_rows.push(row);
                }
            }
            drop(index);
        }
    }

    let hnsw = match &config.hnsw {
        None => None,
        Some(h) => Some(bench_hnsw(&keys, &queries, h, progress)?),
    };
    Ok(RetrievalBench {
        simd: kernels::simd().name(),
        bandwidth,
        exact: exact_rows,
        hnsw,
    })
}

fn bench_hnsw(
    keys: &Keys,
    queries: &[f32],
    h: &HnswBenchConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<HnswReport> {
    let dim = keys.dim;
    if h.ef_search.contains(&0) || h.checkpoint == 0 || h.checkpoint > h.n {
        return Err(MemoryError::InvalidConfig(
            "HNSW benchmark: ef_search ≥ 1 and 1 ≤ checkpoint ≤ n".into(),
        ));
    }
    let mut index = HnswIndex::new(dim, h.config)?;
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let mut next = 0;
    while next < h.checkpoint {
        let count = GENERATE.min(h.checkpoint - next);
        index.add_batch(&keys.generate(0, next, count))?;
        next += count;
    }
    let checkpoint_seconds = start.elapsed().as_secs_f64();
    progress(&format!(
        "HNSW: {} keys built in {checkpoint_seconds:.1} s",
        h.checkpoint
    ));
    let (c, n) = (h.checkpoint as f64, h.n as f64);
    let projected = checkpoint_seconds * (n / c) * (n.ln() / c.ln().max(1.0));
    let mut projected_seconds = None;
    if h.n > h.checkpoint {
        if projected <= h.max_build_seconds {
            progress(&format!(
                "HNSW: continuing to {} keys (projected {projected:.0} s)",
                h.n
            ));
            while next < h.n {
                let count = GENERATE.min(h.n - next);
                index.add_batch(&keys.generate(0, next, count))?;
                next += count;
                // About every 100k keys.
                if next / 100_000 != (next - count) / 100_000 {
                    progress(&format!(
                        "HNSW: {next} keys, {:.0} s",
                        start.elapsed().as_secs_f64()
                    ));
                }
            }
        } else {
            projected_seconds = Some(projected);
            progress(&format!(
                "HNSW: stopping at {} keys; {} keys projected at {projected:.0} s, over the {:.0} s budget",
                h.checkpoint, h.n, h.max_build_seconds
            ));
        }
    }
    let build_seconds = start.elapsed().as_secs_f64();
    let build_cpu_seconds = cpu_seconds().zip(cpu_start).map(|(b, a)| b - a);
    let n = index.len();

    // Ground truth and the exact latency at the size reached.
    let mut exact = ExactIndex::new(dim, KeyType::F32)?;
    exact.reserve(n);
    keys.fill(&mut exact, n)?;
    let want = exact.search_batch(queries, 10, None)?;
    let single = pool(1)?;
    let (exact_seconds, _) = single.install(|| {
        time_queries(queries, dim, |q| {
            black_box(exact.search(q, 10, None).map(|h| h.len()).unwrap_or(0));
        })
    });
    drop(exact);

    let mut rows = Vec::new();
    for &ef in &h.ef_search {
        index.set_ef_search(ef)?;
        let mut got = Vec::new();
        let mut times = Vec::new();
        single.install(|| -> Result<()> {
            index.search(&queries[..dim], 10, None)?; // warm-up
            for q in queries.chunks_exact(dim) {
                let start = Instant::now();
                let hits = index.search(q, 10, None)?;
                times.push(start.elapsed().as_secs_f64());
                got.push(hits);
            }
            Ok(())
        })?;
        let seconds = median(times);
        let row = HnswRow {
            ef_search: ef,
            latency_ms: seconds * 1e3,
            recall_at_10: recall(&got, &want),
            speedup_vs_exact: exact_seconds / seconds,
        };
        progress(&format!(
            "HNSW {n} keys, ef_search {ef}: {:.3} ms, recall@10 {:.3}, {:.1}x exact",
            row.latency_ms, row.recall_at_10, row.speedup_vs_exact
        ));
        rows.push(row);
    }
    Ok(HnswReport {
        n,
        build_seconds,
        build_cpu_seconds,
        checkpoint: (h.checkpoint, checkpoint_seconds),
        projected_seconds,
        exact_latency_ms: exact_seconds * 1e3,
        rows,
        bytes: index.bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_reports_every_figure() {
        let config = RetrievalBenchConfig {
            dim: 16,
            sizes: vec![300],
            key_types: vec![KeyType::F32, KeyType::I8],
            threads: vec![1, 2],
            ks: vec![5],
            queries: 10,
            hnsw: Some(HnswBenchConfig {
                n: 600,
                checkpoint: 300,
                config: HnswConfig::default(),
                ef_search: vec![8, 64],
                max_build_seconds: 600.0,
            }),
            bandwidth_bytes: 1 << 20,
            seed: 1,
        };
        let mut lines = 0;
        let bench = bench_retrieval(&config, &mut |_| lines += 1).unwrap();
        assert_eq!(bench.exact.len(), 4);
        let h = bench.hnsw.as_ref().unwrap();
        assert_eq!(h.n, 600);
        assert!(h.rows[1].recall_at_10 > 0.9);
        assert!(lines >= 4 + 2 + 2);
        assert!(bench.to_string().contains("recall@10"));
        let bad = RetrievalBenchConfig {
            threads: vec![0],
            ..config
        };
        assert!(bench_retrieval(&bad, &mut |_| {}).is_err());
    }
}
