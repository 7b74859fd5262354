//! `test`: run `setup`, then every test in the workspace. This is the one
//! command CI runs (`.ci/run`), so a green run here is a green run there.

use anyhow::{Context, Result};

use crate::flags::{Setup, Test};
use crate::{workspace_root, Ctx};

pub fn run(ctx: &Ctx, args: Test) -> Result<()> {
    crate::tasks::setup::run(ctx, Setup { check: false }).context("setup before the tests")?;
    if ctx.global.dry_run {
        println!("then: cargo test --workspace {}", args.args.join(" "));
        return Ok(());
    }
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["test", "--workspace", "--locked", "--no-fail-fast"])
            .args(&args.args)
            .current_dir(workspace_root())
            .status()
            .context("running cargo test")?;
    if !status.success() {
        anyhow::bail!("cargo test failed ({status})");
    }
    Ok(())
}
