//! The smoke's actions: what the executor calls for each `Step::Action` of
//! the plan. Every check records its result in the [`Report`] and the run
//! goes on, so one report names every failure; the `report` step then fails
//! with exit 6. A dump or restore that fails stops the run (exit 6 too:
//! that backup does not restore). Teardown also runs from `Drop`, so the
//! embedded cluster and scratch databases go away on every path.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::copy::{self, Field};
use super::negative::{self, ChainRow};
use super::report::{self, Control, Finding, Manifest, Report, Speeds, MANIFEST_FORMAT};
use super::verify::{self, Head, Outcome};
use super::{target, Setup, KAT_TZ, OTHER_TZ};
use crate::audit::{Entry, ImageRef};
use crate::exec::{run_command, Actions};
use crate::exit::{fail, Code};
use crate::flags::{Format, Profile};
use crate::plan::{Command, Effect};

fn export_rows(p: Profile) -> &'static str {
    match p {
        Profile::Default => "COPY (SELECT seq, id, occurred_at, actor, actor_type, action, resource_type, resource_id, details, event_category, prev_hash, row_hash FROM public.audit_events) TO STDOUT",
        Profile::Certctl => "COPY (SELECT NULL::bigint, id::text, \"timestamp\", actor, actor_type, action, resource_type, resource_id, details::text, event_category, prev_hash, row_hash FROM public.audit_events) TO STDOUT",
    }
}

fn export_head(p: Profile) -> &'static str {
    match p {
        Profile::Default => "COPY (SELECT seq, row_hash FROM public.audit_chain_head WHERE id = 1) TO STDOUT",
        Profile::Certctl => "COPY (SELECT NULL::bigint, row_hash FROM public.audit_chain_head WHERE id = 1) TO STDOUT",
    }
}

fn sql_verifier(p: Profile) -> &'static str {
    match p {
        Profile::Default => "COPY (SELECT * FROM audit_verify.verify_chain()) TO STDOUT",
        Profile::Certctl => "COPY (SELECT * FROM audit_verify.certctl_verify_chain()) TO STDOUT",
    }
}

const TRIGGERS: &str = "COPY (SELECT c.relname, t.tgname, t.tgenabled, (t.tgtype & 7) = 7 \
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'public' AND c.relname IN ('audit_events', 'audit_chain_head') AND NOT t.tgisinternal \
     ORDER BY 1, 2) TO STDOUT";

/// The triggers our own schema must still have after a restore.
fn expected_triggers(p: Profile) -> &'static [&'static str] {
    match p {
        Profile::Default => &[
            "audit_events.zz_audit_events_chain",
            "audit_events.audit_events_append_only",
            "audit_events.audit_events_no_truncate",
            "audit_chain_head.audit_chain_head_guard",
            "audit_chain_head.audit_chain_head_no_truncate",
        ],
        Profile::Certctl => &["audit_events.zz_audit_events_chain"],
    }
}

/// What the SQL verifier function returned, as an [`Outcome`].
pub fn parse_sql_outcome(p: Profile, out: &[u8]) -> Result<Outcome> {
    let line = copy::lines(out)
        .next()
        .context("the SQL verifier returned no row")?;
    let s = |f: &Field<'_>| {
        f.as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let n = |f: &Field<'_>| -> Result<Option<i64>> {
        s(f).map(|v| {
            v.parse::<i64>()
                .with_context(|| format!("not a number: {v}"))
        })
        .transpose()
    };
    let brk = |at: Option<String>, kind: Option<String>, detail: Option<String>| {
        kind.map(|kind| verify::Break {
            at,
            kind,
            detail: detail.unwrap_or_default(),
        })
    };
    Ok(match p {
        Profile::Default => {
            let f: [Field<'_>; 9] = copy::fields(line).context("SQL verifier output")?;
            Outcome {
                walked: n(&f[0])?.unwrap_or(0) as u64,
                total: n(&f[1])?.unwrap_or(0) as u64,
                head: s(&f[3]).map(|hash| Head {
                    seq: n(&f[2]).ok().flatten(),
                    hash,
                }),
                last: Head {
                    seq: n(&f[4])?,
                    hash: s(&f[5]).unwrap_or_default(),
                },
                brk: brk(s(&f[6]), s(&f[7]), s(&f[8])),
                chain_digest: String::new(),
                published_order_breaks: None,
                order: Vec::new(),
            }
        }
        Profile::Certctl => {
            let f: [Field<'_>; 8] = copy::fields(line).context("SQL verifier output")?;
            Outcome {
                walked: n(&f[0])?.unwrap_or(0) as u64,
                total: n(&f[1])?.unwrap_or(0) as u64,
                head: s(&f[2]).map(|hash| Head { seq: None, hash }),
                last: Head {
                    seq: None,
                    hash: s(&f[3]).unwrap_or_default(),
                },
                brk: brk(s(&f[4]), s(&f[5]), s(&f[6])),
                chain_digest: String::new(),
                published_order_breaks: n(&f[7])?.map(|v| v as u64),
                order: Vec::new(),
            }
        }
    })
}

/// The same verdict on the same chain (ignoring the order rows were exported in).
fn same(a: &Outcome, b: &Outcome) -> bool {
    (a.total, a.walked, &a.head, &a.last, &a.brk, &a.chain_digest)
        == (b.total, b.walked, &b.head, &b.last, &b.brk, &b.chain_digest)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A Rust verification: the outcome, its rows in chain order, and its costs.
struct RustRun {
    outcome: Outcome,
    chain: Vec<ChainRow>,
    export: Duration,
    verify: Duration,
    /// The first exported timestamp, to show which zone the export ran in.
    sample_ts: Option<String>,
}

/// Removes what the run made, once, on success or failure.
struct Cleanup {
    armed: bool,
    embedded: Option<target::Embedded>,
    drops: Option<Command>,
    dir: PathBuf,
    verbose: bool,
}

impl Cleanup {
    fn run(&mut self) -> Vec<String> {
        if !std::mem::take(&mut self.armed) {
            return Vec::new();
        }
        let mut problems = Vec::new();
        if let Some(e) = &self.embedded {
            if e.data().join("postmaster.pid").exists() {
                if let Err(err) = run_command(&e.stop(), self.verbose) {
                    problems.push(format!("stopping the embedded cluster: {err:#}"));
                }
            }
        } else if let Some(d) = &self.drops {
            if let Err(err) = run_command(d, self.verbose) {
                problems.push(format!("dropping the scratch databases: {err:#}"));
            }
        }
        if self.dir.exists() {
            if let Err(err) = std::fs::remove_dir_all(&self.dir) {
                problems.push(format!("removing {}: {err}", self.dir.display()));
            }
        }
        problems
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in self.run() {
            eprintln!("warning: teardown: {p}");
        }
    }
}

/// The state of one smoke run; the executor calls [`Actions::run`] for each action step.
pub struct Smoke {
    pub s: Setup,
    pub report: Report,
    cleanup: Cleanup,
    printed: bool,
    started: Instant,
    prepared: Option<Instant>,
    server_version_num: u32,
    /// The chain as verified before the dump.
    before: Option<Outcome>,
    manifest: Option<Manifest>,
    /// The restored chain, from the Rust verifier.
    after: Option<RustRun>,
}

impl Smoke {
    pub fn new(s: Setup) -> Smoke {
        let names: Vec<String> = ["kat", "src", "restored"]
            .iter()
            .map(|n| n.to_string())
            .chain((1..=12).map(|i| format!("n{i}")))
            .map(|n| s.db(&n))
            .collect();
        let drops = s.embedded.is_none().then(|| {
            let stmts: Vec<String> = names
                .iter()
                .map(|n| format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"))
                .collect();
            let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
            s.psql(&s.conn.maintenance_db, Effect::Mutating, &refs)
        });
        let report = Report {
            task: "backup-smoke".into(),
            profile: format!("{:?}", s.profile).to_lowercase(),
            target: s.target_label(),
            rows_requested: s.dump.is_none().then_some(s.rows),
            dump: s.dump.as_ref().map(|d| d.display().to_string()),
            ..Report::default()
        };
        let cleanup = Cleanup {
            armed: false,
            embedded: s.embedded.clone(),
            drops,
            dir: s.dir.clone(),
            verbose: s.verbose,
        };
        Smoke {
            s,
            report,
            cleanup,
            printed: false,
            started: Instant::now(),
            prepared: None,
            server_version_num: 0,
            before: None,
            manifest: None,
            after: None,
        }
    }

    /// Prints the report once: by the `report` step, or after a failure that stopped the run.
    pub fn print_report(&mut self, err: Option<&anyhow::Error>) {
        if self.printed {
            return;
        }
        self.printed = true;
        if let Some(e) = err {
            if self.report.error.is_none() {
                self.report.error = Some(format!("{e:#}"));
            }
        }
        self.report.finish();
        if self.s.quiet {
            return;
        }
        match self.s.format {
            Format::Json => println!(
                "{}",
                serde_json::to_string(&self.report).unwrap_or_default()
            ),
            Format::Text => print!("{}", self.report.text()),
        }
        if std::env::var_os("GITHUB_ACTIONS").is_some() {
            for f in self.report.failures() {
                eprintln!("::error::backup-smoke: {}", f.replace('\n', " "));
            }
        }
    }

    fn cmd(&self, c: &Command) -> Result<String> {
        run_command(c, self.s.verbose)
    }

    /// Runs a command whose output is data (not echoed even with --verbose).
    fn data(&self, c: &Command) -> Result<String> {
        if self.s.verbose {
            eprintln!("$ {}", c.display());
        }
        run_command(c, false)
    }

    fn sql_verify(&self, db: &str, tz: &str) -> Result<(Outcome, Duration)> {
        let t = Instant::now();
        let out = self.data(&self.s.psql_tz(
            db,
            tz,
            Effect::ReadOnly,
            &[sql_verifier(self.s.profile)],
        ))?;
        let took = t.elapsed();
        Ok((parse_sql_outcome(self.s.profile, out.as_bytes())?, took))
    }

    fn rust_verify(&self, db: &str, tz: &str) -> Result<RustRun> {
        let t = Instant::now();
        let rows = self.data(&self.s.psql_tz(
            db,
            tz,
            Effect::ReadOnly,
            &[export_rows(self.s.profile)],
        ))?;
        let head = self.data(&self.s.psql_tz(
            db,
            tz,
            Effect::ReadOnly,
            &[export_head(self.s.profile)],
        ))?;
        let export = t.elapsed();
        let t = Instant::now();
        let links = verify::parse_and_check(self.s.profile, rows.as_bytes())?;
        let head = verify::parse_head(head.as_bytes())?;
        let outcome = verify::walk(self.s.profile, &links, head.as_ref());
        let verify = t.elapsed();
        let chain = outcome
            .order
            .iter()
            .map(|&i| {
                let l = &links[i];
                ChainRow {
                    id: String::from_utf8_lossy(&l.id).into_owned(),
                    seq: l.seq,
                    ts_micros: l.ts_micros,
                    row_hash: String::from_utf8_lossy(&l.row_hash).into_owned(),
                }
            })
            .collect();
        let sample_ts = copy::lines(rows.as_bytes())
            .next()
            .and_then(|l| copy::fields::<{ verify::col::COUNT }>(l).ok())
            .and_then(|f| {
                f[verify::col::TS]
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            });
        Ok(RustRun {
            outcome,
            chain,
            export,
            verify,
            sample_ts,
        })
    }

    fn prepare(&mut self) -> Result<()> {
        // Armed first: a half-made directory is removed too.
        self.cleanup.armed = true;
        match &self.s.embedded {
            Some(e) => e.prepare(self.s.password.as_deref().unwrap_or_default())?,
            None => target::make_private_dir(&self.s.dir)?,
        }
        self.prepared = Some(Instant::now());
        Ok(())
    }

    fn clean_leftovers(&mut self) -> Result<()> {
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

    fn stale_scratch(&self) -> Result<Vec<String>> {
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

    fn server(&mut self) -> Result<()> {
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

    fn known_answer(&mut self) -> Result<()> {
        let kat = self.s.db("kat");
        let file = self.s.kat_sql();
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("-- known-answer-head:"))
            .map(|h| h.trim().to_string())
            .with_context(|| format!("{} has no `-- known-answer-head:` line", file.display()))?;
        let sql = self.cmd(&self.s.files_tz(&kat, KAT_TZ, &[file.clone()]));
        let rust = self.rust_verify(&kat, KAT_TZ)?;
        let got = rust
            .outcome
            .head
            .as_ref()
            .map(Head::value)
            .unwrap_or_default();
        let mut problems = Vec::new();
        if let Err(e) = &sql {
            problems.push(format!("the trigger under TimeZone {KAT_TZ}: {e:#}"));
        }
        if !rust.outcome.clean() || rust.outcome.last.value() != expected {
            problems.push(format!(
                "the Rust verifier reached {got} ({})",
                report::verdict(&rust.outcome)
            ));
        }
        let detail = if problems.is_empty() {
            format!(
                "{} rows give head {expected} in SQL (TimeZone {KAT_TZ}) and in Rust",
                rust.outcome.total
            )
        } else {
            format!("expected head {expected}: {}", problems.join("; "))
        };
        self.report
            .check("known-answer", problems.is_empty(), detail);
        Ok(())
    }

    fn workload(&mut self) -> Result<()> {
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
                let h = expression(&c)
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

    fn verify_before(&mut self) -> Result<()> {
        let src = self.s.db("src");
        let (sql, _) = self.sql_verify(&src, "UTC")?;
        let rust = self.rust_verify(&src, "UTC")?;
        let o = &rust.outcome;
        let pass = sql.clean() && o.clean() && o.total == u64::from(self.s.rows);
        self.report.check(
            "verified-before-dump",
            pass,
            format!(
                "{} rows written; SQL: {}; Rust: {}",
                o.total,
                report::verdict(&sql),
                report::verdict(o)
            ),
        );
        if let Some(b) = o.published_order_breaks.filter(|&b| b > 0) {
            self.report.warnings.push(format!(
                "{b} rows are out of (timestamp, id) order: a verifier that walks the published certctl order reports {b} false breaks on this sound chain"
            ));
        }
        self.before = Some(rust.outcome);
        Ok(())
    }

    fn dump(&mut self) -> Result<()> {
        let src = self.s.db("src");
        self.cmd(&self.s.pg_dump(&src))
            .map_err(|e| fail(Code::Verify, format!("pg_dump failed: {e:#}")))?;
        Ok(())
    }

    fn write_manifest(&mut self) -> Result<()> {
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

    fn list(&mut self) -> Result<()> {
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

    fn restore(&mut self) -> Result<()> {
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

    /// The manifest to compare against: ours, or the one beside `--dump FILE`.
    fn reference(&self) -> Result<Option<Manifest>> {
        let path = match &self.s.dump_manifest {
            Some(p) => p.clone(),
            None if self.s.dump.is_none() => self.s.manifest_file(),
            None => return Ok(None),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the manifest {}", path.display()))?;
        let m: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("parsing the manifest {}", path.display()))?;
        Ok(Some(m))
    }

    fn assert_restored(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        let (sql, sql_took) = self.sql_verify(&restored, "UTC")?;
        let rust = self.rust_verify(&restored, "UTC")?;
        let o = &rust.outcome;
        let head = o.head.as_ref().map(Head::value);
        let reference = self.reference()?;
        let dump_sha = file_sha256(&self.s.dump_file())?;
        let r = &mut self.report;
        if self.s.dump.is_some() {
            // What this dump holds, in manifest form: keep it beside the dump
            // as FILE.manifest.json, and the next run compares against it.
            r.manifest = Some(Manifest {
                format: MANIFEST_FORMAT.into(),
                profile: r.profile.clone(),
                rows: o.total,
                head: head.clone().unwrap_or_default(),
                last_row_hash: o.last.hash.clone(),
                chain_digest: o.chain_digest.clone(),
                dump_file: self
                    .s
                    .dump_file()
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dump_sha256: dump_sha.clone(),
                created: crate::audit::now_rfc3339(),
            });
        }

        match &reference {
            Some(m) => {
                r.check(
                    "count-equal",
                    o.total == m.rows,
                    format!("{} rows in the manifest, {} restored", m.rows, o.total),
                );
                let same_head = head.as_deref() == Some(m.head.as_str());
                r.check(
                    "head-byte-exact",
                    same_head && sql.head == o.head,
                    format!(
                        "manifest {} vs restored {}",
                        m.head,
                        head.as_deref().unwrap_or("(no head row)")
                    ),
                );
            }
            None => {
                r.skip(
                    "count-equal",
                    "no manifest beside the dump: nothing to compare the count with",
                );
                r.skip(
                    "head-byte-exact",
                    "no manifest beside the dump: nothing to compare the head with",
                );
            }
        }
        // The last row in chain order, whether or not the walk got there.
        let last_row = match rust.chain.last() {
            Some(c) => Head {
                seq: c.seq,
                hash: c.row_hash.clone(),
            },
            None => o.last.clone(),
        };
        r.check(
            "head-is-last-row",
            o.head.as_ref() == Some(&last_row),
            format!(
                "head {} / last row {}",
                head.as_deref().unwrap_or("(none)"),
                last_row.value()
            ),
        );
        r.check(
            "sql-verifier-clean",
            sql.clean() && sql.total == o.total,
            report::verdict(&sql),
        );
        let agree = o.clean() && sql.walked == o.walked && sql.last == o.last && sql.head == o.head;
        r.check(
            "rust-verifier-agrees",
            agree,
            format!(
                "Rust recomputed every row: {}; SQL said {}",
                report::verdict(o),
                report::verdict(&sql)
            ),
        );
        match &reference {
            Some(m) => {
                let mut diffs = Vec::new();
                for (what, want, got) in [
                    ("rows", m.rows.to_string(), o.total.to_string()),
                    ("head", m.head.clone(), head.clone().unwrap_or_default()),
                    (
                        "last_row_hash",
                        m.last_row_hash.clone(),
                        o.last.hash.clone(),
                    ),
                    (
                        "chain_digest",
                        m.chain_digest.clone(),
                        o.chain_digest.clone(),
                    ),
                    ("dump_sha256", m.dump_sha256.clone(), dump_sha),
                ] {
                    if want != got {
                        diffs.push(format!("{what} {want} != {got}"));
                    }
                }
                let detail = if diffs.is_empty() {
                    format!(
                        "rows, head, last row hash, chain digest {} and dump SHA-256 {} all match",
                        short(&m.chain_digest),
                        short(&m.dump_sha256)
                    )
                } else {
                    diffs.join("; ")
                };
                r.check("manifest-matches", diffs.is_empty(), detail);
            }
            None => r.skip("manifest-matches", "no manifest beside the dump"),
        }
        if let Some(b) = o.published_order_breaks.filter(|&b| b > 0) {
            if self.before.is_none() {
                r.warnings.push(format!("{b} rows are out of (timestamp, id) order: a verifier that walks the published certctl order reports {b} false breaks on this chain"));
            }
        }
        r.verifier_speeds = Some(Speeds::new(
            o.total,
            ms(sql_took),
            ms(rust.export),
            ms(rust.verify),
        ));
        r.after_sql = Some(sql);
        r.after_rust = Some(o.clone());
        r.time(
            "verify",
            (sql_took + rust.export + rust.verify).as_millis() as u64,
        );
        self.check_triggers(&restored)?;
        self.after = Some(rust);
        Ok(())
    }

    fn check_triggers(&mut self, db: &str) -> Result<()> {
        let out = self.data(&self.s.psql(db, Effect::ReadOnly, &[TRIGGERS]))?;
        let mut names = Vec::new();
        let mut disabled = Vec::new();
        let mut before_insert = false;
        for line in copy::lines(out.as_bytes()) {
            let f: [Field<'_>; 4] = copy::fields(line).context("trigger list")?;
            let t = |i: usize| {
                f[i].as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let name = format!("{}.{}", t(0), t(1));
            let enabled = matches!(t(2).as_str(), "O" | "A");
            if !enabled {
                disabled.push(format!("{name} (tgenabled {})", t(2)));
            }
            before_insert |= enabled && t(0) == "audit_events" && t(3) == "t";
            names.push(name);
        }
        // Our own schema's trigger names are known; a certctl dump's are not.
        let ours = self.s.profile == Profile::Default || self.s.dump.is_none();
        let missing: Vec<&str> = if ours {
            expected_triggers(self.s.profile)
                .iter()
                .copied()
                .filter(|n| !names.iter().any(|x| x == n))
                .collect()
        } else {
            Vec::new()
        };
        let pass = disabled.is_empty() && missing.is_empty() && before_insert;
        let mut detail = format!(
            "{} triggers, all enabled; a BEFORE INSERT row trigger chains audit_events",
            names.len()
        );
        if !pass {
            detail = format!(
                "disabled: [{}]; missing: [{}]; enabled BEFORE INSERT row trigger on audit_events: {}",
                disabled.join(", "),
                missing.join(", "),
                if before_insert { "yes" } else { "no" }
            );
        }
        self.report.check("triggers-enabled", pass, detail);
        Ok(())
    }

    fn assert_timezone(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        let zone = self.data(&self.s.psql_tz(
            &restored,
            OTHER_TZ,
            Effect::ReadOnly,
            &["SHOW TimeZone"],
        ))?;
        let (sql, sql_took) = self.sql_verify(&restored, OTHER_TZ)?;
        let rust = self.rust_verify(&restored, OTHER_TZ)?;
        // The second measurement of both verifiers on the same rows: keep the best of each.
        if let Some(sp) = &mut self.report.verifier_speeds {
            *sp = Speeds::new(
                sp.rows,
                sp.sql_ms.min(ms(sql_took)),
                sp.export_ms.min(ms(rust.export)),
                sp.rust_ms.min(ms(rust.verify)),
            );
        }
        let (Some(utc_sql), Some(utc_rust)) = (self.report.after_sql.as_ref(), self.after.as_ref())
        else {
            bail!("the UTC results are missing");
        };
        let zone = zone.trim();
        let pass =
            zone == OTHER_TZ && same(&sql, utc_sql) && same(&rust.outcome, &utc_rust.outcome);
        self.report.check(
            "timezone-invariant",
            pass,
            format!(
                "session TimeZone {zone} (rows export as {}): SQL {}, Rust {} (identical to UTC: SQL {}, Rust {})",
                rust.sample_ts.as_deref().unwrap_or("-"),
                report::verdict(&sql),
                report::verdict(&rust.outcome),
                same(&sql, utc_sql),
                same(&rust.outcome, &utc_rust.outcome)
            ),
        );
        Ok(())
    }

    fn negative_controls(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        let after = self.after.as_ref().context("no restored chain")?;
        let reference = self.reference()?.context("no manifest")?;
        let controls = negative::controls(self.s.profile, &after.chain);
        // FILE_COPY copies the files (fast for a big template); WAL_LOG is 15's default.
        let strategy = if self.server_version_num >= 150_000 {
            " STRATEGY FILE_COPY"
        } else {
            ""
        };
        let mut done = Vec::new();
        for (i, t) in controls.into_iter().enumerate() {
            let copy = self.s.db(&format!("n{}", i + 1));
            let create = format!("CREATE DATABASE \"{copy}\" TEMPLATE \"{restored}\"{strategy}");
            self.cmd(
                &self
                    .s
                    .psql(&self.s.conn.maintenance_db, Effect::Mutating, &[&create]),
            )?;
            let sql_refs: Vec<&str> = t.sql.iter().map(String::as_str).collect();
            self.cmd(&self.s.psql(&copy, Effect::Mutating, &sql_refs))
                .with_context(|| format!("damaging the copy for {}", t.name))?;
            let (sql, _) = self.sql_verify(&copy, "UTC")?;
            let rust = self.rust_verify(&copy, "UTC")?.outcome;
            self.cmd(&self.s.drop_db(&copy))?;
            let mut diffs = Vec::new();
            let head = rust.head.as_ref().map(Head::value).unwrap_or_default();
            for (what, want, got) in [
                ("rows", reference.rows.to_string(), rust.total.to_string()),
                ("head", reference.head.clone(), head),
                (
                    "chain digest",
                    reference.chain_digest.clone(),
                    rust.chain_digest.clone(),
                ),
            ] {
                if want != got {
                    diffs.push(if what == "rows" {
                        format!("{got} rows, manifest says {want}")
                    } else {
                        format!("{what} differs")
                    });
                }
            }
            let findings = vec![
                Finding {
                    check: "sql-verifier".into(),
                    caught: !sql.clean(),
                    detail: report::verdict(&sql),
                },
                Finding {
                    check: "rust-verifier".into(),
                    caught: !rust.clean(),
                    detail: report::verdict(&rust),
                },
                Finding {
                    check: "manifest".into(),
                    caught: !diffs.is_empty(),
                    detail: if diffs.is_empty() {
                        "matches".into()
                    } else {
                        diffs.join(", ")
                    },
                },
            ];
            let detected = findings.iter().any(|f| f.caught);
            done.push(Control {
                tamper: t,
                detected,
                findings,
            });
        }
        self.report.negative_controls = done;
        Ok(())
    }

    fn assert_append(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        let old = self
            .report
            .after_rust
            .clone()
            .context("no restored chain")?;
        let insert = match self.s.profile {
            Profile::Default => "COPY (INSERT INTO audit_events (actor, actor_type, action, resource_type, resource_id, details, event_category) \
                 VALUES ('xtask backup-smoke', 'system', 'backup.restore-verified', 'database', current_database(), '{\"verified\": true}', 'backup') \
                 RETURNING seq, prev_hash, row_hash) TO STDOUT"
                .to_string(),
            Profile::Certctl => format!(
                "COPY (INSERT INTO audit_events (id, actor, actor_type, action, resource_type, resource_id, details, event_category) \
                 VALUES ('xtask-backup-smoke-{}', 'xtask backup-smoke', 'system', 'backup.restore-verified', 'database', current_database(), '{{\"verified\": true}}', 'backup') \
                 RETURNING NULL::bigint, prev_hash, row_hash) TO STDOUT",
                self.s.run_id
            ),
        };
        let out = match self.cmd(&self.s.psql(&restored, Effect::Mutating, &[&insert])) {
            Ok(o) => o,
            Err(e) => {
                self.report.check(
                    "append-chains",
                    false,
                    format!("appending a row failed: {e:#}"),
                );
                return Ok(());
            }
        };
        let f: [Field<'_>; 3] =
            copy::fields(out.trim_end_matches('\n').as_bytes()).context("the appended row")?;
        let t = |i: usize| {
            f[i].as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let (seq, prev, hash) = (t(0), t(1).unwrap_or_default(), t(2).unwrap_or_default());
        let old_head = old.head.clone().unwrap_or(Head {
            seq: None,
            hash: String::new(),
        });
        let (sql, _) = self.sql_verify(&restored, "UTC")?;
        let mut problems = Vec::new();
        if prev != old_head.hash {
            problems.push(format!(
                "its prev_hash {} is not the old head {}",
                short(&prev),
                short(&old_head.hash)
            ));
        }
        if let (Some(s), Some(h)) = (&seq, old_head.seq) {
            if s.parse::<i64>().ok() != Some(h + 1) {
                problems.push(format!("its seq {s} does not follow the old head's {h}"));
            }
        }
        if !sql.clean()
            || sql.total != old.total + 1
            || sql.last.hash != hash
            || sql.head.as_ref().map(|h| &h.hash) != Some(&hash)
        {
            problems.push(format!(
                "after the append the SQL verifier says {}",
                report::verdict(&sql)
            ));
        }
        let detail = if problems.is_empty() {
            format!(
                "the new row{} chains onto {} and the head moved to it; {}",
                seq.map(|s| format!(" (seq {s})")).unwrap_or_default(),
                short(&old_head.hash),
                report::verdict(&sql)
            )
        } else {
            problems.join("; ")
        };
        self.report
            .check("append-chains", problems.is_empty(), detail);
        Ok(())
    }

    fn report_step(&mut self) -> Result<()> {
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

    fn record_evidence(&mut self) -> Result<()> {
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
            git_sha: crate::git_sha(),
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

impl Actions for Smoke {
    fn run(&mut self, id: &str) -> Result<()> {
        let t = Instant::now();
        let r = match id {
            "prepare" => self.prepare(),
            "clean-leftovers" => self.clean_leftovers(),
            "server" => self.server(),
            "known-answer" => self.known_answer(),
            "workload" => self.workload(),
            "verify-before" => self.verify_before(),
            "dump" => self.dump(),
            "manifest" => self.write_manifest(),
            "list" => self.list(),
            "restore" => self.restore(),
            "assert-restored" => self.assert_restored(),
            "assert-timezone" => self.assert_timezone(),
            "negative-controls" => self.negative_controls(),
            "assert-append" => self.assert_append(),
            "teardown" => {
                for p in self.cleanup.run() {
                    self.report.warnings.push(format!("teardown: {p}"));
                }
                Ok(())
            }
            "report" => return self.report_step(),
            "record-evidence" => self.record_evidence(),
            other => bail!("backup-smoke has no action `{other}`"),
        };
        let phase = match id {
            "known-answer" | "workload" | "dump" | "restore" | "negative-controls" | "teardown" => {
                Some(id)
            }
            "verify-before" => Some("verify-before"),
            "assert-timezone" => Some("timezone"),
            "assert-append" => Some("append"),
            _ => None,
        };
        if let Some(p) = phase {
            self.report.time(p, t.elapsed().as_millis() as u64);
        }
        // A check that cannot even run on the restored data (a table or
        // column missing, the wrong --profile) is a failed verification.
        let checking = [
            "known-answer",
            "verify-before",
            "assert-restored",
            "assert-timezone",
            "negative-controls",
            "assert-append",
        ];
        match r {
            Err(e) if checking.contains(&id) && crate::exit::code_of(&e) == Code::Error => {
                Err(fail(Code::Verify, format!("{id} could not run: {e:#}")))
            }
            r => r,
        }
    }
}

fn short(h: &str) -> String {
    h.chars().take(12).collect()
}

/// SHA-256 of a file, streamed (a production dump can be large).
pub fn file_sha256(path: &std::path::Path) -> Result<String> {
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

/// The duct expression of a plan command (as `run_command` builds it).
fn expression(c: &Command) -> duct::Expression {
    let mut e = duct::cmd(&c.program, &c.args);
    for v in &c.env {
        e = e.env(&v.name, v.value.expose());
    }
    if let Some(dir) = &c.cwd {
        e = e.dir(dir);
    }
    e
}
