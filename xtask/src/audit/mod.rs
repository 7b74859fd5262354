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
//!
//! Layout: `chain` (the canonical scanner, the fast walk, the diagnosis of
//! a break; in the `audit-chain` crate, compiled optimized even in dev builds), `file` (locks, reads, durable writes), `append` (append and
//! repair), `sink` (comparing the mirror), `history` (what ran, derived),
//! `line` (the one-line form for people), `text` (fitting it to a
//! terminal, numbering it for `audit show`), `actor` (who and where).

pub mod actor;
mod append;
mod file;
mod history;
mod line;
mod probe;
mod sink;
mod text;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::exit::{fail, Code};
use file::{compare_sink, extent, forget, open_shared, read_all, remember, stamp, walk_file};

pub use actor::{actor, hostname, MAX_ACTOR};
pub use audit_chain::chain;
pub use audit_chain::{ImageRef, Record};
pub use chain::{check as check_bytes, diagnose, hex, parse_hex32, Break, Kind, Tip};
pub use file::create_private_dir;
pub use history::{at_or_after, since, History, RUN_CHANGING};
pub use line::{escape as escape_value, line_form, line_form_with, shown, ts_seconds};
pub use probe::{bounded_error, record_bound, MAX_ERROR};
pub use sink::SinkState;
pub use text::{columns, fit, fitted, numbered};

/// The `prev` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a task supplies; the log fills seq, ts, actor, host and prev.
#[derive(Debug, Clone)]
pub struct Entry {
    pub action: String,
    pub outcome: String,
    pub from: Option<ImageRef>,
    pub to: Option<ImageRef>,
    pub git_sha: Option<String>,
    /// The operator's reason, verbatim.
    pub reason: String,
    /// What went wrong, in the tool's words (kept apart from the reason).
    pub error: Option<String>,
    /// Blue/green: the set serving when the record was written.
    pub set: Option<String>,
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
                    "; `cargo xtask audit repair {} --reason TEXT` truncates it",
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

pub(crate) fn one_line(s: &str) -> String {
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
