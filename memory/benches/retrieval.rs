//! The retrieval benchmark behind `agent bench retrieval`:
//!
//! ```text
//! cargo bench -p agentry-memory --bench retrieval                 # the issue's figures
//! cargo bench -p agentry-memory --bench retrieval -- --sizes 10000,100000 --hnsw-n 100000
//! ```
//!
//! Options: `--sizes N,N,…` (exact search), `--dim D`, `--queries Q`, `--hnsw-n N`
//! (0: no HNSW), `--checkpoint N`, `--max-build-seconds S`, `--ef-construction E`.
//! Progress goes to stderr, the table to stdout.

use std::process::ExitCode;

use agentry_memory::retrieval::bench::{RetrievalBenchConfig, bench_retrieval};

fn parse(config: &mut RetrievalBenchConfig) -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--bench" {
            continue; // passed by `cargo bench`
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--sizes" => {
                config.sizes = value.split(',').map(number).collect::<Result<_, _>>()?;
            }
            "--dim" => config.dim = number(&value)?,
            "--queries" => config.queries = number(&value)?,
            "--hnsw-n" => match number(&value)? {
                0 => config.hnsw = None,
                n => {
                    if let Some(h) = &mut config.hnsw {
                        h.n = n;
                        h.checkpoint = h.checkpoint.min(n);
                    }
                }
            },
            "--checkpoint" => {
                if let Some(h) = &mut config.hnsw {
                    h.checkpoint = number(&value)?;
                }
            }
            "--ef-construction" => {
                if let Some(h) = &mut config.hnsw {
                    h.config.ef_construction = number(&value)?;
                }
            }
            "--max-build-seconds" => {
                if let Some(h) = &mut config.hnsw {
                    h.max_build_seconds =
                        value.parse().map_err(|e| format!("{flag} {value}: {e}"))?;
                }
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut config = RetrievalBenchConfig::default();
    if let Err(e) = parse(&mut config) {
        eprintln!("retrieval bench: {e}");
        return ExitCode::from(2);
    }
    match bench_retrieval(&config, &mut |line| eprintln!("{line}")) {
        Ok(figures) => {
            print!("{figures}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("retrieval bench: {e}");
            ExitCode::FAILURE
        }
    }
}
