//! Typed environment parameters: what each environment accepts, and the values given.
//!
//! Every registered environment declares its parameters as [`ParamSpec`]s (name, kind,
//! default, one line of documentation). Values arrive as text (`--param size=10`, from
//! the command line) or as TOML values (from a config's `[env]` section); both are
//! checked against the declared kind before the environment is built, and a bad key or
//! value gives an error that says what is allowed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{EnvError, Result};

/// A parameter value, as given by a user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// Text (also the form of every command-line value before it is checked).
    Str(String),
    /// A list, e.g. a grid cell `[3, 4]` or arm means `[0.1, 0.9]`.
    List(Vec<ParamValue>),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => write!(f, "{s}"),
            ParamValue::List(v) => {
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x}")?;
                }
                Ok(())
            }
        }
    }
}

/// The kind of a parameter, with its allowed range.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamKind {
    /// `true` or `false`.
    Bool,
    /// An integer in `[min, max]`.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A finite real in `[min, max]`.
    Float {
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// Free text (e.g. an ASCII map or a file path).
    Text,
    /// A grid cell `x,y` (non-negative integers).
    Cell,
    /// A comma-separated list of finite reals.
    Floats,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKind::Bool => f.write_str("bool"),
            ParamKind::Int { min, max } => write!(f, "int in [{min}, {max}]"),
            ParamKind::Float { min, max } => write!(f, "float in [{min}, {max}]"),
            ParamKind::Choice(c) => write!(f, "one of {}", c.join("|")),
            ParamKind::Text => f.write_str("text"),
            ParamKind::Cell => f.write_str("cell x,y"),
            ParamKind::Floats => f.write_str("list of floats"),
        }
    }
}

/// One parameter an environment accepts.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Its name (`size`, `goal`, ...).
    pub name: &'static str,
    /// Its kind and allowed range.
    pub kind: ParamKind,
    /// Its default, written as a user would write it; `None`: optional, no default.
    pub default: Option<Cow<'static, str>>,
    /// One line saying what it does.
    pub doc: &'static str,
}

impl ParamSpec {
    /// A parameter with a default.
    pub const fn new(
        name: &'static str,
        kind: ParamKind,
        default: &'static str,
        doc: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            kind,
            default: Some(Cow::Borrowed(default)),
            doc,
        }
    }

    /// An optional parameter without a default.
    pub const fn optional(name: &'static str, kind: ParamKind, doc: &'static str) -> Self {
        ParamSpec {
            name,
            kind,
            default: None,
            doc,
        }
    }

    /// Check `value` against the kind and bring it to its canonical form
    /// (`Int`, `Float`, `Bool`, `Str`, or `List` of `Int`/`Float`).
    pub fn check(&self, env: &str, value: &ParamValue) -> Result<ParamValue> {
        let bad = |msg: String| EnvError::bad_param(env, self.name, msg);
        let expected = || format!("expected {}, got `{value}`", self.kind);
        match &self.kind {
            ParamKind::Bool => match value {
                ParamValue::Bool(b) => Ok(ParamValue::Bool(*b)),
                ParamValue::Str(s) if matches!(s.as_str(), "true" | "1" | "yes") => {
                    Ok(ParamValue::Bool(true))
                }
                ParamValue::Str(s) if matches!(s.as_str(), "false" | "0" | "no") => {
                    Ok(ParamValue::Bool(false))
                }
                _ => Err(bad(expected())),
            },
            ParamKind::Int { min, max } => {
                let v = match value {
                    ParamValue::Int(i) => *i,
                    ParamValue::Str(s) => s.trim().parse::<i64>().map_err(|_| bad(expected()))?,
                    _ => return Err(bad(expected())),
                };
                if v < *min || v > *max {
                    return Err(bad(expected()));
                }
                Ok(ParamValue::Int(v))
            }
            ParamKind::Float { min, max } => {
                let v = as_float(value).ok_or_else(|| bad(expected()))?;
                if !v.is_finite() || v < *min || v > *max {
                    return Err(bad(expected()));
                }
                Ok(ParamValue::Float(v))
            }
            ParamKind::Choice(choices) => match value {
                ParamValue::Str(s) if choices.contains(&s.as_str()) => {
                    Ok(ParamValue::Str(s.clone()))
                }
                _ => Err(bad(expected())),
            },
            ParamKind::Text => match value {
                ParamValue::Str(s) => Ok(ParamValue::Str(s.clone())),
                _ => Err(bad(expected())),
            },
            ParamKind::Cell => {
                let items = list_items(value);
                let cell: Option<Vec<i64>> = items.iter().map(as_int).collect();
                match cell.as_deref() {
                    Some([x, y]) if *x >= 0 && *y >= 0 => Ok(ParamValue::List(vec![
                        ParamValue::Int(*x),
                        ParamValue::Int(*y),
                    ])),
                    _ => Err(bad(expected())),
                }
            }
            ParamKind::Floats => {
                let items = list_items(value);
                let v: Option<Vec<f64>> = items.iter().map(as_float).collect();
                match v {
                    Some(v) if !v.is_empty() && v.iter().all(|x| x.is_finite()) => Ok(
                        ParamValue::List(v.into_iter().map(ParamValue::Float).collect()),
                    ),
                    _ => Err(bad(expected())),
                }
            }
        }
    }
}

fn as_float(v: &ParamValue) -> Option<f64> {
    match v {
        ParamValue::Float(x) => Some(*x),
        ParamValue::Int(i) => Some(*i as f64),
        ParamValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_int(v: &ParamValue) -> Option<i64> {
    match v {
        ParamValue::Int(i) => Some(*i),
        ParamValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn list_items(v: &ParamValue) -> Vec<ParamValue> {
    match v {
        ParamValue::List(items) => items.clone(),
        ParamValue::Str(s) => s
            .trim_matches(|c| c == '(' || c == ')' || c == '[' || c == ']')
            .split(',')
            .map(|x| ParamValue::Str(x.trim().to_string()))
            .collect(),
        other => vec![other.clone()],
    }
}

/// Parameter values given by a user, by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(pub BTreeMap<String, ParamValue>);

impl Params {
    /// No parameters (every default).
    pub fn new() -> Self {
        Params::default()
    }

    /// Add or replace a value (builder style).
    pub fn with(mut self, name: &str, value: impl Into<ParamValue>) -> Self {
        self.0.insert(name.to_string(), value.into());
        self
    }

    /// Parse `key=value` assignments (values stay text until checked against a spec).
    pub fn parse_assignments<S: AsRef<str>>(items: &[S]) -> Result<Self> {
        let mut p = Params::new();
        for item in items {
            let item = item.as_ref();
            let (k, v) = item.split_once('=').ok_or_else(|| {
                EnvError::Invalid(format!("parameter `{item}` is not of the form key=value"))
            })?;
            p.0.insert(k.trim().to_string(), ParamValue::Str(v.trim().to_string()));
        }
        Ok(p)
    }
}

impl From<bool> for ParamValue {
    fn from(v: bool) -> Self {
        ParamValue::Bool(v)
    }
}
impl From<i64> for ParamValue {
    fn from(v: i64) -> Self {
        ParamValue::Int(v)
    }
}
impl From<i32> for ParamValue {
    fn from(v: i32) -> Self {
        ParamValue::Int(v as i64)
    }
}
impl From<usize> for ParamValue {
    fn from(v: usize) -> Self {
        ParamValue::Int(v as i64)
    }
}
impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Float(v)
    }
}
impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Str(v.to_string())
    }
}
impl From<String> for ParamValue {
    fn from(v: String) -> Self {
        ParamValue::Str(v)
    }
}
impl From<(usize, usize)> for ParamValue {
    fn from((x, y): (usize, usize)) -> Self {
        ParamValue::List(vec![ParamValue::Int(x as i64), ParamValue::Int(y as i64)])
    }
}
impl From<Vec<f64>> for ParamValue {
    fn from(v: Vec<f64>) -> Self {
        ParamValue::List(v.into_iter().map(ParamValue::Float).collect())
    }
}

/// Checked values for every declared parameter: what an environment's constructor reads.
///
/// Getters return an error (never panic) when asked for an undeclared name or a kind
/// the parameter does not have, so a constructor bug surfaces as a message.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedParams {
    env: String,
    values: BTreeMap<&'static str, Option<ParamValue>>,
}

impl ResolvedParams {
    /// Check `given` against `specs`: unknown names are errors that list the valid
    /// ones, values are checked against their kinds, and defaults fill the rest.
    pub fn resolve(env: &str, specs: &[ParamSpec], given: &Params) -> Result<Self> {
        for name in given.0.keys() {
            if !specs.iter().any(|s| s.name == name) {
                let valid: Vec<&str> = specs.iter().map(|s| s.name).collect();
                let valid = if valid.is_empty() {
                    "none".to_string()
                } else {
                    valid.join(", ")
                };
                return Err(EnvError::bad_param(
                    env,
                    name,
                    format!("unknown parameter; valid parameters: {valid}"),
                ));
            }
        }
        let mut values = BTreeMap::new();
        for spec in specs {
            let v = match (given.0.get(spec.name), &spec.default) {
                (Some(v), _) => Some(spec.check(env, v)?),
                (None, Some(d)) => Some(spec.check(env, &ParamValue::Str(d.to_string()))?),
                (None, None) => None,
            };
            values.insert(spec.name, v);
        }
        Ok(ResolvedParams {
            env: env.to_string(),
            values,
        })
    }

    fn get(&self, name: &str) -> Result<Option<&ParamValue>> {
        self.values
            .get(name)
            .map(|v| v.as_ref())
            .ok_or_else(|| EnvError::bad_param(&self.env, name, "not a declared parameter"))
    }

    fn required(&self, name: &str) -> Result<&ParamValue> {
        self.get(name)?
            .ok_or_else(|| EnvError::bad_param(&self.env, name, "required but not given"))
    }

    fn wrong(&self, name: &str, want: &str) -> EnvError {
        EnvError::bad_param(&self.env, name, format!("is not {want}"))
    }

    /// The environment's name (for error messages).
    pub fn env(&self) -> &str {
        &self.env
    }

    /// Whether an optional parameter was given.
    pub fn is_set(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Some(_)))
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Result<i64> {
        match self.required(name)? {
            ParamValue::Int(i) => Ok(*i),
            _ => Err(self.wrong(name, "an integer")),
        }
    }

    /// A non-negative integer parameter as `usize`.
    pub fn usize(&self, name: &str) -> Result<usize> {
        usize::try_from(self.int(name)?).map_err(|_| self.wrong(name, "a non-negative integer"))
    }

    /// A real parameter.
    pub fn float(&self, name: &str) -> Result<f64> {
        match self.required(name)? {
            ParamValue::Float(x) => Ok(*x),
            ParamValue::Int(i) => Ok(*i as f64),
            _ => Err(self.wrong(name, "a number")),
        }
    }

    /// A boolean parameter.
    pub fn bool(&self, name: &str) -> Result<bool> {
        match self.required(name)? {
            ParamValue::Bool(b) => Ok(*b),
            _ => Err(self.wrong(name, "a bool")),
        }
    }

    /// A text or choice parameter.
    pub fn str(&self, name: &str) -> Result<&str> {
        match self.required(name)? {
            ParamValue::Str(s) => Ok(s),
            _ => Err(self.wrong(name, "text")),
        }
    }

    /// An optional text parameter.
    pub fn opt_str(&self, name: &str) -> Result<Option<&str>> {
        match self.get(name)? {
            None => Ok(None),
            Some(ParamValue::Str(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(name, "text")),
        }
    }

    /// An optional grid cell `(x, y)`.
    pub fn cell(&self, name: &str) -> Result<Option<(usize, usize)>> {
        match self.get(name)? {
            None => Ok(None),
            Some(ParamValue::List(v)) => match v.as_slice() {
                [ParamValue::Int(x), ParamValue::Int(y)] => Ok(Some((*x as usize, *y as usize))),
                _ => Err(self.wrong(name, "a cell")),
            },
            Some(_) => Err(self.wrong(name, "a cell")),
        }
    }

    /// An optional list of reals.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f64>>> {
        match self.get(name)? {
            None => Ok(None),
            Some(ParamValue::List(v)) => v
                .iter()
                .map(|x| match x {
                    ParamValue::Float(f) => Ok(*f),
                    ParamValue::Int(i) => Ok(*i as f64),
                    _ => Err(self.wrong(name, "a list of numbers")),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(self.wrong(name, "a list of numbers")),
        }
    }

    /// An error about parameter `name` of this environment (for constructors' own checks).
    pub fn error(&self, name: &str, message: impl Into<String>) -> EnvError {
        EnvError::bad_param(&self.env, name, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("size", ParamKind::Int { min: 2, max: 100 }, "10", "side"),
            ParamSpec::optional("goal", ParamKind::Cell, "goal cell"),
            ParamSpec::new("mode", ParamKind::Choice(&["a", "b"]), "a", "mode"),
            ParamSpec::new("p", ParamKind::Float { min: 0.0, max: 1.0 }, "0.5", "prob"),
            ParamSpec::optional("means", ParamKind::Floats, "means"),
        ]
    }

    #[test]
    fn defaults_text_and_toml_values() {
        let r = ResolvedParams::resolve("x", &specs(), &Params::new()).unwrap();
        assert_eq!(r.usize("size").unwrap(), 10);
        assert_eq!(r.cell("goal").unwrap(), None);
        assert_eq!(r.float("p").unwrap(), 0.5);
        let given = Params::parse_assignments(&["size=12", "goal=3,4", "mode=b", "means=0.1, 0.9"])
            .unwrap();
        let r = ResolvedParams::resolve("x", &specs(), &given).unwrap();
        assert_eq!(r.usize("size").unwrap(), 12);
        assert_eq!(r.cell("goal").unwrap(), Some((3, 4)));
        assert_eq!(r.str("mode").unwrap(), "b");
        assert_eq!(r.floats("means").unwrap(), Some(vec![0.1, 0.9]));
        let given = Params::new().with("goal", (1, 2)).with("p", 1i64);
        let r = ResolvedParams::resolve("x", &specs(), &given).unwrap();
        assert_eq!(r.cell("goal").unwrap(), Some((1, 2)));
        assert_eq!(r.float("p").unwrap(), 1.0);
    }

    #[test]
    fn errors_name_the_parameter_and_what_is_allowed() {
        let e =
            ResolvedParams::resolve("x", &specs(), &Params::new().with("siz", 3i64)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("siz") && msg.contains("size, goal, mode, p, means"),
            "{msg}"
        );
        let e =
            ResolvedParams::resolve("x", &specs(), &Params::new().with("size", 1i64)).unwrap_err();
        assert!(e.to_string().contains("int in [2, 100]"), "{e}");
        let e =
            ResolvedParams::resolve("x", &specs(), &Params::new().with("mode", "c")).unwrap_err();
        assert!(e.to_string().contains("a|b"), "{e}");
        let e =
            ResolvedParams::resolve("x", &specs(), &Params::new().with("goal", "3")).unwrap_err();
        assert!(e.to_string().contains("goal"), "{e}");
        let e =
            ResolvedParams::resolve("x", &specs(), &Params::new().with("p", "nan")).unwrap_err();
        assert!(e.to_string().contains("float in"), "{e}");
        assert!(Params::parse_assignments(&["oops"]).is_err());
    }
}
