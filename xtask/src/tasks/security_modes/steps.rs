//! Planning: the ordered actions of a run (render, check, boot, probe,
//! teardown per mode, then report and verdict), each with the text the plan
//! shows and the data the runner needs. Read-only: it picks project names and
//! free ports and runs nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use super::policy::{Mode, Policy, Stack};
use crate::plan::{Command, Effect};

/// One planned action: what the plan shows, and what the runner does.
pub(super) struct Spec {
    pub id: String,
    pub what: String,
    pub effect: Effect,
    pub kind: Kind,
}

#[derive(Clone)]
pub(super) enum Kind {
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
    Boot(Box<BootSpec>),
    Probe {
        mode: String,
    },
    Teardown {
        mode: String,
    },
    Report,
    Verdict,
}

/// Starting one mode's project, and what its guard needs to take it down.
#[derive(Clone)]
pub(super) struct BootSpec {
    pub mode: String,
    pub project: String,
    pub up: Command,
    pub down: Command,
    pub logs: Command,
    /// Service -> `http://127.0.0.1:PORT`.
    pub bases: BTreeMap<String, String>,
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
    // An `env` stack renders as deploy does: its own files, no overlay.
    let overlay = stack.env.is_none().then_some(overlay);
    for f in stack
        .compose_files
        .iter()
        .map(|f| policy.resolve(f))
        .chain(overlay)
    {
        c = c.arg("-f").arg(f.display().to_string());
    }
    for (k, v) in &stack.vars {
        c = c.env(k, v);
    }
    c
}

/// The plan's actions, in order. Read-only: it only picks names and free ports.
pub(super) fn specs(
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
        for (sname, stack) in policy.stacks.iter().filter(|(_, s)| s.applies(&m.name)) {
            let render = compose(
                &format!("security-modes-{}", m.name),
                stack,
                policy.resolve(&m.overlay),
                policy,
                Effect::ReadOnly,
            )
            .env(&stack.tag_var, render_tag)
            .args(["config", "--format", "json"]);
            let what = match &stack.env {
                Some(env) => format!(
                    "render {sname} as deploy does (deploy environment {env}, which runs {}): {}",
                    m.name,
                    render.display()
                ),
                None => format!("render {} on {sname}: {}", m.name, render.display()),
            };
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
        let ports = crate::repo::free_ports(boot.ports.len())?;
        for ((svc, var), port) in boot.ports.iter().zip(ports) {
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
            Kind::Boot(Box::new(BootSpec {
                mode: m.name.clone(),
                project: project.clone(),
                up,
                down: down.clone(),
                logs,
                bases,
            })),
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
