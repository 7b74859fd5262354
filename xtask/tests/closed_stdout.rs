//! A reader that stops early (`cargo xtask audit show ENV | head -3`) ends
//! the task quietly with exit 0: no panic, no backtrace.

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
