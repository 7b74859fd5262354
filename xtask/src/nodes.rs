//! Two real Docker Swarm nodes on one machine, for rehearsing several hosts:
//! the machine's engine is the manager, and a second `dockerd` runs in a
//! network namespace ([`NETNS`]) joined to it as a worker over a veth pair
//! ([`HOST_ADDR`] on the host, [`NODE_ADDR`] in the namespace). An
//! attachable overlay network ([`NETWORK`]) spans both.
//!
//! `setup --swarm-nodes 2` creates what is missing and `--swarm-nodes 1`
//! removes what this module created, both as plans (`--dry-run` shows them).
//! [`kill_node`] and [`restart_node`] crash and restart the second engine
//! for failover rehearsals.
//!
//! Needs root, `ip`, `nsenter`, `dockerd`, `docker-registry`, a kernel with
//! network namespaces and VXLAN, and the manager engine up. Ownership of
//! what could pre-exist (the swarm, the overlay network) is recorded in
//! [`RUN_DIR`]`/owned.json`; the namespace, links, second engine and its
//! registry carry this module's names and are its own. It never touches a
//! swarm it did not initialise beyond joining and removing its own node, and
//! refuses one that advertises an address the namespace cannot reach.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cmd::{Command, Effect};
use crate::ctx::Ctx;

mod daemons;
mod host;
mod plans;
pub mod ssh;

pub use daemons::{node_id, restart_node, wait_ready};
pub use host::{kill_node, node_pids};
pub use plans::{plan_down, plan_up};

/// The network namespace of the second node.
pub const NETNS: &str = "fmlnode2";
/// The veth end on the host, and its address: what the manager advertises.
pub const VETH_HOST: &str = "fmlveth0";
pub const HOST_ADDR: &str = "10.77.0.1";
/// The veth end in the namespace, and the second node's address.
pub const VETH_NODE: &str = "fmlveth1";
pub const NODE_ADDR: &str = "10.77.0.2";
const PREFIX: u8 = 24;
/// Runtime files of the second node: socket, exec root, pid file, the
/// registry's config and the ownership record.
pub const RUN_DIR: &str = "/run/fetchml-node2";
/// The second engine's data root (under `data/`) and logs.
pub const DATA_DIR: &str = "/var/lib/fetchml-xtask/node2";
/// The attachable overlay network spanning both nodes.
pub const NETWORK: &str = "fetchml-nodes";
/// The cgroup parent of the second engine's containers, so a crash can
/// find and kill them.
const CGROUP_PARENT: &str = "fetchml-node2";
/// The second engine's `-H` value.
pub const NODE_HOST: &str = "unix:///run/fetchml-node2/docker.sock";

/// How long a daemon may take to answer after it was started.
const START_SECS: u64 = 60;
/// How long the cluster may take until both nodes are Ready.
const READY_SECS: u64 = 90;

/// What this module created and must remove, recorded as it is created.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Owned {
    /// The manager's swarm was initialised here (teardown leaves it).
    swarm: bool,
    /// The overlay network was created here.
    network: bool,
    /// The second node's ID in the manager's node list.
    node_id: Option<String>,
}

fn owned_path() -> PathBuf {
    Path::new(RUN_DIR).join("owned.json")
}

fn read_owned() -> Owned {
    std::fs::read_to_string(owned_path())
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn write_owned(o: &Owned) -> Result<()> {
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    let p = owned_path();
    std::fs::write(&p, serde_json::to_vec_pretty(o)?)
        .with_context(|| format!("writing {}", p.display()))
}

fn netns_path() -> PathBuf {
    Path::new("/run/netns").join(NETNS)
}

/// `docker` on the manager (the machine's engine).
fn docker(effect: Effect, args: &[&str]) -> Command {
    Command::new("docker", effect)
        .args(args.iter().copied())
        .timeout(60)
}

/// `docker` on the second node's engine.
pub fn node_docker(effect: Effect, args: &[&str]) -> Command {
    Command::new("docker", effect)
        .args(["-H", NODE_HOST])
        .args(args.iter().copied())
        .timeout(60)
}

/// `ip` with `line` split at spaces: the words are this module's own
/// constants, never input, and each becomes one argument.
fn ip(line: &str) -> Command {
    Command::new("ip", Effect::Mutating)
        .args(line.split_whitespace())
        .timeout(20)
}

/// Trimmed stdout of a look-up that succeeded, else `None`.
fn look(c: &Command) -> Option<String> {
    crate::cmd::output(c)
        .ok()
        .filter(|o| o.success)
        .map(|o| o.stdout.trim().to_string())
}

/// The manager engine's swarm: state, advertised address, manager or not.
struct Swarm {
    state: String,
    addr: String,
    manager: bool,
}

fn manager_swarm() -> Option<Swarm> {
    let f = "{{.Swarm.LocalNodeState}} {{.Swarm.NodeAddr}} {{.Swarm.ControlAvailable}}";
    let out = look(&docker(Effect::ReadOnly, &["info", "--format", f]).timeout(20))?;
    let mut w = out.split_whitespace();
    let state = w.next()?.to_string();
    let (addr, manager) = match (w.next(), w.next()) {
        (Some(a), Some(m)) => (a.to_string(), m == "true"),
        (Some(m), None) => (String::new(), m == "true"),
        _ => (String::new(), false),
    };
    Some(Swarm {
        state,
        addr,
        manager,
    })
}

/// The second engine's swarm state and node ID, when it answers.
fn node_swarm() -> Option<(String, String)> {
    if !Path::new(RUN_DIR).join("docker.sock").exists() {
        return None;
    }
    let f = "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}";
    let out = look(&node_docker(Effect::ReadOnly, &["info", "--format", f]).timeout(10))?;
    let (state, id) = out.split_once(' ').unwrap_or((&out, ""));
    Some((state.to_string(), id.to_string()))
}

fn network_present() -> bool {
    look(&docker(
        Effect::ReadOnly,
        &["network", "inspect", "--format", "{{.Scope}}", NETWORK],
    ))
    .is_some()
}

/// Why a swarm the manager already runs cannot take the second node, if it cannot.
fn unusable(s: &Swarm) -> Option<String> {
    if s.state != "active" {
        return (s.state != "inactive").then(|| {
            format!(
                "the manager engine's swarm is `{}`; expected active or inactive",
                s.state
            )
        });
    }
    if !s.manager {
        return Some("the machine's engine is a swarm worker, not a manager".into());
    }
    (s.addr != HOST_ADDR).then(|| {
        format!(
            "the machine's engine already runs a swarm that advertises {}, which the node in \
             network namespace {NETNS} cannot reach (it reaches the host only at {HOST_ADDR}); \
             Swarm cannot change a node's advertised address in place. If it is a leftover \
             single-node swarm (demo --keep, a killed test), remove its stacks and run \
             `docker swarm leave --force`, then run this again",
            s.addr
        )
    })
}

/// `setup --swarm-nodes N`: 2 creates the second node, 1 removes it.
pub fn run(ctx: &Ctx, nodes: u8, registry_root: &Path, check: bool) -> Result<()> {
    let plan = match nodes {
        1 => plan_down(),
        2 => plan_up(registry_root),
        n => bail!("--swarm-nodes takes 1 (the machine's engine alone) or 2, not {n}"),
    };
    for f in &plan.facts {
        eprintln!("{}: {}", f.what, f.value);
    }
    if plan.steps.is_empty() {
        println!("setup --swarm-nodes {nodes}: nothing to do");
        return Ok(());
    }
    if check {
        return Err(plan.check_failure(&format!("setup --check --swarm-nodes {nodes}")));
    }
    if !crate::repo::is_root() && !ctx.global.dry_run {
        bail!("--swarm-nodes needs root (network namespaces, a second dockerd): run `sudo cargo xtask setup --swarm-nodes {nodes}`");
    }
    let started = Instant::now();
    ctx.finish(
        &plan,
        &mut daemons::NodeActions {
            registry_root: registry_root.to_path_buf(),
            verbose: ctx.global.verbose,
        },
    )?;
    if !ctx.global.dry_run {
        eprintln!(
            "setup --swarm-nodes {nodes} took {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm(state: &str, addr: &str, manager: bool) -> Swarm {
        Swarm {
            state: state.into(),
            addr: addr.into(),
            manager,
        }
    }

    #[test]
    fn the_names_split_into_the_words_ip_gets() {
        for c in [NETNS, VETH_HOST, VETH_NODE, HOST_ADDR, NODE_ADDR] {
            assert_eq!(c.split_whitespace().collect::<Vec<_>>(), [c]);
        }
        let c = ip(&format!(
            "-n {NETNS} addr add {NODE_ADDR}/{PREFIX} dev {VETH_NODE}"
        ));
        assert_eq!(
            c.args,
            ["-n", NETNS, "addr", "add", "10.77.0.2/24", "dev", VETH_NODE]
        );
    }

    #[test]
    fn a_swarm_on_loopback_is_refused_with_the_reason() {
        let why = unusable(&swarm("active", "127.0.0.1", true)).unwrap();
        assert!(why.contains("advertises 127.0.0.1"), "{why}");
        assert!(why.contains("docker swarm leave --force"), "{why}");
        assert!(unusable(&swarm("active", HOST_ADDR, true)).is_none());
        assert!(unusable(&swarm("inactive", "", false)).is_none());
        assert!(unusable(&swarm("active", HOST_ADDR, false)).is_some());
        assert!(unusable(&swarm("pending", "", false)).is_some());
    }
}
