//! Placeholder until its issue lands.

use crate::flags::Bench;
use crate::Ctx;

pub fn run(ctx: &Ctx, _args: Bench) -> anyhow::Result<()> {
    super::not_yet(ctx, "bench", "run the benchmarks")
}
