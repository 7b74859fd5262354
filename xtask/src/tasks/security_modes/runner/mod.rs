//! Applying: the [`Actions`] the executor calls for each planned step. Every
//! rule and probe outcome goes into the [`Report`], and nothing but the
//! preflight and the verdict fails a step, so teardown runs for every booted
//! mode; a [`Booted`] guard covers whatever still escapes.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::Value;

mod dynamic;

use super::check::{self, Rendered};
use super::policy::{Mode, Policy};
use super::probes::Booted;
use super::proc::{self, Command};
use super::report::{Finding, Phase, Report, Row};
use super::steps::{Kind, RenderSpec, Spec};
use crate::exec::Actions;
use crate::exit::{fail, Code};
use crate::flags::Format;

/// Runs the plan's actions and collects the report.
pub(super) struct Runner<'a> {
    policy: &'a Policy,
    tag: String,
    specs: Vec<Spec>,
    /// (stack, mode) -> rendered config.
    rendered: BTreeMap<(String, String), Rendered>,
    /// Mode -> its booted project (taken out at teardown; the rest drop with the runner).
    booted: BTreeMap<String, (Booted, BTreeMap<String, String>, bool)>,
    report: Report,
    verbose: bool,
    format: Format,
}

impl Actions for Runner<'_> {
    fn run(&mut self, id: &str) -> Result<()> {
        let kind = self
            .specs
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.kind.clone());
        match kind.with_context(|| format!("unknown action `{id}`"))? {
            Kind::Preflight { daemon, images } => {
                super::preflight::check(daemon, images.as_deref(), self.verbose)
            }
            Kind::Render(r) => {
                let RenderSpec {
                    stack,
                    mode,
                    command,
                    raw,
                } = *r;
                let t = Instant::now();
                let findings = match render(&command).and_then(|c| Ok((c, render(&raw)?))) {
                    Ok(((config, warnings), (raw, _))) => {
                        // Compose's own word on what it filled in blank.
                        for w in warnings {
                            eprintln!(
                                "{}",
                                crate::cmd::redact::redact(&format!(
                                    "warning: {stack} ({mode}): compose: {w}"
                                ))
                            );
                        }
                        self.rendered
                            .insert((stack.clone(), mode.clone()), Rendered { config, raw });
                        vec![]
                    }
                    Err(e) => vec![finding("-", e)],
                };
                self.report
                    .add(Row::new(&mode, Phase::Static, &stack, "render", findings));
                self.report
                    .time(&mode, Phase::Static, t.elapsed().as_secs_f64());
                Ok(())
            }
            Kind::Check { stack, mode } => {
                self.check(&stack, &mode);
                Ok(())
            }
            Kind::Boot(b) => self.boot(*b),
            Kind::Probe { mode } => {
                let t = Instant::now();
                self.probe(&mode);
                self.report
                    .time(&mode, Phase::Dynamic, t.elapsed().as_secs_f64());
                Ok(())
            }
            Kind::Teardown { mode } => {
                self.teardown(&mode);
                Ok(())
            }
            Kind::Report { sarif } => {
                self.report.finish();
                match self.format {
                    // Findings quote rendered values: none of the run's secrets leaves.
                    Format::Text => print!("{}", crate::cmd::redact::redact(&self.report.table())),
                    Format::Json => crate::out::merge(serde_json::json!({ "report": self.report })),
                }
                if let Some(path) = sarif {
                    let mut doc = super::sarif::document(&self.report);
                    crate::cmd::redact::redact_json(&mut doc);
                    let doc = serde_json::to_string_pretty(&doc)?;
                    std::fs::write(&path, doc + "\n").with_context(|| {
                        format!("writing the SARIF report to {}", path.display())
                    })?;
                    eprintln!("wrote SARIF 2.1.0 to {}", path.display());
                }
                Ok(())
            }
            Kind::Verdict => {
                self.report.finish();
                if self.report.passed {
                    return Ok(());
                }
                // Only renders failed: nothing was judged, which is not "insecure".
                let not_checked = self.report.failures().all(|r| r.check == "render");
                let v = self.report.violations();
                let shown: Vec<&str> = v.iter().take(12).map(String::as_str).collect();
                let more = if v.len() > shown.len() {
                    format!("; and {} more", v.len() - shown.len())
                } else {
                    String::new()
                };
                let (code, what) = if not_checked {
                    (
                        Code::NotChecked,
                        "could not check: {} compose render(s) failed",
                    )
                } else {
                    (Code::Verify, "{} security-mode violation(s)")
                };
                let what = what.replace("{}", &v.len().to_string());
                Err(fail(code, format!("{what}: {}{more}", shown.join("; "))))
            }
        }
    }
}

fn finding(service: &str, value: String) -> Finding {
    Finding::bare(service, value)
}

/// Runs a `config --format json` render, with compose's warnings about
/// unset variables; the error (compose's own message) is the row's finding.
fn render(c: &Command) -> Result<(Value, Vec<String>), String> {
    let out = proc::output(c).map_err(|e| format!("{e:#}"))?;
    if !out.success {
        let status = out.code.map_or("a signal".to_string(), |c| c.to_string());
        return Err(format!(
            "`{}` exited with {status}: {}",
            c.display(),
            proc::explain(&out.stderr)
        ));
    }
    let json =
        serde_json::from_str(&out.stdout).map_err(|e| format!("compose printed no JSON: {e}"))?;
    Ok((json, unset_warnings(&out.stderr)))
}

/// Compose's "variable is not set" warnings, as their message alone
/// (`WARN[0000] The "X" variable is not set...` or `level=warning msg="..."`).
fn unset_warnings(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("variable is not set"))
        .map(|l| {
            let msg = match l.split_once("msg=\"") {
                Some((_, m)) => m.trim_end().trim_end_matches('"').replace("\\\"", "\""),
                None => l.split_once("] ").map_or(l, |(_, m)| m).to_string(),
            };
            msg.trim().to_string()
        })
        .collect();
    out.dedup();
    out
}

impl<'a> Runner<'a> {
    pub fn new(
        policy: &'a Policy,
        tag: Option<&str>,
        specs: Vec<Spec>,
        verbose: bool,
        format: Format,
    ) -> Runner<'a> {
        Runner {
            policy,
            tag: tag.unwrap_or_default().into(),
            specs,
            rendered: BTreeMap::new(),
            booted: BTreeMap::new(),
            report: Report {
                tag: tag.map(String::from),
                ..Default::default()
            },
            verbose,
            format,
        }
    }

    fn boot_name(&self) -> &str {
        self.policy.boot_stack().map_or("-", |(n, _)| n)
    }

    /// A planned mode (planning took every mode from the policy).
    fn mode(&self, name: &str) -> Option<&'a Mode> {
        self.policy.modes.iter().find(|m| m.name == name)
    }

    fn check(&mut self, stack_name: &str, mode_name: &str) {
        let t = Instant::now();
        let Some(rendered) = self
            .rendered
            .get(&(stack_name.to_string(), mode_name.to_string()))
        else {
            return; // the render row already failed
        };
        let Some(mode) = self.mode(mode_name) else {
            return;
        };
        let rows = check::rows(self.policy, mode, stack_name, &self.tag, rendered);
        rows.into_iter().for_each(|r| self.report.add(r));
        self.report
            .time(mode_name, Phase::Static, t.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unset_variable_warnings_are_read_in_both_forms() {
        let err = "WARN[0000] The \"DB_PASSWORD\" variable is not set. Defaulting to a blank string.\n\
                   time=\"2026\" level=warning msg=\"The \\\"API_KEY\\\" variable is not set. Defaulting to a blank string.\"\n\
                   other noise\n";
        assert_eq!(
            super::unset_warnings(err),
            [
                "The \"DB_PASSWORD\" variable is not set. Defaulting to a blank string.",
                "The \"API_KEY\" variable is not set. Defaulting to a blank string.",
            ]
        );
    }
}
