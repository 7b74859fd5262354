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
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cmd::{Command, Effect};
use crate::ctx::Ctx;
use crate::exec::Actions;
use crate::exit::{fail, Code};
use crate::plan::{Plan, Step};

mod host;

pub use host::{kill_node, node_pids};

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

fn ip(args: &[&str]) -> Command {
    Command::new("ip", Effect::Mutating)
        .args(args.iter().copied())
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
        print!(
            "{}",
            plan.render().replace("dry run: nothing was changed\n", "")
        );
        return Err(fail(
            Code::Preflight,
            format!(
                "setup --check --swarm-nodes {nodes}: {} step(s) needed",
                plan.steps.len()
            ),
        ));
    }
    if !crate::repo::is_root() && !ctx.global.dry_run {
        bail!("--swarm-nodes needs root (network namespaces, a second dockerd): run `sudo cargo xtask setup --swarm-nodes {nodes}`");
    }
    let started = Instant::now();
    ctx.finish(
        &plan,
        &mut NodeActions {
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

/// Looks (read-only) and plans what is missing for two nodes.
pub fn plan_up(registry_root: &Path) -> Plan {
    let mut plan = Plan::new("setup-swarm-nodes", None);
    // The manager first: a swarm the namespace cannot reach refuses the
    // plan before anything is created.
    let swarm = manager_swarm();
    match &swarm {
        None => plan.fact(
            "manager swarm",
            "unknown: the engine does not answer",
            "docker info",
        ),
        Some(s) => plan.fact(
            "manager swarm",
            format!("{} {}", s.state, s.addr).trim().to_string(),
            "docker info",
        ),
    }
    match &swarm {
        None => {
            plan.step(Step::Refuse {
                why: "the machine's engine does not answer `docker info`: run `cargo xtask setup` first".into(),
            });
        }
        Some(s) => {
            if let Some(why) = unusable(s) {
                plan.step(Step::Refuse { why });
            }
        }
    }
    let netns = netns_path().exists();
    let veth = Path::new("/sys/class/net").join(VETH_HOST).exists();
    plan.fact(
        "network namespace",
        match (netns, veth) {
            (true, true) => {
                format!("{NETNS} with {VETH_HOST} {HOST_ADDR} <-> {VETH_NODE} {NODE_ADDR}")
            }
            (true, false) => format!("{NETNS} without its veth link"),
            _ => "absent".into(),
        },
        "/run/netns, /sys/class/net",
    );
    if !netns {
        plan.step(Step::run(
            "create the second node's network namespace",
            ip(&["netns", "add", NETNS]),
        ));
    }
    if !veth {
        let host_cidr = format!("{HOST_ADDR}/{PREFIX}");
        let node_cidr = format!("{NODE_ADDR}/{PREFIX}");
        for (why, c) in [
            (
                "a veth pair, one end in the namespace",
                ip(&[
                    "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NODE, "netns",
                    NETNS,
                ]),
            ),
            (
                "the host's address",
                ip(&["addr", "add", &host_cidr, "dev", VETH_HOST]),
            ),
            ("the host's end up", ip(&["link", "set", VETH_HOST, "up"])),
            (
                "the node's address",
                ip(&["-n", NETNS, "addr", "add", &node_cidr, "dev", VETH_NODE]),
            ),
            (
                "the node's end up",
                ip(&["-n", NETNS, "link", "set", VETH_NODE, "up"]),
            ),
            (
                "the namespace's loopback (its registry listens there)",
                ip(&["-n", NETNS, "link", "set", "lo", "up"]),
            ),
        ] {
            plan.step(Step::run(why, c));
        }
    }
    let registry = netns && host::registry_answers();
    plan.fact(
        "registry in the namespace",
        if registry {
            "answering on 127.0.0.1:5000".to_string()
        } else {
            format!("down (serves {} read-only)", registry_root.display())
        },
        "GET /v2/ from inside the namespace",
    );
    if !registry {
        plan.step(Step::action(
            "start-node-registry",
            format!(
                "start docker-registry in {NETNS} on its 127.0.0.1:5000, read-only over the host registry's storage, so the node pulls the same 127.0.0.1:5000/... references"
            ),
            Effect::Mutating,
        ));
    }
    let node = node_swarm();
    plan.fact(
        "second engine",
        node.as_ref()
            .map_or("down".into(), |(s, _)| format!("running, swarm {s}")),
        &format!("docker -H {NODE_HOST} info"),
    );
    if node.is_none() {
        // VXLAN is what overlay networks need; say so before any engine starts.
        plan.step(Step::run(
            "the kernel can make VXLAN links (overlay networks need them)",
            ip(&[
                "-n",
                NETNS,
                "link",
                "add",
                "fmlvxcheck",
                "type",
                "vxlan",
                "id",
                "4242",
                "dstport",
                "4789",
                "dev",
                "lo",
            ]),
        ));
        plan.step(Step::run(
            "remove the VXLAN check link",
            ip(&["-n", NETNS, "link", "del", "fmlvxcheck"]),
        ));
        plan.step(Step::action(
            "start-node-dockerd",
            format!("start dockerd in {NETNS} (data {DATA_DIR}/data, socket {NODE_HOST}) and wait for docker info"),
            Effect::Mutating,
        ));
    }
    if swarm.as_ref().is_some_and(|s| s.state == "inactive") {
        plan.step(Step::action(
            "swarm-init",
            format!("docker swarm init --advertise-addr {HOST_ADDR} --listen-addr {HOST_ADDR}:2377 (recorded: teardown leaves it)"),
            Effect::Mutating,
        ));
    }
    // A worker state from a swarm that is gone (the manager left it, or
    // its node was removed) must be left before joining again.
    let known = |id: &str| {
        look(&docker(
            Effect::ReadOnly,
            &["node", "inspect", "--format", "{{.ID}}", id],
        ))
        .is_some()
    };
    let stale = node.as_ref().is_some_and(|(s, id)| {
        s != "inactive"
            && !(swarm
                .as_ref()
                .is_some_and(|m| m.state == "active" && m.manager)
                && known(id))
    });
    if stale {
        plan.step(Step::run(
            "the second engine leaves a swarm that is gone",
            node_docker(Effect::Mutating, &["swarm", "leave", "--force"]),
        ));
    }
    if stale || node.as_ref().is_none_or(|(s, _)| s != "active") {
        plan.step(Step::action(
            "join",
            format!("join the second engine to the manager's swarm as a worker ({NODE_ADDR} -> {HOST_ADDR}:2377; the token goes through the engine's API, never argv)"),
            Effect::Mutating,
        ));
    }
    let network = swarm.as_ref().is_some_and(|s| s.state == "active") && network_present();
    plan.fact(
        "overlay network",
        if network {
            format!("{NETWORK} present")
        } else {
            "absent".into()
        },
        "docker network inspect",
    );
    if !network {
        plan.step(Step::action(
            "create-network",
            format!("docker network create --driver overlay --attachable {NETWORK} (recorded: teardown removes it)"),
            Effect::Mutating,
        ));
    }
    if !plan.steps.is_empty() {
        plan.step(Step::action(
            "wait-ready",
            format!("wait until `docker node ls` shows both nodes Ready (at most {READY_SECS}s)"),
            Effect::ReadOnly,
        ));
    }
    plan
}

/// Looks (read-only) and plans the removal of what [`plan_up`] created.
pub fn plan_down() -> Plan {
    let mut plan = Plan::new("setup-swarm-nodes", None);
    let owned = read_owned();
    plan.fact(
        "created here",
        serde_json::to_string(&owned).unwrap_or_default(),
        &owned_path().display().to_string(),
    );
    let node = node_swarm();
    if node.as_ref().is_some_and(|(s, _)| s != "inactive") {
        plan.step(Step::run(
            "the second engine leaves the swarm",
            node_docker(Effect::Mutating, &["swarm", "leave", "--force"]),
        ));
    }
    let swarm = manager_swarm();
    let manager = swarm
        .as_ref()
        .is_some_and(|s| s.state == "active" && s.manager);
    let id = owned.node_id.clone().or_else(|| {
        node.as_ref()
            .map(|(_, id)| id.clone())
            .filter(|i| !i.is_empty())
    });
    if let Some(id) = id.filter(|_| manager) {
        if look(&docker(
            Effect::ReadOnly,
            &["node", "inspect", "--format", "{{.ID}}", &id],
        ))
        .is_some()
        {
            plan.step(Step::run(
                "remove the second node from the manager's list",
                docker(Effect::Mutating, &["node", "rm", "--force", &id]),
            ));
        }
    }
    if owned.network && manager && network_present() {
        plan.step(Step::run(
            "remove the overlay network created here",
            docker(Effect::Mutating, &["network", "rm", NETWORK]),
        ));
    }
    if owned.swarm && manager {
        plan.step(Step::run(
            "leave the swarm initialised here",
            docker(Effect::Mutating, &["swarm", "leave", "--force"]),
        ));
    }
    let pids = node_pids();
    plan.fact(
        "processes in the namespace",
        format!("{}", pids.len()),
        "/proc/*/ns/net",
    );
    if !pids.is_empty() || Path::new(RUN_DIR).join("docker.pid").exists() {
        plan.step(Step::action(
            "stop-node",
            "stop the second engine (TERM, then KILL after 20s) and its registry; kill what is left in the namespace and the node's cgroups",
            Effect::Mutating,
        ));
    }
    if Path::new("/sys/class/net").join(VETH_HOST).exists() {
        plan.step(Step::run(
            "remove the veth pair (both ends)",
            ip(&["link", "del", VETH_HOST]),
        ));
    }
    if netns_path().exists() {
        plan.step(Step::run(
            "remove the network namespace",
            ip(&["netns", "del", NETNS]),
        ));
    }
    if Path::new(RUN_DIR).exists() || Path::new(DATA_DIR).join("data").exists() {
        plan.step(Step::action(
            "remove-files",
            format!("remove {DATA_DIR}/data (after unmounting what a killed engine left), {RUN_DIR} and the node's cgroups; the logs in {DATA_DIR} stay"),
            Effect::Mutating,
        ));
    }
    plan
}

struct NodeActions {
    registry_root: PathBuf,
    verbose: bool,
}

impl Actions for NodeActions {
    fn run(&mut self, id: &str) -> Result<()> {
        match id {
            "start-node-registry" => start_registry(&self.registry_root),
            "start-node-dockerd" => start_dockerd(),
            // Each action looks again first: a plan made a moment ago may
            // be stale (a restarted engine rejoins by itself).
            "swarm-init" if manager_swarm().is_some_and(|s| s.state == "active") => Ok(()),
            "swarm-init" => {
                let listen = format!("{HOST_ADDR}:2377");
                let init = docker(
                    Effect::Mutating,
                    &[
                        "swarm",
                        "init",
                        "--advertise-addr",
                        HOST_ADDR,
                        "--listen-addr",
                        &listen,
                    ],
                );
                crate::cmd::run(&init, self.verbose).context("initialising the swarm")?;
                let mut o = read_owned();
                o.swarm = true;
                write_owned(&o)
            }
            "join" => join(self.verbose),
            "create-network" if network_present() => Ok(()),
            "create-network" => {
                let c = docker(
                    Effect::Mutating,
                    &[
                        "network",
                        "create",
                        "--driver",
                        "overlay",
                        "--attachable",
                        NETWORK,
                    ],
                );
                crate::cmd::run(&c, self.verbose)?;
                let mut o = read_owned();
                o.network = true;
                write_owned(&o)
            }
            "wait-ready" => {
                let took = wait_ready(Duration::from_secs(READY_SECS))?;
                eprintln!("both nodes Ready after {:.1}s", took.as_secs_f64());
                Ok(())
            }
            "stop-node" => host::stop_node(),
            "remove-files" => host::remove_files(),
            other => bail!("unknown swarm-nodes action {other}"),
        }
    }
}

/// The registry config for the namespace: the host registry's storage,
/// read-only (this instance never writes or purges), on the namespace's
/// own 127.0.0.1:5000, so image references stay `127.0.0.1:5000/...`.
fn registry_config(root: &Path) -> String {
    format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n",
        root.display()
    )
}

fn start_registry(root: &Path) -> Result<()> {
    if !root.is_dir() {
        bail!(
            "the host registry's storage {} is missing: run `cargo xtask setup` first",
            root.display()
        );
    }
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    std::fs::create_dir_all(DATA_DIR).with_context(|| format!("creating {DATA_DIR}"))?;
    let conf = Path::new(RUN_DIR).join("registry.yml");
    std::fs::write(&conf, registry_config(root))
        .with_context(|| format!("writing {}", conf.display()))?;
    let netns = format!("--net={}", netns_path().display());
    let c = Command::new("nsenter", Effect::Mutating)
        .args([netns.as_str(), "docker-registry", "serve"])
        .arg(conf.display().to_string());
    crate::cmd::spawn_detached(&c, &Path::new(DATA_DIR).join("registry.log"))?;
    wait_for(
        "the namespace's registry",
        Duration::from_secs(30),
        host::registry_answers,
    )
    .with_context(|| format!("see {DATA_DIR}/registry.log"))
}

/// Starts the second engine in the namespace (also after [`kill_node`]).
/// `nsenter --net` rather than `ip netns exec`: the latter also unshares
/// the mount namespace and remounts /sys, which hides the cgroup mounts
/// dockerd needs ("Devices cgroup isn't mounted").
fn start_dockerd() -> Result<()> {
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    std::fs::create_dir_all(DATA_DIR).with_context(|| format!("creating {DATA_DIR}"))?;
    // A killed daemon leaves its pid file, and the next one refuses to start.
    let pid_file = Path::new(RUN_DIR).join("docker.pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        if !Path::new(&format!("/proc/{}", pid.trim())).exists() {
            std::fs::remove_file(&pid_file)
                .with_context(|| format!("removing stale {}", pid_file.display()))?;
        }
    }
    let netns = format!("--net={}", netns_path().display());
    let c = Command::new("nsenter", Effect::Mutating)
        .args([netns.as_str(), "dockerd"])
        .args(["--data-root", &format!("{DATA_DIR}/data")])
        .args(["--exec-root", &format!("{RUN_DIR}/exec")])
        .args(["--pidfile", &pid_file.display().to_string()])
        .args(["-H", NODE_HOST])
        .args(["--cgroup-parent", CGROUP_PARENT]);
    crate::cmd::spawn_detached(&c, &Path::new(DATA_DIR).join("dockerd.log"))?;
    wait_for("the second engine", Duration::from_secs(START_SECS), || {
        node_swarm().is_some()
    })
    .with_context(|| format!("see {DATA_DIR}/dockerd.log"))
}

/// Restarts the second engine after [`kill_node`]; it rejoins the swarm
/// by itself (its swarm state is in its data root). Returns when it
/// answers; [`wait_ready`] then waits for the manager to see it Ready.
pub fn restart_node() -> Result<()> {
    if !netns_path().exists() {
        bail!("network namespace {NETNS} is missing: run `cargo xtask setup --swarm-nodes 2`");
    }
    start_dockerd()
}

fn join(verbose: bool) -> Result<()> {
    // An engine restarted from a data root that holds a swarm rejoins by
    // itself: `pending` for a moment, then `active`.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30)
        && node_swarm().is_some_and(|(s, _)| s == "pending")
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    if let Some((state, id)) = node_swarm().filter(|(s, _)| s == "active") {
        let mut o = read_owned();
        o.node_id = Some(id);
        eprintln!("the second engine is already in the swarm ({state})");
        return write_owned(&o);
    }
    let token = crate::cmd::run(
        &docker(
            Effect::ReadOnly,
            &["swarm", "join-token", "--quiet", "worker"],
        ),
        false,
    )
    .context("reading the worker join token")?;
    if verbose {
        eprintln!("POST {NODE_HOST} /swarm/join (token redacted)");
    }
    let body = serde_json::json!({
        "ListenAddr": format!("{NODE_ADDR}:2377"),
        "AdvertiseAddr": NODE_ADDR,
        "RemoteAddrs": [format!("{HOST_ADDR}:2377")],
        "JoinToken": token.trim(),
    });
    let sock = Path::new(RUN_DIR).join("docker.sock");
    host::api_post(
        &sock,
        "/swarm/join",
        &body.to_string(),
        Duration::from_secs(90),
    )
    .context("joining the second engine to the swarm")?;
    let (state, id) = node_swarm().context("the second engine stopped answering after joining")?;
    if state != "active" || id.is_empty() {
        bail!("the second engine's swarm is `{state}` after joining");
    }
    let mut o = read_owned();
    o.node_id = Some(id);
    write_owned(&o)
}

/// The second node's ID, as recorded when it joined.
pub fn node_id() -> Option<String> {
    read_owned().node_id
}

/// Waits until the manager lists every node Ready, and at least two;
/// returns how long it took.
pub fn wait_ready(timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        let ls = docker(
            Effect::ReadOnly,
            &["node", "ls", "--format", "{{.ID}} {{.Status}}"],
        )
        .timeout(15);
        if let Some(out) = look(&ls) {
            let statuses: Vec<&str> = out
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .collect();
            if statuses.len() >= 2 && statuses.iter().all(|s| *s == "Ready") {
                return Ok(start.elapsed());
            }
            last = out.replace('\n', "; ");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!(
        "the nodes were not all Ready within {}s (last `docker node ls`: {last}); see {DATA_DIR}/dockerd.log",
        timeout.as_secs()
    )
}

fn wait_for(what: &str, timeout: Duration, ok: impl Fn() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            eprintln!("{what} is up after {:.1}s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} did not come up within {}s", timeout.as_secs())
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
    fn a_swarm_on_loopback_is_refused_with_the_reason() {
        let why = unusable(&swarm("active", "127.0.0.1", true)).unwrap();
        assert!(why.contains("advertises 127.0.0.1"), "{why}");
        assert!(why.contains("docker swarm leave --force"), "{why}");
        assert!(unusable(&swarm("active", HOST_ADDR, true)).is_none());
        assert!(unusable(&swarm("inactive", "", false)).is_none());
        assert!(unusable(&swarm("active", HOST_ADDR, false)).is_some());
        assert!(unusable(&swarm("pending", "", false)).is_some());
    }

    #[test]
    fn the_namespace_registry_is_read_only_on_the_host_storage() {
        let c = registry_config(Path::new("/var/lib/x/registry/data"));
        assert!(c.contains("rootdirectory: /var/lib/x/registry/data"), "{c}");
        assert!(c.contains("readonly:\n      enabled: true"), "{c}");
        assert!(c.contains("addr: 127.0.0.1:5000"), "{c}");
    }
}
