//! Replay sampling throughput for a million-item memory, the figure behind
//! `agent bench replay`.
//!
//! ```text
//! cargo run --release -p agentry-memory --example replay_bench [CAPACITY] [OBS_DIM]
//! ```
//!
//! prints one line per batch size, such as
//! `batch 32: uniform 20000000 samples/s, prioritized (sample + update) 2000000 samples/s, inserts 10000000/s`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let capacity = args.next().unwrap_or(Ok(1_000_000));
    let obs_dim = args.next().unwrap_or(Ok(4));
    let (Ok(capacity), Ok(obs_dim)) = (capacity, obs_dim) else {
        eprintln!("usage: replay_bench [CAPACITY] [OBS_DIM] (positive integers)");
        return ExitCode::from(2);
    };
    for batch in [32, 256] {
        // About two million samples per memory for each batch size.
        let iters = 2_000_000 / batch;
        match agentry_memory::bench::bench_sampling(capacity, obs_dim, batch, iters) {
            Ok(f) => println!(
                "capacity {capacity}, obs_dim {obs_dim}, batch {batch}: uniform {:.0} samples/s, \
                 prioritized (sample + update) {:.0} samples/s, prioritized inserts {:.0}/s",
                f.uniform_samples_per_sec,
                f.prioritized_samples_per_sec,
                f.prioritized_inserts_per_sec
            ),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}
