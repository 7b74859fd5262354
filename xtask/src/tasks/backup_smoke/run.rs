//! The smoke's actions: what the executor calls for each `Step::Action` of
//! the plan. Every check records its result in the [`Report`] and the run
//! goes on, so one report names every failure; the `verdict` step then
//! fails with exit 6. A dump or restore that fails stops the run (exit 6
//! too: that backup does not restore). Teardown runs as a step, and again
//! from the executor's cleanup and from `Drop`, so the embedded cluster and
//! scratch databases go away on every path, a signal included.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::phases::not_verified;
use super::report::{Checkpoint, Manifest, Report};
use super::sql;
use super::verify::{self, Landmarks, Outcome};
use super::{copy, target, Setup};
use crate::cmd;
use crate::exec::{Actions, Applied};
use crate::exit::{code_of, fail, Code};
use crate::flags::Format;
use crate::plan::Command;

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A Rust verification: the outcome, the rows the negative controls need, and its costs.
pub(super) struct RustRun {
    pub(super) outcome: Outcome,
    pub(super) landmarks: Landmarks,
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
                if let Err(err) = cmd::run(&e.stop(), self.verbose) {
                    problems.push(format!("stopping the embedded cluster: {err:#}"));
                }
            }
        } else if let Some(d) = &self.drops {
            if let Err(err) = cmd::run(d, self.verbose) {
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
    pub(super) started: Instant,
    pub(super) prepared: Option<Instant>,
    /// When the last action ended: a phase also counts the `Run` steps before its action.
    mark: Instant,
    pub(super) server_version_num: u32,
    /// The chain as verified before the dump.
    pub(super) before: Option<Outcome>,
    pub(super) manifest: Option<Manifest>,
    /// The restored chain, from the Rust verifier.
    pub(super) after: Option<RustRun>,
    /// The verdict step's own error, which the report lists check by check already.
    verdict: Option<String>,
}

impl Smoke {
    pub fn new(s: Setup) -> Smoke {
        let report = Report {
            task: "backup-smoke".into(),
            profile: s.profile_name(),
            target: s.target_label(),
            rows_requested: s.dump.is_none().then_some(s.rows),
            dump: s.dump.as_ref().map(|d| d.display().to_string()),
            ..Report::default()
        };
        let cleanup = Cleanup {
            armed: false,
            embedded: s.embedded.clone(),
            drops: s.embedded.is_none().then(|| s.drop_all()),
            dir: s.dir.clone(),
            verbose: s.verbose,
        };
        Smoke {
            s,
            report,
            cleanup,
            started: Instant::now(),
            prepared: None,
            mark: Instant::now(),
            server_version_num: 0,
            before: None,
            manifest: None,
            after: None,
            verdict: None,
        }
    }

    /// Prints the report (once the plan was applied, whatever its outcome).
    fn print_report(&mut self, err: Option<&anyhow::Error>) {
        if let Some(e) = err {
            let e = format!("{e:#}");
            if self.report.error.is_none() && self.verdict.as_ref() != Some(&e) {
                self.report.error = Some(e);
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

    /// Runs a command; a failure is one line ending in what the program said.
    pub(super) fn cmd(&self, c: &Command) -> Result<String> {
        cmd::run(c, self.s.verbose)
    }

    /// Runs a command whose output is data (not echoed even with --verbose).
    pub(super) fn data(&self, c: &Command) -> Result<String> {
        if self.s.verbose {
            eprintln!("$ {}", c.display());
        }
        cmd::run(c, false)
    }

    pub(super) fn sql_verify(&self, db: &str, tz: &str) -> Result<(Outcome, Duration)> {
        let t = Instant::now();
        let out = self.data(&self.s.sql_verifier(db, tz))?;
        let took = t.elapsed();
        let outcome = sql::parse_sql_outcome(self.s.profile, out.as_bytes())?;
        Ok((outcome, took))
    }

    /// The Rust verifier: the rows are exported to a file in the work
    /// directory and streamed from there, so memory does not grow with the table.
    pub(super) fn rust_verify(&self, db: &str, tz: &str) -> Result<RustRun> {
        let t = Instant::now();
        let [rows, head] = self.s.exports(db, tz);
        let file = self.s.dir.join(format!("{db}.rows.copy"));
        if self.s.verbose {
            eprintln!("$ {} > {}", rows.display(), file.display());
        }
        cmd::run_to_file(&rows, &file, false)?;
        let head = self.data(&head)?;
        let export = t.elapsed();
        let t = Instant::now();
        let at = self.s.checkpoint.as_ref().map(|c| c.rows);
        let verified = verify::verify_file(self.s.profile, &file, head.as_bytes(), at);
        let verify = t.elapsed();
        let sample_ts = first_ts(&file);
        let _ = std::fs::remove_file(&file);
        let (outcome, landmarks) = verified?;
        Ok(RustRun {
            outcome,
            landmarks,
            export,
            verify,
            sample_ts,
        })
    }

    fn write_workload(&mut self) -> Result<()> {
        use anyhow::Context as _;
        let path = self.s.dir.join("workload.sql");
        let f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(f);
        let (serial_rows, _) = super::workload::split(self.s.rows);
        super::workload::write_serial(self.s.profile, serial_rows, &mut out)
            .and_then(|()| std::io::Write::flush(&mut out))
            .with_context(|| format!("writing {}", path.display()))
    }

    fn teardown(&mut self) {
        for p in self.cleanup.run() {
            self.report.warnings.push(format!("teardown: {p}"));
        }
    }

    /// Fails (exit 6) when a check failed; the report names each one.
    fn verdict(&mut self) -> Result<()> {
        self.report
            .time("total", self.started.elapsed().as_millis() as u64);
        self.report.finish();
        if self.report.ok {
            return Ok(());
        }
        let failures = self.report.failures();
        let msg = format!(
            "backup-smoke: {} check(s) failed: {}",
            failures.len().max(1),
            failures.join(" | ")
        );
        self.verdict = Some(msg.clone());
        Err(fail(Code::Verify, msg))
    }
}

impl Actions for Smoke {
    fn run(&mut self, id: &str) -> Result<()> {
        let t = Instant::now();
        let since_last = self.mark;
        let r = match id {
            "preflight" => Err(fail(
                Code::Preflight,
                format!("preflight failed: {}", self.s.missing.join("; ")),
            )),
            "prepare" => self.prepare(),
            "write-workload" => self.write_workload(),
            "clean-leftovers" => self.clean_leftovers(),
            "server" => self.server(),
            "known-answer" => self.known_answer(),
            "concurrent-writers" => self.concurrent_writers(),
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
                self.teardown();
                Ok(())
            }
            "verdict" => return self.verdict(),
            other => bail!("backup-smoke has no action `{other}`"),
        };
        // The workload phase is the serial `Run` step before its action too.
        let phase = match id {
            "known-answer" | "verify-before" | "dump" | "restore" | "negative-controls"
            | "teardown" => Some((id, t)),
            "concurrent-writers" => Some(("workload", since_last)),
            "assert-timezone" => Some(("timezone", t)),
            "assert-append" => Some(("append", t)),
            _ => None,
        };
        if let Some((p, from)) = phase {
            self.report.time(p, from.elapsed().as_millis() as u64);
        }
        self.mark = Instant::now();
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
            Err(e) if checking.contains(&id) && code_of(&e) == Code::Error => {
                Err(not_verified(e, |e| format!("{id} could not run: {e:#}")))
            }
            r => r,
        }
    }

    fn cleanup(&mut self) {
        self.teardown();
    }

    fn report(&mut self, result: std::result::Result<&Applied, &anyhow::Error>) {
        self.print_report(result.err());
    }

    /// The restored chain's checkpoint, when it verified: the next run
    /// with `--dump` holds the chain to it.
    fn record_note(&self) -> Option<String> {
        let o = &self.after.as_ref()?.outcome;
        let head = o.head.as_ref()?;
        o.clean().then(|| Checkpoint::note(o.total, &head.value()))
    }
}

/// The first exported timestamp, to show which zone the export ran in.
fn first_ts(file: &std::path::Path) -> Option<String> {
    use std::io::Read as _;
    let mut head = Vec::new();
    std::fs::File::open(file)
        .ok()?
        .take(64 << 10)
        .read_to_end(&mut head)
        .ok()?;
    let line = copy::lines(&head).next()?;
    let f = copy::fields::<{ verify::col::COUNT }>(line).ok()?;
    f[verify::col::TS]
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

pub(super) fn short(h: &str) -> String {
    h.chars().take(12).collect()
}
