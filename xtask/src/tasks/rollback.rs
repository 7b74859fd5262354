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
use crate::exec::{Actions, Applied};
use crate::exit::{fail, Code};
use crate::flags::Rollback;
use crate::plan::{AppStep, OnFailure, Plan};
use crate::preflight::Tool;
use crate::rollout::{lock, record, switch_to, verified_history};
use crate::validate;
use crate::ctx::Ctx;

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
    ctx.finish(&plan, &mut Checklist { env: &args.env })
}

/// The runbook's checks after a rollback that ran, on success and failure
/// alike; a refused one changed nothing and gets none.
struct Checklist<'a> {
    env: &'a str,
}

impl Actions for Checklist<'_> {
    fn run(&mut self, id: &str) -> Result<()> {
        anyhow::bail!("rollback has no action {id}")
    }
    fn report(&mut self, result: std::result::Result<&Applied, &anyhow::Error>) {
        if result.is_err_and(|e| crate::exit::code_of(e) == Code::Refused) {
            return;
        }
        let env = self.env;
        eprintln!("after a rollback (runbook):");
        eprintln!(
            "  1. check the queue for stuck or failed jobs: rollback does not restore queue state"
        );
        eprintln!("  2. confirm the chain: cargo xtask audit verify --env {env}");
        eprintln!("  3. notify the team, with the reason recorded above");
        eprintln!("  4. find the root cause of the failed version before deploying it again");
    }
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
    // Built from app steps alone: the lock is the one other step.
    plan.step(
        AppStep::EnsureImages {
            target: target.clone(),
        }
        .into(),
    );
    plan.step(lock(&args.env, &log, args.lock_wait, "rollback", head));
    for s in switch_to(&target, env, env.rollback_timeout_secs) {
        plan.step(s.into());
    }
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
