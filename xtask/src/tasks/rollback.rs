//! `rollback <env>`: put the app services back on an earlier image.
//!
//! Image-only, by construction: the plan can express nothing but "recreate
//! these app services on this tag" (a [`Target`]), so queue state, artifact
//! storage, database schema and the audit chain are out of its reach. The
//! chain is only ever appended to, on success and on failure alike.
//!
//! Needs: docker, compose, a reachable daemon; the target image present or pullable.

use anyhow::Result;

use crate::audit::{History, ImageRef};
use crate::ctx::Ctx;
use crate::engine::Target;
use crate::exec::{Actions, Applied};
use crate::exit::Code;
use crate::flags::Rollback;
use crate::plan::{AppStep, OnFailure, Plan};
use crate::plan::{Refusal, Step};
use crate::preflight::Tool;
use crate::rollout::{
    blue_green, compose_checks, default_target, images_check, lock, other_bytes, placement, record,
    show_pins, standby_with, state_dir, switch_to, unknown_sets, verified_history, Now,
    PROXY_RECHECK_SECS,
};
use crate::validate;

pub fn run(ctx: &Ctx, args: Rollback) -> Result<()> {
    if let Some(t) = args.to.as_ref().filter(|t| !t.starts_with('@')) {
        validate::tag(t)?;
    }
    validate::reason(&args.reason)?;
    let cfg = ctx.config()?;
    cfg.env(&args.env)?;
    let mut plan = Plan::new("rollback", Some(&args.env));
    ctx.locate(&cfg, &args.env, &mut plan)?;
    let cli = ctx.preflight(&mut plan, &[Tool::Docker, Tool::Compose], true)?;
    ctx.reach(&args.env)?;
    let plan = build(ctx, &cfg, &args, cli, plan)?;
    ctx.finish(&plan, &mut Checklist(&plan.checklist))
}

/// The environment's `post_rollback` checks, after a rollback that ran, on
/// success and failure alike; a refused one changed nothing and gets none.
struct Checklist<'a>(&'a [String]);

impl Actions for Checklist<'_> {
    fn run(&mut self, id: &str) -> Result<()> {
        anyhow::bail!("rollback has no action {id}")
    }
    fn report(&mut self, result: std::result::Result<&Applied, &anyhow::Error>) {
        if result.is_err_and(|e| crate::exit::code_of(e) == Code::Refused) {
            return;
        }
        crate::out::merge(serde_json::json!({ "checklist": self.0 }));
        if self.0.is_empty() {
            return;
        }
        eprintln!("after a rollback (post_rollback in the config):");
        for (i, c) in self.0.iter().enumerate() {
            eprintln!("  {}. {c}", i + 1);
        }
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
    let untagged = Target::untagged(cfg, &args.env, env, cli)?;
    // The render's checks run while the engine is asked what runs.
    let checks = std::thread::scope(|s| {
        let checks = s.spawn(|| compose_checks(&untagged, env).0);
        let now = Now::look(&untagged, &history, &mut plan);
        let checks = checks
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (now, checks)
    });
    let (now, checks) = checks;
    for refusal in checks
        .into_iter()
        .chain(unknown_sets(&untagged, &now))
        .chain(placement(&untagged))
    {
        plan.step(refusal);
    }
    let (target_tag, recorded) = match choose(args, &history, &now, &mut plan)? {
        Ok(t) => t,
        Err(why) => {
            // Refused before anything is touched, and recorded.
            plan.step(Step::Refuse {
                refusal: Refusal::NoTarget,
                why,
            });
            plan.record = Some(record(
                &args.env,
                env,
                &log,
                "rollback",
                now.serving_ref(),
                None,
                &args.reason,
                args.force,
            ));
            return Ok(plan);
        }
    };
    // `choose` already said where an `@N` or a forced target came from.
    if !plan.facts.iter().any(|f| f.what == "rollback target") {
        plan.fact("rollback target", target_tag.clone(), "audit history");
    }
    // The bytes that ran, never what the tag points to now.
    let target = Target::app(cfg, &args.env, env, &target_tag, cli)?
        .image_only()
        .keeping_state_in(state_dir(&log))
        .pinned_ref(recorded.as_ref());
    if target.service_digests().is_empty() {
        plan.fact(
            "rollback digest",
            format!("none recorded for {target_tag} (a record older than digests): runs what the tag points to now"),
            "audit history",
        );
    } else {
        show_pins(&target, "audit history: the digests it ran with", &mut plan);
    }
    // Built from app steps alone: the lock is the one other step. A
    // standby set on the target runs its images: nothing to check.
    if standby_with(&target, &now, &target_tag).is_none() {
        if let Some(refusal) = images_check(&target, true) {
            plan.step(refusal);
        }
        plan.step(
            AppStep::EnsureImages {
                target: target.clone(),
            }
            .into(),
        );
    }
    plan.step(lock(&args.env, &log, args.lock_wait, "rollback", head));
    if target.blue_green() {
        // To the standby set when it holds the target (a switch), else a
        // new set beside the serving one; the recovery switches back.
        plan.step(Step::ProxyReady {
            target: target.clone(),
            wait_secs: PROXY_RECHECK_SECS,
        });
        let bg = blue_green(&target, env, &now, env.rollback_timeout_secs);
        for s in bg.steps {
            plan.step(s.into());
        }
        plan.on_failure = OnFailure::Recover {
            steps: bg.recovery,
            to: now.serving().map(str::to_string),
        };
    } else {
        for s in switch_to(&target, env, env.rollback_timeout_secs) {
            plan.step(s.into());
        }
        // Interrupted or failed after the recreate began, the rollback puts
        // back what served before it, so it never leaves a half-switched stack.
        let to = target.image_ref_record();
        let before = now
            .serving_ref()
            .filter(|s| s.tag != target_tag || other_bytes(s, &to));
        plan.on_failure = match before {
            Some(before) => OnFailure::Recover {
                steps: switch_to(
                    &target.on_tag(&before.tag).pinned_ref(Some(&before)),
                    env,
                    env.rollback_timeout_secs,
                ),
                to: Some(before.tag),
            },
            None => OnFailure::Nothing,
        };
    }
    let mut rec = record(
        &args.env,
        env,
        &log,
        "rollback",
        now.serving_ref(),
        Some(target.image_ref_record()),
        &args.reason,
        args.force,
    );
    rec.sets_of = target.blue_green().then(|| target.clone());
    plan.record = Some(rec);
    plan.checklist = env.post_rollback(&args.env);
    Ok(plan)
}

/// The rollback target: `--to TAG`, `--to @N` (the version the record at
/// line N put in place), or by default the previous good version relative
/// to what runs; with the digest it ran with, per the chain (the record
/// at line N for `@N`, else the tag's last successful record that names
/// one). `Ok(Err(why))` is a refusal, recorded by the plan.
fn choose(
    args: &Rollback,
    history: &History,
    now: &Now,
    plan: &mut Plan,
) -> Result<std::result::Result<(String, Option<ImageRef>), String>> {
    let env = &args.env;
    let with_digest = |t: String| {
        let d = history.ref_of(&t).cloned();
        (t, d)
    };
    let Some(to) = &args.to else {
        return Ok(default_target(history, now).map(with_digest).ok_or_else(|| {
            format!(
                "no previous successful version of {env} to roll back to (history has {} deployments); nothing was changed",
                history.deployments().count()
            )
        }));
    };
    let mut recorded = None;
    let tag = match to.strip_prefix('@') {
        Some(n) => {
            let line: usize = n.parse().map_err(|_| {
                anyhow::anyhow!("--to @{n}: expected a record's line number, like @7")
            })?;
            let Some(r) = line.checked_sub(1).and_then(|i| history.records.get(i)) else {
                return Ok(Err(format!(
                    "the audit log of {env} has no line {line} ({} records)",
                    history.records.len()
                )));
            };
            let Some(t) = r.to.as_ref().map(|t| t.tag.clone()) else {
                return Ok(Err(format!(
                    "the record at line {line} ({} {}) names no version",
                    r.action, r.outcome
                )));
            };
            plan.fact(
                "rollback target",
                format!("{t}, from the record at line {line}"),
                "audit history",
            );
            recorded =
                r.to.clone()
                    .filter(|t| t.digest.is_some() || !t.digests.is_empty());
            t
        }
        None => to.clone(),
    };
    validate::tag(&tag)?;
    if !history.deployed_ok(&tag) {
        if !args.force {
            return Ok(Err(format!("{tag} was never deployed successfully to {env}; pass --force --reason to roll back to it anyway")));
        }
        plan.fact(
            "rollback target",
            format!("{tag} was never deployed here; allowed by --force"),
            "audit history",
        );
    }
    let (tag, digest) = match recorded {
        Some(d) => (tag, Some(d)),
        None => with_digest(tag),
    };
    // The same tag with other bytes (re-pushed) is not what runs.
    let same = match (now.serving_ref(), &digest) {
        (Some(runs), Some(d)) => !other_bytes(&runs, d),
        _ => true,
    };
    if now.running() == Some(tag.as_str()) && same && !args.force {
        return Ok(Err(format!("{tag} is already running in {env}; nothing to roll back (pass --force to recreate it anyway)")));
    }
    Ok(Ok((tag, digest)))
}
