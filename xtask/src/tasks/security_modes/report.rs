//! The result of a run: one row per mode, stack and rule (static) or probe
//! (dynamic), with every offending value, each naming its service, the
//! service's profiles and the file (and line) that defines it. Text is a
//! table; `--format json` is the same data as one JSON line; `--sarif`
//! writes it for code-scanning tools ([`super::sarif`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Static,
    Dynamic,
}

/// One offending value: which service, where it is defined, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Finding {
    pub service: String,
    /// The compose profiles that enable the service (empty: always enabled).
    pub profiles: Vec<String>,
    /// The compose file that defines the service (the stack's files when unknown).
    pub file: String,
    /// The line of the service's key in `file`, when found.
    pub line: Option<usize>,
    /// `file:line` of the stack's other files that define the service too
    /// (an overlay merged on a base).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    pub value: String,
}

impl Finding {
    /// A finding about the stack as a whole (`service` is `-`), or one not tied to a file.
    pub fn bare(service: &str, value: String) -> Finding {
        Finding {
            service: service.into(),
            value,
            ..Default::default()
        }
    }

    /// `api`, or `admin (profile debug)`.
    pub fn who(&self) -> String {
        match self.profiles.as_slice() {
            [] => self.service.clone(),
            [p] => format!("{} (profile {p})", self.service),
            ps => format!("{} (profiles {})", self.service, ps.join(", ")),
        }
    }

    /// Every `file:line` that defines the service (empty: not tied to one).
    pub fn places(&self) -> Vec<String> {
        let first = match (self.file.as_str(), self.line) {
            ("", _) => return vec![],
            (f, Some(l)) => format!("{f}:{l}"),
            (f, None) => f.to_string(),
        };
        std::iter::once(first)
            .chain(self.also.iter().cloned())
            .collect()
    }
}

/// One rule or probe of one mode on one stack.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub mode: String,
    pub phase: Phase,
    pub stack: String,
    /// The rule or probe name (or `render` / `boot`).
    pub check: String,
    pub passed: bool,
    pub findings: Vec<Finding>,
}

impl Row {
    pub fn new(mode: &str, phase: Phase, stack: &str, check: &str, findings: Vec<Finding>) -> Row {
        Row {
            mode: mode.into(),
            phase,
            stack: stack.into(),
            check: check.into(),
            passed: findings.is_empty(),
            findings,
        }
    }
}

/// Wall time of one phase of one mode.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub mode: String,
    pub phase: Phase,
    pub secs: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The tag under test; none for `--compose` files, which have no tag.
    pub tag: Option<String>,
    pub passed: bool,
    pub rows: Vec<Row>,
    pub timings: Vec<Timing>,
    /// Mode -> the compose project it was booted as.
    pub projects: BTreeMap<String, String>,
}

impl Report {
    pub fn add(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn time(&mut self, mode: &str, phase: Phase, secs: f64) {
        match self
            .timings
            .iter_mut()
            .find(|t| t.mode == mode && t.phase == phase)
        {
            Some(t) => t.secs += secs,
            None => self.timings.push(Timing {
                mode: mode.into(),
                phase,
                secs,
            }),
        }
    }

    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.passed)
    }

    /// Every violation as `mode/stack/service rule: value`, for the error line.
    pub fn violations(&self) -> Vec<String> {
        self.failures()
            .flat_map(|r| {
                r.findings.iter().map(move |f| {
                    format!(
                        "{}/{}/{} {}: {}",
                        r.mode,
                        r.stack,
                        f.who(),
                        r.check,
                        f.value
                    )
                })
            })
            .collect()
    }

    pub fn finish(&mut self) {
        self.passed = !self.rows.is_empty() && self.rows.iter().all(|r| r.passed);
    }

    /// The table: one line per row, then one indented line per finding.
    pub fn table(&self) -> String {
        let w = |f: fn(&Row) -> usize, head: &str| {
            self.rows.iter().map(f).max().unwrap_or(0).max(head.len())
        };
        let (wm, ws, wc) = (
            w(|r| r.mode.len(), "MODE"),
            w(|r| r.stack.len(), "STACK"),
            w(|r| r.check.len(), "CHECK"),
        );
        let mut out = String::new();
        match &self.tag {
            Some(t) => {
                let _ = writeln!(out, "security modes for tag {t}");
            }
            None => {
                let _ = writeln!(out, "security modes of compose files (static only)");
            }
        }
        let _ = writeln!(
            out,
            "{:wm$}  {:7}  {:ws$}  {:wc$}  RESULT",
            "MODE", "PHASE", "STACK", "CHECK"
        );
        for r in &self.rows {
            let phase = match r.phase {
                Phase::Static => "static",
                Phase::Dynamic => "dynamic",
            };
            let result = if r.passed { "pass" } else { "FAIL" };
            let _ = writeln!(
                out,
                "{:wm$}  {phase:7}  {:ws$}  {:wc$}  {result}",
                r.mode, r.stack, r.check
            );
            for f in &r.findings {
                // The file is news only where the stack is not itself the file.
                let at = match f.places() {
                    p if p.is_empty() || (f.file == r.stack && p.len() == 1) => String::new(),
                    p => format!(" [{}]", p.join(", ")),
                };
                let _ = writeln!(out, "    {}{at}: {}", f.who(), f.value);
            }
        }
        let times: Vec<String> = self
            .timings
            .iter()
            .map(|t| format!("{} {:?} {:.1}s", t.mode, t.phase, t.secs).to_lowercase())
            .collect();
        if !times.is_empty() {
            let _ = writeln!(out, "time: {}", times.join(", "));
        }
        let failed = self.failures().count();
        let _ = writeln!(
            out,
            "{}: {} checks, {failed} failed",
            if self.passed { "PASS" } else { "FAIL" },
            self.rows.len()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_mode_service_rule_and_value() {
        let mut r = Report {
            tag: Some("sha-1".into()),
            ..Default::default()
        };
        r.add(Row::new(
            "dev",
            Phase::Static,
            "testbed",
            "no-privileged",
            vec![],
        ));
        let f = Finding::bare("api", "read_only is false".into());
        let gated = Finding {
            profiles: vec!["debug".into()],
            file: "overlay.yml".into(),
            line: Some(7),
            ..Finding::bare("admin", "privileged: true".into())
        };
        r.add(Row::new(
            "hipaa",
            Phase::Static,
            "testbed",
            "read-only",
            vec![f],
        ));
        r.add(Row::new(
            "hipaa",
            Phase::Static,
            "testbed",
            "no-privileged",
            vec![gated],
        ));
        r.time("hipaa", Phase::Dynamic, 1.25);
        r.finish();
        let t = r.table();
        assert!(
            t.contains("dev    static   testbed  no-privileged  pass\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "hipaa  static   testbed  read-only      FAIL\n    api: read_only is false\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("time: hipaa dynamic 1.2s") || t.contains("time: hipaa dynamic 1.3s"),
            "{t}"
        );
        assert!(
            t.contains("    admin (profile debug) [overlay.yml:7]: privileged: true\n"),
            "{t}"
        );
        assert!(t.ends_with("FAIL: 3 checks, 2 failed\n"), "{t}");
        assert_eq!(
            r.violations(),
            [
                "hipaa/testbed/api read-only: read_only is false",
                "hipaa/testbed/admin (profile debug) no-privileged: privileged: true"
            ]
        );
        assert!(!r.passed);
    }

    #[test]
    fn no_rows_is_no_pass() {
        let mut r = Report::default();
        r.finish();
        assert!(!r.passed);
    }
}
