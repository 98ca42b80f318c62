//! The checkpoint container: named binary sections in one file, versioned and
//! checksummed, written atomically.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic     8 bytes  b"AGENTRY\0"
//! version   u32      FORMAT_VERSION
//! kind      u32 len + UTF-8   what the file holds ("ppo-learner", "ppo-policy", ...)
//! count     u32      number of sections
//! section   u32 name len + UTF-8 name, u64 payload len + payload   (count times)
//! checksum  u64      FNV-1a 64 of every byte before it
//! ```
//!
//! A reader checks the magic, the version, every length against the bytes that remain
//! (so a damaged length cannot make it allocate more than the file holds) and the
//! checksum, and names the file and the first thing wrong. A writer writes
//! `NAME.tmp`, syncs it and renames it over `NAME`, so a crash leaves the previous file
//! or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::AgentError;

/// The first eight bytes of every agentry checkpoint and policy file.
pub const MAGIC: &[u8; 8] = b"AGENTRY\0";
/// The container version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The sections of one file, in the order they were written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sections {
    /// What the file holds.
    pub kind: String,
    entries: Vec<(String, Vec<u8>)>,
}

impl Sections {
    /// An empty container of `kind`.
    pub fn new(kind: impl Into<String>) -> Self {
        Sections {
            kind: kind.into(),
            entries: Vec::new(),
        }
    }

    /// Add (or replace) section `name`.
    pub fn put(&mut self, name: &str, bytes: Vec<u8>) -> &mut Self {
        if let Some(e) = self.entries.iter_mut().find(|(n, _)| n == name) {
            e.1 = bytes;
        } else {
            self.entries.push((name.to_string(), bytes));
        }
        self
    }

    /// Section `name`, if present.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// Take section `name` out, or say which file lacks it.
    pub fn take(&mut self, name: &str, path: &Path) -> Result<Vec<u8>, AgentError> {
        match self.entries.iter().position(|(n, _)| n == name) {
            Some(i) => Ok(self.entries.remove(i).1),
            None => Err(AgentError::checkpoint(
                path,
                format!("section `{name}` is missing (a {} file)", self.kind),
            )),
        }
    }

    /// Section `name` as UTF-8 text.
    pub fn text(&self, name: &str, path: &Path) -> Result<&str, AgentError> {
        let bytes = self.get(name).ok_or_else(|| {
            AgentError::checkpoint(
                path,
                format!("section `{name}` is missing (a {} file)", self.kind),
            )
        })?;
        std::str::from_utf8(bytes).map_err(|_| {
            AgentError::checkpoint(path, format!("section `{name}` is not UTF-8 text"))
        })
    }

    /// The section names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The whole file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .entries
            .iter()
            .map(|(n, b)| 12 + n.len() + b.len())
            .sum();
        let mut out = Vec::with_capacity(32 + self.kind.len() + size);
        self.encode_to(&mut out)
            .expect("writing into a Vec does not fail");
        out
    }

    /// Writes [`encode`](Self::encode)'s bytes to `w` piece by piece, so that a file of
    /// large sections (a replay memory of frames) is never held twice in memory.
    fn encode_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut sum = Fnv1a64::new();
        let mut put = |w: &mut _, bytes: &[u8]| -> std::io::Result<()> {
            sum.update(bytes);
            Write::write_all(w, bytes)
        };
        put(w, MAGIC)?;
        put(w, &FORMAT_VERSION.to_le_bytes())?;
        put(w, &(self.kind.len() as u32).to_le_bytes())?;
        put(w, self.kind.as_bytes())?;
        put(w, &(self.entries.len() as u32).to_le_bytes())?;
        for (name, bytes) in &self.entries {
            put(w, &(name.len() as u32).to_le_bytes())?;
            put(w, name.as_bytes())?;
            put(w, &(bytes.len() as u64).to_le_bytes())?;
            put(w, bytes)?;
        }
        w.write_all(&sum.finish().to_le_bytes())
    }

    /// Parse a whole file's bytes; `path` only names the file in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Sections, AgentError> {
        let bad = |m: String| AgentError::checkpoint(path, m);
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad(
                "not an agentry checkpoint or policy file (wrong magic bytes)".into(),
            ));
        }
        let mut r = Reader {
            bytes,
            at: MAGIC.len(),
        };
        let version = r.u32().ok_or_else(|| bad(truncated(bytes.len())))?;
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "written in container format version {version}; this build reads version \
                 {FORMAT_VERSION}"
            )));
        }
        if bytes.len() < MAGIC.len() + 4 + 8 {
            return Err(bad(truncated(bytes.len())));
        }
        let body = &bytes[..bytes.len() - 8];
        let stored = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().expect("8 bytes"));
        let mut r = Reader {
            bytes: body,
            at: r.at,
        };
        let kind = r.string().ok_or_else(|| bad(truncated(bytes.len())))?;
        let count = r.u32().ok_or_else(|| bad(truncated(bytes.len())))?;
        let mut out = Sections::new(kind);
        for i in 0..count {
            let name = r
                .string()
                .ok_or_else(|| bad(format!("{} (in section {i})", truncated(bytes.len()))))?;
            let len = r
                .u64()
                .ok_or_else(|| bad(format!("{} (in section `{name}`)", truncated(bytes.len()))))?;
            let payload = r.take(len).ok_or_else(|| {
                bad(format!(
                    "{} (section `{name}` claims {len} bytes)",
                    truncated(bytes.len())
                ))
            })?;
            out.entries.push((name, payload.to_vec()));
        }
        if r.at != body.len() {
            return Err(bad(format!(
                "{} bytes follow the last section: the file is damaged",
                body.len() - r.at
            )));
        }
        if fnv1a64(body) != stored {
            return Err(bad("checksum mismatch: the file is damaged".into()));
        }
        Ok(out)
    }

    /// Read and check `path`.
    pub fn read(path: &Path) -> Result<Sections, AgentError> {
        let bytes = fs::read(path).map_err(|e| AgentError::io(path, e))?;
        Sections::decode(&bytes, path)
    }

    /// Read `path` and require it to hold `kind`.
    pub fn read_kind(path: &Path, kind: &str) -> Result<Sections, AgentError> {
        let s = Sections::read(path)?;
        if s.kind != kind {
            return Err(AgentError::checkpoint(
                path,
                format!("holds a {} record, expected a {kind} record", s.kind),
            ));
        }
        Ok(s)
    }

    /// Write to `path` atomically (temporary file, sync, rename), streaming the
    /// sections rather than encoding the file in memory first.
    pub fn write_atomic(&self, path: &Path) -> Result<(), AgentError> {
        write_atomic_with(path, |f| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            self.encode_to(&mut w)?;
            w.flush()
        })
    }
}

fn truncated(len: usize) -> String {
    format!("truncated: the file ends after {len} bytes")
}

/// Write `bytes` to `path` through `path.tmp` and a rename; the directory entry is
/// synced too where the platform allows it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the contents written by `write`.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<(), AgentError> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        write(&mut f)?;
        fault_delay();
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent()
            && let Ok(d) = fs::File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        AgentError::io(path, e)
    })
}

/// Fault injection for the crash tests: with `AGENTRY_FAULT_WRITE_DELAY_MS=N` in the
/// environment, every atomic write pauses N ms between writing its temporary file and
/// renaming it, so that a `kill -9` lands inside a write often. Unset (always, outside
/// tests), it costs one lookup per process.
fn fault_delay() {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("AGENTRY_FAULT_WRITE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis)
    });
    if let Some(d) = delay {
        std::thread::sleep(*d);
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let n = self.u32()?;
        String::from_utf8(self.take(n as u64)?.to_vec()).ok()
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a64::new();
    h.update(bytes);
    h.finish()
}

/// 64-bit FNV-1a over bytes given in pieces.
struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sections {
        let mut s = Sections::new("test-record");
        s.put("meta", b"{\"a\":1}".to_vec());
        s.put("blob", (0..=255u8).collect());
        s
    }

    #[test]
    fn round_trips() {
        let s = sample();
        let back = Sections::decode(&s.encode(), Path::new("x")).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.names().collect::<Vec<_>>(), ["meta", "blob"]);
        // The file written section by section holds exactly the encoded bytes.
        let path = std::env::temp_dir().join(format!("agentry-sections-{}", std::process::id()));
        s.write_atomic(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), s.encode());
        assert_eq!(Sections::read(&path).unwrap(), s);
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            let e = Sections::decode(&bytes[..cut], Path::new("ck.agentry")).unwrap_err();
            assert!(e.to_string().contains("ck.agentry"), "{e}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(
                Sections::decode(&b, Path::new("x")).is_err(),
                "flip at {i} went unnoticed"
            );
        }
    }

    #[test]
    fn version_and_kind_mismatches_say_so() {
        let mut bytes = sample().encode();
        bytes[8] = 9;
        let e = Sections::decode(&bytes, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 9"), "{e}");

        let dir = std::env::temp_dir().join(format!("agentry-ck-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.agentry");
        sample().write_atomic(&path).unwrap();
        assert!(!tmp_path(&path).exists());
        let e = Sections::read_kind(&path, "ppo-learner")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a ppo-learner record"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_huge_claimed_length_does_not_allocate() {
        let mut bytes = sample().encode();
        // The first section's payload length sits after magic, version, kind, count, name.
        let at = 8 + 4 + 4 + "test-record".len() + 4 + 4 + "meta".len();
        bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = Sections::decode(&bytes, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
