//! Blue/green behind the real proxy (HAProxy), on the real engine: the
//! switch, a gate failure, a rollback that is a switch, worker job
//! accounting, kept-alive and slow requests across switches, a proxy that is
//! down, misconfigured or restarted, and its admin out of every container's
//! reach, each under a steady request stream where traffic matters.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xtask::bench::stream::Stream;

fn bg(name: &str, keep_previous: &'static str) -> Stack {
    Stack::with(
        name,
        Opts {
            blue_green: true,
            keep_previous,
            ..Opts::default()
        },
    )
}

/// Jobs posted through the proxy every 25 ms, each with its own id, while
/// the stream runs; the ids the api accepted (202).
struct Producer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Producer {
    fn start(port: u16, prefix: &str) -> Producer {
        let token =
            std::fs::read_to_string(root().join("deployments/testbed/api-token.dev")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let prefix = prefix.to_string();
        let thread = std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let mut accepted = Vec::new();
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let id = format!("{prefix}-{i}");
                i += 1;
                let r = c
                    .post(format!("http://127.0.0.1:{port}/api/jobs"))
                    .bearer_auth(token.trim())
                    .body(id.clone())
                    .send();
                if r.is_ok_and(|r| r.status().as_u16() == 202) {
                    accepted.push(id);
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            accepted
        });
        Producer {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Waits until the queue is empty, then counts each finished job by id.
fn done_jobs(s: &Stack) -> BTreeMap<String, Vec<String>> {
    let start = Instant::now();
    while s.queue("staging")["queued"] != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the queue never drained"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let token = std::fs::read_to_string(root().join("deployments/testbed/api-token.dev")).unwrap();
    let done: Vec<serde_json::Value> = reqwest::blocking::Client::new()
        .get(format!("{}/api/jobs/done", s.api("staging")))
        .bearer_auth(token.trim())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in done {
        by_id
            .entry(d["job"].as_str().unwrap().to_string())
            .or_default()
            .push(d["worker_version"].as_str().unwrap().to_string());
    }
    by_id
}

/// [`done_jobs`], asserting that each of `posted` was done exactly once.
fn done_once(s: &Stack, posted: &[String]) -> BTreeMap<String, Vec<String>> {
    let done = done_jobs(s);
    for id in posted {
        assert_eq!(
            done.get(id).map(Vec::len),
            Some(1),
            "job {id}: {:?}",
            done.get(id)
        );
    }
    done
}

/// `name image state slot` of every app container of staging.
fn containers(s: &Stack) -> Vec<String> {
    let o = std::process::Command::new("docker")
        .args(["ps", "--all", "--filter"])
        .arg(format!(
            "label=com.docker.compose.project={}",
            s.project("staging")
        ))
        .args([
            "--format",
            "{{.Names}} {{.Image}} {{.State}} {{.Label \"fetchml.slot\"}} {{.ID}}",
        ])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.contains("-proxy-") && !l.contains("-redis-"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn tag_of(line: &str) -> &str {
    line.split(' ').nth(1).unwrap().rsplit(':').next().unwrap()
}

#[test]
fn deploy_gate_failure_and_rollback_switch_with_zero_failed_requests_and_every_job_once() {
    let img = images();
    let s = bg("bg", "warm");
    let port = s.ports[0].0;
    let o = s.ok(&["deploy-staging", "--tag", &img.v1]);
    assert!(
        stderr(&o).contains("switched the proxy to the blue set"),
        "{}",
        text(&o)
    );
    assert_eq!(
        s.records("staging").last().unwrap().set.as_deref(),
        Some("blue")
    );

    // A deploy: green starts beside blue, is gated on its own address, the
    // proxy switches; blue's api stays warm, blue's worker stops.
    let stream = Stream::start(port);
    let jobs = Producer::start(port, "deploy");
    let o = s.ok(&["deploy-staging", "--tag", &img.v2]);
    let posted = jobs.stop();
    let seen = stream.stop();
    let err = stderr(&o);
    assert!(err.contains("switched the proxy to the green set"), "{err}");
    println!("deploy: {seen}");
    assert_eq!(
        seen.failed(),
        0,
        "requests failed during the deploy: {seen}\n{err}"
    );
    assert!(seen
        .answers
        .iter()
        .any(|(_, v)| v.as_deref() == Some(img.v2.as_str())));
    let last = s.records("staging").pop().unwrap();
    assert_eq!(
        (last.outcome.as_str(), last.set.as_deref()),
        ("success", Some("green"))
    );
    let cs = containers(&s);
    let state = |tag: &str, svc: &str| -> Vec<String> {
        cs.iter()
            .filter(|l| tag_of(l) == tag && l.contains(&format!("-{svc}-")))
            .map(|l| l.split(' ').nth(2).unwrap().to_string())
            .collect()
    };
    assert_eq!(
        state(&img.v1, "api"),
        ["running"],
        "blue api kept warm: {cs:?}"
    );
    assert_eq!(
        state(&img.v1, "worker"),
        ["exited"],
        "blue worker stopped: {cs:?}"
    );
    assert_eq!(state(&img.v2, "api"), ["running"], "{cs:?}");
    let st = stdout(&s.ok(&["status", "staging"]));
    assert!(st.contains("the green set serves"), "{st}");
    assert!(
        st.contains(&format!("standby: {} (the blue set: ", img.v1)),
        "{st}"
    );

    // Every job posted across the hand-over was done exactly once, by one worker or the other.
    assert!(posted.len() > 20, "too few jobs posted: {}", posted.len());
    let done = done_once(&s, &posted);
    let by: Vec<&String> = posted.iter().flat_map(|id| &done[id]).collect();
    println!(
        "jobs across the deploy: {} posted, {} done by {}, {} by {}",
        posted.len(),
        by.iter().filter(|v| **v == &img.v1).count(),
        img.v1,
        by.iter().filter(|v| **v == &img.v2).count(),
        img.v2
    );

    // A broken version: its gate fails on its own containers, which never
    // get traffic; they are discarded and green keeps serving.
    let stream = Stream::start(port);
    let o = s.run(&["deploy-staging", "--tag", &img.bad]);
    let seen = stream.stop();
    assert_eq!(exit_code(&o), 3, "{}", text(&o));
    // Its diagnostics come from the containers under test only: neither
    // the serving set's lines nor the standby's.
    let err = stderr(&o);
    let err = err.lines().find(|l| l.starts_with("error: ")).unwrap_or("");
    let logs = err
        .split_once("last log lines: ")
        .map_or_else(|| panic!("no log lines: {}", text(&o)), |(_, l)| l);
    let logs = logs.split("; rolled back to").next().unwrap_or_default();
    // Blue (v1, -1) and green (v2, -2) are the other sets; the new one is -3.
    let names: Vec<&str> = logs
        .split("; ")
        .map(|e| e.split(": ").next().unwrap_or_default())
        .collect();
    assert!(
        names.len() == 2 && names.iter().all(|n| n.ends_with("-3")),
        "{err}"
    );
    assert!(!logs.contains(&img.v1) && !logs.contains(&img.v2), "{err}");
    println!("broken deploy: {seen}");
    assert_eq!(seen.failed(), 0, "{seen}\n{}", text(&o));
    assert!(
        seen.answers
            .iter()
            .all(|(_, v)| v.as_deref() == Some(img.v2.as_str())),
        "the broken version got traffic"
    );
    assert!(
        containers(&s).iter().all(|l| tag_of(l) != img.bad),
        "{:?}",
        containers(&s)
    );
    let last = s.records("staging").pop().unwrap();
    assert_eq!(
        (last.outcome.as_str(), last.set.as_deref()),
        ("rolled-back", Some("green"))
    );
    assert_eq!(s.health("staging")["version"], img.v2.as_str());

    // A rollback to the warm blue set is a switch.
    let stream = Stream::start(port);
    let jobs = Producer::start(port, "rollback");
    let started = Instant::now();
    let o = s.ok(&["rollback", "staging", "--reason", "e2e"]);
    let posted = jobs.stop();
    let seen = stream.stop();
    assert!(
        !stderr(&o).contains("checking images"),
        "a switch needs no image check"
    );
    let ttr = seen.first(&img.v1, started).expect("v1 never answered");
    println!(
        "rollback: {seen}; traffic on {} {:.0} ms after the command started",
        img.v1,
        (ttr - started).as_secs_f64() * 1000.0
    );
    assert_eq!(seen.failed(), 0, "{seen}\n{}", text(&o));
    let last = s.records("staging").pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.set.as_deref()),
        ("rollback", Some("blue"))
    );
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    done_once(&s, &posted);
    let n = s.records("staging").len();
    assert!(stdout(&s.ok(&["audit", "verify", "staging"])).contains(&format!("{n} records")));
}

#[test]
fn a_stopped_previous_set_is_started_gated_and_switched_to() {
    let img = images();
    let s = bg("bgstop", "stopped");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    let cs = containers(&s);
    assert!(
        cs.iter()
            .filter(|l| tag_of(l) == img.v1)
            .all(|l| l.contains(" exited ")),
        "keep_previous = stopped leaves the old set stopped: {cs:?}"
    );
    let stream = Stream::start(s.ports[0].0);
    let o = s.ok(&["rollback", "staging", "--reason", "e2e"]);
    let seen = stream.stop();
    assert!(
        stderr(&o).contains("starting the blue set (api on"),
        "{}",
        text(&o)
    );
    assert_eq!(seen.failed(), 0, "{seen}\n{}", text(&o));
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    // The same containers, started again: no new ones.
    let after = containers(&s);
    let ids = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&cs), ids(&after), "{cs:?}\n{after:?}");
}

#[test]
fn a_proxy_that_is_down_or_misconfigured_is_refused_before_anything_is_touched() {
    let img = images();
    let s = bg("bgproxy", "warm");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let before = containers(&s);

    // Down: the proxy's container is stopped.
    let proxy = format!("{}-proxy-1", s.project("staging"));
    let o = std::process::Command::new("docker")
        .args(["stop", &proxy])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = s.run(&[
        "rollback", "staging", "--to", &img.v1, "--force", "--reason", "x",
    ]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(stderr(&o).contains("does not answer"), "{}", text(&o));
    assert_eq!(containers(&s), before);
    assert_eq!(s.records("staging").pop().unwrap().outcome, "refused");

    // Misconfigured: the proxy answers, but its config has no backend
    // `fetchml-api`. The test's own proxy container is replaced by one
    // from a copy of the compose directory whose config names it otherwise.
    let o = std::process::Command::new("docker")
        .args(["rm", "-f", &proxy])
        .output()
        .unwrap();
    assert!(o.status.success());
    let src = root().join("deployments/testbed");
    let dir = s.dir.path().join("misnamed");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["docker-compose.yml", "api-token.dev"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(src.join("haproxy.cfg")).unwrap();
    std::fs::write(
        dir.join("haproxy.cfg"),
        cfg.replace("fetchml-api", "fetchml-web"),
    )
    .unwrap();
    let toml = std::fs::read_to_string(&s.config).unwrap().replace(
        &src.join("docker-compose.yml").display().to_string(),
        &dir.join("docker-compose.yml").display().to_string(),
    );
    std::fs::write(&s.config, toml).unwrap();
    // Started as the tool starts it: the same admin directory and user.
    let admin = s.admin_dir("staging");
    let owner = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&admin).unwrap();
        format!("{}:{}", m.uid(), m.gid())
    };
    let o = std::process::Command::new("docker")
        .args(["compose", "-p", &s.project("staging"), "-f"])
        .arg(dir.join("docker-compose.yml"))
        .args(["up", "-d", "--no-deps", "proxy"])
        .env("FETCHML_TAG", &img.v1)
        .env("API_PORT", s.ports[0].0.to_string())
        .env("FETCHML_PROXY_ADMIN_DIR", &admin)
        .env("FETCHML_PROXY_USER", owner)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = s.run(&["deploy-staging", "--tag", &img.v2]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains("no backend `fetchml-api`"),
        "{}",
        text(&o)
    );
    assert_eq!(
        containers(&s),
        before,
        "a refused deploy touched the app containers"
    );
    assert_eq!(s.records("staging").pop().unwrap().outcome, "refused");
}

/// One HTTP/1.1 connection kept alive, a GET /health every 20 ms (50/s):
/// what browsers and connection pools do. A failure is a request that got
/// no complete 200 (the connection is then opened again).
struct KeepAlive {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>, usize)>>,
}

/// Sends `req` on `c` and reads one response: its status and body.
fn exchange(c: &mut std::net::TcpStream, req: &[u8]) -> Result<(u16, String), String> {
    use std::io::{BufRead, BufReader, Read, Write};
    c.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut r = BufReader::new(c.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
    if line.is_empty() {
        return Err("connection closed before a response".into());
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).map_err(|e| format!("read: {e}"))?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

impl KeepAlive {
    fn start(port: u16) -> KeepAlive {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let connect = || {
                let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                c
            };
            let mut c = connect();
            let (mut ok, mut failed, mut conns) = (0, Vec::new(), 1);
            while !s.load(Ordering::Relaxed) {
                match exchange(&mut c, b"GET /health HTTP/1.1\r\nHost: proxy\r\n\r\n") {
                    Ok((200, _)) => ok += 1,
                    other => {
                        failed.push(format!("{other:?}"));
                        c = connect();
                        conns += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (ok, failed, conns)
        });
        KeepAlive {
            stop,
            thread: Some(thread),
        }
    }

    /// Requests answered, the failures, and connections opened.
    fn stop(mut self) -> (usize, Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Slow requests back to back, so one is always in flight: each sends
/// its body over 3 s (the proxy connects to a container once the headers
/// are in), then reads the answer. The version that answered each, or why
/// it failed.
fn slow_requests(
    port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Result<String, String>>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let r = (|| {
                use std::io::Write;
                let mut c =
                    std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                c.write_all(b"GET /health HTTP/1.1\r\nHost: proxy\r\nContent-Length: 6\r\n\r\n")
                    .map_err(|e| e.to_string())?;
                for b in b"slowly" {
                    std::thread::sleep(Duration::from_millis(500));
                    c.write_all(&[*b]).map_err(|e| format!("body: {e}"))?;
                }
                match exchange(&mut c, b"")? {
                    (200, body) => {
                        let v: serde_json::Value =
                            serde_json::from_str(&body).map_err(|e| e.to_string())?;
                        Ok(v["version"].as_str().unwrap_or_default().to_string())
                    }
                    (st, body) => Err(format!("HTTP {st}: {body}")),
                }
            })();
            out.push(r);
        }
        out
    })
}

/// The proxy's switch times this run printed (`switched the proxy to ... in N ms`).
fn switch_ms(o: &std::process::Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.contains("switched the proxy to"))
        .filter_map(|l| l.rsplit(" in ").next().map(str::to_string))
        .collect()
}

#[test]
fn kept_alive_and_slow_requests_survive_deploys_and_rollbacks_with_zero_failures() {
    let img = images();
    // The old set stops after its drain: a slow request in flight must
    // finish there first, so the drain bound is well above its 3 s.
    let s = Stack::with(
        "bgka",
        Opts {
            blue_green: true,
            keep_previous: "stopped",
            drain_secs: 15,
            ..Opts::default()
        },
    );
    let port = s.ports[0].0;
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let ka = KeepAlive::start(port);
    let stream = Stream::start(port);
    let stop = Arc::new(AtomicBool::new(false));
    let slow = slow_requests(port, stop.clone());
    let mut switches = Vec::new();
    for args in [
        vec!["deploy-staging", "--tag", &img.v2],
        vec!["rollback", "staging", "--reason", "e2e"],
        vec!["deploy-staging", "--tag", &img.v2],
    ] {
        let o = s.ok(&args);
        switches.extend(switch_ms(&o));
    }
    stop.store(true, Ordering::Relaxed);
    let slow = slow.join().unwrap();
    let (ok, failed, conns) = ka.stop();
    let seen = stream.stop();
    println!(
        "keep-alive: {ok} answered, {} failed, {conns} connection(s); new connections: {} sent, {} failed; slow: {} ({:?}); switches: {switches:?}",
        failed.len(),
        seen.sent(),
        seen.failed(),
        slow.len(),
        slow
    );
    assert_eq!(switches.len(), 3, "{switches:?}");
    assert!(failed.is_empty(), "kept-alive requests failed: {failed:?}");
    assert_eq!(conns, 1, "the kept-alive connection was closed");
    assert!(ok > 100, "too few kept-alive requests: {ok}");
    assert_eq!(seen.failed(), 0);
    assert!(slow.len() >= 3, "{slow:?}");
    assert!(
        slow.iter().all(Result::is_ok),
        "slow requests failed: {slow:?}"
    );
    // Both versions answered slow requests: some were in flight on the
    // set that was switched away from and then stopped.
    assert!(
        slow.iter().any(|r| r.as_deref() == Ok(img.v1.as_str())),
        "{slow:?}"
    );
    assert!(
        slow.iter().any(|r| r.as_deref() == Ok(img.v2.as_str())),
        "{slow:?}"
    );
}

#[test]
fn no_container_reaches_the_proxy_admin_and_a_restarted_proxy_routes_where_it_was_switched() {
    use std::os::unix::fs::PermissionsExt;
    let img = images();
    let s = bg("bgadmin", "warm");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    let project = s.project("staging");
    let network = format!("{project}_default");
    let image = format!("127.0.0.1:5000/fetchml/testbed:{}", img.v1);

    // The admin directory: private to its owner, the socket too.
    let admin = s.admin_dir("staging");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&admin), 0o700);
    assert_eq!(mode(&admin.join("admin.sock")), 0o600);
    // Only the proxy mounts it.
    let admin_src = admin.display().to_string();
    let mounts: Vec<_> = bind_mounts(&project)
        .into_iter()
        .filter(|(_, src)| src.starts_with(&admin_src))
        .collect();
    assert!(!mounts.is_empty(), "the proxy does not mount {admin_src}");
    assert!(
        mounts.iter().all(|(name, _)| name.ends_with("-proxy-1")),
        "{mounts:?}"
    );
    // A container on the stack's network reaches the proxy's front (and
    // the probe tells an answer from a refusal), and nothing else: no admin
    // API on Caddy's old port.
    assert_eq!(
        get_from_network(&network, &image, "http://proxy:8080/health"),
        Ok(())
    );
    let answered = get_from_network(&network, &image, "http://proxy:8080/none").unwrap_err();
    assert!(answered.contains("unhealthy: HTTP 404"), "{answered}");
    for url in ["http://proxy:2019/config/", "http://proxy:2019/"] {
        assert_refused(get_from_network(&network, &image, url), url);
    }

    // A restarted proxy routes to the set it was last switched to.
    let o = std::process::Command::new("docker")
        .args(["restart", &format!("{project}-proxy-1")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let start = Instant::now();
    let version = loop {
        if let Ok(r) = reqwest::blocking::get(format!("{}/health", s.api("staging"))) {
            if let Ok(v) = r.json::<serde_json::Value>() {
                break v["version"].as_str().unwrap_or_default().to_string();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the proxy never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(version, img.v2);
    let st = stdout(&s.ok(&["status", "staging"]));
    assert!(st.contains("the green set serves"), "{st}");
    // And it still switches: a rollback to the warm blue set.
    let stream = Stream::start(s.ports[0].0);
    s.ok(&["rollback", "staging", "--reason", "e2e"]);
    assert_eq!(stream.stop().failed(), 0);
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
}

/// Waits until `tag`'s set has all its containers (api and worker) running.
fn wait_running(s: &Stack, tag: &str, child: &mut std::process::Child) {
    let start = Instant::now();
    loop {
        let cs: Vec<String> = containers(s)
            .into_iter()
            .filter(|l| tag_of(l) == tag)
            .collect();
        if cs.len() == 2 && cs.iter().all(|l| l.contains(" running ")) {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the deploy of {tag} ended ({st}) before its set ran: {cs:?}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the new set never started: {cs:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The app containers that run, of `svc`, on `tag`.
fn running(s: &Stack, svc: &str, tag: &str) -> usize {
    containers(s)
        .iter()
        .filter(|l| tag_of(l) == tag && l.contains(&format!("-{svc}-")) && l.contains(" running "))
        .count()
}

/// Each signal while a broken set is gated: the set is removed, traffic
/// never drops and the proxy stays on what served. Then a `kill -9` right
/// after a new set started leaves three sets; the next deploy removes the
/// leftover first and runs exactly the configured replicas behind the proxy.
#[test]
fn a_signal_while_the_new_set_is_gated_discards_it_and_a_killed_deploy_leaves_no_extra_replicas() {
    let img = images();
    // A gate far longer than the test needs, so a slow machine cannot let
    // it fail (exit 3) before the signal arrives.
    let s = Stack::with(
        "bgsig",
        Opts {
            blue_green: true,
            keep_previous: "warm",
            gate_secs: 90,
            ..Opts::default()
        },
    );
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    let before = containers(&s);
    let serving = s.upstreams("staging", "api");
    for (sig, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let stream = Stream::start(s.ports[0].0);
        let mut child = s
            .cmd()
            .args(["deploy-staging", "--tag", &img.bad])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Started: the next step is its gate, which never passes.
        wait_running(&s, &img.bad, &mut child);
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = child.wait_with_output().unwrap();
        let seen = stream.stop();
        assert_eq!(exit_code(&o), 128 + sig, "{name}: {}", text(&o));
        assert_eq!(seen.failed(), 0, "{name}: {}", text(&o));
        assert!(!seen.saw(&img.bad), "{name}: the broken set got traffic");
        assert_eq!(
            containers(&s),
            before,
            "{name}: the interrupted set was not discarded"
        );
        assert_eq!(s.upstreams("staging", "api"), serving, "{name}");
        assert_eq!(s.health("staging")["version"], img.v2.as_str(), "{name}");
        let last = s.records("staging").pop().unwrap();
        assert_eq!(last.outcome, "rolled-back", "{name}: {last:?}");
        assert!(
            last.error.as_deref().unwrap_or("").contains(name),
            "{last:?}"
        );
        assert_eq!(last.set.as_deref(), Some("green"), "{name}");
    }

    // kill -9 once the broken set runs: nothing can remove it, and the
    // lock goes with the process.
    let mut child = s
        .cmd()
        .args(["deploy-staging", "--tag", &img.bad])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_running(&s, &img.bad, &mut child);
    child.kill().unwrap();
    let _ = child.wait();
    let slots = |cs: &[String]| {
        let mut v: Vec<String> = cs
            .iter()
            .map(|l| l.split(' ').nth(3).unwrap_or("").to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(slots(&containers(&s)).len(), 3, "{:?}", containers(&s));

    // The next deploy (of what serves, in a new set) plans from the config:
    // the leftover goes first and one more of each service is added.
    let plan = stdout(&s.ok(&["deploy-staging", "--tag", &img.v2, "--dry-run"]));
    assert!(
        plan.contains("api=3") && plan.contains("worker=3"),
        "{plan}"
    );
    let o = s.ok(&["deploy-staging", "--tag", &img.v2]);
    assert!(
        containers(&s).iter().all(|l| tag_of(l) != img.bad),
        "{:?}",
        containers(&s)
    );
    assert_eq!(slots(&containers(&s)).len(), 2, "{:?}", containers(&s));
    // The standby (green, v2) keeps its warm api; the new set has one of each.
    let new_set = s.records("staging").pop().unwrap().set.unwrap();
    let of_new: Vec<String> = containers(&s)
        .into_iter()
        .filter(|l| l.split(' ').nth(3) == Some(new_set.as_str()))
        .collect();
    assert_eq!(of_new.len(), 2, "{of_new:?}\n{}", text(&o));
    assert!(of_new.iter().all(|l| l.contains(" running ")), "{of_new:?}");
    assert_eq!(running(&s, "worker", &img.v2), 1, "{:?}", containers(&s));
    let ups = s.upstreams("staging", "api");
    assert_eq!(ups.len(), 1, "{ups:?}");
    // The proxy names its upstream by address: the new set's api's.
    let ip_of = |name: &str| {
        let o = std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                name,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert!(
        of_new
            .iter()
            .filter(|l| l.contains("-api-"))
            .any(|l| ups[0] == format!("{}:8080", ip_of(l.split(' ').next().unwrap()))),
        "{ups:?} {of_new:?}"
    );
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
}

#[test]
fn a_compose_file_without_the_slot_label_or_with_other_replicas_is_refused_before_anything_starts()
{
    let img = images();
    let s = bg("bglabel", "warm");
    let src = root().join("deployments/testbed");
    let dir = s.dir.path().join("nolabel");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["haproxy.cfg", "api-token.dev"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let compose = std::fs::read_to_string(src.join("docker-compose.yml")).unwrap();
    let stripped = compose.replace("    labels:\n      fetchml.slot: ${FETCHML_SLOT:-}\n", "");
    assert_ne!(
        stripped, compose,
        "the testbed compose file carries the label"
    );
    std::fs::write(dir.join("docker-compose.yml"), stripped).unwrap();
    let cfg = std::fs::read_to_string(&s.config).unwrap().replace(
        &src.join("docker-compose.yml").display().to_string(),
        &dir.join("docker-compose.yml").display().to_string(),
    );
    std::fs::write(&s.config, cfg).unwrap();
    let o = s.run(&["deploy-staging", "--tag", &img.v1]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains("app service `api` has no label `fetchml.slot"),
        "{}",
        text(&o)
    );
    assert!(containers(&s).is_empty(), "{:?}", containers(&s));
    assert_eq!(s.records("staging").pop().unwrap().outcome, "refused");

    // Replicas come from the config; a compose file that says otherwise is
    // refused (the dry run as the real run), and agreeing, it is the scale.
    let two = compose.replacen(
        "    command: [\"api\"]\n",
        "    command: [\"api\"]\n    deploy:\n      replicas: 2\n",
        1,
    );
    assert_ne!(two, compose);
    std::fs::write(dir.join("docker-compose.yml"), two).unwrap();
    let o = s.run(&["deploy-staging", "--tag", &img.v1, "--dry-run"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(text(&o).contains("`deploy.replicas: 2`"), "{}", text(&o));
    let cfg = std::fs::read_to_string(&s.config).unwrap().replacen(
        "probe_ports = { worker = 8081 }",
        "probe_ports = { worker = 8081 }, replicas = { api = 2 }",
        1,
    );
    std::fs::write(&s.config, cfg).unwrap();
    let o = s.ok(&["deploy-staging", "--tag", &img.v1, "--dry-run"]);
    assert!(
        stdout(&o).contains("--scale api=2 --scale worker=1"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_proxy_lost_mid_deploy_is_started_again_by_the_recovery_with_the_serving_routes() {
    let img = images();
    let s = bg("bglost", "warm");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let before = containers(&s);
    let child = s
        .cmd()
        .args(["deploy-staging", "--tag", &img.bad])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the broken set is gated, the proxy is lost (stopped, so the
    // engine's restart policy does not bring it back by itself).
    let start = Instant::now();
    while !containers(&s).iter().any(|l| tag_of(l) == img.bad) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the new set never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let proxy = format!("{}-proxy-1", s.project("staging"));
    let o = std::process::Command::new("docker")
        .args(["stop", "--time", "1", &proxy])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = child.wait_with_output().unwrap();
    // The gate failed (exit 3); the recovery started the proxy again and
    // put it back on the serving set, and discarded the broken one.
    assert_eq!(exit_code(&o), 3, "{}", text(&o));
    assert!(
        stderr(&o).contains("starting the proxy again"),
        "{}",
        text(&o)
    );
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    assert_eq!(containers(&s), before, "{}", text(&o));
    let last = s.records("staging").pop().unwrap();
    assert_eq!(
        (last.outcome.as_str(), last.set.as_deref()),
        ("rolled-back", Some("blue")),
        "{last:?}"
    );
}

/// The plain-2xx contract behind the proxy: the image check of a new set
/// inspects that set's containers only (the warm previous set runs the
/// previous image by design), and a rollback's switch passes it too.
#[test]
fn plain_2xx_contract_checks_the_new_sets_image_only() {
    let img = images();
    let s = bg("bg-2xx", "warm");
    let mut cfg = std::fs::read_to_string(&s.config).unwrap();
    cfg.push_str("\n[env.staging.health]\ncontract = \"2xx\"\n");
    std::fs::write(&s.config, cfg).unwrap();
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let o = s.ok(&["deploy-staging", "--tag", &img.v2]);
    let repo = "127.0.0.1:5000/fetchml/testbed";
    assert!(
        stderr(&o).contains(&format!("and the containers run {repo}:{}@sha256:", img.v2)),
        "{}",
        text(&o)
    );
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    s.ok(&["rollback", "staging"]);
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    // status checks the serving set's and the warm standby's images alike.
    let st = stdout(&s.ok(&["status", "staging"]));
    assert!(st.contains("health: ok"), "{st}");
}
