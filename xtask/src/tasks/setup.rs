//! `setup`: install (where missing) and start (where stopped) the local
//! engines; the work is in [`crate::provision`], which `test` and `demo`
//! share. Idempotent; never stops or removes anything, except that
//! `--swarm-nodes 1` removes the second swarm node `--swarm-nodes 2`
//! created ([`crate::nodes`]).

use anyhow::Result;

use crate::ctx::Ctx;
use crate::flags::Setup;

pub fn run(ctx: &Ctx, args: Setup) -> Result<()> {
    crate::provision::run(ctx, args.check)?;
    match args.swarm_nodes {
        Some(n) => crate::nodes::run(ctx, n, &crate::provision::registry_storage(), args.check),
        None => Ok(()),
    }
}
