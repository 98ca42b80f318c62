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
    let specs = agentry_envs::registry();
    assert!(!specs.is_empty());
    for spec in specs {
        let params = Params::new();
        let mut single = RandomSingle::new(spec.name, &params, 1).unwrap();
        let mut sync = RandomVector::new(spec.name, &params, 4, 1, 2).unwrap();
        let mut threaded = RandomVector::new(spec.name, &params, 6, 3, 3).unwrap();
        // Warm up: lazily built tables, first episodes.
        for _ in 0..300 {
            single.step().unwrap();
            sync.step().unwrap();
            threaded.step().unwrap();
        }
        let n = count(|| {
            for _ in 0..3000 {
                single.step().unwrap();
                sync.step().unwrap();
                threaded.step().unwrap();
            }
        });
        assert_eq!(n, 0, "{}: {n} allocations while stepping", spec.name);
    }
}
