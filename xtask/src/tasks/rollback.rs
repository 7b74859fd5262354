//! `rollback <env>`: put the app services back on an earlier image.
//!
//! Image-only, by construction: the plan can express nothing but "recreate
//! these app services on this tag" (a [`Target`]), so queue state, artifact
//! storage, database schema and the audit chain are out of its reach. The
//! chain is only ever appended to, on success and on failure alike.
//!
//! Needs: docker, compose, a reachable daemon; the target image present or pullable.

use anyhow::Result;

use crate::engine::Target;
use crate::exec::NoActions;
use crate::exit::{fail, Code};
use crate::flags::Rollback;
use crate::plan::{OnFailure, Plan, Step};
use crate::preflight::Tool;
use crate::tasks::deploy::{gate, lock, record, verified_history};
use crate::{validate, Ctx};

pub fn run(ctx: &Ctx, args: Rollback) -> Result<()> {
    if let Some(t) = &args.to {
        validate::tag(t)?;
    }
    validate::reason(&args.reason)?;
    let cfg = ctx.config()?;
    cfg.env(&args.env)?;
    let mut plan = Plan::new("rollback", Some(&args.env));
    let cli = ctx.preflight(&mut plan, &[Tool::Docker, Tool::Compose], true)?;
    let plan = build(ctx, &cfg, &args, cli, plan)?;
    let result = ctx.finish(&plan, &mut NoActions);
    if !ctx.global.dry_run {
        // The runbook's checks, on success and failure alike.
        match ctx.log(&cfg, &args.env)?.verify() {
            Ok(v) => eprintln!(
                "audit chain of {} verifies: {} records, head {}",
                args.env, v.count, v.head
            ),
            Err(e) => eprintln!("audit chain of {} DOES NOT VERIFY: {e:#}", args.env),
        }
        print_checklist(&args.env);
    }
    result
}

/// Builds the rollback plan (reads the chain; changes nothing).
pub fn build(
    ctx: &Ctx,
    cfg: &crate::config::Config,
    args: &Rollback,
    cli: crate::engine::ComposeCli,
    mut plan: Plan,
) -> Result<Plan> {
    let env = cfg.env(&args.env)?;
    let log = ctx.log(cfg, &args.env)?;
    let (history, head) = verified_history(&log, args.force, &mut plan)?;
    let current = history.current().map(str::to_string);
    plan.fact(
        "current version",
        current.clone().unwrap_or_else(|| "none".into()),
        "audit history",
    );
    let target_tag = match &args.to {
        Some(t) => {
            if !history.deployed_ok(t) {
                if !args.force {
                    return Err(fail(
                        Code::Refused,
                        format!("{t} was never deployed successfully to {}; pass --force --reason to roll back to it anyway", args.env),
                    ));
                }
                plan.fact("rollback target", format!("{t} was never deployed here; allowed by --force"), "audit history");
            }
            t.clone()
        }
        None => match default_target(&history) {
            Some(t) => t,
            None => {
                return Err(fail(
                    Code::Refused,
                    format!("no previous successful version of {} to roll back to (history has {} deployments); nothing was changed", args.env, history.deployments().count()),
                ))
            }
        },
    };
    plan.fact("rollback target", target_tag.clone(), "audit history");
    let target = Target::app(cfg, &args.env, env, &target_tag, cli)?.image_only();
    plan.step(Step::EnsureImages {
        target: target.clone(),
    });
    plan.step(lock(&args.env, &log, args.lock_wait, "rollback", head));
    for s in target.rollout(crate::tasks::deploy::converge_secs(env)) {
        plan.step(s);
    }
    plan.step(gate(env, &target_tag, env.rollback_timeout_secs));
    plan.on_failure = OnFailure::Nothing;
    plan.record = Some(record(
        &args.env,
        env,
        &log,
        "rollback",
        current,
        &target_tag,
        &args.reason,
        args.force,
    ));
    Ok(plan)
}

fn print_checklist(env: &str) {
    eprintln!("after a rollback (runbook):");
    eprintln!(
        "  1. check the queue for stuck or failed jobs: rollback does not restore queue state"
    );
    eprintln!("  2. confirm the chain: cargo xtask audit verify --env {env}");
    eprintln!("  3. notify the team, with the reason recorded above");
    eprintln!("  4. find the root cause of the failed version before deploying it again");
}

/// The default rollback target. Normally the last good version before the
/// current one; but when the newest deploy failed and was left in place
/// (`--no-auto-rollback`), what runs is that failed version, and the target
/// is the last version that passed: the recorded current one.
pub fn default_target(h: &crate::audit::History) -> Option<String> {
    let newest = h
        .records
        .iter()
        .rev()
        .find(|r| matches!(r.action.as_str(), "deploy" | "promote" | "rollback"))?;
    let current = h.current();
    let left_failed =
        newest.outcome == "failure" && newest.to.as_ref().map(|t| t.tag.as_str()) != current;
    if left_failed {
        current.map(str::to_string)
    } else {
        h.previous_good().map(str::to_string)
    }
}
