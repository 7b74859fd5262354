//! What the executor shows while a step runs: the steps that take time are
//! phases (see `crate::progress`).

use anyhow::Result;

use crate::plan::{AppStep, Step};

/// What a step is called while it runs, for the steps that take time.
/// An action's text names every command it runs (the dry run shows it
/// whole); its progress line is the label before them, unless `verbose`.
pub(super) fn phase_of(s: &Step, verbose: bool) -> Option<String> {
    match s {
        Step::Run { why, .. } => Some(why.clone()),
        Step::Action { what, .. } if verbose => Some(what.clone()),
        Step::Action { what, .. } => Some(label(what)),
        Step::StartStateful { target } => Some(format!(
            "starting {} where not running",
            target.services().join(", ")
        )),
        // Shown by `Run::app`, which recoveries call too.
        _ => None,
    }
}

/// The widest progress line an action gets without `-v`.
pub const LABEL_WIDTH: usize = 160;

/// An action's label: its text up to the `: ` that introduces its commands
/// (`dump (exit 6 if pg_dump cannot): pg_dump ...`). A `: ` in the first
/// words is part of the label (`workload: N rows from ...: psql ...`).
fn label(what: &str) -> String {
    const MIN: usize = 20;
    let cut = what
        .match_indices(": ")
        .map(|(i, _)| i)
        .find(|&i| i >= MIN)
        .unwrap_or(what.len());
    let l = &what[..cut];
    match l.char_indices().nth(LABEL_WIDTH - 1) {
        Some((i, _)) => format!("{}…", &l[..i]),
        None => l.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_label_leaves_its_commands_out() {
        assert_eq!(
            label("dump (exit 6 if pg_dump cannot): pg_dump -Fc x: y"),
            "dump (exit 6 if pg_dump cannot)"
        );
        assert_eq!(
            label("workload: 10 rows from 2 sessions at once: psql a & psql b &"),
            "workload: 10 rows from 2 sessions at once"
        );
        assert_eq!(
            label("create the work directory /tmp/x"),
            "create the work directory /tmp/x"
        );
        let long = "x".repeat(500);
        assert_eq!(label(&long).chars().count(), LABEL_WIDTH);
    }
}
