//! Trajectory datasets on disk: whole episodes, written atomically, read as a stream.
//!
//! Offline learners (the Decision Transformer, LRAM, RA-DT) train on episodes recorded
//! from trained agents or from whole learning histories. One file holds the episodes
//! of one task (one environment configuration); a multi-task dataset is a set of files.
//!
//! # Why a format of our own
//!
//! The files must be written while a run goes on (a learning history grows for hours),
//! read one episode at a time without loading a multi-gigabyte Atari dataset, and
//! checked for truncation and damage episode by episode. safetensors needs the whole
//! file's header up front and holds tensors, not a stream of records of varying length;
//! Arrow IPC would do, at the price of a large dependency in a crate that embedders use
//! without a deep-learning framework. The format below is a header, a sequence of
//! self-checking episode records and a footer, little-endian, with the 64-bit checksum
//! the replay state uses:
//!
//! ```text
//! header   "AGDS"  version u32 = 1  dtype u8 (1 f32, 2 u8)  3 zero bytes
//!          obs_dim u64  action_dim u64  meta_len u64  meta (UTF-8, meta_len bytes)
//!          checksum u64 of the header bytes before it
//! record   "EPIS"  task u32  len u64 (steps T ≥ 1)
//!          observations  T × obs_dim values of dtype  (s_t: the observation acted on)
//!          actions       T × action_dim f32           (a discrete action is its index)
//!          rewards       T f32
//!          returns-to-go T f32                        (Σ_{u ≥ t} r_u, undiscounted)
//!          flags         T u8                         (bit 0 terminated, bit 1 truncated)
//!          checksum u64 of the record bytes before it
//! footer   "END!"  episodes u64  steps u64  chain u64 (checksum of the records' checksums)
//!          checksum u64 of the footer bytes before it
//! ```
//!
//! `meta` is free text for the caller; agentry writes JSON there (the environment and
//! its parameters, the source run, the expert's and a random policy's returns).
//!
//! # Guarantees
//!
//! - **Atomic**: [`DatasetWriter`] writes to a temporary file beside the target and
//!   renames it into place in [`finish`](DatasetWriter::finish), after syncing it; a
//!   crash or an error leaves no file at the target (or the previous one), never half
//!   a dataset. A writer dropped without `finish` deletes its temporary file.
//! - **Streaming**: [`DatasetReader`] holds one episode at a time.
//! - **Checked**: opening a file checks the header and the footer, so a truncated file
//!   is an error before any episode is read; every record's checksum is checked as it
//!   is read, and the footer's chain and counts when the last one is. No input makes
//!   the reader panic or allocate more than the file's remaining length.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::codec::{Reader, checksum};
use crate::error::{MemoryError, Result};

const MAGIC: [u8; 4] = *b"AGDS";
const RECORD: [u8; 4] = *b"EPIS";
const END: [u8; 4] = *b"END!";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// magic, version, dtype, padding, obs_dim, action_dim, meta_len.
const HEADER_FIXED: usize = 4 + 4 + 1 + 3 + 8 + 8 + 8;
/// magic, episodes, steps, chain, checksum.
const FOOTER_BYTES: usize = 4 + 8 + 8 + 8 + 8;
/// tag, task, len.
const RECORD_HEAD: usize = 4 + 4 + 8;
const TERMINATED: u8 = 1;
const TRUNCATED: u8 = 2;

/// The element type of a dataset's observations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObsType {
    /// 32-bit floats (vector observations).
    F32,
    /// Bytes (image frames).
    U8,
}

impl ObsType {
    fn tag(self) -> u8 {
        match self {
            ObsType::F32 => 1,
            ObsType::U8 => 2,
        }
    }

    fn width(self) -> usize {
        match self {
            ObsType::F32 => 4,
            ObsType::U8 => 1,
        }
    }
}

/// What every episode of a dataset has in common.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetHeader {
    /// Observation element type.
    pub obs_type: ObsType,
    /// Values per observation.
    pub obs_dim: usize,
    /// Values per action (1 for a discrete action).
    pub action_dim: usize,
    /// The caller's description (agentry writes JSON).
    pub meta: String,
}

/// The observations of one episode, `len × obs_dim` values.
#[derive(Clone, Debug, PartialEq)]
pub enum Observations {
    /// Float observations.
    F32(Vec<f32>),
    /// Byte observations.
    U8(Vec<u8>),
}

impl Observations {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Observations::F32(v) => v.len(),
            Observations::U8(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn obs_type(&self) -> ObsType {
        match self {
            Observations::F32(_) => ObsType::F32,
            Observations::U8(_) => ObsType::U8,
        }
    }

    /// Row `t` (of width `dim`) as floats, appended to `out`.
    pub fn row_into(&self, t: usize, dim: usize, out: &mut Vec<f32>) {
        match self {
            Observations::F32(v) => out.extend_from_slice(&v[t * dim..(t + 1) * dim]),
            Observations::U8(v) => out.extend(v[t * dim..(t + 1) * dim].iter().map(|&b| b as f32)),
        }
    }
}

/// One recorded episode: the observation acted on, the action, the reward and how the
/// step ended, for each of its `len` steps.
#[derive(Clone, Debug, PartialEq)]
pub struct EpisodeRecord {
    /// The task it belongs to (the caller's numbering).
    pub task: u32,
    /// `len × obs_dim` observations.
    pub obs: Observations,
    /// `len × action_dim` actions (a discrete action as its index).
    pub actions: Vec<f32>,
    /// `len` rewards.
    pub rewards: Vec<f32>,
    /// `len` flags: the step ended the episode in a terminal state.
    pub terminated: Vec<bool>,
    /// `len` flags: the step was cut by a time limit.
    pub truncated: Vec<bool>,
}

impl EpisodeRecord {
    /// Steps in the episode.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }

    /// Whether it has no steps.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    /// The observations as floats, when they are stored as floats (empty otherwise).
    pub fn obs_f32(&self) -> &[f32] {
        match &self.obs {
            Observations::F32(v) => v,
            Observations::U8(_) => &[],
        }
    }

    /// The undiscounted return.
    pub fn ret(&self) -> f64 {
        self.rewards.iter().map(|&r| r as f64).sum()
    }

    /// Returns-to-go: `Σ_{u ≥ t} r_u` for each step `t` (summed in f64).
    pub fn returns_to_go(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.len()];
        let mut acc = 0f64;
        for t in (0..self.len()).rev() {
            acc += self.rewards[t] as f64;
            out[t] = acc as f32;
        }
        out
    }

    fn check(&self, header: &DatasetHeader) -> Result<()> {
        let t = self.len();
        if t == 0 {
            return Err(MemoryError::InvalidConfig(
                "an episode record needs at least one step".into(),
            ));
        }
        if self.obs.obs_type() != header.obs_type {
            return Err(MemoryError::InvalidConfig(format!(
                "episode observations are {:?}, the dataset holds {:?}",
                self.obs.obs_type(),
                header.obs_type
            )));
        }
        let lengths = [
            ("episode observations", self.obs.len(), t * header.obs_dim),
            ("episode actions", self.actions.len(), t * header.action_dim),
            ("episode terminated flags", self.terminated.len(), t),
            ("episode truncated flags", self.truncated.len(), t),
        ];
        for (what, got, expected) in lengths {
            if got != expected {
                return Err(MemoryError::Length {
                    what,
                    expected,
                    got,
                });
            }
        }
        Ok(())
    }
}

/// Counts a finished dataset file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatasetCounts {
    /// Episodes.
    pub episodes: u64,
    /// Steps over all episodes.
    pub steps: u64,
}

fn io(path: &Path, e: std::io::Error) -> MemoryError {
    MemoryError::Dataset(format!("{}: {e}", path.display()))
}

fn bad(path: &Path, message: impl std::fmt::Display) -> MemoryError {
    MemoryError::Dataset(format!("{}: {message}", path.display()))
}

/// Writes a dataset file; see the [module docs](self).
pub struct DatasetWriter {
    header: DatasetHeader,
    path: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    counts: DatasetCounts,
    chain: Vec<u8>,
    buf: Vec<u8>,
}

impl DatasetWriter {
    /// Start a dataset that [`finish`](Self::finish) will put at `path`.
    pub fn create(path: impl Into<PathBuf>, header: DatasetHeader) -> Result<Self> {
        let path = path.into();
        if header.obs_dim == 0 || header.action_dim == 0 {
            return Err(MemoryError::InvalidConfig(format!(
                "a dataset needs obs_dim and action_dim ≥ 1, got {} and {}",
                header.obs_dim, header.action_dim
            )));
        }
        let name = path
            .file_name()
            .ok_or_else(|| bad(&path, "is not a file path"))?
            .to_string_lossy()
            .into_owned();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let mut w = DatasetWriter {
            header,
            path,
            tmp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            counts: DatasetCounts {
                episodes: 0,
                steps: 0,
            },
            chain: Vec::new(),
            buf: Vec::new(),
        };
        let mut b = Vec::with_capacity(HEADER_FIXED + w.header.meta.len() + 8);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.push(w.header.obs_type.tag());
        b.extend_from_slice(&[0; 3]);
        b.extend_from_slice(&(w.header.obs_dim as u64).to_le_bytes());
        b.extend_from_slice(&(w.header.action_dim as u64).to_le_bytes());
        b.extend_from_slice(&(w.header.meta.len() as u64).to_le_bytes());
        b.extend_from_slice(w.header.meta.as_bytes());
        let sum = checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        w.write(&b)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self.file.as_mut().expect("the writer is open until finish");
        file.write_all(bytes).map_err(|e| io(&self.tmp, e))
    }

    /// The header this writer was created with.
    pub fn header(&self) -> &DatasetHeader {
        &self.header
    }

    /// Episodes and steps written so far.
    pub fn counts(&self) -> DatasetCounts {
        self.counts
    }

    /// Append one episode (its returns-to-go are computed here).
    pub fn push(&mut self, episode: &EpisodeRecord) -> Result<()> {
        episode.check(&self.header)?;
        let t = episode.len();
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        b.extend_from_slice(&RECORD);
        b.extend_from_slice(&episode.task.to_le_bytes());
        b.extend_from_slice(&(t as u64).to_le_bytes());
        match &episode.obs {
            Observations::F32(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
            Observations::U8(v) => b.extend_from_slice(v),
        }
        for x in episode
            .actions
            .iter()
            .chain(&episode.rewards)
            .chain(&episode.returns_to_go())
        {
            b.extend_from_slice(&x.to_le_bytes());
        }
        b.extend(
            episode
                .terminated
                .iter()
                .zip(&episode.truncated)
                .map(|(&te, &tr)| (u8::from(te) * TERMINATED) | (u8::from(tr) * TRUNCATED)),
        );
        let sum = checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        let written = self.write(&b);
        self.buf = b;
        written?;
        self.chain.extend_from_slice(&sum.to_le_bytes());
        self.counts.episodes += 1;
        self.counts.steps += t as u64;
        Ok(())
    }

    /// Write the footer, sync, and rename the file into place.
    pub fn finish(mut self) -> Result<DatasetCounts> {
        let mut b = Vec::with_capacity(FOOTER_BYTES);
        b.extend_from_slice(&END);
        b.extend_from_slice(&self.counts.episodes.to_le_bytes());
        b.extend_from_slice(&self.counts.steps.to_le_bytes());
        b.extend_from_slice(&checksum(&self.chain).to_le_bytes());
        let sum = checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        self.write(&b)?;
        let file = self.file.take().expect("open until finish");
        let file = file
            .into_inner()
            .map_err(|e| io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| io(&self.tmp, e))?;
        drop(file);
        fs::rename(&self.tmp, &self.path).map_err(|e| io(&self.path, e))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(self.counts)
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a dataset file one episode at a time; see the [module docs](self).
pub struct DatasetReader {
    path: PathBuf,
    file: BufReader<File>,
    header: DatasetHeader,
    counts: DatasetCounts,
    chain_sum: u64,
    /// Where the records end (the footer's offset).
    end: u64,
    pos: u64,
    read: DatasetCounts,
    chain: Vec<u8>,
    buf: Vec<u8>,
}

impl DatasetReader {
    /// Open `path`, checking its header and footer.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path).map_err(|e| io(&path, e))?;
        let size = file.metadata().map_err(|e| io(&path, e))?.len();
        let mut fixed = [0u8; HEADER_FIXED];
        if size < (HEADER_FIXED + 8 + FOOTER_BYTES) as u64 {
            return Err(bad(
                &path,
                format!("{size} bytes is too short for an agentry dataset (truncated?)"),
            ));
        }
        file.read_exact(&mut fixed).map_err(|e| io(&path, e))?;
        let mut r = Reader::new(&fixed);
        let not_ours = |e: MemoryError| bad(&path, e);
        if r.take(4, "magic").map_err(not_ours)? != MAGIC {
            return Err(bad(&path, "is not an agentry dataset (bad magic bytes)"));
        }
        let version = r.u32("version").map_err(not_ours)?;
        if version != VERSION {
            return Err(bad(
                &path,
                format!("is dataset format version {version}; this build reads version {VERSION}"),
            ));
        }
        let obs_type = match r.u8("dtype").map_err(not_ours)? {
            1 => ObsType::F32,
            2 => ObsType::U8,
            t => return Err(bad(&path, format!("unknown observation type tag {t}"))),
        };
        r.take(3, "padding").map_err(not_ours)?;
        let obs_dim = r.u64("obs_dim").map_err(not_ours)?;
        let action_dim = r.u64("action_dim").map_err(not_ours)?;
        let meta_len = r.u64("meta_len").map_err(not_ours)?;
        let room = size - (HEADER_FIXED + 8 + FOOTER_BYTES) as u64;
        if meta_len > room {
            return Err(bad(
                &path,
                format!("header claims {meta_len} bytes of metadata; the file is {size} bytes"),
            ));
        }
        let mut rest = vec![0u8; meta_len as usize + 8];
        file.read_exact(&mut rest).map_err(|e| io(&path, e))?;
        let mut whole = fixed.to_vec();
        whole.extend_from_slice(&rest[..meta_len as usize]);
        let stored = u64::from_le_bytes(rest[meta_len as usize..].try_into().expect("8 bytes"));
        if checksum(&whole) != stored {
            return Err(bad(&path, "damaged header (checksum mismatch)"));
        }
        let meta = String::from_utf8(rest[..meta_len as usize].to_vec())
            .map_err(|_| bad(&path, "metadata is not UTF-8"))?;
        if obs_dim == 0 || action_dim == 0 || obs_dim > u32::MAX as u64 || action_dim > 1 << 16 {
            return Err(bad(
                &path,
                format!("implausible obs_dim {obs_dim} / action_dim {action_dim}"),
            ));
        }
        let start = (HEADER_FIXED + meta_len as usize + 8) as u64;
        let end = size - FOOTER_BYTES as u64;
        file.seek(SeekFrom::Start(end)).map_err(|e| io(&path, e))?;
        let mut foot = [0u8; FOOTER_BYTES];
        file.read_exact(&mut foot).map_err(|e| io(&path, e))?;
        let truncated = || {
            bad(
                &path,
                "has no valid footer: the file is truncated or was not finished",
            )
        };
        if foot[..4] != END
            || checksum(&foot[..FOOTER_BYTES - 8])
                != u64::from_le_bytes(foot[FOOTER_BYTES - 8..].try_into().expect("8 bytes"))
        {
            return Err(truncated());
        }
        let word = |i: usize| u64::from_le_bytes(foot[4 + 8 * i..12 + 8 * i].try_into().unwrap());
        let counts = DatasetCounts {
            episodes: word(0),
            steps: word(1),
        };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io(&path, e))?;
        Ok(DatasetReader {
            path,
            file: BufReader::with_capacity(1 << 20, file),
            header: DatasetHeader {
                obs_type,
                obs_dim: obs_dim as usize,
                action_dim: action_dim as usize,
                meta,
            },
            counts,
            chain_sum: word(2),
            end,
            pos: start,
            read: DatasetCounts {
                episodes: 0,
                steps: 0,
            },
            chain: Vec::new(),
            buf: Vec::new(),
        })
    }

    /// The dataset's header.
    pub fn header(&self) -> &DatasetHeader {
        &self.header
    }

    /// The counts its footer records.
    pub fn counts(&self) -> DatasetCounts {
        self.counts
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next episode, `None` after the last (once the footer's counts and chain
    /// have been checked against what was read).
    pub fn next_episode(&mut self) -> Result<Option<EpisodeRecord>> {
        if self.pos == self.end {
            if self.read != self.counts || checksum(&self.chain) != self.chain_sum {
                return Err(bad(
                    &self.path,
                    format!(
                        "the footer records {} episodes ({} steps) but {} ({} steps) were \
                         read, or their checksums differ: records are missing or reordered",
                        self.counts.episodes,
                        self.counts.steps,
                        self.read.episodes,
                        self.read.steps
                    ),
                ));
            }
            return Ok(None);
        }
        let left = self.end - self.pos;
        let mut head = [0u8; RECORD_HEAD];
        if left < RECORD_HEAD as u64 {
            return Err(self.damaged("a record header runs into the footer"));
        }
        self.file
            .read_exact(&mut head)
            .map_err(|e| io(&self.path, e))?;
        if head[..4] != RECORD {
            return Err(self.damaged("a record does not start with its tag"));
        }
        let task = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        let h = &self.header;
        // Bytes per step: observation, action, reward, return-to-go, flags.
        let per_step = (h.obs_dim * h.obs_type.width() + 4 * h.action_dim + 4 + 4 + 1) as u64;
        let body = len.checked_mul(per_step).and_then(|b| b.checked_add(8));
        let Some(body) = body.filter(|&b| len >= 1 && b <= left - RECORD_HEAD as u64) else {
            return Err(self.damaged(&format!(
                "a record claims {len} steps, more than the file holds"
            )));
        };
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        b.extend_from_slice(&head);
        b.resize(RECORD_HEAD + body as usize, 0);
        let read = self.file.read_exact(&mut b[RECORD_HEAD..]);
        let parsed = read
            .map_err(|e| io(&self.path, e))
            .and_then(|()| self.parse(&b, task, len as usize));
        self.buf = b;
        let episode = parsed?;
        self.pos += RECORD_HEAD as u64 + body;
        self.read.episodes += 1;
        self.read.steps += len;
        Ok(Some(episode))
    }

    fn damaged(&self, what: &str) -> MemoryError {
        bad(
            &self.path,
            format!("damaged after {} episodes: {what}", self.read.episodes),
        )
    }

    fn parse(&mut self, b: &[u8], task: u32, t: usize) -> Result<EpisodeRecord> {
        let (data, sum) = b.split_at(b.len() - 8);
        let sum = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
        if checksum(data) != sum {
            return Err(self.damaged("an episode's checksum does not match"));
        }
        self.chain.extend_from_slice(&sum.to_le_bytes());
        let h = &self.header;
        let mut r = Reader::new(&data[RECORD_HEAD..]);
        let n = t * h.obs_dim;
        let obs = match h.obs_type {
            ObsType::F32 => Observations::F32(floats(r.column(n, 4, "observations")?)),
            ObsType::U8 => Observations::U8(r.take(n, "observations")?.to_vec()),
        };
        let actions = floats(r.column(t * h.action_dim, 4, "actions")?);
        let rewards = floats(r.column(t, 4, "rewards")?);
        r.column(t, 4, "returns-to-go")?;
        let flags = r.take(t, "flags")?;
        Ok(EpisodeRecord {
            task,
            obs,
            actions,
            rewards,
            terminated: flags.iter().map(|f| f & TERMINATED != 0).collect(),
            truncated: flags.iter().map(|f| f & TRUNCATED != 0).collect(),
        })
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Iterator for DatasetReader {
    type Item = Result<EpisodeRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_episode().transpose()
    }
}

/// Read every episode of `path` (for small datasets; large ones stream with
/// [`DatasetReader`]).
pub fn read_all(path: impl AsRef<Path>) -> Result<(DatasetHeader, Vec<EpisodeRecord>)> {
    let mut r = DatasetReader::open(path)?;
    let mut out = Vec::with_capacity(r.counts().episodes.min(1 << 20) as usize);
    while let Some(e) = r.next_episode()? {
        out.push(e);
    }
    Ok((r.header.clone(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(obs_type: ObsType) -> DatasetHeader {
        DatasetHeader {
            obs_type,
            obs_dim: 3,
            action_dim: 1,
            meta: r#"{"env":"test"}"#.into(),
        }
    }

    fn episode(task: u32, len: usize, seed: f32) -> EpisodeRecord {
        EpisodeRecord {
            task,
            obs: Observations::F32((0..len * 3).map(|i| seed + i as f32 * 0.5).collect()),
            actions: (0..len).map(|i| (i % 2) as f32).collect(),
            rewards: (0..len).map(|i| 1.0 + i as f32).collect(),
            terminated: (0..len).map(|i| i + 1 == len).collect(),
            truncated: vec![false; len],
        }
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "agentry-dataset-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(path: &Path, episodes: &[EpisodeRecord]) -> DatasetCounts {
        let mut w = DatasetWriter::create(path, header(ObsType::F32)).unwrap();
        for e in episodes {
            w.push(e).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn episodes_round_trip_with_returns_to_go() {
        let path = dir().join("round.agds");
        let eps = vec![episode(0, 5, 0.0), episode(3, 1, 9.0), episode(1, 17, -2.0)];
        let counts = write(&path, &eps);
        assert_eq!(
            counts,
            DatasetCounts {
                episodes: 3,
                steps: 23
            }
        );
        let (h, back) = read_all(&path).unwrap();
        assert_eq!(h, header(ObsType::F32));
        assert_eq!(back, eps);
        assert_eq!(eps[0].returns_to_go(), vec![15.0, 14.0, 12.0, 9.0, 5.0]);
        assert_eq!(eps[0].ret(), 15.0);
    }

    #[test]
    fn byte_observations_round_trip() {
        let path = dir().join("bytes.agds");
        let mut h = header(ObsType::U8);
        h.action_dim = 2;
        let e = EpisodeRecord {
            task: 7,
            obs: Observations::U8((0..12).collect()),
            actions: vec![0.5, -1.0, 0.25, 1.0, 0.0, 0.0, 1.0, 1.0],
            rewards: vec![0.0, 1.0, 0.0, 2.0],
            terminated: vec![false; 4],
            truncated: vec![false, false, false, true],
        };
        let mut w = DatasetWriter::create(&path, h.clone()).unwrap();
        w.push(&e).unwrap();
        // A record of the wrong shape is refused, and the writer stays usable.
        let mut wrong = e.clone();
        wrong.actions.pop();
        assert!(matches!(w.push(&wrong), Err(MemoryError::Length { .. })));
        w.finish().unwrap();
        let (back_h, back) = read_all(&path).unwrap();
        assert_eq!(back_h, h);
        assert_eq!(back, vec![e]);
    }

    #[test]
    fn an_unfinished_writer_leaves_nothing_behind() {
        let d = dir().join("unfinished");
        fs::create_dir_all(&d).unwrap();
        let path = d.join("never.agds");
        {
            let mut w = DatasetWriter::create(&path, header(ObsType::F32)).unwrap();
            w.push(&episode(0, 4, 0.0)).unwrap();
        }
        assert!(!path.exists());
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            0,
            "temporary file removed"
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let path = dir().join("full.agds");
        write(&path, &[episode(0, 6, 0.0), episode(1, 3, 1.0)]);
        let bytes = fs::read(&path).unwrap();
        let cut = dir().join("cut.agds");
        for len in 0..bytes.len() {
            fs::write(&cut, &bytes[..len]).unwrap();
            let result = DatasetReader::open(&cut).and_then(|mut r| {
                while r.next_episode()?.is_some() {}
                Ok(())
            });
            let err = result.expect_err("a truncated file must not read cleanly");
            assert!(
                matches!(err, MemoryError::Dataset(ref m) if m.contains("cut.agds")),
                "{err}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let path = dir().join("flip-src.agds");
        write(&path, &[episode(0, 4, 0.0), episode(1, 2, 1.0)]);
        let bytes = fs::read(&path).unwrap();
        let flipped = dir().join("flip.agds");
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            fs::write(&flipped, &b).unwrap();
            let result = DatasetReader::open(&flipped).and_then(|mut r| {
                while r.next_episode()?.is_some() {}
                Ok(())
            });
            assert!(result.is_err(), "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn a_dropped_record_is_detected_by_the_footer() {
        let path = dir().join("drop-src.agds");
        let eps = [episode(0, 2, 0.0), episode(1, 2, 1.0)];
        write(&path, &eps);
        let bytes = fs::read(&path).unwrap();
        let header_len = HEADER_FIXED + header(ObsType::F32).meta.len() + 8;
        let record_len = RECORD_HEAD + 2 * (3 * 4 + 4 + 4 + 4 + 1) + 8;
        let mut b = bytes[..header_len].to_vec();
        b.extend_from_slice(&bytes[header_len + record_len..]);
        let dropped = dir().join("dropped.agds");
        fs::write(&dropped, &b).unwrap();
        let mut r = DatasetReader::open(&dropped).unwrap();
        assert!(r.next_episode().unwrap().is_some());
        let err = r.next_episode().unwrap_err().to_string();
        assert!(err.contains("missing or reordered"), "{err}");
    }

    #[test]
    fn other_files_and_versions_are_named_errors() {
        let d = dir();
        let junk = d.join("junk.agds");
        fs::write(&junk, vec![7u8; 200]).unwrap();
        let err = DatasetReader::open(&junk).err().unwrap().to_string();
        assert!(err.contains("not an agentry dataset"), "{err}");
        let path = d.join("v.agds");
        write(&path, &[episode(0, 2, 0.0)]);
        let mut b = fs::read(&path).unwrap();
        b[4] = 9;
        fs::write(&path, &b).unwrap();
        let err = DatasetReader::open(&path).err().unwrap().to_string();
        assert!(err.contains("version 9"), "{err}");
        let err = DatasetReader::open(d.join("absent.agds"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("absent.agds"), "{err}");
    }
}
