//! Learning-curve plots of one or more run directories.
//!
//! A run directory holds `metrics.csv` (a wide CSV whose header names the columns,
//! `env_steps` first) and `config.toml` (the resolved configuration). [`plot_runs`]
//! draws one metric against `env_steps` for a set of runs, as PNG or SVG:
//!
//! * Runs whose `config.toml` are equal once `run.seed` is removed form a *group*
//!   (the seeds of one experiment). A run without `config.toml` is a group of its own.
//! * A group of one run is drawn as a line labelled with the run directory's name.
//! * A group of several runs is drawn as the mean over its runs with a shaded band of
//!   ±1 standard deviation (population standard deviation, i.e. divided by `n`),
//!   labelled `"<first directory name> (<n> seeds)"`. To average runs whose rows fall
//!   on different steps, every run is linearly interpolated onto a common grid: the
//!   union of all the group's `env_steps` values that lie inside the range every run
//!   covers (from the largest first step to the smallest last step), so the curve
//!   stops where the shortest run stops and runs logged at the same steps are
//!   averaged exactly, without interpolation. If the runs' ranges do not overlap at
//!   all, the grid is the whole union and each point averages the runs covering it.
//! * With [`PlotOptions::smooth`] `= w > 1`, each run's values are first replaced by a
//!   trailing moving average over the last `w` points (fewer at the start), see
//!   [`moving_average`]; smoothing happens per run, before grouping.
//!
//! In `metrics.csv` an empty field or a `NaN` (or infinite) value is *missing*: rows
//! whose `env_steps` or metric is missing are skipped. A field that is not a number,
//! or a row whose field count differs from the header, is a [`PlotError::Csv`] naming
//! the line; only a short final line without a line end (a write cut off while the run
//! was still going) is ignored instead.
//!
//! Text is drawn with DejaVu Sans, compiled in (from the `dejavu` crate) and registered
//! with plotters as `sans-serif`, so plots render the same on machines without system
//! fonts or fontconfig.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Width and height of PNG plots, in pixels (SVG plots use the same size in user units).
pub const PLOT_SIZE: (u32, u32) = (1024, 640);

/// The font family name under which the bundled font is registered.
pub(crate) const FONT: &str = "sans-serif";

/// What to plot and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlotOptions {
    /// The `metrics.csv` column to plot on the y axis (default `episode_return_mean`).
    pub metric: String,
    /// The output file; its extension (`.png` or `.svg`, any case) picks the format.
    pub out: PathBuf,
    /// Trailing moving-average window in rows (per run, over its non-missing values);
    /// 1 (or 0) means no smoothing.
    pub smooth: usize,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            metric: "episode_return_mean".to_string(),
            out: PathBuf::from("plot.png"),
            smooth: 1,
        }
    }
}

/// One line of a finished plot.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSummary {
    /// The legend label.
    pub label: String,
    /// How many runs the line stands for (1 for a single run, else the seeds averaged).
    pub runs: usize,
    /// How many points the line has (for a group: the points of the common grid).
    pub points: usize,
    /// The line's last y value (after smoothing; for a group, the last mean).
    pub last: f64,
}

/// What [`plot_runs`] drew.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotReport {
    /// The file written.
    pub out: PathBuf,
    /// One entry per line drawn, in legend order (the order of the groups' first runs).
    pub series: Vec<SeriesSummary>,
}

/// Why a plot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No run directory was given.
    #[error("no run directories given: nothing to plot")]
    NoRuns,
    /// A file could not be read (or a directory listed).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `metrics.csv` is malformed at `line` (1-based, counting the header as line 1).
    #[error("{}:{line}: bad CSV: {message}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong there.
        message: String,
    },
    /// `config.toml` is not valid TOML.
    #[error("{}: bad TOML: {message}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The CSV has no column of that name.
    #[error(
        "{}: no column `{metric}`; available columns: {}",
        path.display(),
        available.join(", ")
    )]
    MissingMetric {
        /// The CSV file.
        path: PathBuf,
        /// The column asked for.
        metric: String,
        /// The columns the header does have, in order.
        available: Vec<String>,
    },
    /// The column exists but no row has a finite value for it (and for `env_steps`).
    #[error("{}: column `{metric}` has no finite values to plot", path.display())]
    NoData {
        /// The CSV file.
        path: PathBuf,
        /// The column.
        metric: String,
    },
    /// The output file's extension is neither `.png` nor `.svg`.
    #[error("{}: unknown plot format (the file name must end in .png or .svg)", path.display())]
    UnknownFormat {
        /// The output path.
        path: PathBuf,
    },
    /// Drawing or writing the plot failed.
    #[error("drawing the plot failed: {0}")]
    Draw(String),
}

/// The column holding the x axis.
const STEPS: &str = "env_steps";

/// Read one metric of a run: `(env_steps, value)` pairs from `run/metrics.csv`, in file
/// order, skipping rows where either is missing (empty, `NaN` or infinite).
///
/// Errors: [`PlotError::Io`] if the file cannot be read, [`PlotError::Csv`] for a
/// malformed file (no header, ragged row, a field that is not a number),
/// [`PlotError::MissingMetric`] if `metric` (or `env_steps`) is not a column, and
/// [`PlotError::NoData`] if no row has both values.
pub fn read_metric(run: &Path, metric: &str) -> Result<Vec<(f64, f64)>, PlotError> {
    let path = run.join("metrics.csv");
    let bytes = std::fs::read(&path).map_err(|source| PlotError::Io {
        path: path.clone(),
        source,
    })?;
    let csv_err = |line: usize, message: String| PlotError::Csv {
        path: path.clone(),
        line,
        message,
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
            return Err(csv_err(line, "not valid UTF-8".to_string()));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ends_with_newline = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();

    // The header is the first non-blank line.
    let Some((header_at, header_line)) =
        lines.iter().enumerate().find(|(_, l)| !l.trim().is_empty())
    else {
        return Err(csv_err(1, "empty file: no header row".to_string()));
    };
    let header = split_fields(header_line).map_err(|m| csv_err(header_at + 1, m))?;
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| PlotError::MissingMetric {
                path: path.clone(),
                metric: name.to_string(),
                available: header.clone(),
            })
    };
    let xi = column(STEPS)?;
    let yi = column(metric)?;

    let mut points = Vec::new();
    for (at, line) in lines.iter().enumerate().skip(header_at + 1) {
        let number = at + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields = match split_fields(line) {
            Ok(fields) => fields,
            // A final line cut off mid-write (e.g. inside a quoted field).
            Err(_) if at + 1 == lines.len() && !ends_with_newline => continue,
            Err(m) => return Err(csv_err(number, m)),
        };
        if fields.len() != header.len() {
            if at + 1 == lines.len() && !ends_with_newline && fields.len() < header.len() {
                continue; // the run is still writing this row (or died while writing it)
            }
            return Err(csv_err(
                number,
                format!(
                    "row has {} fields but the header has {}",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        let x = parse_value(&fields[xi]).map_err(|m| csv_err(number, format!("{STEPS}: {m}")))?;
        let y = parse_value(&fields[yi]).map_err(|m| csv_err(number, format!("{metric}: {m}")))?;
        if let (Some(x), Some(y)) = (x, y) {
            points.push((x, y));
        }
    }
    if points.is_empty() {
        return Err(PlotError::NoData {
            path,
            metric: metric.to_string(),
        });
    }
    Ok(points)
}

/// Split one CSV line into trimmed fields. Fields may be double-quoted (a doubled
/// quote inside stands for one quote); an unterminated quote is an error.
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && field.trim().is_empty() && !was_quoted {
            field.clear();
            quoted = true;
            was_quoted = true;
        } else if c == ',' {
            fields.push(finish_field(&mut field, was_quoted));
            was_quoted = false;
        } else {
            field.push(c);
        }
    }
    if quoted {
        return Err("unterminated quoted field".to_string());
    }
    fields.push(finish_field(&mut field, was_quoted));
    Ok(fields)
}

fn finish_field(field: &mut String, was_quoted: bool) -> String {
    let done = std::mem::take(field);
    if was_quoted {
        done
    } else {
        done.trim().to_string()
    }
}

/// A field's value: `Ok(None)` if missing (empty, NaN or infinite), an error message if
/// it is not a number.
fn parse_value(field: &str) -> Result<Option<f64>, String> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(None);
    }
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Ok(None),
        Err(_) => Err(format!("`{field}` is not a number")),
    }
}

/// Trailing moving average: element `i` of the result is the mean of
/// `values[i + 1 - k ..= i]` with `k = min(window, i + 1)`, so the first elements
/// average the fewer values available. A window of 0 or 1 returns the values unchanged.
pub fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(values.len());
    let mut sum = 0.0;
    for (i, &v) in values.iter().enumerate() {
        sum += v;
        if i >= window {
            sum -= values[i - window];
        }
        let k = (i + 1).min(window);
        out.push(if window == 1 { v } else { sum / k as f64 });
    }
    out
}

/// The value of the piecewise-linear curve through `points` (sorted by x) at `x`, or
/// `None` outside the curve's x range.
fn interpolate(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    if x < first.0 || x > last.0 {
        return None;
    }
    let i = points.partition_point(|p| p.0 < x);
    let (x1, y1) = points[i];
    if x1 == x || i == 0 {
        return Some(y1);
    }
    let (x0, y0) = points[i - 1];
    Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
}

/// One group's curve on the common grid: `(x, mean, std)` per grid point.
fn aggregate(runs: &[Vec<(f64, f64)>]) -> Vec<(f64, f64, f64)> {
    let lo = runs
        .iter()
        .map(|r| r[0].0)
        .fold(f64::NEG_INFINITY, f64::max);
    let hi = runs
        .iter()
        .map(|r| r[r.len() - 1].0)
        .fold(f64::INFINITY, f64::min);
    let mut grid: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.iter().map(|p| p.0))
        .filter(|&x| lo > hi || (lo..=hi).contains(&x))
        .collect();
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    let mut out = Vec::with_capacity(grid.len());
    for x in grid {
        let ys: Vec<f64> = runs.iter().filter_map(|r| interpolate(r, x)).collect();
        if ys.is_empty() {
            continue;
        }
        let n = ys.len() as f64;
        let mean = ys.iter().sum::<f64>() / n;
        let var = ys.iter().map(|y| (y - mean) * (y - mean)).sum::<f64>() / n;
        out.push((x, mean, var.max(0.0).sqrt()));
    }
    out
}

/// The grouping key of a run: its `config.toml` without `run.seed`, or `None` if the
/// run has no `config.toml` (then it is a group of its own).
fn config_key(run: &Path) -> Result<Option<toml::Table>, PlotError> {
    let path = run.join("config.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PlotError::Io { path, source }),
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| PlotError::Config {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
    if let Some(toml::Value::Table(section)) = table.get_mut("run") {
        section.remove("seed");
    }
    Ok(Some(table))
}

/// A run's name for the legend: its directory's last component.
fn run_name(run: &Path) -> String {
    if let Some(name) = run.file_name() {
        return name.to_string_lossy().into_owned();
    }
    // `.`, `..` or `/`: name the directory they stand for.
    run.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| run.display().to_string())
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

fn format_of(out: &Path) -> Result<Format, PlotError> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => Err(PlotError::UnknownFormat {
            path: out.to_path_buf(),
        }),
    }
}

/// One line (and maybe band) ready to draw.
struct Curve {
    label: String,
    runs: usize,
    color: RGBColor,
    /// `(x, y)` of the line, sorted by x.
    line: Vec<(f64, f64)>,
    /// `(x, lower, upper)` of the ±1 std band, for groups of several runs.
    band: Option<Vec<(f64, f64, f64)>>,
}

/// Line colours (Tableau 10), cycled.
pub(crate) const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Plot `opts.metric` against `env_steps` for `runs` (run directories) into `opts.out`,
/// grouping seeds of the same configuration into a mean line with a ±1 std band (see
/// the module documentation for the rules).
///
/// Every run must have the metric: the first run that does not stops the plot with
/// its error. The output's parent directory must exist.
pub fn plot_runs(runs: &[PathBuf], opts: &PlotOptions) -> Result<PlotReport, PlotError> {
    if runs.is_empty() {
        return Err(PlotError::NoRuns);
    }
    let format = format_of(&opts.out)?;

    // Read and smooth every run, then group them by configuration.
    let mut groups: Vec<(Option<toml::Table>, Vec<usize>)> = Vec::new();
    let mut data = Vec::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        let mut points = read_metric(run, &opts.metric)?;
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
        let smoothed = moving_average(&ys, opts.smooth);
        for (p, y) in points.iter_mut().zip(smoothed) {
            p.1 = y;
        }
        data.push(points);
        match config_key(run)? {
            Some(key) => match groups.iter_mut().find(|g| g.0.as_ref() == Some(&key)) {
                Some(group) => group.1.push(i),
                None => groups.push((Some(key), vec![i])),
            },
            None => groups.push((None, vec![i])),
        }
    }

    let mut curves = Vec::with_capacity(groups.len());
    let mut used = HashSet::new();
    for (g, (_, members)) in groups.iter().enumerate() {
        let color = COLORS[g % COLORS.len()];
        let mut label = run_name(&runs[members[0]]);
        if members.len() > 1 {
            label = format!("{label} ({} seeds)", members.len());
        }
        // Two groups may share a first directory name (e.g. `a/run` and `b/run`).
        if !used.insert(label.clone()) {
            label = format!("{label} [{}]", runs[members[0]].display());
        }
        let curve = if let [only] = members.as_slice() {
            Curve {
                label,
                runs: 1,
                color,
                line: data[*only].clone(),
                band: None,
            }
        } else {
            let member_data: Vec<Vec<(f64, f64)>> =
                members.iter().map(|&i| data[i].clone()).collect();
            let stats = aggregate(&member_data);
            Curve {
                label,
                runs: members.len(),
                color,
                line: stats.iter().map(|&(x, m, _)| (x, m)).collect(),
                band: Some(stats.iter().map(|&(x, m, s)| (x, m - s, m + s)).collect()),
            }
        };
        curves.push(curve);
    }

    let caption = format!("{} vs env steps", opts.metric);
    let axes = ("env steps", opts.metric.as_str());
    let series = render(&opts.out, format, curves, &caption, axes, format_steps)?;
    Ok(PlotReport {
        out: opts.out.clone(),
        series,
    })
}

/// What [`plot_in_context`] drew and wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct InContextReport {
    /// The plot written.
    pub out: PathBuf,
    /// The curves written as CSV (the plot's path with the extension `.csv`).
    pub csv: PathBuf,
    /// One entry per learner, in legend order.
    pub series: Vec<SeriesSummary>,
}

/// The curves of `run/in_context.csv` (written by the in-context evaluation): each
/// learner's label (the columns `{label}_return_mean`) and its mean return over the
/// goals at each episode index, in column order.
pub fn read_in_context(run: &Path) -> Result<Vec<(String, Vec<f64>)>, PlotError> {
    let path = run.join("in_context.csv");
    let text = std::fs::read_to_string(&path).map_err(|source| PlotError::Io {
        path: path.clone(),
        source,
    })?;
    let csv_err = |line: usize, message: String| PlotError::Csv {
        path: path.clone(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(csv_err(1, "empty file: no header row".to_string()));
    };
    let header = split_fields(header).map_err(|m| csv_err(1, m))?;
    let columns: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_suffix("_return_mean").map(|l| (i, l.to_string())))
        .collect();
    if header.first().map(String::as_str) != Some("episode") || columns.is_empty() {
        return Err(PlotError::MissingMetric {
            path,
            metric: "episode, {label}_return_mean".to_string(),
            available: header,
        });
    }
    let mut curves: Vec<(String, Vec<f64>)> = columns
        .iter()
        .map(|(_, l)| (l.clone(), Vec::new()))
        .collect();
    for (at, line) in lines {
        let fields = split_fields(line).map_err(|m| csv_err(at + 1, m))?;
        if fields.len() != header.len() {
            return Err(csv_err(
                at + 1,
                format!(
                    "row has {} fields but the header has {}",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        for ((i, label), (_, values)) in columns.iter().zip(curves.iter_mut()) {
            let v = parse_value(&fields[*i])
                .map_err(|m| csv_err(at + 1, format!("{label}_return_mean: {m}")))?;
            values.push(v.unwrap_or(f64::NAN));
        }
    }
    if curves[0].1.is_empty() {
        return Err(PlotError::NoData {
            path,
            metric: format!("{}_return_mean", curves[0].0),
        });
    }
    Ok(curves)
}

/// One learner's in-context curve over the seeds: its label, `(mean, std)` per episode
/// index, and the number of runs.
pub type SeedCurve = (String, Vec<(f64, f64)>, usize);

/// Each learner's in-context curve over the seeds: the labels in order of first
/// appearance and, per episode index (up to the shortest run), the mean over the runs
/// of their mean returns, its standard deviation over the runs (population, as
/// [`plot_runs`] draws bands), and the number of runs.
pub fn aggregate_in_context(runs: &[Vec<(String, Vec<f64>)>]) -> Vec<SeedCurve> {
    let mut labels: Vec<String> = Vec::new();
    for run in runs {
        for (label, _) in run {
            if !labels.contains(label) {
                labels.push(label.clone());
            }
        }
    }
    labels
        .into_iter()
        .map(|label| {
            let members: Vec<&Vec<f64>> = runs
                .iter()
                .flat_map(|run| run.iter().filter(|(l, _)| *l == label).map(|(_, v)| v))
                .collect();
            let n = members.iter().map(|v| v.len()).min().unwrap_or(0);
            let stats = (0..n)
                .map(|i| {
                    let xs: Vec<f64> = members.iter().map(|v| v[i]).collect();
                    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
                    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
                    (mean, var.sqrt())
                })
                .collect();
            (label, stats, members.len())
        })
        .collect()
}

/// Plot the in-context curves of `runs` (each run directory's `in_context.csv`):
/// return against the episode index, one line per learner label (RA-DT, AD, DT, ...),
/// the mean over the runs that have it with a ±1 std band over them when there are
/// several (the seeds); the same figures are written as CSV next to `out`
/// (`episode,{label}_return_mean,{label}_return_std,{label}_runs`).
pub fn plot_in_context(runs: &[PathBuf], out: &Path) -> Result<InContextReport, PlotError> {
    if runs.is_empty() {
        return Err(PlotError::NoRuns);
    }
    let format = format_of(out)?;
    let data = runs
        .iter()
        .map(|r| read_in_context(r))
        .collect::<Result<Vec<_>, _>>()?;
    let groups = aggregate_in_context(&data);

    let csv = out.with_extension("csv");
    let mut text = String::from("episode");
    for (label, _, _) in &groups {
        text.push_str(&format!(
            ",{label}_return_mean,{label}_return_std,{label}_runs"
        ));
    }
    text.push('\n');
    let n = groups.iter().map(|g| g.1.len()).min().unwrap_or(0);
    for i in 0..n {
        text.push_str(&(i + 1).to_string());
        for (_, stats, runs) in &groups {
            text.push_str(&format!(",{},{},{runs}", stats[i].0, stats[i].1));
        }
        text.push('\n');
    }
    std::fs::write(&csv, text).map_err(|source| PlotError::Io {
        path: csv.clone(),
        source,
    })?;

    let curves: Vec<Curve> = groups
        .iter()
        .enumerate()
        .map(|(g, (label, stats, n))| {
            let line: Vec<(f64, f64)> = stats
                .iter()
                .enumerate()
                .map(|(i, &(m, _))| ((i + 1) as f64, m))
                .collect();
            let band = (*n > 1).then(|| {
                stats
                    .iter()
                    .enumerate()
                    .map(|(i, &(m, s))| ((i + 1) as f64, m - s, m + s))
                    .collect()
            });
            Curve {
                label: if *n > 1 {
                    format!("{label} ({n} seeds)")
                } else {
                    label.clone()
                },
                runs: *n,
                color: COLORS[g % COLORS.len()],
                line,
                band,
            }
        })
        .collect();

    let caption = "in-context return on held-out goals";
    let axes = ("episode", "return (mean over goals)");
    let series = render(out, format, curves, caption, axes, |x| format!("{x:.0}"))?;
    Ok(InContextReport {
        out: out.to_path_buf(),
        csv,
        series,
    })
}

/// Register the bundled DejaVu Sans as the `sans-serif` family (once per process).
pub(crate) fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Draw(
            "the bundled DejaVu Sans font could not be loaded".to_string(),
        ))
    }
}

/// A padded `(min, max)` axis range around the given values (never empty).
fn padded_range(values: impl Iterator<Item = f64>, pad_fraction: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * pad_fraction
    } else {
        (lo.abs() * 0.1).max(1.0)
    };
    (lo - pad, hi + pad)
}

/// Draw `curves` into `out` as PNG or SVG and summarise each series.
fn render(
    out: &Path,
    format: Format,
    curves: Vec<Curve>,
    caption: &str,
    axes: (&str, &str),
    x_format: fn(f64) -> String,
) -> Result<Vec<SeriesSummary>, PlotError> {
    ensure_font()?;
    let draw_err = |e: String| PlotError::Draw(format!("{}: {e}", out.display()));
    match format {
        Format::Png => {
            let root = BitMapBackend::new(out, PLOT_SIZE).into_drawing_area();
            draw_chart_on(&root, &curves, caption, axes, x_format).map_err(draw_err)?;
            root.present().map_err(|e| draw_err(e.to_string()))?;
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
                draw_chart_on(&root, &curves, caption, axes, x_format).map_err(draw_err)?;
                root.present().map_err(|e| draw_err(e.to_string()))?;
            }
            std::fs::write(out, svg).map_err(|source| PlotError::Io {
                path: out.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(curves
        .into_iter()
        .map(|c| SeriesSummary {
            points: c.line.len(),
            last: c.line.last().map_or(f64::NAN, |p| p.1),
            label: c.label,
            runs: c.runs,
        })
        .collect())
}

/// Draw the chart with a caption, axis descriptions `(x, y)` and an x label format.
fn draw_chart_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    x_format: fn(f64) -> String,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;

    let (x0, x1) = padded_range(curves.iter().flat_map(|c| c.line.iter().map(|p| p.0)), 0.0);
    let ys = curves.iter().flat_map(|c| {
        let line = c.line.iter().map(|p| p.1);
        let band = c.band.iter().flatten().flat_map(|b| [b.1, b.2]);
        line.chain(band)
    });
    let (y0, y1) = padded_range(ys, 0.05);

    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 26).into_font().color(&BLACK))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 14))
        .x_label_formatter(&|x| x_format(*x))
        .y_label_formatter(&|y| format_number(*y))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(e)?;

    // Bands first, so that every line lies on top of every band.
    for curve in curves {
        if let Some(band) = &curve.band {
            let outline: Vec<(f64, f64)> = band
                .iter()
                .map(|b| (b.0, b.2))
                .chain(band.iter().rev().map(|b| (b.0, b.1)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    curve.color.mix(0.2).filled(),
                )))
                .map_err(e)?;
        }
    }
    for curve in curves {
        let color = curve.color;
        let banded = curve.band.is_some();
        if let [point] = curve.line.as_slice() {
            // A line through one point draws nothing: mark the point.
            chart
                .draw_series(std::iter::once(Circle::new(*point, 4, color.filled())))
                .map_err(e)?;
        }
        chart
            .draw_series(LineSeries::new(
                curve.line.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(e)?
            .label(curve.label.as_str())
            .legend(move |(x, y)| {
                let fill = if banded {
                    color.mix(0.2)
                } else {
                    WHITE.mix(0.0)
                };
                EmptyElement::at((x, y))
                    + Rectangle::new([(0, -6), (24, 6)], fill.filled())
                    + PathElement::new(vec![(0, 0), (24, 0)], color.stroke_width(2))
            });
    }

    // Put the legend where the lines are not: below them if they end high.
    let ends: Vec<f64> = curves
        .iter()
        .filter_map(|c| c.line.last())
        .map(|p| p.1)
        .collect();
    let end_mean = ends.iter().sum::<f64>() / ends.len().max(1) as f64;
    let position = if end_mean > (y0 + y1) / 2.0 {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    };
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .legend_area_size(30)
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Trim trailing zeros (and a trailing point) from a decimal number.
fn trim_zeros(s: String) -> String {
    let t = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if t == "-0" { "0".to_string() } else { t }
}

/// Step counts as `0`, `500`, `2.5k`, `1.25M`, `3G`.
fn format_steps(x: f64) -> String {
    let a = x.abs();
    let (scale, suffix) = if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    format!("{}{suffix}", trim_zeros(format!("{:.2}", x / scale)))
}

/// Axis numbers: short decimals, scientific notation for very large or small ones.
fn format_number(y: f64) -> String {
    let a = y.abs();
    if a == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{y:.1e}")
    } else if a >= 100.0 {
        trim_zeros(format!("{y:.1}"))
    } else if a >= 1.0 {
        trim_zeros(format!("{y:.2}"))
    } else {
        trim_zeros(format!("{y:.4}"))
    }
}

impl fmt::Display for SeriesSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} run(s), {} points, last {}",
            self.label, self.runs, self.points, self.last
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "agentry-plot-test-{name}-{}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const HEADER: &str = "env_steps,wall_time_s,episodes,episode_return_mean,\
                          episode_length_mean,charts/SPS,losses/approx_kl";

    fn config(seed: u64, lr: f64) -> String {
        format!(
            "[run]\nalgo = \"ppo\"\nseed = {seed}\nsteps = 4000\n\n[env]\nname = \"cartpole\"\n\n\
             [ppo]\nlearning_rate = {lr}\nhidden = [64, 64]\n"
        )
    }

    /// A run directory `name` under `root` with the given config and returns
    /// `f(step)` at steps 0, 250, ..., `last`.
    fn make_run(
        root: &Path,
        name: &str,
        config: Option<&str>,
        last: u64,
        f: impl Fn(f64) -> f64,
    ) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut csv = format!("{HEADER}\n");
        for step in (0..=last).step_by(250) {
            let x = step as f64;
            let ret = if step == 0 {
                "NaN".to_string()
            } else {
                f(x).to_string()
            };
            csv.push_str(&format!(
                "{step},{},{},{ret},20,1000,\n",
                x / 1e3,
                step / 100
            ));
        }
        std::fs::write(dir.join("metrics.csv"), csv).unwrap();
        if let Some(config) = config {
            std::fs::write(dir.join("config.toml"), config).unwrap();
        }
        dir
    }

    fn opts(out: PathBuf) -> PlotOptions {
        PlotOptions {
            out,
            ..PlotOptions::default()
        }
    }

    /// In-context curves of several runs and learners: one line per learner, the mean
    /// over the runs (seeds) that have it and their std, written as CSV beside the plot.
    #[test]
    fn in_context_curves_are_averaged_over_seeds_per_learner() {
        let tmp = TempDir::new("in-context");
        let run = |name: &str, csv: &str| {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("in_context.csv"), csv).unwrap();
            dir
        };
        let radt1 = run(
            "radt1",
            "episode,radt_return_mean,radt_return_std,frozen_dt_return_mean,frozen_dt_return_std\n\
             1,2,9,1,0\n2,4,9,1,0\n3,6,9,1,0\n",
        );
        let radt2 = run(
            "radt2",
            "episode,radt_return_mean,radt_return_std,frozen_dt_return_mean,frozen_dt_return_std\n\
             1,4,9,3,0\n2,8,9,3,0\n3,10,9,3,0\n",
        );
        let ad = run("ad", "episode,ad_return_mean,ad_return_std\n1,5,1\n2,5,1\n");
        let out = tmp.path().join("curves.png");
        let report = plot_in_context(&[radt1, ad, radt2], &out).unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
        let labels: Vec<&str> = report.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["radt (2 seeds)", "frozen_dt (2 seeds)", "ad"]);
        assert_eq!(report.series[0].last, 8.0);
        let csv = std::fs::read_to_string(&report.csv).unwrap();
        assert_eq!(report.csv, tmp.path().join("curves.csv"));
        // Up to the shortest curve (AD's two episodes); std over the seeds.
        assert_eq!(
            csv,
            "episode,radt_return_mean,radt_return_std,radt_runs,frozen_dt_return_mean,\
             frozen_dt_return_std,frozen_dt_runs,ad_return_mean,ad_return_std,ad_runs\n\
             1,3,1,2,2,1,2,5,0,1\n2,6,2,2,2,1,2,5,0,1\n"
        );
        // A run without the file, or with a file of other columns, is an error.
        let bad = run("bad", "episode,x\n1,2\n");
        let err = plot_in_context(&[bad], &out).unwrap_err();
        assert!(matches!(err, PlotError::MissingMetric { .. }), "{err}");
        let err = plot_in_context(&[tmp.path().join("none")], &out).unwrap_err();
        assert!(matches!(err, PlotError::Io { .. }), "{err}");
    }

    #[test]
    fn seeds_of_one_config_make_one_band_and_other_configs_other_lines() {
        let tmp = TempDir::new("group");
        let a1 = make_run(tmp.path(), "lr3-s1", Some(&config(1, 3e-4)), 4000, |x| {
            x / 40.0
        });
        let a2 = make_run(tmp.path(), "lr3-s2", Some(&config(2, 3e-4)), 4000, |x| {
            x / 40.0 + 10.0
        });
        let b = make_run(tmp.path(), "lr1-s1", Some(&config(1, 1e-3)), 3000, |x| {
            x / 20.0
        });
        let c = make_run(tmp.path(), "no-config", None, 2000, |x| x / 10.0);
        let out = tmp.path().join("plot.svg");
        let report = plot_runs(&[a1, b, a2, c], &opts(out.clone())).unwrap();
        assert_eq!(report.out, out);
        let labels: Vec<&str> = report.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["lr3-s1 (2 seeds)", "lr1-s1", "no-config"]);
        let runs: Vec<usize> = report.series.iter().map(|s| s.runs).collect();
        assert_eq!(runs, [2, 1, 1]);
        // Same steps in both seeds: steps 250..=4000 with a value (step 0 is NaN).
        assert_eq!(report.series[0].points, 16);
        assert!((report.series[0].last - (100.0 + 5.0)).abs() < 1e-9);
        assert_eq!(report.series[1].points, 12);
        assert!((report.series[1].last - 150.0).abs() < 1e-9);

        // Differing configs never merge, whatever their seeds.
        let tmp2 = TempDir::new("nogroup");
        let d1 = make_run(tmp2.path(), "d1", Some(&config(1, 3e-4)), 1000, |x| x);
        let d2 = make_run(tmp2.path(), "d2", Some(&config(1, 5e-4)), 1000, |x| x);
        let report = plot_runs(&[d1, d2], &opts(tmp2.path().join("p.svg"))).unwrap();
        assert_eq!(report.series.len(), 2);
        assert!(report.series.iter().all(|s| s.runs == 1));
    }

    #[test]
    fn aggregate_interpolates_onto_the_overlap_of_the_union_of_steps() {
        let a = vec![(0.0, 0.0), (10.0, 10.0), (20.0, 20.0)];
        let b = vec![(5.0, 0.0), (15.0, 0.0), (30.0, 0.0)];
        let stats = aggregate(&[a, b]);
        let xs: Vec<f64> = stats.iter().map(|s| s.0).collect();
        assert_eq!(xs, [5.0, 10.0, 15.0, 20.0]);
        // At x = 15: a = 15, b = 0 -> mean 7.5, population std 7.5.
        assert_eq!(stats[2], (15.0, 7.5, 7.5));
        assert_eq!(interpolate(&[(0.0, 1.0), (4.0, 3.0)], 1.0), Some(1.5));
        assert_eq!(interpolate(&[(0.0, 1.0), (4.0, 3.0)], 5.0), None);
        // Disjoint ranges: every step, each averaging the runs that cover it.
        let stats = aggregate(&[vec![(0.0, 1.0), (1.0, 1.0)], vec![(2.0, 3.0), (3.0, 5.0)]]);
        assert_eq!(stats.len(), 4);
        assert_eq!(stats[3], (3.0, 5.0, 0.0));
    }

    #[test]
    fn missing_metric_lists_the_available_columns() {
        let tmp = TempDir::new("missing");
        let run = make_run(tmp.path(), "r", None, 500, |x| x);
        let err = read_metric(&run, "losses/entropy").unwrap_err();
        match &err {
            PlotError::MissingMetric {
                path,
                metric,
                available,
            } => {
                assert_eq!(path, &run.join("metrics.csv"));
                assert_eq!(metric, "losses/entropy");
                assert_eq!(available.len(), 7);
                assert_eq!(available[0], "env_steps");
                assert_eq!(available[6], "losses/approx_kl");
            }
            other => panic!("wrong error {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("metrics.csv"), "{text}");
        assert!(text.contains("`losses/entropy`"), "{text}");
        assert!(text.contains("episode_return_mean, episode_length_mean, charts/SPS"));

        // Through plot_runs as well, and an all-missing column is NoData.
        let err = plot_runs(
            std::slice::from_ref(&run),
            &PlotOptions {
                metric: "nope".into(),
                ..opts(tmp.path().join("x.png"))
            },
        )
        .unwrap_err();
        assert!(matches!(err, PlotError::MissingMetric { .. }));
        let err = read_metric(&run, "losses/approx_kl").unwrap_err();
        assert!(matches!(err, PlotError::NoData { .. }), "{err:?}");
    }

    #[test]
    fn smoothing_is_a_trailing_moving_average() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(moving_average(&v, 1), v);
        assert_eq!(moving_average(&v, 0), v);
        assert_eq!(moving_average(&v, 3), [1.0, 1.5, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(moving_average(&v, 10), [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]);
        assert!(moving_average(&[], 5).is_empty());

        // plot_runs smooths each run before grouping.
        let tmp = TempDir::new("smooth");
        let run = make_run(tmp.path(), "r", None, 1000, |x| x); // 250, 500, 750, 1000
        let report = plot_runs(
            &[run],
            &PlotOptions {
                smooth: 2,
                ..opts(tmp.path().join("s.svg"))
            },
        )
        .unwrap();
        assert_eq!(report.series[0].points, 4);
        assert_eq!(report.series[0].last, 875.0);
    }

    #[test]
    fn png_is_written_and_is_a_png() {
        let tmp = TempDir::new("png");
        let run = make_run(tmp.path(), "r", None, 2000, |x| (x / 300.0).sin());
        let out = tmp.path().join("curve.PNG");
        plot_runs(&[run], &opts(out.clone())).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.len() > 1000, "only {} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn svg_contains_the_legend_label_and_axis_text() {
        let tmp = TempDir::new("svg");
        let s1 = make_run(
            tmp.path(),
            "legend-check-s1",
            Some(&config(1, 1e-3)),
            1000,
            |x| x,
        );
        let s2 = make_run(
            tmp.path(),
            "legend-check-s2",
            Some(&config(2, 1e-3)),
            1000,
            |x| 2.0 * x,
        );
        let out = tmp.path().join("curve.svg");
        plot_runs(&[s1, s2], &opts(out.clone())).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(100)]);
        assert!(svg.contains("legend-check-s1 (2 seeds)"));
        assert!(svg.contains("env steps"));
        assert!(svg.contains("episode_return_mean"));
        assert!(svg.contains("<polygon"), "the band is drawn");
    }

    #[test]
    fn bad_csv_is_an_error_naming_the_line() {
        let tmp = TempDir::new("badcsv");
        let dir = tmp.path().join("r");
        std::fs::create_dir_all(&dir).unwrap();
        let write = |text: &str| std::fs::write(dir.join("metrics.csv"), text).unwrap();
        let line_of = |err: PlotError| match err {
            PlotError::Csv { line, message, .. } => (line, message),
            other => panic!("wrong error {other:?}"),
        };

        write("env_steps,episode_return_mean\n1,2\n2,oops\n3,4\n");
        let err = read_metric(&dir, "episode_return_mean").unwrap_err();
        assert!(err.to_string().contains("metrics.csv:3:"), "{err}");
        assert_eq!(line_of(err).0, 3);

        // Ragged row (not the last line).
        write("env_steps,episode_return_mean\n1,2\n2\n3,4\n");
        let (line, message) = line_of(read_metric(&dir, "episode_return_mean").unwrap_err());
        assert_eq!(line, 3);
        assert!(
            message.contains("1 fields but the header has 2"),
            "{message}"
        );
        write("env_steps,episode_return_mean\n1,2,3\n");
        assert_eq!(
            line_of(read_metric(&dir, "episode_return_mean").unwrap_err()).0,
            2
        );

        // Empty file and header only.
        write("");
        assert_eq!(
            line_of(read_metric(&dir, "episode_return_mean").unwrap_err()).0,
            1
        );
        write("env_steps,episode_return_mean\n");
        let err = read_metric(&dir, "episode_return_mean").unwrap_err();
        assert!(matches!(err, PlotError::NoData { .. }), "{err:?}");

        // Unterminated quote, invalid UTF-8.
        write("env_steps,episode_return_mean\n\"1,2\n3,4\n");
        assert_eq!(
            line_of(read_metric(&dir, "episode_return_mean").unwrap_err()).0,
            2
        );
        std::fs::write(dir.join("metrics.csv"), b"env_steps,x\n1,2\n3,\xff\n").unwrap();
        assert_eq!(line_of(read_metric(&dir, "x").unwrap_err()).0, 3);
    }

    #[test]
    fn missing_values_are_skipped_and_a_cut_off_last_row_ignored() {
        let tmp = TempDir::new("missingvals");
        let dir = tmp.path().join("r");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("metrics.csv"),
            "\u{feff}env_steps, episode_return_mean ,k\r\n0,,1\r\n1,NaN,1\r\n2,inf,1\r\n\
             ,5,1\r\n3,\"7.5\",1\r\n\r\n4, -1e2 ,\r\n5,9",
        )
        .unwrap();
        let points = read_metric(&dir, "episode_return_mean").unwrap();
        assert_eq!(points, [(3.0, 7.5), (4.0, -100.0)]);
        assert!(matches!(
            read_metric(&tmp.path().join("absent"), "k"),
            Err(PlotError::Io { .. })
        ));
    }

    #[test]
    fn option_and_input_errors() {
        let tmp = TempDir::new("errors");
        let run = make_run(tmp.path(), "r", None, 500, |x| x);
        assert!(matches!(
            plot_runs(&[], &PlotOptions::default()),
            Err(PlotError::NoRuns)
        ));
        let err =
            plot_runs(std::slice::from_ref(&run), &opts(tmp.path().join("p.jpg"))).unwrap_err();
        assert!(matches!(err, PlotError::UnknownFormat { .. }));
        assert!(err.to_string().contains("p.jpg"), "{err}");
        std::fs::write(run.join("config.toml"), "[run\nseed = 1").unwrap();
        let err = plot_runs(&[run], &opts(tmp.path().join("p.png"))).unwrap_err();
        assert!(matches!(err, PlotError::Config { .. }), "{err:?}");
        assert!(err.to_string().contains("config.toml"), "{err}");
    }

    #[test]
    fn a_single_point_run_still_plots() {
        let tmp = TempDir::new("single");
        let run = make_run(tmp.path(), "one", None, 250, |x| x);
        let report = plot_runs(&[run], &opts(tmp.path().join("one.svg"))).unwrap();
        assert_eq!(report.series[0].points, 1);
        let svg = std::fs::read_to_string(tmp.path().join("one.svg")).unwrap();
        assert!(svg.contains("<circle"));
    }

    #[test]
    fn number_formats() {
        assert_eq!(format_steps(0.0), "0");
        assert_eq!(format_steps(2500.0), "2.5k");
        assert_eq!(format_steps(1_250_000.0), "1.25M");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(123.0), "123");
        assert_eq!(format_number(2e-5), "2.0e-5");
    }

    /// Renders a sample plot to `$PLOT_SAMPLE` (if set) for a person to look at.
    #[test]
    fn sample_plot() {
        let Some(out) = std::env::var_os("PLOT_SAMPLE") else {
            return;
        };
        let tmp = TempDir::new("sample");
        let curve = |scale: f64, phase: f64| {
            move |x: f64| scale * (1.0 - (-x / 1500.0).exp()) + 15.0 * (x / 200.0 + phase).sin()
        };
        let s1 = make_run(
            tmp.path(),
            "ppo-cartpole-s1",
            Some(&config(1, 3e-4)),
            8000,
            curve(400.0, 0.0),
        );
        let s2 = make_run(
            tmp.path(),
            "ppo-cartpole-s2",
            Some(&config(2, 3e-4)),
            7000,
            curve(300.0, 2.0),
        );
        let other = make_run(
            tmp.path(),
            "ppo-cartpole-lr1e-3",
            Some(&config(1, 1e-3)),
            8000,
            curve(200.0, 1.0),
        );
        let report = plot_runs(
            &[s1, s2, other],
            &PlotOptions {
                smooth: 3,
                ..opts(PathBuf::from(out))
            },
        )
        .unwrap();
        for s in &report.series {
            println!("{s}");
        }
    }
}
