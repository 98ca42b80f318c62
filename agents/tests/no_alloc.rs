//! Acting with a policy allocates nothing per call: a counting global allocator (this
//! test binary's own) sees zero allocations across many `act` calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use agentry_agents::config::PpoConfig;
use agentry_agents::ppo::{ActMode, ActionKind, Ppo, PpoShape};
use rand::SeedableRng;

struct Counting;

thread_local! {
    // Only the measuring test's thread is counted, and into its own count: the harness's
    // threads and the other tests, running at once, allocate too.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

/// The allocations `f` makes on this thread.
fn allocations_of(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
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
        let mut sum = 0.0;
        let n = allocations_of(|| {
            for mode in [ActMode::Sample, ActMode::Deterministic] {
                for _ in 0..1000 {
                    let a = policy.act(&obs, mask, mode, &mut rng, &mut ws);
                    sum += a.log_prob + policy.value(&obs, &mut ws);
                }
            }
        });
        assert!(sum.is_finite());
        assert_eq!(n, 0, "{action:?}: allocations while acting");
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
    let mut sum = 0;
    let n = allocations_of(|| {
        for mode in [ActMode::Sample, ActMode::Deterministic] {
            for _ in 0..100 {
                sum += vector.act(&floats, None, mode, &mut rng, &mut ws_v);
                sum += cnn.act(&bytes, None, mode, &mut rng, &mut ws_c);
            }
        }
    });
    assert!(sum < 1200);
    assert_eq!(n, 0, "allocations while acting");
}

/// An embedding program's agent over `policy`.
fn agent(policy: agentry_agents::train::Policy) -> agentry_agents::embed::Agent {
    use agentry_agents::train::{LoadedPolicy, PolicyMeta};
    agentry_agents::embed::Agent::from_policy(LoadedPolicy {
        path: "fresh.agentry".into(),
        meta: PolicyMeta {
            algo: "test".into(),
            env: Default::default(),
            env_steps: 0,
        },
        policy,
    })
}

/// `calls` rounds of `act`, `sample` and, with a mask, `act_masked` and
/// `sample_masked`; the sum of the discrete actions and continuous values chosen.
fn play<O: agentry_agents::embed::AsObs + ?Sized>(
    agent: &mut agentry_agents::embed::Agent,
    obs: &O,
    mask: Option<&[bool]>,
    calls: usize,
    rng: &mut rand_pcg::Pcg64Mcg,
) -> f64 {
    use agentry_envs::Action;
    fn value(a: Action<'_>) -> f64 {
        match a {
            Action::Discrete(i) => i as f64,
            Action::Continuous(v) => v.iter().map(|&x| x as f64).sum(),
            other => panic!("unexpected action {other:?}"),
        }
    }
    let mut sum = 0.0;
    for _ in 0..calls {
        sum += value(agent.act(obs).unwrap());
        sum += value(agent.sample(obs, rng).unwrap());
        if let Some(mask) = mask {
            sum += value(agent.act_masked(obs, mask).unwrap());
            sum += value(agent.sample_masked(obs, mask, rng).unwrap());
        }
    }
    sum
}

/// `Agent`, the embedding API, acts and samples without allocating after its first
/// calls: PPO (discrete with a mask, Gaussian, the Nature CNN on byte frames) and DQN
/// with a macro-action (its queue of actions to play and its mask widened over macros
/// are sized when the agent is made, not when the first macro is chosen).
#[test]
fn agents_act_without_allocating_after_the_first_calls() {
    use agentry_agents::config::{DqnConfig, RainbowConfig};
    use agentry_agents::dqn::{Dqn, QShape};
    use agentry_agents::train::Policy;
    let ppo = |shape: PpoShape, normalize_obs| {
        let config = PpoConfig {
            normalize_obs,
            ..PpoConfig::default()
        };
        let policy = Ppo::new(&config, &Default::default(), shape, 3).unwrap();
        agent(Policy::Ppo(policy.acting_policy()))
    };
    let discrete = ActionKind::Discrete { n: 3, masked: true };
    let continuous = ActionKind::Continuous {
        low: vec![-2.0, -1.0],
        high: vec![2.0, 1.0],
    };
    let frames = PpoShape {
        obs_dim: 2 * 36 * 36,
        action: ActionKind::Discrete {
            n: 3,
            masked: false,
        },
        obs_shape: vec![2, 36, 36],
        obs_u8: true,
    };
    let rainbow = RainbowConfig {
        macros: vec![vec![2, 0, 1]],
        ..RainbowConfig::off()
    };
    let config = DqnConfig {
        hidden: vec![32],
        buffer_size: 64,
        ..DqnConfig::default()
    };
    let q = Dqn::<f32>::new(
        &config,
        &rainbow,
        &Default::default(),
        QShape::flat(4, 3, true),
        100,
        1,
    )
    .unwrap()
    .acting_policy();
    assert_eq!(q.macros.len(), 1);
    assert!(q.epsilon > 0.5, "ε-greedy samples pick the macro often");
    let floats = [0.1f32, -0.2, 0.3, 0.0];
    let bytes: Vec<u8> = (0..2 * 36 * 36).map(|i| (i * 7 % 256) as u8).collect();
    let mask = [true, false, true];
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    for (name, mut agent, mask) in [
        (
            "ppo discrete",
            ppo(PpoShape::flat(4, discrete), true),
            Some(&mask[..]),
        ),
        (
            "ppo continuous",
            ppo(PpoShape::flat(4, continuous), false),
            None,
        ),
        (
            "dqn with a macro",
            agent(Policy::Q(q.clone())),
            Some(&mask[..]),
        ),
    ] {
        play(&mut agent, &floats[..], mask, 1, &mut rng);
        let mut sum = 0.0;
        let n = allocations_of(|| sum = play(&mut agent, &floats[..], mask, 500, &mut rng));
        assert!(sum.is_finite());
        assert_eq!(n, 0, "{name}: allocations while acting");
    }
    // A clone is sized as the original: its very first calls (a macro among them)
    // allocate nothing either.
    let original = agent(Policy::Q(q));
    let mut copy = original.clone();
    let n = allocations_of(|| {
        play(&mut copy, &floats[..], Some(&mask[..]), 200, &mut rng);
    });
    assert_eq!(
        n, 0,
        "a cloned dqn agent with a macro: allocations while acting"
    );
    let mut cnn = ppo(frames, false);
    play(&mut cnn, &bytes, None, 1, &mut rng);
    let n = allocations_of(|| {
        play(&mut cnn, &bytes, None, 5, &mut rng);
    });
    assert_eq!(n, 0, "ppo cnn: allocations while acting");
}
