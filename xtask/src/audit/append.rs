//! The writes: append (the one way records get in), and the two repairs
//! that remove bytes which never became a record.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::chain::{self, hex, Kind, Tip};
use super::file::{
    compare_sink, extent, forget, known, open_locked, read_all, remember, stamp, walk_file,
    write_durably,
};
use super::sink::SinkState;
use super::{actor, hostname, now_rfc3339, one_line, Entry, Log, Record};
use crate::cmd::remote::{self, HostState};
use crate::exit::{fail, Code};

impl Log {
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
        let Some(h) = self.host() else {
            return self.append_here(entry, force);
        };
        // The host's chain is the chain: the record goes on its newest
        // line, as a local append goes on the file's, even when another
        // run (a refused one records too) appended since this one read it.
        // Under the lock the mirror was brought up to it, so the first
        // try usually lands; a refused one reads the host's chain again.
        let mut moved = None;
        for _ in 0..3 {
            match self.append_here(entry.clone(), force) {
                Err(e) if e.downcast_ref::<Moved>().is_some() => moved = Some(e),
                r => return r,
            }
            // An append writes anyway: records the mirror kept while the
            // host could not be reached go up first.
            self.sync_host(true)?;
        }
        let why = moved.map_or(String::new(), |e| format!("{e:#}"));
        Err(fail(
            Code::Verify,
            format!(
                "refusing to append to the audit chain of `{}` on {}: {why}, three times; nothing was recorded: re-run",
                self.env, h.at
            ),
        ))
    }

    fn append_here(&self, entry: Entry, force: bool) -> Result<String> {
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
                        "refusing to append to {}: {b}; run `cargo xtask audit repair {} --reason TEXT` first (not even --force appends after a torn line)",
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

        // The one place records are built: no secret of the run gets in.
        let redact = crate::cmd::redact::redact;
        let mut reason = redact(&entry.reason);
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
            error: entry.error.map(|e| redact(&one_line(&e))),
            set: entry.set,
            duration_ms: entry.duration_ms,
            prev: hex(&prev),
        };
        let mut line = serde_json::to_vec(&rec).context("encoding the audit record")?;
        self.append_on_host(len, &line)?;
        line.push(b'\n');
        write_durably(&mut file, &self.path, &line, len)?;
        let head: [u8; 32] = Sha256::digest(&line[..line.len() - 1]).into();

        let mut new_sink_stamp = None;
        if let (Some(p), Some(Ok(Some(s))), true) = (&self.sink, &mut sink_file, sink_ok) {
            let slen = sink_stamp.map_or(0, |m| m.len);
            write_durably(s, p, &line, slen).with_context(|| {
                format!(
                    "mirroring to the audit sink {} (the record is in the local log; `cargo xtask audit repair {}` catches the sink up)",
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

    /// The host keeping this log's chain, if its environment is on one.
    fn host(&self) -> Option<HostState> {
        remote::host_state(self.path.parent()?)
    }

    /// For a chain kept on the environment's host: appends the record
    /// there first (the host's chain is the chain; this file mirrors it).
    /// A host that refuses (its chain moved) fails the append with nothing
    /// written; a host that cannot be reached leaves the record in the
    /// mirror only, and the next locked sync ([`Log::sync_host`]) uploads it.
    fn append_on_host(&self, len: u64, line: &[u8]) -> Result<()> {
        let Some(h) = self.host() else {
            return Ok(());
        };
        let text = std::str::from_utf8(line).context("encoding the audit record")?;
        match h.append_chain(len, text) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(anyhow::Error::new(Moved(why))),
            Err(e) => {
                eprintln!(
                    "warning: the record could not be written on {} ({e:#}); it is kept in {}, and the next deploy or rollback of `{}` uploads it",
                    h.at,
                    self.path.display(),
                    self.env
                );
                Ok(())
            }
        }
    }

    /// Brings this machine's mirror (and its sink) up to the chain on the
    /// environment's host: the host's chain must verify and extend the
    /// mirror, else exit 6 with nothing changed. Records only the mirror
    /// has (written while the host could not be reached) are uploaded when
    /// `locked` (a run that writes: under the deploy lock, or appending),
    /// else only reported (a look-up stays read-only on the host).
    /// A no-op for a log kept on this machine.
    pub fn sync_host(&self, locked: bool) -> Result<()> {
        let Some(h) = self.host() else {
            return Ok(());
        };
        let on_host = h.read_chain().map_err(|e| {
            fail(
                Code::Preflight,
                format!(
                    "the audit chain of `{}` lives on {}, which cannot be reached ({e:#}); nothing was changed: check the host, its sshd and your ssh keys",
                    self.env, h.at
                ),
            )
        })?;
        self.sync_from(&h, on_host, locked)
    }

    fn sync_from(&self, h: &HostState, on_host: Vec<u8>, locked: bool) -> Result<()> {
        let where_ = format!("{}/audit.jsonl on {}", h.dir, h.at);
        if let Err(b) = chain::check(&on_host) {
            return Err(fail(
                Code::Verify,
                format!(
                    "the audit chain {where_} does not verify: {b}; nothing was changed: investigate on the host"
                ),
            ));
        }
        let Some(mut f) = open_locked(&self.path, "state directory", !on_host.is_empty())? else {
            return Ok(());
        };
        let mine = read_all(&mut f, &self.path)?;
        if on_host.starts_with(&mine) {
            if on_host.len() > mine.len() {
                write_durably(
                    &mut f,
                    &self.path,
                    &on_host[mine.len()..],
                    mine.len() as u64,
                )?;
                forget(&self.path);
            }
        } else if mine.starts_with(&on_host) && chain::check(&mine).is_ok() {
            let extra = &mine[on_host.len()..];
            let n = extra.iter().filter(|&&c| c == b'\n').count();
            if !locked {
                eprintln!(
                    "warning: {n} record(s) of {} are not on {} yet (written while it could not be reached); the next deploy or rollback of `{}` uploads them",
                    self.path.display(),
                    h.at,
                    self.env
                );
                return Ok(());
            }
            let mut at = on_host.len() as u64;
            for l in extra.split_inclusive(|&c| c == b'\n') {
                let body = l.strip_suffix(b"\n").unwrap_or(l);
                let text = std::str::from_utf8(body).context("reading the mirror")?;
                if let Err(why) = h.append_chain(at, text)? {
                    return Err(fail(
                        Code::Verify,
                        format!("uploading the records {where_} lacks: {why}; re-run"),
                    ));
                }
                at += l.len() as u64;
            }
            eprintln!("uploaded {n} record(s) to {where_} (written while it could not be reached)");
        } else {
            return Err(fail(
                Code::Verify,
                format!(
                    "this machine's mirror {} is not a prefix of the audit chain {where_}: they diverged (tampering, or another host or host_state_dir); nothing was changed: compare them, and move the mirror aside to start again from the host's chain",
                    self.path.display()
                ),
            ));
        }
        drop(f);
        if self.sink.is_some() {
            self.catch_up_sink()?;
        }
        remote::mark_synced(self.path.parent().unwrap_or(&self.path));
        Ok(())
    }
}

/// The host's chain moved since this run read it (another run appended).
#[derive(Debug)]
struct Moved(String);

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Moved {}
