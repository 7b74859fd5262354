//! Placeholder until its issue lands: the plan says so and applying it fails.

use crate::flags::BackupSmoke;
use crate::Ctx;

pub fn run(ctx: &Ctx, _args: BackupSmoke) -> anyhow::Result<()> {
    super::not_yet(ctx, "backup-smoke", "backup_smoke")
}

pub mod copy;
pub mod verify;
