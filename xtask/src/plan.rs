//! The embedded DSL: a [`Plan`] is an ordered list of typed [`Step`]s.
//!
//! Tasks build a plan and never test `dry_run` themselves: `--dry-run`
//! renders the plan and stops, otherwise the executor (`exec::apply`) runs the same
//! plan. Building a plan has no side effects; read-only look-ups that planning
//! needed (which version runs now) are kept in [`Plan::facts`] and shown as such.
//!
//! Two properties hold by construction rather than by discipline:
//! - the audit record ([`Plan::record`]) is appended by the executor on every
//!   exit path (success, failure, refused, rolled-back), so no branch can
//!   forget it;
//! - deploy and rollback touch app services only through [`AppStep`]s of a
//!   [`Target`], which the engine lowers to commands; a `Target`'s services
//!   are app services by type, and a recovery ([`OnFailure::Recover`]) holds
//!   nothing but `AppStep`s. Stateful services appear in one step alone,
//!   [`Step::StartStateful`], which can only start what is absent.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

pub use crate::cmd::{Command, Effect, EnvVar, Secretable};
use crate::config::EngineKind;
use crate::engine::{Stateful, Target};
pub use crate::health::Gate;

/// The steps that act on app services and nothing else: all that a
/// rollback and a deploy's recovery are made of. Each holds a [`Target`],
/// which cannot name a stateful service, and none is an arbitrary command,
/// so a wrong rollback plan does not compile.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum AppStep {
    /// Make sure the target's images are present: inspect, else pull. Fails before anything is touched.
    EnsureImages { target: Target },
    /// Pull the target's images; fails before anything is touched.
    Pull { target: Target },
    /// Recreate the target's app services on its tag. Marks the stack as touched.
    Recreate { target: Target },
    /// Stop the target's app services (a failed first deploy with nothing to go back to).
    Stop { target: Target },
    /// Swarm: wait until every app service's update completed and every
    /// replica runs the tag; fails distinguishably when Swarm rolled the
    /// update back by itself (`docker stack deploy` exits 0 even then).
    Converge { target: Target, timeout_secs: u64 },
    /// Poll the health URLs until the service contract holds for the tag.
    HealthGate(Gate),
}

/// One typed step.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Run a command.
    Run { why: String, command: Command },
    /// Take the environment's exclusive deploy lock, held until the plan ends.
    /// With `planned_head`, the audit head must still be the one the plan was
    /// made from, so a plan made stale while waiting is refused, not applied.
    Lock {
        env: String,
        path: PathBuf,
        wait_secs: u64,
        task: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        planned_head: Option<(PathBuf, String)>,
    },
    /// A precondition decided while planning; unmet, the plan is refused
    /// (exit 5). `overridden` lists what `--force` let through (recorded).
    Require {
        what: String,
        missing: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        overridden: Vec<String>,
    },
    /// A refusal decided while planning (no rollback target, say): the real
    /// run refuses (exit 5) and records it; so does the dry run.
    Refuse { why: String },
    /// The operator's confirmation (`--yes`, or running in CI). Missing, the
    /// real run is refused (exit 5, recorded); a dry run, which is how one
    /// previews before confirming, only says so.
    Confirm { given: bool, how: String },
    /// Copy a file (a build artifact into an image context).
    CopyFile { from: PathBuf, to: PathBuf },
    /// Start the environment's stateful services where they are not running;
    /// never recreates one (`--no-recreate`).
    StartStateful { target: Stateful },
    /// Write a file.
    WriteFile {
        path: PathBuf,
        #[serde(skip)]
        contents: Vec<u8>,
        what: String,
    },
    /// A task-specific action in Rust (a verifier, a probe); the task's
    /// actions (`exec::Actions`) run it.
    Action {
        id: String,
        what: String,
        effect: Effect,
    },
    /// A step on app services only (serialized as the app step itself).
    #[serde(untagged)]
    App(AppStep),
}

impl From<AppStep> for Step {
    fn from(s: AppStep) -> Step {
        Step::App(s)
    }
}

impl AppStep {
    /// Every command line the step can run, rendered (the scope tests read these).
    pub fn commands(&self) -> Vec<Command> {
        match self {
            AppStep::Pull { target } => target.pull_commands(),
            AppStep::Recreate { target } => target.recreate_commands(),
            AppStep::Stop { target } => target.stop_commands(),
            AppStep::Converge { target, .. } => target.converge_commands(),
            AppStep::EnsureImages { .. } | AppStep::HealthGate(_) => Vec::new(),
        }
    }

    /// Does applying this step change what serves?
    pub fn touches(&self) -> bool {
        matches!(self, AppStep::Recreate { .. } | AppStep::Stop { .. })
    }

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
                "health gate: {} until status=ok, version={}, compliance_mode={} (up to {}s)",
                g.urls.join(" and "),
                g.version,
                g.compliance_mode,
                g.timeout_secs
            ),
        }
    }
}

impl Step {
    pub fn run(why: impl Into<String>, command: Command) -> Step {
        Step::Run {
            why: why.into(),
            command,
        }
    }
    pub fn action(id: &str, what: impl Into<String>, effect: Effect) -> Step {
        Step::Action {
            id: id.into(),
            what: what.into(),
            effect,
        }
    }

    /// Every command line the step can run, rendered (the scope tests read these).
    pub fn commands(&self) -> Vec<Command> {
        match self {
            Step::Run { command, .. } => vec![command.clone()],
            Step::StartStateful { target } => target.start_commands(),
            Step::App(a) => a.commands(),
            _ => Vec::new(),
        }
    }

    fn describe(&self, shared: &Shared) -> String {
        match self {
            Step::Run { why, command } => format!("{why}: {}", shared.show(command)),
            Step::Require {
                what,
                missing,
                overridden,
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
            Step::Refuse { why } => format!("refuse (exit 5): {why}"),
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

/// What happens when a step fails after the stack was touched.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OnFailure {
    /// Nothing to undo (the plan never touches a stack).
    Nothing,
    /// Run these steps to put the environment back; success exits 3, failure 4.
    Recover {
        steps: Vec<AppStep>,
        to: Option<String>,
    },
    /// Leave things as they are and tell the operator what to run; exits 3.
    Advise { message: String },
}

/// The audit record a plan appends when it ends, whatever the outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSpec {
    pub env: String,
    pub log: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<PathBuf>,
    pub action: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: String,
    /// The image repository whose digests the record carries (first app service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Append even if the chain does not verify (and say so in the record).
    pub force: bool,
}

/// A read-only fact looked up while planning.
#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    pub what: String,
    pub value: String,
    pub source: String,
}

/// The plan of one task.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub task: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub facts: Vec<Fact>,
    pub steps: Vec<Step>,
    pub on_failure: OnFailure,
    pub record: Option<RecordSpec>,
    /// Warnings found while planning (missing tools in dry-run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn new(task: &str, env: Option<&str>) -> Plan {
        Plan {
            task: task.into(),
            env: env.map(Into::into),
            facts: Vec::new(),
            steps: Vec::new(),
            on_failure: OnFailure::Nothing,
            record: None,
            warnings: Vec::new(),
        }
    }
    pub fn fact(&mut self, what: &str, value: impl Into<String>, source: &str) {
        self.facts.push(Fact {
            what: what.into(),
            value: value.into(),
            source: source.into(),
        });
    }
    pub fn step(&mut self, s: Step) -> &mut Self {
        self.steps.push(s);
        self
    }

    /// Every step, the recovery ones included.
    pub fn all_steps(&self) -> Vec<Step> {
        let recovery: &[AppStep] = match &self.on_failure {
            OnFailure::Recover { steps, .. } => steps,
            _ => &[],
        };
        let recovery = recovery.iter().cloned().map(Step::App);
        self.steps.iter().cloned().chain(recovery).collect()
    }

    /// What unmet preconditions the real run would refuse on.
    pub fn unmet(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Require { what, missing, .. } if !missing.is_empty() => {
                    Some(format!("{what}: missing {}", missing.join("; ")))
                }
                Step::Refuse { why } => Some(why.clone()),
                _ => None,
            })
            .collect()
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
                r.from.as_deref().unwrap_or("-"),
                r.to.as_deref().unwrap_or("-"),
                r.reason,
                r.log.display()
            );
        }
        out.push_str("dry run: nothing was changed\n");
        let Some(width) = width() else { return out };
        let mut wrapped = String::new();
        for line in out.lines() {
            wrap(line, width, &mut wrapped);
        }
        wrapped
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
