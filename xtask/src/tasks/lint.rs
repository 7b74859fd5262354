//! Placeholder until its issue lands.

use crate::Ctx;

pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    super::not_yet(ctx, "lint", "fmt, clippy, actionlint, shellcheck")
}
