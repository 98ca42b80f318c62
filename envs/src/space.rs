//! Observation and action spaces: Discrete, MultiDiscrete and Box.

use std::fmt;

use rand::RngExt;
use rand_distr::{Distribution, Exp1, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::error::{EnvError, Result};
use crate::rng::EnvRng;

/// Element type of a Box space, and so of an observation buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit floats (vectors, grid positions, boards).
    F32,
    /// Bytes (image frames).
    U8,
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::U8 => "u8",
        })
    }
}

/// A box in ℝⁿ (or {0..255}ⁿ for `U8`): per-element bounds and a shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxSpace {
    /// Lower bounds, one per element (may be `-inf`).
    pub low: Vec<f32>,
    /// Upper bounds, one per element (may be `inf`).
    pub high: Vec<f32>,
    /// Shape; the product of the dimensions equals `low.len()`.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Dtype,
}

impl BoxSpace {
    /// A box with per-element bounds and a one-dimensional shape.
    ///
    /// # Panics
    /// If `low` and `high` differ in length (a programming error, not user input).
    pub fn new(low: Vec<f32>, high: Vec<f32>) -> Self {
        assert_eq!(low.len(), high.len(), "BoxSpace bounds differ in length");
        let n = low.len();
        BoxSpace {
            low,
            high,
            shape: vec![n],
            dtype: Dtype::F32,
        }
    }

    /// A box with the same bounds for every element and any shape.
    pub fn uniform(low: f32, high: f32, shape: &[usize], dtype: Dtype) -> Self {
        let n = shape.iter().product();
        BoxSpace {
            low: vec![low; n],
            high: vec![high; n],
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.low.len()
    }

    /// Whether the box has no elements.
    pub fn is_empty(&self) -> bool {
        self.low.is_empty()
    }

    /// Whether `x` lies inside the bounds (NaN never does).
    pub fn contains(&self, x: &[f32]) -> bool {
        x.len() == self.len()
            && x.iter()
                .zip(self.low.iter().zip(&self.high))
                .all(|(v, (lo, hi))| *v >= *lo && *v <= *hi)
    }
}

/// A space of observations or actions, as Gymnasium defines them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Space {
    /// `{0, 1, ..., n-1}`.
    Discrete(usize),
    /// A vector of independent discrete choices, the `i`-th in `{0..nvec[i]-1}`.
    MultiDiscrete(Vec<usize>),
    /// A box of reals or bytes.
    Box(BoxSpace),
}

/// An action handed to [`crate::Env::step_into`], borrowed so that stepping does not allocate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action<'a> {
    /// An element of a `Discrete` space.
    Discrete(usize),
    /// An element of a `MultiDiscrete` space.
    MultiDiscrete(&'a [usize]),
    /// An element of a `Box` space.
    Continuous(&'a [f32]),
}

/// An owned action, e.g. from [`Space::sample`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OwnedAction {
    /// An element of a `Discrete` space.
    Discrete(usize),
    /// An element of a `MultiDiscrete` space.
    MultiDiscrete(Vec<usize>),
    /// An element of a `Box` space.
    Continuous(Vec<f32>),
}

impl OwnedAction {
    /// Borrow as an [`Action`].
    pub fn as_action(&self) -> Action<'_> {
        match self {
            OwnedAction::Discrete(a) => Action::Discrete(*a),
            OwnedAction::MultiDiscrete(v) => Action::MultiDiscrete(v),
            OwnedAction::Continuous(v) => Action::Continuous(v),
        }
    }
}

impl Action<'_> {
    /// An owned copy (to keep past the borrow it came from).
    pub fn into_owned(self) -> OwnedAction {
        match self {
            Action::Discrete(a) => OwnedAction::Discrete(a),
            Action::MultiDiscrete(v) => OwnedAction::MultiDiscrete(v.to_vec()),
            Action::Continuous(v) => OwnedAction::Continuous(v.to_vec()),
        }
    }
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Discrete(a) => write!(f, "Discrete({a})"),
            Action::MultiDiscrete(v) => write!(f, "MultiDiscrete({v:?})"),
            Action::Continuous(v) => write!(f, "Continuous({v:?})"),
        }
    }
}

impl Space {
    /// Number of scalars an element of this space occupies in a flat buffer
    /// (1 for `Discrete`, the length of `nvec` for `MultiDiscrete`, the element count for `Box`).
    pub fn flat_dim(&self) -> usize {
        match self {
            Space::Discrete(_) => 1,
            Space::MultiDiscrete(v) => v.len(),
            Space::Box(b) => b.len(),
        }
    }

    /// Shape of an element (`[]` for `Discrete`).
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Space::Discrete(_) => vec![],
            Space::MultiDiscrete(v) => vec![v.len()],
            Space::Box(b) => b.shape.clone(),
        }
    }

    /// The element type of observations from this space (`U8` only for byte boxes).
    pub fn dtype(&self) -> Dtype {
        match self {
            Space::Box(b) => b.dtype,
            _ => Dtype::F32,
        }
    }

    /// The number of discrete actions (`Some(n)` for `Discrete(n)`).
    pub fn n(&self) -> Option<usize> {
        match self {
            Space::Discrete(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether `action` is an element of this space.
    pub fn contains(&self, action: &Action<'_>) -> bool {
        match (self, action) {
            (Space::Discrete(n), Action::Discrete(a)) => a < n,
            (Space::MultiDiscrete(nvec), Action::MultiDiscrete(v)) => {
                v.len() == nvec.len() && v.iter().zip(nvec).all(|(a, n)| a < n)
            }
            (Space::Box(b), Action::Continuous(v)) => b.contains(v),
            _ => false,
        }
    }

    /// `Ok` if `action` is in the space, else [`EnvError::InvalidAction`] naming both.
    #[inline]
    pub fn check(&self, action: &Action<'_>) -> Result<()> {
        if self.contains(action) {
            Ok(())
        } else {
            Err(EnvError::InvalidAction {
                action: action.to_string(),
                space: self.to_string(),
            })
        }
    }

    /// The index of a discrete action, after checking it is in this `Discrete` space.
    #[inline]
    pub fn discrete_index(&self, action: &Action<'_>) -> Result<usize> {
        match (self, action) {
            (Space::Discrete(n), Action::Discrete(a)) if a < n => Ok(*a),
            _ => Err(EnvError::InvalidAction {
                action: action.to_string(),
                space: self.to_string(),
            }),
        }
    }

    /// The values of a continuous action, after checking it is in this `Box` space.
    #[inline]
    pub fn continuous_values<'a>(&self, action: &Action<'a>) -> Result<&'a [f32]> {
        match (self, action) {
            (Space::Box(b), Action::Continuous(v)) if b.contains(v) => Ok(v),
            _ => Err(EnvError::InvalidAction {
                action: action.to_string(),
                space: self.to_string(),
            }),
        }
    }

    /// A uniformly sampled element (Box: uniform on bounded dimensions, a normal on
    /// unbounded ones and a shifted exponential on half-bounded ones, as Gymnasium does).
    pub fn sample(&self, rng: &mut EnvRng) -> OwnedAction {
        match self {
            Space::Discrete(n) => OwnedAction::Discrete(rng.random_range(0..(*n).max(1))),
            Space::MultiDiscrete(nvec) => OwnedAction::MultiDiscrete(
                nvec.iter()
                    .map(|n| rng.random_range(0..(*n).max(1)))
                    .collect(),
            ),
            Space::Box(b) => {
                let mut out = vec![0.0; b.len()];
                sample_box(b, rng, &mut out);
                OwnedAction::Continuous(out)
            }
        }
    }
}

/// Fill `out` with a sample from `b` (see [`Space::sample`]).
pub fn sample_box(b: &BoxSpace, rng: &mut EnvRng, out: &mut [f32]) {
    for (o, (lo, hi)) in out.iter_mut().zip(b.low.iter().zip(&b.high)) {
        let (lo, hi) = (*lo as f64, *hi as f64);
        let v = match (lo.is_finite(), hi.is_finite()) {
            (true, true) => lo + (hi - lo) * rng.random::<f64>(),
            (false, false) => StandardNormal.sample(rng),
            (true, false) => lo + Distribution::<f64>::sample(&Exp1, rng),
            (false, true) => hi - Distribution::<f64>::sample(&Exp1, rng),
        };
        let v = v as f32;
        *o = match b.dtype {
            Dtype::F32 => v.clamp(lo as f32, hi as f32),
            Dtype::U8 => v.floor().clamp(0.0, 255.0),
        };
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Space::Discrete(n) => write!(f, "Discrete({n})"),
            Space::MultiDiscrete(v) => write!(f, "MultiDiscrete({v:?})"),
            Space::Box(b) => {
                let same = |v: &[f32]| {
                    v.windows(2)
                        .all(|w| w[0] == w[1] || (w[0].is_nan() && w[1].is_nan()))
                };
                if !b.is_empty() && same(&b.low) && same(&b.high) {
                    write!(
                        f,
                        "Box({}, {}, {:?}, {})",
                        b.low[0], b.high[0], b.shape, b.dtype
                    )
                } else {
                    write!(
                        f,
                        "Box({:?}, {:?}, {:?}, {})",
                        b.low, b.high, b.shape, b.dtype
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_from_seed;

    #[test]
    fn contains_and_check() {
        let d = Space::Discrete(3);
        assert!(d.contains(&Action::Discrete(2)));
        assert!(!d.contains(&Action::Discrete(3)));
        assert!(d.check(&Action::Continuous(&[0.0])).is_err());
        let b = Space::Box(BoxSpace::new(vec![-2.0], vec![2.0]));
        assert!(b.check(&Action::Continuous(&[1.5])).is_ok());
        let err = b.check(&Action::Continuous(&[2.5])).unwrap_err();
        assert!(err.to_string().contains("2.5"), "{err}");
        assert!(b.check(&Action::Continuous(&[f32::NAN])).is_err());
        assert!(b.check(&Action::Continuous(&[0.0, 0.0])).is_err());
        let m = Space::MultiDiscrete(vec![2, 3]);
        assert!(m.contains(&Action::MultiDiscrete(&[1, 2])));
        assert!(!m.contains(&Action::MultiDiscrete(&[2, 0])));
    }

    #[test]
    fn samples_are_members_and_seeded() {
        let spaces = [
            Space::Discrete(5),
            Space::MultiDiscrete(vec![2, 7, 1]),
            Space::Box(BoxSpace::new(
                vec![-1.0, f32::NEG_INFINITY, 0.0, -3.0],
                vec![1.0, f32::INFINITY, f32::INFINITY, 4.0],
            )),
            Space::Box(BoxSpace::uniform(0.0, 255.0, &[2, 3], Dtype::U8)),
        ];
        for s in &spaces {
            let mut r1 = rng_from_seed(3);
            let mut r2 = rng_from_seed(3);
            for _ in 0..200 {
                let a = s.sample(&mut r1);
                assert!(s.contains(&a.as_action()), "{s}: {a:?}");
                assert_eq!(a, s.sample(&mut r2));
            }
        }
    }
}
