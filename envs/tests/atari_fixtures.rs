//! The Atari preprocessing against Gymnasium's, step by step: episodes recorded once
//! with Gymnasium 1.x, ale-py 0.12.1 and OpenCV (`fixtures/atari/generate.py`: no-op
//! reset, frame skip 4 with max-pool, 84×84 area-resized grayscale or RGB frames, 4
//! stacked; one scenario with episodic life, fire reset and sign-clipped rewards in
//! Stable-Baselines3's semantics) are replayed here with the same actions and the same
//! no-op counts ([`AtariPreprocessing::force_noops`]); sticky actions are off, so ALE's
//! seed does not matter.
//!
//! Rewards, `terminated`, `truncated` and lives must agree exactly, and the frames
//! (the newest of each stored stack, and the older slots against the frames stored for
//! the steps before) within one intensity level. One exception: where the game ended
//! inside a step (game over or the frame cap), Gymnasium's observation is stale (its
//! max-pool buffers still hold the previous step's frames) while ours is the final
//! frame; such final observations are not compared (the fixtures do not store them).
//! The games' raw scores are compared with [`Env::episode_end`] at each game's end.
//!
//! Without the ROMs (`scripts/setup-atari.sh`) the test prints why and passes.
#![cfg(feature = "atari")]

use std::collections::HashMap;

use agentry_envs::atari::{AtariConfig, AtariEnv, AtariPreprocessing, PreprocessConfig, find_rom};
use agentry_envs::wrappers::FrameStack;
use agentry_envs::{Action, Env, EnvExt, EpisodeEnd, Observation};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/atari");

fn bytes(obs: &Observation) -> &[u8] {
    match obs {
        Observation::U8(v) => v,
        Observation::F32(_) => panic!("Atari frames are bytes"),
    }
}

/// What one replay compared.
#[derive(Debug, Default)]
struct Tally {
    steps: usize,
    frames: usize,
    pixels: usize,
    exact: usize,
    max_diff: u8,
    skipped_final: usize,
    games: usize,
}

impl Tally {
    fn frame(&mut self, what: &str, got: &[u8], want: &[u8]) {
        assert_eq!(got.len(), want.len(), "{what}: frame size");
        for (a, b) in got.iter().zip(want) {
            let d = a.abs_diff(*b);
            self.max_diff = self.max_diff.max(d);
            self.exact += usize::from(d == 0);
            assert!(d <= 1, "{what}: a pixel differs by {d} ({a} vs {b})");
        }
        self.pixels += got.len();
        self.frames += 1;
    }
}

fn replay(name: &str) -> Tally {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DIR}/{name}.json")).expect("fixture JSON"),
    )
    .expect("fixture JSON parses");
    let stored = std::fs::read(format!("{DIR}/{name}.frames")).expect("fixture frames");
    let game = meta["game"].as_str().unwrap();
    // With the `atari` feature on, the ROMs are part of the set-up (the README's test
    // command installs them): a missing ROM fails, as in the crate's own Atari tests.
    if let Err(e) = find_rom(game) {
        panic!("the {name} fixture needs its ROM: {e}");
    }
    let int = |v: &Value| v.as_u64().unwrap();
    let pre = &meta["preprocessing"];
    let switch = |k: &str| pre[k].as_bool().unwrap();
    let base = AtariConfig {
        frameskip: 1,
        repeat_action_probability: 0.0,
        max_num_frames_per_episode: int(&meta["env"]["max_num_frames_per_episode"]) as u32,
        ..AtariConfig::default()
    };
    let config = PreprocessConfig {
        noop_max: int(&pre["noop_max"]) as u32,
        frame_skip: int(&pre["frame_skip"]) as u32,
        max_pool: true,
        episodic_life: switch("episodic_life"),
        fire_reset: switch("fire_reset"),
        screen_size: int(&pre["screen_size"]) as usize,
        grayscale: switch("grayscale"),
        clip_rewards: switch("clip_rewards"),
    };
    let k = int(&pre["frame_stack"]) as usize;
    let mut env = FrameStack::new(
        AtariPreprocessing::new(AtariEnv::new(game, base).unwrap(), config).unwrap(),
        k,
    )
    .unwrap();

    // The stored frames: the newest of the stack after reset `r` / after step `t`.
    let frame_len: usize = meta["frame_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| int(d) as usize)
        .product();
    let mut after_reset = HashMap::new();
    let mut after_step = HashMap::new();
    for (i, entry) in meta["frames"].as_array().unwrap().iter().enumerate() {
        let frame = &stored[i * frame_len..(i + 1) * frame_len];
        let index = int(&entry[1]) as usize;
        match entry[0].as_str().unwrap() {
            "reset" => after_reset.insert(index, frame),
            _ => after_step.insert(index, frame),
        };
    }
    assert_eq!(
        stored.len(),
        after_reset.len() * frame_len + after_step.len() * frame_len
    );

    let steps = &meta["steps"];
    let column = |k: &str| steps[k].as_array().unwrap();
    let resets = meta["resets"].as_array().unwrap();
    let game_returns: HashMap<usize, f64> = meta["game_returns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (int(&g[0]) as usize, g[1].as_f64().unwrap()))
        .collect();
    let mut tally = Tally::default();
    let mut next_reset = 0;
    let mut reset = |env: &mut FrameStack<AtariPreprocessing>, t: usize, tally: &mut Tally| {
        let r = next_reset;
        next_reset += 1;
        let event = &resets[r];
        assert_eq!(int(&event["before_step"]) as usize, t, "{name}: reset {r}");
        let noops = event["noops"].as_array().unwrap();
        assert!(noops.len() <= 1, "{name}: reset {r} started two games");
        if let Some(n) = noops.first() {
            env.inner_mut().force_noops(int(n) as u32);
        }
        let seed = (r == 0).then(|| int(&meta["seed"]));
        let (obs, info) = env.reset(seed).unwrap();
        assert_eq!(
            info.get("lives"),
            Some(event["lives"].as_f64().unwrap()),
            "{name}: lives after reset {r}"
        );
        let obs = bytes(&obs);
        // Every slot holds the first frame.
        for slot in obs.chunks(frame_len) {
            tally.frame(&format!("{name}: reset {r}"), slot, after_reset[&r]);
        }
        r
    };
    // The step the current episode began at, and its reset's index.
    let mut episode = (0, reset(&mut env, 0, &mut tally));

    let n = column("action").len();
    for t in 0..n {
        let action = int(&column("action")[t]) as usize;
        let step = env.step(Action::Discrete(action)).unwrap();
        let what = format!("{name}: step {t}");
        assert_eq!(step.reward, column("reward")[t].as_f64().unwrap(), "{what}");
        assert_eq!(
            step.terminated,
            column("terminated")[t].as_bool().unwrap(),
            "{what}"
        );
        assert_eq!(
            step.truncated,
            column("truncated")[t].as_bool().unwrap(),
            "{what}"
        );
        assert_eq!(
            step.info.get("lives"),
            Some(column("lives")[t].as_f64().unwrap()),
            "{what}"
        );
        tally.steps += 1;
        if column("game_over")[t].as_bool().unwrap() {
            // Gymnasium's final observation is stale here: not compared.
            tally.skipped_final += 1;
        } else if after_step.contains_key(&t) {
            // Slot j holds the frame after step t − (k − 1) + j, or the reset's.
            for (j, slot) in bytes(&step.obs).chunks(frame_len).enumerate() {
                let want = match (t + j + 1).checked_sub(k) {
                    Some(s) if s >= episode.0 => after_step.get(&s).copied(),
                    _ => Some(after_reset[&episode.1]),
                };
                if let Some(want) = want {
                    tally.frame(&format!("{what}, slot {j}"), slot, want);
                }
            }
        }
        if let Some(&ret) = game_returns.get(&t) {
            let end = env.episode_end();
            assert!(
                matches!(end, EpisodeEnd::Whole { ret: r, .. } if r == ret),
                "{what}: the game's score is {ret}, episode_end says {end:?}"
            );
            tally.games += 1;
        } else if step.terminated || step.truncated {
            assert_eq!(env.episode_end(), EpisodeEnd::Partial, "{what}");
        }
        if (step.terminated || step.truncated) && t + 1 < n {
            let r = reset(&mut env, t + 1, &mut tally);
            episode = (t + 1, r);
        }
    }
    assert_eq!(next_reset, resets.len(), "{name}: resets");
    assert_eq!(tally.games, game_returns.len());
    eprintln!(
        "{name}: {} steps, {} frames compared ({:.2}% of pixels exact, max difference {}), \
         {} stale final observations skipped, {} games",
        tally.steps,
        tally.frames,
        100.0 * tally.exact as f64 / tally.pixels.max(1) as f64,
        tally.max_diff,
        tally.skipped_final,
        tally.games
    );
    tally
}

#[test]
fn atari_preprocessing_matches_gymnasium_breakout() {
    let t = replay("breakout");
    assert!(
        t.frames >= 60 && t.skipped_final >= 3 && t.games >= 3,
        "{t:?}"
    );
}

#[test]
fn atari_preprocessing_matches_gymnasium_pong_with_a_frame_cap() {
    let t = replay("pong");
    assert!(t.frames >= 40 && t.skipped_final >= 2, "{t:?}");
}

#[test]
fn atari_preprocessing_matches_gymnasium_with_episodic_life_fire_reset_and_clipping() {
    let t = replay("breakout_protocol");
    assert!(t.frames >= 80 && t.games >= 2, "{t:?}");
}

#[test]
fn atari_preprocessing_matches_gymnasium_rgb() {
    let t = replay("pong_rgb");
    assert!(t.frames >= 4, "{t:?}");
}
