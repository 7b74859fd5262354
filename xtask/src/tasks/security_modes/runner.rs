//! Applying: the [`Actions`] the executor calls for each planned step. Every
//! rule and probe outcome goes into the [`Report`], and nothing but the
//! preflight and the verdict fails a step, so teardown runs for every booted
//! mode; a [`Booted`] guard covers whatever still escapes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::policy::{self, Mode, Policy};
use super::probes::{self, Booted};
use super::report::{Finding, Phase, Report, Row};
use super::rules;
use super::steps::{BootSpec, Kind, Spec};
use crate::cmd::run as run_command;
use crate::engine::ComposeCli;
use crate::exec::Actions;
use crate::exit::{fail, Code};
use crate::flags::Format;
use crate::preflight::Tool;

/// Runs the plan's actions and collects the report.
pub(super) struct Runner<'a> {
    policy: &'a Policy,
    tag: String,
    specs: Vec<Spec>,
    /// (stack, mode) -> rendered config.
    rendered: BTreeMap<(String, String), Value>,
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
            Kind::Preflight { daemon } => preflight(daemon),
            Kind::Render {
                stack,
                mode,
                command,
            } => {
                let t = Instant::now();
                let findings = match run_command(&command, self.verbose)
                    .map(|out| serde_json::from_str::<Value>(&out))
                {
                    Ok(Ok(v)) => {
                        self.rendered.insert((stack.clone(), mode.clone()), v);
                        vec![]
                    }
                    Ok(Err(e)) => vec![finding("-", format!("compose printed no JSON: {e}"))],
                    Err(e) => vec![finding("-", format!("{e:#}"))],
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
                let result = run_command(&up, self.verbose)
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
            Kind::Report => {
                self.report.finish();
                match self.format {
                    Format::Text => print!("{}", self.report.table()),
                    Format::Json => println!("{}", serde_json::to_string(&self.report)?),
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
    Finding {
        service: service.into(),
        value,
    }
}

impl<'a> Runner<'a> {
    pub fn new(
        policy: &'a Policy,
        tag: &str,
        specs: Vec<Spec>,
        verbose: bool,
        format: Format,
    ) -> Runner<'a> {
        Runner {
            policy,
            tag: tag.into(),
            specs,
            rendered: BTreeMap::new(),
            booted: BTreeMap::new(),
            report: Report {
                tag: tag.into(),
                ..Default::default()
            },
            verbose,
            format,
        }
    }

    fn boot_name(&self) -> &str {
        self.policy.boot_stack().map_or("-", |(n, _)| n)
    }

    fn mode(&self, name: &str) -> &Mode {
        self.policy
            .modes
            .iter()
            .find(|m| m.name == name)
            .expect("planned modes come from the policy")
    }

    fn check(&mut self, stack_name: &str, mode_name: &str) {
        let t = Instant::now();
        let Some(rendered) = self
            .rendered
            .get(&(stack_name.to_string(), mode_name.to_string()))
        else {
            return; // the render row already failed
        };
        let (policy, mode) = (self.policy, self.mode(mode_name).clone());
        let stack = &policy.stacks[stack_name];
        let scope = rules::Scope {
            mode: mode_name,
            tag: &self.tag,
            stack,
        };
        let empty = serde_json::Map::new();
        let services = rendered["services"].as_object().unwrap_or(&empty);
        let mut rows = Vec::new();
        for name in &mode.rules {
            let findings = services
                .iter()
                .flat_map(|(s, v)| {
                    rules::violations(&policy.rules[name], &scope, s, v)
                        .into_iter()
                        .map(|f| finding(s, f))
                })
                .collect();
            rows.push(Row::new(
                mode_name,
                Phase::Static,
                stack_name,
                name,
                findings,
            ));
        }
        for name in &mode.app_rules {
            let findings = stack
                .app_services
                .iter()
                .flat_map(|s| match services.get(s) {
                    Some(v) => rules::violations(&policy.rules[name], &scope, s, v)
                        .into_iter()
                        .map(|f| finding(s, f))
                        .collect(),
                    None => vec![finding(
                        s,
                        "app service is not in the rendered config".into(),
                    )],
                })
                .collect();
            rows.push(Row::new(
                mode_name,
                Phase::Static,
                stack_name,
                name,
                findings,
            ));
        }
        rows.into_iter().for_each(|r| self.report.add(r));
        self.report
            .time(mode_name, Phase::Static, t.elapsed().as_secs_f64());
    }

    fn probe(&mut self, mode_name: &str) {
        let (policy, mode) = (self.policy, self.mode(mode_name).clone());
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
            let probe = &policy.probes[name];
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
                let base = &bases[&svc];
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

/// Docker and compose v2 present, and (for the dynamic half) a daemon; exit 2 naming everything missing.
fn preflight(daemon: bool) -> Result<()> {
    let report = crate::preflight::check(&[Tool::Docker, Tool::Compose], daemon);
    let mut problems = report.problems;
    if problems.is_empty() && report.compose == ComposeCli::V1Standalone {
        problems.push("docker compose v2 is needed (v1 cannot render config as JSON): run `cargo xtask setup`".into());
    }
    if problems.is_empty() {
        return Ok(());
    }
    let hint = if daemon {
        " (--static-only needs docker and the compose plugin, but no daemon)"
    } else {
        ""
    };
    Err(fail(
        Code::Preflight,
        format!("preflight failed: {}{hint}", problems.join("; ")),
    ))
}
