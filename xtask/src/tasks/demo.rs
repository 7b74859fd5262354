//! `demo`: the whole lifecycle against the testbed stack on the local
//! engine, through the same commands an operator types, then a summary.
//!
//! Needs: `cargo xtask setup` (it runs it first). Uses only its own compose
//! projects (the testbed config's) and a fresh state directory under
//! target/demo/; takes its stacks down at the end unless `--keep`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cmd::{stream, Command, Effect};
use crate::ctx::Ctx;
use crate::exec::Actions;
use crate::flags::Demo;
use crate::plan::{Plan, Step};
use crate::repo::workspace_root;

/// One demo step's limit: a cold image build is the longest.
const ACT_SECS: u64 = 1800;

/// One demo step: the arguments and the exit code that shows it worked.
struct Act {
    what: String,
    args: Vec<String>,
    expect: i32,
}

fn act(what: &str, expect: i32, args: &[&str]) -> Act {
    Act {
        what: what.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        expect,
    }
}

pub fn run(ctx: &Ctx, args: Demo) -> Result<()> {
    crate::provision::run(ctx, false).context("setup before the demo")?;
    let root = workspace_root();
    let config = root.join("deployments/testbed/deploy.toml");
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let state = root.join("target/demo").join(stamp.to_string());
    let base = crate::repo::head_tag().unwrap_or_else(|_| "sha-000000000000".into());
    let (v1, v2, v3) = (
        format!("{base}-v1"),
        format!("{base}-v2"),
        format!("{base}-v3"),
    );
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let acts = vec![
        act("build v1 and push", 0, &["build", "--tag", &v1, "--push"]),
        act("build v2 and push", 0, &["build", "--tag", &v2, "--push"]),
        act(
            "build a broken v3 and push",
            0,
            &["build", "--tag", &v3, "--push", "--broken"],
        ),
        act("deploy v1 to staging", 0, &["deploy-staging", "--tag", &v1]),
        act(
            "promote v1 without evidence: refused by the gate",
            5,
            &["deploy-prod", "--tag", &v1, "--yes"],
        ),
        act(
            "security modes, static and running, for v1",
            0,
            &["security-modes-test", "--tag", &v1],
        ),
        act(
            "backup restore smoke, recorded for v1",
            0,
            &["backup-smoke", "--tag", &v1, "--env", "staging"],
        ),
        act(
            "promote v1 to prod",
            0,
            &["deploy-prod", "--tag", &v1, "--yes"],
        ),
        act("deploy v2 to staging", 0, &["deploy-staging", "--tag", &v2]),
        act(
            "security modes, static and running, for v2",
            0,
            &["security-modes-test", "--tag", &v2],
        ),
        act(
            "backup restore smoke, recorded for v2",
            0,
            &["backup-smoke", "--tag", &v2, "--env", "staging"],
        ),
        act(
            "promote v2 to prod",
            0,
            &["deploy-prod", "--tag", &v2, "--yes"],
        ),
        act(
            "deploy broken v3 to staging: rolled back automatically",
            3,
            &["deploy-staging", "--tag", &v3],
        ),
        act(
            "roll prod back to v1",
            0,
            &["rollback", "prod", "--reason", "demo rehearsal"],
        ),
        act("status of staging", 0, &["status", "staging"]),
        act("status of prod", 0, &["status", "prod"]),
        act(
            "verify both audit chains (and the prod sink)",
            0,
            &["audit", "verify"],
        ),
        act(
            "show the prod audit log",
            0,
            &["audit", "show", "--env", "prod"],
        ),
    ];
    let mut plan = Plan::new("demo", None);
    for (i, a) in acts.iter().enumerate() {
        plan.step(Step::action(
            &i.to_string(),
            format!(
                "{} (expect exit {}): cargo xtask {}",
                a.what,
                a.expect,
                a.args.join(" ")
            ),
            Effect::Mutating,
        ));
    }
    let down = |env: &str, why: &str| {
        Step::run(
            why,
            Command::new("docker", Effect::Mutating)
                .args(["compose", "-p", &format!("fetchml-testbed-{env}"), "-f"])
                .arg(
                    root.join("deployments/testbed/docker-compose.yml")
                        .display()
                        .to_string(),
                )
                .args(["down", "-v", "--timeout", "2"])
                .env("FETCHML_TAG", "demo")
                .timeout(120),
        )
    };
    let mut steps = Vec::new();
    for env in ["staging", "prod"] {
        steps.push(down(
            env,
            &format!("take down the demo's {env} stack, in case an earlier --keep left it"),
        ));
    }
    steps.append(&mut plan.steps);
    if !args.keep {
        for env in ["staging", "prod"] {
            steps.push(down(env, &format!("take down the demo's {env} stack")));
        }
    }
    plan.steps = steps;
    let mut run = Acts {
        acts,
        exe,
        config,
        state: state.clone(),
        rows: Vec::new(),
    };
    ctx.finish(&plan, &mut run)?;
    if run.rows.is_empty() {
        return Ok(());
    }
    let rows = run.rows;
    println!(
        "\n{:<56} {:>6} {:>5} {:>7}  result",
        "step", "expect", "exit", "secs"
    );
    let mut failed = 0;
    for (what, expect, code, secs) in &rows {
        let ok = expect == code;
        failed += usize::from(!ok);
        println!(
            "{what:<56} {expect:>6} {code:>5} {secs:>7.1}  {}",
            if ok { "ok" } else { "FAILED" }
        );
    }
    println!("state and audit logs: {}", state.display());
    if failed > 0 {
        bail!("{failed} demo step(s) did not do what they should (see the table)");
    }
    Ok(())
}

struct Acts {
    acts: Vec<Act>,
    exe: PathBuf,
    config: PathBuf,
    state: PathBuf,
    rows: Vec<(String, i32, i32, f64)>,
}

impl Actions for Acts {
    /// Runs one act as its own `cargo xtask` process; a wrong exit code is
    /// a row of the summary, not a stop, so every act is shown.
    fn run(&mut self, id: &str) -> Result<()> {
        let a = id
            .parse::<usize>()
            .ok()
            .and_then(|i| self.acts.get(i))
            .with_context(|| format!("demo has no act {id}"))?;
        eprintln!("\n== demo: {} ==", a.what);
        let start = Instant::now();
        let c = Command::new(&self.exe.display().to_string(), Effect::Mutating)
            .arg("--config")
            .arg(self.config.display().to_string())
            .arg("--state-dir")
            .arg(self.state.display().to_string())
            .args(a.args.iter().cloned())
            .timeout(ACT_SECS);
        let code = stream(&c)?.unwrap_or(-1);
        self.rows.push((
            a.what.clone(),
            a.expect,
            code,
            start.elapsed().as_secs_f64(),
        ));
        Ok(())
    }
}
