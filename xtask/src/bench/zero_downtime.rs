//! Zero-downtime figures: failed requests during deploys, automatic
//! rollbacks of a broken version and manual rollbacks, on compose (blue/
//! green behind the proxy) and on a single-node Swarm (start-first behind
//! the proxy), side by side in one run; and the time to recover.
//!
//! A [`Stream`] runs its three clients through the proxy (new connection
//! and keep-alive, each `GET /health` 50 times a second with 1 s timeouts,
//! and a 3 s slow request always in flight) from just before each command
//! starts until just after it returns; each table row is one client kind.
//! On three good tags and a broken one, each
//! round starts with S serving and F, the third good tag, deployed before
//! but in no set:
//! - deploy B (a new set beside S, gated, switched to);
//! - `rollback` to S, which on compose is a switch to the warm set;
//! - deploy the broken tag (its gate fails; S keeps serving, B stays the
//!   standby);
//! - `rollback --to F`, which no set holds: the full blue/green path.
//!
//! F then serves and S is the standby, so the next round swaps S and F.
//!
//! Time to recover is from the moment the rollback command starts to the
//! first request the old version answers. Each engine gets its own scratch
//! stack, ports and state directory, removed at the end. The swarm half
//! runs inside a `crate::engine::cluster::Session`.

use std::time::Instant;

use anyhow::{bail, Result};

/// `bench::bed` removes its scratch stacks through this path.
use crate::engine::cluster::Session;

use super::bed::{ensure_image, Bed};
use super::stream::{Client, Stream, Tally};
use super::Section;
use crate::cmd::{Command, Effect};

/// One command under the stream.
struct Run {
    /// Each client kind's counts, in [`Client::ALL`] order.
    clients: Vec<Tally>,
    /// Switches of the serving set the command made.
    switches: usize,
    secs: f64,
    /// Rollbacks: ms from the command's start to the first answer from its target.
    ttr_ms: Option<f64>,
}

/// The runs of each kind of operation on one engine.
#[derive(Default)]
struct Ops {
    deploy: Vec<Run>,
    auto: Vec<Run>,
    warm: Vec<Run>,
    full: Vec<Run>,
}

/// Runs `args` under the stream; `back_to` is the version a rollback
/// should put back (for its time to recover).
fn watched(
    bed: &Bed,
    args: &[&str],
    expect: i32,
    back_to: Option<&str>,
    switches: usize,
) -> Result<Run> {
    let stream = Stream::start(bed.port);
    let t = Instant::now();
    let code = bed.xtask_exit(args);
    let secs = t.elapsed().as_secs_f64();
    let seen = stream.stop();
    let (code, said) = code?;
    if code != expect {
        bail!("xtask {args:?} exited {code}, expected {expect}: {said}");
    }
    let ttr_ms = back_to
        .and_then(|v| seen.first(v, t))
        .map(|at| (at - t).as_secs_f64() * 1000.0);
    Ok(Run {
        clients: seen.tallies(),
        switches,
        secs,
        ttr_ms,
    })
}

fn measure(engine: &str, good: &[String; 3], bad: &str, rounds: usize) -> Result<Ops> {
    let [a, b, c] = good;
    let bed = Bed::new("zd", engine)?;
    // C, then A: A serves and C is in the history but, after the first
    // deploy of the round, in no set.
    bed.xtask(&["deploy-staging", "--tag", c])?;
    bed.xtask(&["deploy-staging", "--tag", a])?;
    let mut ops = Ops::default();
    for i in 0..rounds {
        // Serving S; F is the third good tag, which no set holds.
        let (s, f) = if i % 2 == 0 { (a, c) } else { (c, a) };
        // A deploy and each rollback switch once; the broken version never
        // gets traffic.
        ops.deploy
            .push(watched(&bed, &["deploy-staging", "--tag", b], 0, None, 1)?);
        let back = ["rollback", "staging", "--reason", "bench"];
        ops.warm.push(watched(&bed, &back, 0, Some(s), 1)?);
        ops.auto.push(watched(
            &bed,
            &["deploy-staging", "--tag", bad],
            3,
            None,
            0,
        )?);
        let full = ["rollback", "staging", "--to", f, "--reason", "bench"];
        ops.full.push(watched(&bed, &full, 0, Some(f), 1)?);
    }
    Ok(ops)
}

/// The two-node rehearsal (`setup --swarm-nodes 2`): a deploy and a
/// rollback with two replicas spread over both nodes, then the second
/// node's engine killed under the stream.
struct TwoNodes {
    deploy: Run,
    rollback: Run,
    loss: Run,
}

/// Tasks of `service` running on `node`.
fn running_on(service: &str, node: &str) -> Result<usize> {
    let ps = Command::new("docker", Effect::ReadOnly)
        .args([
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            service,
        ])
        .timeout(30);
    let ids = crate::cmd::run(&ps, false)?;
    if ids.trim().is_empty() {
        return Ok(0);
    }
    let inspect = Command::new("docker", Effect::ReadOnly)
        .args(["inspect", "--format", "{{.NodeID}} {{.Status.State}}"])
        .args(ids.split_whitespace())
        .timeout(30);
    let out = crate::cmd::run(&inspect, false)?;
    Ok(out
        .lines()
        .filter(|l| *l == format!("{node} running"))
        .count())
}

fn two_nodes(good: &[String; 2]) -> Result<TwoNodes> {
    let _lock = crate::engine::cluster::hold_lock()?;
    let setup = |n: &str| {
        let c = Command::new(&super::bed::exe()?, Effect::Mutating)
            .args(["setup", "--swarm-nodes", n])
            .timeout(600);
        crate::cmd::run(&c, false).map(drop)
    };
    /// Takes the second node down on every path.
    struct Down<F: Fn(&str) -> Result<()>>(F);
    impl<F: Fn(&str) -> Result<()>> Drop for Down<F> {
        fn drop(&mut self) {
            if let Err(e) = (self.0)("1") {
                eprintln!("bench: removing the second node: {e:#}");
            }
        }
    }
    let _down = Down(setup);
    (_down.0)("2")?;
    let bed = Bed::with_replicas("zd2", "swarm", 2)?;
    bed.xtask(&["deploy-staging", "--tag", &good[0]])?;
    let deploy = watched(&bed, &["deploy-staging", "--tag", &good[1]], 0, None, 1)?;
    let rollback = watched(
        &bed,
        &["rollback", "staging", "--reason", "bench"],
        0,
        Some(&good[0]),
        1,
    )?;
    let manager = crate::cmd::run(
        &Command::new("docker", Effect::ReadOnly)
            .args(["info", "--format", "{{.Swarm.NodeID}}"])
            .timeout(30),
        false,
    )?;
    let api = format!("{}_api", bed.project);
    let stream = Stream::start(bed.port);
    let t = Instant::now();
    crate::nodes::kill_node()?;
    while running_on(&api, manager.trim())? < 2 {
        if t.elapsed().as_secs() > 180 {
            bail!("the lost node's api task never ran on the manager");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let secs = t.elapsed().as_secs_f64();
    let seen = stream.stop();
    crate::nodes::restart_node()?;
    crate::nodes::wait_ready(std::time::Duration::from_secs(120))?;
    Ok(TwoNodes {
        deploy,
        rollback,
        loss: Run {
            clients: seen.tallies(),
            switches: 0,
            secs,
            ttr_ms: None,
        },
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A client kind's counts over `runs`: sent, failed, the most failed in
/// one run, and the failures by kind (`-` for none).
fn counts(runs: &[Run], client: Client) -> (usize, usize, usize, String) {
    let tallies: Vec<&Tally> = runs
        .iter()
        .flat_map(|r| r.clients.iter().filter(|t| t.client == client))
        .collect();
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for t in &tallies {
        for (k, n) in &t.kinds {
            *kinds.entry(k).or_default() += n;
        }
    }
    let kinds = match kinds.is_empty() {
        true => "-".to_string(),
        false => kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    (
        tallies.iter().map(|t| t.sent).sum(),
        tallies.iter().map(|t| t.failed).sum(),
        tallies.iter().map(|t| t.failed).max().unwrap_or(0),
        kinds,
    )
}

/// One row per client kind.
fn row(engine: &str, what: &str, runs: &[Run]) -> String {
    let switches: usize = runs.iter().map(|r| r.switches).sum();
    let secs = median(runs.iter().map(|r| r.secs).collect());
    let ttrs: Vec<f64> = runs.iter().filter_map(|r| r.ttr_ms).collect();
    let ttr = match ttrs.is_empty() {
        true => "-".to_string(),
        false => format!(
            "{:.0} / {:.0}",
            median(ttrs.clone()),
            ttrs.iter().copied().fold(0.0, f64::max)
        ),
    };
    Client::ALL
        .iter()
        .map(|c| {
            let (sent, failed, worst, kinds) = counts(runs, *c);
            format!(
                "| {engine} | {what} | {c} | {} | {switches} | {sent} | **{failed}** | {kinds} | {worst} | {secs:.1} | {ttr} |",
                runs.len()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn run(quick: bool) -> Result<Section> {
    let base = crate::repo::head_tag().unwrap_or_else(|_| "sha-000000000000".into());
    let good = ["a", "b", "c"].map(|x| format!("{base}-bench-{x}"));
    let bad = format!("{base}-bench-bad");
    for t in &good {
        ensure_image(t, false)?;
    }
    ensure_image(&bad, true)?;
    let rounds = if quick { 1 } else { 10 };
    let compose = measure("compose", &good, &bad, rounds)?;
    let swarm = {
        let _session = Session::enter()?;
        measure("swarm", &good, &bad, rounds)?
    };
    let two = two_nodes(&[good[0].clone(), good[1].clone()])?;
    let cargo_start = super::deploy::cargo_start_ms()?;
    let mut rows = Vec::new();
    for (engine, ops) in [("compose", &compose), ("swarm, one node", &swarm)] {
        rows.push(row(engine, "deploy", &ops.deploy));
        rows.push(row(
            engine,
            "automatic rollback of a broken version",
            &ops.auto,
        ));
        rows.push(row(engine, "rollback to the previous version", &ops.warm));
        rows.push(row(
            engine,
            "rollback to an older version (`--to`)",
            &ops.full,
        ));
    }
    let two_row = |what: &str, r: &Run, time: String| {
        Client::ALL
            .iter()
            .map(|c| {
                let (sent, failed, _, kinds) = counts(std::slice::from_ref(r), *c);
                format!("| two nodes, 2 replicas | {what} | {c} | {sent} | **{failed}** | {kinds} | {time} |")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let two_rows = [
        two_row("deploy", &two.deploy, format!("{:.1} s", two.deploy.secs)),
        two_row(
            "rollback",
            &two.rollback,
            format!("{:.1} s", two.rollback.secs),
        ),
        two_row(
            "node 2's engine killed",
            &two.loss,
            format!(
                "{:.1} s until both api replicas run on the manager",
                two.loss.secs
            ),
        ),
    ]
    .join("\n");
    let warm = median(compose.warm.iter().filter_map(|r| r.ttr_ms).collect());
    let full = median(compose.full.iter().filter_map(|r| r.ttr_ms).collect());
    let body = format!(
        "Method: three clients run side by side through the proxy from just before each command \
starts until just after it returns: *new connection* sends `GET /health` every 20 ms (50 requests/s) \
on a fresh connection each, *keep-alive* the same on one HTTP/1.1 connection it reuses (it reconnects \
without a failure when the proxy said `Connection: close` or closed the idle connection first), \
*slow request* sends `GET /api/slow?ms=3000` back to back, so one is in flight at every switch; \
1 s timeouts (3 s + 2 s for the slow request). A failed request is refused, timed out, reset, closed \
before a complete answer, or a status other than 200; the table counts them by kind. \
{rounds} round(s) per engine on a scratch testbed stack and three good versions, each round: \
deploy a new version; `rollback` (on compose, a switch to the warm previous set); deploy a broken \
version (its gate fails, exit 3); `rollback --to` the third good version, deployed earlier but in no \
set (the full blue/green path on compose). Commands are the dev-build binary, as \
`cargo xtask` runs it. Time to recover: from the start of the rollback command to the first request \
its target version answered (median / max, ms).\n\n\
| engine | operation | client | runs | switches | requests sent | failed requests | failures by kind | worst run | median s | time to recover, ms |\n\
|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|\n{}\n\n\
Two real swarm nodes on this machine (`cargo xtask setup --swarm-nodes 2`, \
docs/swarm.md): the testbed with api and worker at two replicas spread over the nodes, the proxy \
and Redis on the manager; the same stream during one deploy, one rollback, and the second node's \
engine killed like a crashed host, until both api replicas run on the manager.\n\n\
| cluster | operation | client | requests sent | failed requests | failures by kind | time |\n|---|---|---|---:|---:|---|---|\n\
{two_rows}\n\n\
Time to recover on compose: **{warm:.0} ms** to the warm previous set (a switch: gate the warm \
containers, one line to the proxy's runtime API socket), against {full:.0} ms for the full blue/green path of \
`rollback --to` an older version. Through `cargo xtask`, cargo's own start adds {cargo_start:.0} ms \
(measured here as the median of `cargo xtask --version`); `target/debug/xtask rollback ENV` skips it.\n\n\
Before the proxy (deploys recreated the app containers in place, measured the same way, 3 deploys \
per engine): compose lost 18, 40 and 35 requests per deploy (about 0.8 s each), and single-node Swarm \
with host-mode ports and `order: stop-first` lost 24, 25 and 22; a rollback was the same recreate, \
about 1.5 s to recover.\n\n\
| before | failed requests per deploy | requests sent | longest gap, ms |\n|---|---|---:|---:|\n\
| compose (`up -d --no-deps`) | 18, 40, 35 | 222 | ~800 |\n\
| swarm, one node, host-mode ports, stop-first | 24, 25, 22 | 1615 | ~500 |\n",
        rows.join("\n"),
    );
    Ok(Section {
        title: "Zero-downtime deploys".into(),
        body,
    })
}
