//! The hash-chained audit log: append-only JSON Lines, one file per
//! environment, each record carrying the SHA-256 of the previous line's
//! exact bytes. The format is specified in docs/audit-log.md.
//!
//! This module is the only writer of the file. It appends (under an
//! exclusive lock, one write, fsync) and never rewrites; the two exceptions
//! remove bytes that never became a record: an append whose write failed
//! truncates its own partial bytes at once, and `audit repair` truncates a
//! torn last line left by a crash.
//!
//! Readers take a shared lock, so they never see half an append.

mod chain;
mod history;
mod line;
mod sink;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exit::{fail, Code};

pub use chain::{check as check_bytes, diagnose, hex, parse_hex32, Break, Kind, Tip};
pub use history::{History, RUN_CHANGING};
pub use line::{escape as escape_value, line_form, ts_seconds};
pub use sink::SinkState;

/// The `prev` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An image reference in a record: the tag, and the digest where known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// One record, fields in their fixed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub ts: String,
    pub env: String,
    pub action: String,
    pub outcome: String,
    pub from: Option<ImageRef>,
    pub to: Option<ImageRef>,
    pub git_sha: Option<String>,
    pub actor: String,
    pub host: String,
    pub reason: String,
    pub duration_ms: u64,
    pub prev: String,
}

/// What a task supplies; the log fills seq, ts, actor, host and prev.
#[derive(Debug, Clone)]
pub struct Entry {
    pub action: String,
    pub outcome: String,
    pub from: Option<ImageRef>,
    pub to: Option<ImageRef>,
    pub git_sha: Option<String>,
    pub reason: String,
    pub duration_ms: u64,
}

/// The audit log of one environment.
#[derive(Debug, Clone)]
pub struct Log {
    pub env: String,
    pub path: PathBuf,
    pub sink: Option<PathBuf>,
}

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub count: u64,
    pub head: String,
}

/// The state of a log and its sink, whether good or not.
#[derive(Debug, Clone)]
pub struct Check {
    /// The local chain: where it ends, or its first break.
    pub local: Result<Tip, Break>,
    /// The sink and how it compares with the verified part of the local log.
    pub sink: Option<(PathBuf, SinkState)>,
}

impl Check {
    /// Every problem, one line each; empty when the log and its sink are good.
    pub fn problems(&self, log: &Log) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(b) = &self.local {
            let mut m = format!("{}: {b}", log.path.display());
            if b.kind == Kind::Torn {
                m.push_str(&format!(
                    "; `cargo xtask audit repair --env {} --reason TEXT` truncates it",
                    log.env
                ));
            }
            out.push(m);
        }
        let count = extent(&self.local).1;
        if let Some((p, s)) = &self.sink {
            if !s.is_match() {
                out.push(s.describe(p, count));
            }
        }
        out
    }
}

/// Chains this process has verified or appended to, so that its next
/// append need not read them again. Invariant: the file whose metadata is
/// exactly `stamp` is the verified chain `tip`, and the sink whose metadata
/// is exactly `sink` held the same bytes. Any write to a file changes its
/// ctime and mtime, so a stamp that still matches means nobody wrote since.
#[derive(Clone)]
struct Known {
    path: PathBuf,
    stamp: Stamp,
    tip: Tip,
    sink: Option<Stamp>,
}

/// Which file, how long, and when it last changed (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(m: &std::fs::Metadata) -> Stamp {
    Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    }
}

static KNOWN: Mutex<Vec<Known>> = Mutex::new(Vec::new());

fn known(path: &Path) -> Option<Known> {
    let k = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    k.iter().find(|k| k.path == path).cloned()
}

fn remember(path: &Path, stamp: Stamp, tip: Tip, sink: Option<Stamp>) {
    let mut k = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    k.retain(|k| k.path != path);
    k.push(Known {
        path: path.to_path_buf(),
        stamp,
        tip,
        sink,
    });
}

fn forget(path: &Path) {
    KNOWN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|k| k.path != path);
}

/// The part of the local log a sink is compared with, as (bytes, lines):
/// all of it, except a torn last line (a crash artifact, never mirrored).
fn extent(local: &Result<Tip, Break>) -> (u64, u64) {
    match local {
        Ok(t) => (t.len, t.count),
        Err(b) if b.kind == Kind::Torn => (b.offset, b.line - 1),
        Err(b) => (b.offset + b.tail_len, b.lines),
    }
}

/// Opens `path` for reading under a shared lock; `None` if it does not exist.
fn open_shared(path: &Path) -> Result<Option<File>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    f.lock_shared()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(Some(f))
}

fn read_all(f: &mut File, path: &Path) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut v))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(v)
}

/// Walks the whole file: its tip, or (reading it all) its first break.
fn walk_file(f: &mut File, path: &Path) -> Result<Result<Tip, Break>> {
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
fn compare_sink(
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

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Creates `dir` and its missing parents, making each new entry durable.
fn ensure_dir(dir: &Path, what: &str) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {what} {}", dir.display()))?;
    for m in missing.iter().rev() {
        if let Some(p) = m.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(p)?;
        }
    }
    Ok(())
}

/// Opens a log file for appending and takes its exclusive lock; with
/// `create`, creates it (and its directory) where missing, else a missing
/// file is `None`.
fn open_locked(path: &Path, what: &str, create: bool) -> Result<Option<File>> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .context("audit log path has no directory")?;
    if create {
        ensure_dir(dir, what)?;
    }
    let f = match OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
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
fn write_durably(f: &mut File, path: &Path, bytes: &[u8], old_len: u64) -> Result<()> {
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

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Log {
    pub fn new(state_dir: &Path, env: &str, sink_dir: Option<&Path>) -> Log {
        Log {
            env: env.into(),
            path: state_dir.join("audit.jsonl"),
            sink: sink_dir.map(|d| d.join(format!("{env}.audit.jsonl"))),
        }
    }

    /// The chain and its sink as they stand, good or not (exit 6 is for the caller).
    pub fn check(&self) -> Result<Check> {
        let Some(mut f) = open_shared(&self.path)? else {
            let sink = self.sink.as_ref().map(|p| {
                let s = match std::fs::metadata(p) {
                    Ok(m) if m.len() == 0 => SinkState::Match { count: 0 },
                    Ok(_) => SinkState::Ahead {
                        sink_count: std::fs::read(p)
                            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        SinkState::Match { count: 0 }
                    }
                    Err(e) => SinkState::Unreachable {
                        error: e.to_string(),
                    },
                };
                (p.clone(), s)
            });
            return Ok(Check {
                local: Ok(Tip::EMPTY),
                sink,
            });
        };
        let local = walk_file(&mut f, &self.path)?;
        let len = extent(&local).0;
        let mut sink_stamp = None;
        let sink = match &self.sink {
            None => None,
            Some(p) => {
                let state = match open_shared(p) {
                    Ok(mut s) => {
                        sink_stamp = s
                            .as_ref()
                            .and_then(|s| s.metadata().ok())
                            .map(|m| stamp(&m));
                        compare_sink(&mut f, len, s.as_mut(), p)?
                    }
                    Err(e) => SinkState::Unreachable {
                        error: format!("{e:#}"),
                    },
                };
                Some((p.clone(), state))
            }
        };
        if let Ok(t) = &local {
            let sink_ok = sink.as_ref().is_none_or(|(_, s)| s.is_match());
            if sink_ok && self.sink.is_some() == sink_stamp.is_some() {
                let m = f
                    .metadata()
                    .with_context(|| format!("reading {}", self.path.display()))?;
                remember(&self.path, stamp(&m), *t, sink_stamp);
            }
        }
        Ok(Check { local, sink })
    }

    /// Drops what this process remembers of the chain, so that its next
    /// append walks the whole file again (benchmarks and tests).
    pub fn forget_verified(&self) {
        forget(&self.path);
    }

    /// Verifies the chain and compares the sink; any problem fails with exit 6.
    pub fn verify(&self) -> Result<Verified> {
        let c = self.check()?;
        let problems = c.problems(self);
        if !problems.is_empty() {
            return Err(fail(Code::Verify, problems.join("; ")));
        }
        let t = c.local.expect("no problems means the chain verified");
        Ok(Verified {
            count: t.count,
            head: t.head_hex(),
        })
    }

    /// Every record, in order, from a chain that verifies (else exit 6).
    pub fn records(&self) -> Result<Vec<Record>> {
        let Some(mut f) = open_shared(&self.path)? else {
            return Ok(Vec::new());
        };
        let bytes = read_all(&mut f, &self.path)?;
        drop(f);
        if let Err(b) = chain::check(&bytes) {
            return Err(fail(Code::Verify, format!("{}: {b}", self.path.display())));
        }
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_slice(l)
                    .with_context(|| format!("{}: line {}", self.path.display(), i + 1))
            })
            .collect()
    }

    /// Every line, read as a record where it is one, whatever the chain's
    /// state: for looking at a broken log. `Err` holds the line's text.
    pub fn lines(&self) -> Result<Vec<std::result::Result<Record, String>>> {
        let Some(mut f) = open_shared(&self.path)? else {
            return Ok(Vec::new());
        };
        let bytes = read_all(&mut f, &self.path)?;
        Ok(bytes
            .split_inclusive(|&b| b == b'\n')
            .map(|l| {
                let body = l.strip_suffix(b"\n").unwrap_or(l);
                serde_json::from_slice(body).map_err(|_| String::from_utf8_lossy(body).into_owned())
            })
            .collect())
    }

    /// The line whose SHA-256 is `head` (64 hex), if any: where an expected
    /// head sits in the chain when it is no longer the newest.
    pub fn line_of(&self, head: &str) -> Result<Option<u64>> {
        let Some(mut f) = open_shared(&self.path)? else {
            return Ok(None);
        };
        let bytes = read_all(&mut f, &self.path)?;
        Ok(bytes
            .split(|&b| b == b'\n')
            .position(|l| sha_hex(l) == head)
            .map(|i| i as u64 + 1))
    }

    /// `audit repair`: truncates exactly the torn last line that planning
    /// found (`offset`, `tail_len` of its [`Break`]), after checking under
    /// the lock that it is still exactly that. Returns the bytes removed.
    pub fn truncate_torn(&self, offset: u64, tail_len: u64) -> Result<u64> {
        let mut f = open_locked(&self.path, "state directory", false)?
            .with_context(|| format!("{} no longer exists", self.path.display()))?;
        let len = f
            .metadata()
            .with_context(|| format!("reading {}", self.path.display()))?
            .len();
        let torn = match walk_file(&mut f, &self.path)? {
            Err(b) if b.kind == Kind::Torn => b,
            Err(b) => {
                return Err(fail(
                    Code::Verify,
                    format!(
                        "{}: {b}: not a torn line; nothing was truncated",
                        self.path.display()
                    ),
                ))
            }
            Ok(_) => anyhow::bail!(
                "{} verifies now: nothing to truncate (another repair ran?)",
                self.path.display()
            ),
        };
        if torn.offset != offset || torn.tail_len != tail_len || len != offset + tail_len {
            anyhow::bail!(
                "{} changed since planning (torn line now {} bytes at offset {}); nothing was truncated: re-run",
                self.path.display(),
                torn.tail_len,
                torn.offset
            );
        }
        f.set_len(offset)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("truncating the torn line of {}", self.path.display()))?;
        forget(&self.path);
        Ok(tail_len)
    }

    /// `audit repair`: brings a sink that is missing or behind (a prefix of
    /// the local log, perhaps ending in a torn line) up to the local log.
    /// Returns the records copied. Anything else is refused (exit 6).
    pub fn catch_up_sink(&self) -> Result<u64> {
        let sink = self.sink.as_ref().context("no audit sink is configured")?;
        let mut f = open_locked(&self.path, "state directory", false)?
            .with_context(|| format!("{} no longer exists", self.path.display()))?;
        let tip = walk_file(&mut f, &self.path)?.map_err(|b| {
            fail(
                Code::Verify,
                format!(
                    "{}: {b}: the sink is only caught up from a log that verifies",
                    self.path.display()
                ),
            )
        })?;
        let mut s =
            open_locked(sink, "audit sink directory", true)?.context("opening the audit sink")?;
        let state = compare_sink(&mut f, tip.len, Some(&mut s), sink)?;
        let (sink_count, torn) = match state {
            SinkState::Match { .. } => return Ok(0),
            SinkState::Behind {
                sink_count,
                torn_bytes,
            } => (sink_count, torn_bytes),
            other => return Err(fail(Code::Verify, other.describe(sink, tip.count))),
        };
        let slen = s.metadata().context("reading the audit sink")?.len();
        let keep = slen - torn;
        if torn > 0 {
            s.set_len(keep)
                .and_then(|_| s.sync_all())
                .context("truncating the torn line of the audit sink")?;
        }
        let mut missing = Vec::new();
        f.seek(SeekFrom::Start(keep))
            .and_then(|_| (&mut f).take(tip.len - keep).read_to_end(&mut missing))
            .with_context(|| format!("reading {}", self.path.display()))?;
        write_durably(&mut s, sink, &missing, keep)?;
        forget(&self.path);
        Ok(tip.count - sink_count)
    }

    /// Appends one record and returns the new head. Refuses (exit 6) to
    /// extend a chain that does not verify or a sink that does not match,
    /// unless `force`, and then says so in the record's reason. A torn last
    /// line is refused even with `force`: `audit repair` comes first.
    pub fn append(&self, entry: Entry, force: bool) -> Result<String> {
        let mut file =
            open_locked(&self.path, "state directory", true)?.context("opening the audit log")?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading {}", self.path.display()))?;
        let len = meta.len();
        // A new chain creates its sink; an existing one needs the sink to exist.
        let mut sink_file: Option<Result<Option<File>, anyhow::Error>> = self
            .sink
            .as_ref()
            .map(|p| open_locked(p, "audit sink directory", len == 0));
        let sink_stamp = match &sink_file {
            Some(Ok(Some(s))) => Some(stamp(&s.metadata().context("reading the audit sink")?)),
            _ => None,
        };

        // Unchanged since this process verified or appended: no need to read it again.
        let base = known(&self.path)
            .filter(|k| {
                k.stamp == stamp(&meta)
                    && k.sink == sink_stamp
                    && self.sink.is_some() == sink_stamp.is_some()
            })
            .map(|k| {
                (
                    k.tip,
                    sink_stamp.map(|_| SinkState::Match { count: k.tip.count }),
                )
            });
        // Otherwise the whole chain, and the whole sink.
        let (local, sink_state) = match base {
            Some((t, s)) => (Ok(t), s),
            None => {
                let local = walk_file(&mut file, &self.path)?;
                let vlen = extent(&local).0;
                let s = match (&self.sink, &mut sink_file) {
                    (Some(p), Some(Ok(s))) => Some(compare_sink(&mut file, vlen, s.as_mut(), p)?),
                    (Some(_), Some(Err(e))) => Some(SinkState::Unreachable {
                        error: format!("{e:#}"),
                    }),
                    _ => None,
                };
                (local, s)
            }
        };

        let mut notes = Vec::new();
        let (seq, prev, chain_ok) = match &local {
            Ok(t) => (t.count + 1, t.head, true),
            Err(b) if b.kind == Kind::Torn => {
                return Err(fail(
                    Code::Verify,
                    format!(
                        "refusing to append to {}: {b}; run `cargo xtask audit repair --env {} --reason TEXT` first (not even --force appends after a torn line)",
                        self.path.display(),
                        self.env
                    ),
                ))
            }
            Err(b) if force => {
                eprintln!("warning: appending to an audit chain that does not verify (--force): {b}");
                notes.push(format!("forced past audit break: {b}"));
                let bytes = read_all(&mut file, &self.path)?;
                let last = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                let last = &last[last.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1)..];
                let mut with_nl = last.to_vec();
                with_nl.push(b'\n');
                let lines = bytes.iter().filter(|&&c| c == b'\n').count() as u64;
                let seq = chain::scan(&with_nl).map(|s| s.seq).unwrap_or(lines).max(lines) + 1;
                (seq, Sha256::digest(last).into(), false)
            }
            Err(b) => {
                return Err(fail(
                    Code::Verify,
                    format!(
                        "refusing to append to {}: {b}; investigate (`cargo xtask audit verify`), or pass --force --reason TEXT (recorded)",
                        self.path.display()
                    ),
                ))
            }
        };
        let sink_ok = match (&self.sink, &sink_state) {
            (Some(p), Some(s)) if !s.is_match() => {
                let msg = s.describe(p, seq - 1);
                if !force {
                    return Err(fail(
                        Code::Verify,
                        format!("refusing to append to {}: {msg}; investigate, or pass --force --reason TEXT (recorded)", self.path.display()),
                    ));
                }
                eprintln!("warning: the audit sink is not written (--force): {msg}");
                notes.push(format!("forced: sink not written: {msg}"));
                false
            }
            _ => true,
        };

        let mut reason = entry.reason;
        for n in &notes {
            reason.push_str(&format!(" [{}]", one_line(n)));
        }
        let rec = Record {
            seq,
            ts: now_rfc3339(),
            env: self.env.clone(),
            action: entry.action,
            outcome: entry.outcome,
            from: entry.from,
            to: entry.to,
            git_sha: entry.git_sha,
            actor: actor(),
            host: hostname(),
            reason,
            duration_ms: entry.duration_ms,
            prev: hex(&prev),
        };
        let mut line = serde_json::to_vec(&rec).context("encoding the audit record")?;
        line.push(b'\n');
        write_durably(&mut file, &self.path, &line, len)?;
        let head: [u8; 32] = Sha256::digest(&line[..line.len() - 1]).into();

        let mut new_sink_stamp = None;
        if let (Some(p), Some(Ok(Some(s))), true) = (&self.sink, &mut sink_file, sink_ok) {
            let slen = sink_stamp.map_or(0, |m| m.len);
            write_durably(s, p, &line, slen).with_context(|| {
                format!(
                    "mirroring to the audit sink {} (the record is in the local log; `cargo xtask audit repair --env {}` catches the sink up)",
                    p.display(),
                    self.env
                )
            })?;
            new_sink_stamp = Some(stamp(&s.metadata().context("reading the audit sink")?));
        }
        if chain_ok && sink_ok {
            let tip = Tip {
                count: seq,
                head,
                len: len + line.len() as u64,
            };
            let m = file
                .metadata()
                .with_context(|| format!("reading {}", self.path.display()))?;
            remember(&self.path, stamp(&m), tip, new_sink_stamp);
        } else {
            forget(&self.path);
        }
        Ok(hex(&head))
    }
}

pub fn sha_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&f)
        .expect("formatting a UTC timestamp")
}

/// Who is acting: the CI actor where CI names one, else `$USER`; the source is recorded.
pub fn actor() -> String {
    for var in [
        "GITHUB_ACTOR",
        "GITEA_ACTOR",
        "FORGEJO_ACTOR",
        "CI_COMMIT_AUTHOR",
        "USER",
        "LOGNAME",
    ] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return format!("{} ({var})", one_line(v.trim()));
            }
        }
    }
    "unknown (no CI actor or USER set)".into()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
