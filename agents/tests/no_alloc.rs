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

/// A Rainbow policy acts without allocating: on vectors (an MLP), and on byte frames
/// through the Nature CNN's convolutions, noisy (sampled) or greedy.
#[test]
fn q_policies_act_without_allocating() {
    use agentry_agents::config::{DqnConfig, RainbowConfig};
    use agentry_agents::dqn::{Dqn, QShape};
    let config = DqnConfig {
        hidden: vec![32],
        buffer_size: 64,
        ..DqnConfig::default()
    };
    let rainbow = RainbowConfig::default();
    let vector = Dqn::<f32>::new(
        &config,
        &rainbow,
        &Default::default(),
        QShape::flat(4, 3, false),
        100,
        1,
    )
    .unwrap()
    .acting_policy();
    let frames = QShape {
        obs_dim: 2 * 40 * 40,
        actions: 3,
        masked: false,
        obs_shape: vec![2, 40, 40],
        obs_u8: true,
    };
    let cnn = Dqn::<u8>::new(&config, &rainbow, &Default::default(), frames, 100, 1)
        .unwrap()
        .acting_policy();
    assert!(cnn.net.convs.is_some());
    let floats = [0.1f32, -0.2, 0.3, 0.0];
    let bytes: Vec<u8> = (0..2 * 40 * 40).map(|i| (i * 7 % 256) as u8).collect();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let (mut ws_v, mut ws_c) = (vector.workspace(), cnn.workspace());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let mut sum = 0;
    for mode in [ActMode::Sample, ActMode::Deterministic] {
        for _ in 0..100 {
            sum += vector.act(&floats, None, mode, &mut rng, &mut ws_v);
            sum += cnn.act(&bytes, None, mode, &mut rng, &mut ws_c);
        }
    }
    COUNTING.with(|c| c.set(false));
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(sum < 1200);
    assert_eq!(after - before, 0, "allocations while acting");
}
