//! Tests of the ALE binding; they need ALE built and the ROMs installed
//! (`scripts/setup-atari.sh`).

use super::*;
use crate::env::EnvExt;
use crate::params::Params;
use crate::registry::make;
use crate::rng::rng_from_seed;
use crate::space::Action;
use rand::RngExt;

fn breakout(config: AtariConfig) -> AtariEnv {
    AtariEnv::new("Breakout", config).expect("Breakout ROM (run scripts/setup-atari.sh)")
}

/// Rewards, termination flags and a hash of each frame over `steps` seeded random steps.
fn rollout(env: &mut dyn Env, seed: u64, steps: usize) -> (Vec<f64>, Vec<u64>, Vec<bool>) {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let hash = |obs: &crate::env::Observation| {
        let mut h = DefaultHasher::new();
        match obs {
            crate::env::Observation::U8(v) => v.hash(&mut h),
            crate::env::Observation::F32(_) => unreachable!("Atari frames are bytes"),
        }
        h.finish()
    };
    let n = env.action_space().n().unwrap();
    let mut rng = rng_from_seed(seed ^ 0xA7A7);
    let (obs, _) = env.reset(Some(seed)).unwrap();
    let (mut rewards, mut frames, mut dones) = (vec![], vec![hash(&obs)], vec![]);
    for _ in 0..steps {
        let t = env.step(Action::Discrete(rng.random_range(0..n))).unwrap();
        rewards.push(t.reward);
        frames.push(hash(&t.obs));
        dones.push(t.terminated);
        if t.terminated || t.truncated {
            let (obs, _) = env.reset(None).unwrap();
            frames.push(hash(&obs));
        }
    }
    (rewards, frames, dones)
}

#[test]
fn atari_breakout_seeded_episode_is_reproducible() {
    let mut a = breakout(AtariConfig::default());
    let first = rollout(&mut a, 7, 600);
    // The same environment reseeded, and a fresh one, replay it exactly.
    assert_eq!(rollout(&mut a, 7, 600), first);
    let mut b = breakout(AtariConfig::default());
    assert_eq!(rollout(&mut b, 7, 600), first);
    // Random play scores and loses lives in 600 steps: the episode is not trivial.
    assert!(first.0.iter().sum::<f64>() > 0.0, "no reward in 600 steps");
    assert!(first.1.windows(2).any(|w| w[0] != w[1]));
    // Another seed gives another episode.
    assert_ne!(rollout(&mut b, 8, 600), first);
}

#[test]
fn atari_minimal_action_sets() {
    let b = breakout(AtariConfig::default());
    assert_eq!(b.action_space().n(), Some(4));
    assert_eq!(b.action_names(), ["NOOP", "FIRE", "RIGHT", "LEFT"]);
    let p = AtariEnv::new("Pong", AtariConfig::default()).unwrap();
    assert_eq!(p.action_space().n(), Some(6));
    let full = breakout(AtariConfig {
        full_action_space: true,
        ..AtariConfig::default()
    });
    assert_eq!(full.action_space().n(), Some(18));
}

#[test]
fn atari_invalid_action_is_an_error() {
    let mut env = breakout(AtariConfig::default());
    assert!(matches!(
        env.step(Action::Discrete(0)),
        Err(EnvError::NeedsReset(_))
    ));
    let (obs, info) = env.reset(Some(0)).unwrap();
    assert_eq!(info.get("lives"), Some(5.0));
    let frame = env.ale().episode_frame_number();
    for bad in [Action::Discrete(4), Action::Continuous(&[0.0])] {
        assert!(matches!(env.step(bad), Err(EnvError::InvalidAction { .. })));
    }
    // Nothing was emulated.
    assert_eq!(env.ale().episode_frame_number(), frame);
    assert_eq!(
        env.step(Action::Discrete(0)).unwrap().obs.to_f32().len(),
        obs.to_f32().len()
    );
    assert_eq!(env.ale().episode_frame_number(), frame + 4);
    // The raw handle rejects out-of-range actions too.
    let mut ale = Ale::new().unwrap();
    assert!(ale.act(18, 1.0).is_err());
}

#[test]
fn atari_sticky_actions_change_the_episode() {
    let sticky = rollout(&mut breakout(AtariConfig::default()), 3, 400);
    let plain = rollout(
        &mut breakout(AtariConfig {
            repeat_action_probability: 0.0,
            ..AtariConfig::default()
        }),
        3,
        400,
    );
    assert_ne!(sticky.1, plain.1);
    // Without sticky actions the emulator is deterministic: the seed does not matter.
    let mut env = breakout(AtariConfig {
        repeat_action_probability: 0.0,
        ..AtariConfig::default()
    });
    let n = env.action_space().n().unwrap();
    let mut frames = vec![];
    for seed in [1, 2] {
        env.reset(Some(seed)).unwrap();
        let mut episode = vec![];
        for i in 0..200 {
            let t = env.step(Action::Discrete(i % n)).unwrap();
            episode.push((t.obs, t.reward));
            if t.terminated || t.truncated {
                break;
            }
        }
        frames.push(episode);
    }
    assert_eq!(frames[0], frames[1]);
}

#[test]
fn atari_registry_names_and_options() {
    let mut env = make("atari:Breakout", &Params::new()).unwrap();
    assert_eq!(env.observation_space().shape(), [210, 160, 3]);
    let (obs, _) = env.reset(Some(1)).unwrap();
    assert_eq!(obs.to_f32().len(), 210 * 160 * 3);
    let env = make(
        "ALE/Pong-v5",
        &Params::new()
            .with("obs_type", "grayscale")
            .with("frameskip", 2i64)
            .with("full_action_space", true),
    )
    .unwrap();
    assert_eq!(env.observation_space().shape(), [210, 160]);
    assert_eq!(env.action_space().n(), Some(18));
    assert!(make("atari:SpaceInvaders", &Params::new()).is_ok());
    assert!(make("atari:space_invaders", &Params::new()).is_ok());
    // Modes and difficulties are checked against the game's.
    let err = make("atari:Breakout", &Params::new().with("mode", 1i64))
        .err()
        .unwrap();
    assert!(err.to_string().contains("mode"), "{err}");
    assert!(make("atari:Breakout", &Params::new().with("mode", 4i64)).is_ok());
    let mut env = make("atari:Breakout", &Params::new().with("difficulty", 1i64)).unwrap();
    env.reset(Some(0)).unwrap();
    env.step(Action::Discrete(1)).unwrap();
}

#[test]
fn atari_unknown_game_and_missing_rom_say_how_to_install() {
    let err = make("atari:NoSuchGame", &Params::new()).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("NoSuchGame") && msg.contains("setup-atari.sh") && msg.contains("Breakout"),
        "{msg}"
    );
    let err = AtariEnv::new("NoSuchGame", AtariConfig::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("ALE_ROM_DIR"), "{err}");
    let err = AtariEnv::from_rom(
        "Breakout",
        "/nonexistent/breakout.bin".into(),
        AtariConfig::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("ROM file not found"), "{err}");
    let err = AtariEnv::new(
        "Breakout",
        AtariConfig {
            frameskip: 0,
            ..AtariConfig::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("frameskip"), "{err}");
}

#[test]
fn atari_episode_ends_with_terminated_and_then_needs_reset() {
    let mut env = breakout(AtariConfig {
        max_num_frames_per_episode: 400,
        ..AtariConfig::default()
    });
    env.reset(Some(0)).unwrap();
    let mut steps = 0;
    let t = loop {
        let t = env.step(Action::Discrete(0)).unwrap();
        steps += 1;
        if t.terminated || t.truncated {
            break t;
        }
    };
    // NOOP never launches the ball: the frame limit truncates the episode at 400 frames.
    assert!(t.truncated && !t.terminated, "{t:?}");
    assert_eq!(steps, 100);
    assert!(matches!(
        env.step(Action::Discrete(0)),
        Err(EnvError::NeedsReset(_))
    ));
    env.reset(None).unwrap();
    assert!(env.step(Action::Discrete(1)).is_ok());
    assert!(
        env.render_rgb()
            .is_some_and(|img| img.pixels.len() == 210 * 160 * 3)
    );
    assert!(env.render_ansi().contains("Breakout"));
}
