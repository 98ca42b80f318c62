//! Macro-actions: fixed sequences of primitive actions run open-loop as one action
//! ([`MacroActions`], [`repeat_macros`], [`check_macros`]).

use crate::env::{Env, Out, RgbImage, Step};
use crate::error::{EnvError, Result};
use crate::space::{Action, Space};

/// The name parameter errors carry.
const NAME: &str = "MacroActions";

/// The macros "repeat primitive `a` for `k` steps", one per primitive action:
/// `[[0; k], [1; k], …, [num_actions - 1; k]]`. With `k = 0` the macros are empty,
/// which [`check_macros`] and [`MacroActions::new`] refuse.
pub fn repeat_macros(num_actions: usize, k: usize) -> Vec<Vec<usize>> {
    (0..num_actions).map(|a| vec![a; k]).collect()
}

/// Checks macros for an inner action space `Discrete(num_actions)`: each must be
/// non-empty and hold only actions below `num_actions`. The error
/// ([`EnvError::BadParam`], parameter `macros`) names the first bad macro and step.
pub fn check_macros(num_actions: usize, macros: &[Vec<usize>]) -> Result<()> {
    for (j, m) in macros.iter().enumerate() {
        if m.is_empty() {
            return Err(EnvError::bad_param(
                NAME,
                "macros",
                format!("macro {j} is empty"),
            ));
        }
        if let Some((i, a)) = m.iter().enumerate().find(|&(_, &a)| a >= num_actions) {
            return Err(EnvError::bad_param(
                NAME,
                "macros",
                format!(
                    "macro {j} step {i}: action {a} is not in the inner action space \
                     Discrete({num_actions})"
                ),
            ));
        }
    }
    Ok(())
}

/// Adds macro-actions, fixed sequences of primitive actions run open-loop, to an
/// environment with a `Discrete(n)` action space.
///
/// With `m` macros (Hosu, Rebedea and Pascanu 2025) the action space becomes
/// `Discrete(n + m)`, action `a < n` is the primitive action `a`, and action `n + j`
/// steps the inner environment with each action of macro `j` in turn, without looking
/// at the observations in between. [`repeat_macros`] builds the simplest set ("repeat
/// primitive `a` for `k` steps", one macro per primitive).
///
/// # Discounting
///
/// A macro that runs `d` primitive steps with rewards `r_0 … r_(d-1)` returns one step
/// whose reward is their discounted sum `Σ_{i<d} γ^i r_i`, with the wrapper's `γ`. Use
/// the learner's discount factor: the value after the macro is then worth `γ^d` times
/// its value, which is what `agentry_memory`'s adders apply when the step they receive
/// has `duration = d`. The wrapper reports `d` as the per-step extra `"macro_steps"`
/// (after the inner environment's extras): 1 for a primitive action, the number of
/// primitive steps actually run for a macro, 0 after a reset.
///
/// agentry's `env_steps` counter counts *primitive* environment steps, so that runs with
/// and without macros are compared on the same budget: an actor adds `macro_steps`,
/// not 1, per step, and passes it on as the step's `duration`.
///
/// # Early stops
///
/// A macro stops before its end when
///
/// - the inner environment terminates or truncates: the returned observation is that
///   final one, and `terminated` / `truncated` are passed through unchanged;
/// - the inner environment has a legal-action mask and the macro's next action is
///   illegal in the state reached: the step returns what the macro earned so far.
///
/// An error from the inner environment part-way through a macro is returned as it is;
/// the primitive steps before it have happened.
///
/// # Legal-action masks
///
/// When the inner environment has a mask (of `n` entries), the wrapper's mask has
/// `n + m`: the inner mask, then macro `j` is legal when its first action is. Like a
/// primitive action, a macro whose first action is illegal is not refused by the
/// wrapper: that action goes to the inner environment, which treats it as it treats
/// any illegal action (a loss, or an [`EnvError::IllegalAction`]).
///
/// # Stacking
///
/// Wrap the inner environment's time limit and episode statistics *inside*
/// `MacroActions`: a [`TimeLimit`](super::TimeLimit) inside counts primitive steps
/// and stops a macro when it truncates, and
/// [`EpisodeStatistics`](super::EpisodeStatistics) inside sums undiscounted primitive
/// rewards. The inner extras a step reports are those of its last primitive step.
///
/// ```
/// use agentry_envs::testing::CountEnv;
/// use agentry_envs::wrappers::{MacroActions, repeat_macros};
/// use agentry_envs::{Action, Env, EnvExt, Space};
///
/// // CountEnv has actions Discrete(3) and rewards each step with the action taken.
/// let mut env = MacroActions::new(CountEnv::new(100), repeat_macros(3, 4), 0.5)?;
/// assert_eq!(env.action_space(), &Space::Discrete(6));
/// env.reset(Some(0))?;
/// let t = env.step(Action::Discrete(5))?; // macro 2: action 2, four times
/// assert_eq!(t.reward, 2.0 * (1.0 + 0.5 + 0.25 + 0.125));
/// assert_eq!(t.info.get("macro_steps"), Some(4.0));
/// let t = env.step(Action::Discrete(1))?; // primitive action 1
/// assert_eq!((t.reward, t.info.get("macro_steps")), (1.0, Some(1.0)));
/// # Ok::<(), agentry_envs::EnvError>(())
/// ```
///
/// Stepping allocates nothing: each primitive step writes straight into the caller's
/// buffers, and the macros and extra names are built once in [`MacroActions::new`].
#[derive(Debug)]
pub struct MacroActions<E> {
    inner: E,
    macros: Vec<Vec<usize>>,
    gamma: f64,
    /// Number of primitive actions.
    n: usize,
    /// `Discrete(n + macros.len())`.
    space: Space,
    /// Whether the inner environment has a legal-action mask.
    masked: bool,
    /// The inner environment's extra names, then `"macro_steps"`.
    names: Vec<&'static str>,
}

impl<E: Env> MacroActions<E> {
    /// Wrap `inner`, whose action space must be `Discrete(n)`, adding `macros` as the
    /// actions `n, n + 1, …`; rewards inside a macro are discounted with `gamma` ∈ `[0, 1]`.
    ///
    /// Errors: [`EnvError::Invalid`] if the inner action space is not discrete or its
    /// mask does not have `n` entries; [`EnvError::BadParam`] (parameter `macros` or
    /// `gamma`) for an empty macro, an action outside `Discrete(n)`, or a bad `gamma`.
    pub fn new(inner: E, macros: Vec<Vec<usize>>, gamma: f64) -> Result<Self> {
        let Space::Discrete(n) = *inner.action_space() else {
            return Err(EnvError::Invalid(format!(
                "{NAME} needs a Discrete inner action space, got {}",
                inner.action_space()
            )));
        };
        let mask_len = inner.action_mask_len();
        if mask_len != 0 && mask_len != n {
            return Err(EnvError::Invalid(format!(
                "{NAME} needs an inner action mask of 0 or {n} entries for Discrete({n}), \
                 got {mask_len}"
            )));
        }
        check_macros(n, &macros)?;
        if !(0.0..=1.0).contains(&gamma) {
            return Err(EnvError::bad_param(
                NAME,
                "gamma",
                format!("expected a discount factor in [0, 1], got {gamma}"),
            ));
        }
        let total = n.checked_add(macros.len()).ok_or_else(|| {
            EnvError::bad_param(
                NAME,
                "macros",
                format!("{} macros are too many", macros.len()),
            )
        })?;
        let mut names = inner.extra_names().to_vec();
        names.push("macro_steps");
        Ok(MacroActions {
            masked: mask_len > 0,
            inner,
            macros,
            gamma,
            n,
            space: Space::Discrete(total),
            names,
        })
    }

    /// The macros; macro `j` is action `n + j`.
    pub fn macros(&self) -> &[Vec<usize>] {
        &self.macros
    }

    /// The discount factor applied inside a macro.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// The number `n` of primitive actions.
    pub fn num_primitive(&self) -> usize {
        self.n
    }

    /// The wrapped environment.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The wrapped environment, mutably.
    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.inner
    }

    /// Fail before anything runs if the caller's mask or extras have the wrong length
    /// (the wrapper splits them, and a short buffer must not panic).
    fn check_buffers(&self, out: &Out<'_>) -> Result<()> {
        let mask = self.action_mask_len();
        if out.action_mask.len() != mask || out.extras.len() != self.names.len() {
            return Err(EnvError::Buffer(format!(
                "{NAME} needs a mask of {mask} and {} extras, got {} and {}",
                self.names.len(),
                out.action_mask.len(),
                out.extras.len()
            )));
        }
        Ok(())
    }
}

/// Fills the macro entries of a wrapper mask from its inner entries (the first `n`):
/// a macro is legal when its first action is. Does nothing for an unmasked environment.
fn write_macro_mask(macros: &[Vec<usize>], n: usize, mask: &mut [bool]) {
    if mask.is_empty() {
        return;
    }
    let (inner, own) = mask.split_at_mut(n);
    for (m, legal) in macros.iter().zip(own) {
        // Macros are non-empty with actions below n (checked in `new`).
        *legal = m.first().is_some_and(|&a| inner[a]);
    }
}

impl<E: Env> Env for MacroActions<E> {
    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }

    fn action_space(&self) -> &Space {
        &self.space
    }

    fn action_mask_len(&self) -> usize {
        if self.masked {
            self.n + self.macros.len()
        } else {
            0
        }
    }

    fn extra_names(&self) -> &[&'static str] {
        &self.names
    }

    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        self.check_buffers(&out)?;
        let k = self.names.len() - 1;
        let (inner_extras, own) = out.extras.split_at_mut(k);
        own[0] = 0.0;
        let inner_mask_len = self.inner.action_mask_len();
        self.inner.reset_into(
            seed,
            Out {
                obs: out.obs,
                action_mask: &mut out.action_mask[..inner_mask_len],
                extras: inner_extras,
            },
        )?;
        write_macro_mask(&self.macros, self.n, out.action_mask);
        Ok(())
    }

    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        self.space.check(&action)?;
        let Action::Discrete(a) = action else {
            // Not reached: `check` accepts only discrete actions for a `Discrete` space.
            return Err(EnvError::InvalidAction {
                action: action.to_string(),
                space: self.space.to_string(),
            });
        };
        self.check_buffers(&out)?;
        let Out {
            mut obs,
            action_mask,
            extras,
        } = out;
        let k = self.names.len() - 1;
        let (inner_extras, own) = extras.split_at_mut(k);
        let inner_mask_len = self.inner.action_mask_len();

        if a < self.n {
            let step = self.inner.step_into(
                action,
                Out {
                    obs,
                    action_mask: &mut action_mask[..inner_mask_len],
                    extras: inner_extras,
                },
            )?;
            own[0] = 1.0;
            write_macro_mask(&self.macros, self.n, action_mask);
            return Ok(step);
        }

        let mut total = Step::running(0.0);
        let mut discount = 1.0;
        let mut taken = 0u32;
        for (i, &p) in self.macros[a - self.n].iter().enumerate() {
            // The mask in `action_mask` is the inner one after the previous primitive step.
            if i > 0 && self.masked && !action_mask[p] {
                break;
            }
            let step = self.inner.step_into(
                Action::Discrete(p),
                Out {
                    obs: obs.reborrow(),
                    action_mask: &mut action_mask[..inner_mask_len],
                    extras: &mut *inner_extras,
                },
            )?;
            total.reward += discount * step.reward;
            discount *= self.gamma;
            taken += 1;
            if step.done() {
                total.terminated = step.terminated;
                total.truncated = step.truncated;
                break;
            }
        }
        own[0] = f64::from(taken);
        write_macro_mask(&self.macros, self.n, action_mask);
        Ok(total)
    }

    fn render_ansi(&self) -> String {
        self.inner.render_ansi()
    }

    fn render_rgb(&self) -> Option<RgbImage> {
        self.inner.render_rgb()
    }

    fn episode_end(&self) -> crate::env::EpisodeEnd {
        self.inner.episode_end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classic::Pendulum;
    use crate::env::{EnvExt, ObsMut};
    use crate::testing::CountEnv;
    use crate::tictactoe::{TicTacToe, TicTacToeConfig};
    use crate::wrappers::TimeLimit;

    /// `CountEnv` (`Discrete(3)`, reward = the action, observation `[t, start]`, extra
    /// `t`) with macros `[1, 2, 0, 2]` and `[2, 2, 2, 2]`, discounted by 0.5.
    fn count_env(length: u64) -> MacroActions<CountEnv> {
        MacroActions::new(
            CountEnv::new(length),
            vec![vec![1, 2, 0, 2], vec![2; 4]],
            0.5,
        )
        .unwrap()
    }

    #[test]
    fn spaces_and_extras() {
        let env = count_env(10);
        assert_eq!(env.action_space(), &Space::Discrete(5));
        assert_eq!(
            env.observation_space(),
            CountEnv::new(10).observation_space()
        );
        assert_eq!(env.action_mask_len(), 0);
        assert_eq!(env.extra_names(), ["t", "macro_steps"]);
        assert_eq!(env.num_primitive(), 3);
        assert_eq!(repeat_macros(3, 2), [[0, 0], [1, 1], [2, 2]]);
        assert!(repeat_macros(0, 2).is_empty());
    }

    #[test]
    fn primitive_actions_pass_through() {
        let mut env = count_env(10);
        let mut bare = CountEnv::new(10);
        let (obs, info) = env.reset(Some(7)).unwrap();
        assert_eq!(obs, bare.reset(Some(7)).unwrap().0);
        assert_eq!(info.extras, [("t", 0.0), ("macro_steps", 0.0)]);
        for a in [2, 0, 1] {
            let t = env.step(Action::Discrete(a)).unwrap();
            let want = bare.step(Action::Discrete(a)).unwrap();
            assert_eq!(
                (&t.obs, t.reward, t.terminated, t.truncated),
                (&want.obs, want.reward, false, false)
            );
            assert_eq!(t.info.get("macro_steps"), Some(1.0));
            assert_eq!(t.info.get("t"), want.info.get("t"));
        }
    }

    #[test]
    fn a_macro_sums_discounted_rewards_and_reports_its_length() {
        let mut env = count_env(10);
        let (obs, _) = env.reset(Some(3)).unwrap();
        let start = obs.to_f32()[1];
        let t = env.step(Action::Discrete(3)).unwrap();
        // Rewards 1, 2, 0, 2 discounted by 0.5 per primitive step.
        assert_eq!(t.reward, 1.0 + 0.5 * 2.0 + 0.25 * 0.0 + 0.125 * 2.0);
        assert!(!t.terminated && !t.truncated);
        assert_eq!(t.obs.to_f32(), [4.0, start]);
        assert_eq!(t.info.extras, [("t", 4.0), ("macro_steps", 4.0)]);
        // A reset reports 0 primitive steps.
        let (_, info) = env.reset(None).unwrap();
        assert_eq!(info.get("macro_steps"), Some(0.0));
    }

    #[test]
    fn a_macro_stops_at_termination() {
        let mut env = count_env(3);
        env.reset(Some(1)).unwrap();
        let t = env.step(Action::Discrete(4)).unwrap();
        // Three of the four steps of [2, 2, 2, 2] run; the third terminates.
        assert_eq!(t.reward, 2.0 + 0.5 * 2.0 + 0.25 * 2.0);
        assert!(t.terminated && !t.truncated);
        assert_eq!(t.obs.to_f32()[0], 3.0);
        assert_eq!(t.info.extras, [("t", 3.0), ("macro_steps", 3.0)]);
        assert!(matches!(
            env.step(Action::Discrete(0)),
            Err(EnvError::NeedsReset(_))
        ));
    }

    #[test]
    fn a_macro_stops_at_truncation() {
        let inner = TimeLimit::new(CountEnv::new(10), 2);
        let mut env = MacroActions::new(inner, vec![vec![1, 2, 2]], 0.5).unwrap();
        env.reset(Some(1)).unwrap();
        let t = env.step(Action::Discrete(3)).unwrap();
        assert_eq!(t.reward, 1.0 + 0.5 * 2.0);
        assert!(t.truncated && !t.terminated);
        assert_eq!(t.obs.to_f32()[0], 2.0);
        assert_eq!(t.info.get("macro_steps"), Some(2.0));
        assert_eq!(env.inner().elapsed(), 2);
    }

    #[test]
    fn masks_mark_macros_by_their_first_action_and_stop_them_at_an_illegal_one() {
        // Tic-tac-toe: cells 0..9, the mask marks the empty ones. Macro 0 plays the
        // centre twice; macro 1 starts in a corner.
        let inner = TicTacToe::new(TicTacToeConfig::default()).unwrap();
        let mut env = MacroActions::new(inner, vec![vec![4, 4], vec![0, 8]], 1.0).unwrap();
        assert_eq!(env.action_mask_len(), 11);
        let (_, info) = env.reset(Some(5)).unwrap();
        assert_eq!(info.action_mask, Some(vec![true; 11]));

        // After the centre is taken its second step is illegal: the macro stops after one.
        let t = env.step(Action::Discrete(9)).unwrap();
        assert_eq!(t.info.get("macro_steps"), Some(1.0));
        assert_eq!((t.reward, t.terminated, t.truncated), (0.0, false, false));
        let mask = t.info.action_mask.unwrap();
        assert!(!mask[4] && !mask[9], "{mask:?}");
        assert_eq!(mask[10], mask[0]);
        // One move each: 7 empty cells.
        assert_eq!(mask[..9].iter().filter(|&&m| m).count(), 7);

        // A macro marked illegal still sends its first action to the inner env, which
        // treats it as any illegal move (the default: lose).
        let t = env.step(Action::Discrete(9)).unwrap();
        assert_eq!((t.reward, t.terminated), (-1.0, true));
        assert_eq!(t.info.get("macro_steps"), Some(1.0));
    }

    #[test]
    fn bad_definitions_are_errors() {
        let message = |r: Result<MacroActions<CountEnv>>| match r {
            Err(EnvError::BadParam { param, message, .. }) => format!("{param}: {message}"),
            other => panic!("expected BadParam, got {other:?}"),
        };
        assert_eq!(
            message(MacroActions::new(
                CountEnv::new(5),
                vec![vec![0], vec![1], vec![]],
                0.9
            )),
            "macros: macro 2 is empty"
        );
        assert_eq!(
            message(MacroActions::new(
                CountEnv::new(5),
                vec![vec![0], vec![1, 2, 0, 7]],
                0.9
            )),
            "macros: macro 1 step 3: action 7 is not in the inner action space Discrete(3)"
        );
        assert_eq!(
            message(MacroActions::new(
                CountEnv::new(5),
                repeat_macros(3, 0),
                0.9
            )),
            "macros: macro 0 is empty"
        );
        for gamma in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let m = message(MacroActions::new(CountEnv::new(5), vec![vec![0]], gamma));
            assert!(
                m.starts_with("gamma: expected a discount factor in [0, 1]"),
                "{m}"
            );
        }
        assert!(check_macros(3, &repeat_macros(3, 2)).is_ok());
        assert!(check_macros(3, &[]).is_ok());
        assert!(matches!(
            check_macros(2, &repeat_macros(3, 1)),
            Err(EnvError::BadParam { .. })
        ));

        let err = MacroActions::new(Pendulum::new(10.0), vec![vec![0]], 0.9).unwrap_err();
        assert!(matches!(err, EnvError::Invalid(_)), "{err}");
        assert!(
            err.to_string().contains("Discrete inner action space"),
            "{err}"
        );
    }

    #[test]
    fn actions_outside_the_augmented_space_are_errors_that_change_nothing() {
        let mut env = count_env(10);
        env.reset(Some(1)).unwrap();
        for bad in [Action::Discrete(5), Action::Continuous(&[0.0])] {
            assert!(matches!(env.step(bad), Err(EnvError::InvalidAction { .. })));
        }
        let t = env.step(Action::Discrete(4)).unwrap();
        assert_eq!(t.info.extras, [("t", 4.0), ("macro_steps", 4.0)]);
    }

    #[test]
    fn wrong_buffers_are_errors_not_panics() {
        let mut env = count_env(10);
        let mut obs = [0.0f32; 2];
        let mut short = [0.0f64; 1];
        let err = env.reset_into(
            Some(0),
            Out {
                obs: ObsMut::F32(&mut obs),
                action_mask: &mut [],
                extras: &mut short,
            },
        );
        assert!(matches!(err, Err(EnvError::Buffer(_))));
        let mut extras = [0.0f64; 2];
        let mut mask = [true; 3];
        let err = env.step_into(
            Action::Discrete(3),
            Out {
                obs: ObsMut::F32(&mut obs),
                action_mask: &mut mask,
                extras: &mut extras,
            },
        );
        assert!(matches!(err, Err(EnvError::Buffer(_))));
    }
}
