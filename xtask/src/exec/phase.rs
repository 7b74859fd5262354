//! What the executor shows while a step runs: the steps that take time are
//! phases (see `crate::progress`).

use anyhow::Result;

use crate::plan::{AppStep, Step};

/// What a step is called while it runs, for the steps that take time.
pub(super) fn phase_of(s: &Step) -> Option<String> {
    match s {
        Step::Run { why, .. } => Some(why.clone()),
        Step::Action { what, .. } => Some(what.clone()),
        Step::StartStateful { target } => Some(format!(
            "starting {} where not running",
            target.services().join(", ")
        )),
        // Shown by `Run::app`, which recoveries call too.
        _ => None,
    }
}

pub(super) fn app_phase_of(a: &AppStep) -> Option<String> {
    match a {
        AppStep::EnsureImages { target } => Some(format!("checking images for {}", target.tag())),
        AppStep::Pull { target } => Some(format!(
            "pulling {} on {}",
            target.services().join(", "),
            target.tag()
        )),
        AppStep::Recreate { target } => Some(format!(
            "recreating {} on {}",
            target.services().join(", "),
            target.tag()
        )),
        AppStep::Stop { target } => Some(format!("stopping {}", target.services().join(", "))),
        AppStep::Converge { target, .. } => Some(format!(
            "waiting for swarm to run {} on {}",
            target.services().join(", "),
            target.tag()
        )),
        AppStep::Discard { set, .. } => Some(format!("discarding {}", set.describe())),
        AppStep::StartBeside { set, .. } => Some(format!("starting {}", set.describe())),
        AppStep::Start { set, .. } => Some(format!("starting {} where stopped", set.describe())),
        AppStep::Switch { set } => Some(format!("switching the proxy to {}", set.describe())),
        AppStep::Retire { set, .. } => Some(format!("retiring {}", set.describe())),
        // The gates show their own progress.
        AppStep::HealthGate(_) | AppStep::GateSet { .. } => None,
    }
}

/// Runs `f` as a shown phase when `label` names one.
pub(super) fn shown<T>(label: Option<String>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(label) = label else { return f() };
    let phase = crate::progress::Phase::start(label);
    let r = f();
    phase.finish(r.is_ok());
    r
}
