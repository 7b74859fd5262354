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
        "no-host-mounts",
        "no-devices",
        "no-added-capabilities",
        "no-host-network",
        "no-host-pid",
        "no-host-ipc",
        "no-host-uts",
        "loopback-ports",
        "no-inline-secrets",
        "no-url-credentials",
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
        "render hipaa on testbed, every profile: ",
        "--profile '*' config --format json",
        "and again with --no-interpolate",
        "and the images the boot needs for sha-0123456789ab",
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
