//! `security-modes-test`: prove that each security mode's configuration
//! meets its policy (static) and that the running stack behaves as the mode
//! promises (dynamic).
//!
//! The modes are compose overlays (`deployments/modes/`) layered on the base
//! compose files named in `deployments/security-modes.toml`, which also
//! declares the rules and probes of each mode (see [`policy`]).
//! - Static: `docker compose -f BASE -f OVERLAY config --format json` renders
//!   each mode on each stack; [`rules`] checks the rendered JSON.
//! - Dynamic: the one stack with a `boot` table is started in each mode as a
//!   fresh compose project with its own name and free loopback ports,
//!   probed over HTTP ([`probes`]), and taken down with `down -v`.
//!
//! Needs: `docker` with the compose v2 plugin; a reachable daemon only for
//! the dynamic half (`--static-only` runs with the compose binary alone).
//! Preflight is the plan's first step rather than a look-up while planning,
//! so `--dry-run` runs no docker command at all.
//! Never touches: any compose project but the ones this run created (named
//! in the plan), images, or other volumes. A passing full run (every mode,
//! static and dynamic) appends `security-modes-test | success` for the tag
//! to `--env`'s audit log, the evidence the promotion gate looks for; a
//! failing full run appends its failure; partial runs record nothing.

mod policy;
mod probes;
mod report;
mod rules;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use self::policy::{Mode, Policy, Stack};
use self::probes::Booted;
use self::report::{Finding, Phase, Report, Row};
use crate::engine::ComposeCli;
use crate::exec::{run_command, Actions};
use crate::exit::{fail, Code};
use crate::flags::{Format, SecurityModes};
use crate::plan::{Command, Effect, Plan, RecordSpec, Step};
use crate::preflight::Tool;
use crate::{validate, Ctx};

const TASK: &str = "security-modes-test";
/// Renders with a release-shaped tag when the tag under test is not one
/// (test images), so the pinning rule judges the compose files, not the test.
const STAND_IN_TAG: &str = "sha-000000000000";

pub fn run(ctx: &Ctx, args: SecurityModes) -> Result<()> {
    let path = resolve_policy(&args.policy);
    let policy = Policy::load(&path)?;
    let tag = match (&args.tag, args.static_only) {
        (Some(t), _) => t.clone(),
        (None, false) => crate::head_tag()?,
        (None, true) => crate::head_tag().unwrap_or_else(|_| STAND_IN_TAG.into()),
    };
    validate::tag(&tag)?;
    if tag == "latest" {
        bail!("`latest` is not a version: pass --tag sha-<12 hex>");
    }
    let modes = policy.select(args.mode.as_deref())?;
    let full = args.mode.is_none() && !args.static_only;

    let mut plan = Plan::new(TASK, full.then_some(args.env.as_str()));
    let render_tag = if tag.starts_with("sha-") {
        tag.clone()
    } else {
        STAND_IN_TAG.to_string()
    };
    plan.fact("policy", path.display().to_string(), "--policy");
    plan.fact(
        "tag under test",
        tag.clone(),
        if args.tag.is_some() { "--tag" } else { "HEAD" },
    );
    if render_tag != tag {
        plan.fact(
            "render tag",
            format!("{render_tag} (stand-in: {tag} is not a sha- release tag)"),
            "policy",
        );
    }
    let specs = specs(&policy, &modes, &tag, &render_tag, args.static_only)?;
    for s in &specs {
        plan.step(Step::action(&s.id, s.what.clone(), s.effect));
    }
    if full {
        let cfg = ctx.config()?;
        let log = ctx.log(&cfg, &args.env)?;
        let names: Vec<&str> = modes.iter().map(|m| m.name.as_str()).collect();
        plan.record = Some(RecordSpec {
            env: args.env.clone(),
            log: log.path.clone(),
            sink: log.sink.clone(),
            action: TASK.into(),
            from: None,
            to: Some(tag.clone()),
            reason: format!("modes {}: static and dynamic", names.join(", ")),
            repository: None,
            force: false,
        });
    }
    let mut runner = Runner {
        policy: &policy,
        tag: tag.clone(),
        specs,
        rendered: BTreeMap::new(),
        booted: BTreeMap::new(),
        report: Report {
            tag,
            ..Default::default()
        },
        verbose: ctx.global.verbose,
        format: ctx.global.format,
    };
    let result = ctx.finish(&plan, &mut runner);
    // Whatever is still up (a step failed between boot and teardown) goes down here.
    drop(runner);
    result
}

/// The policy path: as given if it exists, else relative to the workspace root.
fn resolve_policy(p: &std::path::Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        p.to_path_buf()
    } else {
        crate::workspace_root().join(p)
    }
}

/// One planned action: what the plan shows, and what the runner does.
struct Spec {
    id: String,
    what: String,
    effect: Effect,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Preflight {
        daemon: bool,
    },
    Render {
        stack: String,
        mode: String,
        command: Command,
    },
    Check {
        stack: String,
        mode: String,
    },
    Boot {
        mode: String,
        project: String,
        up: Command,
        down: Command,
        logs: Command,
        bases: BTreeMap<String, String>,
    },
    Probe {
        mode: String,
    },
    Teardown {
        mode: String,
    },
    Report,
    Verdict,
}

fn compose(
    project: &str,
    stack: &Stack,
    overlay: PathBuf,
    policy: &Policy,
    effect: Effect,
) -> Command {
    let mut c = Command::new("docker", effect)
        .arg("compose")
        .arg("-p")
        .arg(project);
    for f in stack
        .compose_files
        .iter()
        .map(|f| policy.resolve(f))
        .chain([overlay])
    {
        c = c.arg("-f").arg(f.display().to_string());
    }
    for (k, v) in &stack.vars {
        c = c.env(k, v);
    }
    c
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .context("asking the OS for a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// The plan's actions, in order. Read-only: it only picks names and free ports.
fn specs(
    policy: &Policy,
    modes: &[&Mode],
    tag: &str,
    render_tag: &str,
    static_only: bool,
) -> Result<Vec<Spec>> {
    let mut out = Vec::new();
    let mut push = |id: String, what: String, effect: Effect, kind: Kind| {
        out.push(Spec {
            id,
            what,
            effect,
            kind,
        })
    };
    let daemon = !static_only;
    let need = if daemon {
        "docker, the compose v2 plugin and a reachable daemon"
    } else {
        "docker and the compose v2 plugin (no daemon needed)"
    };
    push(
        "preflight".into(),
        format!("preflight: {need}"),
        Effect::ReadOnly,
        Kind::Preflight { daemon },
    );
    for m in modes {
        for (sname, stack) in &policy.stacks {
            let render = compose(
                &format!("security-modes-{}", m.name),
                stack,
                policy.resolve(&m.overlay),
                policy,
                Effect::ReadOnly,
            )
            .env(&stack.tag_var, render_tag)
            .args(["config", "--format", "json"]);
            let what = format!("render {} on {sname}: {}", m.name, render.display());
            push(
                format!("render/{sname}/{}", m.name),
                what,
                Effect::ReadOnly,
                Kind::Render {
                    stack: sname.clone(),
                    mode: m.name.clone(),
                    command: render,
                },
            );
            let mut what = format!("check {} on {sname}", m.name);
            if !m.rules.is_empty() {
                what.push_str(&format!(": every service against {}", m.rules.join(", ")));
            }
            if !m.app_rules.is_empty() {
                what.push_str(&format!(
                    "; app services ({}) against {}",
                    stack.app_services.join(", "),
                    m.app_rules.join(", ")
                ));
            }
            push(
                format!("check/{sname}/{}", m.name),
                what,
                Effect::ReadOnly,
                Kind::Check {
                    stack: sname.clone(),
                    mode: m.name.clone(),
                },
            );
        }
    }
    let boot_stack = policy.boot_stack().filter(|_| !static_only);
    for (m, (sname, stack)) in modes
        .iter()
        .filter(|m| !m.probes.is_empty())
        .filter_map(|m| boot_stack.map(|b| (m, b)))
    {
        let boot = stack
            .boot
            .as_ref()
            .expect("the boot stack has a boot table");
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            & 0xffff;
        let project = format!("smt-{}-{}-{nonce:04x}", m.name, std::process::id());
        let mut up = compose(
            &project,
            stack,
            policy.resolve(&m.overlay),
            policy,
            Effect::Mutating,
        )
        .env(&stack.tag_var, tag);
        let mut bases = BTreeMap::new();
        for (svc, var) in &boot.ports {
            let port = free_port()?;
            up = up.env(var, port.to_string());
            bases.insert(svc.clone(), format!("http://127.0.0.1:{port}"));
        }
        let down = up
            .clone()
            .args(["down", "-v", "--remove-orphans", "--timeout", "2"]);
        let logs = Command {
            effect: Effect::ReadOnly,
            ..up.clone()
        }
        .args(["logs", "--no-color", "--tail", "20"]);
        let up = up.args(["up", "-d", "--no-build"]);
        let at: Vec<String> = bases
            .iter()
            .map(|(s, b)| format!("{s} on {}", b.trim_start_matches("http://")))
            .collect();
        let ready: Vec<String> = boot
            .ready
            .expect
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let what = format!(
            "boot {} on {sname} as compose project {project} ({}), then wait up to {}s for GET {} {}: {}",
            m.name,
            at.join(", "),
            boot.timeout_secs,
            boot.ready.path,
            ready.join(", "),
            up.display()
        );
        push(
            format!("boot/{}", m.name),
            what,
            Effect::Mutating,
            Kind::Boot {
                mode: m.name.clone(),
                project: project.clone(),
                up,
                down: down.clone(),
                logs,
                bases,
            },
        );
        let what = format!(
            "probe {}: {}",
            m.name,
            m.probes
                .iter()
                .map(|p| format!("{p} ({})", policy.probes[p].describe()))
                .collect::<Vec<_>>()
                .join("; ")
        );
        push(
            format!("probe/{}", m.name),
            what,
            Effect::ReadOnly,
            Kind::Probe {
                mode: m.name.clone(),
            },
        );
        let what = format!(
            "tear down {project} (this run's own project, also after a failure): {}",
            down.display()
        );
        push(
            format!("teardown/{}", m.name),
            what,
            Effect::Mutating,
            Kind::Teardown {
                mode: m.name.clone(),
            },
        );
    }
    push(
        "report".into(),
        "print the results by mode and rule (--format json: the same as one JSON line)".into(),
        Effect::ReadOnly,
        Kind::Report,
    );
    push(
        "verdict".into(),
        "fail with exit 6 if any rule or probe failed".into(),
        Effect::ReadOnly,
        Kind::Verdict,
    );
    Ok(out)
}

/// Runs the plan's actions and collects the report.
struct Runner<'a> {
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
            Kind::Boot {
                mode,
                project,
                up,
                down,
                logs,
                bases,
            } => {
                let t = Instant::now();
                let guard = Booted::arm(&project, down, logs, self.verbose);
                self.report.projects.insert(mode.clone(), project);
                let (_, stack) = self.policy.boot_stack().context("no boot stack")?;
                let boot = stack.boot.as_ref().context("no boot table")?;
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

impl Runner<'_> {
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
