//! Faults a long run meets: `kill -9` at any moment (also inside a checkpoint write),
//! numbers that go non-finite, an environment that panics; and determinism. The run
//! must always resume from its last complete checkpoint with nothing duplicated or
//! lost, and stop with an error that says where it was and what is left.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agentry::agents::AgentError;
use agentry::agents::config::{ConfigRequest, resolve};
use agentry::agents::train::{Silent, Start, train};
use agentry::envs::registry::{EnvSpec, register};
use agentry::envs::{Action, Env, EnvError, ObsMut, Out, Params, ResolvedParams, Space, Step};

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agent"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agentry-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The env-step column of metrics.csv.
fn metric_steps(dir: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

fn checkpoint_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("checkpoints"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A small deterministic generator for the kill times.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// At least 20 `kill -9`s at random moments of a run (every atomic write slowed down so
/// that some land inside a checkpoint write), each followed by `--resume`: the run
/// ends with exactly its steps, metrics.csv has one row per update with no duplicate
/// or gap, and every resume started from a checkpoint that was complete.
#[test]
fn kill_9_anywhere_then_resume_loses_and_duplicates_nothing() {
    let dir = temp_dir("kill");
    let d = dir.to_str().unwrap();
    // CartPole's preset: 8 environments × 32 steps = 256 env steps per update.
    let (total, per_update) = (12_288u64, 256u64);
    let mut rng = Lcg(0xFA17);
    let (mut kills, mut inside_writes, mut resumes) = (0, 0, 0);
    let mut resumed_at = std::collections::BTreeSet::new();
    let started = Instant::now();
    loop {
        let mut cmd = agent();
        if dir.join("config.toml").exists() {
            cmd.args(["train", "--resume", d, "-q"]);
            resumes += 1;
        } else {
            let _ = std::fs::remove_dir_all(&dir);
            cmd.args([
                "train",
                "--env",
                "cartpole",
                "--steps",
                &total.to_string(),
                "--seed",
                "4",
                "--set",
                "run.checkpoint_interval=512",
                "--out",
                d,
                "-q",
            ]);
        }
        let before = checkpoint_files(&dir);
        if let Some(newest) = before
            .iter()
            .filter(|f| f.starts_with("learner-") && f.ends_with(".agentry"))
            .max()
        {
            resumed_at.insert(newest.clone());
        }
        let mut child = cmd
            .env("AGENTRY_FAULT_WRITE_DELAY_MS", "15")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let wait = Duration::from_millis(40 + rng.below(400));
        let deadline = Instant::now() + wait;
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(status) = finished {
            let out = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "a resume failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if kills >= 20 {
                break;
            }
            // Finished before the kill: start over to kill it more.
            assert_eq!(metric_steps(&dir).last(), Some(&total));
            std::fs::remove_dir_all(&dir).unwrap();
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let after = checkpoint_files(&dir);
        if after.iter().any(|f| f.ends_with(".tmp")) {
            inside_writes += 1;
        }
        // What a resume will start from is a checkpoint that was complete: the
        // newest learner file now is either one that existed before this process
        // (kept) or one it finished.
        for f in after.iter().filter(|f| f.ends_with(".agentry")) {
            let bytes = std::fs::read(dir.join("checkpoints").join(f)).unwrap();
            assert!(
                agentry::agents::checkpoint::Sections::decode(&bytes, Path::new(f)).is_ok(),
                "{f} (before this process: {:?}) is damaged after a kill",
                before.contains(f)
            );
        }
        // Rows written so far never repeat a step.
        let steps = metric_steps(&dir);
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the kill loop takes too long"
        );
    }
    eprintln!(
        "{kills} kills ({inside_writes} inside a write), {resumes} resumes from {} distinct \
         checkpoints",
        resumed_at.len()
    );
    let steps = metric_steps(&dir);
    let expected: Vec<u64> = (1..=total / per_update).map(|u| u * per_update).collect();
    assert_eq!(
        steps, expected,
        "one row per update, in order, none missing"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["env_steps"], total);
    assert!(
        kills >= 20 && resumes >= 20,
        "{kills} kills, {resumes} resumes"
    );
    assert!(
        inside_writes >= 1,
        "no kill landed inside a checkpoint write in {kills} kills"
    );
    assert!(
        resumed_at.len() >= 5,
        "resumes started from only {} checkpoints",
        resumed_at.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One actor, one seed: two runs write the same metrics.csv but for the wall-clock
/// columns. (The runtime is synchronous, so the same holds for K actors with the same
/// K; runs with different K differ, each actor having its own environments and seeds.)
#[test]
fn the_same_seed_gives_the_same_metrics_except_wall_time() {
    let root = temp_dir("det");
    let mut runs = Vec::new();
    for (name, actors) in [("a", "1"), ("b", "1"), ("c", "2"), ("d", "2")] {
        let run = root.join(name);
        let out = agent()
            .args([
                "train",
                "--env",
                "cartpole",
                "--steps",
                "4096",
                "--seed",
                "9",
                "--actors",
                actors,
                "-q",
                "--out",
                run.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        runs.push(std::fs::read_to_string(run.join("metrics.csv")).unwrap());
    }
    let timeless = |text: &str| -> Vec<Vec<String>> {
        let mut rows = text.lines().map(|l| l.split(',').map(str::to_string));
        let header: Vec<String> = rows.next().unwrap().collect();
        let keep: Vec<bool> = header
            .iter()
            .map(|h| h != "wall_time_s" && h != "charts/SPS")
            .collect();
        text.lines()
            .map(|l| {
                l.split(',')
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(v, _)| v.to_string())
                    .collect()
            })
            .collect()
    };
    assert_eq!(timeless(&runs[0]), timeless(&runs[1]), "1 actor");
    assert_eq!(timeless(&runs[2]), timeless(&runs[3]), "2 actors");
    assert_ne!(runs[0], runs[1], "the wall-clock columns do differ");
    let _ = std::fs::remove_dir_all(&root);
}

/// CartPole-like dynamics that turn into NaN observations after `nan_after` steps,
/// panic after `panic_after` steps, or hang after `hang_after` steps (0: never).
struct Faulty {
    t: u64,
    nan_after: u64,
    panic_after: u64,
    hang_after: u64,
    obs_space: Space,
    act_space: Space,
}

impl Env for Faulty {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, _seed: Option<u64>, out: Out<'_>) -> Result<(), EnvError> {
        let ObsMut::F32(o) = out.obs else {
            return Err(EnvError::Buffer("f32".into()));
        };
        o.fill(0.0);
        Ok(())
    }
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step, EnvError> {
        self.act_space.check(&action)?;
        self.t += 1;
        if self.panic_after > 0 && self.t > self.panic_after {
            panic!("the physics engine exploded at step {}", self.t);
        }
        if self.hang_after > 0 && self.t > self.hang_after {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let ObsMut::F32(o) = out.obs else {
            return Err(EnvError::Buffer("f32".into()));
        };
        let v = if self.nan_after > 0 && self.t > self.nan_after {
            f32::NAN
        } else {
            (self.t % 7) as f32 / 7.0
        };
        o.fill(v);
        Ok(Step {
            reward: 1.0,
            terminated: self.t.is_multiple_of(20),
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        format!("t={}", self.t)
    }
}

fn build_faulty(p: &ResolvedParams) -> agentry::envs::Result<Box<dyn Env>> {
    Ok(Box::new(Faulty {
        t: 0,
        nan_after: p.int("nan_after")? as u64,
        panic_after: p.int("panic_after")? as u64,
        hang_after: p.int("hang_after")? as u64,
        obs_space: Space::Box(agentry::envs::BoxSpace::new(vec![-1.0; 3], vec![1.0; 3])),
        act_space: Space::Discrete(2),
    }))
}

fn register_faulty() {
    use agentry::envs::{ParamKind, ParamSpec};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let int = ParamKind::Int {
            min: 0,
            max: i64::MAX,
        };
        register(EnvSpec {
            name: "faulty",
            aliases: &[],
            summary: "a test environment that goes wrong on purpose",
            params: vec![
                ParamSpec::new("nan_after", int.clone(), "0", "NaN observations after"),
                ParamSpec::new("panic_after", int.clone(), "0", "panic after"),
                ParamSpec::new("hang_after", int, "0", "hang after"),
            ],
            max_episode_steps: None,
            build: build_faulty,
        })
        .unwrap();
    });
}

fn train_faulty(dir: &Path, algo: &str, sets: &[&str]) -> Result<(), AgentError> {
    register_faulty();
    let mut sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    sets.push("run.checkpoint_interval=256".into());
    sets.push("run.envs_per_actor=2".into());
    let config = resolve(&ConfigRequest {
        algo: Some(algo.into()),
        env: Some("faulty".into()),
        steps: Some(4096),
        actors: Some(2),
        sets,
        ..ConfigRequest::default()
    })
    .unwrap();
    train(
        Start::New {
            config: Box::new(config),
            out: Some(dir.to_path_buf()),
        },
        &mut Silent,
    )
    .map(|_| ())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// NaN observations poison the losses: each learner stops with an error naming the
/// environment, the env step and the non-finite quantity, and its last checkpoint is
/// intact (it loads, and resuming from it works until the NaNs come back).
#[test]
fn non_finite_numbers_stop_the_run_with_where_and_what() {
    for (algo, sets) in [
        ("ppo", vec![]),
        ("dqn", vec!["dqn.learning_starts=64", "dqn.train_freq=1"]),
    ] {
        let dir = temp_dir(&format!("nan-{algo}"));
        let e = train_faulty(&dir, algo, &[&["env.nan_after=300"][..], &sets].concat())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`faulty`")
                && e.contains("stopped at env step")
                && (e.contains("finite") || e.contains("NaN")),
            "{algo}: {e}"
        );
        let checkpoints = checkpoint_files(&dir);
        assert!(
            checkpoints.iter().any(|f| f.starts_with("learner-")),
            "{algo}: no checkpoint before the NaNs: {checkpoints:?}"
        );
        assert!(e.contains("is intact"), "{e}");
        assert!(agentry::agents::train::load_run_policy(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// An environment that panics ends the run with an error naming the environment and
/// the panic, and every actor thread is gone when `train` returns.
#[test]
fn a_panicking_environment_ends_the_run_and_leaves_no_thread() {
    let dir = temp_dir("panic");
    let before = threads();
    let e = train_faulty(&dir, "ppo", &["env.panic_after=500"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`faulty`") && e.contains("panicked") && e.contains("physics engine exploded"),
        "{e}"
    );
    // Other tests of this binary may run threads of their own: allow for them.
    let after = threads();
    assert!(
        after <= before + 1,
        "threads before {before}, after {after}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = Params::new();
}

/// A small file system of our own for the disk tests: a tmpfs of `size` mounted on a
/// fresh directory, unmounted on drop. `None` where mounting is not permitted.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(name: &str, size: &str) -> Option<SmallDisk> {
        let dir = temp_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(SmallDisk { dir })
    }

    fn read_only(&self) -> bool {
        Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.dir)
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Copy a run directory (to go on from it on a roomier disk).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The disk fills up during a run (a DQN whose checkpoints grow with its replay
/// memory, 1.9 to 2.9 MB each, on a 10 MiB file system): the run stops with an error naming the file and
/// the cause, the previous checkpoint is intact and no temporary file is left; moved to
/// a roomier disk it resumes and finishes. A read-only run directory is refused up
/// front, naming the file. (Real file systems: tmpfs mounts, which need root; where
/// mounting is not permitted, a file-size limit stands in for the full disk.)
#[test]
fn a_full_disk_or_a_read_only_run_directory_is_a_clear_error() {
    let args = |d: &str, steps: &str| -> Vec<String> {
        [
            "train",
            "--algo",
            "dqn",
            "--env",
            "cartpole",
            "--steps",
            steps,
            "--set",
            "dqn.learning_starts=200",
            "--set",
            "run.checkpoint_interval=1000",
            "-q",
            "--out",
            d,
        ]
        .map(String::from)
        .to_vec()
    };
    let disk = SmallDisk::mount("disk", "10m");
    let (dir, out) = match &disk {
        Some(disk) => {
            let dir = disk.dir.join("run");
            let out = agent()
                .args(args(dir.to_str().unwrap(), "20000"))
                .output()
                .unwrap();
            (dir, out)
        }
        None => {
            // No mounting here: a 2.3 MB limit on any file the process writes.
            let dir = temp_dir("fsize");
            // (`ulimit -f` counts blocks of 512 bytes.)
            let cmd = "ulimit -f 4500 && exec \"$0\" \"$@\"";
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .arg(env!("CARGO_BIN_EXE_agent"))
                .args(args(dir.to_str().unwrap(), "20000"))
                .output()
                .unwrap();
            (dir, out)
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        (stderr.contains("No space left on device") || stderr.contains("File too large"))
            && stderr.contains("is intact"),
        "{stderr}"
    );
    assert!(
        stderr.contains(dir.to_str().unwrap()),
        "the file is named: {stderr}"
    );
    let files = checkpoint_files(&dir);
    assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{files:?}");
    let policy = agentry::agents::train::load_run_policy(&dir).expect("the last checkpoint loads");
    let saved = policy.meta.env_steps;
    assert!(saved >= 1000, "{saved}");
    // On a roomier disk the run goes on from its last checkpoint and finishes.
    let roomy = temp_dir("roomy");
    copy_dir(&dir, &roomy);
    let out = agent()
        .args(["train", "--resume", roomy.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = metric_steps(&roomy);
    assert_eq!(steps.last(), Some(&20_000));
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    let _ = std::fs::remove_dir_all(&roomy);
    if disk.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    drop(disk);

    // Read-only: the same run directory, mounted read-only, refuses to resume.
    let Some(disk) = SmallDisk::mount("ro", "16m") else {
        eprintln!("mounting is not permitted here: the read-only case is not run");
        return;
    };
    let dir = disk.dir.join("run");
    let out = agent()
        .args(args(dir.to_str().unwrap(), "2000"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(disk.read_only());
    let out = agent()
        .args([
            "train",
            "--resume",
            dir.to_str().unwrap(),
            "--steps",
            "4000",
            "-q",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Read-only file system") && stderr.contains(dir.to_str().unwrap()),
        "{stderr}"
    );
    assert!(agentry::agents::train::load_run_policy(&dir).is_ok());
}

/// An environment step that hangs: past `run.actor_timeout_s` the run ends with an
/// error naming the environment and the actor, instead of waiting forever; the other
/// actor's thread is joined (the stuck one cannot be stopped from outside and ends
/// with the process).
#[test]
fn a_hanging_environment_ends_the_run_after_the_timeout() {
    let dir = temp_dir("hang");
    let before = threads();
    let started = Instant::now();
    let e = train_faulty(
        &dir,
        "ppo",
        &["env.hang_after=300", "run.actor_timeout_s=1"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`faulty`") && e.contains("sent no experience for 1 s"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // Both actors' first environment hangs at its 301st step: at most the two stuck
    // threads remain (and other tests' threads).
    let after = threads();
    assert!(
        after <= before + 2 + 1,
        "threads before {before}, after {after}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
