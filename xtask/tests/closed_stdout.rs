//! A reader that stops early (`cargo xtask audit show ENV | head -3`, or
//! `xtask TASK 2>&1 | head -0`) is no panic: every line the tool prints
//! goes through writers that drop a failed write, so the task ends with
//! its own exit code.

#[path = "audit_support.rs"]
mod support;

use std::io::Read;
use std::process::Stdio;

use support::*;

#[test]
fn a_closed_stdout_ends_quietly_with_exit_0() {
    let fx = Fixture::new(false);
    // Far more than a pipe holds (64 KiB), so the writer must meet the closed end.
    fx.fill(1500);
    let mut child = fx
        .cmd(&["audit", "show", "staging"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// How a test run treats the child's output: both ends closed at once
/// (`2>&1 | head -0`), or only stdout, or only stderr.
#[derive(Debug, Clone, Copy)]
enum Closed {
    Both,
    Stdout,
    Stderr,
}

/// Runs `args` with the chosen ends closed before the child writes;
/// returns its exit code (`None`: killed by a signal).
fn closed_run(fx: &Fixture, args: &[&str], closed: Closed) -> Option<i32> {
    let mut child = fx
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    // The open end is read to its end in a thread, so the child never
    // blocks on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
        })
    };
    let reader = match closed {
        Closed::Both => {
            drop((out, err));
            None
        }
        Closed::Stdout => {
            drop(out);
            Some(drain(Box::new(err)))
        }
        Closed::Stderr => {
            drop(err);
            Some(drain(Box::new(out)))
        }
    };
    let status = child.wait().unwrap();
    if let Some(r) = reader {
        r.join().unwrap();
    }
    status.code()
}

/// Every task, on its success, refusal and failure paths, ends with the
/// exit code it has with both ends open: a closed stdout or stderr is no
/// panic (101) and does not cut the task short.
#[test]
fn closed_stdout_or_stderr_changes_no_exit_code() {
    let fx = Fixture::new(false);
    fx.fill(3);
    let cases: &[&[&str]] = &[
        &["rollback", "nosuchenv"],
        &["--format", "json", "rollback", "nosuchenv"],
        &["status", "staging"],
        &["--format", "json", "status", "staging"],
        &["history", "staging"],
        &["audit", "verify", "staging"],
        &["audit", "show", "nosuchenv"],
        &["lock", "status", "staging"],
        &["lock", "release", "staging"],
        &["deploy-staging", "--tag", "sha-nope", "--dry-run"],
        &["deploy-staging", "--no-such-flag"],
    ];
    for args in cases {
        let open = fx.xtask(args);
        let want = open.status.code();
        assert_ne!(want, Some(101), "{args:?} panics with its ends open");
        for closed in [Closed::Both, Closed::Stdout, Closed::Stderr] {
            for _ in 0..3 {
                assert_eq!(
                    closed_run(&fx, args, closed),
                    want,
                    "{args:?} with {closed:?} closed"
                );
            }
        }
    }
}
