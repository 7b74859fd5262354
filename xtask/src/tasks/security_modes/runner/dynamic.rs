//! The dynamic half of applying: boot a mode's project, probe it, take it
//! down. A failure here is a finding in the report, never a failed step, so
//! every booted mode reaches its teardown.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{finding, Runner};
use crate::tasks::security_modes::policy;
use crate::tasks::security_modes::probes::{self, Booted};
use crate::tasks::security_modes::proc;
use crate::tasks::security_modes::report::{Phase, Row};
use crate::tasks::security_modes::steps::{BootSpec, Inside};

impl Runner<'_> {
    pub(super) fn boot(&mut self, b: BootSpec) -> Result<()> {
        let BootSpec {
            mode,
            project,
            up,
            down,
            logs,
            mut bases,
            inside,
        } = b;
        let t = Instant::now();
        let (_, stack) = self.policy.boot_stack().context("no boot stack")?;
        let boot = stack.boot.as_ref().context("no boot table")?;
        let guard = Booted::arm(&project, down, logs, self.verbose);
        self.report.projects.insert(mode.clone(), project);
        let result = proc::run(&up, self.verbose)
            .map_err(|e| format!("{e:#}"))
            .and_then(|_| {
                for i in &inside {
                    bases.insert(i.service.clone(), address(i, self.verbose)?);
                }
                Ok(())
            })
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

    pub(super) fn teardown(&mut self, mode: &str) {
        let t = Instant::now();
        let failed = self
            .report
            .rows
            .iter()
            .any(|r| r.mode == mode && r.phase == Phase::Dynamic && !r.passed);
        let findings = match self.booted.remove(mode) {
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
            mode,
            Phase::Dynamic,
            self.boot_name(),
            "teardown",
            findings,
        ));
        self.report
            .time(mode, Phase::Dynamic, t.elapsed().as_secs_f64());
    }

    pub(super) fn probe(&mut self, mode_name: &str) {
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
                boot.as_ref().map(|b| b.services()).unwrap_or_default()
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
                    findings.push(finding(&svc, "no address for this service".into()));
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

/// `http://ADDRESS:PORT` of a service's container, from `docker inspect`
/// (the host reaches the compose network's bridge).
fn address(i: &Inside, verbose: bool) -> Result<String, String> {
    let out = proc::run(&i.inspect, verbose).map_err(|e| format!("{e:#}"))?;
    match out.split_whitespace().next() {
        Some(ip) if ip.contains(':') => Ok(format!("http://[{ip}]:{}", i.port)),
        Some(ip) => Ok(format!("http://{ip}:{}", i.port)),
        None => Err(format!(
            "{} has no address on any network: {}",
            i.service,
            i.inspect.display()
        )),
    }
}
