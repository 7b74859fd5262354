//! `status <env>` and `history <env>`: derived from the audit chain.

use anyhow::Result;

use crate::audit::History;
use crate::Ctx;

pub fn status(ctx: &Ctx, env: &str) -> Result<()> {
    let cfg = ctx.config()?;
    let log = ctx.log(&cfg, env)?;
    let v = log.verify()?;
    let h = History::new(log.records()?);
    println!("env: {env}");
    println!("current: {}", h.current().unwrap_or("-"));
    println!("previous good: {}", h.previous_good().unwrap_or("-"));
    println!("audit head: {}", v.head);
    Ok(())
}

pub fn history(ctx: &Ctx, env: &str) -> Result<()> {
    let cfg = ctx.config()?;
    let h = History::new(ctx.log(&cfg, env)?.records()?);
    for r in h.deployments() {
        println!("{} {} {}", r.ts, r.action, r.to.as_ref().map_or("-", |t| t.tag.as_str()));
    }
    Ok(())
}
