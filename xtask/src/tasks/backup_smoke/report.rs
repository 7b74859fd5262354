//! The smoke's findings: every assertion with its evidence, the negative
//! controls, timings and the manifest. Printed as a readable summary, or as
//! one JSON document with `--format json`; in CI each failure is also an
//! `::error::backup-smoke: ...` line.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::negative::Tamper;
use super::verify::{Break, Outcome};

/// The manifest written next to the dump, outside the database. Only the
/// profile, the row count and the head are required (a checkpoint's
/// fields); whatever else it holds is compared when present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub format: String,
    pub profile: String,
    pub rows: u64,
    /// The head row as one string (`seq:hash` in the default profile).
    pub head: String,
    #[serde(default)]
    pub last_row_hash: String,
    /// SHA-256 over `ns(id) ns(prev_hash) ns(row_hash)` of every row, in chain order.
    #[serde(default)]
    pub chain_digest: String,
    #[serde(default)]
    pub dump_file: String,
    #[serde(default)]
    pub dump_sha256: String,
    #[serde(default)]
    pub created: String,
}

/// What a later run needs to prove the chain was not cut back since: the
/// profile, the chain's row count and its head then. A manifest is one too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub profile: String,
    pub rows: u64,
    /// The head row as one string (`seq:hash` in the default profile).
    pub head: String,
    /// Where it came from (a file, or the environment's record).
    #[serde(skip_deserializing)]
    pub source: String,
}

/// How a checkpoint is written into the reason of backup-smoke's audit record.
const CHECKPOINT_WORD: &str = "checkpoint rows=";

impl Checkpoint {
    /// Its form in an audit record's reason.
    pub fn note(rows: u64, head: &str) -> String {
        format!("{CHECKPOINT_WORD}{rows} head={head}")
    }

    /// The checkpoint in a backup-smoke record's reason, if it has one.
    pub fn from_reason(reason: &str, profile: &str) -> Option<Checkpoint> {
        if !reason.starts_with(&format!("profile {profile},")) {
            return None;
        }
        let rest = &reason[reason.find(CHECKPOINT_WORD)? + CHECKPOINT_WORD.len()..];
        let (rows, rest) = rest.split_once(" head=")?;
        let head = rest.split([' ', ';']).next()?;
        Some(Checkpoint {
            profile: profile.into(),
            rows: rows.parse().ok()?,
            head: head.into(),
            source: String::new(),
        })
    }
}

pub const MANIFEST_FORMAT: &str = "xtask-backup-smoke-manifest/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not applicable to this run (said why in the detail).
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Assertion {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

/// What one verifier said about a damaged copy.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub caught: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Control {
    #[serde(flatten)]
    pub tamper: Tamper,
    pub detected: bool,
    pub findings: Vec<Finding>,
}

impl Control {
    pub fn as_expected(&self) -> bool {
        self.detected == self.tamper.expect_detected
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub phase: String,
    pub ms: u64,
}

/// The two verifiers on the same restored rows, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Speeds {
    pub rows: u64,
    /// The SQL verifier function, wall time of its psql call.
    pub sql_ms: f64,
    /// COPY of the rows and the head out of the database.
    pub export_ms: f64,
    /// The Rust verifier on the exported bytes: parse, hash, walk.
    pub rust_ms: f64,
    pub sql_rows_per_s: f64,
    pub rust_rows_per_s: f64,
    /// rust_rows_per_s / sql_rows_per_s.
    pub rust_vs_sql: f64,
    /// The same, with the export counted against the Rust side.
    pub rust_with_export_vs_sql: f64,
}

impl Speeds {
    pub fn new(rows: u64, sql_ms: f64, export_ms: f64, rust_ms: f64) -> Speeds {
        let per_s = |ms: f64| {
            if ms > 0.0 {
                rows as f64 / (ms / 1000.0)
            } else {
                f64::INFINITY
            }
        };
        Speeds {
            rows,
            sql_ms,
            export_ms,
            rust_ms,
            sql_rows_per_s: per_s(sql_ms),
            rust_rows_per_s: per_s(rust_ms),
            rust_vs_sql: sql_ms / rust_ms.max(1e-3),
            rust_with_export_vs_sql: sql_ms / (rust_ms + export_ms).max(1e-3),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub task: String,
    pub ok: bool,
    pub profile: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_requested: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<String>,
    /// Set when a phase failed before the checks could finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub assertions: Vec<Assertion>,
    pub negative_controls: Vec<Control>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// `--dump FILE` without a manifest: where this run wrote one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_written: Option<String>,
    /// The checkpoint the restored chain was held to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_sql: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_rust: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifier_speeds: Option<Speeds>,
    pub timings: Vec<Timing>,
    pub warnings: Vec<String>,
}

impl Report {
    pub fn check(&mut self, name: &str, pass: bool, detail: impl Into<String>) {
        let status = if pass { Status::Pass } else { Status::Fail };
        self.assertions.push(Assertion {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }
    pub fn skip(&mut self, name: &str, why: impl Into<String>) {
        self.assertions.push(Assertion {
            name: name.into(),
            status: Status::Skip,
            detail: why.into(),
        });
    }
    pub fn time(&mut self, phase: &str, ms: u64) {
        self.timings.push(Timing {
            phase: phase.into(),
            ms,
        });
    }
    pub fn ms(&self, phase: &str) -> Option<u64> {
        self.timings.iter().find(|t| t.phase == phase).map(|t| t.ms)
    }

    /// Every failure, one line each: failed assertions, controls that came
    /// out otherwise than expected, and a phase that stopped the run.
    pub fn failures(&self) -> Vec<String> {
        let mut f: Vec<String> = self
            .assertions
            .iter()
            .filter(|a| a.status == Status::Fail)
            .map(|a| format!("{}: {}", a.name, a.detail))
            .collect();
        for c in self.negative_controls.iter().filter(|c| !c.as_expected()) {
            let how = if c.tamper.expect_detected {
                "NOT detected"
            } else {
                "detected, though the profile cannot detect it"
            };
            f.push(format!(
                "negative control {} ({}): {how}",
                c.tamper.name, c.tamper.what
            ));
        }
        if let Some(e) = &self.error {
            f.push(e.clone());
        }
        f
    }

    pub fn finish(&mut self) {
        self.ok = self.failures().is_empty() && !self.assertions.is_empty();
    }

    /// The readable summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.ok { "PASS" } else { "FAIL" };
        let rows = self
            .after_rust
            .as_ref()
            .or(self.before.as_ref())
            .map(|o| format!(", {} rows", o.total))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "backup-smoke {verdict}: profile {}, {}{rows}",
            self.profile, self.target
        );
        for a in &self.assertions {
            let s = match a.status {
                Status::Pass => "ok  ",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            let _ = writeln!(out, "  {s} {:<22} {}", a.name, a.detail);
        }
        if !self.negative_controls.is_empty() {
            let _ = writeln!(
                out,
                "negative controls (each on a scratch copy of the restored database):"
            );
            for c in &self.negative_controls {
                let s = if c.as_expected() { "ok  " } else { "FAIL" };
                let caught: Vec<String> = c
                    .findings
                    .iter()
                    .filter(|f| f.caught)
                    .map(|f| format!("{}: {}", f.check, f.detail))
                    .collect();
                let verdict = match (c.detected, &c.tamper.why_undetectable) {
                    (true, _) => format!("caught by {}", caught.join("; ")),
                    (false, Some(why)) => format!("not detectable here: {why}"),
                    (false, None) => "NOT DETECTED".to_string(),
                };
                let _ = writeln!(
                    out,
                    "  {s} {:<22} {}: {verdict}",
                    c.tamper.name, c.tamper.what
                );
            }
        }
        if let Some(s) = &self.verifier_speeds {
            let _ = writeln!(
                out,
                "verifiers on {} rows: SQL {:.0} ms ({:.0} rows/s), Rust {:.1} ms ({:.0} rows/s, {:.1}x; {:.1}x counting the {:.0} ms export)",
                s.rows, s.sql_ms, s.sql_rows_per_s, s.rust_ms, s.rust_rows_per_s, s.rust_vs_sql, s.rust_with_export_vs_sql, s.export_ms
            );
        }
        if !self.timings.is_empty() {
            let t: Vec<String> = self
                .timings
                .iter()
                .map(|t| format!("{} {}", t.phase, fmt_ms(t.ms)))
                .collect();
            let _ = writeln!(out, "timings: {}", t.join(", "));
        }
        if let Some(m) = &self.manifest_written {
            let _ = writeln!(out, "manifest written beside the dump: {m}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        if let Some(e) = &self.error {
            let _ = writeln!(out, "stopped: {e}");
        }
        out
    }
}

fn fmt_ms(ms: u64) -> String {
    if ms >= 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// A verifier's verdict in one line.
pub fn verdict(o: &Outcome) -> String {
    match &o.brk {
        None if o.walked == o.total => format!("clean, walked {} of {}", o.walked, o.total),
        None => format!("walked only {} of {} rows", o.walked, o.total),
        Some(Break {
            at: Some(at),
            kind,
            detail,
        }) => format!("{kind} at {at} ({detail})"),
        Some(Break {
            at: None,
            kind,
            detail,
        }) => format!("{kind} ({detail})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_through_a_record_reason() {
        let reason = format!(
            "profile certctl, dump /d/n.dump; {}",
            Checkpoint::note(40, "ab12")
        );
        let c = Checkpoint::from_reason(&reason, "certctl").unwrap();
        assert_eq!((c.rows, c.head.as_str()), (40, "ab12"));
        assert_eq!(Checkpoint::from_reason(&reason, "default"), None);
        assert_eq!(
            Checkpoint::from_reason("profile certctl, dump x", "certctl"),
            None
        );
        let m: Manifest =
            serde_json::from_str(r#"{"profile":"certctl","rows":3,"head":"ab"}"#).unwrap();
        assert_eq!((m.rows, m.chain_digest.as_str()), (3, ""));
    }

    #[test]
    fn failures_make_the_report_fail_and_are_listed() {
        let mut r = Report {
            task: "backup-smoke".into(),
            ..Report::default()
        };
        r.check("count-equal", true, "24 == 24");
        r.skip("manifest-matches", "no manifest beside the dump");
        r.finish();
        assert!(r.ok);
        r.check("head-byte-exact", false, "1:aa != 2:bb");
        r.finish();
        assert!(!r.ok);
        assert_eq!(
            r.failures(),
            vec!["head-byte-exact: 1:aa != 2:bb".to_string()]
        );
        assert!(r.text().contains("FAIL head-byte-exact"), "{}", r.text());
    }
}
