//! Wrappers: environments that change another environment's behaviour.
//!
//! Each wrapper is generic over the environment it wraps (`W<E: Env>`) and is itself an
//! [`Env`](crate::Env), so wrappers stack: `TimeLimit::new(EpisodeStatistics::new(env), 500)`.

mod episode_stats;
mod frame_stack;
mod frames;
mod macro_actions;
mod normalize;
mod reward;
mod time_limit;

pub use episode_stats::{EpisodeStatistics, EpisodeTracker};
pub use frame_stack::FrameStack;
pub use frames::{AreaResize, max_pool};
pub use macro_actions::{MacroActions, check_macros, repeat_macros};
pub use normalize::{NormalizeObservation, RunningMeanStd};
pub use reward::{ClipReward, ScaleReward};
pub use time_limit::TimeLimit;

/// Implements the `Env` methods a wrapper passes through unchanged.
macro_rules! forward_spaces {
    () => {
        fn action_space(&self) -> &$crate::space::Space {
            self.inner.action_space()
        }
        fn action_mask_len(&self) -> usize {
            self.inner.action_mask_len()
        }
        fn render_ansi(&self) -> String {
            self.inner.render_ansi()
        }
        fn render_rgb(&self) -> Option<$crate::env::RgbImage> {
            self.inner.render_rgb()
        }
        fn episode_end(&self) -> $crate::env::EpisodeEnd {
            self.inner.episode_end()
        }
    };
}
pub(crate) use forward_spaces;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Env, EnvExt, Observation};
    use crate::space::Action;
    use crate::testing::{ByteEnv, CountEnv};

    #[test]
    fn time_limit_truncates_without_terminating() {
        let mut env = TimeLimit::new(CountEnv::new(10), 3);
        env.reset(Some(1)).unwrap();
        for i in 1..=3 {
            let t = env.step(Action::Discrete(1)).unwrap();
            assert!(!t.terminated);
            assert_eq!(t.truncated, i == 3);
        }
        // A natural end on the last allowed step reports both flags.
        let mut env = TimeLimit::new(CountEnv::new(2), 2);
        env.reset(None).unwrap();
        env.step(Action::Discrete(0)).unwrap();
        let t = env.step(Action::Discrete(0)).unwrap();
        assert!(t.terminated && t.truncated);
        // A new episode starts counting again.
        env.reset(None).unwrap();
        assert!(!env.step(Action::Discrete(0)).unwrap().truncated);
    }

    #[test]
    fn episode_statistics_report_totals_on_the_last_step() {
        let mut env = EpisodeStatistics::new(CountEnv::new(3));
        let (_, info) = env.reset(Some(0)).unwrap();
        assert_eq!(info.get("episode_return"), Some(0.0));
        assert_eq!(info.get("t"), Some(0.0));
        let mut last = None;
        for a in [2, 1, 2] {
            last = Some(env.step(Action::Discrete(a)).unwrap());
        }
        let last = last.unwrap();
        assert!(last.terminated);
        assert_eq!(last.info.get("episode_return"), Some(5.0));
        assert_eq!(last.info.get("episode_length"), Some(3.0));
        assert_eq!(
            env.tracker().returns().iter().copied().collect::<Vec<_>>(),
            vec![5.0]
        );
    }

    #[test]
    fn normalisation_converges_and_freezes_and_restores() {
        let mut env = NormalizeObservation::new(CountEnv::new(1000)).unwrap();
        env.reset(Some(3)).unwrap();
        let mut last = vec![];
        for _ in 0..999 {
            last = env.step(Action::Discrete(0)).unwrap().obs.to_f32();
        }
        // t runs 0..999 uniformly: the newest value is ~1.73 standard deviations above the mean.
        assert!((last[0] - 1.73).abs() < 0.05, "{last:?}");
        let stats = env.stats().clone();
        env.freeze();
        env.reset(None).unwrap();
        assert_eq!(env.stats(), &stats);
        let mut other = NormalizeObservation::new(CountEnv::new(1000)).unwrap();
        other.set_stats(stats.clone()).unwrap();
        let json = serde_json::to_string(&stats).unwrap();
        let back: RunningMeanStd = serde_json::from_str(&json).unwrap();
        assert_eq!(back, stats);
        assert!(other.set_stats(RunningMeanStd::new(5)).is_err());
        assert!(NormalizeObservation::new(ByteEnv::new(3)).is_err());
    }

    #[test]
    fn batch_and_single_updates_agree() {
        let rows: Vec<f32> = (0..60).map(|i| ((i * 37) % 11) as f32 - 3.0).collect();
        let mut a = RunningMeanStd::new(3);
        let mut b = RunningMeanStd::new(3);
        a.update_batch(&rows);
        rows.chunks(3).for_each(|r| b.update(r));
        for j in 0..3 {
            assert!((a.mean[j] - b.mean[j]).abs() < 1e-9);
            assert!((a.var[j] - b.var[j]).abs() < 1e-9);
        }
        // The same batch reported as sums (in two shares) merges to the same statistics.
        let mut c = RunningMeanStd::new(3);
        for share in rows.chunks(30) {
            let mut sum = [0.0f64; 3];
            let mut sumsq = [0.0f64; 3];
            for r in share.chunks(3) {
                for j in 0..3 {
                    sum[j] += r[j] as f64;
                    sumsq[j] += (r[j] as f64).powi(2);
                }
            }
            c.merge_sums((share.len() / 3) as f64, &sum, &sumsq);
        }
        for j in 0..3 {
            assert!((a.mean[j] - c.mean[j]).abs() < 1e-9);
            assert!((a.var[j] - c.var[j]).abs() < 1e-9);
        }
    }

    #[test]
    fn frame_stack_keeps_the_last_k_oldest_first() {
        let mut env = FrameStack::new(CountEnv::new(10), 3).unwrap();
        assert_eq!(env.observation_space().shape(), vec![3, 2]);
        let (obs, _) = env.reset(Some(5)).unwrap();
        let start = obs.to_f32()[1];
        assert_eq!(obs.to_f32(), vec![0.0, start, 0.0, start, 0.0, start]);
        env.step(Action::Discrete(0)).unwrap();
        let t = env.step(Action::Discrete(0)).unwrap();
        assert_eq!(t.obs.to_f32(), vec![0.0, start, 1.0, start, 2.0, start]);
        let t = env.step(Action::Discrete(0)).unwrap();
        assert_eq!(t.obs.to_f32(), vec![1.0, start, 2.0, start, 3.0, start]);

        let mut env = FrameStack::new(ByteEnv::new(10), 2).unwrap();
        env.reset(None).unwrap();
        let t = env.step(Action::Discrete(0)).unwrap();
        assert_eq!(t.obs, Observation::U8(vec![0, 0, 0, 0, 1, 1, 1, 1]));
        assert!(FrameStack::new(CountEnv::new(1), 0).is_err());
    }

    #[test]
    fn reward_wrappers() {
        let mut env = ClipReward::new(CountEnv::new(5), -1.0, 1.0).unwrap();
        env.reset(None).unwrap();
        assert_eq!(env.step(Action::Discrete(2)).unwrap().reward, 1.0);
        let mut env = ScaleReward::new(CountEnv::new(5), 0.5).unwrap();
        env.reset(None).unwrap();
        assert_eq!(env.step(Action::Discrete(2)).unwrap().reward, 1.0);
        assert!(ClipReward::new(CountEnv::new(5), 1.0, -1.0).is_err());
        assert!(ScaleReward::new(CountEnv::new(5), f64::NAN).is_err());
    }

    #[test]
    fn wrappers_pass_invalid_actions_through_as_errors() {
        let mut env = TimeLimit::new(EpisodeStatistics::new(CountEnv::new(5)), 10);
        env.reset(None).unwrap();
        assert!(env.step(Action::Discrete(7)).is_err());
        assert!(env.step(Action::Continuous(&[0.0])).is_err());
    }
}
