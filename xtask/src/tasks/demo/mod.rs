//! `demo`: the whole lifecycle against the testbed stack on the local
//! engine, through the same commands an operator types, then a summary.
//!
//! `--engine compose` (the default) runs it on compose projects with
//! deployments/testbed/deploy.toml; `--engine swarm` on swarm stacks with
//! deployments/testbed/deploy.swarm.toml, inside a swarm `Session`
//! (`crate::engine::cluster`): a single-node swarm is initialised only if
//! the node is in none, and left at the end only if the demo initialised it
//! (kept with `--keep`, whose stacks need it).
//!
//! Needs: `cargo xtask setup` (it runs it first). Uses only the config's two
//! compose projects or stacks and a fresh state directory under
//! target/demo/; takes them down, volumes included, at the start (what an
//! earlier `--keep` left) and at the end unless `--keep`.

use anyhow::{bail, Context, Result};

use crate::cmd::{quote, Command, Effect};
use crate::config::Config;
use crate::ctx::Ctx;
use crate::engine::cluster;
use crate::flags::Demo;
use crate::plan::{Plan, Step};
use crate::repo::workspace_root;

mod acts;
use acts::Acts;

/// One demo step's limit: a cold image build is the longest.
pub(super) const ACT_SECS: u64 = 1800;
const ENVS: [&str; 2] = ["staging", "prod"];
/// Why the swarm demo promotes past a failed security-modes run, recorded.
const SWARM_OVERRIDE: &str = "demo on one swarm node: the stack file fails \
loopback-ports and no-new-privileges (see docs/runbooks/demo.md)";

/// One demo step: the arguments and the exit code that shows it worked;
/// for a deploy or a rollback of an environment already serving, that
/// environment, whose traffic a request stream watches meanwhile.
pub(super) struct Act {
    what: String,
    args: Vec<String>,
    expect: i32,
    watch: Option<&'static str>,
}

fn act(what: &str, expect: i32, args: &[&str]) -> Act {
    Act {
        what: what.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        expect,
        watch: None,
    }
}

/// [`act`], under a request stream to `env`'s front port.
fn watched(env: &'static str, what: &str, expect: i32, args: &[&str]) -> Act {
    Act {
        watch: Some(env),
        ..act(what, expect, args)
    }
}

/// The lifecycle, the same on both engines but for the promotion evidence:
/// on swarm the security modes fail on the stack file (host-mode ports
/// listen on every interface; Swarm has no `security_opt`), as they must,
/// and the promotion overrides the gate with `--force`, which the record names.
fn lifecycle(swarm: bool, [v1, v2, v3]: [&str; 3]) -> Vec<Act> {
    let mut acts = vec![
        act("build v1 and push", 0, &["build", "--tag", v1, "--push"]),
        act("build v2 and push", 0, &["build", "--tag", v2, "--push"]),
        act(
            "build a broken v3 and push",
            0,
            &["build", "--tag", v3, "--push", "--broken"],
        ),
        act("deploy v1 to staging", 0, &["deploy-staging", "--tag", v1]),
        act(
            "promote v1 without evidence: refused by the gate",
            5,
            &["deploy-prod", "--tag", v1, "--yes"],
        ),
    ];
    for (name, tag) in [("v1", v1), ("v2", v2)] {
        if name == "v2" {
            acts.push(watched(
                "staging",
                "deploy v2 to staging",
                0,
                &["deploy-staging", "--tag", tag],
            ));
        }
        let (what, expect) = match swarm {
            true => (
                format!("security modes for {name}: the stack file fails two rules"),
                6,
            ),
            false => (format!("security modes, static and running, for {name}"), 0),
        };
        acts.push(act(&what, expect, &["security-modes-test", "--tag", tag]));
        let what = format!("backup restore smoke, recorded for {name}");
        let smoke = ["backup-smoke", "--tag", tag, "--env", "staging"];
        acts.push(act(&what, 0, &smoke));
        let what = format!("promote {name} to prod");
        let mut promote = act(&what, 0, &["deploy-prod", "--tag", tag, "--yes"]);
        if name == "v2" {
            promote.watch = Some("prod");
        }
        if swarm {
            promote.what = format!("promote {name} past that failure (--force, recorded)");
            let force = ["--force", "--reason", SWARM_OVERRIDE];
            promote.args.extend(force.map(String::from));
        }
        acts.push(promote);
    }
    acts.extend([
        watched(
            "staging",
            "deploy broken v3 to staging: rolled back automatically",
            3,
            &["deploy-staging", "--tag", v3],
        ),
        watched(
            "prod",
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
        act("show the prod audit log", 0, &["audit", "show", "prod"]),
    ]);
    acts
}

/// The loopback port of `env`'s first health URL: the proxy's front port.
fn front_port(cfg: &Config, env: &str) -> Result<u16> {
    let url = cfg
        .env(env)?
        .health_urls
        .first()
        .cloned()
        .unwrap_or_default();
    url.strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("env.{env}: the demo watches traffic on a http://127.0.0.1:PORT health URL, not {url:?}"))
}

/// The steps that take one environment's demo stack down, volumes included:
/// `first`, what an earlier `--keep` left, else what this run deployed.
fn take_down(cfg: &Config, env: &str, swarm: bool, first: bool) -> Result<Vec<Step>> {
    let why = match first {
        true => format!("take down the demo's {env} stack, in case an earlier --keep left it"),
        false => format!("take down the demo's {env} stack"),
    };
    let e = cfg.env(env)?;
    let p = &e.project;
    if swarm {
        return Ok(vec![
            Step::run(format!("{why}: remove stack {p}"), cluster::stack_rm(p)),
            Step::action(
                &format!("volumes {p}"),
                format!(
                    "{why}: remove the volumes of stack {p} once its containers are gone \
(labelled com.docker.stack.namespace={p})"
                ),
                Effect::Mutating,
            ),
        ]);
    }
    let mut down = Command::new("docker", Effect::Mutating).args(["compose", "-p", p]);
    for f in &e.compose_files {
        down = down.arg("-f").arg(cfg.resolve(f).display().to_string());
    }
    let down = down
        .args(["down", "-v", "--timeout", "2"])
        .env(&e.tag_var, "demo")
        .timeout(120);
    Ok(vec![Step::run(&why, down)])
}

pub fn run(ctx: &Ctx, args: Demo) -> Result<()> {
    crate::provision::run(ctx, false).context("setup before the demo")?;
    let swarm = args.engine == "swarm";
    let root = workspace_root();
    let config = root.join(if swarm {
        "deployments/testbed/deploy.swarm.toml"
    } else {
        "deployments/testbed/deploy.toml"
    });
    let cfg = Config::load(&config)?;
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let state = root.join("target/demo").join(stamp.to_string());
    let base = crate::repo::head_tag().unwrap_or_else(|_| "sha-000000000000".into());
    let [v1, v2, v3] = ["v1", "v2", "v3"].map(|v| format!("{base}-{v}"));
    let acts = lifecycle(swarm, [&v1, &v2, &v3]);

    let mut plan = Plan::new("demo", None);
    if swarm {
        plan.step(Step::action(
            "swarm",
            "enter the swarm session: wait for this machine's swarm lock, then \
`docker swarm init --advertise-addr 127.0.0.1` only if this node is in no swarm",
            Effect::Mutating,
        ));
    }
    for env in ENVS {
        for s in take_down(&cfg, env, swarm, true)? {
            plan.step(s);
        }
    }
    for (i, a) in acts.iter().enumerate() {
        plan.step(Step::action(
            &i.to_string(),
            format!(
                "{} (expect exit {}): cargo xtask {}",
                a.what,
                a.expect,
                a.args
                    .iter()
                    .map(|w| quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Effect::Mutating,
        ));
    }
    let mut teardown = Vec::new();
    if !args.keep {
        for env in ENVS {
            for s in take_down(&cfg, env, swarm, false)? {
                teardown.push(s.clone());
                plan.step(s);
            }
        }
        if swarm {
            plan.step(Step::action(
                "leave",
                "leave the swarm (`docker swarm leave --force`) only if the demo initialised it",
                Effect::Mutating,
            ));
        }
    }
    let ports = ENVS
        .iter()
        .map(|e| Ok((*e, front_port(&cfg, e)?)))
        .collect::<Result<_>>()?;
    let mut run = Acts {
        acts,
        ports,
        exe: std::env::current_exe().context("finding the xtask binary")?,
        config,
        state: state.clone(),
        rows: Vec::new(),
        keep: args.keep,
        session: None,
        swarm: None,
        teardown,
    };
    let result = ctx.finish(&plan, &mut run);
    if run.rows.is_empty() {
        return result;
    }
    // A watched act that dropped a request failed its promise too.
    let ok = |r: &acts::Row| r.expect == r.exit && r.requests.is_none_or(|(_, failed)| failed == 0);
    let failed = run.rows.iter().filter(|r| !ok(r)).count();
    if crate::out::json() {
        let steps: Vec<serde_json::Value> = run
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({"step": r.what, "expect": r.expect, "exit": r.exit, "secs": r.secs,
                    "ok": ok(r),
                    "requests": r.requests.map(|(sent, failed)| serde_json::json!({"sent": sent, "failed": failed,
                        "clients": r.clients.iter().map(|t| serde_json::json!({"client": t.client.to_string(),
                            "sent": t.sent, "failed": t.failed, "kinds": t.kinds})).collect::<Vec<_>>()}))})
            })
            .collect();
        crate::out::merge(serde_json::json!({
            "steps": steps,
            "swarm": run.swarm,
            "state": state,
        }));
    } else {
        println!(
            "\n{:<56} {:>6} {:>5} {:>7} {:>15}  result",
            "step", "expect", "exit", "secs", "failed/requests"
        );
        for r in &run.rows {
            let requests = r
                .requests
                .map_or(String::new(), |(sent, failed)| format!("{failed}/{sent}"));
            println!(
                "{:<56} {:>6} {:>5} {:>7.1} {requests:>15}  {}",
                r.what,
                r.expect,
                r.exit,
                r.secs,
                if ok(r) { "ok" } else { "FAILED" }
            );
            // Which client kind lost requests, and how.
            for t in r.clients.iter().filter(|t| t.failed > 0) {
                println!("    {t}");
            }
        }
        if let Some(note) = &run.swarm {
            println!("swarm: {note}");
        }
        println!("state and audit logs: {}", state.display());
    }
    result?;
    if failed > 0 {
        bail!("{failed} demo step(s) did not do what they should (see the table)");
    }
    Ok(())
}
