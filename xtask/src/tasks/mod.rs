//! One module per task. Each opens with what it does, what it needs, and
//! what it never touches.

pub mod audit;
pub mod backup_smoke;
pub mod bench;
pub mod build;
pub mod demo;
pub mod deploy;
pub mod lint;
pub mod rollback;
pub mod security_modes;
pub mod setup;
pub mod status;
pub mod test;

#[cfg(test)]
mod scope;

use crate::exec::NoActions;
use crate::plan::{Effect, Plan, Step};
use crate::Ctx;

/// A task whose issue has not landed: its plan says so, and applying it fails.
pub(crate) fn not_yet(ctx: &Ctx, task: &str, what: &str) -> anyhow::Result<()> {
    let mut plan = Plan::new(task, None);
    plan.step(Step::action("not-implemented", format!("{what} (not implemented yet)"), Effect::Mutating));
    ctx.finish(&plan, &mut NoActions)
}
