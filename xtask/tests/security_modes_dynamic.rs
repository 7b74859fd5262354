//! `security-modes-test`, dynamic half, against real containers: the shipped
//! modes pass and leave evidence for the promotion gate; a stack started in
//! the wrong mode, or behaving like another mode, is caught by the probe
//! that the behaviour breaks; and every project a run booted is gone
//! afterwards, failures included. Needs the engines and the testbed images
//! (`common::engines`, `common::images`): a test fails, never skips, without.

mod common;
#[path = "security_modes_support.rs"]
mod support;

use std::process::{Command, Output};

use common::{exit_code, text, Stack};
use serde_json::Value;
use support::{findings, fixture, policy_in, report, row, set_overlay};

/// Runs the task on the v1 testbed image, with the real deploy config (its
/// environments are checked statically) and `stack`'s own state dir, so the
/// record lands in a temp dir.
fn modes(stack: &Stack, extra: &[&str]) -> (Output, Value) {
    let tag = &common::images().v1;
    let o = common::xtask_bin()
        .current_dir(common::root())
        .args([
            "--format",
            "json",
            "--config",
            "deployments/deploy.toml",
            "--state-dir",
        ])
        .arg(&stack.state)
        .args(["security-modes-test", "--tag", tag, "--env", "staging"])
        .args(extra)
        .env_remove("GITHUB_ACTIONS")
        .env("USER", "e2e-test")
        .output()
        .unwrap();
    let r = report(&o);
    (o, r)
}

/// Asserts that nothing of the projects the run booted is left.
fn all_torn_down(r: &Value) {
    let projects = r["projects"].as_object().unwrap();
    assert!(!projects.is_empty(), "the run booted nothing: {r}");
    for (mode, p) in projects {
        let p = p.as_str().unwrap();
        assert!(p.starts_with(&format!("smt-{mode}-")), "{p}");
        let label = format!("label=com.docker.compose.project={p}");
        for what in [&["ps", "-a"][..], &["volume", "ls"], &["network", "ls"]] {
            let o = Command::new("docker")
                .args(what)
                .args(["-q", "--filter", &label])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", text(&o));
            assert!(
                o.stdout.is_empty(),
                "{mode}: docker {what:?} still lists {p}: {}",
                common::stdout(&o)
            );
        }
        assert_eq!(
            row(r, mode, "dynamic", "teardown")["passed"],
            true,
            "{mode}"
        );
    }
}

fn failed(r: &Value, mode: &str, probe: &str, service: &str, want: &str) {
    let row = row(r, mode, "dynamic", probe);
    assert_eq!(row["passed"], false, "{mode} {probe} must fail: {row}");
    let got = findings(row, service);
    assert!(
        got.iter().any(|v| v.contains(want)),
        "{mode} {probe} on {service}: want {want:?}, got {got:?}"
    );
}

fn passed(r: &Value, mode: &str, probe: &str) {
    let row = row(r, mode, "dynamic", probe);
    assert_eq!(row["passed"], true, "{mode} {probe} must pass: {row}");
}

#[test]
fn shipped_modes_pass_against_running_containers_and_leave_evidence() {
    let stack = Stack::new("smt-pass");
    let (o, r) = modes(&stack, &[]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    assert_eq!(r["passed"], true, "{r}");
    // Only the proxy publishes: the api is probed through it (its front port
    // is API_PORT), the worker at its container's own address.
    let err = common::stderr(&o);
    assert!(
        err.contains("(api on 127.0.0.1:")
            && err.contains("worker on port 8081 of its container's address"),
        "{err}"
    );
    let probes = [
        (
            "dev",
            &["boot", "healthy", "reports-mode", "api-open", "debug-open"][..],
        ),
        (
            "standard",
            &[
                "boot",
                "healthy",
                "reports-mode",
                "api-requires-auth",
                "api-accepts-token",
                "debug-hidden",
            ],
        ),
        (
            "hipaa",
            &[
                "boot",
                "healthy",
                "reports-mode",
                "api-requires-auth",
                "api-accepts-token",
                "debug-hidden",
                "audit-sink-writable",
            ],
        ),
    ];
    for (mode, list) in probes {
        for p in list {
            passed(&r, mode, p);
        }
        let secs = r["timings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["mode"] == mode && t["phase"] == "dynamic");
        eprintln!(
            "{mode}: dynamic {:.1}s",
            secs.unwrap()["secs"].as_f64().unwrap()
        );
    }
    all_torn_down(&r);
    let tag = &common::images().v1;
    assert!(
        stack
            .history("staging")
            .has_evidence("security-modes-test", tag),
        "no passing record for {tag}"
    );
    let rec = stack.records("staging").into_iter().last().unwrap();
    assert_eq!(
        (rec.action.as_str(), rec.outcome.as_str()),
        ("security-modes-test", "success")
    );
}

#[test]
fn a_stack_started_in_the_wrong_mode_is_caught() {
    let stack = Stack::new("smt-wrong");
    let token = stack.dir.path().join("wrong-token");
    std::fs::write(&token, "not-the-token\n").unwrap();
    let policy = policy_in(stack.dir.path(), |t| {
        set_overlay(t, "hipaa", &fixture("wrong-mode.yml"));
        let boot = t["stack"]["testbed"]["boot"].as_table_mut().unwrap();
        boot.insert("token_file".into(), token.display().to_string().into());
    });
    let (o, r) = modes(
        &stack,
        &["--mode", "hipaa", "--policy", &policy.display().to_string()],
    );
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    for svc in ["api", "worker"] {
        failed(
            &r,
            "hipaa",
            "reports-mode",
            svc,
            "compliance_mode is \"standard\", want \"hipaa\"",
        );
    }
    // A token the stack does not hold is refused: the probe with the token fails.
    failed(
        &r,
        "hipaa",
        "api-accepts-token",
        "api",
        "GET /api/jobs with the token answered 401, want 200",
    );
    // What a standard stack does hold still passes: the failures are the mode's, not noise.
    passed(&r, "hipaa", "api-requires-auth");
    passed(&r, "hipaa", "debug-hidden");
    all_torn_down(&r);
    assert!(
        stack.records("staging").is_empty(),
        "a --mode run records nothing"
    );
}

#[test]
fn dev_behaviour_outside_dev_and_lockdown_inside_dev_are_caught() {
    let stack = Stack::new("smt-dev");
    let policy = policy_in(stack.dir.path(), |t| {
        set_overlay(t, "standard", &fixture("dev-as-standard.yml"));
        let standard = root_overlay("standard.yml");
        set_overlay(t, "dev", &standard);
        support::testbed_only(t);
        let modes = t["mode"].as_array_mut().unwrap();
        modes.retain(|m| m["name"].as_str() != Some("hipaa"));
    });
    let (o, r) = modes(&stack, &["--policy", &policy.display().to_string()]);
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    failed(
        &r,
        "standard",
        "api-requires-auth",
        "api",
        "GET /api/jobs without a token answered 200, want 401",
    );
    for svc in ["api", "worker"] {
        failed(
            &r,
            "standard",
            "debug-hidden",
            svc,
            "GET /debug/config without a token answered 200, want 404",
        );
    }
    failed(&r, "dev", "api-open", "api", "answered 401, want 200");
    failed(&r, "dev", "debug-open", "api", "answered 404, want 200");
    all_torn_down(&r);
    let rec = stack
        .records("staging")
        .into_iter()
        .last()
        .expect("a failing full run records its failure");
    assert_eq!(rec.outcome, "failure");
    assert!(!stack
        .history("staging")
        .has_evidence("security-modes-test", &common::images().v1));
}

fn root_overlay(name: &str) -> String {
    common::root()
        .join("deployments/modes")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn an_unwritable_audit_sink_is_caught() {
    let stack = Stack::new("smt-sink");
    let policy = policy_in(stack.dir.path(), |t| {
        set_overlay(t, "hipaa", &fixture("unwritable-audit-sink.yml"))
    });
    let (o, r) = modes(
        &stack,
        &["--mode", "hipaa", "--policy", &policy.display().to_string()],
    );
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    for svc in ["api", "worker"] {
        failed(
            &r,
            "hipaa",
            "audit-sink-writable",
            svc,
            "audit_sink is \"unwritable\", want \"ok\"",
        );
        failed(
            &r,
            "hipaa",
            "healthy",
            svc,
            "status is \"failing\", want \"ok\"",
        );
    }
    passed(&r, "hipaa", "reports-mode");
    let sink = row(&r, "hipaa", "static", "audit-sink");
    assert!(
        findings(sink, "api")[0].contains("AUDIT_SINK_DIR=/var/audit is not on a volume or tmpfs"),
        "{sink}"
    );
    all_torn_down(&r);
}

/// Ctrl-C while a mode's project is up: the run stops, says so, and takes
/// down what it booted (containers, volumes, networks).
#[test]
fn an_interrupted_run_takes_down_the_project_it_booted() {
    let tag = &common::images().v1;
    let stack = common::Stack::new("smt-int");
    let mut child = common::xtask_bin()
        .current_dir(common::root())
        .args([
            "--format",
            "json",
            "--config",
            "deployments/deploy.toml",
            "--state-dir",
        ])
        .arg(&stack.state)
        .args([
            "security-modes-test",
            "--tag",
            tag,
            "--env",
            "staging",
            "--mode",
            "standard",
        ])
        .env_remove("GITHUB_ACTIONS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("smt-standard-{}-", child.id());
    let start = std::time::Instant::now();
    let project = loop {
        let o = Command::new("docker")
            .args([
                "ps",
                "--format",
                "{{.Label \"com.docker.compose.project\"}}",
            ])
            .output()
            .unwrap();
        if let Some(p) = common::stdout(&o).lines().find(|l| l.starts_with(&prefix)) {
            break p.to_string();
        }
        assert!(
            start.elapsed().as_secs() < 120 && child.try_wait().unwrap().is_none(),
            "the run never booted {prefix}*"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["outcome"], "interrupted", "{doc}");
    let label = format!("label=com.docker.compose.project={project}");
    for what in [&["ps", "-a"][..], &["volume", "ls"], &["network", "ls"]] {
        let l = Command::new("docker")
            .args(what)
            .args(["-q", "--filter", &label])
            .output()
            .unwrap();
        assert!(l.stdout.is_empty(), "docker {what:?} still lists {project}");
    }
}
