//! File handling under the log's locks: opening, reading, durable writes,
//! and what this process remembers of the chains it verified.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::chain::{self, Break, Kind, Tip};
use super::sink::{self, SinkState};

/// Chains this process has verified or appended to, so that its next
/// append need not read them again. Invariant: the file whose metadata is
/// exactly `stamp` is the verified chain `tip`, and the sink whose metadata
/// is exactly `sink` held the same bytes. Any write to a file changes its
/// ctime and mtime, so a stamp that still matches means nobody wrote since.
#[derive(Clone)]
pub(super) struct Known {
    path: PathBuf,
    pub stamp: Stamp,
    pub tip: Tip,
    pub sink: Option<Stamp>,
}

/// Which file, how long, and when it last changed (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    pub len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

pub(super) fn stamp(m: &std::fs::Metadata) -> Stamp {
    Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    }
}

static KNOWN: Mutex<Vec<Known>> = Mutex::new(Vec::new());

pub(super) fn known(path: &Path) -> Option<Known> {
    let k = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    k.iter().find(|k| k.path == path).cloned()
}

pub(super) fn remember(path: &Path, stamp: Stamp, tip: Tip, sink: Option<Stamp>) {
    let mut k = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    k.retain(|k| k.path != path);
    k.push(Known {
        path: path.to_path_buf(),
        stamp,
        tip,
        sink,
    });
}

pub(super) fn forget(path: &Path) {
    KNOWN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|k| k.path != path);
}

/// The part of the local log a sink is compared with, as (bytes, lines):
/// all of it, except a torn last line (a crash artifact, never mirrored).
pub(super) fn extent(local: &Result<Tip, Break>) -> (u64, u64) {
    match local {
        Ok(t) => (t.len, t.count),
        Err(b) if b.kind == Kind::Torn => (b.offset, b.line - 1),
        Err(b) => (b.offset + b.tail_len, b.lines),
    }
}

/// Opens `path` for reading under a shared lock; `None` if it does not exist.
pub(super) fn open_shared(path: &Path) -> Result<Option<File>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    f.lock_shared()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(Some(f))
}

pub(super) fn read_all(f: &mut File, path: &Path) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut v))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(v)
}

/// Walks the whole file: its tip, or (reading it all) its first break.
pub(super) fn walk_file(f: &mut File, path: &Path) -> Result<Result<Tip, Break>> {
    f.seek(SeekFrom::Start(0))
        .with_context(|| format!("reading {}", path.display()))?;
    match chain::walk_reader(f, Tip::EMPTY)
        .with_context(|| format!("reading {}", path.display()))?
    {
        Ok(t) => Ok(Ok(t)),
        Err(()) => Ok(Err(chain::diagnose(&read_all(f, path)?))),
    }
}

/// Compares the first `local_len` bytes of `local` with the sink at `path`
/// (`None`: the sink file does not exist).
pub(super) fn compare_sink(
    local: &mut File,
    local_len: u64,
    sink: Option<&mut File>,
    path: &Path,
) -> Result<SinkState> {
    let Some(s) = sink else {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        return Ok(if local_len == 0 {
            SinkState::Match { count: 0 }
        } else if dir.is_some_and(|d| !d.is_dir()) {
            SinkState::Unreachable {
                error: "its directory does not exist (not mounted?)".into(),
            }
        } else {
            SinkState::Missing
        });
    };
    local.seek(SeekFrom::Start(0))?;
    s.seek(SeekFrom::Start(0))?;
    let r = sink::compare(&mut local.take(local_len), s, path);
    r.with_context(|| format!("comparing {} with the sink", path.display()))
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Creates `dir` and its missing parents, making each new entry durable.
pub(super) fn ensure_dir(dir: &Path, what: &str) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    create_private_dir(dir).with_context(|| format!("creating {what} {}", dir.display()))?;
    for m in missing.iter().rev() {
        if let Some(p) = m.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(p)?;
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents, each new one owner-only (0700,
/// whatever the umask): the state directories hold the audit log and lock.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens a log file for appending and takes its exclusive lock; with
/// `create`, creates it (and its directory) where missing, else a missing
/// file is `None`.
pub(super) fn open_locked(path: &Path, what: &str, create: bool) -> Result<Option<File>> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .context("audit log path has no directory")?;
    if create {
        ensure_dir(dir, what)?;
    }
    // Owner-only from its first byte (0600: the umask can only take bits away).
    let f = match OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("opening {} for appending", path.display()))
        }
    };
    let m = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !m.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    f.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(Some(f))
}

/// Appends `bytes` with one write and fsync; a failed write is undone.
pub(super) fn write_durably(f: &mut File, path: &Path, bytes: &[u8], old_len: u64) -> Result<()> {
    if let Err(e) = f.write_all(bytes) {
        let undo = f.set_len(old_len).and_then(|_| f.sync_all());
        return Err(match undo {
            Ok(()) => anyhow::Error::new(e)
                .context(format!("appending to {}: nothing was recorded (the partial write was removed)", path.display())),
            Err(u) => anyhow::Error::new(e).context(format!(
                "appending to {}: the partial write could not be removed ({u}); the log now ends in a torn line: run `cargo xtask audit repair`",
                path.display()
            )),
        });
    }
    f.sync_all().with_context(|| {
        format!(
            "syncing {} (the record was written but may not be durable)",
            path.display()
        )
    })?;
    if old_len == 0 {
        // The first record: make the file's directory entry durable too.
        if let Some(d) = path.parent() {
            sync_dir(d)?;
        }
    }
    Ok(())
}
