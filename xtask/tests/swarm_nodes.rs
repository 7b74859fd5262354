//! Two real swarm nodes on one machine, end to end: the cluster made by
//! `cargo xtask setup --swarm-nodes 2` (the machine's engine as manager, a
//! second engine in a network namespace as worker), a service spread over
//! both nodes that reaches itself over the overlay network, the second node
//! crashed (its task rescheduled on the manager) and restarted (Ready
//! again), and `setup --swarm-nodes 1` removing it all.
//!
//! The test holds the machine-wide swarm session lock (the one
//! `engine::cluster::Session` takes) from start to end, so no other swarm
//! user on this machine (swarm_e2e, the demo, the benchmarks) runs while a
//! worker is joined and could be given their tasks. Teardown runs on every
//! path (a guard's drop). A kernel without network namespaces or VXLAN
//! fails the setup, and so the test, with the reason.

mod common;

use std::fs::File;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use xtask::nodes::{NETNS, NETWORK, NODE_HOST};

fn docker_on(host: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("docker");
    if let Some(h) = host {
        c.args(["-H", h]);
    }
    c.args(args).output().expect("running docker")
}

fn ok_on(host: Option<&str>, args: &[&str]) -> String {
    let o = docker_on(host, args);
    assert!(o.status.success(), "docker {args:?} failed:\n{}", text(&o));
    stdout(&o).trim().to_string()
}

fn swarm_state() -> String {
    ok_on(None, &["info", "--format", "{{.Swarm.LocalNodeState}}"])
}

/// Holds the swarm session lock; on drop removes the test's services and
/// runs `setup --swarm-nodes 1`, so a failed assertion still tears down.
struct Cluster {
    services: Vec<String>,
    torn_down: bool,
    _lock: File,
}

impl Cluster {
    fn lock() -> Cluster {
        let lock = xtask::engine::cluster::hold_lock().expect("the swarm session lock");
        Cluster {
            services: Vec::new(),
            torn_down: false,
            _lock: lock,
        }
    }

    fn teardown(&mut self) -> std::process::Output {
        self.torn_down = true;
        if !self.services.is_empty() {
            let mut args = vec!["service", "rm"];
            args.extend(self.services.iter().map(String::as_str));
            let _ = docker_on(None, &args);
            // The overlay network goes only once no task uses it.
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                let left = self.services.iter().any(|s| {
                    !stdout(&docker_on(
                        None,
                        &[
                            "ps",
                            "-aq",
                            "--filter",
                            &format!("label=com.docker.swarm.service.name={s}"),
                        ],
                    ))
                    .trim()
                    .is_empty()
                });
                if !left {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        xtask_bin()
            .args(["setup", "--swarm-nodes", "1"])
            .output()
            .expect("running xtask setup --swarm-nodes 1")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.torn_down {
            let o = self.teardown();
            eprintln!("teardown after a failure:\n{}", text(&o));
        }
    }
}

/// Each running task of `service`: (node ID, state).
fn tasks(service: &str) -> Vec<(String, String)> {
    let ids = ok_on(
        None,
        &[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            service,
        ],
    );
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["inspect", "--format", "{{.NodeID}} {{.Status.State}}"];
    args.extend(ids);
    ok_on(None, &args)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within {}s", limit.as_secs());
}

/// The task container of `service` on one engine, and its overlay address.
fn container(host: Option<&str>, service: &str) -> (String, String) {
    let id = ok_on(
        host,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
        ],
    );
    let id = id.lines().next().unwrap_or_default().to_string();
    assert!(!id.is_empty(), "no task container of {service} on {host:?}");
    let f = format!("{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}");
    let ip = ok_on(host, &["inspect", "--format", &f, &id]);
    (id, ip)
}

/// `/testbed healthcheck URL` inside a container: 200 and status ok.
fn healthy_from(host: Option<&str>, container: &str, url: &str) -> Result<(), String> {
    let o = docker_on(host, &["exec", container, "/testbed", "healthcheck", url]);
    if o.status.success() {
        Ok(())
    } else {
        Err(text(&o))
    }
}

#[test]
fn two_nodes_spread_a_service_and_a_lost_node_is_replaced() {
    let img = images();
    let image = format!("127.0.0.1:5000/fetchml/testbed:{}", img.v1);
    let mut cluster = Cluster::lock();
    let before = swarm_state();

    let t = Instant::now();
    let o = xtask_bin()
        .args(["setup", "--swarm-nodes", "2"])
        .output()
        .expect("running xtask setup --swarm-nodes 2");
    assert!(
        o.status.success(),
        "two swarm nodes are needed and `cargo xtask setup --swarm-nodes 2` failed:\n{}",
        text(&o)
    );
    let created = t.elapsed();
    eprintln!("measured: cluster created in {:.1}s", created.as_secs_f64());

    let again = xtask_bin()
        .args(["setup", "--swarm-nodes", "2"])
        .output()
        .unwrap();
    assert!(
        again.status.success() && stdout(&again).contains("nothing to do"),
        "a second setup --swarm-nodes 2 must change nothing:\n{}",
        text(&again)
    );

    let nodes = ok_on(None, &["node", "ls", "--format", "{{.ID}} {{.Status}}"]);
    let ready: Vec<&str> = nodes.lines().filter(|l| l.ends_with(" Ready")).collect();
    assert_eq!(ready.len(), 2, "docker node ls:\n{nodes}");
    let manager = ok_on(None, &["info", "--format", "{{.Swarm.NodeID}}"]);
    let worker = ok_on(Some(NODE_HOST), &["info", "--format", "{{.Swarm.NodeID}}"]);
    assert_ne!(manager, worker);

    // The second node pulls the exact reference the stacks use.
    ok_on(Some(NODE_HOST), &["pull", "-q", &image]);

    let pid = std::process::id();
    let redis = format!("xtn-{pid}-redis");
    let api = format!("xtn-{pid}-api");
    cluster.services = vec![api.clone(), redis.clone()];
    ok_on(
        None,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            &redis,
            "--network",
            NETWORK,
            "--endpoint-mode",
            "dnsrr",
            "--constraint",
            "node.role==manager",
            "fetchml/testbed-redis:local",
        ],
    );
    let redis_addr = format!("REDIS_ADDR={redis}:6379");
    ok_on(
        None,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            &api,
            "--network",
            NETWORK,
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "2",
            "--placement-pref",
            "spread=node.id",
            "--env",
            "COMPLIANCE_MODE=dev",
            "--env",
            &redis_addr,
            &image,
            "api",
        ],
    );
    let spread = wait_until(
        "two running api tasks, one per node",
        Duration::from_secs(90),
        || {
            let t = tasks(&api);
            t.len() == 2
                && t.iter().all(|(_, s)| s == "running")
                && t.iter().any(|(n, _)| *n == manager)
                && t.iter().any(|(n, _)| *n == worker)
        },
    );
    eprintln!(
        "measured: service spread over both nodes in {:.1}s",
        spread.as_secs_f64()
    );

    // Each task reaches the other over the overlay, and the worker's task
    // reaches Redis on the manager (its health is ok only then).
    let (c1, ip1) = container(None, &api);
    let (c2, ip2) = container(Some(NODE_HOST), &api);
    let mut last = String::new();
    let reach = Instant::now();
    while reach.elapsed() < Duration::from_secs(30) {
        let a = healthy_from(None, &c1, &format!("http://{ip2}:8080/health"));
        let b = healthy_from(Some(NODE_HOST), &c2, &format!("http://{ip1}:8080/health"));
        match (a, b) {
            (Ok(()), Ok(())) => {
                last.clear();
                break;
            }
            (a, b) => last = format!("{:?} {:?}", a.err(), b.err()),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        last.is_empty(),
        "the tasks do not reach each other over {NETWORK}: {last}"
    );
    eprintln!("overlay: {ip1} (manager) <-> {ip2} (node 2, netns {NETNS}) both healthy");

    // A crashed host: the second engine and everything it ran, SIGKILLed.
    let lost = Instant::now();
    xtask::nodes::kill_node().expect("killing the second node");
    let down = wait_until(
        "the manager marks node 2 Down",
        Duration::from_secs(120),
        || {
            ok_on(
                None,
                &["node", "inspect", "--format", "{{.Status.State}}", &worker],
            ) == "down"
        },
    );
    let moved = wait_until(
        "node 2's task rescheduled on the manager",
        Duration::from_secs(180),
        || {
            let t = tasks(&api);
            t.len() == 2 && t.iter().all(|(n, s)| *n == manager && s == "running")
        },
    );
    let moved = lost.elapsed().max(moved);
    eprintln!(
        "measured: node 2 Down {:.1}s after the kill; its task running on the manager {:.1}s after the kill",
        down.as_secs_f64(),
        moved.as_secs_f64()
    );

    let back = Instant::now();
    xtask::nodes::restart_node().expect("restarting the second node");
    xtask::nodes::wait_ready(Duration::from_secs(120)).expect("node 2 Ready again");
    let ready_again = back.elapsed();
    assert_eq!(
        ok_on(
            None,
            &["node", "inspect", "--format", "{{.Status.State}}", &worker]
        ),
        "ready"
    );
    eprintln!(
        "measured: node 2 Ready {:.1}s after its engine was restarted",
        ready_again.as_secs_f64()
    );

    let o = cluster.teardown();
    assert!(
        o.status.success(),
        "setup --swarm-nodes 1 failed:\n{}",
        text(&o)
    );
    assert!(
        !std::path::Path::new("/run/netns").join(NETNS).exists(),
        "the namespace is still there"
    );
    assert_eq!(
        swarm_state(),
        before,
        "the swarm is not as the test found it"
    );
    let again = xtask_bin()
        .args(["setup", "--swarm-nodes", "1"])
        .output()
        .unwrap();
    assert!(
        again.status.success() && stdout(&again).contains("nothing to do"),
        "a second teardown must change nothing:\n{}",
        text(&again)
    );
}

/// The testbed stack through the tasks an operator runs, on both nodes:
/// api and worker with two replicas spread over them, the proxy and Redis
/// on the manager. Deploy and rollback drop no request; a lost node is
/// measured (failed requests, time until both replicas run again) and the
/// next deploy, after the node is back, sees the cluster as it is.
#[test]
fn the_testbed_on_two_nodes_deploys_rolls_back_and_outlives_a_lost_node() {
    use xtask::bench::stream::Stream;
    let img = images();
    let mut cluster = Cluster::lock();
    let o = xtask_bin()
        .args(["setup", "--swarm-nodes", "2"])
        .output()
        .expect("running xtask setup --swarm-nodes 2");
    assert!(
        o.status.success(),
        "setup --swarm-nodes 2 failed:\n{}",
        text(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let project = format!("xtn2-{}", std::process::id());
    let port = free_port();
    let stack = root().join("deployments/testbed/docker-stack.yml");
    let config = dir.path().join("deploy.toml");
    std::fs::write(
        &config,
        format!(
            r#"[env.staging]
engine = "swarm"
project = "{project}"
compose_files = ["{}"]
app_services = ["api", "worker"]
stateful_services = ["redis"]
images = {{ api = "127.0.0.1:5000/fetchml/testbed", worker = "127.0.0.1:5000/fetchml/testbed" }}
health_urls = ["http://127.0.0.1:{port}/health", "http://127.0.0.1:{port}/worker/health"]
compliance_mode = "standard"
health_timeout_secs = 60
rollback_timeout_secs = 60
vars = {{ API_PORT = "{port}", COMPLIANCE_MODE = "standard", APP_REPLICAS = "2" }}
proxy = {{ service = "proxy", routes = {{ api = 8080 }}, probe_ports = {{ worker = 8080 }} }}
"#,
            stack.display()
        ),
    )
    .unwrap();
    // Removed before the cluster's own teardown (drop order: last first).
    struct StackGuard(String);
    impl Drop for StackGuard {
        fn drop(&mut self) {
            xtask::engine::cluster::remove_stack(&self.0);
        }
    }
    let _stack = StackGuard(project.clone());
    let x = |args: &[&str]| {
        xtask_bin()
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(args)
            .env("USER", "e2e-test")
            .env_remove("CI")
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let o = x(args);
        assert!(o.status.success(), "xtask {args:?}:\n{}", text(&o));
        o
    };
    let api = format!("{project}_api");
    let on_two_nodes = || {
        let t = tasks(&api);
        let mut nodes: Vec<&String> = t
            .iter()
            .filter(|(_, s)| s == "running")
            .map(|(n, _)| n)
            .collect();
        nodes.dedup();
        t.len() == 2 && nodes.len() == 2
    };

    ok(&["deploy-staging", "--tag", &img.v1]);
    wait_until(
        "api spread over both nodes",
        Duration::from_secs(60),
        on_two_nodes,
    );

    let watched = |args: &[&str]| {
        let stream = Stream::start(port);
        let t = Instant::now();
        let o = ok(args);
        let secs = t.elapsed().as_secs_f64();
        let seen = stream.stop();
        eprintln!("measured: {args:?} on two nodes: {seen}; {secs:.1}s");
        assert_eq!(
            seen.failed(),
            0,
            "xtask {args:?} dropped requests: {seen}\n{}",
            text(&o)
        );
    };

    // A lost node: its dockerd killed like a crashed host, while one api
    // replica runs there.
    let stream = Stream::start(port);
    let lost = Instant::now();
    xtask::nodes::kill_node().expect("killing the second node");
    let manager = ok_on(None, &["info", "--format", "{{.Swarm.NodeID}}"]);
    let back = wait_until(
        "both api replicas on the manager",
        Duration::from_secs(120),
        || {
            let t = tasks(&api);
            t.iter()
                .filter(|(n, s)| n == &manager && s == "running")
                .count()
                == 2
        },
    );
    let seen = stream.stop();
    eprintln!(
        "measured: node loss: {seen}; full capacity again after {:.1}s",
        back.as_secs_f64()
    );
    // Service after the loss: the last second of the stream all answered.
    let tail: Vec<_> = seen.answers.iter().rev().take(25).collect();
    assert!(
        tail.iter().all(|(_, v)| v.is_some()),
        "still failing after the loss"
    );
    let _ = lost;

    let st = x(&["status", "staging"]);
    assert!(stdout(&st).contains(&img.v1), "{}", text(&st));

    // The node comes back; the next deploy and rollback see the cluster as
    // it is (start-first places new tasks where the spread finds room).
    xtask::nodes::restart_node().expect("restarting the second node");
    let ready = xtask::nodes::wait_ready(Duration::from_secs(120)).expect("node 2 Ready again");
    eprintln!(
        "measured: node 2 Ready again {:.1}s after its restart",
        ready.as_secs_f64()
    );
    watched(&["deploy-staging", "--tag", &img.v2]);
    eprintln!(
        "api tasks after the deploy (node, state): {:?}",
        tasks(&api)
    );
    let st = ok(&["status", "staging"]);
    assert!(stdout(&st).contains(&img.v2), "{}", text(&st));
    watched(&["rollback", "staging", "--reason", "two-node rehearsal"]);
    let st = ok(&["status", "staging"]);
    assert!(stdout(&st).contains(&img.v1), "{}", text(&st));
    drop(_stack);
    let o = cluster.teardown();
    assert!(o.status.success(), "teardown:\n{}", text(&o));
}
