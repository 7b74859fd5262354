//! The Swarm engine end to end, on a real single-node swarm with the testbed
//! images from the local registry.
//!
//! Every scenario runs in one test function, in sequence, inside one
//! `Session`: it initialises a swarm only if the node had none, and leaves it
//! only if it did, while holding a file lock that every swarm user in this
//! workspace (test binaries, the zero-downtime benchmark) takes, so no one
//! leaves the swarm under another. The test removes its own stack and the
//! volumes that stack created, nothing else.

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;
use xtask::bench::stream::{Seen, Stream};
use xtask::engine::cluster::{remove_stack, Session};

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The test's staging environment on Swarm: same state as `s`, its stack
/// `stack`. Only the stack's proxy publishes a port (`s.ports[0].0`); the
/// gate asks the api and the worker through it.
fn swarm_config(s: &Stack, stack: &str) {
    let api = s.ports[0].0;
    let file = root().join("deployments/testbed/docker-stack.yml");
    let repo = "127.0.0.1:5000/fetchml/testbed";
    let cfg = format!(
        r#"
[env.staging]
engine = "swarm"
project = "{stack}"
compose_files = ["{file}"]
app_services = ["api", "worker"]
stateful_services = ["redis"]
images = {{ api = "{repo}", worker = "{repo}" }}
health_urls = ["http://127.0.0.1:{api}/health", "http://127.0.0.1:{api}/worker/health"]
compliance_mode = "standard"
health_timeout_secs = 20
rollback_timeout_secs = 30
audit_sink = "sink"
vars = {{ API_PORT = "{api}", COMPLIANCE_MODE = "standard" }}
proxy = {{ service = "proxy", routes = {{ api = 8080 }}, probe_ports = {{ worker = 8080 }} }}
"#,
        file = file.display(),
    );
    std::fs::write(&s.config, cfg).unwrap();
}

/// The running task of a service (its ID and its container).
fn task(stack: &str, svc: &str) -> (String, String) {
    let name = format!("{stack}_{svc}");
    let id = docker(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        &name,
    ]);
    let container = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}"),
    ]);
    (id, container)
}

fn worker_container(stack: &str) -> String {
    task(stack, "worker").1
}

fn put_artifact(s: &Stack, stack: &str, name: &str, contents: &str) {
    let src = s.dir.path().join(name);
    std::fs::write(&src, contents).unwrap();
    let dst = format!("{}:/artifacts/{name}", worker_container(stack));
    let o = Command::new("docker")
        .args(["cp", &src.display().to_string(), &dst])
        .output()
        .unwrap();
    assert!(o.status.success(), "docker cp: {}", text(&o));
}

fn get_artifact(s: &Stack, stack: &str, name: &str) -> String {
    let dst = s.dir.path().join(format!("{name}.back"));
    let _ = std::fs::remove_file(&dst);
    let src = format!("{}:/artifacts/{name}", worker_container(stack));
    let o = Command::new("docker")
        .args(["cp", &src, &dst.display().to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "docker cp back: {}", text(&o));
    std::fs::read_to_string(dst).unwrap()
}

/// The worker's version, through the proxy (the worker publishes no port).
fn worker_version(s: &Stack) -> String {
    let body = reqwest::blocking::get(format!("{}/worker/health", s.api("staging")))
        .unwrap()
        .text()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["version"].as_str().unwrap_or_default().to_string()
}

/// Runs `body` on a fresh stack inside the swarm session, then removes the
/// stack and its volumes and, if the session created the swarm, checks it
/// is gone again.
fn in_swarm(name: &str, body: impl FnOnce(&Stack, &str, &Images)) {
    let img = images();
    let session = Session::enter().expect("a single-node swarm");
    let s = Stack::new(name);
    let stack = s.project("staging");
    swarm_config(&s, &stack);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&s, &stack, img)));
    remove_stack(&stack);
    // Checked before the lock is released: another swarm user may then
    // start a swarm of its own at once.
    if let Err(e) = session.end() {
        panic!("{e:#}");
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn swarm_deploy_rollback_by_swarm_and_manual_rollback_keep_state() {
    in_swarm("swarm", scenarios);
}

/// `logs` on Swarm: `docker service logs` of each app service, `-n`,
/// `--since`, no sets to pick from, and a follow that SIGTERM ends with
/// 143 and no process left (compose's twin: logs_e2e.rs).
#[test]
fn swarm_logs_of_each_service_with_tail_since_and_a_follow_stopped_by_sigterm() {
    in_swarm("swarmlogs", |s, stack, img| {
        s.ok(&["deploy-staging", "--tag", &img.v1]);
        let o = s.ok(&["logs", "staging"]);
        let out = stdout(&o);
        for svc in ["api", "worker"] {
            assert!(
                out.contains(&format!("testbed {svc}: version={} ", img.v1)),
                "{out}"
            );
        }
        let dry = s.ok(&["--dry-run", "logs", "staging", "worker", "-n", "3"]);
        assert!(
            stdout(&dry).contains(&format!(
                "docker service logs --no-task-ids --tail 3 {stack}_worker"
            )),
            "{}",
            text(&dry)
        );

        s.mark("staging", "swarm-tail-marker");
        let o = s.ok(&["logs", "staging", "api", "-n", "1"]);
        let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].ends_with("GET /swarm-tail-marker -> 404"),
            "{lines:?}"
        );

        let t = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        s.mark("staging", "swarm-since-marker");
        let o = s.ok(&["logs", "staging", "api", "--since", &t]);
        let out = stdout(&o);
        assert!(out.contains("GET /swarm-since-marker -> 404"), "{out}");
        assert!(
            !out.contains("swarm-tail-marker") && !out.contains("version="),
            "{out}"
        );

        assert_bad_input(
            &s.run(&["logs", "staging", "--set", "standby"]),
            "runs one set",
        );

        common::follow::follow_the_api_then_stop(&s, "swarm-follow-marker", "swarm");
    });
}

/// One xtask run under the request stream through the proxy's port: its
/// exit code must be `expect`; returns what the stream saw and how long the
/// run took.
fn watched(s: &Stack, what: &str, expect: i32, args: &[&str], switches: usize) -> (Seen, f64) {
    let stream = Stream::start(s.ports[0].0);
    let t = Instant::now();
    let o = s.run(args);
    let secs = t.elapsed().as_secs_f64();
    let mut seen = stream.stop();
    seen.switches = Some(switches);
    assert_eq!(exit_code(&o), expect, "{what}:\n{}", text(&o));
    eprintln!("swarm behind the proxy, {what}: {seen}; {secs:.1}s");
    (seen, secs)
}

/// Zero downtime on one node: api and worker update start-first behind the
/// proxy, which follows Swarm DNS. A deploy, a broken deploy that Swarm
/// rolls back, and a manual rollback each run under the request stream's
/// three clients (new connection, keep-alive, slow request) and may fail
/// no request of any of them.
/// `SWARM_ZD_ROUNDS=N` repeats the three N times (default 1).
#[test]
fn swarm_behind_the_proxy_fails_no_request() {
    in_swarm("swarmzd", |s, stack, img| {
        s.ok(&["deploy-staging", "--tag", &img.v1]);
        let rounds: usize = std::env::var("SWARM_ZD_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(1);
        let mut failures = Vec::new();
        for round in 1..=rounds {
            let deploy = ["deploy-staging", "--tag", img.v2.as_str()];
            let broken = ["deploy-staging", "--tag", img.bad.as_str()];
            let rollback = ["rollback", "staging", "--reason", "zero downtime"];
            // A deploy and a rollback replace the api task once; Swarm's
            // own rollback keeps the serving task (docs/swarm.md).
            let acts: [(&str, i32, &[&str], &str, usize); 3] = [
                ("deploy v1 -> v2", 0, &deploy, &img.v2, 1),
                ("broken deploy, rolled back", 3, &broken, &img.v2, 0),
                ("rollback staging", 0, &rollback, &img.v1, 1),
            ];
            for (what, expect, args, after, switches) in acts {
                let what = format!("round {round}, {what}");
                let (seen, _) = watched(s, &what, expect, args, switches);
                assert_eq!(s.health("staging")["version"], after, "{what}");
                assert!(seen.saw(after), "{what}: {after} never answered");
                assert!(
                    !seen.saw(&img.bad),
                    "{what}: the broken version got traffic"
                );
                if seen.failed() > 0 {
                    failures.push(format!("{what}: {seen}"));
                }
            }
        }
        let errors = proxy_errors(stack);
        eprintln!("swarm behind the proxy, the proxy's errors: {errors}");
        assert!(
            failures.is_empty(),
            "failed requests: {failures:?}\nthe proxy's errors: {errors}"
        );
    });
}

/// The stack proxy's error log lines, counted by message and error: what
/// a failed request met behind the proxy (a lookup that found no task, a
/// dial refused, an upstream that closed).
fn proxy_errors(stack: &str) -> String {
    let o = Command::new("docker")
        .args(["service", "logs", "--raw", &format!("{stack}_proxy")])
        .output()
        .unwrap();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let out = [o.stdout, o.stderr].concat();
    for line in String::from_utf8_lossy(&out).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["level"] == "error" {
            let key = format!(
                "{}: {}",
                v["msg"].as_str().unwrap_or_default(),
                v["error"].as_str().unwrap_or_default()
            );
            *counts.entry(key).or_default() += 1;
        }
    }
    match counts.is_empty() {
        true => "none".into(),
        false => format!("{counts:?}"),
    }
}

/// No container of the stack reaches a proxy admin: Caddy's is disabled
/// on Swarm (nothing switches it there). From inside the worker's task, the
/// proxy's front answers and its admin port (2019) does not.
#[test]
fn swarm_no_container_reaches_the_proxy_admin() {
    in_swarm("swarmadmin", |s, stack, img| {
        s.ok(&["deploy-staging", "--tag", &img.v1]);
        let worker = worker_container(stack);
        let get = |url: &str| {
            let mut c = Command::new("timeout");
            c.args([
                "30",
                "docker",
                "exec",
                &worker,
                "/testbed",
                "healthcheck",
                url,
            ]);
            probe(c)
        };
        assert_eq!(get("http://proxy:8080/health"), Ok(()));
        let answered = get("http://proxy:8080/none").unwrap_err();
        assert!(answered.contains("unhealthy: HTTP"), "{answered}");
        for url in ["http://proxy:2019/config/", "http://proxy:2019/"] {
            assert_refused(get(url), url);
        }
    });
}

fn scenarios(s: &Stack, stack: &str, img: &Images) {
    // Dry run: the plan names stack deploy and the convergence watch; nothing runs.
    let o = s.ok(&["deploy-staging", "--tag", &img.v1, "--dry-run"]);
    let plan = stdout(&o);
    assert!(
        plan.contains("docker stack deploy") && plan.contains("wait until every replica"),
        "{plan}"
    );
    assert!(!plan.contains("--prune"), "{plan}");
    assert!(docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.stack.namespace={stack}")
    ])
    .is_empty());

    // v1, then state: jobs through the queue, a file in a named volume.
    let t = Instant::now();
    let o = s.ok(&["deploy-staging", "--tag", &img.v1]);
    eprintln!("swarm first deploy: {:.1}s", t.elapsed().as_secs_f64());
    assert!(last_line(&o).starts_with("audit head: "), "{}", text(&o));
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    assert_eq!(worker_version(s), img.v1);
    let before = s.jobs("staging", 3);
    assert_eq!(before["done"], 3, "{before}");
    put_artifact(s, stack, "model.bin", "weights-v1");
    let redis = task(stack, "redis");
    assert!(!redis.0.is_empty() && !redis.1.is_empty(), "{redis:?}");

    // v2: every replica on v2, Redis' task and container unchanged.
    let t = Instant::now();
    s.ok(&["deploy-staging", "--tag", &img.v2, "--reason", "release 2"]);
    eprintln!("swarm v1 -> v2 deploy: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    assert_eq!(worker_version(s), img.v2);
    assert_eq!(
        task(stack, "redis"),
        redis,
        "redis was replaced by a deploy"
    );
    assert_eq!(s.queue("staging")["done"], 3);
    assert_eq!(get_artifact(s, stack, "model.bin"), "weights-v1");

    // A broken version: Swarm rolls it back by itself; stack deploy said 0,
    // the tool still reports rolled-back, exit 3.
    let t = Instant::now();
    let o = s.run(&["deploy-staging", "--tag", &img.bad]);
    eprintln!(
        "swarm broken deploy, rolled back: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(exit_code(&o), 3, "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "swarm rolled the update to {} back by itself",
            img.bad
        )),
        "{}",
        text(&o)
    );
    assert!(
        e.contains(&format!("rolled back to {}", img.v2)),
        "{}",
        text(&o)
    );
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    assert_eq!(worker_version(s), img.v2);
    let last = s.records("staging").pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("deploy", "rolled-back")
    );
    assert_eq!(last.from.as_ref().unwrap().tag, img.v2);
    assert_eq!(last.to.as_ref().unwrap().tag, img.bad);
    assert!(
        last.error
            .as_deref()
            .is_some_and(|e| e.contains("swarm rolled the update")),
        "{last:?}"
    );
    assert_eq!(s.history("staging").current(), Some(img.v2.as_str()));
    assert_eq!(
        task(stack, "redis"),
        redis,
        "redis was replaced across Swarm's rollback"
    );
    assert_eq!(s.queue("staging")["done"], 3, "queue lost jobs");

    // A manual rollback: image-only, back to v1, recorded in the same chain.
    let o = s.run(&[
        "rollback",
        "staging",
        "--reason",
        "swarm rehearsal",
        "--dry-run",
    ]);
    let plan = stdout(&o);
    assert!(
        plan.contains("docker service update") && !plan.contains("stack deploy"),
        "{}",
        text(&o)
    );
    let t = Instant::now();
    s.ok(&["rollback", "staging", "--reason", "swarm rehearsal"]);
    eprintln!("swarm manual rollback: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    assert_eq!(worker_version(s), img.v1);
    let last = s.records("staging").pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("rollback", "success")
    );
    let ran = last.to.clone().unwrap();
    assert_eq!(
        (last.from.unwrap().tag, last.to.unwrap().tag),
        (img.v2.clone(), img.v1.clone())
    );
    // The image-only update pinned the digest v1's records name.
    for svc in ["api", "worker"] {
        let spec = docker(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            &format!("{stack}_{svc}"),
        ]);
        assert_eq!(
            spec,
            format!(
                "127.0.0.1:5000/fetchml/testbed:{}@{}",
                img.v1,
                ran.digest
                    .as_deref()
                    .expect("the rollback record names a digest")
            )
        );
    }
    assert_eq!(
        task(stack, "redis"),
        redis,
        "redis was replaced by a rollback"
    );
    assert_eq!(s.queue("staging")["done"], 3);
    assert_eq!(get_artifact(s, stack, "model.bin"), "weights-v1");
    let specs = docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        &format!("{stack}_redis"),
    ]);
    assert_eq!(specs, "fetchml/testbed-redis:local");

    // v2 again, the tag the rolled-back stack deploy named: the rollback
    // moved the stack's image label too, so `stack deploy` sees a change.
    s.ok(&[
        "deploy-staging",
        "--tag",
        &img.v2,
        "--reason",
        "release 2 again",
    ]);
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    assert_eq!(worker_version(s), img.v2);

    // status and history read the same chain.
    let st = stdout(&s.ok(&["status", "staging"]));
    assert!(st.contains(&img.v2), "{st}");
    s.ok(&["history", "staging"]);
    let v = s.log("staging").verify().unwrap();
    assert_eq!(v.count, 5);
}
