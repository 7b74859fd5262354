//! The phases that make and move the data: the work directory, leftovers,
//! the server check, the workload, dump, manifest, table of contents,
//! restore, and at the end the report and the audit record of a pass.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::copy::{self, Field};
use super::report::{Manifest, MANIFEST_FORMAT};
use super::run::{file_sha256, Smoke};
use super::target;
use super::verify::Head;
use crate::audit::{Entry, ImageRef};
use crate::exit::{fail, Code};
use crate::plan::{Command, Effect};

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
        let q = format!(
            "COPY (SELECT datname FROM pg_database WHERE starts_with(datname, '{}')) TO STDOUT",
            target::PREFIX
        );
        let out = self.data(
            &self
                .s
                .psql(&self.s.conn.maintenance_db, Effect::ReadOnly, &[&q]),
        )?;
        let names: Vec<String> = out.lines().map(str::to_string).collect();
        Ok(target::stale_scratch(&names))
    }

    pub(super) fn server(&mut self) -> Result<()> {
        if let (Some(p), Some(_)) = (self.prepared, &self.s.embedded) {
            self.report.time("boot", p.elapsed().as_millis() as u64);
        }
        let q = "COPY (SELECT current_setting('server_version_num'), current_setting('server_version'), \
                 (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user)) TO STDOUT";
        let out = self.data(
            &self
                .s
                .psql(&self.s.conn.maintenance_db, Effect::ReadOnly, &[q]),
        )?;
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

    pub(super) fn workload(&mut self) -> Result<()> {
        let src = self.s.db("src");
        self.cmd(&self.s.files(&src, &[self.s.dir.join("workload.sql")]))?;
        let writers: Vec<Command> = (0..)
            .map(|i| self.s.dir.join(format!("writer-{i}.sql")))
            .take_while(|p| p.exists())
            .map(|p| self.s.files(&src, &[p]))
            .collect();
        // All writers start at once; the head row's lock puts their rows in one order.
        let running: Vec<(Command, duct::Handle)> = writers
            .into_iter()
            .map(|c| {
                if self.s.verbose {
                    eprintln!("$ {} &", c.display());
                }
                let h = super::run::expression(&c)
                    .stdout_capture()
                    .stderr_capture()
                    .unchecked()
                    .start();
                h.map(|h| (c, h))
            })
            .collect::<std::io::Result<_>>()
            .context("starting the concurrent writers")?;
        for (c, h) in running {
            let out = h
                .wait()
                .with_context(|| format!("waiting for `{}`", c.display()))?;
            if !out.status.success() {
                bail!(
                    "concurrent writer `{}` failed: {}",
                    c.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }

    pub(super) fn dump(&mut self) -> Result<()> {
        let src = self.s.db("src");
        self.cmd(&self.s.pg_dump(&src))
            .map_err(|e| fail(Code::Verify, format!("pg_dump failed: {e:#}")))?;
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
        let toc = self.cmd(&self.s.pg_restore_list()).map_err(|e| {
            fail(
                Code::Verify,
                format!(
                    "pg_restore --list cannot read {}: {e:#}",
                    self.s.dump_file().display()
                ),
            )
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
            Err(e) => {
                self.report.check("restored", false, format!("{e:#}"));
                Err(fail(
                    Code::Verify,
                    format!("the dump does not restore: {e:#}"),
                ))
            }
        }
    }

    pub(super) fn report_step(&mut self) -> Result<()> {
        self.report
            .time("total", self.started.elapsed().as_millis() as u64);
        self.print_report(None);
        let failures = self.report.failures();
        if self.report.ok {
            return Ok(());
        }
        let n = failures.len().max(1);
        Err(fail(
            Code::Verify,
            format!(
                "backup-smoke: {n} check(s) failed: {}",
                failures.join(" | ")
            ),
        ))
    }

    pub(super) fn record_evidence(&mut self) -> Result<()> {
        let Some((log, tag)) = &self.s.evidence else {
            return Ok(());
        };
        let o = self.report.after_rust.as_ref();
        let entry = Entry {
            action: "backup-smoke".into(),
            outcome: "success".into(),
            from: None,
            to: Some(ImageRef {
                tag: tag.clone(),
                digest: None,
            }),
            git_sha: crate::repo::git_sha(),
            reason: format!(
                "profile {}, {} rows restored byte-exact, head {}",
                self.report.profile,
                o.map_or(0, |o| o.total),
                o.and_then(|o| o.head.as_ref())
                    .map(Head::value)
                    .unwrap_or_default()
            ),
            duration_ms: self.started.elapsed().as_millis() as u64,
        };
        let head = log.append(entry, false)?;
        eprintln!(
            "recorded backup-smoke success for {tag} in {} (head {head})",
            log.path.display()
        );
        Ok(())
    }
}
