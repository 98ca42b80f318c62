//! Experiments that run several configurations over several seeds and plot them.
//!
//! [`macro_experiment`] is the macro-action study of Hosu, Rebedea & Pascanu (2025) on
//! the corridor grid-world preset (`configs/rainbow-grid-world.toml`): Rainbow;
//! Rainbow with macro-actions ("repeat each primitive k times"); Rainbow with macros and
//! meta-learned credit sharing; and the ablation with a fixed (shared-prefix) Σ. Each
//! variant runs for every seed in its own run directory, two runs at a time, and the
//! curves are drawn with [`crate::plot::plot_runs`] (mean ± std over seeds).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigRequest, resolve};
use crate::error::AgentError;
use crate::plot::{PlotOptions, plot_runs};
use crate::train::{Silent, Start, TrainOutcome, train};

/// What [`macro_experiment`] runs.
#[derive(Clone, Debug)]
pub struct MacroExperiment {
    /// The seeds (each variant runs once per seed).
    pub seeds: Vec<u64>,
    /// Env steps per run (None: the preset's).
    pub steps: Option<u64>,
    /// The macro length k of "repeat a for k steps".
    pub repeat: usize,
    /// λ of the credit-sharing regulariser.
    pub credit_sharing: f64,
    /// Runs trained at once.
    pub jobs: usize,
    /// Where the run directories and the plot go.
    pub out: PathBuf,
}

/// The variants, as `(name, --set arguments)`.
pub fn variants(repeat: usize, lambda: f64) -> Vec<(&'static str, Vec<String>)> {
    let macros = format!("rainbow.macro_repeat={repeat}");
    let credit = format!("rainbow.credit_sharing={lambda}");
    vec![
        ("rainbow", vec![]),
        ("macros", vec![macros.clone()]),
        (
            "macros-credit-learned",
            vec![
                macros.clone(),
                credit.clone(),
                "rainbow.similarity=learned".into(),
            ],
        ),
        (
            "macros-credit-prefix",
            vec![macros, credit, "rainbow.similarity=prefix".into()],
        ),
    ]
}

/// One variant's figures over its seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantResult {
    /// The variant.
    pub name: String,
    /// Its run directories, one per seed.
    pub runs: Vec<PathBuf>,
    /// `episode_return_mean` at the end of each run.
    pub final_returns: Vec<f64>,
    /// The best `episode_return_mean` of each run.
    pub best_returns: Vec<f64>,
    /// Wall-clock seconds of each run.
    pub seconds: Vec<f64>,
}

/// Mean and (population) standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Run every variant for every seed (resuming a run directory that exists), then
/// plot `episode_return_mean` of all of them into `out/macros.png`. `progress` gets a
/// line per finished run.
pub fn macro_experiment(
    spec: &MacroExperiment,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(Vec<VariantResult>, PathBuf), AgentError> {
    std::fs::create_dir_all(&spec.out).map_err(|e| AgentError::io(&spec.out, e))?;
    let variants = variants(spec.repeat, spec.credit_sharing);
    let mut jobs = Vec::new();
    for (name, sets) in &variants {
        for &seed in &spec.seeds {
            let config = resolve(&ConfigRequest {
                algo: Some("rainbow".into()),
                env: Some("grid-world".into()),
                sets: sets.clone(),
                steps: spec.steps,
                seed: Some(seed),
                ..ConfigRequest::default()
            })?;
            let dir = run_dir(&spec.out, name, seed);
            jobs.push((name.to_string(), seed, config, dir));
        }
    }
    let queue = Mutex::new(jobs.clone().into_iter().enumerate());
    let results: Mutex<Vec<Option<Result<TrainOutcome, AgentError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..spec.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((i, (name, seed, config, dir))) = next else {
                        return;
                    };
                    let start = if dir.join("config.toml").exists() {
                        Start::Resume {
                            dir: dir.clone(),
                            steps: None,
                        }
                    } else {
                        Start::New {
                            config: Box::new(config),
                            out: Some(dir.clone()),
                        }
                    };
                    let outcome = train(start, &mut Silent);
                    if let Ok(o) = &outcome {
                        progress(&format!(
                            "{name} seed {seed}: episode_return_mean {:.3} (best {:.3}) in {:.1} s",
                            o.state.return_mean(),
                            o.state.best_return_mean.unwrap_or(f64::NAN),
                            o.state.wall_time_s
                        ));
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut by_variant: Vec<VariantResult> = variants
        .iter()
        .map(|(name, _)| VariantResult {
            name: name.to_string(),
            runs: Vec::new(),
            final_returns: Vec::new(),
            best_returns: Vec::new(),
            seconds: Vec::new(),
        })
        .collect();
    for ((name, _, _, dir), outcome) in jobs.iter().zip(results) {
        let outcome = outcome.expect("every job ran")?;
        let v = by_variant
            .iter_mut()
            .find(|v| &v.name == name)
            .expect("a known variant");
        v.runs.push(dir.clone());
        v.final_returns.push(outcome.state.return_mean());
        v.best_returns
            .push(outcome.state.best_return_mean.unwrap_or(f64::NAN));
        v.seconds.push(outcome.state.wall_time_s);
    }
    let plot = spec.out.join("macros.png");
    let all: Vec<PathBuf> = by_variant.iter().flat_map(|v| v.runs.clone()).collect();
    plot_runs(
        &all,
        &PlotOptions {
            out: plot.clone(),
            smooth: 5,
            ..PlotOptions::default()
        },
    )
    .map_err(|e| AgentError::Invalid(format!("plotting the experiment: {e}")))?;
    let summary = spec.out.join("summary.json");
    let text = serde_json::to_string_pretty(&by_variant).expect("results serialise");
    crate::checkpoint::write_atomic(&summary, text.as_bytes())?;
    Ok((by_variant, plot))
}

/// Where a variant's seed run lives.
pub fn run_dir(out: &Path, variant: &str, seed: u64) -> PathBuf {
    out.join(format!("{variant}-seed{seed}"))
}
