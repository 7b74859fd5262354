//! The embedded DSL: a [`Plan`] is an ordered list of typed [`Step`]s.
//!
//! Tasks build a plan and never test `dry_run` themselves: `--dry-run`
//! renders the plan and stops, otherwise [`crate::exec::apply`] runs the same
//! plan. Building a plan has no side effects; read-only look-ups that planning
//! needed (which version runs now) are kept in [`Plan::facts`] and shown as such.
//!
//! Two properties hold by construction rather than by discipline:
//! - the audit record ([`Plan::record`]) is appended by the executor on every
//!   exit path (success, failure, refused, rolled-back), so no branch can
//!   forget it;
//! - deploy and rollback touch the stack only through [`Step::Pull`],
//!   [`Step::Recreate`] and [`Step::Stop`] of a [`Target`], which the engine
//!   lowers to commands; a `Target`'s services are app services by type.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::EngineKind;
use crate::engine::Target;

/// An environment variable handed to a command; secret values are redacted when rendered.
#[derive(Debug, Clone, Serialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(serialize_with = "redacted_value")]
    pub value: Secretable,
}

/// A value that may be secret.
#[derive(Debug, Clone)]
pub enum Secretable {
    Plain(String),
    Secret(String),
}

impl Secretable {
    pub fn expose(&self) -> &str {
        match self {
            Secretable::Plain(v) | Secretable::Secret(v) => v,
        }
    }
    pub fn shown(&self) -> &str {
        match self {
            Secretable::Plain(v) => v,
            Secretable::Secret(_) => "***",
        }
    }
}

fn redacted_value<S: serde::Serializer>(v: &Secretable, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.shown())
}

/// Does running the command change anything?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    ReadOnly,
    Mutating,
}

/// A program with its arguments, each one argument: never a shell string.
#[derive(Debug, Clone, Serialize)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    pub effect: Effect,
}

impl Command {
    pub fn new(program: &str, effect: Effect) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            effect,
        }
    }
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push(EnvVar {
            name: name.into(),
            value: Secretable::Plain(value.into()),
        });
        self
    }
    /// A variable whose value never appears in dry-run output or logs.
    pub fn secret_env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push(EnvVar {
            name: name.into(),
            value: Secretable::Secret(value.into()),
        });
        self
    }
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The command as a reader would type it, with env assignments first and
    /// secrets redacted. Arguments with shell-special characters are quoted
    /// for display only; nothing ever runs through a shell.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for e in &self.env {
            let _ = write!(out, "{}={} ", e.name, quote(e.value.shown()));
        }
        out.push_str(&quote(&self.program));
        for a in &self.args {
            out.push(' ');
            out.push_str(&quote(a));
        }
        out
    }
}

fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What the health gate waits for.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub urls: Vec<String>,
    /// `version` must equal this tag, so an old container answering does not count.
    pub version: String,
    pub compliance_mode: String,
    pub timeout_secs: u64,
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
    /// A precondition decided while planning; unmet, the plan is refused (exit 5).
    Require { what: String, missing: Vec<String> },
    /// Make sure the target's images are present: inspect, else pull. Fails before anything is touched.
    EnsureImages { target: Target },
    /// Copy a file (a build artifact into an image context).
    CopyFile { from: PathBuf, to: PathBuf },
    /// Pull the target's images; fails before anything is touched.
    Pull { target: Target },
    /// Start the environment's stateful services where they are not running;
    /// never recreates one (`--no-recreate`).
    StartStateful { target: Target },
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
    /// Write a file.
    WriteFile {
        path: PathBuf,
        #[serde(skip)]
        contents: Vec<u8>,
        what: String,
    },
    /// A task-specific action in Rust (a verifier, a probe); the task's
    /// [`crate::exec::Actions`] runs it.
    Action {
        id: String,
        what: String,
        effect: Effect,
    },
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
            Step::Pull { target } => target.pull_commands(),
            Step::Recreate { target } => target.recreate_commands(),
            Step::Stop { target } => target.stop_commands(),
            Step::StartStateful { target } => target.start_stateful_commands(),
            Step::Converge { target, .. } => target.converge_commands(),
            _ => Vec::new(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Step::Run { why, command } => format!("{why}: {}", command.display()),
            Step::Require { what, missing } if missing.is_empty() => format!("require {what}: met"),
            Step::Require { what, missing } => {
                format!("require {what}: NOT MET, would refuse (exit 5): missing {}", missing.join("; "))
            }
            Step::EnsureImages { target } => format!(
                "ensure images present (inspect, else pull): {}",
                target.image_refs().join(", ")
            ),
            Step::CopyFile { from, to } => format!("copy {} to {}", from.display(), to.display()),
            Step::Lock { env, path, wait_secs, task, .. } => {
                let wait = if *wait_secs == 0 {
                    "fail at once if held".to_string()
                } else {
                    format!("wait up to {wait_secs}s if held")
                };
                format!("lock {env} for {task} ({}; {wait})", path.display())
            }
            Step::Pull { target } => format!(
                "pull {} on {}: {}",
                target.services.join(", "),
                target.tag,
                lines(&target.pull_commands())
            ),
            Step::Recreate { target } if target.engine == EngineKind::Swarm && target.image_only => format!(
                "set the image of {} to {} (image-only, nothing else in the stack changes): {}",
                target.services.join(", "),
                target.tag,
                lines(&target.recreate_commands())
            ),
            Step::Recreate { target } if target.engine == EngineKind::Swarm => format!(
                "deploy stack {} with {} on {} (swarm updates only services whose spec changed): {}",
                target.project,
                target.services.join(", "),
                target.tag,
                lines(&target.recreate_commands())
            ),
            Step::Recreate { target } => format!(
                "recreate {} on {}: {}",
                target.services.join(", "),
                target.tag,
                lines(&target.recreate_commands())
            ),
            Step::Converge { target, timeout_secs } => format!(
                "wait until every replica of {} runs {} (up to {timeout_secs}s; swarm rolling it back by itself fails this step), polling: {}",
                target.services.join(", "),
                target.tag,
                lines(&target.converge_commands())
            ),
            Step::StartStateful { target } => format!(
                "start {} if not running (never recreated): {}",
                target.stateful.join(", "),
                lines(&target.start_stateful_commands())
            ),
            Step::Stop { target } => format!(
                "stop {} (left stopped, volumes kept): {}",
                target.services.join(", "),
                lines(&target.stop_commands())
            ),
            Step::HealthGate(g) => format!(
                "health gate: {} until status=ok, version={}, compliance_mode={} (up to {}s)",
                g.urls.join(" and "),
                g.version,
                g.compliance_mode,
                g.timeout_secs
            ),
            Step::WriteFile { path, what, .. } => format!("write {what} to {}", path.display()),
            Step::Action { what, effect, .. } => match effect {
                Effect::ReadOnly => format!("{what} (read-only)"),
                Effect::Mutating => what.clone(),
            },
        }
    }
}

fn lines(cmds: &[Command]) -> String {
    cmds.iter()
        .map(Command::display)
        .collect::<Vec<_>>()
        .join(" && ")
}

/// What happens when a step fails after the stack was touched.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OnFailure {
    /// Nothing to undo (the plan never touches a stack).
    Nothing,
    /// Run these steps to put the environment back; success exits 3, failure 4.
    Recover {
        steps: Vec<Step>,
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
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        let recovery: &[Step] = match &self.on_failure {
            OnFailure::Recover { steps, .. } => steps,
            _ => &[],
        };
        self.steps.iter().chain(recovery)
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
        let _ = writeln!(out, "steps:");
        for (i, s) in self.steps.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, s.describe());
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
                    let _ = writeln!(out, "  r{}. {}", i + 1, s.describe());
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_and_redacts() {
        let c = Command::new("docker", Effect::Mutating)
            .args(["tag", "sha-1; rm -rf /", "it's"])
            .env("TAG", "v1")
            .secret_env("PGPASSWORD", "hunter2");
        let d = c.display();
        assert_eq!(
            d,
            "TAG=v1 PGPASSWORD='***' docker tag 'sha-1; rm -rf /' 'it'\\''s'"
        );
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains("\"***\""), "{json}");
    }
}
