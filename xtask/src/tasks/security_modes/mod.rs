//! `security-modes-test`: prove that each security mode's configuration
//! meets its policy (static) and that the running stack behaves as the mode
//! promises (dynamic).
//!
//! The modes are compose overlays (`deployments/modes/`) layered on the base
//! compose files named in `deployments/security-modes.toml`, which also
//! declares the rules and probes of each mode (see [`policy`]).
//! - Static: `docker compose -f BASE -f OVERLAY --profile '*' config --format
//!   json` renders each mode on each stack, every profile included, and again
//!   with `--no-interpolate` (what the files say); [`rules`] checks both.
//! - Direct ([`direct`]): `--compose FILE` checks any compose file as it is,
//!   static only, with the policy's rules and no deploy config.
//! - Dynamic: the one stack with a `boot` table is started in each mode as a
//!   fresh compose project with its own name and free loopback ports,
//!   probed over HTTP ([`probes`]), and taken down with `down -v`.
//!
//! Needs: `docker` with the compose v2 plugin; a reachable daemon and the
//! boot images for the tag only for the dynamic half (`--static-only` runs
//! with the compose binary alone; a missing image is a preflight problem).
//! Preflight is the plan's first step rather than a look-up while planning,
//! so `--dry-run` runs no docker command at all.
//! Never touches: any compose project but the ones this run created (named
//! in the plan), images, or other volumes. A passing full run (every mode,
//! static and dynamic) appends `security-modes-test | success` for the tag
//! to `--env`'s audit log, the evidence the promotion gate looks for; a
//! failing full run appends its failure; partial runs record nothing.

mod check;
mod direct;
mod locate;
mod policy;
mod preflight;
mod probes;
mod proc;
mod report;
mod rules;
mod runner;
mod sarif;
mod steps;

use std::path::PathBuf;

use anyhow::{bail, Result};

use self::policy::Policy;
use self::runner::Runner;
use crate::ctx::Ctx;
use crate::flags::SecurityModes;
use crate::plan::{Plan, RecordSpec, Step};
use crate::validate;

const TASK: &str = "security-modes-test";
/// Renders with a release-shaped tag when the tag under test is not one
/// (test images), so the pinning rule judges the compose files, not the test.
const STAND_IN_TAG: &str = "sha-000000000000";

pub fn run(ctx: &Ctx, args: SecurityModes) -> Result<()> {
    if !args.compose.is_empty() {
        return direct::run(ctx, args);
    }
    let path = resolve_policy(&args.policy);
    let mut policy = Policy::load(&path)?;
    // A static check judges files, so it runs outside a git checkout too.
    let (tag, tag_source) = match (&args.tag, args.static_only) {
        (Some(t), _) => (t.clone(), "--tag"),
        (None, false) => (crate::repo::head_tag()?, "HEAD"),
        (None, true) => match crate::repo::head_tag() {
            Ok(t) => (t, "HEAD"),
            Err(_) => (STAND_IN_TAG.into(), "stand-in: no git HEAD"),
        },
    };
    validate::tag(&tag)?;
    if tag == "latest" {
        bail!("`latest` is not a version: pass --tag sha-<12 hex>");
    }
    let full = args.mode.is_none() && !args.static_only;
    // Environment stacks come from the deploy config, so a static run needs it too.
    let cfg = if full || policy.has_env_stacks() {
        Some(ctx.config()?)
    } else {
        None
    };
    if let Some(cfg) = &cfg {
        policy.bind_envs(cfg)?;
    }
    let modes = policy.select(args.mode.as_deref())?;

    // About an environment whenever its stacks come from the config.
    let mut plan = Plan::new(TASK, cfg.as_ref().map(|_| args.env.as_str()));
    let render_tag = if tag.starts_with("sha-") {
        tag.clone()
    } else {
        STAND_IN_TAG.to_string()
    };
    plan.fact("policy", path.display().to_string(), "--policy");
    plan.fact("tag under test", tag.clone(), tag_source);
    if render_tag != tag {
        plan.fact(
            "render tag",
            format!("{render_tag} (stand-in: {tag} is not a sha- release tag)"),
            "tag under test",
        );
    }
    // The evidence is for bytes, not a name: a full run resolves the tag
    // once, boots exactly that digest, and its record names it.
    let digest = match (full, &cfg) {
        (true, Some(cfg)) => crate::engine::registry::of_env(cfg.env(&args.env)?, &tag)
            .unwrap_or_else(|e| {
                plan.fact(
                    "digest under test",
                    format!("unknown ({e:#}): boots {tag} as the engine finds it; the record names no digest"),
                    "the registry",
                );
                None
            }),
        _ => None,
    };
    if let Some(d) = &digest {
        plan.fact("digest under test", d.clone(), "the registry (read-only)");
    }
    // Several repositories: each service's digest, so the promotion gate
    // compares every one prod would run.
    let each = match (&digest, &cfg) {
        (Some(_), Some(cfg)) => {
            crate::engine::registry::each_of_env(cfg.env(&args.env)?, &tag).unwrap_or_default()
        }
        _ => Default::default(),
    };
    for (s, d) in &each {
        plan.fact(
            "digest under test",
            format!("{s}: {d}"),
            "the registry (read-only)",
        );
    }
    // One tag variable pins one repository's digest; an environment whose
    // app services use several boots by tag.
    let one_repo = cfg
        .as_ref()
        .and_then(|c| c.env(&args.env).ok())
        .is_some_and(|e| {
            let mut r: Vec<&String> = e.images.values().collect();
            r.sort();
            r.dedup();
            r.len() == 1
        });
    let boot_tag = match &digest {
        Some(d) if one_repo => format!("{tag}@{d}"),
        _ => tag.clone(),
    };
    let specs = steps::specs(
        &policy,
        &modes,
        &boot_tag,
        &render_tag,
        args.static_only,
        args.sarif.clone(),
    )?;
    for s in &specs {
        plan.step(Step::action(&s.id, s.what.clone(), s.effect));
    }
    if let (true, Some(cfg)) = (full, &cfg) {
        let log = ctx.log(cfg, &args.env)?;
        let names: Vec<&str> = modes.iter().map(|m| m.name.as_str()).collect();
        plan.record = Some(RecordSpec {
            env: args.env.clone(),
            log: log.path.clone(),
            sink: log.sink.clone(),
            action: TASK.into(),
            from: None,
            to: Some(tag.clone()),
            reason: format!("modes {}: static and dynamic", names.join(", ")),
            from_digest: None,
            to_digest: digest.clone(),
            from_digests: Default::default(),
            to_digests: each,
            to_local: Default::default(),
            repository: None,
            force: false,
            sets_of: None,
            notify: None,
        });
    }
    let mut runner = Runner::new(
        &policy,
        Some(&tag),
        specs,
        ctx.global.verbose,
        ctx.global.format,
    );
    let result = ctx.finish(&plan, &mut runner);
    // Whatever is still up (a step failed between boot and teardown) goes down here.
    drop(runner);
    result
}

/// The policy path: as given if it exists, else relative to the workspace root.
fn resolve_policy(p: &std::path::Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        p.to_path_buf()
    } else {
        crate::repo::workspace_root().join(p)
    }
}
