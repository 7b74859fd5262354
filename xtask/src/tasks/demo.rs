//! `demo`: the whole lifecycle against the testbed stack on the local
//! engine, through the same commands an operator types, then a summary.
//!
//! Needs: `cargo xtask setup` (it runs it first). Uses only its own compose
//! projects (the testbed config's) and a fresh state directory under
//! target/demo/; takes its stacks down at the end unless `--keep`.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::flags::{Demo, Setup};
use crate::{workspace_root, Ctx};

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
    if ctx.global.dry_run {
        println!("demo: runs setup, builds three testbed versions, deploys, promotes, fails and rolls back, verifies; each step is itself previewable with --dry-run");
        return Ok(());
    }
    crate::tasks::setup::run(ctx, Setup { check: false }).context("setup before the demo")?;
    let root = workspace_root();
    let config = root.join("deployments/testbed/deploy.toml");
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let state = root.join("target/demo").join(stamp.to_string());
    let base = crate::head_tag().unwrap_or_else(|_| "sha-000000000000".into());
    let (v1, v2, v3) = (
        format!("{base}-v1"),
        format!("{base}-v2"),
        format!("{base}-v3"),
    );
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let teardown = |when: &str| {
        for env in ["staging", "prod"] {
            let project = format!("fetchml-testbed-{env}");
            let _ = Command::new("docker")
                .args(["compose", "-p", &project, "-f"])
                .arg(root.join("deployments/testbed/docker-compose.yml"))
                .args(["down", "-v", "--timeout", "2"])
                .env("FETCHML_TAG", "demo")
                .output();
        }
        eprintln!("demo: took down its testbed stacks ({when})");
    };
    teardown("before starting, in case an earlier --keep left them");

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
    let mut rows = Vec::new();
    for a in &acts {
        eprintln!("\n== demo: {} ==", a.what);
        let start = Instant::now();
        let status = Command::new(&exe)
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .args(&a.args)
            .status()
            .with_context(|| format!("running {}", a.what))?;
        let code = status.code().unwrap_or(-1);
        rows.push((
            a.what.clone(),
            a.expect,
            code,
            start.elapsed().as_secs_f64(),
        ));
    }
    if !args.keep {
        teardown("done");
    }
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
