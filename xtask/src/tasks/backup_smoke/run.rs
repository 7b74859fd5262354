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

use super::copy;
use super::negative::ChainRow;
use super::report::{Manifest, Report};
use super::sql;
use super::verify::{self, Outcome};
use super::{target, Setup};
use crate::cmd::run as run_command;
use crate::exec::Actions;
use crate::exit::{fail, Code};
use crate::flags::Format;
use crate::plan::{Command, Effect};

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A Rust verification: the outcome, its rows in chain order, and its costs.
pub(super) struct RustRun {
    pub(super) outcome: Outcome,
    pub(super) chain: Vec<ChainRow>,
    pub(super) export: Duration,
    pub(super) verify: Duration,
    /// The first exported timestamp, to show which zone the export ran in.
    pub(super) sample_ts: Option<String>,
}

/// Removes what the run made, once, on success or failure.
pub(super) struct Cleanup {
    pub(super) armed: bool,
    embedded: Option<target::Embedded>,
    drops: Option<Command>,
    dir: PathBuf,
    verbose: bool,
}

impl Cleanup {
    pub(super) fn run(&mut self) -> Vec<String> {
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
    // Also runs while unwinding, possibly because stderr went away: nothing
    // here may panic again (that would abort and leave the cluster running).
    fn drop(&mut self) {
        use std::io::Write as _;
        self.verbose = false;
        for p in self.run() {
            let _ = writeln!(std::io::stderr(), "warning: teardown: {p}");
        }
    }
}

/// The state of one smoke run; the executor calls [`Actions::run`] for each action step.
pub struct Smoke {
    pub s: Setup,
    pub report: Report,
    pub(super) cleanup: Cleanup,
    printed: bool,
    pub(super) started: Instant,
    pub(super) prepared: Option<Instant>,
    pub(super) server_version_num: u32,
    /// The chain as verified before the dump.
    pub(super) before: Option<Outcome>,
    pub(super) manifest: Option<Manifest>,
    /// The restored chain, from the Rust verifier.
    pub(super) after: Option<RustRun>,
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
            Format::Json => crate::out::merge(serde_json::json!({ "report": self.report })),
            Format::Text => print!("{}", self.report.text()),
        }
        if std::env::var_os("GITHUB_ACTIONS").is_some() {
            for f in self.report.failures() {
                eprintln!("::error::backup-smoke: {}", f.replace('\n', " "));
            }
        }
    }

    pub(super) fn cmd(&self, c: &Command) -> Result<String> {
        run_command(c, self.s.verbose)
    }

    /// Runs a command whose output is data (not echoed even with --verbose).
    pub(super) fn data(&self, c: &Command) -> Result<String> {
        if self.s.verbose {
            eprintln!("$ {}", c.display());
        }
        run_command(c, false)
    }

    pub(super) fn sql_verify(&self, db: &str, tz: &str) -> Result<(Outcome, Duration)> {
        let t = Instant::now();
        let out = self.data(&self.s.psql_tz(
            db,
            tz,
            Effect::ReadOnly,
            &[sql::sql_verifier(self.s.profile)],
        ))?;
        let took = t.elapsed();
        Ok((
            sql::parse_sql_outcome(self.s.profile, out.as_bytes())?,
            took,
        ))
    }

    pub(super) fn rust_verify(&self, db: &str, tz: &str) -> Result<RustRun> {
        let t = Instant::now();
        let rows = self.data(&self.s.psql_tz(
            db,
            tz,
            Effect::ReadOnly,
            &[sql::export_rows(self.s.profile)],
        ))?;
        let head = self.data(&self.s.psql_tz(
            db,
            tz,
            Effect::ReadOnly,
            &[sql::export_head(self.s.profile)],
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

pub(super) fn short(h: &str) -> String {
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
pub(super) fn expression(c: &Command) -> duct::Expression {
    let mut e = duct::cmd(&c.program, &c.args);
    for v in &c.env {
        e = e.env(&v.name, v.value.expose());
    }
    if let Some(dir) = &c.cwd {
        e = e.dir(dir);
    }
    e
}
