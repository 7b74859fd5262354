//! `audit verify|show|repair`.

use anyhow::Result;

use crate::Ctx;

pub fn verify(ctx: &Ctx, env: Option<String>, expect_head: Option<String>) -> Result<()> {
    let cfg = ctx.config()?;
    let envs: Vec<String> = match env {
        Some(e) => vec![cfg.env(&e).map(|_| e.clone())?],
        None => cfg.envs.keys().cloned().collect(),
    };
    for e in envs {
        let v = ctx.log(&cfg, &e)?.verify()?;
        println!("{e}: {} records, head {}", v.count, v.head);
        if let Some(h) = &expect_head {
            if &v.head != h {
                return Err(crate::exit::fail(crate::exit::Code::Verify, format!("{e}: head {} is not the expected {h}", v.head)));
            }
        }
    }
    Ok(())
}

pub fn show(ctx: &Ctx, _env: Option<String>, _n: Option<usize>) -> Result<()> {
    super::not_yet(ctx, "audit show", "show audit records")
}

pub fn repair(ctx: &Ctx, _env: &str, _reason: &str) -> Result<()> {
    super::not_yet(ctx, "audit repair", "repair a torn audit line")
}
