//! `security-modes-test --compose FILE ...`: the static rules of the policy's
//! modes on compose files written anywhere, as they are.
//!
//! Each file is its own stack, rendered with every profile and checked
//! without an overlay; no deploy config, tag, daemon or `[stack.*]` table is
//! needed, only the policy's rules and modes. A mode's `app_rules` apply to
//! the services named with `--app-service`, and to none without it (a
//! foreign file has no FetchML app services). Nothing is recorded.
//!
//! On stdout it prints the report only, so `--format json` is exactly one
//! JSON document; a dry run prints the plan, as every task does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::locate::shown;
use super::policy::{Policy, Stack};
use super::runner::Runner;
use super::{resolve_policy, steps, TASK};
use crate::ctx::Ctx;
use crate::flags::SecurityModes;
use crate::plan::{Plan, Step};
use crate::validate;

pub(super) fn run(ctx: &Ctx, args: SecurityModes) -> Result<()> {
    let path = resolve_policy(&args.policy);
    let mut policy = Policy::load(&path)?;
    policy.stacks = stacks(&args.compose, &args.app_services)?;
    let modes = policy.select(args.mode.as_deref())?;

    let mut plan = Plan::new(TASK, None);
    plan.fact("policy", path.display().to_string(), "--policy");
    let names: Vec<&str> = policy.stacks.keys().map(String::as_str).collect();
    plan.fact("compose files", names.join(", "), "--compose");
    let specs = steps::specs(&policy, &modes, "", "", true, args.sarif.clone())?;
    for s in &specs {
        plan.step(Step::action(&s.id, s.what.clone(), s.effect));
    }
    let mut runner = Runner::new(&policy, None, specs, ctx.global.verbose, ctx.global.format);
    // The executor's outcome line would be a second document after the
    // report; with no audit record it says nothing the report does not.
    ctx.finish_with(&plan, &mut runner, |plan, runner| {
        crate::exec::apply(plan, ctx.global.verbose, runner).map(drop)
    })
}

/// One stack per file, named as the user wrote it.
fn stacks(files: &[PathBuf], app_services: &[String]) -> Result<BTreeMap<String, Stack>> {
    for s in app_services {
        validate::service_name(s).with_context(|| format!("--app-service {s}"))?;
    }
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let mut out = BTreeMap::new();
    for f in files {
        let abs = if f.is_absolute() {
            f.clone()
        } else {
            cwd.join(f)
        };
        if !abs.is_file() {
            bail!(
                "compose file {} not found (relative paths are from {})",
                f.display(),
                cwd.display()
            );
        }
        let name = shown(&abs);
        if out
            .insert(name.clone(), Stack::direct(abs, app_services.to_vec()))
            .is_some()
        {
            bail!("compose file {name} is given twice");
        }
    }
    Ok(out)
}
