//! `security-modes-test`, static half, rule by rule: a deliberately insecure
//! overlay (`fixtures/compose/insecure-overlay.yml`) layered on the testbed
//! and checked as `hipaa` breaks every rule of the shipped policy once, and
//! each rule is caught by its own test, naming the service (and, for the
//! profile-gated service, its profile and file). Needs the docker CLI and
//! the compose v2 plugin (`cargo xtask setup`, which the tests run).

mod common;
#[path = "security_modes_support.rs"]
mod support;

use std::process::Output;
use std::sync::OnceLock;

use common::{exit_code, root, text, xtask_bin};
use serde_json::Value;
use support::{compose_fixture, findings, policy_in, report, row, set_overlay};

fn run(args: &[&str]) -> Output {
    common::engines();
    xtask_bin().args(args).current_dir(root()).output().unwrap()
}

/// One run of the insecure overlay as `hipaa`, shared by the per-rule tests.
fn insecure() -> &'static (Output, Value) {
    static RUN: OnceLock<(Output, Value)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy_in(dir.path(), |t| {
            set_overlay(t, "hipaa", &compose_fixture("insecure-overlay.yml"))
        });
        let p = policy.display().to_string();
        let o = run(&[
            "--format",
            "json",
            "security-modes-test",
            "--static-only",
            "--mode",
            "hipaa",
            "--policy",
            &p,
        ]);
        assert_eq!(
            exit_code(&o),
            6,
            "an insecure overlay must fail with exit 6:\n{}",
            text(&o)
        );
        let r = report(&o);
        (o, r)
    })
}

/// Asserts that `rule` failed for `service` with a value containing `want`.
fn caught(rule: &str, service: &str, want: &str) {
    let (_, r) = insecure();
    let row = row(r, "hipaa", "static", rule);
    assert_eq!(row["passed"], false, "{rule} must fail: {row}");
    let got = findings(row, service);
    assert!(
        got.iter().any(|v| v.contains(want)),
        "{rule} on {service}: want a finding with {want:?}, got {got:?}"
    );
}

#[test]
fn insecure_proxy_admin_port() {
    let (_, r) = insecure();
    let row = row(r, "hipaa", "static", "proxy-admin-loopback");
    assert_eq!(
        findings(row, "proxy"),
        ["admin port 2019 is published on every interface (no host ip, host port 18998): publish it on 127.0.0.1 only"]
    );
    // The base's own binding, 127.0.0.1, is not a finding; nor is any other service.
    assert_eq!(row["findings"].as_array().unwrap().len(), 1, "{row}");
}

#[test]
fn insecure_app_service_publishes_a_port() {
    caught(
        "only-proxy-publishes",
        "api",
        "port 0.0.0.0:18999->8080/tcp is published: only the proxy publishes ports",
    );
}

#[test]
fn insecure_privileged() {
    caught("no-privileged", "api", "privileged: true");
}

#[test]
fn insecure_docker_socket() {
    caught(
        "no-docker-socket",
        "worker",
        "mounts /var/run/docker.sock at /var/run/docker.sock",
    );
}

#[test]
fn insecure_host_network() {
    caught("no-host-network", "sidecar", "network_mode: host");
}

#[test]
fn insecure_host_pid() {
    caught("no-host-pid", "worker", "pid: host");
}

#[test]
fn insecure_host_ipc_and_uts() {
    caught("no-host-ipc", "worker", "ipc: host");
    caught("no-host-uts", "sidecar", "uts: host");
}

#[test]
fn insecure_host_mount() {
    caught(
        "no-host-mounts",
        "worker",
        "mounts host /proc at /host/proc (read-only)",
    );
}

#[test]
fn insecure_host_mounts_below_dev_and_of_lib_modules() {
    caught(
        "no-host-mounts",
        "worker",
        "mounts host /dev/bus/usb at /dev/bus/usb, which is under /dev",
    );
    caught(
        "no-host-mounts",
        "worker",
        "mounts host /lib/modules at /lib/modules (read-only)",
    );
}

#[test]
fn insecure_unconfined_security_opt() {
    caught(
        "no-unconfined",
        "sidecar",
        "security_opt: apparmor=unconfined (no AppArmor profile)",
    );
    caught(
        "no-unconfined",
        "sidecar",
        "security_opt: systempaths=unconfined (the host's masked /proc and /sys paths exposed)",
    );
}

#[test]
fn insecure_devices() {
    caught("no-devices", "sidecar", "device /dev/fuse:/dev/fuse");
}

#[test]
fn insecure_added_capability() {
    caught("no-added-capabilities", "api", "cap_add: SYS_ADMIN");
}

#[test]
fn insecure_password_in_a_url_is_named_not_shown() {
    caught(
        "no-url-credentials",
        "api",
        "DATABASE_URL holds a URL with a password written in the file (postgres://api:***@db)",
    );
    let (o, _) = insecure();
    assert!(!text(o).contains("hunter3"), "{}", text(o));
}

#[test]
fn insecure_profile_gated_service_is_checked_and_named() {
    // `debug` exists only behind the `debug` profile of the overlay.
    let (o, r) = insecure();
    let row = row(r, "hipaa", "static", "no-privileged");
    let debug: Vec<&Value> = row["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["service"] == "debug")
        .collect();
    assert_eq!(debug.len(), 1, "{row}");
    assert_eq!(debug[0]["value"], "privileged: true");
    assert_eq!(debug[0]["profiles"], serde_json::json!(["debug"]));
    assert!(
        debug[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("fixtures/compose/insecure-overlay.yml"),
        "{row}"
    );
    let err = common::stderr(o);
    assert!(
        err.contains("hipaa/testbed/debug (profile debug) no-privileged: privileged: true"),
        "{err}"
    );
}

#[test]
fn insecure_public_port() {
    caught(
        "loopback-ports",
        "api",
        "port 0.0.0.0:18999->8080/tcp is published beyond loopback",
    );
    // The base's loopback binding of the same service is not a finding.
    let (_, r) = insecure();
    assert_eq!(
        findings(row(r, "hipaa", "static", "loopback-ports"), "api").len(),
        1
    );
}

#[test]
fn insecure_inline_secret_is_named_not_shown() {
    caught("no-inline-secrets", "api", "DB_PASSWORD is set inline");
    let (o, _) = insecure();
    assert!(
        !text(o).contains("hunter2"),
        "the secret's value leaked:\n{}",
        text(o)
    );
    // API_TOKEN_FILE points at a file: not a finding.
    let (_, r) = insecure();
    assert!(
        !findings(row(r, "hipaa", "static", "no-inline-secrets"), "api")
            .iter()
            .any(|v| v.contains("API_TOKEN"))
    );
}

#[test]
fn insecure_floating_image() {
    caught(
        "pinned-images",
        "sidecar",
        "busybox:latest floats on latest",
    );
}

#[test]
fn insecure_wrong_mode_variable() {
    caught(
        "mode-set",
        "api",
        "COMPLIANCE_MODE is \"standard\", want \"hipaa\"",
    );
}

#[test]
fn insecure_writable_root() {
    caught("read-only", "api", "read_only is unset");
}

#[test]
fn insecure_new_privileges() {
    caught("no-new-privileges", "api", "lacks no-new-privileges:true");
}

#[test]
fn insecure_capabilities() {
    caught("cap-drop-all", "api", "cap_drop is [], want [\"ALL\"]");
}

#[test]
fn insecure_healthcheck() {
    caught("healthcheck", "api", "healthcheck is disabled");
}

#[test]
fn insecure_restart() {
    caught("restart-policy", "api", "restart is \"no\"");
}

#[test]
fn insecure_audit_sink() {
    caught("audit-sink", "api", "AUDIT_SINK_DIR is empty");
}

#[test]
fn insecure_overlay_fails_every_rule_and_the_error_names_them() {
    let (o, r) = insecure();
    let failed: Vec<&str> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["passed"] == false)
        .map(|x| x["check"].as_str().unwrap())
        .collect();
    let policy: toml::Table =
        std::fs::read_to_string(root().join("deployments/security-modes.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let hipaa = policy["mode"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some("hipaa"))
        .unwrap();
    let every: Vec<&str> = ["rules", "app_rules"]
        .iter()
        .flat_map(|k| {
            hipaa[*k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
        })
        .collect();
    assert_eq!(
        failed, every,
        "every rule of the shipped hipaa mode fails, render passes"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("hipaa/testbed/api no-privileged: privileged: true"),
        "{err}"
    );
    assert_eq!(r["passed"], false);
}

#[test]
fn insecure_merged_service_names_the_base_and_the_overlay() {
    // `api` is defined by the testbed's base file and merged with the
    // overlay, which set `privileged`: both definitions are named.
    let (_, r) = insecure();
    let row = row(r, "hipaa", "static", "no-privileged");
    let api = row["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["service"] == "api")
        .unwrap_or_else(|| panic!("{row}"));
    assert_eq!(
        api["file"], "deployments/testbed/docker-compose.yml",
        "{api}"
    );
    let base =
        std::fs::read_to_string(root().join("deployments/testbed/docker-compose.yml")).unwrap();
    let line = base.lines().position(|l| l == "  api:").unwrap() + 1;
    assert_eq!(api["line"], line, "the line of `api:` in the base");
    assert_eq!(
        api["also"],
        serde_json::json!(["xtask/tests/fixtures/compose/insecure-overlay.yml:9"]),
        "{api}"
    );
}
