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
use crate::config::Pull;
use crate::ctx::Ctx;
use crate::engine::registry::short;
use crate::engine::{ComposeCli, Stateful, Target};
use crate::exec::NoActions;
use crate::flags::{Deploy, DeployProd};
use crate::plan::{AppStep, OnFailure, Plan, Refusal, Step};
use crate::preflight::Tool;
use crate::rollout::{
    absent_check, blue_green, compose_checks, consistency, gate, images_check, lock, other_bytes,
    pin, placement, put_on, record, resolve, state_dir, switch_to, unknown_sets, verified_history,
    Now, Resolved, PROXY_WAIT_SECS,
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
    let target = Target::app(cfg, &req.env, env, &req.tag, cli)?.keeping_state_in(state_dir(&log));
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
            (resolve(&t), started.elapsed())
        })
    };
    let (history, head) = verified_history(&log, req.force, &mut plan)?;
    let (resolved, took) = looked_up.join().unwrap_or_else(|_| {
        (
            Resolved {
                pins: Err(anyhow::anyhow!("the registry look-up panicked")),
                local: Default::default(),
                absent: Vec::new(),
            },
            Default::default(),
        )
    });
    if ctx.global.verbose {
        eprintln!("digest look-up: {} ms", took.as_millis());
    }
    let Resolved {
        pins: looked_up,
        local,
        absent,
    } = resolved;
    let target = pin(&target.with_local(local), &looked_up, &mut plan);
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
            &target,
            &env.require_evidence,
            &looked_up,
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
        if let Some(missing) = images_check(&target, target.pull() != Pull::Always) {
            plan.step(missing);
        }
    }
    if let Some(refusal) = absent_check(&target, &absent) {
        plan.step(refusal);
    }
    if let Some(refusal) = consistency(&req.env, env) {
        plan.step(refusal);
    }
    plan.step(lock(&req.env, &log, req.lock_wait, task, head));
    if target.pull() == Pull::Never {
        plan.fact(
            "pull",
            "never: the images on this host run as they are",
            "the config (pull)",
        );
    } else {
        plan.step(
            AppStep::Pull {
                target: target.clone(),
            }
            .into(),
        );
    }
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
        .filter(|c| c.tag != req.tag || other_bytes(c, &target.image_ref_record()));
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
                    &target.on_tag(prev).pinned_ref(back_ref.as_ref()),
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
        Some(target.image_ref_record()),
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

/// What the promotion gate misses for `target` (its tag at the digests
/// prod would run, one per app service): a successful deploy of exactly
/// those digests in `from`, and each required piece of evidence for them.
/// A tag the registry moved since `from` tested it comes first, naming the
/// service and both digests.
fn promotion_gaps(
    source: &History,
    here: &History,
    from: &str,
    target: &Target,
    evidence: &[String],
    looked_up: &Result<std::collections::BTreeMap<String, String>>,
) -> Vec<String> {
    let tag = target.tag();
    let mut missing = Vec::new();
    let want = target.identity();
    if !target.fully_pinned() || want.is_empty() {
        // Nothing to compare with: the gate cannot say what it promotes.
        let why = match looked_up {
            Err(e) => format!("{e:#}"),
            Ok(_) => "the config names no image for an app service".into(),
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
    }
    let several = target.repositories().len() > 1;
    // One repository: its one digest; several: each service's.
    let pins = |m: &std::collections::BTreeMap<String, String>| match several {
        true => m
            .iter()
            .map(|(s, d)| format!("{s}@{}", short(d)))
            .collect::<Vec<_>>()
            .join(", "),
        false => m.values().next().map(|d| short(d)).unwrap_or_default(),
    };
    let matches = |r: &&ImageRef| target.record_identity(r) == want;
    let tested = source.deployed_refs(tag);
    if !tested.iter().any(matches) {
        let last = tested.last().map(|r| target.record_identity(r));
        // The first service whose digest moved, as the last deploy of `from` recorded it.
        let moved = last.as_ref().and_then(|l| {
            want.iter()
                .find_map(|(s, d)| l.get(s).filter(|t| *t != d).map(|t| (s, d, t)))
        });
        missing.push(match moved {
            Some((s, d, t)) => {
                let which = if several {
                    format!(" for {s} ({})", target.image_of(s))
                } else {
                    String::new()
                };
                format!(
                    "{tag} at the digest {from} tested{which}: the registry's {tag} now points to {} but {from} tested {}; deploy it to {from} and gather its evidence first (or pass --force, which is recorded)",
                    short(d),
                    short(t)
                )
            }
            None if source.deployed_ok(tag) => format!(
                "a successful {from} deploy of {tag} at {} ({from}'s records of {tag} name no digest for every service)",
                pins(&want)
            ),
            None => format!("a successful {from} deploy of {tag}"),
        });
    }
    for ev in evidence {
        let found = source
            .evidence_refs(ev, tag)
            .into_iter()
            .chain(here.evidence_refs(ev, tag))
            .any(|r| matches(&r));
        if !found {
            missing.push(format!(
                "a passing {ev} record for {tag} at {}",
                pins(&want)
            ));
        }
    }
    missing
}
