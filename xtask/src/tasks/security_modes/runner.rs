//! Applying: the [`Actions`] the executor calls for each planned step. Every
//! rule and probe outcome goes into the [`Report`], and nothing but the
//! preflight and the verdict fails a step, so teardown runs for every booted
//! mode; a [`Booted`] guard covers whatever still escapes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::check::{self, Rendered};
use super::policy::{self, Mode, Policy};
use super::probes::{self, Booted};
use super::proc::{self, Command};
use super::report::{Finding, Phase, Report, Row};
use super::steps::{BootSpec, Kind, Spec};
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
            Kind::Render {
                stack,
                mode,
                command,
                raw,
            } => {
                let t = Instant::now();
                let findings = match render(&command).and_then(|c| Ok((c, render(&raw)?))) {
                    Ok((config, raw)) => {
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
            Kind::Boot(b) => {
                let BootSpec {
                    mode,
                    project,
                    up,
                    down,
                    logs,
                    bases,
                } = *b;
                let t = Instant::now();
                let (_, stack) = self.policy.boot_stack().context("no boot stack")?;
                let boot = stack.boot.as_ref().context("no boot table")?;
                let guard = Booted::arm(&project, down, logs, self.verbose);
                self.report.projects.insert(mode.clone(), project);
                let result = proc::run(&up, self.verbose)
                    .map_err(|e| format!("{e:#}"))
                    .and_then(|_| {
                        probes::wait_ready(
                            &bases,
                            &boot.ready,
                            Duration::from_secs(boot.timeout_secs),
                            &mode,
                            &self.tag,
                        )
                    });
                let findings = match &result {
                    Ok(_) => {
                        eprintln!(
                            "{mode}: booted and ready in {:.1}s",
                            t.elapsed().as_secs_f64()
                        );
                        vec![]
                    }
                    Err(e) => vec![finding("-", e.clone())],
                };
                self.booted
                    .insert(mode.clone(), (guard, bases, result.is_ok()));
                self.report.add(Row::new(
                    &mode,
                    Phase::Dynamic,
                    self.boot_name(),
                    "boot",
                    findings,
                ));
                self.report
                    .time(&mode, Phase::Dynamic, t.elapsed().as_secs_f64());
                Ok(())
            }
            Kind::Probe { mode } => {
                let t = Instant::now();
                self.probe(&mode);
                self.report
                    .time(&mode, Phase::Dynamic, t.elapsed().as_secs_f64());
                Ok(())
            }
            Kind::Teardown { mode } => {
                let t = Instant::now();
                let failed = self
                    .report
                    .rows
                    .iter()
                    .any(|r| r.mode == mode && r.phase == Phase::Dynamic && !r.passed);
                let findings = match self.booted.remove(&mode) {
                    Some((guard, _, _)) => {
                        if failed {
                            eprintln!(
                                "{mode}: last log lines of {}:\n{}",
                                guard.project,
                                guard.logs()
                            );
                        }
                        guard
                            .down()
                            .err()
                            .map(|e| vec![finding("-", format!("{e:#}"))])
                            .unwrap_or_default()
                    }
                    None => vec![],
                };
                self.report.add(Row::new(
                    &mode,
                    Phase::Dynamic,
                    self.boot_name(),
                    "teardown",
                    findings,
                ));
                self.report
                    .time(&mode, Phase::Dynamic, t.elapsed().as_secs_f64());
                Ok(())
            }
            Kind::Report { sarif } => {
                self.report.finish();
                match self.format {
                    Format::Text => print!("{}", self.report.table()),
                    Format::Json => println!("{}", serde_json::to_string(&self.report)?),
                }
                if let Some(path) = sarif {
                    let doc = serde_json::to_string_pretty(&super::sarif::document(&self.report))?;
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
                let v = self.report.violations();
                let shown: Vec<&str> = v.iter().take(12).map(String::as_str).collect();
                let more = if v.len() > shown.len() {
                    format!("; and {} more", v.len() - shown.len())
                } else {
                    String::new()
                };
                Err(fail(
                    Code::Verify,
                    format!(
                        "{} security-mode violation(s): {}{more}",
                        v.len(),
                        shown.join("; ")
                    ),
                ))
            }
        }
    }
}

fn finding(service: &str, value: String) -> Finding {
    Finding::bare(service, value)
}

/// Runs a `config --format json` render; the error is the row's finding.
fn render(c: &Command) -> Result<Value, String> {
    let out = proc::run(c, false).map_err(|e| format!("{e:#}"))?;
    serde_json::from_str(&out).map_err(|e| format!("compose printed no JSON: {e}"))
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

    fn probe(&mut self, mode_name: &str) {
        let policy = self.policy;
        let Some(mode) = self.mode(mode_name) else {
            return;
        };
        let stack_name = self.boot_name().to_string();
        let (bases, booted) = match self.booted.get(mode_name) {
            Some((_, bases, ok)) => (bases.clone(), *ok),
            None => (BTreeMap::new(), false),
        };
        let boot = policy.boot_stack().and_then(|(_, s)| s.boot.clone());
        let token = boot.as_ref().and_then(|b| b.token_file.as_ref()).map(|f| {
            let f = policy.resolve(f);
            std::fs::read_to_string(&f)
                .map(|t| t.trim().to_string())
                .map_err(|e| format!("reading token file {}: {e}", f.display()))
        });
        for name in &mode.probes {
            let Some(probe) = policy.probes.get(name) else {
                continue; // the policy was validated: every named probe exists
            };
            let targets: Vec<String> = if probe.services().is_empty() {
                bases.keys().cloned().collect()
            } else {
                probe.services().to_vec()
            };
            let mut findings = Vec::new();
            for svc in targets {
                if !booted {
                    findings.push(finding(&svc, "not probed: the stack did not boot".into()));
                    continue;
                }
                let tok = match (&token, probe) {
                    (Some(Err(e)), policy::Probe::Status { bearer: true, .. }) => {
                        findings.push(finding(&svc, e.clone()));
                        continue;
                    }
                    (Some(Ok(t)), _) => Some(t.as_str()),
                    _ => None,
                };
                let Some(base) = bases.get(&svc) else {
                    findings.push(finding(&svc, "no loopback port for this service".into()));
                    continue;
                };
                findings.extend(
                    probes::run(probe, base, tok, mode_name, &self.tag)
                        .into_iter()
                        .map(|f| finding(&svc, f)),
                );
            }
            self.report.add(Row::new(
                mode_name,
                Phase::Dynamic,
                &stack_name,
                name,
                findings,
            ));
        }
    }
}
