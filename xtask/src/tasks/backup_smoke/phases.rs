//! The phases that make and move the data: the work directory, leftovers,
//! the server check, the concurrent writers, dump, manifest, table of
//! contents and restore.

use std::io::Read;
use std::time::Instant;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::copy::{self, Field};
use super::report::{Manifest, MANIFEST_FORMAT};
use super::run::Smoke;
use super::target;
use super::verify::Head;
use crate::cmd;
use crate::exit::{fail, Code};

impl Smoke {
    pub(super) fn prepare(&mut self) -> Result<()> {
        // Armed first: a half-made directory is removed too.
        self.cleanup.armed = true;
        match &self.s.embedded {
            Some(e) => e.prepare(self.s.password.as_deref().unwrap_or_default())?,
            None => target::make_private_dir(&self.s.dir)?,
        }
        self.prepared = Some(Instant::now());
        Ok(())
    }

    pub(super) fn clean_leftovers(&mut self) -> Result<()> {
        if let Some(e) = &self.s.embedded {
            for d in &self.s.leftover_dirs {
                let old = target::Embedded {
                    dir: d.clone(),
                    ..e.clone()
                };
                if old.data().join("postmaster.pid").exists() {
                    if let Err(err) = self.cmd(&old.stop()) {
                        self.report.warnings.push(format!(
                            "stopping the leftover cluster in {}: {err:#}",
                            d.display()
                        ));
                    }
                }
                std::fs::remove_dir_all(d)
                    .with_context(|| format!("removing leftover {}", d.display()))?;
                self.report.warnings.push(format!(
                    "removed the leftover {} (--destructive)",
                    d.display()
                ));
            }
            return Ok(());
        }
        for db in self.stale_scratch()? {
            self.cmd(&self.s.drop_db(&db))?;
            self.report.warnings.push(format!(
                "dropped the leftover scratch database {db} (--destructive)"
            ));
        }
        Ok(())
    }

    pub(super) fn stale_scratch(&self) -> Result<Vec<String>> {
        let out = self.data(&self.s.list_scratch())?;
        let names: Vec<String> = out.lines().map(str::to_string).collect();
        Ok(target::stale_scratch(&names))
    }

    pub(super) fn server(&mut self) -> Result<()> {
        if let (Some(p), Some(_)) = (self.prepared, &self.s.embedded) {
            self.report.time("boot", p.elapsed().as_millis() as u64);
        }
        let out = self.data(&self.s.server_lookup())?;
        let f: [Field<'_>; 3] =
            copy::fields(out.trim_end().as_bytes()).context("server version")?;
        let text = |i: usize| {
            f[i].as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        self.server_version_num = text(0).parse().unwrap_or(0);
        self.report.server_version = Some(text(1));
        if self.server_version_num < 130_000 {
            return Err(fail(
                Code::Preflight,
                format!(
                    "PostgreSQL {} is too old: backup-smoke needs 13 or newer",
                    text(1)
                ),
            ));
        }
        if text(2) != "t" {
            return Err(fail(
                Code::Preflight,
                "the role may not CREATE DATABASE: backup-smoke works only in scratch databases of its own; grant CREATEDB to the role, or use the embedded default",
            ));
        }
        if self.s.embedded.is_none() && !self.s.destructive {
            let stale = self.stale_scratch()?;
            if !stale.is_empty() {
                self.report.warnings.push(format!(
                    "{} scratch database(s) left by interrupted runs ({}): left alone; --destructive drops them",
                    stale.len(),
                    stale.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The concurrent writers, all started at once; the head row's lock
    /// puts their rows in one order.
    pub(super) fn concurrent_writers(&mut self) -> Result<()> {
        let src = self.s.db("src");
        let running: Vec<cmd::Running> = (0..)
            .map(|i| self.s.writer_sql(i))
            .take_while(|p| p.exists())
            .map(|p| cmd::start(&self.s.files(&src, &[p]), self.s.verbose))
            .collect::<Result<_>>()
            .context("starting the concurrent writers")?;
        // Wait for every writer before judging any, so none is left running.
        let results: Vec<Result<String>> = running
            .into_iter()
            .map(|r| r.wait(self.s.verbose))
            .collect();
        for r in results {
            r.context("a concurrent writer failed")?;
        }
        Ok(())
    }

    pub(super) fn dump(&mut self) -> Result<()> {
        let src = self.s.db("src");
        self.cmd(&self.s.pg_dump(&src))
            .map_err(|e| not_verified(e, |e| format!("pg_dump failed: {e:#}")))?;
        Ok(())
    }

    pub(super) fn write_manifest(&mut self) -> Result<()> {
        let before = self
            .before
            .as_ref()
            .context("no verified chain to describe")?;
        let dump = self.s.dump_file();
        let m = Manifest {
            format: MANIFEST_FORMAT.into(),
            profile: self.report.profile.clone(),
            rows: before.total,
            head: before.head.as_ref().map(Head::value).unwrap_or_default(),
            last_row_hash: before.last.hash.clone(),
            chain_digest: before.chain_digest.clone(),
            dump_file: dump
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dump_sha256: file_sha256(&dump)?,
            created: crate::audit::now_rfc3339(),
        };
        let path = self.s.manifest_file();
        std::fs::write(&path, serde_json::to_string_pretty(&m)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        self.report.manifest = Some(m.clone());
        self.manifest = Some(m);
        Ok(())
    }

    pub(super) fn list(&mut self) -> Result<()> {
        let dump = self.s.dump_file();
        let toc = self.cmd(&self.s.pg_restore_list()).map_err(|e| {
            not_verified(e, |e| {
                format!("pg_restore --list cannot read {}: {e:#}", dump.display())
            })
        })?;
        let has = |kind: &str, name: &str| {
            toc.lines()
                .any(|l| l.contains(kind) && l.split_whitespace().any(|w| w == name))
        };
        let mut missing = Vec::new();
        for (kind, name) in [
            ("TABLE DATA", "audit_events"),
            ("TABLE DATA", "audit_chain_head"),
            ("TRIGGER", "audit_events"),
        ] {
            if !has(kind, name) {
                missing.push(format!("{kind} {name}"));
            }
        }
        let entries = toc
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .count();
        let pass = missing.is_empty();
        let detail = if pass {
            format!("{entries} entries, with the data of audit_events and audit_chain_head and the chain trigger")
        } else {
            format!("{entries} entries, missing {}", missing.join(", "))
        };
        self.report.check("dump-listed", pass, detail);
        Ok(())
    }

    pub(super) fn restore(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        match self.cmd(&self.s.pg_restore(&restored)) {
            Ok(_) => {
                self.report.check(
                    "restored",
                    true,
                    format!("pg_restore --exit-on-error into the fresh database {restored}"),
                );
                Ok(())
            }
            Err(e) if interrupted(&e) => Err(e),
            Err(e) => {
                self.report.check("restored", false, format!("{e:#}"));
                Err(fail(
                    Code::Verify,
                    format!("the dump does not restore: {e:#}"),
                ))
            }
        }
    }
}

/// Was the work cut short by a signal? (Then it is no verdict on the backup.)
pub(super) fn interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<cmd::Interrupted>())
}

/// A failure that says the backup does not verify (exit 6), unless a
/// signal stopped the command: that stays an interruption, for the
/// executor to record as one.
pub(super) fn not_verified(
    e: anyhow::Error,
    what: impl FnOnce(&anyhow::Error) -> String,
) -> anyhow::Error {
    if interrupted(&e) {
        e
    } else {
        fail(Code::Verify, what(&e))
    }
}

/// SHA-256 of a file, streamed (a production dump can be large).
pub(super) fn file_sha256(path: &std::path::Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    Ok(sha.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
