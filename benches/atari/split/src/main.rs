//! Does a fixed split of the copies between threads lose when a core is shared?
//!
//! Steps N `atari:Breakout` copies (random actions, reset at episode ends) for R rounds
//! on 2 threads, every round ending at a barrier as a synchronous vector environment's
//! step does, in two ways:
//! - `fixed`: thread t always steps copies t·N/2 .. (t+1)·N/2 (agentry's ThreadedVecEnv);
//! - `claim`: each thread takes the next unstepped copy from a shared counter until
//!   none is left, so a thread that was descheduled simply steps fewer copies;
//! - `fixed-spin`: fixed halves, but the round ends at a barrier that spins without
//!   ever giving up the core (the other two wait in the standard library's Barrier,
//!   which sleeps), to see whether losing the core while waiting is what costs.
//!
//! ```text
//! cargo run --release --manifest-path benches/atari/split/Cargo.toml -- [ROUNDS] [N]
//! ```
//! prints steps/s for `fixed`, `claim`, `fixed-spin`, twice (alternating, same process).

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
        let out = Out {
            obs: obs.as_mut(),
            action_mask: &mut mask,
            extras: &mut extras,
        };
        env.reset_into(Some(seed), out).expect("reset");
        let Space::Discrete(actions) = *env.action_space() else {
            panic!("Atari actions are discrete")
        };
        Copy {
            env,
            obs,
            mask,
            extras,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            actions,
        }
    }

    fn step(&mut self) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let a = (((self.rng >> 32) * self.actions as u64) >> 32) as usize;
        let out = Out {
            obs: self.obs.as_mut(),
            action_mask: &mut self.mask,
            extras: &mut self.extras,
        };
        if self
            .env
            .step_into(Action::Discrete(a), out)
            .expect("step")
            .done()
        {
            let out = Out {
                obs: self.obs.as_mut(),
                action_mask: &mut self.mask,
                extras: &mut self.extras,
            };
            self.env.reset_into(None, out).expect("reset");
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Fixed,
    Claim,
    FixedSpin,
}

/// A two-thread barrier that spins: `arrived` counts arrivals over all rounds.
fn spin_wait(arrived: &AtomicUsize, round: usize) {
    arrived.fetch_add(1, Ordering::AcqRel);
    while arrived.load(Ordering::Acquire) < 2 * (round + 1) {
        std::hint::spin_loop();
    }
}

fn run(copies: &[Mutex<Copy>], rounds: usize, mode: Mode) -> f64 {
    let n = copies.len();
    let barrier = Barrier::new(2);
    let arrived = AtomicUsize::new(0);
    let next = [AtomicUsize::new(0), AtomicUsize::new(0)]; // one counter per round parity
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let (barrier, next, arrived) = (&barrier, &next, &arrived);
            s.spawn(move || {
                for r in 0..rounds {
                    let counter = &next[r % 2];
                    if mode == Mode::Claim {
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
                    if mode == Mode::FixedSpin {
                        spin_wait(arrived, r);
                    } else {
                        barrier.wait();
                    }
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
    for _ in 0..2 {
        for (mode, name) in [
            (Mode::Fixed, "fixed"),
            (Mode::Claim, "claim"),
            (Mode::FixedSpin, "fixed-spin"),
        ] {
            let rate = run(&copies, rounds, mode);
            println!("{name}: {rate:.0} steps/s ({n} copies, 2 threads, {rounds} rounds)");
        }
    }
}
