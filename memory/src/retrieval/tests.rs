//! Tests of the indexes (exact against brute force, quantised against f32, HNSW recall
//! against exact, filters, threads) and of the memory (deduplication, exclusion,
//! rescoring, saving and loading).

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::kernels;
use super::*;
use crate::error::MemoryError;

/// `n` random unit vectors of `dim` values (normalised Gaussian-ish draws).
fn unit_vectors(rng: &mut Pcg64Mcg, n: usize, dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                // Sum of uniforms: close enough to Gaussian for directions.
                (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>()
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        out.extend(v.iter().map(|x| x / norm));
    }
    out
}

/// Top-k by sorting every score the index's own kernel gives.
fn brute_force(
    keys: &[f32],
    dim: usize,
    q: &[f32],
    k: usize,
    keep: impl Fn(u32) -> bool,
) -> Vec<Hit> {
    let mut all: Vec<Hit> = keys
        .chunks_exact(dim)
        .enumerate()
        .filter(|(i, _)| keep(*i as u32))
        .map(|(i, key)| Hit {
            id: i as u32,
            score: kernels::dot_f32(q, key),
        })
        .collect();
    all.sort_by(Hit::rank);
    all.truncate(k);
    all
}

fn exact_with(keys: &[f32], dim: usize, key_type: KeyType) -> ExactIndex {
    let mut index = ExactIndex::new(dim, key_type).unwrap();
    index.add_batch(keys).unwrap();
    index
}

fn ids(hits: &[Hit]) -> Vec<u32> {
    hits.iter().map(|h| h.id).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

#[test]
fn exact_f32_top_k_equals_a_sort_of_every_score() {
    let mut rng = Pcg64Mcg::seed_from_u64(10);
    for (n, dim) in [(1, 3), (7, 5), (1000, 16), (3001, 33), (20_000, 64)] {
        let keys = unit_vectors(&mut rng, n, dim);
        let index = exact_with(&keys, dim, KeyType::F32);
        let queries = unit_vectors(&mut rng, 5, dim);
        for q in queries.chunks_exact(dim) {
            for k in [1, 10, 50, n + 3] {
                let got = index.search(q, k, None).unwrap();
                assert_eq!(
                    got,
                    brute_force(&keys, dim, q, k, |_| true),
                    "n {n} dim {dim} k {k}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Keys drawn from a few values give many exact ties: the lower id must win.
    #[test]
    fn exact_top_k_with_ties_and_filters_matches_brute_force(
        n in 0usize..200,
        dim in 1usize..24,
        k in 0usize..30,
        seed in any::<u64>(),
        modulus in 1u32..5,
    ) {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let levels = [-1.0f32, -0.5, 0.0, 0.5, 1.0];
        let keys: Vec<f32> = (0..n * dim).map(|_| levels[rng.random_range(0..5)]).collect();
        let q: Vec<f32> = (0..dim).map(|_| levels[rng.random_range(0..5)]).collect();
        let mut index = ExactIndex::new(dim, KeyType::F32).unwrap();
        if n > 0 {
            index.add_batch(&keys).unwrap();
        }
        let keep = |id: u32| !id.is_multiple_of(modulus);
        let got = index.search(&q, k, Some(&keep)).unwrap();
        prop_assert_eq!(got, brute_force(&keys, dim, &q, k, keep));
    }
}

#[test]
fn threads_and_batches_give_the_same_hits_as_one_thread() {
    let mut rng = Pcg64Mcg::seed_from_u64(11);
    let (n, dim) = (10_007, 40);
    let keys = unit_vectors(&mut rng, n, dim);
    let queries = unit_vectors(&mut rng, 9, dim);
    let keep = |qi: usize, id: u32| !(id as usize + qi).is_multiple_of(7);
    for key_type in [KeyType::F32, KeyType::F16, KeyType::I8] {
        let single = exact_with(&keys, dim, key_type).with_parallel_threshold(usize::MAX);
        let parallel = exact_with(&keys, dim, key_type).with_parallel_threshold(0);
        let want: Vec<Vec<Hit>> = queries
            .chunks_exact(dim)
            .enumerate()
            .map(|(qi, q)| single.search(q, 17, Some(&|id| keep(qi, id))).unwrap())
            .collect();
        for threads in [1, 2, 3] {
            pool(threads).install(|| {
                for (qi, q) in queries.chunks_exact(dim).enumerate() {
                    let got = parallel.search(q, 17, Some(&|id| keep(qi, id))).unwrap();
                    assert_eq!(got, want[qi], "{key_type:?}, {threads} threads");
                }
                assert_eq!(
                    parallel.search_batch(&queries, 17, Some(&keep)).unwrap(),
                    want
                );
                assert_eq!(
                    single.search_batch(&queries, 17, Some(&keep)).unwrap(),
                    want
                );
            });
        }
    }
}

/// Keys whose similarity to `q` is `levels[i]` exactly (before storage): the first
/// `top` at 0.95, 0.90, …, the rest spread in [−0.4, 0.4].
fn separated(rng: &mut Pcg64Mcg, q: &[f32], n: usize, top: usize) -> Vec<f32> {
    let dim = q.len();
    let mut keys = Vec::with_capacity(n * dim);
    for i in 0..n {
        let a = if i < top {
            0.95 - 0.05 * i as f32
        } else {
            rng.random_range(-0.4f32..0.4)
        };
        // r: a random unit vector orthogonal to q.
        let mut r = unit_vectors(rng, 1, dim);
        let along: f32 = r.iter().zip(q).map(|(x, y)| x * y).sum();
        r.iter_mut().zip(q).for_each(|(x, y)| *x -= along * y);
        let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        let b = (1.0 - a * a).sqrt();
        keys.extend(r.iter().zip(q).map(|(x, y)| a * y + b * x / norm));
    }
    keys
}

#[test]
fn f16_and_i8_keys_find_the_f32_top_k_with_scores_within_their_bounds() {
    let mut rng = Pcg64Mcg::seed_from_u64(12);
    for dim in [16, 64, 512] {
        let q = unit_vectors(&mut rng, 1, dim);
        let keys = separated(&mut rng, &q, 3000, 10);
        let exact = exact_with(&keys, dim, KeyType::F32);
        let want = exact.search(&q, 10, None).unwrap();
        assert_eq!(ids(&want), (0..10).collect::<Vec<u32>>());
        for key_type in [KeyType::F16, KeyType::I8] {
            let index = exact_with(&keys, dim, key_type);
            let got = index.search(&q, 10, None).unwrap();
            assert_eq!(ids(&got), ids(&want), "{key_type:?} dim {dim}");
            // Every key's score, against the bound the key type documents.
            let q1: f32 = q.iter().map(|x| x.abs()).sum();
            let all = index.search(&q, 3000, None).unwrap();
            for h in &all {
                let key = &keys[h.id as usize * dim..(h.id as usize + 1) * dim];
                let truth: f64 = key.iter().zip(&q).map(|(&a, &b)| a as f64 * b as f64).sum();
                let bound = match key_type {
                    // 2⁻¹¹ relative per value; Σ|q_i k_i| ≤ 1 for unit vectors.
                    KeyType::F16 => 2f64.powi(-11),
                    KeyType::I8 => {
                        let max = key.iter().fold(0f32, |m, x| m.max(x.abs()));
                        (max / 127.0 / 2.0 * q1) as f64
                    }
                    KeyType::F32 => unreachable!(),
                } + 1e-5;
                let err = (h.score as f64 - truth).abs();
                assert!(
                    err <= bound,
                    "{key_type:?} dim {dim}: error {err} > bound {bound}"
                );
                // The typical error is far inside the worst case.
                if key_type == KeyType::I8 {
                    assert!(err < 0.01, "i8 dim {dim}: error {err}");
                }
            }
        }
    }
}

#[test]
fn filters_exclude_and_bad_input_is_an_error() {
    let mut rng = Pcg64Mcg::seed_from_u64(13);
    let dim = 8;
    let keys = unit_vectors(&mut rng, 500, dim);
    let q = &keys[..dim];
    for mut index in [
        Box::new(exact_with(&keys, dim, KeyType::F32)) as Box<dyn VectorIndex>,
        Box::new({
            let mut h = HnswIndex::new(dim, HnswConfig::default()).unwrap();
            h.add_batch(&keys).unwrap();
            h
        }),
    ] {
        let hits = index.search(q, 20, Some(&|id| id % 2 == 1)).unwrap();
        assert_eq!(hits.len(), 20);
        assert!(hits.iter().all(|h| h.id % 2 == 1));
        assert!(index.search(q, 5, Some(&|_| false)).unwrap().is_empty());
        assert!(index.search(q, 0, None).unwrap().is_empty());
        assert!(matches!(
            index.search(&q[1..], 5, None),
            Err(MemoryError::Length { .. })
        ));
        let mut nan = q.to_vec();
        nan[3] = f32::NAN;
        assert!(matches!(
            index.search(&nan, 5, None),
            Err(MemoryError::InvalidKey(_))
        ));
        assert!(matches!(index.add(&nan), Err(MemoryError::InvalidKey(_))));
        // A batch with one bad key adds nothing.
        let mut batch = keys[..3 * dim].to_vec();
        batch[2 * dim] = f32::INFINITY;
        assert!(index.add_batch(&batch).is_err());
        assert!(index.add_batch(&batch[..dim + 1]).is_err());
        assert_eq!(index.len(), 500);
        let mut out = vec![0f32; dim];
        index.reconstruct(7, &mut out).unwrap();
        assert_eq!(out, &keys[7 * dim..8 * dim]);
        assert!(index.reconstruct(500, &mut out).is_err());
    }
    assert!(ExactIndex::new(0, KeyType::F32).is_err());
    let bad = HnswConfig {
        m: 1,
        ..HnswConfig::default()
    };
    assert!(HnswIndex::new(4, bad).is_err());
}

fn recall(got: &[Vec<Hit>], want: &[Vec<Hit>]) -> f64 {
    let found: usize = got
        .iter()
        .zip(want)
        .map(|(g, w)| g.iter().filter(|h| w.iter().any(|x| x.id == h.id)).count())
        .sum();
    found as f64 / want.iter().map(Vec::len).sum::<usize>() as f64
}

#[test]
fn hnsw_recall_at_10_against_exact_is_at_least_0_95() {
    let mut rng = Pcg64Mcg::seed_from_u64(14);
    let (n, dim) = (20_000, 64);
    let keys = unit_vectors(&mut rng, n, dim);
    let queries = unit_vectors(&mut rng, 200, dim);
    let config = HnswConfig {
        m: 16,
        ef_construction: 64,
        ef_search: 300,
        seed: 7,
        key_type: KeyType::F32,
    };
    let mut hnsw = HnswIndex::new(dim, config).unwrap();
    hnsw.add_batch(&keys).unwrap();
    let exact = exact_with(&keys, dim, KeyType::F32);
    let want = exact.search_batch(&queries, 10, None).unwrap();
    let got = hnsw.search_batch(&queries, 10, None).unwrap();
    let r = recall(&got, &want);
    assert!(r >= 0.95, "recall@10 {r}");
    // Scores are the exact inner products of the keys found.
    for (g, q) in got.iter().zip(queries.chunks_exact(dim)) {
        for h in g {
            let want = brute_force(
                &keys[h.id as usize * dim..(h.id as usize + 1) * dim],
                dim,
                q,
                1,
                |_| true,
            );
            assert_eq!(h.score, want[0].score);
        }
    }
    // With a filter, only kept nodes come back, and still mostly the right ones.
    let keep = |_: usize, id: u32| !id.is_multiple_of(3);
    let want = exact.search_batch(&queries, 10, Some(&keep)).unwrap();
    let got = hnsw.search_batch(&queries, 10, Some(&keep)).unwrap();
    assert!(got.iter().flatten().all(|h| h.id % 3 != 0));
    let r = recall(&got, &want);
    assert!(r >= 0.9, "filtered recall@10 {r}");
}

#[test]
fn hnsw_builds_the_same_graph_for_any_thread_count_and_seed_matters() {
    let mut rng = Pcg64Mcg::seed_from_u64(15);
    let (n, dim) = (3000, 16);
    let keys = unit_vectors(&mut rng, n, dim);
    let build = |threads: usize, seed: u64| {
        pool(threads).install(|| {
            let config = HnswConfig {
                seed,
                ef_construction: 64,
                ..HnswConfig::default()
            };
            let mut memory = RetrievalMemory::new(dim, IndexConfig::Hnsw(config)).unwrap();
            let chunks: Vec<Chunk> = (0..n as u64)
                .map(|i| Chunk {
                    trajectory: i / 10,
                    task: 0,
                    start: i % 10 * 25,
                    len: 50,
                })
                .collect();
            // Two calls: one large parallel batch and a few single inserts.
            memory
                .insert_batch(&chunks[..n - 5], &keys[..(n - 5) * dim])
                .unwrap();
            for i in n - 5..n {
                memory
                    .insert(chunks[i], &keys[i * dim..(i + 1) * dim])
                    .unwrap();
            }
            memory.to_bytes()
        })
    };
    let one = build(1, 3);
    assert_eq!(build(2, 3), one);
    assert_eq!(build(3, 3), one);
    assert_ne!(build(2, 4), one);
}

#[test]
fn hnsw_over_quantised_keys_still_finds_neighbours() {
    let mut rng = Pcg64Mcg::seed_from_u64(16);
    let (n, dim) = (4000, 32);
    let keys = unit_vectors(&mut rng, n, dim);
    let queries = unit_vectors(&mut rng, 50, dim);
    let exact = exact_with(&keys, dim, KeyType::F32);
    let want = exact.search_batch(&queries, 10, None).unwrap();
    for key_type in [KeyType::F16, KeyType::I8] {
        let config = HnswConfig {
            key_type,
            ..HnswConfig::default()
        };
        let mut hnsw = HnswIndex::new(dim, config).unwrap();
        hnsw.add_batch(&keys).unwrap();
        let r = recall(&hnsw.search_batch(&queries, 10, None).unwrap(), &want);
        assert!(r >= 0.9, "{key_type:?} recall {r}");
    }
}

// ---------------------------------------------------------------------------------
// The memory.

/// A unit vector in the plane of axes 0 and 1 at `degrees` from axis 0, in `dim`
/// values.
fn at(degrees: f32, dim: usize) -> Vec<f32> {
    let mut v = vec![0f32; dim];
    v[0] = degrees.to_radians().cos();
    v[1] = degrees.to_radians().sin();
    v
}

fn chunk(trajectory: u64, task: u32, start: u64) -> Chunk {
    Chunk {
        trajectory,
        task,
        start,
        len: 50,
    }
}

fn no_rescoring(n: usize) -> RetrievalConfig {
    RetrievalConfig {
        n,
        w_ret: 0.0,
        ..RetrievalConfig::default()
    }
}

fn query(key: &[f32], trajectory: Option<u64>, task: Option<u32>) -> Query<'_> {
    Query {
        key,
        trajectory,
        task,
    }
}

#[test]
fn near_duplicates_of_a_kept_result_are_dropped() {
    let mut m = RetrievalMemory::new(4, IndexConfig::default()).unwrap();
    // cos 5° = 0.9962 (similar to the query), cos(8° − 5°) = 0.9986 ≥ 0.98: a
    // near-duplicate of the first; cos 20° = 0.940 < 0.98 to both.
    m.insert(chunk(1, 0, 0), &at(5.0, 4)).unwrap();
    m.insert(chunk(2, 0, 0), &at(8.0, 4)).unwrap();
    m.insert(chunk(3, 0, 0), &at(-15.0, 4)).unwrap();
    let q = at(0.0, 4);
    let got = m
        .retrieve(&query(&q, None, None), &no_rescoring(3))
        .unwrap();
    assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 2]);
    let keep_all = RetrievalConfig {
        dedup: None,
        ..no_rescoring(3)
    };
    let got = m.retrieve(&query(&q, None, None), &keep_all).unwrap();
    assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2]);
    // The threshold is inclusive: an exact copy (similarity 1) with threshold 1.
    m.insert(chunk(4, 0, 0), &at(5.0, 4)).unwrap();
    let exact_copies = RetrievalConfig {
        dedup: Some(1.0),
        ..no_rescoring(4)
    };
    let got = m.retrieve(&query(&q, None, None), &exact_copies).unwrap();
    assert!(!got.iter().any(|r| r.id == 3), "{got:?}");
    assert_eq!(got.len(), 3);
}

#[test]
fn the_query_trajectory_is_excluded_and_tasks_can_be_required() {
    let mut m = RetrievalMemory::new(3, IndexConfig::default()).unwrap();
    // Trajectory 7 holds the most similar chunks.
    m.insert(chunk(7, 1, 0), &at(0.0, 3)).unwrap();
    m.insert(chunk(7, 1, 25), &at(1.0, 3)).unwrap();
    m.insert(chunk(8, 1, 0), &at(30.0, 3)).unwrap();
    m.insert(chunk(9, 2, 0), &at(70.0, 3)).unwrap();
    let q = at(0.0, 3);
    let config = RetrievalConfig {
        dedup: None,
        ..no_rescoring(10)
    };
    let got = m.retrieve(&query(&q, Some(7), Some(1)), &config).unwrap();
    assert_eq!(
        got.iter().map(|r| r.chunk.trajectory).collect::<Vec<_>>(),
        [8, 9]
    );
    let with_own = RetrievalConfig {
        exclude_own_trajectory: false,
        ..config
    };
    let got = m.retrieve(&query(&q, Some(7), Some(1)), &with_own).unwrap();
    assert_eq!(got.len(), 4);
    // A trajectory the memory does not hold excludes nothing.
    assert_eq!(
        m.retrieve(&query(&q, Some(99), None), &config)
            .unwrap()
            .len(),
        4
    );
    let same_task = RetrievalConfig {
        same_task_only: true,
        ..config
    };
    let got = m
        .retrieve(&query(&q, Some(7), Some(2)), &same_task)
        .unwrap();
    assert_eq!(
        got.iter().map(|r| r.chunk.trajectory).collect::<Vec<_>>(),
        [9]
    );
    // The training cut-off drops what is too similar to the query.
    let cutoff = RetrievalConfig {
        query_cutoff: Some(0.98),
        exclude_own_trajectory: false,
        ..config
    };
    let got = m.retrieve(&query(&q, Some(7), None), &cutoff).unwrap();
    assert_eq!(
        got.iter().map(|r| r.chunk.trajectory).collect::<Vec<_>>(),
        [8, 9]
    );
}

#[test]
fn rescoring_adds_min_max_normalised_utility_and_task_match() {
    let mut m = RetrievalMemory::new(2, IndexConfig::default()).unwrap();
    // Similarities cos 0° = 1, cos 60° = 0.5, cos 90° = 0 → min-max 1, 0.5, 0.
    m.insert(chunk(1, 0, 0), &at(0.0, 2)).unwrap();
    m.insert(chunk(2, 3, 0), &at(60.0, 2)).unwrap();
    m.insert(chunk(3, 0, 0), &at(90.0, 2)).unwrap();
    // Utilities 2, 10, 6 → min-max 0, 1, 0.5.
    m.set_utility(1, 2.0).unwrap();
    m.set_utility(2, 10.0).unwrap();
    m.set_utility(3, 6.0).unwrap();
    let q = at(0.0, 2);
    let config = RetrievalConfig {
        n: 3,
        dedup: None,
        ..RetrievalConfig::default()
    };
    let got = m.retrieve(&query(&q, None, Some(0)), &config).unwrap();
    let scores: Vec<(u64, f32)> = got.iter().map(|r| (r.chunk.trajectory, r.score)).collect();
    // 0.5 + 1 = 1.5; 1 + 0 = 1; 0 + 0.5 = 0.5.
    let want = [(2, 1.5), (1, 1.0), (3, 0.5)];
    for ((t, s), (wt, ws)) in scores.iter().zip(want) {
        assert_eq!(*t, wt);
        assert!((s - ws).abs() < 1e-6, "{scores:?}");
    }
    assert_eq!(got[0].utility, 10.0);
    assert!((got[0].similarity - 0.5).abs() < 1e-6);
    // Same task (0) as the query adds w_task: 1 + 1 = 2 and 0.5 + 1 = 1.5 against 1.5.
    let with_task = RetrievalConfig {
        w_task: 1.0,
        ..config
    };
    let got = m.retrieve(&query(&q, None, Some(0)), &with_task).unwrap();
    let order: Vec<u64> = got.iter().map(|r| r.chunk.trajectory).collect();
    // Trajectories 2 and 3 tie at 1.5; 2 is more similar to the query.
    assert_eq!(order, [1, 2, 3]);
    // n limits the answer.
    let one = RetrievalConfig { n: 1, ..config };
    assert_eq!(m.retrieve(&query(&q, None, None), &one).unwrap().len(), 1);
}

#[test]
fn equal_scores_fall_back_to_similarity_then_id() {
    let mut m = RetrievalMemory::new(2, IndexConfig::default()).unwrap();
    for t in 0..4 {
        m.insert(chunk(t, 0, 0), &at(30.0, 2)).unwrap();
    }
    let config = RetrievalConfig {
        n: 4,
        dedup: None,
        ..RetrievalConfig::default()
    };
    let got = m
        .retrieve(&query(&at(0.0, 2), None, None), &config)
        .unwrap();
    assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2, 3]);
}

#[test]
fn batches_of_queries_retrieve_what_single_queries_do() {
    let mut rng = Pcg64Mcg::seed_from_u64(17);
    let dim = 24;
    let keys = unit_vectors(&mut rng, 2000, dim);
    let chunks: Vec<Chunk> = (0..2000u64)
        .map(|i| chunk(i / 20, (i / 200) as u32, i % 20))
        .collect();
    for index in [
        IndexConfig::default(),
        IndexConfig::Exact {
            key_type: KeyType::I8,
        },
        IndexConfig::Hnsw(HnswConfig::default()),
    ] {
        let mut m = RetrievalMemory::new(dim, index).unwrap();
        m.insert_batch(&chunks, &keys).unwrap();
        for t in 0..100 {
            m.set_utility(t, (t % 7) as f32 / 7.0).unwrap();
        }
        let qkeys = unit_vectors(&mut rng, 12, dim);
        let queries: Vec<Query<'_>> = qkeys
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, k)| query(k, Some(i as u64 * 3), Some(i as u32 % 10)))
            .collect();
        let config = RetrievalConfig {
            n: 5,
            w_task: 0.5,
            ..RetrievalConfig::default()
        };
        let batch = m.retrieve_batch(&queries, &config).unwrap();
        for (q, got) in queries.iter().zip(&batch) {
            assert_eq!(*got, m.retrieve(q, &config).unwrap());
            assert_eq!(got.len(), 5);
            assert!(got.iter().all(|r| Some(r.chunk.trajectory) != q.trajectory));
        }
    }
}

#[test]
fn bad_chunks_keys_and_configs_are_errors() {
    let mut m = RetrievalMemory::new(2, IndexConfig::default()).unwrap();
    m.insert(chunk(1, 5, 0), &[1.0, 0.0]).unwrap();
    let err = |r: Result<u32, MemoryError>| r.unwrap_err();
    assert!(matches!(
        err(m.insert(chunk(1, 6, 0), &[1.0, 0.0])),
        MemoryError::InvalidConfig(_)
    ));
    assert!(matches!(
        err(m.insert(chunk(2, 0, 0), &[0.0, 0.0])),
        MemoryError::InvalidKey(_)
    ));
    assert!(matches!(
        err(m.insert(chunk(2, 0, 0), &[1.0])),
        MemoryError::Length { .. }
    ));
    let empty = Chunk {
        len: 0,
        ..chunk(2, 0, 0)
    };
    assert!(m.insert(empty, &[1.0, 0.0]).is_err());
    let overflow = Chunk {
        start: u64::MAX,
        ..chunk(2, 0, 0)
    };
    assert!(m.insert(overflow, &[1.0, 0.0]).is_err());
    // Two chunks of a new trajectory disagreeing on its task, in one batch.
    assert!(
        m.insert_batch(&[chunk(3, 0, 0), chunk(3, 1, 25)], &[1.0, 0.0, 0.0, 1.0])
            .is_err()
    );
    assert_eq!(m.len(), 1);
    assert_eq!(m.trajectories(), 1);
    assert!(matches!(
        m.set_utility(9, 1.0),
        Err(MemoryError::UnknownTrajectory(9))
    ));
    assert!(m.set_utility(1, f32::NAN).is_err());
    assert_eq!(m.utility(1), Some(0.0));
    let q = [1.0, 0.0];
    let zero = RetrievalConfig {
        n: 0,
        ..RetrievalConfig::default()
    };
    assert!(m.retrieve(&query(&q, None, None), &zero).is_err());
    assert!(
        m.retrieve(&query(&[0.0, 0.0], None, None), &RetrievalConfig::default())
            .is_err()
    );
    assert!(m.set_ef_search(10).is_err());
    // Keys are normalised: a long key retrieves with similarity 1.
    m.insert(chunk(2, 0, 0), &[0.0, 30.0]).unwrap();
    let got = m
        .retrieve(&query(&[0.0, 2.0], None, None), &RetrievalConfig::default())
        .unwrap();
    assert!((got[0].similarity - 1.0).abs() < 1e-6);
    assert_eq!(m.chunk(1), Some(chunk(2, 0, 0)));
    assert_eq!(m.chunk(2), None);
}

// ---------------------------------------------------------------------------------
// Saving and loading.

fn small_memory(index: IndexConfig) -> RetrievalMemory {
    let mut rng = Pcg64Mcg::seed_from_u64(18);
    let dim = 5;
    let mut m = RetrievalMemory::new(dim, index).unwrap();
    let keys = unit_vectors(&mut rng, 40, dim);
    for (i, key) in keys.chunks_exact(dim).enumerate() {
        let i = i as u64;
        m.insert(chunk(100 + i / 4, (i / 8) as u32, i % 4 * 25), key)
            .unwrap();
    }
    for t in 100..110 {
        m.set_utility(t, (t as f32 - 100.0) / 9.0).unwrap();
    }
    m
}

fn all_indexes() -> Vec<IndexConfig> {
    let hnsw = HnswConfig {
        m: 4,
        ef_construction: 16,
        ef_search: 8,
        seed: 9,
        key_type: KeyType::F32,
    };
    vec![
        IndexConfig::default(),
        IndexConfig::Exact {
            key_type: KeyType::F16,
        },
        IndexConfig::Exact {
            key_type: KeyType::I8,
        },
        IndexConfig::Hnsw(hnsw),
        IndexConfig::Hnsw(HnswConfig {
            key_type: KeyType::I8,
            ..hnsw
        }),
    ]
}

#[test]
fn a_saved_memory_loads_back_the_same_and_retrieves_the_same() {
    for index in all_indexes() {
        let m = small_memory(index);
        let bytes = m.to_bytes();
        let back = RetrievalMemory::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes, "{index:?}");
        assert_eq!((back.len(), back.trajectories(), back.dim()), (40, 10, 5));
        let config = RetrievalConfig {
            n: 4,
            w_task: 0.3,
            ..RetrievalConfig::default()
        };
        let q = [0.3, -0.2, 0.9, 0.1, 0.0];
        let question = query(&q, Some(104), Some(1));
        assert_eq!(
            back.retrieve(&question, &config).unwrap(),
            m.retrieve(&question, &config).unwrap()
        );
        // Growing after a load gives what growing before saving gives.
        let (mut a, mut b) = (m, back);
        a.insert(chunk(200, 0, 0), &q).unwrap();
        b.insert(chunk(200, 0, 0), &q).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
    }
    let empty = RetrievalMemory::new(3, IndexConfig::Hnsw(HnswConfig::default())).unwrap();
    let back = RetrievalMemory::from_bytes(&empty.to_bytes()).unwrap();
    assert!(back.is_empty());
}

#[test]
fn every_truncation_and_every_flipped_byte_is_an_error() {
    for index in all_indexes() {
        let bytes = small_memory(index).to_bytes();
        for len in 0..bytes.len() {
            match RetrievalMemory::from_bytes(&bytes[..len]) {
                Err(MemoryError::RetrievalLoad(_)) => {}
                other => panic!("{index:?}, {len} bytes: {:?}", other.map(|m| m.len())),
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(RetrievalMemory::from_bytes(&longer).is_err());
        for i in 0..bytes.len() {
            for bit in [0, 7] {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert!(
                    matches!(
                        RetrievalMemory::from_bytes(&damaged),
                        Err(MemoryError::RetrievalLoad(_))
                    ),
                    "{index:?}: byte {i} bit {bit}"
                );
            }
        }
    }
}

/// Rewrites the checksum so that only the content checks can object.
fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
    let body = bytes.len() - 8;
    let sum = crate::codec::checksum(&bytes[..body]);
    bytes[body..].copy_from_slice(&sum.to_le_bytes());
    bytes
}

fn load_error(bytes: Vec<u8>) -> String {
    match RetrievalMemory::from_bytes(&resealed(bytes)) {
        Err(MemoryError::RetrievalLoad(m)) => m,
        other => panic!("expected a load error, got {:?}", other.map(|m| m.len())),
    }
}

#[test]
fn inconsistent_content_with_a_valid_checksum_is_named() {
    let exact = small_memory(IndexConfig::default()).to_bytes();
    // Header: magic 0..4, version 4..8, dim 8..16, key type 16, kind 17,
    // trajectories 18..26, chunks 26..34; then trajectories (16 bytes each), chunks.
    let set = |mut b: Vec<u8>, at: usize, v: &[u8]| {
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    assert!(load_error(set(exact.clone(), 0, b"XXXX")).contains("magic"));
    assert!(load_error(set(exact.clone(), 4, &2u32.to_le_bytes())).contains("version 2"));
    assert!(load_error(set(exact.clone(), 16, &[9])).contains("key type 9"));
    assert!(load_error(set(exact.clone(), 17, &[9])).contains("index kind 9"));
    assert!(load_error(set(exact.clone(), 8, &0u64.to_le_bytes())).contains("dim 0"));
    assert!(load_error(set(exact.clone(), 26, &u64::MAX.to_le_bytes())).contains("cannot fit"));
    assert!(load_error(set(exact.clone(), 18, &41u64.to_le_bytes())).contains("41 trajectories"));
    let trajectories = 34;
    // Trajectory 1 given the id of trajectory 0.
    let first_id = exact[trajectories..trajectories + 8].to_vec();
    assert!(load_error(set(exact.clone(), trajectories + 16, &first_id)).contains("twice"));
    assert!(
        load_error(set(
            exact.clone(),
            trajectories + 12,
            &f32::NAN.to_le_bytes()
        ))
        .contains("utility")
    );
    let chunks = trajectories + 10 * 16;
    assert!(load_error(set(exact.clone(), chunks, &10u32.to_le_bytes())).contains("slot 10"));
    assert!(load_error(set(exact.clone(), chunks + 4, &0u32.to_le_bytes())).contains("len 0"));
    let keys = chunks + 40 * 16;
    assert!(load_error(set(exact.clone(), keys, &f32::INFINITY.to_le_bytes())).contains("key 0"));
    // Every chunk moved to trajectory 0 leaves the others without a chunk.
    let mut orphan = exact.clone();
    for c in 0..40 {
        orphan = set(orphan, chunks + 16 * c, &0u32.to_le_bytes());
    }
    assert!(load_error(orphan).contains("no chunk"));

    let i8s = small_memory(IndexConfig::Exact {
        key_type: KeyType::I8,
    })
    .to_bytes();
    assert!(load_error(set(i8s.clone(), keys, &[0x80])).contains("-128"));
    assert!(load_error(set(i8s, keys + 40 * 5, &(-1f32).to_le_bytes())).contains("scale"));

    let hnsw_config = HnswConfig {
        m: 4,
        ef_construction: 16,
        ef_search: 8,
        seed: 9,
        key_type: KeyType::F32,
    };
    let hnsw = small_memory(IndexConfig::Hnsw(hnsw_config)).to_bytes();
    // HNSW header after the fixed one: m, ef_construction, ef_search, seed, entry.
    assert!(load_error(set(hnsw.clone(), 34, &1u32.to_le_bytes())).contains("m 1"));
    assert!(
        load_error(set(hnsw.clone(), 34 + 20, &40u32.to_le_bytes())).contains("entry point 40")
    );
    let graph = 34 + 24 + 10 * 16 + 40 * 16 + 40 * 5 * 4;
    // Node 0's layer-0 count, then its first link.
    assert!(load_error(set(hnsw.clone(), graph, &9u32.to_le_bytes())).contains("9 links"));
    let count = u32::from_le_bytes(hnsw[graph..graph + 4].try_into().unwrap());
    assert!(count > 0);
    assert!(load_error(set(hnsw.clone(), graph + 4, &40u32.to_le_bytes())).contains("links to 40"));
    assert!(load_error(set(hnsw, graph + 4, &0u32.to_le_bytes())).contains("links to 0"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, and saved memories with arbitrary bytes overwritten, never
    /// panic.
    #[test]
    fn arbitrary_input_never_panics(
        noise in proptest::collection::vec(any::<u8>(), 0..400),
        at in 0usize..2000,
        which in 0usize..5,
        reseal in any::<bool>(),
    ) {
        let _ = RetrievalMemory::from_bytes(&noise);
        let mut bytes = small_memory(all_indexes()[which]).to_bytes();
        let at = at % bytes.len();
        let end = (at + noise.len()).min(bytes.len());
        bytes[at..end].copy_from_slice(&noise[..end - at]);
        if reseal {
            bytes = resealed(bytes);
        }
        let _ = RetrievalMemory::from_bytes(&bytes);
    }
}
