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

use crate::audit::{History, Log};
use crate::config::{Config, Env};
use crate::engine::{ComposeCli, Target};
use crate::exec::NoActions;
use crate::exit::{fail, Code};
use crate::flags::{Deploy, DeployProd};
use crate::plan::{Gate, OnFailure, Plan, RecordSpec, Step};
use crate::preflight::Tool;
use crate::{validate, Ctx};

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
}

impl Request {
    fn new(env: &str, d: &Deploy) -> Result<Request> {
        let tag = match &d.tag {
            Some(t) => t.clone(),
            None => crate::head_tag()?,
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
    let in_ci = std::env::var_os("CI").is_some() || std::env::var_os("GITHUB_ACTIONS").is_some();
    if !args.yes && !in_ci && !ctx.global.dry_run {
        return Err(fail(
            Code::Refused,
            "deploy-prod outside CI needs --yes (preview it with --dry-run first)",
        ));
    }
    run(ctx, req, "deploy-prod")
}

fn run(ctx: &Ctx, req: Request, task: &str) -> Result<()> {
    let cfg = ctx.config()?;
    cfg.env(&req.env)?;
    let mut pre = Plan::new(task, Some(&req.env));
    let cli = ctx.preflight(&mut pre, &[Tool::Docker, Tool::Compose], true)?;
    let mut plan = plan(ctx, &cfg, &req, task, cli)?;
    plan.warnings = pre.warnings;
    ctx.finish(&plan, &mut NoActions)
}

/// The chain of `env`, verified, as history. A broken chain refuses (exit 6)
/// unless `force`, in which case the break is shown as a planning fact.
pub fn verified_history(
    log: &Log,
    force: bool,
    plan: &mut Plan,
) -> Result<(History, Option<String>)> {
    match log.verify() {
        Ok(v) => {
            plan.fact("audit chain", format!("{} record(s), head {}", v.count, v.head), &log.path.display().to_string());
            Ok((History::new(log.records()?), Some(v.head)))
        }
        Err(e) if force => {
            plan.fact("audit chain", format!("DOES NOT VERIFY ({e:#}); proceeding because of --force"), &log.path.display().to_string());
            Ok((History::new(readable_records(log)), None))
        }
        Err(e) => Err(fail(
            Code::Verify,
            format!("{e:#}; investigate before deploying (or pass --force --reason TEXT, which is recorded)"),
        )),
    }
}

/// Every line of a broken chain that still parses as a record: the best
/// history there is when an operator forces past a break.
fn readable_records(log: &Log) -> Vec<crate::audit::Record> {
    std::fs::read(&log.path)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// The environment's deploy lock, next to its audit log; with the head the
/// plan was made from, so a plan gone stale while waiting is refused.
pub fn lock(env: &str, log: &Log, wait_secs: u64, task: &str, head: Option<String>) -> Step {
    Step::Lock {
        env: env.into(),
        path: log.path.with_file_name("deploy.lock"),
        wait_secs,
        task: task.into(),
        planned_head: head.map(|h| (log.path.clone(), h)),
    }
}

/// The audit record a deploy or rollback appends; a forced one says so in its reason.
#[allow(clippy::too_many_arguments)]
pub fn record(
    env_name: &str,
    env: &Env,
    log: &Log,
    action: &str,
    from: Option<String>,
    to: &str,
    reason: &str,
    force: bool,
) -> RecordSpec {
    RecordSpec {
        env: env_name.into(),
        log: log.path.clone(),
        sink: log.sink.clone(),
        action: action.into(),
        from,
        to: Some(to.into()),
        reason: if force {
            format!("[forced] {reason}")
        } else {
            reason.into()
        },
        repository: env
            .app_services
            .first()
            .and_then(|s| env.images.get(s))
            .cloned(),
        force,
    }
}

/// The gate for a tag on an environment.
pub fn gate(env: &Env, tag: &str, timeout_secs: u64) -> Step {
    Step::HealthGate(Gate {
        urls: env.health_urls.clone(),
        version: tag.into(),
        compliance_mode: env.compliance_mode.clone(),
        timeout_secs,
    })
}

/// How long a Swarm update may take to settle: the new tasks' health, and,
/// when they fail, Swarm's own rollback (which waits on its scheduler; about
/// 80s for the testbed on one node). Compose has no such step.
pub fn converge_secs(env: &Env) -> u64 {
    env.health_timeout_secs + env.rollback_timeout_secs + 90
}

/// Builds the deploy plan. Reads the audit chain(s); changes nothing.
pub fn plan(ctx: &Ctx, cfg: &Config, req: &Request, task: &str, cli: ComposeCli) -> Result<Plan> {
    let env = cfg.env(&req.env)?;
    let log = ctx.log(cfg, &req.env)?;
    let mut plan = Plan::new(task, Some(&req.env));
    let (history, head) = verified_history(&log, req.force, &mut plan)?;
    let current = history.current().map(str::to_string);
    plan.fact(
        "current version",
        current.clone().unwrap_or_else(|| "none".into()),
        "audit history",
    );

    if let Some(from) = &env.promote_from {
        let mut missing = Vec::new();
        let source = History::new(ctx.log(cfg, from)?.records()?);
        if !source.deployed_ok(&req.tag) {
            missing.push(format!("no successful {from} deploy of {}", req.tag));
        }
        for ev in &env.require_evidence {
            if !source.has_evidence(ev, &req.tag) && !history.has_evidence(ev, &req.tag) {
                missing.push(format!("no passing {ev} record for {}", req.tag));
            }
        }
        if !missing.is_empty() && req.force {
            plan.fact(
                "promotion gate",
                format!("overridden by --force: {}", missing.join("; ")),
                "audit history",
            );
            missing.clear();
        }
        plan.step(Step::Require {
            what: format!("promotion evidence from {from}"),
            missing,
        });
    }

    let target = Target::app(cfg, &req.env, env, &req.tag, cli)?;
    plan.step(lock(&req.env, &log, req.lock_wait, task, head));
    plan.step(Step::Pull {
        target: target.clone(),
    });
    if !target.start_stateful_commands().is_empty() {
        plan.step(Step::StartStateful {
            target: target.clone(),
        });
    }
    for s in target.rollout(converge_secs(env)) {
        plan.step(s);
    }
    plan.step(gate(env, &req.tag, env.health_timeout_secs));

    let back = current.filter(|c| c != &req.tag);
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
    } else {
        match &back {
            Some(prev) => OnFailure::Recover {
                // On Swarm, when Swarm already rolled the update back by
                // itself, this redeploy of the previous tag changes nothing
                // (same spec) and the steps only verify it.
                steps: target
                    .on_tag(prev)
                    .rollout(converge_secs(env))
                    .into_iter()
                    .chain([gate(env, prev, env.rollback_timeout_secs)])
                    .collect(),
                to: Some(prev.clone()),
            },
            None => OnFailure::Recover {
                steps: vec![Step::Stop {
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
    plan.record = Some(record(
        &req.env,
        env,
        &log,
        action,
        history.current().map(str::to_string),
        &req.tag,
        &req.reason,
        req.force,
    ));
    Ok(plan)
}
