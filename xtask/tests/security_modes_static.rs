//! `security-modes-test`, static half: the shipped modes pass, a deliberately
//! insecure overlay is caught rule by rule, `--static-only` needs no Docker
//! daemon, a missing compose binary is exit 2, and `--dry-run` runs no docker
//! at all. These need the docker CLI and the compose v2 plugin (installed by
//! `cargo xtask setup`, which the tests run), never a running container.

mod common;
#[path = "security_modes_support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

use common::{exit_code, root, text, xtask_bin};
use serde_json::Value;
use support::{findings, fixture, policy_in, report, row, row_of, set_overlay};

fn run(args: &[&str]) -> Output {
    common::engines();
    xtask_bin().args(args).current_dir(root()).output().unwrap()
}

#[test]
fn shipped_modes_pass_static_checks() {
    let o = run(&[
        "--format",
        "json",
        "security-modes-test",
        "--static-only",
        "--tag",
        "sha-0123456789ab",
    ]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["passed"], true, "{r}");
    let rules = [
        "render",
        "no-privileged",
        "no-docker-socket",
        "no-host-network",
        "no-host-pid",
        "loopback-ports",
        "no-inline-secrets",
        "pinned-images",
        "mode-set",
    ];
    for mode in ["dev", "standard", "hipaa"] {
        for rule in rules {
            assert_eq!(
                row(&r, mode, "static", rule)["passed"],
                true,
                "{mode} {rule}"
            );
        }
    }
    for rule in [
        "read-only",
        "no-new-privileges",
        "cap-drop-all",
        "healthcheck",
        "restart-policy",
        "audit-sink",
    ] {
        assert_eq!(
            row(&r, "hipaa", "static", rule)["passed"],
            true,
            "hipaa {rule}"
        );
    }
    assert!(
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["phase"] == "static"),
        "static only: {r}"
    );
    // The real environments, as deploy.toml deploys them, each in its own mode only.
    let all_hipaa = [
        &rules[..],
        &[
            "read-only",
            "no-new-privileges",
            "cap-drop-all",
            "healthcheck",
            "restart-policy",
            "audit-sink",
        ],
    ]
    .concat();
    for rule in &all_hipaa {
        assert_eq!(
            row_of(&r, "prod", "hipaa", "static", rule)["passed"],
            true,
            "prod {rule}"
        );
    }
    for rule in rules {
        assert_eq!(
            row_of(&r, "staging", "standard", "static", rule)["passed"],
            true,
            "staging {rule}"
        );
    }
    let elsewhere = |stack: &str, mode: &str| {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["stack"] == stack && x["mode"] == mode)
    };
    assert!(
        !elsewhere("prod", "dev")
            && !elsewhere("prod", "standard")
            && !elsewhere("staging", "hipaa")
    );
}

#[test]
fn env_stacks_are_rendered_from_the_deploy_config() {
    // The testbed's deploy config: the same environments on the testbed's
    // compose file. The shipped policy allows its locally built Redis for the
    // env stacks (the demo and rehearsals point them at the testbed), so the
    // run passes; with that entry taken out of one stack's allow-list, that
    // stack (and only it) is caught, naming the image.
    let state = tempfile::tempdir().unwrap();
    let s = state.path().display().to_string();
    let args = |policy: Option<&str>| {
        let mut a = vec![
            "--format".to_string(),
            "json".into(),
            "--config".into(),
            "deployments/testbed/deploy.toml".into(),
            "--state-dir".into(),
            s.clone(),
            "security-modes-test".into(),
            "--static-only".into(),
            "--tag".into(),
            "sha-0123456789ab".into(),
        ];
        if let Some(p) = policy {
            a.extend(["--policy".to_string(), p.to_string()]);
        }
        a
    };
    let shipped = args(None);
    let o = run(&shipped.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    for (stack, mode) in [("staging", "standard"), ("prod", "hipaa")] {
        assert!(common::stderr(&o).contains(&format!(
            "render {stack} as deploy does (deploy environment {stack}, which runs {mode})"
        )));
    }

    let dir = tempfile::tempdir().unwrap();
    let policy = policy_in(dir.path(), |t| {
        let list = t["stack"]["staging"]["unpinned_images"]
            .as_array_mut()
            .unwrap();
        list.retain(|v| v.as_str() != Some("fetchml/testbed-redis:local"));
    });
    let edited = args(Some(&policy.display().to_string()));
    let o = run(&edited.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    let r = report(&o);
    let pinned = row_of(&r, "staging", "standard", "static", "pinned-images");
    assert_eq!(
        findings(pinned, "redis"),
        ["fetchml/testbed-redis:local: tag `local` is neither sha- nor a digest"]
    );
    assert_eq!(
        row_of(&r, "prod", "hipaa", "static", "pinned-images")["passed"],
        true
    );
}

/// One run of the insecure overlay as `hipaa`, shared by the per-rule tests.
fn insecure() -> &'static (Output, Value) {
    static RUN: OnceLock<(Output, Value)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy_in(dir.path(), |t| {
            set_overlay(t, "hipaa", &fixture("insecure.yml"))
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
fn any_base_file_and_public_port_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let add_stack = |allow: &[&str]| {
        let allow: Vec<toml::Value> = allow
            .iter()
            .map(|a| toml::Value::String(a.to_string()))
            .collect();
        move |t: &mut toml::Table| {
            let mut s = toml::Table::new();
            s.insert(
                "compose_files".into(),
                toml::Value::Array(vec![fixture("public-base.yml").into()]),
            );
            s.insert(
                "app_services".into(),
                toml::Value::Array(vec!["api".into(), "worker".into()]),
            );
            s.insert("public_ports".into(), toml::Value::Array(allow));
            t["stack"]
                .as_table_mut()
                .unwrap()
                .insert("public".into(), s.into());
        }
    };
    let p = policy_in(dir.path(), add_stack(&[])).display().to_string();
    let o = run(&[
        "--format",
        "json",
        "security-modes-test",
        "--static-only",
        "--mode",
        "standard",
        "--policy",
        &p,
    ]);
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    let r = report(&o);
    let bad: Vec<&Value> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["passed"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "only the public port fails: {bad:?}");
    assert_eq!(bad[0]["stack"], "public");
    assert_eq!(
        findings(bad[0], "api"),
        ["port 0.0.0.0:8443->8443/tcp is published beyond loopback"]
    );

    let p = policy_in(dir.path(), add_stack(&["api:8443"]))
        .display()
        .to_string();
    let o = run(&[
        "--format",
        "json",
        "security-modes-test",
        "--static-only",
        "--mode",
        "standard",
        "--policy",
        &p,
    ]);
    assert_eq!(exit_code(&o), 0, "allow-listed:\n{}", text(&o));
}

#[test]
fn a_broken_overlay_fails_its_render_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = policy_in(dir.path(), |t| {
        set_overlay(t, "dev", "/nonexistent/dev.yml")
    })
    .display()
    .to_string();
    let o = run(&[
        "--format",
        "json",
        "security-modes-test",
        "--static-only",
        "--policy",
        &p,
    ]);
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    let r = report(&o);
    let render = row(&r, "dev", "static", "render");
    assert_eq!(render["passed"], false);
    assert!(findings(render, "-")[0].contains("nonexistent"), "{render}");
    assert_eq!(row(&r, "standard", "static", "render")["passed"], true);
}

/// A directory holding only the given programs (symlinks), for PATH.
fn path_with(dir: &Path, programs: &[&str]) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for p in programs {
        let real = which::which(p)
            .unwrap_or_else(|_| panic!("{p} is needed for this test; run `cargo xtask setup`"));
        std::os::unix::fs::symlink(real, bin.join(p)).unwrap();
    }
    bin.display().to_string()
}

#[test]
fn static_only_works_without_a_docker_daemon() {
    common::engines();
    let dir = tempfile::tempdir().unwrap();
    let path = path_with(dir.path(), &["docker"]);
    let nowhere = format!("unix://{}/no-daemon.sock", dir.path().display());
    let o = xtask_bin()
        .args([
            "security-modes-test",
            "--static-only",
            "--tag",
            "sha-0123456789ab",
        ])
        .current_dir(root())
        .env("PATH", &path)
        .env("DOCKER_HOST", &nowhere)
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    let out = common::stdout(&o);
    assert!(
        out.contains("PASS: ") && out.contains(" checks, 0 failed"),
        "{}",
        text(&o)
    );

    // The same machine without --static-only: the daemon is missing, exit 2, and it says so.
    let o = xtask_bin()
        .args([
            "security-modes-test",
            "--mode",
            "dev",
            "--tag",
            "sha-0123456789ab",
        ])
        .current_dir(root())
        .env("PATH", &path)
        .env("DOCKER_HOST", &nowhere)
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 2, "{}", text(&o));
    let err = common::stderr(&o);
    assert!(
        err.contains("docker daemon unreachable") && err.contains("--static-only"),
        "{err}"
    );
}

#[test]
fn without_compose_it_is_exit_2_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_with(dir.path(), &[]);
    let o = xtask_bin()
        .args([
            "security-modes-test",
            "--static-only",
            "--tag",
            "sha-0123456789ab",
        ])
        .current_dir(root())
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 2, "{}", text(&o));
    let err = common::stderr(&o);
    assert!(err.contains("preflight failed: docker not found"), "{err}");
    assert!(err.contains("cargo xtask setup"), "{err}");
}

#[test]
fn dry_run_runs_no_docker_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let marker = dir.path().join("docker-was-run");
    let fake = bin.join("docker");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    let o = xtask_bin()
        .args([
            "--dry-run",
            "--config",
            "deployments/testbed/deploy.toml",
            "--state-dir",
        ])
        .arg(&state)
        .args([
            "security-modes-test",
            "--tag",
            "sha-0123456789ab",
            "--env",
            "staging",
        ])
        .current_dir(root())
        .env("PATH", bin.display().to_string())
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    assert!(!marker.exists(), "a dry run ran docker");
    assert!(!state.exists(), "a dry run wrote state");
    let out = common::stdout(&o);
    for want in [
        "plan: security-modes-test (env staging)",
        "render hipaa on testbed: ",
        "config --format json",
        "up -d --no-build",
        "down -v --remove-orphans",
        "finally, on every outcome: append `security-modes-test | <outcome> | from=- | to=sha-0123456789ab",
        "dry run: nothing was changed",
    ] {
        assert!(out.contains(want), "dry run lacks {want:?}:\n{out}");
    }
}

#[test]
fn unknown_mode_lists_the_valid_ones() {
    let o = xtask_bin()
        .args([
            "security-modes-test",
            "--static-only",
            "--mode",
            "lax",
            "--tag",
            "sha-0123456789ab",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 1, "{}", text(&o));
    assert!(
        common::stderr(&o).contains("unknown mode `lax`: the policy defines dev, standard, hipaa"),
        "{}",
        text(&o)
    );
}
