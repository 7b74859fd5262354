//! The deploy lock and its maintenance hold, without engines: the library
//! (`xtask::lock`) and `cargo xtask lock status|acquire|release` on the
//! testbed config with a temporary state directory. The end-to-end proof
//! against a real deploy is in `lock_e2e.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use xtask::exit::{code_of, Code};
use xtask::lock::{self, Hold, Running};

fn hold(message: &str) -> Hold {
    Hold {
        message: message.into(),
        actor: "alice (USER)".into(),
        host: "ops-1".into(),
        since: "2024-01-15T14:30:00.123456Z".into(),
    }
}

#[test]
fn second_taker_is_refused_with_holder_and_first_release_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("staging/deploy.lock");
    let g = lock::acquire(&p, "staging", "deploy-staging", Duration::ZERO).unwrap();
    // Looked up in the kernel's table, without touching the lock.
    match lock::running(&p) {
        Running::Held { pid, holder } => {
            assert_eq!(pid, std::process::id());
            assert!(holder.ends_with("running deploy-staging"), "{holder}");
        }
        other => panic!("{other:?}"),
    }
    let e = lock::acquire(&p, "staging", "rollback", Duration::ZERO).unwrap_err();
    assert_eq!(code_of(&e), Code::Refused);
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert!(msg.contains("running deploy-staging"), "{msg}");
    drop(g);
    assert_eq!(lock::running(&p), Running::Free);
    lock::acquire(&p, "staging", "rollback", Duration::ZERO).unwrap();
}

#[test]
fn a_hold_refuses_deploys_names_holder_and_message_and_outlives_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("staging/deploy.lock");
    {
        let _g = lock::acquire(&p, "staging", "lock acquire", Duration::ZERO).unwrap();
        lock::write_hold(&p, &hold("db migration until 15:00")).unwrap();
    }
    // No process holds the flock any more; the hold still refuses.
    assert_eq!(lock::running(&p), Running::Free);
    for task in ["deploy-staging", "rollback", "lock acquire"] {
        let e = lock::acquire(&p, "staging", task, Duration::ZERO).unwrap_err();
        assert_eq!(code_of(&e), Code::Refused, "{task}");
        assert_eq!(
            e.to_string(),
            "environment `staging` is held for maintenance by alice (USER) on ops-1 since \
             2024-01-15T14:30:00Z: \"db migration until 15:00\"; \
             `cargo xtask lock release staging` ends it, or pass --lock-wait SECS"
        );
    }
    // Its release and a repair pass it.
    for task in lock::PASSES_HOLD {
        drop(lock::acquire(&p, "staging", task, Duration::ZERO).unwrap());
    }
    // A waiting deploy gets through once the hold is released.
    let (p2, waiter) = (p.clone(), Instant::now());
    let t = std::thread::spawn(move || {
        lock::acquire(&p2, "staging", "deploy-staging", Duration::from_secs(10)).map(drop)
    });
    std::thread::sleep(Duration::from_millis(300));
    {
        let _g = lock::acquire(&p, "staging", lock::RELEASE_TASK, Duration::from_secs(5)).unwrap();
        assert!(lock::remove_hold(&p).unwrap());
        assert!(!lock::remove_hold(&p).unwrap());
    }
    t.join().unwrap().unwrap();
    assert!(waiter.elapsed() < Duration::from_secs(10));
    let e = lock::acquire(&p, "staging", "deploy-staging", Duration::ZERO);
    assert!(e.is_ok(), "{e:?}");
}

#[test]
fn an_unreadable_hold_refuses_too() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("prod/deploy.lock");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(lock::hold_path(&p), b"{not json").unwrap();
    let e = lock::acquire(&p, "prod", "deploy-prod", Duration::ZERO).unwrap_err();
    assert_eq!(code_of(&e), Code::Refused);
    assert!(
        e.to_string()
            .starts_with("environment `prod` has a maintenance hold that cannot be read ("),
        "{e}"
    );
}

#[test]
fn proc_locks_lines_are_matched_by_device_and_inode() {
    let table = "1: POSIX  ADVISORY  WRITE 77 fe:00:42 0 EOF\n\
                 2: FLOCK  ADVISORY  WRITE 1234 fe:01:42 0 EOF\n\
                 2: -> FLOCK  ADVISORY  WRITE 999 fe:01:42 0 EOF\n";
    let dev = (0xfe << 8) | 0x01;
    assert_eq!(lock::flock_pid(table, dev, 42), Some(1234));
    assert_eq!(lock::flock_pid(table, 0xfe << 8, 42), None);
    assert_eq!(lock::flock_pid(table, dev, 43), None);
}

/// `xtask --config <testbed> --state-dir <tmp> ...` with a fixed actor.
struct Cli {
    state: tempfile::TempDir,
}

impl Cli {
    fn run(&self, args: &[&str]) -> std::process::Output {
        xtask_bin()
            .arg("--config")
            .arg(root().join("deployments/testbed/deploy.toml"))
            .arg("--state-dir")
            .arg(self.state.path())
            .args(args)
            .env("USER", "ops-test")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("CI")
            .output()
            .unwrap()
    }
}

#[test]
fn lock_commands_hold_show_record_and_release() {
    let cli = Cli {
        state: tempfile::tempdir().unwrap(),
    };
    let st = cli.state.path().join("staging");
    // A dry run plans and touches nothing.
    let o = cli.run(&[
        "--dry-run",
        "lock",
        "acquire",
        "staging",
        "-m",
        "db migration",
    ]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    assert!(
        stdout(&o).contains("write the maintenance hold"),
        "{}",
        text(&o)
    );
    assert!(!st.exists(), "a dry run created {}", st.display());

    let o = cli.run(&[
        "lock",
        "acquire",
        "staging",
        "-m",
        "db migration until 15:00",
    ]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    assert!(last_line(&o).starts_with("audit head: "), "{}", text(&o));
    let o = cli.run(&["lock", "status", "staging"]);
    let out = stdout(&o);
    assert!(out.contains("running: nothing"), "{out}");
    assert!(
        out.contains("maintenance: HELD by ops-test (USER) on ")
            && out.contains(": \"db migration until 15:00\""),
        "{out}"
    );
    let o = cli.run(&["status", "staging"]);
    assert!(
        stdout(&o).contains("maintenance: HELD by ops-test (USER)"),
        "{}",
        text(&o)
    );
    let o = cli.run(&["--format", "json", "status", "staging"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["maintenance"]["message"], "db migration until 15:00");

    // A second acquire is refused (exit 5) and recorded as refused.
    let o = cli.run(&["lock", "acquire", "staging", "-m", "mine now"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains("\"db migration until 15:00\""),
        "{}",
        text(&o)
    );

    let o = cli.run(&["lock", "release", "staging", "-m", "migration done"]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    let o = cli.run(&["lock", "release", "staging"]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    assert!(stderr(&o).contains("nothing to release"), "{}", text(&o));
    let o = cli.run(&["lock", "status", "staging"]);
    assert!(stdout(&o).contains("maintenance: none"), "{}", text(&o));

    // Every acquire and release is in the chain, which verifies.
    let log = xtask::audit::Log::new(&st, "staging", None);
    let recs = log.records().unwrap();
    let got: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("lock-acquire", "success"),
            ("lock-acquire", "refused"),
            ("lock-release", "success"),
        ]
    );
    assert_eq!(recs[0].reason, "db migration until 15:00");
    assert_eq!(recs[0].actor, "ops-test (USER)");
    assert!(
        recs[2]
            .reason
            .starts_with("migration done (ends the hold of ops-test (USER) on "),
        "{}",
        recs[2].reason
    );
    log.verify().unwrap();
    let o = cli.run(&["audit", "verify", "--env", "staging"]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
}

#[test]
fn a_hold_message_is_checked_like_a_reason() {
    let cli = Cli {
        state: tempfile::tempdir().unwrap(),
    };
    let long = "x".repeat(1025);
    for (m, want) in [
        ("", "--message is empty"),
        ("two\nlines", "control character"),
        (
            long.as_str(),
            "--message is 1025 bytes: it can be at most 1024 bytes",
        ),
    ] {
        let o = cli.run(&["lock", "acquire", "staging", "-m", m]);
        assert_eq!(exit_code(&o), 1, "{}", text(&o));
        assert!(stderr(&o).contains(want), "{}", text(&o));
    }
    let o = cli.run(&["lock", "acquire", "staging", "-m", &"x".repeat(1024)]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
}

/// `cli` under a file size limit of `room` bytes more than the audit log
/// has: the hold file (smaller) is written, the record (larger) is not.
fn limited(cli: &Cli, room: usize, args: &[&str]) -> std::process::Output {
    let log = cli.state.path().join("staging/audit.jsonl");
    let limit = std::fs::metadata(&log).map_or(0, |m| m.len() as usize) + room;
    std::process::Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; l=$1; shift; exec prlimit --fsize=\"$l\" -- \"$0\" \"$@\"",
        ])
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .arg(limit.to_string())
        .arg("--config")
        .arg(root().join("deployments/testbed/deploy.toml"))
        .arg("--state-dir")
        .arg(cli.state.path())
        .args(args)
        .env("USER", "ops-test")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap()
}

#[test]
fn a_hold_change_that_cannot_be_recorded_is_undone() {
    assert!(
        std::process::Command::new("prlimit")
            .arg("--version")
            .output()
            .is_ok(),
        "prlimit (util-linux) is needed for this test"
    );
    let cli = Cli {
        state: tempfile::tempdir().unwrap(),
    };
    let st = cli.state.path().join("staging");
    let log = xtask::audit::Log::new(&st, "staging", None);
    // A few records, so the limit leaves room for the hold file but not a record.
    for m in ["one", "two", "three"] {
        assert_eq!(
            exit_code(&cli.run(&["lock", "acquire", "staging", "-m", m])),
            0
        );
        assert_eq!(exit_code(&cli.run(&["lock", "release", "staging"])), 0);
    }
    let before = std::fs::read(&log.path).unwrap();

    let o = limited(&cli, 300, &["lock", "acquire", "staging", "-m", "window"]);
    assert_eq!(exit_code(&o), 1, "{}", text(&o));
    assert!(
        stderr(&o).contains("the maintenance hold was removed again, as it could not be recorded"),
        "{}",
        text(&o)
    );
    assert!(!lock::hold_path(&st.join("deploy.lock")).exists());
    assert_eq!(std::fs::read(&log.path).unwrap(), before);

    // And a release that cannot be recorded puts the hold back.
    assert_eq!(
        exit_code(&cli.run(&["lock", "acquire", "staging", "-m", "window"])),
        0
    );
    let held = std::fs::read(lock::hold_path(&st.join("deploy.lock"))).unwrap();
    let before = std::fs::read(&log.path).unwrap();
    let o = limited(&cli, 300, &["lock", "release", "staging"]);
    assert_eq!(exit_code(&o), 1, "{}", text(&o));
    assert!(
        stderr(&o).contains("the maintenance hold was put back"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(lock::hold_path(&st.join("deploy.lock"))).unwrap(),
        held
    );
    assert_eq!(std::fs::read(&log.path).unwrap(), before);
    log.verify().unwrap();
}

#[test]
fn a_maintenance_hold_on_an_environment_kept_on_another_host_is_refused() {
    let s = Stack::new("hold-remote");
    let cfg = std::fs::read_to_string(&s.config).unwrap().replacen(
        "[env.staging]\n",
        "[env.staging]\nhost = \"ssh://ops@10.255.0.9\"\n",
        1,
    );
    std::fs::write(&s.config, cfg).unwrap();
    // The dry run refuses the same way, with the same code and line.
    for dry in [true, false] {
        let mut args = vec!["lock", "acquire", "staging", "-m", "db migration"];
        if dry {
            args.push("--dry-run");
        }
        let o = s.run(&args);
        assert_eq!(exit_code(&o), 5, "dry run {dry}: {}", text(&o));
        assert_eq!(
            first_error_line(&o),
            "error: `staging` keeps its deploy lock on ssh://ops@10.255.0.9, and maintenance holds are kept on this machine only, so another operator would not see one; not supported for an environment on an SSH host yet (nothing was changed)"
        );
        assert!(!s.state.exists(), "a refused hold wrote state");
    }
}
