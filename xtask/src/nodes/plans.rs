//! The plans of `setup --swarm-nodes`: look (read-only), then list what
//! is missing for two nodes, or what to remove of what was created.

use std::path::Path;

use super::{
    docker, host, ip, look, manager_swarm, netns_path, network_present, node_docker, node_pids,
    node_swarm, owned_path, read_owned, ssh, unusable, DATA_DIR, HOST_ADDR, NETNS, NETWORK,
    NODE_ADDR, NODE_HOST, PREFIX, READY_SECS, RUN_DIR, VETH_HOST, VETH_NODE,
};
use crate::cmd::Effect;
use crate::plan::{Plan, Refusal, Step};

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
                refusal: Refusal::Swarm,
                why: "the machine's engine does not answer `docker info`: run `cargo xtask setup` first".into(),
            });
        }
        Some(s) => {
            if let Some(why) = unusable(s) {
                plan.step(Step::Refuse {
                    refusal: Refusal::Swarm,
                    why,
                });
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
            ip(&format!("netns add {NETNS}")),
        ));
    }
    if !veth {
        let host_cidr = format!("{HOST_ADDR}/{PREFIX}");
        let node_cidr = format!("{NODE_ADDR}/{PREFIX}");
        for (why, c) in [
            (
                "a veth pair, one end in the namespace",
                ip(&format!(
                    "link add {VETH_HOST} type veth peer name {VETH_NODE} netns {NETNS}"
                )),
            ),
            (
                "the host's address",
                ip(&format!("addr add {host_cidr} dev {VETH_HOST}")),
            ),
            ("the host's end up", ip(&format!("link set {VETH_HOST} up"))),
            (
                "the node's address",
                ip(&format!("-n {NETNS} addr add {node_cidr} dev {VETH_NODE}")),
            ),
            (
                "the node's end up",
                ip(&format!("-n {NETNS} link set {VETH_NODE} up")),
            ),
            (
                "the namespace's loopback (its registry listens there)",
                ip(&format!("-n {NETNS} link set lo up")),
            ),
        ] {
            plan.step(Step::run(why, c));
        }
    }
    let node = node_swarm();
    plan.fact(
        "second engine",
        node.as_ref()
            .map_or("down".into(), |(s, _)| format!("running, swarm {s}")),
        &format!("docker -H {NODE_HOST} info"),
    );
    if node.is_none() {
        // VXLAN is what overlay networks need; say so before any daemon starts.
        plan.step(Step::run(
            "the kernel can make VXLAN links (overlay networks need them)",
            ip(&format!(
                "-n {NETNS} link add fmlvxcheck type vxlan id 4242 dstport 4789 dev lo"
            )),
        ));
        plan.step(Step::run(
            "remove the VXLAN check link",
            ip(&format!("-n {NETNS} link del fmlvxcheck")),
        ));
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
    if node.is_none() {
        plan.step(Step::action(
            "start-node-dockerd",
            format!("start dockerd in {NETNS} (data {DATA_DIR}/data, socket {NODE_HOST}) and wait for docker info"),
            Effect::Mutating,
        ));
    }
    let keys = ssh::keys_present();
    let sshd = netns && ssh::sshd_answers();
    plan.fact(
        "sshd in the namespace",
        match (keys, sshd) {
            (true, true) => format!("answering on {}", ssh::ssh_url()),
            (false, _) => format!("no keys in {}", ssh::SSH_DIR),
            (true, false) => "down".into(),
        },
        "files, and the SSH banner on the node's address",
    );
    if !keys {
        plan.step(Step::action(
            "ssh-keys",
            format!(
                "generate the node's host key and a client key pair in {} (0700), authorize the key (with DOCKER_HOST={NODE_HOST} only), pin the host key, and write {}",
                ssh::SSH_DIR,
                ssh::CLIENT_CONFIG
            ),
            Effect::Mutating,
        ));
    }
    if !sshd {
        plan.step(Step::action(
            "start-node-sshd",
            format!(
                "start sshd in {NETNS} on {NODE_ADDR}:{} (key authentication only) and wait for `docker -H {} info`",
                ssh::SSH_PORT,
                ssh::ssh_url()
            ),
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
            ip(&format!("link del {VETH_HOST}")),
        ));
    }
    if netns_path().exists() {
        plan.step(Step::run(
            "remove the network namespace",
            ip(&format!("netns del {NETNS}")),
        ));
    }
    if Path::new(ssh::CLIENT_CONFIG).exists() {
        plan.step(Step::action(
            "remove-ssh-config",
            format!(
                "remove {} (the keys stay in {})",
                ssh::CLIENT_CONFIG,
                ssh::SSH_DIR
            ),
            Effect::Mutating,
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
