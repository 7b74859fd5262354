//! Planning: the ordered actions of a run (preflight, then render, check,
//! boot, probe, teardown per mode, then report and verdict), each with the
//! text the plan shows and the data the runner needs. Read-only: it picks
//! project names and free ports and runs nothing.
//!
//! Static renders enable every profile (`--profile '*'`): a plain
//! `config` drops profile-gated services, which then go unchecked. Each
//! stack is rendered twice, interpolated (what would run) and with
//! `--no-interpolate` (what the files say, for the secret rules). The boot
//! starts the default profile only, as a deploy would.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

mod boot;

use super::policy::{Mode, Policy, Stack};
pub(super) use super::preflight::ImageCheck;
use super::proc::{Command, Effect};

/// One planned action: what the plan shows, and what the runner does.
pub(super) struct Spec {
    pub id: String,
    pub what: String,
    pub effect: Effect,
    pub kind: Kind,
}

impl Spec {
    fn new(id: String, what: String, effect: Effect, kind: Kind) -> Spec {
        Spec {
            id,
            what,
            effect,
            kind,
        }
    }
}

#[derive(Clone)]
pub(super) enum Kind {
    Preflight {
        daemon: bool,
        images: Option<Box<ImageCheck>>,
    },
    Render(Box<RenderSpec>),
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
    Report {
        sarif: Option<PathBuf>,
    },
    Verdict,
}

/// Rendering one stack in one mode, interpolated and raw.
#[derive(Clone)]
pub(super) struct RenderSpec {
    pub stack: String,
    pub mode: String,
    pub command: Command,
    pub raw: Command,
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
    /// Services reached at their container's address, found after `up`.
    pub inside: Vec<Inside>,
}

/// A service without a published port, probed at its container's address.
#[derive(Clone)]
pub(super) struct Inside {
    pub service: String,
    pub port: u16,
    /// `docker inspect` printing the container's addresses.
    pub inspect: Command,
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
    // An `env` stack renders as deploy does, and a `--compose` file as it
    // is: their own files, no overlay.
    let overlay = stack.takes_overlay().then_some(overlay);
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
    for (k, v) in &stack.secret_vars {
        c = c.secret_env(k, v);
    }
    c
}

/// What the plan says a render does.
fn render_what(sname: &str, stack: &Stack, mode: &str, render: &Command) -> String {
    let how = match &stack.env {
        Some(env) => {
            format!("render {sname} as deploy does (deploy environment {env}, which runs {mode})")
        }
        None if stack.direct => format!("render {sname} as it is, for {mode}"),
        None => format!("render {mode} on {sname}"),
    };
    format!(
        "{how}, every profile: {}; and again with --no-interpolate \
         (what the files say, for the secret rules)",
        render.display()
    )
}

/// The plan's actions, in order. Read-only: it only picks names and free ports.
pub(super) fn specs(
    policy: &Policy,
    modes: &[&Mode],
    tag: &str,
    render_tag: &str,
    static_only: bool,
    sarif: Option<PathBuf>,
) -> Result<Vec<Spec>> {
    let mut out = Vec::new();
    let daemon = !static_only;
    let boot_stack = policy.boot_stack().filter(|_| !static_only);
    let images = boot_stack.and_then(|(_, stack)| {
        let overlays: Vec<(String, PathBuf)> = modes
            .iter()
            .filter(|m| !m.probes.is_empty())
            .map(|m| (m.name.clone(), policy.resolve(&m.overlay)))
            .collect();
        let list: Vec<Command> = overlays
            .into_iter()
            .map(|(name, overlay)| {
                compose(
                    &format!("smt-images-{name}"),
                    stack,
                    overlay,
                    policy,
                    Effect::ReadOnly,
                )
                .env(&stack.tag_var, tag)
                .args(["config", "--images"])
            })
            .collect();
        ImageCheck::new(stack, tag, list)
    });
    let need = match (daemon, &images) {
        (true, Some(_)) => format!(
            "docker, the compose v2 plugin, a reachable daemon, and the images \
             the boot needs for {tag} (present locally or in their registry)"
        ),
        (true, None) => "docker, the compose v2 plugin and a reachable daemon".into(),
        (false, _) => "docker and the compose v2 plugin (no daemon needed)".into(),
    };
    out.push(Spec::new(
        "preflight".into(),
        format!("preflight: {need}"),
        Effect::ReadOnly,
        Kind::Preflight { daemon, images },
    ));
    for m in modes {
        for (sname, stack) in policy.stacks.iter().filter(|(_, s)| s.applies(&m.name)) {
            let mut base = compose(
                &format!("security-modes-{}", m.name),
                stack,
                policy.resolve(&m.overlay),
                policy,
                Effect::ReadOnly,
            );
            if !stack.direct {
                base = base.env(&stack.tag_var, render_tag);
            }
            let base = base.args(["--profile", "*", "config"]);
            let raw = base.clone().args(["--no-interpolate", "--format", "json"]);
            let render = base.args(["--format", "json"]);
            let what = render_what(sname, stack, &m.name, &render);
            out.push(Spec::new(
                format!("render/{sname}/{}", m.name),
                what,
                Effect::ReadOnly,
                Kind::Render(Box::new(RenderSpec {
                    stack: sname.clone(),
                    mode: m.name.clone(),
                    command: render,
                    raw,
                })),
            ));
            let mut what = format!("check {} on {sname}", m.name);
            if !m.rules.is_empty() {
                what.push_str(&format!(": every service against {}", m.rules.join(", ")));
            }
            if !m.app_rules.is_empty() && stack.app_services.is_empty() {
                what.push_str(&format!(
                    "; not {} (app rules: no app services named, see --app-service)",
                    m.app_rules.join(", ")
                ));
            } else if !m.app_rules.is_empty() {
                what.push_str(&format!(
                    "; app services ({}) against {}",
                    stack.app_services.join(", "),
                    m.app_rules.join(", ")
                ));
            }
            out.push(Spec::new(
                format!("check/{sname}/{}", m.name),
                what,
                Effect::ReadOnly,
                Kind::Check {
                    stack: sname.clone(),
                    mode: m.name.clone(),
                },
            ));
        }
    }
    for (m, (sname, stack)) in modes
        .iter()
        .filter(|m| !m.probes.is_empty())
        .filter_map(|m| boot_stack.map(|b| (m, b)))
    {
        out.extend(boot::specs(policy, m, sname, stack, tag)?);
    }
    let mut what =
        "print the results by mode and rule (--format json: the same as one JSON line)".to_string();
    let effect = match &sarif {
        Some(p) => {
            what.push_str(&format!("; write them as SARIF 2.1.0 to {}", p.display()));
            Effect::Mutating
        }
        None => Effect::ReadOnly,
    };
    out.push(Spec::new(
        "report".into(),
        what,
        effect,
        Kind::Report { sarif },
    ));
    out.push(Spec::new(
        "verdict".into(),
        "fail with exit 6 if any rule or probe failed".into(),
        Effect::ReadOnly,
        Kind::Verdict,
    ));
    Ok(out)
}
