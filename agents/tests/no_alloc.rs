//! Acting with a policy allocates nothing per call: a counting global allocator (this
//! test binary's own) sees zero allocations across many `act` calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use agentry_agents::config::PpoConfig;
use agentry_agents::ppo::{ActMode, ActionKind, Ppo, PpoShape};
use rand::SeedableRng;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Only this test's thread is counted (the harness's own threads allocate too).
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNTING.with(|c| c.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn acting_allocates_nothing_per_call() {
    for (action, layer_norm, normalize_obs) in [
        (ActionKind::Discrete { n: 3, masked: true }, false, false),
        (ActionKind::Discrete { n: 3, masked: true }, false, true),
        (
            ActionKind::Continuous {
                low: vec![-2.0],
                high: vec![2.0],
            },
            true,
            true,
        ),
    ] {
        let shape = PpoShape::flat(4, action.clone());
        let config = PpoConfig {
            normalize_obs,
            ..PpoConfig::default()
        };
        let plasticity = agentry_agents::config::PlasticityConfig {
            layer_norm,
            ..Default::default()
        };
        let policy = Ppo::new(&config, &plasticity, shape, 3)
            .unwrap()
            .acting_policy();
        assert_eq!(policy.obs_norm.is_some(), normalize_obs);
        let mut ws = policy.workspace();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let mask = [true, false, true];
        let mask = matches!(action, ActionKind::Discrete { .. }).then_some(&mask[..]);
        let obs = [0.1f32, -0.2, 0.3, 0.0];
        // Everything the calls need exists now; count from here.
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        COUNTING.with(|c| c.set(true));
        let mut sum = 0.0;
        for mode in [ActMode::Sample, ActMode::Deterministic] {
            for _ in 0..1000 {
                let a = policy.act(&obs, mask, mode, &mut rng, &mut ws);
                sum += a.log_prob + policy.value(&obs, &mut ws);
            }
        }
        COUNTING.with(|c| c.set(false));
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        assert!(sum.is_finite());
        assert_eq!(after - before, 0, "{action:?}: allocations while acting");
    }
}
