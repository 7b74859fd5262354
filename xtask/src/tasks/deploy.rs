//! `deploy-staging` and `deploy-prod`: put the app services on a new tag
//! behind the health gate, and put them back automatically when it fails.
//!
//! Needs: docker, the compose v2 plugin (or v1), a reachable daemon and registry;
//! for `engine = "swarm"`, a swarm manager (`docker stack deploy`).
//! Never touches: stateful services, volumes, `down`, `rm` or `prune`; the
//! plan can only pull, recreate or stop a [`Target`] of app services.
//! Every outcome (success, failure, refused, rolled-back) is appended to the
//! environment's audit chain, and the new head is the last line printed.

use anyhow::Result;

use crate::audit::{History, ImageRef};
use crate::config::Config;
use crate::ctx::Ctx;
use crate::engine::registry::short;
use crate::engine::{ComposeCli, Stateful, Target};
use crate::exec::NoActions;
use crate::flags::{Deploy, DeployProd};
use crate::plan::{AppStep, OnFailure, Plan, Refusal, Step};
use crate::preflight::Tool;
use crate::rollout::{
    blue_green, compose_checks, consistency, digests, gate, images_check, lock, pin, placement,
    put_on, record, switch_to, unknown_sets, verified_history, Now, PROXY_WAIT_SECS,
};
use crate::validate;

/// What a deploy was asked to do, validated.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: String,
    pub tag: String,
    pub reason: String,
    pub force: bool,
    pub lock_wait: u64,
    /// Production only: leave a failed version in place instead of rolling back.
    pub no_auto_rollback: bool,
    /// Production only: what confirmed it (`--yes`, or the CI variable
    /// that says this is CI), `Some(None)` when nothing did.
    pub confirmed: Option<Option<String>>,
}

impl Request {
    fn new(env: &str, d: &Deploy) -> Result<Request> {
        let tag = match &d.tag {
            Some(t) => t.clone(),
            None => crate::repo::head_tag()?,
        };
        validate::tag(&tag)?;
        let reason = d.reason.clone().unwrap_or_else(|| "deploy".into());
        validate::reason(&reason)?;
        Ok(Request {
            env: env.into(),
            tag,
            reason,
            force: d.force,
            lock_wait: d.lock_wait,
            no_auto_rollback: false,
            confirmed: None,
        })
    }
}

pub fn staging(ctx: &Ctx, args: Deploy) -> Result<()> {
    let req = Request::new("staging", &args)?;
    run(ctx, req, "deploy-staging")
}

pub fn prod(ctx: &Ctx, args: DeployProd) -> Result<()> {
    let mut req = Request::new("prod", &args.deploy)?;
    req.no_auto_rollback = args.no_auto_rollback;
    req.confirmed = Some(match (args.yes, crate::ci::detected_by()) {
        (true, _) => Some("--yes".into()),
        (false, Some(var)) => Some(format!("running in CI: {var} is set")),
        (false, None) => None,
    });
    run(ctx, req, "deploy-prod")
}

fn run(ctx: &Ctx, req: Request, task: &str) -> Result<()> {
    let cfg = ctx.config()?;
    cfg.env(&req.env)?;
    let mut pre = Plan::new(task, Some(&req.env));
    ctx.locate(&cfg, &req.env, &mut pre)?;
    let cli = ctx.preflight(&mut pre, &[Tool::Docker, Tool::Compose], true)?;
    ctx.reach(&req.env)?;
    let mut plan = plan(ctx, &cfg, &req, task, cli)?;
    plan.warnings = pre.warnings;
    plan.facts.splice(0..0, pre.facts);
    ctx.finish(&plan, &mut NoActions)
}

/// Builds the deploy plan. Reads the audit chain(s); changes nothing.
pub fn plan(ctx: &Ctx, cfg: &Config, req: &Request, task: &str, cli: ComposeCli) -> Result<Plan> {
    let env = cfg.env(&req.env)?;
    let log = ctx.log(cfg, &req.env)?;
    let mut plan = Plan::new(task, Some(&req.env));
    let target = Target::app(cfg, &req.env, env, &req.tag, cli)?;
    // The engine look-ups that need no history (the compose render, the
    // swarm's nodes) run while the chain is verified.
    let checks = {
        let (t, e) = (target.clone(), env.clone());
        std::thread::spawn(move || {
            let mut steps = compose_checks(&t, &e).0;
            steps.extend(placement(&t));
            steps
        })
    };
    // The tag is resolved to a digest once, here, beside the chain's
    // verification; every step below, and the record, use that digest.
    let looked_up = {
        let t = target.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            (digests(&t), started.elapsed())
        })
    };
    let (history, head) = verified_history(&log, req.force, &mut plan)?;
    let (looked_up, took) = looked_up.join().unwrap_or_else(|_| {
        (
            Err(anyhow::anyhow!("the registry look-up panicked")),
            Default::default(),
        )
    });
    if ctx.global.verbose {
        eprintln!("digest look-up: {} ms", took.as_millis());
    }
    let target = pin(&target, &looked_up, &mut plan);
    let digest = target.digest().map(str::to_string);
    let current = history.current().map(str::to_string);
    plan.fact(
        "current version",
        current.clone().unwrap_or_else(|| "none".into()),
        "audit history",
    );

    if let Some(by) = &req.confirmed {
        plan.step(Step::Confirm {
            given: by.is_some(),
            how: by.clone().unwrap_or_else(|| "--yes (outside CI)".into()),
        });
    }
    let mut gate_overridden = None;
    if let Some(from) = &env.promote_from {
        let source = History::new(ctx.log(cfg, from)?.records()?);
        let mut missing = promotion_gaps(
            &source,
            &history,
            from,
            &req.tag,
            &env.require_evidence,
            &looked_up,
            digest.as_deref(),
        );
        let overridden = if req.force {
            std::mem::take(&mut missing)
        } else {
            Vec::new()
        };
        if !overridden.is_empty() {
            gate_overridden = Some(format!(
                "promotion gate OVERRIDDEN by --force: missing {}",
                overridden.join("; ")
            ));
        }
        plan.step(Step::Require {
            refusal: Refusal::Evidence,
            what: format!("promotion evidence from {from}"),
            missing,
            overridden,
        });
    }

    let now = Now::look(&target, &history, &mut plan);
    if let Some(refusal) = unknown_sets(&target, &now) {
        plan.step(refusal);
    }
    let checks = checks
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    for gaps in checks {
        plan.step(gaps);
    }
    // A digest for every repository means the registry has the images. Only
    // when the look-up failed is each image asked after again, for the
    // refusal's words (a tag it lacks, a registry it cannot reach): one
    // registry round trip per deploy, not two.
    if looked_up.is_err() {
        if let Some(missing) = images_check(&target, false) {
            plan.step(missing);
        }
    }
    if let Some(refusal) = consistency(&req.env, env) {
        plan.step(refusal);
    }
    plan.step(lock(&req.env, &log, req.lock_wait, task, head));
    plan.step(
        AppStep::Pull {
            target: target.clone(),
        }
        .into(),
    );
    let stateful = Stateful::of(&target, env);
    if stateful.start_commands().is_empty() {
        // Swarm: the stack deploy starts what is missing.
    } else if stateful.all_running() {
        plan.fact(
            "stateful services",
            format!(
                "{} running: nothing to start",
                stateful.services().join(", ")
            ),
            "docker ps",
        );
    } else {
        plan.step(Step::StartStateful { target: stateful });
    }
    let blue_green = target.blue_green().then(|| {
        plan.step(Step::ProxyReady {
            target: target.clone(),
            wait_secs: PROXY_WAIT_SECS,
        });
        blue_green(&target, env, &now, env.health_timeout_secs)
    });
    match &blue_green {
        Some(bg) => {
            for s in &bg.steps {
                plan.step(s.clone().into());
            }
        }
        None => {
            for s in put_on(&target, env) {
                plan.step(s.into());
            }
            plan.step(gate(&target, env, env.health_timeout_secs).into());
        }
    }

    // Recovery puts back what served before this deploy, per the engine,
    // with its digest: the same tag re-pushed is another version.
    let serving = now.serving_ref();
    let back_ref = serving
        .clone()
        .filter(|c| c.tag != req.tag || (c.digest.is_some() && c.digest != digest));
    let back = back_ref.as_ref().map(|b| b.tag.clone());
    plan.on_failure = if req.no_auto_rollback {
        let to = back
            .as_ref()
            .map(|b| format!(" --to {b}"))
            .unwrap_or_default();
        OnFailure::Advise {
            message: format!(
                "the failed version {} is left running; to roll back run: cargo xtask rollback {}{to} --reason 'failed deploy of {}'",
                req.tag, req.env, req.tag
            ),
        }
    } else if let Some(bg) = blue_green {
        OnFailure::Recover {
            steps: bg.recovery,
            to: back.clone(),
        }
    } else {
        match &back {
            Some(prev) => OnFailure::Recover {
                // On Swarm, when Swarm already rolled the update back by
                // itself, this redeploy of the previous tag changes nothing
                // (same spec) and the steps only verify it.
                steps: switch_to(
                    &target
                        .on_tag(prev)
                        .pinned(back_ref.as_ref().and_then(|b| b.digest.as_deref())),
                    env,
                    env.rollback_timeout_secs,
                ),
                to: Some(prev.clone()),
            },
            None => OnFailure::Recover {
                steps: vec![AppStep::Stop {
                    target: target.clone(),
                }],
                to: None,
            },
        }
    };
    let action = if env.promote_from.is_some() {
        "promote"
    } else {
        "deploy"
    };
    let mut rec = record(
        &req.env,
        env,
        &log,
        action,
        serving,
        Some(ImageRef {
            tag: req.tag.clone(),
            digest,
        }),
        &req.reason,
        req.force,
    );
    if target.blue_green() {
        rec.sets_of = Some(target.clone());
    }
    if let Some(o) = gate_overridden {
        rec.reason = format!("[{o}] {}", rec.reason);
    }
    plan.record = Some(rec);
    Ok(plan)
}

/// What the promotion gate misses for `tag` at `digest` (the one prod
/// would run): a successful deploy of that digest in `from`, and each
/// required piece of evidence for it. A tag the registry moved since
/// `from` tested it comes first, naming both digests.
fn promotion_gaps(
    source: &History,
    here: &History,
    from: &str,
    tag: &str,
    evidence: &[String],
    looked_up: &Result<std::collections::BTreeMap<String, String>>,
    digest: Option<&str>,
) -> Vec<String> {
    let mut missing = Vec::new();
    let Some(d) = digest else {
        // Nothing to compare with: the gate cannot say what it promotes.
        let why = match looked_up {
            Err(e) => format!("{e:#}"),
            Ok(_) => "the config names no image for its first app service".into(),
        };
        missing.push(format!(
            "the registry's digest of {tag} to compare with what {from} tested ({why})"
        ));
        if !source.deployed_ok(tag) {
            missing.push(format!("a successful {from} deploy of {tag}"));
        }
        for ev in evidence {
            if !source.has_evidence(ev, tag) && !here.has_evidence(ev, tag) {
                missing.push(format!("a passing {ev} record for {tag}"));
            }
        }
        return missing;
    };
    let tested = source.deployed_digests(tag);
    if !tested.contains(&d) {
        missing.push(match tested.last() {
            Some(t) => format!(
                "{tag} at the digest {from} tested: the registry's {tag} now points to {} but {from} tested {}; deploy it to {from} and gather its evidence first (or pass --force, which is recorded)",
                short(d),
                short(t)
            ),
            None if source.deployed_ok(tag) => format!(
                "a successful {from} deploy of {tag} at {} ({from}'s records of {tag} name no digest)",
                short(d)
            ),
            None => format!("a successful {from} deploy of {tag}"),
        });
    }
    for ev in evidence {
        if !source.has_evidence_for(ev, tag, d) && !here.has_evidence_for(ev, tag, d) {
            missing.push(format!("a passing {ev} record for {tag} at {}", short(d)));
        }
    }
    missing
}
