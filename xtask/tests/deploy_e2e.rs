//! Deploy pipeline end to end, against the real Docker Engine, Compose v2,
//! the local registry and the testbed images.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn staging_v1_then_v2_then_broken_v3_rolls_back_and_keeps_state() {
    let img = images();
    let s = Stack::new("deploy");
    let o = s.ok(&["deploy-staging", "--tag", &img.v1]);
    assert!(last_line(&o).starts_with("audit head: "), "{}", text(&o));
    assert_eq!(s.health("staging")["version"], img.v1.as_str());

    // State written before the next deploys: jobs through the queue, a file in a named volume.
    let before = s.jobs("staging", 3);
    assert_eq!(before["done"], 3, "{before}");
    s.put_artifact("staging", "model.bin", "weights-v1");
    let redis = s.container_id("staging", "redis");
    assert!(!redis.is_empty());

    s.ok(&["deploy-staging", "--tag", &img.v2, "--reason", "release 2"]);
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    let h = s.history("staging");
    assert_eq!(h.current(), Some(img.v2.as_str()));
    assert_eq!(h.previous_good(), Some(img.v1.as_str()));
    assert_eq!(s.queue("staging")["done"], 3);
    assert_eq!(s.get_artifact("staging", "model.bin"), "weights-v1");
    assert_eq!(
        s.container_id("staging", "redis"),
        redis,
        "redis was recreated by a deploy"
    );

    // status is derived from the chain.
    let st = stdout(&s.ok(&["status", "staging"]));
    assert!(st.contains(&img.v2) && st.contains(&img.v1), "{st}");

    // A broken version: the gate fails, every app service goes back to v2, exit 3.
    let o = s.run(&["deploy-staging", "--tag", &img.bad]);
    assert_eq!(exit_code(&o), 3, "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!("rolled back to {}", img.v2)),
        "{}",
        text(&o)
    );
    assert!(last_line(&o).starts_with("audit head: "), "{}", text(&o));
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    let worker = s.running_images("staging", "worker");
    assert!(
        worker.len() == 1 && worker[0].ends_with(&format!(":{}", img.v2)),
        "worker not back on v2: {worker:?}"
    );
    let recs = s.records("staging");
    let last = recs.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("deploy", "rolled-back")
    );
    assert_eq!(last.from.as_ref().unwrap().tag, img.v2);
    assert_eq!(last.to.as_ref().unwrap().tag, img.bad);
    // The operator's reason and the tool's error are kept apart.
    assert_eq!(last.reason, "deploy");
    let error = last.error.as_deref().unwrap_or_default();
    assert!(error.contains("health gate failed"), "{last:?}");
    // The failed gate says why: the health body and the new containers' logs.
    assert!(error.contains("body {"), "{error}");
    assert!(error.contains("last log lines"), "{error}");
    assert_eq!(last.actor, "e2e-test (USER)");
    assert!(last
        .to
        .as_ref()
        .unwrap()
        .digest
        .as_deref()
        .is_some_and(|d| d.starts_with("sha256:")));
    assert_eq!(s.history("staging").current(), Some(img.v2.as_str()));
    assert_eq!(
        s.queue("staging")["done"],
        3,
        "queue lost jobs across the rollback"
    );
    assert_eq!(s.get_artifact("staging", "model.bin"), "weights-v1");
    assert_eq!(s.container_id("staging", "redis"), redis);
    let v = s.log("staging").verify().unwrap();
    assert_eq!(v.count, 3);
}

#[test]
fn prod_refuses_a_tag_never_deployed_to_staging_then_accepts_it() {
    let img = images();
    let s = Stack::new("promote");
    let o = s.run(&["deploy-prod", "--tag", &img.v1, "--yes"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!(
            "missing a successful staging deploy of {}",
            img.v1
        )),
        "{}",
        text(&o)
    );
    assert!(
        s.container_id("prod", "api").is_empty(),
        "a refused promotion started something"
    );
    let refused = s.records("prod");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].outcome, "refused");

    // Outside CI, --yes is required; the refusal is recorded like any other.
    let o = s.run(&["deploy-prod", "--tag", &img.v1]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains("not confirmed; pass --yes"),
        "{}",
        text(&o)
    );
    let refused = s.records("prod");
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[1].outcome, "refused");
    assert!(s.container_id("prod", "api").is_empty());

    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-prod", "--tag", &img.v1, "--yes"]);
    let h = s.health("prod");
    assert_eq!(
        (h["version"].as_str(), h["compliance_mode"].as_str()),
        (Some(img.v1.as_str()), Some("hipaa"))
    );
    let last = s.records("prod").pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("promote", "success")
    );
}

#[test]
fn prod_requires_configured_evidence_and_force_is_recorded() {
    let img = images();
    let s = Stack::with(
        "evidence",
        Opts {
            require_evidence: "\"backup-smoke\"",
            ..Opts::default()
        },
    );
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let o = s.run(&["deploy-prod", "--tag", &img.v1, "--yes"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!("a passing backup-smoke record for {}", img.v1)),
        "{}",
        text(&o)
    );
    let forced = [
        "deploy-prod",
        "--tag",
        &img.v1,
        "--yes",
        "--force",
        "--reason",
        "hotfix, smoke runs tonight",
    ];
    // The preview marks the gate OVERRIDDEN, not met.
    let mut preview = forced.to_vec();
    preview.push("--dry-run");
    let o = s.ok(&preview);
    assert!(
        stdout(&o).contains("require promotion evidence from staging: OVERRIDDEN by --force (recorded): missing a passing backup-smoke record"),
        "{}",
        text(&o)
    );
    s.ok(&forced);
    let last = s.records("prod").pop().unwrap();
    assert_eq!(last.outcome, "success");
    assert_eq!(
        last.reason,
        format!(
            "[promotion gate OVERRIDDEN by --force: missing a passing backup-smoke record for {} at {}] [forced] hotfix, smoke runs tonight",
            img.v1,
            // The gate asks for evidence of the digest prod runs.
            xtask::engine::registry::short(last.to.as_ref().unwrap().digest.as_deref().unwrap())
        )
    );
}

#[test]
fn prod_without_auto_rollback_leaves_the_failed_version_and_prints_the_command() {
    let img = images();
    let s = Stack::new("noauto");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-prod", "--tag", &img.v1, "--yes"]);
    let o = s.run(&[
        "deploy-prod",
        "--tag",
        &img.bad,
        "--yes",
        "--no-auto-rollback",
        "--force",
        "--reason",
        "rehearsal",
    ]);
    assert_eq!(exit_code(&o), 3, "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "cargo xtask rollback prod --to {} --reason",
            img.v1
        )),
        "{e}"
    );
    assert_eq!(
        s.health("prod")["version"],
        img.bad.as_str(),
        "the failed version was not left in place"
    );
    let last = s.records("prod").pop().unwrap();
    assert_eq!(
        (last.outcome.as_str(), last.to.unwrap().tag),
        ("failure", img.bad.clone())
    );
    s.ok(&["rollback", "prod", "--reason", "failed promotion"]);
    assert_eq!(s.health("prod")["version"], img.v1.as_str());
}

#[test]
fn concurrent_deploys_one_proceeds_the_other_names_the_holder() {
    let img = images();
    let s = Stack::new("lock");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    // A slow deploy (a broken version waits out its gate) holds the lock.
    let first = s
        .cmd()
        .args(["deploy-staging", "--tag", &img.bad])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = s.state.join("staging/deploy.lock");
    let start = Instant::now();
    while std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "first deploy never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let o = s.run(&["deploy-staging", "--tag", &img.v2]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the second deploy did not fail fast"
    );
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("locked by pid {}", first.id()))
            && e.contains("running deploy-staging"),
        "{e}"
    );
    let first = first.wait_with_output().unwrap();
    assert_eq!(exit_code(&first), 3, "{}", text(&first));
    let outcomes: Vec<String> = s
        .records("staging")
        .iter()
        .map(|r| r.outcome.clone())
        .collect();
    assert_eq!(outcomes, ["success", "refused", "rolled-back"]);
}

#[test]
fn kill_9_mid_gate_leaves_no_lock_and_a_rerun_converges() {
    let img = images();
    let s = Stack::new("kill");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let mut d = s
        .cmd()
        .args(["deploy-staging", "--tag", &img.bad])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the broken version answers, so the deploy is inside its gate.
    let start = Instant::now();
    loop {
        let v = reqwest::blocking::get(format!("{}/health", s.api("staging")))
            .ok()
            .and_then(|r| r.text().ok())
            .unwrap_or_default();
        if v.contains(&img.bad) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "broken version never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.kill().unwrap(); // SIGKILL
    d.wait().unwrap();
    // No stale lock: a deploy takes it at once and converges on v2.
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    let v = s.log("staging").verify().unwrap();
    assert_eq!(
        v.count, 2,
        "the killed deploy recorded nothing; the rerun recorded once"
    );
}

#[test]
fn unreachable_registry_is_refused_before_anything_changes() {
    let img = images();
    let closed = free_port();
    let s = Stack::with(
        "noreg",
        Opts {
            registry: format!("127.0.0.1:{closed}"),
            ..Opts::default()
        },
    );
    // The preview refuses as the real run does, with the same line.
    let dry = s.run(&["deploy-staging", "--tag", &img.v1, "--dry-run"]);
    let o = s.run(&["deploy-staging", "--tag", &img.v1]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert_eq!(exit_code(&dry), 5, "{}", text(&dry));
    let e = stderr(&o);
    let err: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(err.len(), 1, "{}", text(&o));
    assert!(
        err[0].contains("the tag's images in the registry not met")
            && err[0].contains(&format!("127.0.0.1:{closed}")),
        "{}",
        err[0]
    );
    assert_eq!(stderr(&dry).lines().last(), Some(err[0]), "{}", text(&dry));
    assert!(
        s.container_id("staging", "api").is_empty(),
        "something was started"
    );
    assert!(
        s.container_id("staging", "redis").is_empty(),
        "something was started"
    );
    let recs = s.records("staging");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcome, "refused");
}

#[test]
fn stopped_docker_daemon_is_a_preflight_error_with_nothing_written() {
    let s = Stack::new("nodaemon");
    let o = s
        .cmd()
        .args(["deploy-staging", "--tag", "sha-0123456789ab"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 2, "{}", text(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("docker daemon unreachable"), "{e}");
    assert!(!s.state.exists(), "preflight failure wrote state");
}

/// Long work is shown as phases on stderr: folded with `::group::` in CI, a
/// plain start line elsewhere, and one line with the outcome and duration.
/// stdout stays the task's own (one JSON document with `--format json`).
#[test]
fn progress_is_phases_on_stderr_folded_in_ci() {
    let img = images();
    let s = Stack::new("progress");
    // A stateful image that cannot be pulled: the phase that starts it fails.
    let cfg = std::fs::read_to_string(&s.config).unwrap().replacen(
        "TESTBED_REGISTRY =",
        &format!(
            "TESTBED_REDIS_IMAGE = \"127.0.0.1:{}/nope:1\", TESTBED_REGISTRY =",
            free_port()
        ),
        1,
    );
    std::fs::write(&s.config, cfg).unwrap();
    let phase = "starting redis, proxy where not running";
    let o = s
        .cmd()
        .env("CI", "true")
        .args(["--format", "json", "deploy-staging", "--tag", &img.v1])
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 1, "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("::group::{phase}\n")), "{err}");
    assert!(err.contains("::endgroup::\n"), "{err}");
    assert!(err.contains(&format!("failed: {phase} (")), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["outcome"], "failure");

    let o = s.run(&["deploy-staging", "--tag", &img.v1]);
    let err = stderr(&o);
    assert!(err.lines().any(|l| l == phase), "{err}");
    assert!(!err.contains("::group::"), "{err}");
    assert!(err.contains(&format!("failed: {phase} (")), "{err}");
}

/// A health contract the service does not meet: the gate names the check
/// that failed, on stderr and in the record, and `status` names it too.
#[test]
fn a_failing_health_check_is_named_on_stderr_in_the_record_and_by_status() {
    let img = images();
    let s = Stack::new("contract");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    // The testbed reports its mode as `compliance_mode`, never as `mode`.
    let mut cfg = std::fs::read_to_string(&s.config).unwrap();
    cfg.push_str("\n[env.staging.health]\nmode_field = \"mode\"\n");
    std::fs::write(&s.config, cfg).unwrap();
    let why = format!("{}/health: field mode missing; body {{", s.api("staging"));

    let o = s.run(&["status", "staging"]);
    assert_eq!(exit_code(&o), 8, "{}", text(&o));
    assert!(text(&o).contains("field mode missing"), "{}", text(&o));

    // v1 fails it as well, so the rollback's gate fails too: exit 4.
    let o = s.run(&["deploy-staging", "--tag", &img.v2]);
    assert_eq!(exit_code(&o), 4, "{}", text(&o));
    assert!(stderr(&o).contains(&why), "{}", text(&o));
    let recs = s.records("staging");
    let error = recs.last().unwrap().error.clone().unwrap_or_default();
    assert!(error.contains(&why), "{error}");
}
