//! Raw emulator speed of the ALE binding: frames per second of Breakout with uniformly
//! random minimal-set actions, one frame per call (no frameskip), sticky actions on,
//! the RGB screen read after every frame, on one thread.
//!
//! ```text
//! cargo run --release -p agentry-envs --features atari --example atari_speed [FRAMES]
//! ```
//!
//! prints, e.g., `agentry ALE binding: 123456 frames/s (Breakout, 200000 frames)`.
//! Compare with ale-py's own loop: `python3 envs/examples/atari_speed.py [FRAMES]`.

use std::time::Instant;

use agentry_envs::atari::{Ale, find_rom};
use agentry_envs::rng_from_seed;
use rand::RngExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    let mut ale = Ale::new()?;
    ale.set_int("random_seed", 0)?;
    ale.set_float("repeat_action_probability", 0.25)?;
    ale.load_rom(&find_rom("Breakout")?)?;
    let actions = ale.minimal_action_set()?;
    let (h, w) = ale.screen_shape();
    let mut screen = vec![0u8; h * w * 3];
    let mut rng = rng_from_seed(0);
    ale.reset_game()?;
    let start = Instant::now();
    for _ in 0..frames {
        let a = actions[rng.random_range(0..actions.len())];
        ale.act(a, 1.0)?;
        ale.screen_rgb(&mut screen)?;
        if ale.game_over(true) {
            ale.reset_game()?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "agentry ALE binding: {:.0} frames/s (Breakout, {frames} frames)",
        frames as f64 / secs
    );
    Ok(())
}
