//! Bad-input fuzzing on stable Rust (proptest, a fixed seed and case count, so CI runs
//! the same cases every time): the configuration parser, checkpoint and exported-policy
//! loaders, dataset files, ASCII grid-world maps and macro definitions never panic,
//! never hang and never allocate without bound, whatever they are given. Each either
//! works or returns an error.
//!
//! Byte-level fuzzing starts from real files (a PPO policy, a Rainbow policy with
//! macro-actions, an LRAM policy, a dataset, written by the `agent` binary) and flips,
//! overwrites and truncates bytes. For the checkpoint container it also re-seals the
//! checksum after the damage, so the cases reach the parsers behind it (JSON metadata,
//! the weights' shapes, burn's record format) instead of stopping at "checksum
//! mismatch".
//!
//! The kept regression corpus is `tests/fuzz-corpus/`: every file there is fed to the
//! loader its extension names, on every run (add a file when a case once failed).
//! proptest also records failing seeds in `tests/fuzz.proptest-regressions`.
//!
//! Unbounded allocation: this test binary's allocator refuses any single allocation
//! over 1 GiB (the process then aborts, failing the run loudly), so a loader that
//! trusts a length field from the file cannot pass.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use agentry::Agent;
use agentry::agents::checkpoint::fnv1a64;
use agentry::agents::config::{Config, ConfigRequest, resolve};
use agentry::envs::wrappers::{MacroActions, check_macros};
use agentry::envs::{Action, EnvExt, Params, make};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as RunnerConfig, FileFailurePersistence, RngSeed};

/// The system allocator, refusing single allocations over 1 GiB.
struct Capped;

const CAP: usize = 1 << 30;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Capped = Capped;

fn runner(cases: u32) -> RunnerConfig {
    RunnerConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x5EED_A6E7),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        max_shrink_iters: 200,
        ..RunnerConfig::default()
    }
}

/// Real files to damage, written once per test binary.
struct Fixtures {
    dir: PathBuf,
    /// The newest learner checkpoint of the PPO and the Rainbow run.
    learners: [(PathBuf, Vec<u8>); 2],
    ppo: Vec<u8>,
    rainbow: Vec<u8>,
    lram: Vec<u8>,
    dataset: Vec<u8>,
}

fn agent(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(args)
        .output()
        .expect("the agent binary runs");
    assert!(
        out.status.success(),
        "agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        // One copy, replaced on every run (in the target directory's scratch space).
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = |name: &str| dir.join(name).display().to_string();
        agent(&[
            "train",
            "-q",
            "--env",
            "cartpole",
            "--steps",
            "512",
            "--out",
            &p("ppo"),
        ]);
        agent(&["export", "--run", &p("ppo"), "--out", &p("ppo.agentry")]);
        agent(&[
            "train",
            "-q",
            "--algo",
            "rainbow",
            "--env",
            "cartpole",
            "--steps",
            "300",
            "--set",
            "dqn.learning_starts=100",
            "--set",
            "rainbow.macro_repeat=2",
            "--out",
            &p("rainbow"),
        ]);
        agent(&[
            "export",
            "--run",
            &p("rainbow"),
            "--out",
            &p("rainbow.agentry"),
        ]);
        agent(&[
            "collect",
            "--run",
            &p("ppo"),
            "--episodes",
            "2",
            "--random-episodes",
            "1",
            "--reference-episodes",
            "2",
            "--out",
            &p("data/cartpole.agds"),
        ]);
        agent(&[
            "train",
            "-q",
            "--algo",
            "lram",
            "--dataset",
            &p("data"),
            "--steps",
            "2",
            "--set",
            "lram.d_model=8",
            "--set",
            "lram.heads=2",
            "--set",
            "lram.eval_episodes=0",
            "--out",
            &p("lram"),
        ]);
        agent(&["export", "--run", &p("lram"), "--out", &p("lram.agentry")]);
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let learner = |run: &str| {
            let rd = agentry::agents::train::RunDir::new(dir.join(run));
            let (_, path) = rd.latest("learner").unwrap().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            (dir.join(run), bytes)
        };
        Fixtures {
            learners: [learner("ppo"), learner("rainbow")],
            ppo: read("ppo.agentry"),
            rainbow: read("rainbow.agentry"),
            lram: read("lram.agentry"),
            dataset: read("data/cartpole.agds"),
            dir,
        }
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Damage: overwrite some bytes, then maybe cut the file.
#[derive(Clone, Debug)]
struct Damage {
    writes: Vec<(Index, u8)>,
    cut: Option<Index>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        prop::collection::vec((any::<Index>(), any::<u8>()), 0..6),
        prop::option::weighted(0.2, any::<Index>()),
    )
        .prop_map(|(writes, cut)| Damage { writes, cut })
}

fn apply(bytes: &[u8], d: &Damage) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for (at, v) in &d.writes {
        let i = at.index(b.len());
        b[i] = *v;
    }
    if let Some(cut) = &d.cut {
        b.truncate(cut.index(b.len()));
    }
    b
}

/// Re-seal the container's checksum (the last 8 bytes: FNV-1a of the rest).
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() >= 8 + 12 {
        let n = b.len() - 8;
        let sum = fnv1a64(&b[..n]);
        b[n..].copy_from_slice(&sum.to_le_bytes());
    }
    b
}

/// A unique file in the fixtures' directory.
fn scratch(ext: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    fixtures()
        .dir
        .join(format!("case-{}.{ext}", N.fetch_add(1, Ordering::Relaxed)))
}

/// Load a policy file every way a user can, and act with it if it loads.
fn load_policy_bytes(bytes: &[u8]) {
    let path = scratch("agentry");
    std::fs::write(&path, bytes).unwrap();
    let _ = agentry::agents::train::load_policy(&path);
    if let Ok(mut a) = Agent::from_file(&path) {
        let obs = vec![0.5f32; a.info().obs_dim];
        for _ in 0..3 {
            if a.act(&obs).is_ok() {
                let _ = a.observe(0.0);
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

fn load_dataset_bytes(bytes: &[u8]) {
    let path = scratch("agds");
    std::fs::write(&path, bytes).unwrap();
    if let Ok((_, episodes)) = agentry::memory::dataset::read_all(&path) {
        for e in &episodes {
            let _ = e.returns_to_go();
        }
    }
    let _ = agentry::agents::dataset::dataset_info(&path);
    let _ = std::fs::remove_file(&path);
}

proptest! {
    #![proptest_config(runner(48))]

    #[test]
    fn damaged_policy_files_are_errors(which in 0..3usize, d in damage(), sealed in any::<bool>()) {
        let f = fixtures();
        let original = [&f.ppo, &f.rainbow, &f.lram][which];
        let bytes = apply(original, &d);
        load_policy_bytes(&if sealed { reseal(bytes) } else { bytes });
    }

    /// A damaged learner checkpoint (model, optimizer, replay memory, counters) is
    /// refused by `--resume`, or, if it still reads, the run goes on from it.
    #[test]
    fn damaged_learner_checkpoints_are_refused_on_resume(
        which in 0..2usize,
        d in damage(),
        sealed in any::<bool>(),
    ) {
        let (run, original) = &fixtures().learners[which];
        let copy = scratch("run");
        copy_dir(run, &copy);
        let rd = agentry::agents::train::RunDir::new(&copy);
        let (_, newest) = rd.latest("learner").unwrap().unwrap();
        let bytes = apply(original, &d);
        std::fs::write(&newest, if sealed { reseal(bytes) } else { bytes }).unwrap();
        let _ = agentry::agents::train::train(
            agentry::agents::train::Start::Resume { dir: copy.clone(), steps: None },
            &mut agentry::agents::train::Silent,
        );
        let _ = std::fs::remove_dir_all(&copy);
    }

    #[test]
    fn damaged_datasets_are_errors(d in damage()) {
        load_dataset_bytes(&apply(&fixtures().dataset, &d));
    }
}

/// Text in a policy's JSON sections, replaced by hostile values, behind a valid
/// checksum: shapes that do not fit, huge sizes, negative and non-finite numbers.
#[test]
fn hostile_metadata_behind_a_valid_checksum_is_an_error() {
    let f = fixtures();
    let hostile = [
        "99999999",
        "4294967295",
        "-1",
        "1e308",
        "0",
        "null",
        "[]",
        "\"\"",
        "NaN",
    ];
    for original in [&f.ppo, &f.rainbow, &f.lram] {
        // Every JSON number in the file, replaced by each hostile value in turn.
        let numbers: Vec<(usize, usize)> = number_spans(original).into_iter().take(60).collect();
        for &(start, end) in &numbers {
            for h in hostile {
                let mut b = Vec::with_capacity(original.len());
                b.extend_from_slice(&original[..start]);
                b.extend_from_slice(h.as_bytes());
                b.extend_from_slice(&original[end..]);
                // Section lengths are now off: fix the one that holds the span when the
                // container is simple enough to walk; else the damaged file must be
                // refused anyway.
                load_policy_bytes(&reseal(refit(&b, start, end - start, h.len())));
            }
        }
    }
}

/// Spans of ASCII digits (with an optional leading '-') inside JSON-looking text.
fn number_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && i > 0 && matches!(bytes[i - 1], b':' | b'[' | b',') {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            spans.push((start, i));
        }
        i += 1;
    }
    spans
}

/// Walk the container's sections (magic 8, version 4, kind, count, then name + u64
/// length + payload) and grow or shrink the length of the section that holds the
/// replaced span by the change in size.
fn refit(b: &[u8], at: usize, old: usize, new: usize) -> Vec<u8> {
    let mut out = b.to_vec();
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .map(|x| u32::from_le_bytes(x.try_into().unwrap()) as usize)
    };
    let u64_at = |i: usize| {
        b.get(i..i + 8)
            .map(|x| u64::from_le_bytes(x.try_into().unwrap()) as usize)
    };
    let walk = || -> Option<usize> {
        let mut i: usize = 12;
        i = i.checked_add(4)?.checked_add(u32_at(i)?)?;
        let count = u32_at(i)?;
        i += 4;
        for _ in 0..count {
            i = i.checked_add(4)?.checked_add(u32_at(i)?)?;
            let len = u64_at(i)?;
            let payload = i + 8;
            if (payload..payload.checked_add(len)?).contains(&at) {
                return Some(i);
            }
            i = payload.checked_add(len)?;
        }
        None
    };
    if let Some(i) = walk() {
        let len = u64_at(i).expect("walked");
        let fixed = (len + new).saturating_sub(old) as u64;
        out[i..i + 8].copy_from_slice(&fixed.to_le_bytes());
    }
    out
}

/// Configuration text: presets with values replaced by hostile ones, lines dropped,
/// and arbitrary text.
fn config_text() -> impl Strategy<Value = String> {
    let presets: Vec<&'static str> = ["cartpole", "dark-room", "tictactoe", "pendulum"]
        .iter()
        .flat_map(|e| {
            ["ppo", "dqn", "rainbow"]
                .iter()
                .filter_map(move |a| agentry::agents::config::preset(a, e))
        })
        .collect();
    let hostile = prop::sample::select(vec![
        "-1",
        "0",
        "1e309",
        "nan",
        "inf",
        "-inf",
        "\"\"",
        "\"nonsense\"",
        "[]",
        "[[]]",
        "[[0, 99999999999]]",
        "true",
        "18446744073709551615",
        "9223372036854775807",
        "{}",
        "[1, [2]]",
        "'''",
    ]);
    prop_oneof![
        (
            prop::sample::select(presets),
            prop::collection::vec((any::<Index>(), hostile, any::<bool>()), 1..4)
        )
            .prop_map(|(preset, edits)| {
                let mut lines: Vec<String> = preset.lines().map(str::to_string).collect();
                for (at, value, drop) in edits {
                    let i = at.index(lines.len());
                    if drop {
                        lines.remove(i);
                    } else if let Some((key, _)) = lines[i].split_once('=') {
                        lines[i] = format!("{key}= {value}");
                    }
                    if lines.is_empty() {
                        break;
                    }
                }
                lines.join("\n")
            }),
        "\\PC{0,300}",
        "(\\[[a-z]{1,8}\\]\n([a-z_]{1,12} = [-0-9a-z\"\\[\\], .]{0,12}\n){0,4}){0,4}",
    ]
}

proptest! {
    #![proptest_config(runner(256))]

    #[test]
    fn any_configuration_text_is_parsed_or_refused(text in config_text()) {
        if let Ok(config) = Config::from_toml(&text, "fuzz") {
            // What parses writes back and parses again.
            prop_assert!(Config::from_toml(&config.to_toml(), "again").is_ok());
        }
    }

    #[test]
    fn any_set_flag_is_applied_or_refused(
        key in prop::sample::select(vec![
            "ppo.hidden", "ppo.learning_rate", "run.steps", "run.actors", "env.size",
            "dqn.buffer_size", "rainbow.macros", "rainbow.atoms", "plasticity.reset_every",
            "lram.d_model", "nonsense.key", "run", "",
        ]),
        value in "[-0-9a-z\"\\[\\], .=]{0,16}",
        algo in prop::sample::select(vec!["ppo", "dqn", "rainbow"]),
    ) {
        let _ = resolve(&ConfigRequest {
            algo: Some(algo.into()),
            env: Some("dark-room".into()),
            sets: vec![format!("{key}={value}")],
            ..ConfigRequest::default()
        });
    }

    #[test]
    fn any_ascii_map_builds_or_is_refused(
        map in prop_oneof![
            "[#.SGL/ \nx]{0,120}",
            "\\PC{0,80}",
            "(#{3,9}/){1,2}#[.SG]{1,7}#(/#{3,9}){1,2}",
        ],
        actions in prop::collection::vec(0..5usize, 0..20),
    ) {
        if let Ok(mut env) = make("grid-world", &Params::new().with("map", map.as_str())) {
            let _ = env.reset(Some(0));
            for a in actions {
                match env.step(Action::Discrete(a)) {
                    Ok(t) if t.terminated || t.truncated => { let _ = env.reset(None); }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn any_macro_definition_is_checked(
        macros in prop::collection::vec(
            prop::collection::vec(prop_oneof![0..3usize, any::<usize>()], 0..5),
            0..5,
        ),
        n in 0..4usize,
    ) {
        let ok = check_macros(n, &macros).is_ok();
        let env = make("cartpole", &Params::new()).unwrap();
        match MacroActions::new(env, macros.clone(), 0.99) {
            Ok(mut m) => {
                prop_assert!(check_macros(2, &macros).is_ok());
                let _ = m.reset(Some(1));
                for a in 0..2 + macros.len() {
                    if let Ok(t) = m.step(Action::Discrete(a))
                        && (t.terminated || t.truncated)
                    {
                        let _ = m.reset(None);
                    }
                }
            }
            Err(_) => prop_assert!(n != 2 || !ok),
        }
        let toml: Vec<String> = macros
            .iter()
            .map(|m| format!("[{}]", m.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")))
            .collect();
        let _ = resolve(&ConfigRequest {
            algo: Some("rainbow".into()),
            env: Some("cartpole".into()),
            sets: vec![format!("rainbow.macros=[{}]", toml.join(", "))],
            ..ConfigRequest::default()
        });
    }
}

/// The kept corpus: each file goes to the loader its extension names.
#[test]
fn the_regression_corpus_is_refused_or_loaded_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("agentry") => load_policy_bytes(&bytes),
            Some("agds") => load_dataset_bytes(&bytes),
            Some("toml") => {
                let _ = Config::from_toml(&String::from_utf8_lossy(&bytes), "corpus");
            }
            Some("map") => {
                let map = String::from_utf8_lossy(&bytes).into_owned();
                if let Ok(mut env) = make("grid-world", &Params::new().with("map", map.as_str())) {
                    let _ = env.reset(Some(0));
                }
            }
            _ => continue,
        }
        seen += 1;
    }
    assert!(
        seen >= 4,
        "the corpus in {} has {seen} files",
        dir.display()
    );
}
