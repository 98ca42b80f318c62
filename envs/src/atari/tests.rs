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
    // The raw game, Gymnasium's name.
    let mut env = make("ALE/Breakout-v5", &Params::new()).unwrap();
    assert_eq!(env.observation_space().shape(), [210, 160, 3]);
    let (obs, _) = env.reset(Some(1)).unwrap();
    assert_eq!(obs.to_f32().len(), 210 * 160 * 3);
    // The preprocessed one.
    let mut env = make("atari:Breakout", &Params::new()).unwrap();
    assert_eq!(env.observation_space().shape(), [4, 84, 84]);
    let (obs, _) = env.reset(Some(1)).unwrap();
    assert_eq!(obs.to_f32().len(), 4 * 84 * 84);
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
    for name in [
        "atari:SpaceInvaders",
        "atari:space_invaders",
        "ATARI:pong",
        "ALE/space_invaders-v5",
        "ale/pong-V5",
    ] {
        assert!(make(name, &Params::new()).is_ok(), "{name}");
    }
    assert_eq!(
        crate::registry::find("atari:space_invaders").unwrap().name,
        "atari:SpaceInvaders"
    );
    assert_eq!(
        crate::registry::find("ale/space_invaders-v5").unwrap().name,
        "ALE/SpaceInvaders-v5"
    );
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
    // Raw names too; other versions are not Atari names.
    let err = make("ALE/NoSuchGame-v5", &Params::new()).err().unwrap();
    assert!(err.to_string().contains("setup-atari.sh"), "{err}");
    let err = make("ALE/Pong-v4", &Params::new()).err().unwrap();
    assert!(matches!(err, EnvError::UnknownEnv { .. }), "{err}");
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

// ---- The preprocessing ----

use crate::env::EpisodeEnd;
use crate::wrappers::{AreaResize, FrameStack, max_pool};

/// Frames one at a time, no sticky actions (so that runs compare frame for frame).
fn frames_base() -> AtariConfig {
    AtariConfig {
        frameskip: 1,
        repeat_action_probability: 0.0,
        ..AtariConfig::default()
    }
}

/// Every switch off but the frame skip and the resize.
fn bare() -> PreprocessConfig {
    PreprocessConfig {
        noop_max: 0,
        max_pool: false,
        episodic_life: false,
        fire_reset: false,
        clip_rewards: false,
        ..PreprocessConfig::default()
    }
}

fn pre(game: &str, base: AtariConfig, config: PreprocessConfig) -> AtariPreprocessing {
    AtariPreprocessing::new(AtariEnv::new(game, base).unwrap(), config).unwrap()
}

fn frame_number(env: &AtariPreprocessing) -> i32 {
    env.inner().ale().episode_frame_number()
}

fn u8s(obs: &crate::env::Observation) -> Vec<u8> {
    match obs {
        crate::env::Observation::U8(v) => v.clone(),
        crate::env::Observation::F32(_) => panic!("Atari frames are bytes"),
    }
}

#[test]
fn atari_preprocessing_frames_are_the_resized_and_pooled_screens() {
    // The raw game, one frame per step, against the preprocessing with max-pool off and
    // on: the observation is the resize of the skip's last frame, or of the maximum of
    // its last two.
    let mut rng = rng_from_seed(4);
    let actions: Vec<usize> = (0..400).map(|_| rng.random_range(0..4)).collect();
    let mut raw = AtariEnv::new(
        "Breakout",
        AtariConfig {
            obs_type: ObsType::Grayscale,
            ..frames_base()
        },
    )
    .unwrap();
    let mut resize = AreaResize::new(210, 160, 84, 84);
    for pool in [false, true] {
        let mut env = pre(
            "Breakout",
            frames_base(),
            PreprocessConfig {
                max_pool: pool,
                ..bare()
            },
        );
        assert_eq!(env.observation_space().shape(), [84, 84]);
        let (obs, info) = env.reset(Some(3)).unwrap();
        let (first, _) = raw.reset(Some(3)).unwrap();
        let mut want = vec![0u8; 84 * 84];
        resize.resize(&u8s(&first), &mut want);
        assert_eq!(u8s(&obs), want);
        assert_eq!(info.get("lives"), Some(5.0));
        let mut total = 0.0;
        for &a in &actions {
            let t = env.step(Action::Discrete(a)).unwrap();
            let mut frames = vec![];
            let mut reward = 0.0;
            for _ in 0..4 {
                let r = raw.step(Action::Discrete(a)).unwrap();
                reward += r.reward;
                frames.push(u8s(&r.obs));
                if r.terminated || r.truncated {
                    break;
                }
            }
            // A game that ends inside the skip shows its final frame, unpooled.
            let screen = if pool && frames.len() == 4 {
                let mut m = vec![0u8; 210 * 160];
                max_pool(&frames[2], &frames[3], &mut m);
                m
            } else {
                frames[frames.len() - 1].clone()
            };
            resize.resize(&screen, &mut want);
            assert_eq!(u8s(&t.obs), want);
            assert_eq!(t.reward, reward);
            assert_eq!(t.info.get("lives"), Some(f64::from(raw.lives())));
            total += t.reward;
            if t.terminated || t.truncated {
                break;
            }
        }
        assert!(total > 0.0, "the random play scores");
    }
}

#[test]
fn atari_preprocessing_rgb_frames_resize_each_channel() {
    let mut env = pre(
        "Pong",
        frames_base(),
        PreprocessConfig {
            grayscale: false,
            screen_size: 42,
            ..bare()
        },
    );
    assert_eq!(env.observation_space().shape(), [42, 42, 3]);
    let mut raw = AtariEnv::new("Pong", frames_base()).unwrap();
    env.reset(Some(0)).unwrap();
    raw.reset(Some(0)).unwrap();
    let mut resize = AreaResize::new(210, 160, 42, 42);
    for i in 0..30 {
        let t = env.step(Action::Discrete(i % 6)).unwrap();
        let mut last = vec![];
        for _ in 0..4 {
            last = u8s(&raw.step(Action::Discrete(i % 6)).unwrap().obs);
        }
        let got = u8s(&t.obs);
        for c in 0..3 {
            let plane: Vec<u8> = last.chunks(3).map(|p| p[c]).collect();
            let mut want = vec![0u8; 42 * 42];
            resize.resize(&plane, &mut want);
            let have: Vec<u8> = got.chunks(3).map(|p| p[c]).collect();
            assert_eq!(have, want, "step {i}, channel {c}");
        }
    }
}

#[test]
fn atari_preprocessing_noops_are_random_in_range_seeded_and_forceable() {
    let config = PreprocessConfig {
        noop_max: 30,
        ..bare()
    };
    let mut env = pre("Breakout", frames_base(), config);
    env.force_noops(0);
    env.reset(Some(0)).unwrap();
    let base = frame_number(&env);
    let mut counts = vec![];
    for seed in 0..40 {
        env.reset(Some(seed)).unwrap();
        counts.push(frame_number(&env) - base);
    }
    assert!(counts.iter().all(|&n| (1..=30).contains(&n)), "{counts:?}");
    let distinct: std::collections::HashSet<_> = counts.iter().collect();
    assert!(distinct.len() > 10, "{counts:?}");
    // The same seed draws the same count; `None` draws on.
    env.reset(Some(7)).unwrap();
    let n7 = frame_number(&env);
    env.reset(Some(7)).unwrap();
    assert_eq!(frame_number(&env), n7);
    // A forced count applies once.
    env.force_noops(13);
    env.reset(Some(7)).unwrap();
    assert_eq!(frame_number(&env), base + 13);
    env.reset(Some(7)).unwrap();
    assert_eq!(frame_number(&env), n7);
    // noop_max 0: none.
    let mut env = pre("Breakout", frames_base(), bare());
    env.reset(Some(5)).unwrap();
    assert_eq!(frame_number(&env), base);
}

#[test]
fn atari_preprocessing_fire_reset_presses_fire_then_action_2() {
    let config = PreprocessConfig {
        fire_reset: true,
        ..bare()
    };
    let mut env = pre("Breakout", frames_base(), config.clone());
    assert!(env.fires_on_reset());
    let mut plain = pre("Breakout", frames_base(), bare());
    plain.reset(Some(0)).unwrap();
    env.reset(Some(0)).unwrap();
    // Two steps of 4 frames: FIRE, then RIGHT.
    assert_eq!(frame_number(&env), frame_number(&plain) + 8);
    plain.step(Action::Discrete(1)).unwrap();
    let t = plain.step(Action::Discrete(2)).unwrap();
    let mut fired = pre("Breakout", frames_base(), config);
    let (obs, _) = fired.reset(Some(0)).unwrap();
    assert_eq!(obs, t.obs);
    // FIRE launched the ball: doing nothing loses a life (without it, nothing happens
    // until the frame cap; see atari_episode_ends_with_terminated_and_then_needs_reset).
    let lost = (0..500).any(|_| {
        let t = fired.step(Action::Discrete(0)).unwrap();
        t.info.get("lives") == Some(4.0)
    });
    assert!(lost);
    // Games without FIRE as action 1 ignore the switch.
    let freeway = AtariEnv::new("Freeway", frames_base()).unwrap();
    assert_ne!(freeway.action_names().get(1), Some(&"FIRE"));
    let mut env = AtariPreprocessing::new(
        freeway,
        PreprocessConfig {
            fire_reset: true,
            ..bare()
        },
    )
    .unwrap();
    assert!(!env.fires_on_reset());
    env.reset(Some(0)).unwrap();
    let mut no_fire = pre("Freeway", frames_base(), bare());
    no_fire.reset(Some(0)).unwrap();
    assert_eq!(frame_number(&env), frame_number(&no_fire));
}

#[test]
fn atari_preprocessing_episodic_life_continues_the_game_and_reports_it_whole() {
    // Breakout with the protocol (sticky actions off), FIRE-heavy random play.
    let config = PreprocessConfig::default();
    let mut env = pre("Breakout", frames_base(), config);
    let mut rng = rng_from_seed(5);
    env.reset(Some(1)).unwrap();
    let mut lives_seen = vec![5];
    let mut learner_steps = 0u64;
    let mut clipped = 0.0;
    let mut ends = vec![];
    loop {
        let t = env
            .step(Action::Discrete(rng.random_range(0..4usize)))
            .unwrap();
        learner_steps += 1;
        clipped += t.reward;
        assert!([0.0, 1.0].contains(&t.reward));
        if !(t.terminated || t.truncated) {
            continue;
        }
        let lives = t.info.get("lives").unwrap() as i32;
        let end = env.episode_end();
        ends.push(end);
        if lives > 0 {
            // A life lost: the learner's episode ends, the game goes on.
            assert!(t.terminated && !t.truncated);
            assert_eq!(end, EpisodeEnd::Partial);
            let frames = frame_number(&env);
            assert!(matches!(
                env.step(Action::Discrete(0)),
                Err(EnvError::NeedsReset(_))
            ));
            let (_, info) = env.reset(None).unwrap();
            assert_eq!(info.get("lives"), Some(lives as f64));
            // One NOOP step and the two fire-reset steps, 4 frames each.
            assert_eq!(frame_number(&env), frames + 12);
            lives_seen.push(lives);
        } else {
            // The game is over: reported whole, unclipped, over all lives.
            let EpisodeEnd::Whole { ret, len } = end else {
                panic!("{end:?}");
            };
            assert_eq!(len, learner_steps);
            assert!(ret >= clipped, "{ret} < {clipped}");
            assert_eq!(ret, env.game_return());
            let (_, info) = env.reset(None).unwrap();
            assert_eq!(info.get("lives"), Some(5.0));
            assert!(frame_number(&env) <= 30 + 8);
            break;
        }
    }
    assert_eq!(lives_seen, [5, 4, 3, 2, 1]);
    // With episodic life off, a life lost is just a step.
    let mut env = pre(
        "Breakout",
        frames_base(),
        PreprocessConfig {
            episodic_life: false,
            ..PreprocessConfig::default()
        },
    );
    env.reset(Some(1)).unwrap();
    let mut rng = rng_from_seed(5);
    let t = loop {
        let t = env
            .step(Action::Discrete(rng.random_range(0..4usize)))
            .unwrap();
        if t.terminated || t.truncated {
            break t;
        }
    };
    assert_eq!(t.info.get("lives"), Some(0.0));
    assert!(matches!(env.episode_end(), EpisodeEnd::Whole { .. }));
}

#[test]
fn atari_preprocessing_clips_rewards_to_their_sign_and_keeps_the_score() {
    // Space Invaders scores 5 to 200 points an invader.
    let play = |clip: bool| {
        let mut env = pre(
            "SpaceInvaders",
            frames_base(),
            PreprocessConfig {
                clip_rewards: clip,
                episodic_life: false,
                ..PreprocessConfig::default()
            },
        );
        env.force_noops(4);
        env.reset(Some(0)).unwrap();
        let mut rng = rng_from_seed(9);
        let mut rewards = vec![];
        for _ in 0..600 {
            let t = env
                .step(Action::Discrete(rng.random_range(0..6usize)))
                .unwrap();
            rewards.push(t.reward);
            if t.terminated || t.truncated {
                break;
            }
        }
        (rewards, env.game_return())
    };
    let (clipped, score) = play(true);
    let (raw, raw_score) = play(false);
    assert_eq!(score, raw_score);
    assert_eq!(raw.iter().sum::<f64>(), raw_score);
    assert!(raw.iter().any(|&r| r > 1.0), "{raw:?}");
    let signs: Vec<f64> = raw
        .iter()
        .map(|&r| if r == 0.0 { 0.0 } else { r.signum() })
        .collect();
    assert_eq!(clipped, signs);
}

#[test]
fn atari_preprocessing_frame_cap_truncates_mid_skip_with_the_final_frame() {
    // NOOP never launches Breakout's ball: only the frame cap ends the episode, 2 frames
    // into step 51 (202 = 50 × 4 + 2).
    let base = AtariConfig {
        max_num_frames_per_episode: 202,
        ..frames_base()
    };
    let mut env = pre(
        "Breakout",
        base.clone(),
        PreprocessConfig {
            max_pool: true,
            ..bare()
        },
    );
    let mut raw = AtariEnv::new(
        "Breakout",
        AtariConfig {
            obs_type: ObsType::Grayscale,
            ..base
        },
    )
    .unwrap();
    env.reset(Some(0)).unwrap();
    raw.reset(Some(0)).unwrap();
    let mut steps = 0;
    let t = loop {
        let t = env.step(Action::Discrete(0)).unwrap();
        steps += 1;
        if t.terminated || t.truncated {
            break t;
        }
    };
    assert!(t.truncated && !t.terminated);
    assert_eq!(steps, 51);
    assert_eq!(env.episode_end(), EpisodeEnd::Whole { ret: 0.0, len: 51 });
    // The observation is the final frame, unpooled.
    let mut last = vec![];
    for _ in 0..202 {
        let r = raw.step(Action::Discrete(0)).unwrap();
        last = u8s(&r.obs);
        if r.truncated {
            break;
        }
    }
    let mut want = vec![0u8; 84 * 84];
    AreaResize::new(210, 160, 84, 84).resize(&last, &mut want);
    assert_eq!(u8s(&t.obs), want);
    // The next reset starts a new game.
    env.reset(None).unwrap();
    assert_eq!(frame_number(&env), 0);
    // The same through the registry's parameters.
    let mut env = make(
        "atari:Breakout",
        &Params::new()
            .with("max_num_frames_per_episode", 202i64)
            .with("noop_max", 0i64)
            .with("fire_reset", false),
    )
    .unwrap();
    env.reset(Some(0)).unwrap();
    let steps = (1..)
        .find(|_| env.step(Action::Discrete(0)).unwrap().truncated)
        .unwrap();
    assert_eq!(steps, 51);
}

#[test]
fn atari_preprocessing_stacks_and_registry_params() {
    let mut env = make("atari:Breakout", &Params::new()).unwrap();
    assert_eq!(env.observation_space().shape(), [4, 84, 84]);
    assert_eq!(env.action_space().n(), Some(4));
    let (obs, _) = env.reset(Some(0)).unwrap();
    // After a reset every slot holds the first frame.
    let obs = u8s(&obs);
    assert!(obs.chunks(84 * 84).all(|f| f == &obs[..84 * 84]));
    let t = env.step(Action::Discrete(1)).unwrap();
    let next = u8s(&t.obs);
    assert_eq!(&next[..3 * 84 * 84], &obs[84 * 84..]);
    let env = make(
        "atari:Pong",
        &Params::new()
            .with("frame_stack", 2i64)
            .with("grayscale", false)
            .with("screen_size", 64i64)
            .with("full_action_space", true),
    )
    .unwrap();
    assert_eq!(env.observation_space().shape(), [2, 64, 64, 3]);
    assert_eq!(env.action_space().n(), Some(18));
    // The same stack built by hand.
    let stacked = FrameStack::new(
        AtariPreprocessing::from_game("Breakout", PreprocessConfig::default()).unwrap(),
        4,
    )
    .unwrap();
    assert_eq!(stacked.observation_space().shape(), [4, 84, 84]);
    assert_eq!(stacked.inner().config(), &PreprocessConfig::default());
    assert_eq!(
        stacked.inner().inner().config().repeat_action_probability,
        0.25
    );
}

#[test]
fn atari_preprocessing_errors() {
    let err = AtariPreprocessing::new(
        AtariEnv::new("Breakout", AtariConfig::default()).unwrap(),
        PreprocessConfig::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("frameskip 1"), "{err}");
    for (config, param) in [
        (
            PreprocessConfig {
                frame_skip: 0,
                ..bare()
            },
            "frame_skip",
        ),
        (
            PreprocessConfig {
                screen_size: 0,
                ..bare()
            },
            "screen_size",
        ),
        (
            PreprocessConfig {
                screen_size: 161,
                ..bare()
            },
            "screen_size",
        ),
    ] {
        let err =
            AtariPreprocessing::new(AtariEnv::new("Breakout", frames_base()).unwrap(), config)
                .err()
                .unwrap();
        assert!(err.to_string().contains(param), "{err}");
    }
    let mut env = pre("Breakout", frames_base(), PreprocessConfig::default());
    assert!(matches!(
        env.step(Action::Discrete(0)),
        Err(EnvError::NeedsReset(_))
    ));
    env.reset(Some(0)).unwrap();
    let frames = frame_number(&env);
    for bad in [Action::Discrete(4), Action::Continuous(&[0.0])] {
        assert!(matches!(env.step(bad), Err(EnvError::InvalidAction { .. })));
    }
    assert_eq!(frame_number(&env), frames);
    // Registry parameters: unknown names list the valid ones, values are checked.
    let err = make("atari:Breakout", &Params::new().with("frameskip", 2i64))
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("unknown parameter") && msg.contains("frame_skip"),
        "{msg}"
    );
    for (param, value) in [
        ("screen_size", 200i64),
        ("frame_stack", 0),
        ("frame_skip", 0),
        ("noop_max", -1),
    ] {
        let err = make("atari:Breakout", &Params::new().with(param, value))
            .err()
            .unwrap();
        assert!(err.to_string().contains(param), "{err}");
    }
    let err = make("ALE/Breakout-v5", &Params::new().with("noop_max", 3i64))
        .err()
        .unwrap();
    assert!(err.to_string().contains("unknown parameter"), "{err}");
}

#[test]
fn atari_protocol_vector_statistics_are_whole_games() {
    use crate::vector::{VecAction, make_vec};
    let mut envs = make_vec(
        "atari:Breakout",
        &Params::new().with("repeat_action_probability", 0.0),
        2,
        2,
    )
    .unwrap();
    envs.reset(Some(3)).unwrap();
    let mut rng = rng_from_seed(1);
    let (mut dones, mut games) = (0, vec![]);
    let mut steps = [0u64; 2];
    let mut clipped = [0.0f64; 2];
    while games.len() < 3 {
        let actions: Vec<usize> = (0..2).map(|_| rng.random_range(0..4)).collect();
        let b = envs.step(VecAction::Discrete(&actions)).unwrap();
        for i in 0..2 {
            steps[i] += 1;
            clipped[i] += f64::from(b.rewards()[i]);
            dones += usize::from(b.done(i));
            if let Some((ret, len)) = b.finished_episode(i) {
                // Five lives, one game: its steps over all lives, its unclipped score.
                assert_eq!(len, steps[i]);
                assert!(ret >= clipped[i]);
                assert_eq!(b.extra(i, "lives"), Some(0.0));
                games.push((ret, len));
                steps[i] = 0;
                clipped[i] = 0.0;
            } else if b.done(i) {
                assert!(b.terminated()[i] && b.extra(i, "lives").unwrap() > 0.0);
            }
        }
    }
    assert!(dones >= 5 * games.len(), "{dones} learner episodes");
}
