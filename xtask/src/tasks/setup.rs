//! `setup`: install (where missing) and start (where stopped) the local
//! engines; the work is in [`crate::provision`], which `test` and `demo`
//! share. Idempotent; never stops or removes anything.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::flags::Setup;

pub fn run(ctx: &Ctx, args: Setup) -> Result<()> {
    crate::provision::run(ctx, args.check)
}
