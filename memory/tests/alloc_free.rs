//! The hot paths allocate nothing: adding steps through an n-step adder into both
//! memories (overwrites and episode-end flushes included), sampling, updating
//! priorities and loading saved state, under a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use agentry_memory::{
    Adder, Batch, NStep, Prioritization, PrioritizedReplay, Replay, Step, UniformReplay,
};
use rand::SeedableRng;

struct CountingAllocator;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ACTIVE.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ACTIVE.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// How many allocations `f` makes.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.store(0, Ordering::SeqCst);
    ACTIVE.store(true, Ordering::SeqCst);
    f();
    ACTIVE.store(false, Ordering::SeqCst);
    COUNT.load(Ordering::SeqCst)
}

// A single test: the counter is global to the process, so nothing may run beside it.
#[test]
fn adding_sampling_updating_and_loading_allocate_nothing() {
    let obs_dim = 3;
    let mut uniform = Replay::Uniform(UniformReplay::new(50, obs_dim).unwrap());
    let mut prioritized = Replay::Prioritized(
        PrioritizedReplay::new(50, obs_dim, Prioritization::default()).unwrap(),
    );
    let mut adders = [
        NStep::new(3, 0.9, obs_dim).unwrap(),
        NStep::new(3, 0.9, obs_dim).unwrap(),
    ];
    let mut batch = Batch::new(16, obs_dim);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let mut td_errors = [0.0f32; 16];
    let saved = {
        let mut r = PrioritizedReplay::<f32>::new(50, obs_dim, Prioritization::default()).unwrap();
        r.load_bytes(&r.to_bytes()).unwrap();
        r.to_bytes()
    };

    let count = allocations(|| {
        for t in 0..200u32 {
            let obs = [t as f32; 3];
            let next_obs = [t as f32 + 1.0; 3];
            let step = Step {
                obs: &obs,
                action: t % 3,
                reward: 1.0,
                duration: 1 + t % 3,
                terminated: t % 17 == 16,
                truncated: t % 23 == 22,
                next_obs: &next_obs,
            };
            adders[0].add(&step, &mut uniform).unwrap();
            adders[1].add(&step, &mut prioritized).unwrap();
            if t >= 20 {
                for replay in [&mut uniform, &mut prioritized] {
                    replay.sample(&mut rng, 0.5, &mut batch).unwrap();
                    for (d, &r) in td_errors.iter_mut().zip(batch.rewards()) {
                        *d = r - 2.0;
                    }
                    replay
                        .update_priorities(batch.indices(), &td_errors)
                        .unwrap();
                }
            }
        }
        prioritized.load_bytes(&saved).unwrap();
    });
    assert_eq!(count, 0, "the hot paths allocated {count} times");
    assert!(prioritized.is_empty() && uniform.len() == 50);
}
