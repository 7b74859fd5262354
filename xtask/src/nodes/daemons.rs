//! Starting the second node's daemons and joining it: the actions of the
//! `setup --swarm-nodes` plans, and the restart after a crash.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{
    docker, host, look, manager_swarm, netns_path, network_present, node_swarm, read_owned,
    unusable, write_owned, CGROUP_PARENT, DATA_DIR, HOST_ADDR, NETNS, NETWORK, NODE_ADDR,
    NODE_HOST, READY_SECS, RUN_DIR, START_SECS,
};
use crate::cmd::{Command, Effect};
use crate::exec::Actions;
use crate::progress::wait_for;

pub(super) struct NodeActions {
    pub(super) registry_root: PathBuf,
    pub(super) verbose: bool,
}

impl NodeActions {
    /// Initialises the swarm on the veth address and records that this did.
    fn swarm_init(&self) -> Result<()> {
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
}

impl Actions for NodeActions {
    fn run(&mut self, id: &str) -> Result<()> {
        match id {
            "start-node-registry" => start_registry(&self.registry_root),
            "start-node-dockerd" => start_dockerd(),
            "ssh-keys" => super::ssh::make_keys(),
            "start-node-sshd" => super::ssh::start_sshd(),
            "remove-ssh-config" => super::ssh::remove_client_config(),
            // Each action looks again first: a plan made a moment ago may
            // be stale (a restarted engine rejoins by itself).
            "swarm-init" => match manager_swarm() {
                // Someone initialised one since the plan was made.
                Some(s) if s.state == "active" => match unusable(&s) {
                    Some(why) => bail!("{why}"),
                    None => Ok(()),
                },
                _ => self.swarm_init(),
            },
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
    start_dockerd()?;
    // A crash takes sshd with it; a host that comes back runs it again.
    if super::ssh::keys_present() && !super::ssh::sshd_answers() {
        super::ssh::start_sshd()?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_registry_is_read_only_on_the_host_storage() {
        let c = registry_config(Path::new("/var/lib/x/registry/data"));
        assert!(c.contains("rootdirectory: /var/lib/x/registry/data"), "{c}");
        assert!(c.contains("readonly:\n      enabled: true"), "{c}");
        assert!(c.contains("addr: 127.0.0.1:5000"), "{c}");
    }
}
