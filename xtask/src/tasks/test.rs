//! `test`: provision the engines (as `setup` does), then run every test in
//! the workspace. This is the one command CI runs (`.ci/run`), so a green run
//! here is a green run there.

use anyhow::{Context, Result};

use crate::cmd::{stream, Command, Effect};
use crate::ctx::Ctx;
use crate::exec::NoActions;
use crate::flags::Test;
use crate::plan::{Plan, Step};
use crate::repo::workspace_root;

/// The whole suite's limit: well inside CI's 90 minutes, so a hung test
/// ends with its name printed instead of the run being cut off.
const SUITE_SECS: u64 = 80 * 60;

pub fn run(ctx: &Ctx, args: Test) -> Result<()> {
    crate::provision::run(ctx, false).context("setup before the tests")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let c = Command::new(&cargo, Effect::ReadOnly)
        .args(["test", "--workspace", "--locked", "--no-fail-fast"])
        .args(args.args.iter().cloned())
        .cwd(workspace_root())
        .timeout(SUITE_SECS);
    let mut plan = Plan::new("test", None);
    plan.step(Step::run("run every test in the workspace", c.clone()));
    // The suite streams its output: it runs here, not through the executor.
    ctx.finish_with(&plan, &mut NoActions, |_, _| match stream(&c, false)? {
        Some(0) => Ok(()),
        code => anyhow::bail!("cargo test failed (exit {code:?})"),
    })
}
