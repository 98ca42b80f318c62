//! Does a fixed split of the copies between threads lose when a core is shared?
//!
//! Steps N `atari:Breakout` copies (random actions, reset at episode ends) for R rounds
//! on 2 threads, every round ending at a barrier as a synchronous vector environment's
//! step does, in two ways:
//! - `fixed`: thread t always steps copies t·N/2 .. (t+1)·N/2 (agentry's ThreadedVecEnv);
//! - `claim`: each thread takes the next unstepped copy from a shared counter until
//!   none is left, so a thread that was descheduled simply steps fewer copies.
//!
//! ```text
//! cargo run --release --manifest-path benches/atari/split/Cargo.toml -- [ROUNDS] [N]
//! ```
//! prints steps/s for `fixed`, `claim`, `fixed`, `claim` (alternating, same process).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Instant;

use agentry_envs::env::{Observation, Out};
use agentry_envs::space::Space;
use agentry_envs::{Action, Env, Params, make};

/// One copy with its buffers, and a xorshift state for its actions.
struct Copy {
    env: Box<dyn Env>,
    obs: Observation,
    mask: Vec<bool>,
    extras: Vec<f64>,
    rng: u64,
    actions: usize,
}

impl Copy {
    fn new(seed: u64) -> Copy {
        let mut env = make("atari:Breakout", &Params::new()).expect("atari:Breakout (ROMs?)");
        let space = env.observation_space();
        let mut obs = Observation::zeros(space.dtype(), space.flat_dim());
        let mut mask = vec![true; env.action_mask_len()];
        let mut extras = vec![0.0; env.extra_names().len()];
        let out = Out { obs: obs.as_mut(), action_mask: &mut mask, extras: &mut extras };
        env.reset_into(Some(seed), out).expect("reset");
        let Space::Discrete(actions) = *env.action_space() else { panic!("Atari actions are discrete") };
        Copy { env, obs, mask, extras, rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, actions }
    }

    fn step(&mut self) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let a = ((self.rng >> 32) * self.actions as u64 >> 32) as usize;
        let out = Out { obs: self.obs.as_mut(), action_mask: &mut self.mask, extras: &mut self.extras };
        if self.env.step_into(Action::Discrete(a), out).expect("step").done() {
            let out = Out { obs: self.obs.as_mut(), action_mask: &mut self.mask, extras: &mut self.extras };
            self.env.reset_into(None, out).expect("reset");
        }
    }
}

fn run(copies: &[Mutex<Copy>], rounds: usize, claim: bool) -> f64 {
    let n = copies.len();
    let barrier = Barrier::new(2);
    let next = [AtomicUsize::new(0), AtomicUsize::new(0)]; // one counter per round parity
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let (barrier, next) = (&barrier, &next);
            s.spawn(move || {
                for r in 0..rounds {
                    let counter = &next[r % 2];
                    if claim {
                        loop {
                            let i = counter.fetch_add(1, Ordering::Relaxed);
                            if i >= n {
                                break;
                            }
                            copies[i].lock().unwrap().step();
                        }
                    } else {
                        for c in &copies[t * n / 2..(t + 1) * n / 2] {
                            c.lock().unwrap().step();
                        }
                    }
                    // Reset the other parity's counter for the round after this one.
                    if t == 0 {
                        next[(r + 1) % 2].store(0, Ordering::Relaxed);
                    }
                    barrier.wait();
                }
            });
        }
    });
    (rounds * n) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(5000, |s| s.parse().expect("ROUNDS"));
    let n: usize = args.next().map_or(8, |s| s.parse().expect("N"));
    let copies: Vec<Mutex<Copy>> = (0..n).map(|i| Mutex::new(Copy::new(i as u64))).collect();
    for claim in [false, true, false, true] {
        let name = if claim { "claim" } else { "fixed" };
        println!("{name}: {:.0} steps/s ({n} copies, 2 threads, {rounds} rounds)", run(&copies, rounds, claim));
    }
}
