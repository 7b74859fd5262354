//! The text rendering of a plan (`--dry-run`): numbered steps, the
//! failure path and the record, env shared by every command shown once,
//! each command with its time limit, wrapped to the terminal.

use std::fmt::Write as _;

use super::{AppStep, OnFailure, Plan, Step};
use crate::cmd::{Command, Effect};
use crate::config::EngineKind;
use crate::engine::Target;

impl AppStep {
    fn describe(&self, shared: &Shared) -> String {
        let lines = |c: &[Command]| lines(c, shared);
        let swarm = |t: &Target| t.engine() == EngineKind::Swarm;
        match self {
            AppStep::EnsureImages { target } => format!(
                "ensure images present (inspect, else pull): {}",
                target.image_refs().join(", ")
            ),
            AppStep::Pull { target } => format!(
                "pull {} on {}: {}",
                target.services().join(", "),
                target.tag(),
                lines(&target.pull_commands())
            ),
            AppStep::Recreate { target } if swarm(target) && target.is_image_only() => format!(
                "set the image of {} to {} (image-only, nothing else in the stack changes): {}",
                target.services().join(", "),
                target.tag(),
                lines(&target.recreate_commands())
            ),
            AppStep::Recreate { target } if swarm(target) => format!(
                "deploy stack {} with {} on {} (swarm updates only services whose spec changed): {}",
                target.project(),
                target.services().join(", "),
                target.tag(),
                lines(&target.recreate_commands())
            ),
            AppStep::Recreate { target } => format!(
                "recreate {} on {}: {}",
                target.services().join(", "),
                target.tag(),
                lines(&target.recreate_commands())
            ),
            AppStep::Converge { target, timeout_secs } => format!(
                "wait until every replica of {} runs {} (up to {timeout_secs}s; swarm rolling it back by itself fails this step), polling: {}",
                target.services().join(", "),
                target.tag(),
                lines(&target.converge_commands())
            ),
            AppStep::Stop { target } => format!(
                "stop {} (left stopped, volumes kept): {}",
                target.services().join(", "),
                lines(&target.stop_commands())
            ),
            AppStep::HealthGate(g) => format!(
                "health gate: {} until {} (up to {}s)",
                g.urls.join(" and "),
                g.describe(),
                g.timeout_secs
            ),
            AppStep::Discard { set, .. } => format!(
                "discard {} (no traffic; stopped, then removed; volumes kept): {}",
                set.describe(),
                lines(&self.commands())
            ),
            AppStep::StartBeside { set, .. } => format!(
                "start {} beside the serving one (no traffic yet): {}",
                set.describe(),
                lines(&self.commands())
            ),
            AppStep::Start { set, .. } => format!(
                "start {} where stopped (warm containers are left as they are): {}",
                set.describe(),
                lines(&self.commands())
            ),
            AppStep::GateSet { set, gate } => format!(
                "health gate on each container of {} at its own address (<ip>:<port>{}), before any traffic, until {} (up to {}s)",
                set.describe(),
                set.target().proxy().map_or("", |p| p.health_path.as_str()),
                gate.describe(),
                gate.timeout_secs
            ),
            AppStep::Switch { set } => format!(
                "SWITCH the proxy to {}: through its runtime API, one conversation per route ({}): the new servers enabled, then the old ones drained, at {}",
                set.describe(),
                set.target().proxy().map_or(String::new(), |p| p
                    .routes
                    .keys()
                    .map(|s| crate::engine::proxy::route_id(s))
                    .collect::<Vec<_>>()
                    .join(", ")),
                set.target()
                    .proxy_admin_dir()
                    .map_or("the proxy".to_string(), |d| d
                        .join(crate::engine::proxy::SOCKET)
                        .display()
                        .to_string())
            ),
            AppStep::Retire { set, .. } => {
                let (drain, keep) = set.target().proxy().map_or((0, "warm"), |p| {
                    (
                        p.drain_secs,
                        match p.keep_previous {
                            crate::config::KeepPrevious::Warm => "kept warm for a rollback",
                            crate::config::KeepPrevious::Stopped => "stopped, kept for a rollback",
                        },
                    )
                });
                format!(
                    "retire {}: workers stop (SIGTERM; each finishes its job), HTTP containers drain {drain}s then are {keep}: {}",
                    set.describe(),
                    lines(&set.part(false).container_commands(&["stop"], &[]))
                )
            }
        }
    }
}

impl Step {
    fn describe(&self, shared: &Shared) -> String {
        match self {
            Step::Run { why, command } => format!("{why}: {}", shared.show(command)),
            Step::Require {
                what,
                missing,
                overridden,
                ..
            } if missing.is_empty() && !overridden.is_empty() => {
                format!(
                    "require {what}: OVERRIDDEN by --force (recorded): missing {}",
                    overridden.join("; ")
                )
            }
            Step::Require { what, missing, .. } if missing.is_empty() => {
                format!("require {what}: met")
            }
            Step::Require { what, missing, .. } => {
                format!(
                    "require {what}: NOT MET, would refuse (exit 5): missing {}",
                    missing.join("; ")
                )
            }
            Step::CopyFile { from, to } => format!("copy {} to {}", from.display(), to.display()),
            Step::Refuse { why, .. } => format!("refuse (exit 5): {why}"),
            Step::Confirm { given: true, how } => format!("operator confirmation: given ({how})"),
            Step::Confirm { given: false, how } => {
                format!(
                    "operator confirmation: NOT GIVEN; the real run refuses (exit 5) without {how}"
                )
            }
            Step::Lock {
                env,
                path,
                wait_secs,
                task,
                ..
            } => {
                let wait = if *wait_secs == 0 {
                    "fail at once if held".to_string()
                } else {
                    format!("wait up to {wait_secs}s if held")
                };
                format!("lock {env} for {task} ({}; {wait})", path.display())
            }
            Step::StartStateful { target } => format!(
                "start {} if not running (never recreated): {}",
                target.services().join(", "),
                lines(&target.start_commands(), shared)
            ),
            Step::App(a) => a.describe(shared),
            Step::ProxyReady { target, wait_secs } => format!(
                "require the proxy ({}) to answer within {wait_secs}s with a route for {}; else refuse (exit 5) before any app container is touched",
                target
                    .proxy_admin_dir()
                    .map_or("?".to_string(), |d| d
                        .join(crate::engine::proxy::SOCKET)
                        .display()
                        .to_string()),
                target
                    .proxy()
                    .map(|p| p.routes.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            ),
            Step::WriteFile { path, what, .. } => format!("write {what} to {}", path.display()),
            Step::Action { what, effect, .. } => match effect {
                Effect::ReadOnly => format!("{what} (read-only)"),
                Effect::Mutating => what.clone(),
            },
        }
    }
}

fn lines(cmds: &[Command], shared: &Shared) -> String {
    cmds.iter()
        .map(|c| shared.show(c))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// The env assignments every command of a plan carries, shown once at the
/// top of the text rendering instead of on every command.
#[derive(Debug, Default)]
struct Shared(Vec<(String, String)>);

impl Shared {
    fn of(cmds: &[Command]) -> Shared {
        let with_env: Vec<&Command> = cmds.iter().filter(|c| !c.env.is_empty()).collect();
        if with_env.len() < 2 {
            return Shared::default();
        }
        let pairs = |c: &Command| -> Vec<(String, String)> {
            c.env
                .iter()
                .map(|e| (e.name.clone(), e.value.shown().to_string()))
                .collect()
        };
        let mut common = pairs(with_env[0]);
        for c in &with_env[1..] {
            let p = pairs(c);
            common.retain(|kv| p.contains(kv));
        }
        Shared(common)
    }

    /// A command as shown in the plan: its own env assignments (those not
    /// shared), the command, and its time limit.
    fn show(&self, c: &Command) -> String {
        let own: Vec<String> = c
            .env
            .iter()
            .filter(|e| {
                !self
                    .0
                    .iter()
                    .any(|(n, v)| n == &e.name && v == e.value.shown())
            })
            .map(|e| format!("{}={}", e.name, crate::cmd::quote(e.value.shown())))
            .collect();
        let mut out = own.join(" ");
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&c.display_bare());
        let _ = write!(out, " [limit {}s]", c.limit().as_secs());
        out
    }
}

/// Wraps `line` at word boundaries to `width`, continuation lines indented.
fn wrap(line: &str, width: usize, out: &mut String) {
    let lead = line.len() - line.trim_start().len();
    let mut cur = " ".repeat(lead);
    let mut empty = true;
    for word in line.trim_start().split(' ') {
        if !empty && cur.len() + 1 + word.len() > width {
            out.push_str(&cur);
            out.push('\n');
            cur = " ".repeat(lead + 4);
            empty = true;
        }
        if !empty {
            cur.push(' ');
        }
        cur.push_str(word);
        empty = false;
    }
    out.push_str(&cur);
    out.push('\n');
}

/// The width plans wrap to: `COLUMNS` where it is set, else 100 on a
/// terminal. Piped (a file, CI's log, a test) and without `COLUMNS`, lines
/// stay whole, so they can be searched.
fn width() -> Option<usize> {
    use std::io::IsTerminal;
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|w| *w >= 40);
    columns.or_else(|| std::io::stdout().is_terminal().then_some(100))
}

impl Plan {
    /// `setup --check` with steps left: prints them and is the error
    /// (exit 2) saying how many, so CI can tell a machine that needs setup.
    pub fn check_failure(&self, what: &str) -> anyhow::Error {
        print!(
            "{}",
            self.render().replace("dry run: nothing was changed\n", "")
        );
        crate::exit::fail(
            crate::exit::Code::Preflight,
            format!("{what}: {} step(s) needed", self.steps.len()),
        )
    }

    /// The dry-run text: numbered steps, the failure path and the audit record.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let env = self
            .env
            .as_deref()
            .map(|e| format!(" (env {e})"))
            .unwrap_or_default();
        let _ = writeln!(out, "plan: {}{env}", self.task);
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        if !self.facts.is_empty() {
            let _ = writeln!(out, "looked up while planning (read-only):");
            for f in &self.facts {
                let _ = writeln!(out, "  {}: {} (from {})", f.what, f.value, f.source);
            }
        }
        let all: Vec<Command> = self.all_steps().iter().flat_map(Step::commands).collect();
        let shared = Shared::of(&all);
        if !shared.0.is_empty() {
            let vars: Vec<String> = shared
                .0
                .iter()
                .map(|(n, v)| format!("{n}={}", crate::cmd::quote(v)))
                .collect();
            let _ = writeln!(
                out,
                "environment for every command below: {}",
                vars.join(" ")
            );
        }
        let _ = writeln!(out, "steps:");
        for (i, s) in self.steps.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, s.describe(&shared));
        }
        match &self.on_failure {
            OnFailure::Nothing => {}
            OnFailure::Recover { steps, to } => {
                let to = to
                    .as_deref()
                    .unwrap_or("nothing running (no earlier version)");
                let _ = writeln!(
                    out,
                    "if a step fails after the stack was touched, put it back on {to}:"
                );
                for (i, s) in steps.iter().enumerate() {
                    let _ = writeln!(out, "  r{}. {}", i + 1, s.describe(&shared));
                }
            }
            OnFailure::Advise { message } => {
                let _ = writeln!(
                    out,
                    "if a step fails after the stack was touched: leave it and advise: {message}"
                );
            }
        }
        if let Some(r) = &self.record {
            let sink = r
                .sink
                .as_ref()
                .map(|s| format!(" and sink {}", s.display()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "finally, on every outcome: append `{} | <outcome> | from={} | to={} | reason={}` to {}{sink}",
                r.action,
                with_digest(&r.from, &r.from_digest, &r.from_digests),
                with_digest(&r.to, &r.to_digest, &r.to_digests),
                r.reason,
                r.log.display()
            );
            if let Some(h) = &r.notify {
                let set = match h.is_set() {
                    true => "set",
                    false => "NOT SET: the run warns and tells no one",
                };
                let _ = writeln!(
                    out,
                    "then: post the record and the new head to the webhook in ${} ({set}; {}s per attempt, {} retries; a failure is a warning, never the outcome)",
                    h.url_env, h.timeout_secs, h.retries
                );
            }
        }
        if !self.checklist.is_empty() {
            let _ = writeln!(out, "then, unless refused, print this checklist:");
            for (i, c) in self.checklist.iter().enumerate() {
                let _ = writeln!(out, "  {}. {c}", i + 1);
            }
        }
        out.push_str("dry run: nothing was changed\n");
        // Facts and reasons are free text: none of the run's secrets stays in it.
        let out = crate::cmd::redact::redact(&out);
        let Some(width) = width() else { return out };
        let mut wrapped = String::new();
        for line in out.lines() {
            wrap(line, width, &mut wrapped);
        }
        wrapped
    }
}

/// `tag@sha256:...` as the record will name it, `-` for none.
fn with_digest(
    tag: &Option<String>,
    digest: &Option<String>,
    each: &std::collections::BTreeMap<String, String>,
) -> String {
    match (tag, digest) {
        (Some(t), _) if !each.is_empty() => format!(
            "{t}[{}]",
            each.iter()
                .map(|(s, d)| format!("{s}@{d}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        (Some(t), Some(d)) => format!("{t}@{d}"),
        (Some(t), None) => t.clone(),
        (None, _) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_wrap_at_words_with_an_indent() {
        let mut out = String::new();
        wrap(
            "  1. recreate api, worker on sha-1: docker compose -p p up -d",
            24,
            &mut out,
        );
        assert_eq!(
            out,
            "  1. recreate api,\n      worker on sha-1:\n      docker compose -p\n      p up -d\n"
        );
        let mut one = String::new();
        wrap("short", 24, &mut one);
        assert_eq!(one, "short\n");
        // A word longer than the width stays whole on its own line.
        let mut long = String::new();
        wrap("a 0123456789012345678901234567890", 10, &mut long);
        assert_eq!(long, "a\n    0123456789012345678901234567890\n");
    }

    #[test]
    fn env_shared_by_every_command_is_shown_once() {
        let c = |tag: &str| {
            Command::new("docker", Effect::Mutating)
                .args(["compose", "up"])
                .env("PORT", "1")
                .secret_env("TOKEN", "hunter2")
                .env("TAG", tag)
        };
        let shared = Shared::of(&[c("a"), c("b")]);
        assert_eq!(
            shared.0,
            vec![("PORT".into(), "1".into()), ("TOKEN".into(), "***".into())]
        );
        assert_eq!(shared.show(&c("a")), "TAG=a docker compose up [limit 600s]");
        // One command alone keeps its env inline.
        assert!(Shared::of(&[c("a")]).0.is_empty());
    }
}
