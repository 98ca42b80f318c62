//! Run directories of DQN and Rainbow written before Q-networks could have convolutions
//! and replay could store bytes (commit 985a517; see `fixtures/q-checkpoints-985a517`)
//! still resume, and their policy files still load and act.

use std::path::{Path, PathBuf};

use agentry_agents::ppo::ActMode;
use agentry_agents::train::{Policy, Silent, Start, load_policy, load_run_policy, train};
use rand::SeedableRng;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of `tests/fixtures/{set}/{name}` in a fresh temporary directory.
fn fixture(set: &str, name: &str) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set)
        .join(name);
    let to = std::env::temp_dir().join(format!("agentry-old-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&to);
    copy_dir(&from, &to);
    to
}

#[test]
fn old_dqn_and_rainbow_runs_resume_and_their_policies_act() {
    for name in ["rainbow-cartpole", "dqn-cartpole"] {
        let dir = fixture("q-checkpoints-985a517", name);
        // The old policy file: an MLP Q-network, no convolutions.
        let old = load_policy(&dir.join("checkpoints/policy-000000000400.agentry")).unwrap();
        let Policy::Q(policy) = &old.policy else {
            panic!("{name}: a Q policy")
        };
        assert!(policy.net.convs.is_none());
        let mut ws = policy.workspace();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let a = policy.act(
            &[0.0f32, 0.1, -0.1, 0.0],
            None,
            ActMode::Deterministic,
            &mut rng,
            &mut ws,
        );
        assert!(a < 2);
        // The learner checkpoint (network, target, optimizer, state and version-1
        // replay) restores, and the run goes on.
        let outcome = train(
            Start::Resume {
                dir: dir.clone(),
                steps: Some(600),
            },
            &mut Silent,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outcome.state.env_steps, 600, "{name}");
        assert!(!outcome.stopped);
        let newer = load_run_policy(&dir).unwrap();
        assert_eq!(newer.meta.env_steps, 600, "{name}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A PPO run directory written before the actor and critic could be CNNs (commit 433d95b;
/// see `fixtures/ppo-checkpoint-433d95b`): its MLP record loads into today's networks, the
/// run resumes, and its policy acts.
#[test]
fn an_old_ppo_run_resumes_and_its_policy_acts() {
    let dir = fixture("ppo-checkpoint-433d95b", "ppo-cartpole");
    let old = load_policy(&dir.join("checkpoints/policy-000000004096.agentry")).unwrap();
    let Policy::Ppo(policy) = &old.policy else {
        panic!("a PPO policy")
    };
    let mut ws = policy.workspace();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let a = policy.act(
        &[0.0f32, 0.1, -0.1, 0.0],
        None,
        ActMode::Deterministic,
        &mut rng,
        &mut ws,
    );
    assert!(a.index < 2);
    let outcome = train(
        Start::Resume {
            dir: dir.clone(),
            steps: Some(4096 + 512),
        },
        &mut Silent,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.state.env_steps, 4096 + 512);
    assert_eq!(load_run_policy(&dir).unwrap().meta.env_steps, 4096 + 512);
    std::fs::remove_dir_all(&dir).unwrap();
}
