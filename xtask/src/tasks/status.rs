//! `status <env>` and `history <env>`: what runs, what ran before and what
//! a rollback would go back to, derived only from the environment's audit
//! chain (the one source of truth; there is no second deployment log).
//!
//! Needs: the config and the state directory; no engine (status reports
//! what the chain says, not what a container answers).
//! Never touches: anything; both are read-only. A chain that does not
//! verify is not summarised: they exit 6 and point at `audit show`.

use anyhow::Result;
use serde_json::json;

use crate::audit::{line_form, History, Log, Tip};
use crate::ctx::Ctx;
use crate::exit::{fail, Code};
use crate::flags::Format;

/// The verified chain of `env` as history, or exit 6.
fn load(ctx: &Ctx, env: &str) -> Result<(Log, Tip, History, Vec<String>)> {
    let cfg = ctx.config()?;
    let log = ctx.log(&cfg, env)?;
    let c = log.check()?;
    let tip = match &c.local {
        Ok(t) => *t,
        Err(b) => {
            return Err(fail(
                Code::Verify,
                format!(
                    "{env}: {}: {b}: history is derived from the chain and this one does not verify; look with `cargo xtask audit show --env {env}`",
                    log.path.display()
                ),
            ))
        }
    };
    let problems = c.problems(&log);
    let h = History::new(log.records()?);
    Ok((log, tip, h, problems))
}

fn done(env: &str, problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(fail(
            Code::Verify,
            format!("{env}: {}", problems.join("; ")),
        ))
    }
}

pub fn status(ctx: &Ctx, env: &str) -> Result<()> {
    let (log, tip, h, problems) = load(ctx, env)?;
    let last = h.records.last();
    let sink = log.sink.as_ref().map(|p| p.display().to_string());
    match ctx.global.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "env": env,
                "current": h.current(),
                "previous_good": h.previous_good(),
                "last_event": last,
                "records": tip.count,
                "head": tip.head_hex(),
                "sink": sink,
                "problems": problems,
            }))?
        ),
        Format::Text => {
            println!("env: {env}");
            println!(
                "current: {}",
                h.current().unwrap_or("none (nothing deployed yet)")
            );
            println!(
                "previous good: {}",
                h.previous_good()
                    .unwrap_or("none (nothing to roll back to)")
            );
            println!(
                "last event: {}",
                last.map_or_else(|| "none".to_string(), line_form)
            );
            match (&sink, problems.first()) {
                (None, _) => println!("sink: none configured"),
                (Some(p), None) => println!("sink: {p} (matches)"),
                (Some(p), Some(_)) => println!("sink: {p} (DOES NOT MATCH, see below)"),
            }
            println!("records: {}", tip.count);
            println!("audit head: {}", tip.head_hex());
        }
    }
    done(env, problems)
}

pub fn history(ctx: &Ctx, env: &str) -> Result<()> {
    let (_, _, h, problems) = load(ctx, env)?;
    match ctx.global.format {
        Format::Json => {
            let deployments: Vec<_> = h.attempts().collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "env": env,
                    "deployments": deployments,
                    "current": h.current(),
                    "rollback_target": h.previous_good(),
                }))?
            );
        }
        Format::Text => {
            let mut any = false;
            for r in h.attempts() {
                any = true;
                println!("#{} {}", r.seq, line_form(r));
            }
            if !any {
                eprintln!("no deployments recorded for {env}");
            }
            println!("current: {}", h.current().unwrap_or("none"));
            println!("rollback target: {}", h.previous_good().unwrap_or("none"));
        }
    }
    done(env, problems)
}
