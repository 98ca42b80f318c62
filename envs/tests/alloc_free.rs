//! The stepping hot path allocates nothing: for every registered environment, a single
//! environment and sync and threaded vector environments are stepped with random legal
//! actions (auto-resets included) under a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use agentry_envs::Params;
use agentry_envs::bench::{RandomSingle, RandomVector};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<F: FnMut()>(mut f: F) -> usize {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst)
}

// One test function: the counter is process-wide, so nothing may run beside it.
#[test]
fn stepping_allocates_nothing() {
    // Every environment with its defaults, and the code paths other parameters switch on.
    let mut cases: Vec<(&str, Params)> = agentry_envs::testing::registry_sample()
        .map(|s| (s.name, Params::new()))
        .collect();
    assert!(!cases.is_empty());
    cases.extend([
        (
            "tictactoe",
            Params::new()
                .with("opponent", "minimax")
                .with("agent_first", false),
        ),
        (
            "tictactoe",
            Params::new()
                .with("opponent", "eps-minimax")
                .with("illegal", "error"),
        ),
        (
            "bandit",
            Params::new()
                .with("kind", "bernoulli")
                .with("resample", false),
        ),
        (
            "bandit-nonstationary",
            Params::new()
                .with("mode", "switch")
                .with("switch_every", 7i64),
        ),
        ("dark-room", Params::new().with("random_goal", true)),
        ("dark-key-door", Params::new().with("random", true)),
        ("grid-world", Params::new().with("slip", 0.3)),
    ]);
    for (name, params) in &cases {
        let mut single = RandomSingle::new(name, params, 1).unwrap();
        let mut sync = RandomVector::new(name, params, 4, 1, 2).unwrap();
        let mut threaded = RandomVector::new(name, params, 6, 3, 3).unwrap();
        // Warm up: lazily built tables, first episodes.
        for _ in 0..300 {
            single.step().unwrap();
            sync.step().unwrap();
            threaded.step().unwrap();
        }
        // Atari copies emulate 4 frames a step, a hundred times slower than the rest:
        // fewer counted steps keep the test well under a minute (libtest's notice that a
        // test has run over 60 s allocates, and the count is process-wide). 300 steps
        // still cross episode ends: under the Atari protocol a life lasts a few dozen.
        let atari = name.starts_with("atari:") || name.starts_with("ALE/");
        let steps = if atari { 300 } else { 3000 };
        let n = count(|| {
            for _ in 0..steps {
                single.step().unwrap();
                sync.step().unwrap();
                threaded.step().unwrap();
            }
        });
        assert_eq!(n, 0, "{name} {params:?}: {n} allocations while stepping");
    }
}
