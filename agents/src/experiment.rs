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
    let results = run_jobs(&jobs, spec.jobs, progress);
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
        let outcome = outcome?;
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

/// One training run of an experiment: variant name, seed, configuration, directory.
pub type Job = (String, u64, crate::config::Config, PathBuf);

/// Train every job, `n_jobs` at a time (a directory that already holds a run is
/// resumed), reporting each finished run to `progress`; the outcomes in job order.
pub fn run_jobs(
    jobs: &[Job],
    n_jobs: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> Vec<Result<TrainOutcome, AgentError>> {
    let queue = Mutex::new(jobs.iter().enumerate());
    let results: Mutex<Vec<Option<Result<TrainOutcome, AgentError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..n_jobs.max(1) {
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
                            config: Box::new(config.clone()),
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
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// Where a variant's seed run lives.
pub fn run_dir(out: &Path, variant: &str, seed: u64) -> PathBuf {
    out.join(format!("{variant}-seed{seed}"))
}

/// What [`plasticity_rl_experiment`] runs: PPO on a Dark-Room whose goal moves every
/// `switch_every` episodes (5×5 room, 25-step episodes, 8 environments, so a task lasts
/// `switch_every × 200` env steps), for `tasks` tasks, with every intervention of
/// [`rl_interventions`] over every seed.
#[derive(Clone, Debug)]
pub struct PlasticityRl {
    /// The seeds (of the networks and the environments; the goal sequence is the same
    /// for all).
    pub seeds: Vec<u64>,
    /// Tasks (goal positions) per run.
    pub tasks: u64,
    /// Episodes per task.
    pub switch_every: u64,
    /// PPO epochs per batch (the PFO paper sees collapse with many).
    pub epochs: usize,
    /// The interventions to run (names of [`rl_interventions`]; empty: all).
    pub interventions: Vec<String>,
    /// Runs trained at once.
    pub jobs: usize,
    /// Where the run directories, the plot and the summary go.
    pub out: PathBuf,
}

impl PlasticityRl {
    /// A usage error naming the first bad setting, if any.
    pub fn check(&self) -> Result<(), AgentError> {
        if self.seeds.is_empty()
            || self.tasks < 2
            || self.switch_every == 0
            || self.epochs == 0
            || self.jobs == 0
        {
            return Err(AgentError::Usage(
                "the RL plasticity benchmark needs at least one seed, two tasks, and \
                 positive episodes per task, epochs and jobs"
                    .into(),
            ));
        }
        let total = self
            .switch_every
            .checked_mul(200)
            .and_then(|t| t.checked_mul(self.tasks));
        if self.tasks > 10_000 || total.is_none_or(|t| t > 1 << 40) {
            return Err(AgentError::Usage(format!(
                "{} tasks of {} episodes is too long a run (at most 10000 tasks and 2^40 \
                 env steps)",
                self.tasks, self.switch_every
            )));
        }
        let all = rl_interventions(rl_task_steps(self.switch_every));
        for name in &self.interventions {
            if !all.iter().any(|(n, _)| n == name) {
                let known: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
                return Err(AgentError::Usage(format!(
                    "unknown RL intervention `{name}`; known: {}",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Environment steps of one task of [`PlasticityRl`].
pub fn rl_task_steps(switch_every: u64) -> u64 {
    switch_every * 25 * 8
}

/// The interventions of the RL plasticity benchmark, as `(name, --set arguments)`;
/// `fresh` (every layer reset, optimizer included, at each task switch: a new network
/// per task) is the reference the plasticity gap is measured against.
pub fn rl_interventions(task_steps: u64) -> Vec<(&'static str, Vec<String>)> {
    let every = |key: &str| format!("plasticity.{key}={task_steps}");
    vec![
        ("vanilla", vec![]),
        ("pfo", vec!["ppo.pfo_coef=1".into()]),
        ("layer_norm", vec!["plasticity.layer_norm=true".into()]),
        (
            "l2_init",
            vec![
                "plasticity.layer_norm=true".into(),
                "plasticity.weight_decay=0.01".into(),
                "plasticity.weight_decay_kind=\"l2_init\"".into(),
            ],
        ),
        (
            "nap",
            vec![
                "plasticity.layer_norm=true".into(),
                "plasticity.nap=true".into(),
            ],
        ),
        ("soft_reset", vec!["plasticity.soft_reset=true".into()]),
        (
            "hard_reset",
            vec![
                every("hard_reset_every"),
                "plasticity.hard_reset_layers=\"last\"".into(),
            ],
        ),
        ("shrink_perturb", vec![every("shrink_perturb_every")]),
        ("redo", vec!["plasticity.redo_every=10".into()]),
        (
            "fresh",
            vec![
                every("hard_reset_every"),
                "plasticity.hard_reset_layers=\"all\"".into(),
            ],
        ),
    ]
}

/// One intervention's figures over its seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RlResult {
    /// The intervention.
    pub name: String,
    /// Its run directories, one per seed.
    pub runs: Vec<PathBuf>,
    /// Per seed, per task: the mean `episode_return_mean` over the task's last quarter.
    pub task_returns: Vec<Vec<f64>>,
    /// Per seed: the mean of `task_returns` over the tasks after the first.
    pub scores: Vec<f64>,
    /// Per seed: `fresh`'s score minus this score (the plasticity gap; NaN without `fresh`).
    pub gaps: Vec<f64>,
    /// Wall-clock seconds of each run.
    pub seconds: Vec<f64>,
}

/// Per task of `task_steps` env steps: the mean `episode_return_mean` of the metric rows
/// in the task's last quarter (after the 100-episode window has left the previous task).
pub fn task_returns(metrics: &Path, task_steps: u64, tasks: u64) -> Result<Vec<f64>, AgentError> {
    let text = std::fs::read_to_string(metrics).map_err(|e| AgentError::io(metrics, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            AgentError::Invalid(format!("{}: no column `{name}`", metrics.display()))
        })
    };
    let (steps_col, return_col) = (col("env_steps")?, col("episode_return_mean")?);
    let mut sums = vec![(0.0f64, 0usize); tasks as usize];
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let (Some(s), Some(r)) = (cells.get(steps_col), cells.get(return_col)) else {
            continue;
        };
        let (Ok(s), Ok(r)) = (s.parse::<u64>(), r.parse::<f64>()) else {
            continue;
        };
        if s == 0 || !r.is_finite() {
            continue;
        }
        let task = (s - 1) / task_steps;
        let into = (s - 1) % task_steps;
        if task < tasks && into >= task_steps * 3 / 4 {
            let e = &mut sums[task as usize];
            e.0 += r;
            e.1 += 1;
        }
    }
    Ok(sums
        .into_iter()
        .map(|(s, n)| if n > 0 { s / n as f64 } else { f64::NAN })
        .collect())
}

/// Run [`PlasticityRl`]; returns the results per intervention and the plot's path
/// (`out/plasticity-rl.png`; the summary is `out/plasticity-rl.json`).
pub fn plasticity_rl_experiment(
    spec: &PlasticityRl,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(Vec<RlResult>, PathBuf), AgentError> {
    spec.check()?;
    let task_steps = rl_task_steps(spec.switch_every);
    let all = rl_interventions(task_steps);
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|(n, _)| spec.interventions.is_empty() || spec.interventions.iter().any(|x| x == n))
        .collect();
    std::fs::create_dir_all(&spec.out).map_err(|e| AgentError::io(&spec.out, e))?;
    let mut jobs = Vec::new();
    for (name, sets) in &chosen {
        for &seed in &spec.seeds {
            let mut sets = sets.clone();
            sets.extend([
                "env.size=5".to_string(),
                format!("env.switch_every={}", spec.switch_every),
                // One goal sequence for every seed, so that `agent plot` groups the
                // seeds of an intervention into a mean ± std line.
                "env.switch_seed=1".to_string(),
                format!("ppo.epochs={}", spec.epochs),
                "ppo.anneal_lr=false".into(),
                "ppo.ent_coef=0.05".into(),
                format!("run.checkpoint_interval={}", task_steps * spec.tasks),
            ]);
            let config = resolve(&ConfigRequest {
                algo: Some("ppo".into()),
                env: Some("dark-room".into()),
                sets,
                steps: Some(task_steps * spec.tasks),
                seed: Some(seed),
                ..ConfigRequest::default()
            })?;
            jobs.push((
                name.to_string(),
                seed,
                config,
                run_dir(&spec.out, name, seed),
            ));
        }
    }
    let outcomes = run_jobs(&jobs, spec.jobs, progress);
    let mut results: Vec<RlResult> = chosen
        .iter()
        .map(|(name, _)| RlResult {
            name: name.to_string(),
            runs: Vec::new(),
            task_returns: Vec::new(),
            scores: Vec::new(),
            gaps: Vec::new(),
            seconds: Vec::new(),
        })
        .collect();
    for ((name, _, _, dir), outcome) in jobs.iter().zip(outcomes) {
        let outcome = outcome?;
        let r = results
            .iter_mut()
            .find(|r| &r.name == name)
            .expect("a known intervention");
        let per_task = task_returns(&dir.join("metrics.csv"), task_steps, spec.tasks)?;
        let later = &per_task[1..];
        r.scores
            .push(later.iter().sum::<f64>() / later.len() as f64);
        r.task_returns.push(per_task);
        r.runs.push(dir.clone());
        r.seconds.push(outcome.state.wall_time_s);
    }
    let fresh = results
        .iter()
        .find(|r| r.name == "fresh")
        .map(|r| r.scores.clone());
    for r in &mut results {
        r.gaps = match &fresh {
            Some(f) => f.iter().zip(&r.scores).map(|(f, s)| f - s).collect(),
            None => vec![f64::NAN; r.scores.len()],
        };
    }
    let plot = spec.out.join("plasticity-rl.png");
    let runs: Vec<PathBuf> = results.iter().flat_map(|r| r.runs.clone()).collect();
    plot_runs(
        &runs,
        &PlotOptions {
            out: plot.clone(),
            smooth: 3,
            ..PlotOptions::default()
        },
    )
    .map_err(|e| AgentError::Invalid(format!("plotting the experiment: {e}")))?;
    let text = serde_json::to_string_pretty(&results).expect("results serialise");
    crate::checkpoint::write_atomic(&spec.out.join("plasticity-rl.json"), text.as_bytes())?;
    Ok((results, plot))
}

#[cfg(test)]
mod plasticity_rl_tests {
    use super::*;

    #[test]
    fn task_returns_average_each_tasks_last_quarter() {
        let dir = std::env::temp_dir().join(format!("agentry-task-returns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        // Tasks of 100 steps; rows every 25 steps; only the rows at 100 and 200 count.
        let mut text = String::from("env_steps,wall_time_s,episodes,episode_return_mean\n");
        for (s, r) in [
            (25, 9.0),
            (50, 9.0),
            (75, 9.0),
            (100, 4.0),
            (125, 1.0),
            (200, 6.0),
        ] {
            text.push_str(&format!("{s},0,1,{r}\n"));
        }
        text.push_str("225,0,1,NaN\n");
        std::fs::write(&path, text).unwrap();
        let t = task_returns(&path, 100, 3).unwrap();
        assert_eq!(t[0], 4.0);
        assert_eq!(t[1], 6.0);
        assert!(t[2].is_nan());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_requests_are_errors() {
        let spec = PlasticityRl {
            seeds: vec![1],
            tasks: 2,
            switch_every: 1,
            epochs: 1,
            interventions: vec!["nope".into()],
            jobs: 1,
            out: std::env::temp_dir().join("agentry-never-made"),
        };
        let e = plasticity_rl_experiment(&spec, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("vanilla"), "{e}");
        let e = plasticity_rl_experiment(
            &PlasticityRl {
                tasks: 1,
                ..spec.clone()
            },
            &|_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("two tasks"), "{e}");
        let e = plasticity_rl_experiment(
            &PlasticityRl {
                switch_every: u64::MAX / 100,
                interventions: Vec::new(),
                ..spec.clone()
            },
            &|_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("too long"), "{e}");
        assert!(!std::env::temp_dir().join("agentry-never-made").exists());
    }
}
