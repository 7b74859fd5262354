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

mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

pub use crate::cmd::{Command, Effect, EnvVar, Secretable};
use crate::engine::slots::Set;
use crate::engine::{Stateful, Target};
pub use crate::exit::Refusal;
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
    /// Blue/green: stop, then remove, a set that has no traffic (the
    /// standby set before a new one starts; a new set that failed). Never
    /// a volume. `names` as planned; empty when only known at run time.
    Discard { set: Set, names: Vec<String> },
    /// Blue/green: start a set beside the sets that stay (the serving one
    /// and the designated standby); `scale` counts them all, plus the new
    /// set's replicas from the config.
    StartBeside {
        set: Set,
        scale: BTreeMap<String, u32>,
    },
    /// Blue/green: start the set's stopped containers (a warm one is left as it is).
    Start { set: Set, names: Vec<String> },
    /// Blue/green: the health gate, asking each of the set's containers on
    /// its own address, before any traffic reaches it.
    GateSet { set: Set, gate: Gate },
    /// Blue/green: point the proxy's routes at the set (atomic per route).
    Switch { set: Set },
    /// Blue/green: the set that lost its traffic: workers stop, HTTP
    /// containers drain, then stay warm or stop (`keep_previous`).
    Retire { set: Set, names: Vec<String> },
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
        /// Which refusal this is (for the parity test's enumeration).
        #[serde(skip)]
        refusal: Refusal,
        what: String,
        missing: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        overridden: Vec<String>,
    },
    /// A refusal decided while planning (no rollback target, say): the real
    /// run refuses (exit 5) and records it; so does the dry run.
    Refuse {
        #[serde(skip)]
        refusal: Refusal,
        why: String,
    },
    /// The operator's confirmation (`--yes`, or running in CI): `how` says
    /// what gave it, or what would. Missing, the plan is refused (exit 5,
    /// recorded), in a dry run too, after the plan is shown.
    Confirm { given: bool, how: String },
    /// Copy a file (a build artifact into an image context).
    CopyFile { from: PathBuf, to: PathBuf },
    /// Start the environment's stateful services where they are not running;
    /// never recreates one (`--no-recreate`).
    StartStateful { target: Stateful },
    /// Blue/green: the proxy's admin API answers (waiting up to `wait_secs`
    /// for a proxy just started) and has a route for each HTTP service;
    /// otherwise the plan is refused before an app container is touched.
    ProxyReady { target: Target, wait_secs: u64 },
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
            AppStep::Discard { set, names } => {
                set.container_commands(&["stop", "container rm"], names)
            }
            AppStep::StartBeside { set, scale } => vec![set.start_beside_command(scale)],
            AppStep::Start { set, names } => set.container_commands(&["start"], names),
            AppStep::Retire { set, names } => set.container_commands(&["stop"], names),
            AppStep::EnsureImages { .. }
            | AppStep::HealthGate(_)
            | AppStep::GateSet { .. }
            | AppStep::Switch { .. } => Vec::new(),
        }
    }

    /// Does applying this step change what serves (so that a failure after
    /// it needs the recovery)? Starting a new set counts: its workers take jobs.
    pub fn touches(&self) -> bool {
        matches!(
            self,
            AppStep::Recreate { .. }
                | AppStep::Stop { .. }
                | AppStep::StartBeside { .. }
                | AppStep::Start { .. }
                | AppStep::Switch { .. }
                | AppStep::Retire { .. }
        )
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
    /// The digests of `from` and `to` as planned (the engine's or the
    /// chain's for `from`, the registry's or the chain's for `to`); a record
    /// without one looks the local image up when it is written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_digest: Option<String>,
    /// Per app service, when their images are in several repositories
    /// (the record's `digests`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub from_digests: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub to_digests: std::collections::BTreeMap<String, String>,
    /// Per app service, this host's image ID of an image no registry
    /// digest names (the record's `local`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub to_local: std::collections::BTreeMap<String, String>,
    pub reason: String,
    /// The image repository whose digests the record carries (first app service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Append even if the chain does not verify (and say so in the record).
    pub force: bool,
    /// Blue/green: the environment whose serving set the record names.
    #[serde(skip)]
    pub sets_of: Option<Target>,
    /// The webhook told of the record once it is appended (never its URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<crate::notify::Hook>,
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
    /// What the operator is told to check once the task ran, on success
    /// and failure alike (a rollback's `post_rollback`); not after a refusal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checklist: Vec<String>,
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
            checklist: Vec::new(),
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
}
