//! Placeholder: replaced as the lifecycle tasks land.

use crate::flags::Demo;
use crate::Ctx;

pub fn run(ctx: &Ctx, _args: Demo) -> anyhow::Result<()> {
    super::not_yet(ctx, "demo", "the whole lifecycle against the testbed")
}
