//! An environment on another host, over real SSH: staging declares
//! `host = "ssh://root@10.77.0.2:2222"` (the second node of `cargo xtask
//! setup --swarm-nodes 2`, a dockerd and an sshd in a network namespace),
//! and the tool, run on this machine, deploys, fails a broken version's
//! gate (exit 3) and rolls back there, with its gate and proxy switch
//! reached through its SSH tunnel. A client on that host (a thread in the
//! namespace) sees 0 failed requests throughout, and nothing of the stack
//! listens on this machine's loopback. An inherited `DOCKER_HOST` naming
//! another engine is refused (exit 5) before anything is touched.
//!
//! The test holds the machine-wide swarm session lock while the second node
//! is up (as `swarm_nodes` does) and removes the node on every path.

mod common;

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xtask::nodes::{ssh, NETNS};

/// The second node, up for the test, removed on drop.
struct Node {
    _lock: File,
    projects: Vec<String>,
}

impl Node {
    fn up() -> Node {
        let lock = xtask::engine::cluster::hold_lock().expect("the swarm session lock");
        let o = xtask_bin()
            .args(["setup", "--swarm-nodes", "2"])
            .output()
            .expect("running xtask setup --swarm-nodes 2");
        let node = Node {
            _lock: lock,
            projects: Vec::new(),
        };
        assert!(
            o.status.success(),
            "the remote host is the second node with its sshd, and `cargo xtask setup --swarm-nodes 2` failed:\n{}",
            text(&o)
        );
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for p in &self.projects {
            let _ = std::process::Command::new("docker")
                .args(["-H", &ssh::ssh_url(), "compose", "-p", p, "down", "-t", "1"])
                .output();
        }
        let o = xtask_bin()
            .args(["setup", "--swarm-nodes", "1"])
            .output()
            .expect("running xtask setup --swarm-nodes 1");
        if !o.status.success() {
            eprintln!("teardown of the second node failed:\n{}", text(&o));
        }
    }
}

/// Pushes a local-only image into the registry, so the second engine can pull it.
fn publish(local: &str) -> String {
    let r = format!("127.0.0.1:5000/{local}");
    for args in [vec!["tag", local, &r], vec!["push", &r]] {
        let o = std::process::Command::new("docker")
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "docker {args:?}:\n{}", text(&o));
    }
    r
}

/// GETs `/health` on the node's loopback, a new connection each time,
/// from a thread inside the node's network namespace: the host's view.
struct HostLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostLoad {
    fn start(port: u16) -> HostLoad {
        let (stop, ok, failed) = Default::default();
        let (s, o, f): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) =
            (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd as _;
            let ns = File::open(format!("/run/netns/{NETNS}")).unwrap();
            // SAFETY: setns on an fd we hold; it changes this thread only.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            while !s.load(Ordering::Relaxed) {
                if get(port) {
                    o.fetch_add(1, Ordering::Relaxed);
                } else {
                    f.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        HostLoad {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    /// (answered, failed)
    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

fn get(port: u16) -> bool {
    let t = Duration::from_secs(2);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), t) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(t));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200")
}

fn timed(s: &Stack, args: &[&str]) -> (std::process::Output, Duration) {
    let t = Instant::now();
    let o = s.run(args);
    (o, t.elapsed())
}

fn bg() -> Opts {
    Opts {
        blue_green: true,
        gate_secs: 30,
        ..Opts::default()
    }
}

/// The directory on the host (the namespace shares this filesystem) that
/// keeps the stack's remote lock and chain, `<it>/<env>`.
fn host_state(s: &Stack) -> std::path::PathBuf {
    s.dir.path().join("on-host")
}

/// The second node up, and a stack whose staging lives there.
fn remote_stack(name: &str) -> (Node, Stack) {
    let mut node = Node::up();
    let haproxy = publish(xtask::provision::HAPROXY_IMAGE);
    let redis = publish("fetchml/testbed-redis:local");

    let s = Stack::with(name, bg());
    node.projects.push(s.project("staging"));
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let cfg = cfg
        .replacen(
            "[env.staging]\n",
            &format!(
                "[env.staging]\nhost = \"{}\"\nhost_state_dir = \"{}\"\n",
                ssh::ssh_url(),
                host_state(&s).display()
            ),
            1,
        )
        .replacen(
            "vars = { ",
            &format!("vars = {{ TESTBED_HAPROXY_IMAGE = \"{haproxy}\", TESTBED_REDIS_IMAGE = \"{redis}\", "),
            1,
        );
    std::fs::write(&s.config, cfg).unwrap();
    (node, s)
}

#[test]
fn staging_on_another_host_deploys_fails_and_rolls_back_over_ssh() {
    let img = images();
    let (_node, s) = remote_stack("remote");
    let port = s.ports[0].0;

    // The dry run names the engine, and every docker command carries it.
    let o = s.ok(&["--dry-run", "deploy-staging", "--tag", &img.v1]);
    let plan = stdout(&o);
    assert!(plan.contains("engine: ssh://root@10.77.0.2:2222"), "{plan}");
    assert!(
        plan.contains(
            "environment for every command below: DOCKER_HOST=ssh://root@10.77.0.2:2222 "
        ),
        "{plan}"
    );

    // An inherited DOCKER_HOST naming another engine: refused, one line, nothing written.
    let o = s
        .cmd()
        .args(["deploy-staging", "--tag", &img.v1])
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.lines().any(|l| l.starts_with("error: the inherited DOCKER_HOST=unix:///var/run/docker.sock names another engine than environment `staging` declares (ssh://root@10.77.0.2:2222)")),
        "{e}"
    );
    assert!(
        !s.state.join("staging").exists(),
        "a refused run wrote state"
    );

    // First deploy, then v2 under load measured on the host.
    let (o, first) = timed(&s, &["deploy-staging", "--tag", &img.v1]);
    assert!(o.status.success(), "{}", text(&o));
    let load = HostLoad::start(port);
    let (o, deploy) = timed(&s, &["deploy-staging", "--tag", &img.v2]);
    assert!(o.status.success(), "{}", text(&o));
    // The stack is on the host, not here: nothing listens on our loopback.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the api port {port} answers on this machine's loopback"
    );
    let (o, broken) = timed(&s, &["deploy-staging", "--tag", &img.bad]);
    assert_eq!(exit_code(&o), 3, "{}", text(&o));
    let (o, rollback) = timed(&s, &["rollback", "staging", "--reason", "remote e2e"]);
    assert!(o.status.success(), "{}", text(&o));
    let (answered, failed) = load.stop();
    assert!(answered > 20, "the host's client got {answered} answers");
    assert_eq!(
        failed,
        0,
        "failed requests on the host: {failed} of {}",
        answered + failed
    );
    let h = s.history("staging");
    assert_eq!(
        h.current(),
        Some(img.v1.as_str()),
        "rollback went back to v1"
    );
    // The host serves v1 now (asked there).
    let remote = std::process::Command::new("ssh")
        .args([
            "-p",
            "2222",
            "root@10.77.0.2",
            "--",
            "docker",
            "ps",
            "--format",
            "{{.Image}}",
        ])
        .output()
        .unwrap();
    let imgs = stdout(&remote);
    assert!(imgs.contains(&img.v1), "{imgs}");

    // The same operations on this machine, same run, for the figures.
    let l = Stack::with("remote-local", bg());
    let (o, l_first) = timed(&l, &["deploy-staging", "--tag", &img.v1]);
    assert!(o.status.success(), "{}", text(&o));
    let (o, l_deploy) = timed(&l, &["deploy-staging", "--tag", &img.v2]);
    assert!(o.status.success(), "{}", text(&o));
    let (o, l_rollback) = timed(&l, &["rollback", "staging", "--reason", "remote e2e"]);
    assert!(o.status.success(), "{}", text(&o));
    let _ = l.compose("staging", &["down", "-t", "1"]);
    println!(
        "remote vs local: first deploy {:.1}s vs {:.1}s; deploy {:.1}s vs {:.1}s; rollback (time to recover) {:.1}s vs {:.1}s; broken deploy rolled back (remote) {:.1}s; host client {answered} answers, {failed} failed",
        first.as_secs_f64(),
        l_first.as_secs_f64(),
        deploy.as_secs_f64(),
        l_deploy.as_secs_f64(),
        rollback.as_secs_f64(),
        l_rollback.as_secs_f64(),
        broken.as_secs_f64(),
    );
}

/// Every sshd process in the node's namespace (the listener and each
/// session's), killed at once: the link is lost as a host that vanished.
fn kill_sshd() -> usize {
    let pids: Vec<i32> = xtask::nodes::node_pids()
        .into_iter()
        .filter(|(_, c)| c.contains("sshd"))
        .map(|(p, _)| p)
        .collect();
    for &p in &pids {
        // SAFETY: kill(2) of sshd processes in the test's own node.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    pids.len()
}

#[test]
fn sshd_killed_during_the_gate_is_bounded_and_leaves_the_old_version_serving() {
    let img = images();
    let (_node, s) = remote_stack("remote-cut");
    let port = s.ports[0].0;
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let load = HostLoad::start(port);
    // The broken version's gate runs its whole 30 s: the link goes while it does.
    let started = Instant::now();
    let child = s
        .cmd()
        .args(["deploy-staging", "--tag", &img.bad])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let node_ps = || {
        let o = std::process::Command::new("docker")
            .args([
                "-H",
                xtask::nodes::NODE_HOST,
                "ps",
                "--format",
                "{{.Image}}",
            ])
            .output()
            .unwrap();
        stdout(&o)
    };
    while !node_ps().contains(&img.bad) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the broken set never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(kill_sshd() > 0, "no sshd ran in the namespace");
    let o = child.wait_with_output().unwrap();
    let took = started.elapsed();
    // Bounded: the gate's 30 s plus the rollback's attempts, not a hang.
    assert!(took < Duration::from_secs(150), "took {took:?}");
    let code = exit_code(&o);
    assert!(code == 3 || code == 4, "exit {code}: {}", text(&o));
    // Recorded: the chain's last record is this deploy, not a success.
    let recs = s.records("staging");
    let last = recs.last().unwrap();
    assert_eq!(last.action, "deploy");
    assert_ne!(last.outcome, "success", "{last:?}");
    // Nothing half-deployed: the proxy never switched; v1 serves on the host.
    let (answered, failed) = load.stop();
    assert_eq!(
        failed,
        0,
        "failed requests on the host: {failed} of {}",
        answered + failed
    );
    xtask::nodes::ssh::start_sshd().expect("starting sshd again");
    // The host could not take the record: the mirror keeps it, a look-up
    // says so, and the next run that writes uploads it.
    let on_host = host_state(&s).join("staging/audit.jsonl");
    let mirror = s.state.join("staging/audit.jsonl");
    let o = s.run(&["status", "staging"]);
    assert!(
        stderr(&o).contains("1 record(s) of") && stderr(&o).contains("are not on ssh://"),
        "{}",
        text(&o)
    );
    assert_ne!(
        std::fs::read(&on_host).unwrap(),
        std::fs::read(&mirror).unwrap()
    );
    let again = s.run(&["deploy-staging", "--tag", &img.v1]);
    let chain = std::fs::read_to_string(&on_host).unwrap();
    assert_eq!(
        chain.as_bytes(),
        std::fs::read(&mirror).unwrap(),
        "{}",
        text(&again)
    );
    assert!(
        chain.contains(&format!("\"outcome\":\"{}\"", last.outcome)),
        "{chain}"
    );
    println!(
        "sshd killed during the gate: exit {code} after {:.1}s, recorded `{}`; status then exits {}",
        took.as_secs_f64(),
        last.outcome,
        exit_code(&o)
    );
    let serving = std::process::Command::new("ssh")
        .args([
            "-p",
            "2222",
            "root@10.77.0.2",
            "--",
            "wget",
            "-qO-",
            &format!("http://127.0.0.1:{port}/health"),
        ])
        .output()
        .unwrap();
    let body = stdout(&serving);
    assert!(
        body.contains(&img.v1),
        "the host serves: {body} {}",
        text(&serving)
    );
}

/// `audit verify ENV`'s head, from one operator's checkout.
fn head(s: &Stack, env: &str) -> String {
    let o = s.ok(&["audit", "verify", env]);
    let out = stdout(&o);
    out.split_whitespace()
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no head in: {out}"))
        .to_string()
}

#[test]
fn two_operators_on_two_checkouts_take_one_lock_and_share_one_chain_on_the_host() {
    let img = images();
    let (_node, a) = remote_stack("remote-ops");
    let b = a.another_checkout();
    let on_host = host_state(&a).join("staging");
    let lock = on_host.join("deploy.lock");

    // A deploys; while A holds the lock on the host, B (its own state
    // directory, its own config copy) is refused, naming A as the holder.
    let mut deploying = a
        .cmd()
        .args(["deploy-staging", "--tag", &img.v1])
        .env("USER", "operator-a")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            deploying.try_wait().unwrap().is_none(),
            "A's deploy ended before it held the host's lock"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "A never took the lock on the host"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = b
        .cmd()
        .args(["deploy-staging", "--tag", &img.v2])
        .env("USER", "operator-b")
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    let e = first_error_line(&o);
    assert!(
        e.contains("environment `staging` is locked by operator-a (USER) (pid ")
            && e.contains("running deploy-staging) on ssh://root@10.77.0.2:2222"),
        "{e}"
    );
    let o = deploying.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        "",
        "the holder is cleared when A lets go"
    );

    // One chain: the host's, mirrored by both; B sees A's record.
    let chain = std::fs::read(on_host.join("audit.jsonl")).unwrap();
    assert_eq!(head(&b, "staging"), head(&a, "staging"));
    assert_eq!(
        std::fs::read(b.state.join("staging/audit.jsonl")).unwrap(),
        chain
    );
    assert_eq!(b.history("staging").current(), Some(img.v1.as_str()));
    let o = b.ok(&["history", "staging"]);
    assert!(stdout(&o).contains("operator-a"), "{}", text(&o));

    // B deploys on top of A's record; A then reads B's.
    let o = b
        .cmd()
        .args(["deploy-staging", "--tag", &img.v2])
        .env("USER", "operator-b")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = a.ok(&["status", "staging"]);
    assert!(stdout(&o).contains(&img.v2), "{}", text(&o));
    assert_eq!(a.history("staging").current(), Some(img.v2.as_str()));
    let recs = a.records("staging");
    let last = recs.last().unwrap();
    assert!(
        last.actor.starts_with("operator-b") && last.outcome == "success",
        "{recs:?}"
    );
    println!(
        "one chain, from either checkout: {:?}",
        recs.iter()
            .map(|r| format!("{} {} {}", r.actor, r.action, r.outcome))
            .collect::<Vec<_>>()
    );
    assert_eq!(head(&a, "staging"), head(&b, "staging"));

    // A host chain that no longer extends a mirror (its last record
    // rewritten there) is refused, exit 6, with nothing changed.
    let path = on_host.join("audit.jsonl");
    let good = std::fs::read_to_string(&path).unwrap();
    let mine = std::fs::read(a.state.join("staging/audit.jsonl")).unwrap();
    let (before, last) = good.trim_end().rsplit_once('\n').unwrap();
    let rewritten = format!("{before}\n{}\n", last.replace("operator-b", "operator-x"));
    std::fs::write(&path, rewritten).unwrap();
    let o = a.run(&["history", "staging"]);
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    assert!(first_error_line(&o).contains("diverged"), "{}", text(&o));
    assert_eq!(
        std::fs::read(a.state.join("staging/audit.jsonl")).unwrap(),
        mine
    );
    std::fs::write(&path, good).unwrap();

    // The cost of keeping the lock and the chain on the host, per
    // operation, through one master connection as a deploy has it; and,
    // while this process holds the stack's lock there, B's dry run refuses
    // as B's real run does, with the same line.
    use xtask::cmd::remote;
    remote::set_target(remote::Where::parse_host(&ssh::ssh_url()).unwrap());
    remote::open().unwrap();
    let on = |local: &std::path::Path, dir: &std::path::Path| {
        remote::keep_state_on_host(local, remote::target(), dir.display().to_string(), None);
        remote::host_state(local).unwrap()
    };
    let probe = tempfile::tempdir().unwrap();
    let shared = on(&probe.path().join("shared"), &on_host);
    let t = Instant::now();
    let held = shared
        .lock("the e2e probe")
        .unwrap()
        .expect("a free lock is taken");
    let lock_ms = t.elapsed().as_millis();
    assert_eq!(
        shared.lock("second").unwrap().err().as_deref(),
        Some("the e2e probe"),
        "a held lock is refused, naming its holder"
    );
    let dry = b.run(&["--dry-run", "deploy-staging", "--tag", &img.v1]);
    let real = b.run(&["deploy-staging", "--tag", &img.v1]);
    assert_eq!(exit_code(&dry), 5, "{}", text(&dry));
    assert_eq!(exit_code(&real), 5, "{}", text(&real));
    assert_eq!(first_error_line(&dry), first_error_line(&real));
    assert!(
        first_error_line(&real).contains("locked by the e2e probe on ssh://"),
        "{}",
        text(&real)
    );
    let t = Instant::now();
    held.release();
    let release_ms = t.elapsed().as_millis();
    let scratch = on(&probe.path().join("scratch"), &probe.path().join("on-host"));
    let t = Instant::now();
    scratch.read_chain().unwrap();
    let read_ms = t.elapsed().as_millis();
    let t = Instant::now();
    scratch.append_chain(0, "{}").unwrap().unwrap();
    let append_ms = t.elapsed().as_millis();
    assert_eq!(
        scratch.append_chain(0, "{}").unwrap(),
        Err("the chain there is 3 bytes, this run expected 0".into()),
        "an append on a chain that moved is refused"
    );
    remote::close();
    println!(
        "remote lock and chain per operation: lock {lock_ms} ms, read chain {read_ms} ms, append a record {append_ms} ms, release {release_ms} ms"
    );
}

#[test]
fn a_chain_on_a_host_that_cannot_be_reached_is_refused_with_nothing_written() {
    let s = Stack::new("remote-away");
    let cfg = std::fs::read_to_string(&s.config).unwrap().replacen(
        "[env.staging]\n",
        "[env.staging]\nhost = \"ssh://nobody@127.0.0.1:1\"\n",
        1,
    );
    std::fs::write(&s.config, cfg).unwrap();
    for args in [&["history", "staging"][..], &["audit", "verify", "staging"]] {
        let o = s.run(args);
        assert_eq!(exit_code(&o), 2, "{args:?}: {}", text(&o));
        let e = first_error_line(&o);
        assert!(
            e.starts_with("error: the audit chain of `staging` lives on ssh://nobody@127.0.0.1:1, which cannot be reached (")
                && e.ends_with("nothing was changed: check the host, its sshd and your ssh keys"),
            "{e}"
        );
    }
    assert!(!s.state.exists(), "a refused look-up wrote state");
}
