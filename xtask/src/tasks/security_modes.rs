//! Placeholder until its issue lands: the plan says so and applying it fails.

use crate::flags::SecurityModes;
use crate::Ctx;

pub fn run(ctx: &Ctx, _args: SecurityModes) -> anyhow::Result<()> {
    super::not_yet(ctx, "security-modes", "security_modes")
}
