//! `scripts/check-audit-sink.sh` against the real binary: reachable,
//! writable, and the sink head equal to the local head.

#[path = "audit_support.rs"]
mod support;

use std::process::{Command, Output};

use support::*;

fn script() -> std::path::PathBuf {
    xtask::workspace_root().join("scripts/check-audit-sink.sh")
}

fn check(fx: &Fixture) -> Output {
    Command::new("bash")
        .arg(script())
        .args(["staging", "--config"])
        .arg(&fx.config)
        .arg("--state-dir")
        .arg(&fx.state)
        .env("XTASK", env!("CARGO_BIN_EXE_xtask"))
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap()
}

fn last_stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_good_sink_passes() {
    let fx = Fixture::new(true);
    fx.fill(5);
    let o = check(&fx);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        stdout(&o).lines().last().unwrap(),
        format!(
            "check-audit-sink: staging: ok: sink {} is reachable and writable, head {} equals the local head",
            fx.sink().display(),
            fx.head()
        )
    );
}

#[test]
fn a_truncated_sink_fails_with_both_heads() {
    let fx = Fixture::new(true);
    fx.fill(5);
    let local = fx.head();
    let lines = read_lines(&fx.sink());
    std::fs::write(fx.sink(), lines[..4].concat()).unwrap();
    let o = check(&fx);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert_eq!(
        last_stderr(&o),
        format!(
            "check-audit-sink: staging: sink head {} is not the local head {local}",
            line_hash(&lines[3])
        )
    );
}

#[test]
fn an_unreachable_sink_fails() {
    let fx = Fixture::new(true);
    fx.fill(2);
    std::fs::remove_dir_all(fx.sink_dir.as_ref().unwrap()).unwrap();
    let o = check(&fx);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        last_stderr(&o),
        format!(
            "check-audit-sink: staging: sink directory {} is unreachable (not mounted?)",
            fx.sink_dir.as_ref().unwrap().display()
        )
    );
}

#[test]
fn a_read_only_sink_fails() {
    let fx = Fixture::new(true);
    fx.fill(2);
    let d = fx.sink_dir.clone().unwrap();
    let ds = d.to_str().unwrap();
    let ok = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    // CI runs as root (setup needs it); elsewhere this fails with the reason rather than passing unchecked.
    assert!(
        ok(&["--bind", ds, ds]),
        "this test needs root to bind-mount {ds} read-only"
    );
    let remounted = ok(&["-o", "remount,bind,ro", ds]);
    let o = check(&fx);
    let _ = Command::new("umount").arg(ds).status();
    assert!(remounted, "remounting read-only failed");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        last_stderr(&o),
        format!("check-audit-sink: staging: sink directory {ds} is not writable")
    );
}

#[test]
fn no_sink_configured() {
    let fx = Fixture::new(false);
    fx.fill(1);
    let o = check(&fx);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        last_stderr(&o),
        "check-audit-sink: staging: no audit_sink is configured for this environment"
    );
}

#[test]
fn the_script_is_shellcheck_clean() {
    let o = Command::new("shellcheck")
        .arg(script())
        .output()
        .expect("shellcheck is needed: run `cargo xtask setup`");
    assert!(o.status.success(), "{}", text(&o));
}
