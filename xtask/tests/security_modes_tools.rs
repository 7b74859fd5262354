//! `security-modes-test` and its tools: `--static-only` needs no Docker
//! daemon, a missing compose binary is exit 2 with the fix, `--dry-run`
//! runs no docker at all, and an unknown mode lists the valid ones. Each
//! runs the real binary with a PATH holding only what the case allows.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{exit_code, root, text, xtask_bin};

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
