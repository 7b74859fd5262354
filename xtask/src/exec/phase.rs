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
        Step::App(a) => app_phase_of(a),
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
        // The gate shows its own progress.
        AppStep::HealthGate(_) => None,
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
