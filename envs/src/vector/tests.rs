use super::*;
use crate::testing::{ByteEnv, CountEnv};
use crate::wrappers::TimeLimit;

fn counts(n: usize, length: u64) -> Vec<Box<dyn Env>> {
    (0..n)
        .map(|i| Box::new(CountEnv::new(length + i as u64 % 3)) as Box<dyn Env>)
        .collect()
}

type Snapshot = (
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<bool>,
    Vec<bool>,
    Vec<f64>,
    Vec<f64>,
);

fn snapshot(b: &VecBuffers) -> Snapshot {
    (
        b.obs_f32().unwrap().to_vec(),
        b.final_obs().as_f32().unwrap().to_vec(),
        b.rewards().to_vec(),
        b.terminated().to_vec(),
        b.truncated().to_vec(),
        b.extras().to_vec(),
        b.episode_returns().to_vec(),
    )
}

#[test]
fn trajectories_do_not_depend_on_the_number_of_threads() {
    let n = 7;
    let mut reference: Vec<Box<dyn VecEnv>> =
        vec![Box::new(SyncVecEnv::new(counts(n, 4)).unwrap())];
    for k in [1, 2, 3, 7, 16] {
        reference.push(Box::new(ThreadedVecEnv::new(counts(n, 4), k).unwrap()));
    }
    let mut runs = Vec::new();
    for env in &mut reference {
        let mut trace = vec![snapshot(env.reset(Some(11)).unwrap())];
        for t in 0..25 {
            let actions: Vec<usize> = (0..n).map(|i| (i + t) % 3).collect();
            trace.push(snapshot(env.step(VecAction::Discrete(&actions)).unwrap()));
        }
        runs.push(trace);
    }
    for run in &runs[1..] {
        assert_eq!(run, &runs[0]);
    }
    // Different seeds give different starts.
    let mut other = SyncVecEnv::new(counts(n, 4)).unwrap();
    assert_ne!(snapshot(other.reset(Some(12)).unwrap()).0, runs[0][0].0);
}

#[test]
fn auto_reset_keeps_the_final_observation_and_episode_totals() {
    for threads in [1, 2] {
        let mut env = ThreadedVecEnv::new(
            vec![
                Box::new(CountEnv::new(3)) as Box<dyn Env>,
                Box::new(CountEnv::new(5)),
            ],
            threads,
        )
        .unwrap();
        let b = env.reset(Some(1)).unwrap();
        let start0 = b.obs_f32().unwrap()[1];
        for _ in 0..2 {
            let b = env.step(VecAction::Discrete(&[2, 1])).unwrap();
            assert!(!b.done(0));
        }
        let b = env.step(VecAction::Discrete(&[1, 1])).unwrap();
        assert!(b.terminated()[0] && !b.truncated()[0] && !b.done(1));
        assert_eq!(&b.final_obs().as_f32().unwrap()[0..2], &[3.0, start0]);
        assert_eq!(
            b.obs_f32().unwrap()[0],
            0.0,
            "row 0 already holds the next episode"
        );
        assert_eq!(b.finished_episode(0), Some((5.0, 3)));
        assert_eq!(b.finished_episode(1), None);
        assert_eq!(
            b.extra(0, "t"),
            Some(3.0),
            "extras are those of the final step"
        );
        let b = env.step(VecAction::Discrete(&[0, 0])).unwrap();
        assert!(!b.done(0));
        assert_eq!(b.obs_f32().unwrap()[0], 1.0);
    }
}

#[test]
fn truncation_is_reported_separately() {
    let envs: Vec<Box<dyn Env>> = (0..3)
        .map(|_| Box::new(TimeLimit::new(CountEnv::new(100), 2)) as Box<dyn Env>)
        .collect();
    let mut env = ThreadedVecEnv::new(envs, 2).unwrap();
    env.reset(Some(0)).unwrap();
    env.step(VecAction::Discrete(&[0, 0, 0])).unwrap();
    let b = env.step(VecAction::Discrete(&[0, 0, 0])).unwrap();
    assert_eq!(b.truncated(), &[true, true, true]);
    assert_eq!(b.terminated(), &[false, false, false]);
    assert_eq!(b.final_obs().as_f32().unwrap()[0], 2.0);
}

#[test]
fn byte_observations_stay_bytes() {
    let envs: Vec<Box<dyn Env>> = (0..4)
        .map(|_| Box::new(ByteEnv::new(2)) as Box<dyn Env>)
        .collect();
    let mut env = ThreadedVecEnv::new(envs, 2).unwrap();
    env.reset(None).unwrap();
    let b = env.step(VecAction::Discrete(&[0; 4])).unwrap();
    assert_eq!(b.obs_u8().unwrap(), &[1u8; 16][..]);
    assert!(b.obs_f32().is_none());
    let b = env.step(VecAction::Discrete(&[0; 4])).unwrap();
    assert_eq!(b.final_obs().as_u8().unwrap(), &[2u8; 16][..]);
    assert_eq!(b.obs_u8().unwrap(), &[0u8; 16][..]);
}

#[test]
fn errors_name_the_environment_and_require_a_reset() {
    for threads in [1, 3] {
        let mut env = ThreadedVecEnv::new(counts(6, 10), threads).unwrap();
        assert!(matches!(
            env.step(VecAction::Discrete(&[0; 6])),
            Err(EnvError::NeedsReset(_))
        ));
        env.reset(Some(0)).unwrap();
        let err = env
            .step(VecAction::Discrete(&[0, 0, 0, 0, 9, 0]))
            .err()
            .unwrap();
        assert!(matches!(err, EnvError::InVector { index: 4, .. }), "{err}");
        assert!(err.to_string().contains("environment 4"), "{err}");
        assert!(matches!(
            env.step(VecAction::Discrete(&[0; 6])),
            Err(EnvError::NeedsReset(_))
        ));
        env.reset(None).unwrap();
        assert!(matches!(
            env.step(VecAction::Discrete(&[0; 5])),
            Err(EnvError::Buffer(_))
        ));
        assert!(matches!(
            env.step(VecAction::Continuous(&[0.0; 6])),
            Err(EnvError::Buffer(_))
        ));
        env.reset(None).unwrap();
        env.step(VecAction::Discrete(&[0; 6])).unwrap();
    }
}

#[test]
fn a_panicking_environment_becomes_an_error_and_threads_stop() {
    let mut envs = counts(4, 10);
    let mut bad = CountEnv::new(10);
    bad.panic_at = Some(2);
    envs[3] = Box::new(bad);
    let mut env = ThreadedVecEnv::new(envs, 2).unwrap();
    env.reset(Some(0)).unwrap();
    env.step(VecAction::Discrete(&[0; 4])).unwrap();
    env.step(VecAction::Discrete(&[0; 4])).unwrap();
    let err = env.step(VecAction::Discrete(&[0; 4])).err().unwrap();
    assert!(
        matches!(&err, EnvError::Panicked { index: 3, message } if message.contains("asked to panic")),
        "{err}"
    );
    drop(env); // joins the worker; a hang here fails the test by timeout
}

#[test]
fn mismatched_copies_are_rejected() {
    let envs: Vec<Box<dyn Env>> = vec![Box::new(CountEnv::new(3)), Box::new(ByteEnv::new(3))];
    assert!(SyncVecEnv::new(envs).is_err());
    assert!(SyncVecEnv::new(Vec::new()).is_err());
}

#[test]
fn from_fn_builds_on_the_workers_and_reports_their_failures() {
    let mut env = ThreadedVecEnv::from_fn(5, 2, |i| {
        Ok(Box::new(CountEnv::new(3 + i as u64)) as Box<dyn Env>)
    })
    .unwrap();
    assert_eq!(env.threads(), 2);
    env.reset(Some(0)).unwrap();
    env.step(VecAction::Discrete(&[0; 5])).unwrap();
    // A failing factory on a worker's slice: the error comes back and no thread is left behind.
    let err = ThreadedVecEnv::from_fn(6, 3, |i| {
        if i == 5 {
            Err(EnvError::Invalid("factory failed for 5".into()))
        } else {
            Ok(Box::new(CountEnv::new(3)) as Box<dyn Env>)
        }
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("factory failed for 5"), "{err}");
    // A copy that differs from the first is rejected.
    let err = ThreadedVecEnv::from_fn(4, 2, |i| {
        Ok(if i == 3 {
            Box::new(ByteEnv::new(3)) as Box<dyn Env>
        } else {
            Box::new(CountEnv::new(3))
        })
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("identical copies"), "{err}");
}

#[test]
fn episode_statistics_follow_the_environment_s_episode_end() {
    use crate::testing::LivesEnv;
    for threads in [1, 2] {
        let envs: Vec<Box<dyn Env>> = vec![
            Box::new(LivesEnv::new(3, 2)),
            // One life: every learner episode is a whole game.
            Box::new(LivesEnv::new(1, 2)),
        ];
        let mut env = ThreadedVecEnv::new(envs, threads).unwrap();
        env.reset(Some(0)).unwrap();
        let mut finished = vec![];
        for t in 1..=6 {
            let b = env.step(VecAction::Discrete(&[1, 1])).unwrap();
            // A life ends every second step: the learner's episode ends, ...
            assert_eq!(b.done(0), t % 2 == 0);
            assert_eq!(b.terminated()[0], t % 2 == 0);
            assert_eq!(b.done(1), t % 2 == 0);
            assert_eq!(b.finished_episode(1), (t % 2 == 0).then_some((20.0, 2)));
            // ... but only the game's end is an episode, with the game's raw totals.
            assert_eq!(b.episode_finished()[0], t == 6);
            finished.extend(b.finished_episode(0));
            // Lives left and steps into the game: a lost life does not restart the game.
            let obs = b.obs_f32().unwrap();
            assert_eq!(obs[1], if t == 6 { 0.0 } else { t as f32 });
        }
        assert_eq!(finished, vec![(60.0, 6)]);
    }
    // The same through the single-environment wrapper.
    let mut env = crate::wrappers::EpisodeStatistics::new(LivesEnv::new(2, 3));
    use crate::env::EnvExt;
    env.reset(Some(0)).unwrap();
    let mut ends = vec![];
    for _ in 0..2 {
        loop {
            let t = env.step(Action::Discrete(0)).unwrap();
            if t.terminated {
                ends.push(t.info.get("episode_return").unwrap());
                break;
            }
        }
        env.reset(None).unwrap();
    }
    assert_eq!(ends, vec![0.0, 60.0]);
    assert_eq!(env.tracker().episodes(), 1);
}
