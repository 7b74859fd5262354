//! The hash-chained audit log: append-only JSON Lines, one file per
//! environment, each record carrying the SHA-256 of the previous line's
//! exact bytes. The format is specified in docs/audit-log.md.
//!
//! This module is the only writer of the file. It appends (under an
//! exclusive lock, one write, fsync) and it never rewrites.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exit::{fail, Code};

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

impl Log {
    pub fn new(state_dir: &Path, env: &str, sink_dir: Option<&Path>) -> Log {
        Log {
            env: env.into(),
            path: state_dir.join("audit.jsonl"),
            sink: sink_dir.map(|d| d.join(format!("{env}.audit.jsonl"))),
        }
    }

    /// Every record, in order. A missing file is an empty log.
    pub fn records(&self) -> Result<Vec<Record>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        walk(&bytes).map(|(recs, _)| recs)
    }

    /// Walks the whole chain; a break fails with exit 6 naming the line.
    pub fn verify(&self) -> Result<Verified> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let (recs, head) = walk(&bytes).with_context(|| format!("audit log {}", self.path.display()))?;
        Ok(Verified { count: recs.len() as u64, head })
    }

    /// Appends one record and returns the new head. Refuses (exit 6) to extend
    /// a chain that does not verify, unless `force`.
    pub fn append(&self, entry: Entry, force: bool) -> Result<String> {
        let dir = self.path.parent().context("audit log path has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        file.lock().with_context(|| format!("locking {}", self.path.display()))?;
        let bytes = std::fs::read(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        let (seq, prev) = match walk(&bytes) {
            Ok((recs, head)) => (recs.len() as u64 + 1, head),
            Err(e) if force => {
                eprintln!("warning: appending to a chain that does not verify (--force): {e:#}");
                (last_seq(&bytes) + 1, sha_hex(last_line(&bytes)))
            }
            Err(e) => {
                return Err(fail(
                    Code::Verify,
                    format!("refusing to append to {}: {e:#}; investigate, or pass --force --reason", self.path.display()),
                ))
            }
        };
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
            reason: entry.reason,
            duration_ms: entry.duration_ms,
            prev,
        };
        let mut line = serde_json::to_vec(&rec)?;
        line.push(b'\n');
        file.write_all(&line).with_context(|| format!("appending to {}", self.path.display()))?;
        file.sync_all().with_context(|| format!("syncing {}", self.path.display()))?;
        if let Some(sink) = &self.sink {
            mirror(sink, &line).with_context(|| format!("mirroring to audit sink {}", sink.display()))?;
        }
        Ok(sha_hex(&line[..line.len() - 1]))
    }
}

fn mirror(sink: &Path, line: &[u8]) -> Result<()> {
    if let Some(d) = sink.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut f: File = OpenOptions::new().append(true).create(true).open(sink)?;
    f.lock()?;
    f.write_all(line)?;
    f.sync_all()?;
    Ok(())
}

fn last_line(bytes: &[u8]) -> &[u8] {
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    match trimmed.iter().rposition(|&b| b == b'\n') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

fn last_seq(bytes: &[u8]) -> u64 {
    serde_json::from_slice::<Record>(last_line(bytes)).map(|r| r.seq).unwrap_or(0)
}

/// Parses and checks the chain; returns the records and the head.
fn walk(bytes: &[u8]) -> Result<(Vec<Record>, String)> {
    let mut recs = Vec::new();
    let mut prev = GENESIS.to_string();
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let Some(line) = line.strip_suffix(b"\n") else {
            return Err(fail(Code::Verify, format!("line {n}: torn (no newline: a write was cut short)")));
        };
        let rec: Record = serde_json::from_slice(line)
            .map_err(|e| fail(Code::Verify, format!("line {n}: not JSON ({e})")))?;
        if rec.prev != prev {
            return Err(fail(Code::Verify, format!("line {n}: prev mismatch (a record was modified, deleted or reordered)")));
        }
        if rec.seq != n as u64 {
            return Err(fail(Code::Verify, format!("line {n}: seq gap (seq {} where {n} was expected)", rec.seq)));
        }
        prev = sha_hex(line);
        recs.push(rec);
    }
    Ok((recs, prev))
}

pub fn sha_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time::OffsetDateTime::now_utc().format(&f).expect("formatting a UTC timestamp")
}

/// Who is acting: the CI actor where CI names one, else `$USER`; the source is recorded.
pub fn actor() -> String {
    for var in ["GITHUB_ACTOR", "GITEA_ACTOR", "FORGEJO_ACTOR", "CI_COMMIT_AUTHOR", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return format!("{} ({var})", v.trim());
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

/// Deploy history derived from the chain: the one source of truth.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub records: Vec<Record>,
}

/// Actions that change what runs.
const RUN_CHANGING: [&str; 3] = ["deploy", "rollback", "promote"];

impl History {
    pub fn new(records: Vec<Record>) -> History {
        History { records }
    }

    /// Successful run-changing records, oldest first.
    pub fn deployments(&self) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .filter(|r| RUN_CHANGING.contains(&r.action.as_str()) && r.outcome == "success")
    }

    /// The tag running now: the target of the last successful deploy or rollback.
    pub fn current(&self) -> Option<&str> {
        self.deployments().last().and_then(|r| r.to.as_ref()).map(|r| r.tag.as_str())
    }

    /// The rollback target: the last successfully deployed tag before the current one.
    pub fn previous_good(&self) -> Option<&str> {
        let current = self.current()?;
        let deps: Vec<&Record> = self.deployments().collect();
        // Walk back past the current version; the run of records that put it
        // there may be several long (a redeploy of the same tag).
        deps.iter()
            .rev()
            .filter_map(|r| r.to.as_ref().map(|t| t.tag.as_str()))
            .find(|t| *t != current)
    }

    /// Was `tag` ever deployed successfully here?
    pub fn deployed_ok(&self, tag: &str) -> bool {
        self.deployments().any(|r| r.to.as_ref().is_some_and(|t| t.tag == tag))
    }

    /// Is there a passing `action` record (e.g. security-modes-test) for `tag`?
    pub fn has_evidence(&self, action: &str, tag: &str) -> bool {
        self.records
            .iter()
            .any(|r| r.action == action && r.outcome == "success" && r.to.as_ref().is_some_and(|t| t.tag == tag))
    }
}
