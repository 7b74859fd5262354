//! `security-modes-test --compose FILE`: compose files written elsewhere,
//! checked as they are. Each test runs one fixture of
//! `xtask/tests/fixtures/compose/` (written for these tests) through the real
//! binary and the real `docker compose`, and asserts the exact findings of
//! the shipped policy's `standard` rules: every one expected, none other. So
//! a rule that stops firing fails its test, and so does a false positive
//! coming back. Every run also proves that `--format json` prints exactly
//! one JSON document. Needs the docker CLI and the compose v2 plugin
//! (`cargo xtask setup`, which the tests run first), no daemon.

mod common;
#[path = "security_modes_support.rs"]
mod support;

use std::process::Output;

use common::{exit_code, root, text, xtask_bin};
use serde_json::Value;
use support::{compose_fixture, f, found, one_document, Found};

/// Runs the direct mode on fixture `name` as `standard`; the output and the
/// report, which must be stdout's one and only JSON document.
fn check(name: &str, extra: &[&str]) -> (Output, Value) {
    common::engines();
    let o = xtask_bin()
        .args([
            "--format",
            "json",
            "security-modes-test",
            "--mode",
            "standard",
        ])
        .args(["--compose", &compose_fixture(name)])
        .args(extra)
        .current_dir(root())
        .output()
        .unwrap();
    let r = one_document(&o);
    (o, r)
}

/// Runs fixture `name` and asserts exactly `want` (exit 6), or a pass (exit 0) for none.
fn expect(name: &str, want: Vec<Found>) -> (Output, Value) {
    let (o, r) = check(name, &[]);
    let mut want = want;
    want.sort();
    assert_eq!(found(&r), want, "findings of {name}:\n{}", text(&o));
    let code = if want.is_empty() { 0 } else { 6 };
    assert_eq!(exit_code(&o), code, "{}", text(&o));
    assert_eq!(r["passed"], want.is_empty());
    (o, r)
}

#[test]
fn a_hardened_file_passes_every_mode_without_a_deploy_config() {
    // From an empty directory, with a deploy config that does not exist:
    // the direct mode needs neither.
    common::engines();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    std::fs::copy(compose_fixture("clean.yml"), &file).unwrap();
    let o = xtask_bin()
        .args([
            "--config",
            "/nonexistent/deploy.toml",
            "security-modes-test",
        ])
        .args(["--compose", "compose.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    let out = common::stdout(&o);
    for mode in ["dev", "standard", "hipaa"] {
        assert!(
            out.contains(&format!("{mode:8}  static   compose.yml  no-host-mounts")),
            "{mode}:\n{out}"
        );
    }
    // No app services were named, so no app rule ran.
    assert!(
        !out.contains("mode-set") && !out.contains("read-only"),
        "{out}"
    );
    assert!(out.ends_with("PASS: 48 checks, 0 failed\n"), "{out}");
}

#[test]
fn profile_gated_services_are_checked_and_named_with_their_profiles() {
    let (o, r) = expect(
        "profiles.yml",
        vec![
            f("no-privileged", "debug-shell", &["debug"], "privileged: true"),
            f(
                "loopback-ports",
                "seed",
                &["ops", "setup"],
                "port 0.0.0.0:9000->9000/tcp is published beyond loopback",
            ),
            f(
                "no-inline-secrets",
                "seed",
                &["ops", "setup"],
                "USER_PASSWORD is set inline (a 13-character value, redacted); use USER_PASSWORD_FILE with a secret",
            ),
        ],
    );
    let row = &r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["check"] == "no-privileged")
        .unwrap()["findings"][0];
    assert!(
        row["file"]
            .as_str()
            .unwrap()
            .ends_with("compose/profiles.yml"),
        "{row}"
    );
    assert_eq!(row["line"], 13, "the line of `debug-shell:`");
    assert!(!text(&o).contains("changeme-seed"), "{}", text(&o));
    let err = common::stderr(&o);
    assert!(
        err.contains("/debug-shell (profile debug) no-privileged: privileged: true"),
        "{err}"
    );
}

#[test]
fn anchors_merge_keys_and_x_fields_are_resolved() {
    expect(
        "anchors.yml",
        vec![
            f("no-added-capabilities", "api", &[], "cap_add: SYS_ADMIN"),
            f("no-added-capabilities", "api", &[], "cap_add: NET_ADMIN"),
            f(
                "no-inline-secrets",
                "api",
                &[],
                "API_KEY is set inline (a 20-character value, redacted); use API_KEY_FILE with a secret",
            ),
        ],
    );
}

#[test]
fn extends_from_another_file_is_resolved() {
    expect(
        "extends.yml",
        vec![
            f("no-host-pid", "agent", &[], "pid: host"),
            f("no-host-ipc", "agent", &[], "ipc: host"),
            f("no-host-uts", "agent", &[], "uts: host"),
        ],
    );
}

#[test]
fn dotenv_values_are_interpolated_but_are_not_inline_secrets() {
    expect(
        "dotenv/compose.yml",
        vec![
            f(
                "pinned-images",
                "app",
                &[],
                "registry.example/app:latest floats on latest",
            ),
            f(
                "loopback-ports",
                "app",
                &[],
                "port 0.0.0.0:8443->8443/tcp is published beyond loopback",
            ),
        ],
    );
}

#[test]
fn rule_no_url_credentials() {
    let (o, _) = expect(
        "url-credentials.yml",
        vec![
            f(
                "no-url-credentials",
                "app",
                &[],
                "DATABASE_URL holds a URL with a password written in the file (postgres://app:***@db:5432)",
            ),
            f(
                "no-url-credentials",
                "app",
                &[],
                "command holds a URL with a password written in the file (amqp://guest:***@mq:5672)",
            ),
        ],
    );
    assert!(
        !text(&o).contains("url-secret"),
        "a password leaked:\n{}",
        text(&o)
    );
}

#[test]
fn rule_no_host_mounts() {
    expect(
        "host-mounts.yml",
        vec![
            f(
                "no-host-mounts",
                "node-exporter",
                &[],
                "mounts host / at /host (read-only)",
            ),
            f(
                "no-host-mounts",
                "node-exporter",
                &[],
                "mounts host /proc at /host/proc (read-only)",
            ),
            f(
                "no-host-mounts",
                "node-exporter",
                &[],
                "mounts host /sys at /host/sys (read-only)",
            ),
            f(
                "no-host-mounts",
                "inspector",
                &[],
                "mounts host /var/lib/docker at /var/lib/docker (read-only)",
            ),
            f(
                "no-docker-socket",
                "inspector",
                &[],
                "mounts /var/run/docker.sock at /var/run/docker.sock",
            ),
        ],
    );
}

#[test]
fn rule_no_devices() {
    expect(
        "devices.yml",
        vec![
            f("no-devices", "vpn", &[], "device /dev/net/tun:/dev/net/tun"),
            f("no-devices", "fuse", &[], "device /dev/fuse:/dev/fuse"),
            f(
                "no-devices",
                "fuse",
                &[],
                "device_cgroup_rules: c 10:229 rwm",
            ),
        ],
    );
}

#[test]
fn rule_no_added_capabilities() {
    expect(
        "capabilities.yml",
        vec![
            f(
                "no-added-capabilities",
                "everything",
                &[],
                "cap_add: ALL (every capability)",
            ),
            f("no-added-capabilities", "admin", &[], "cap_add: SYS_ADMIN"),
            f("no-added-capabilities", "net", &[], "cap_add: NET_ADMIN"),
        ],
    );
}

#[test]
fn rule_no_host_namespaces() {
    expect(
        "namespaces.yml",
        vec![
            f("no-host-network", "net", &[], "network_mode: host"),
            f("no-host-pid", "pid", &[], "pid: host"),
            f("no-host-ipc", "ipc", &[], "ipc: host"),
            f("no-host-uts", "uts", &[], "uts: host"),
        ],
    );
}

#[test]
fn rule_no_inline_secrets_on_name_segments() {
    let (o, _) = expect(
        "secret-names.yml",
        vec![
            f(
                "no-inline-secrets",
                "app",
                &[],
                "SIGNING_KEY is set inline (a 16-character value, redacted); use SIGNING_KEY_FILE with a secret",
            ),
            f(
                "no-inline-secrets",
                "app",
                &[],
                "KEY_MATERIAL is set inline (a 6-character value, redacted); use KEY_MATERIAL_FILE with a secret",
            ),
            f(
                "no-inline-secrets",
                "app",
                &[],
                "JWT_SECRET is set inline (a default written in the file, 8 characters, redacted); use JWT_SECRET_FILE with a secret",
            ),
        ],
    );
    for leaked in ["3f9a0c77e1d24b58", "abc123", "changeme"] {
        assert!(!text(&o).contains(leaked), "{leaked} leaked:\n{}", text(&o));
    }
}
