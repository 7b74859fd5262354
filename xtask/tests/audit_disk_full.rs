//! A full disk, a write cut short and a read-only state directory: each
//! gives a clear error and leaves no partial record behind.
//!
//! Two of these need privileges to set up honestly (mounting a tiny tmpfs,
//! a read-only bind mount); where `mount` is refused they say so on stderr
//! and return. The file-size-limit case needs only `prlimit` and runs
//! anywhere: the kernel cuts the append's write short (EFBIG) the way a
//! full disk does (ENOSPC).

#[path = "audit_support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;
use xtask::audit::Log;

const CHILD_STATE: &str = "XTASK_AUDIT_TEST_APPEND_ONCE";

/// Not a test on its own (it returns at once): appends one record to the
/// log in CHILD_STATE and exits 0, or prints the error and exits 1.
#[test]
fn child_append_once() {
    let Some(state) = std::env::var_os(CHILD_STATE) else {
        return;
    };
    let log = Log::new(Path::new(&state), "staging", None);
    if let Err(e) = log.append(
        entry("deploy", "success", None, "sha-late", "should not land"),
        false,
    ) {
        eprintln!("CHILD-ERROR: {e:#}");
        std::process::exit(1);
    }
}

#[test]
fn a_write_cut_short_leaves_no_partial_record() {
    assert!(
        Command::new("prlimit").arg("--version").output().is_ok(),
        "prlimit (util-linux) is needed for this test"
    );
    let fx = Fixture::new(false);
    fx.fill(5);
    let before = std::fs::read(fx.path()).unwrap();
    // Room for 60 more bytes: the next record's single write is cut short.
    let limit = before.len() + 60;
    let o = Command::new("sh")
        .args(["-c", "trap '' XFSZ; exec prlimit --fsize=\"$1\" -- \"$0\" child_append_once --exact --nocapture --test-threads=1 -q"])
        .arg(std::env::current_exe().unwrap())
        .arg(limit.to_string())
        .env(CHILD_STATE, fx.state.join("staging"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("CHILD-ERROR: "))
        .unwrap_or_else(|| panic!("{}", text(&o)));
    assert_eq!(
        line,
        format!(
            "CHILD-ERROR: appending to {}: nothing was recorded (the partial write was removed): File too large (os error 27)",
            fx.path().display()
        )
    );
    assert_eq!(
        std::fs::read(fx.path()).unwrap(),
        before,
        "no partial record"
    );
    let o = fx.xtask(&["audit", "verify", "--env", "staging"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A mount that is undone on drop.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount(args: &[&str], at: &Path) -> Mount {
    let ok = Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Mount(at.to_path_buf())
    } else {
        panic!(
            "`mount {}` failed: this test needs root (CI runs as root)",
            args.join(" ")
        );
    }
}

#[test]
fn a_full_disk_leaves_no_partial_record() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount(&["-t", "tmpfs", "-o", "size=64k", "tmpfs"], &mnt);
    let log = Log::new(&mnt.join("staging"), "staging", None);

    // Grow the log until its last page has less room than a record needs
    // but some (tmpfs allocates whole pages): the write then fills that
    // room and fails part way, like any write to a full disk.
    let len = |l: &Log| std::fs::metadata(&l.path).map_or(0, |m| m.len());
    let mut pad = 1;
    for _ in 0..40 {
        let slack = 4096 - len(&log) % 4096;
        if len(&log) > 0 && (50..200).contains(&slack) {
            break;
        }
        let before = len(&log);
        log.append(
            entry("deploy", "success", None, "sha-0", &"p".repeat(pad)),
            false,
        )
        .unwrap();
        let line = len(&log) - before;
        // Aim the next line to end 100 bytes short of a page boundary.
        let want = (4096 - (len(&log) + 100) % 4096) % 4096;
        pad = (want as i64 - (line as i64 - pad as i64)).max(1) as usize;
    }
    let slack = 4096 - len(&log) % 4096;
    assert!(
        (50..200).contains(&slack),
        "could not place the log end ({slack} bytes free in its page)"
    );

    // Fill every remaining page.
    let mut filler = std::fs::File::create(mnt.join("filler")).unwrap();
    let page = [0u8; 4096];
    while std::io::Write::write_all(&mut filler, &page).is_ok() {}

    let before = std::fs::read(&log.path).unwrap();
    let e = log
        .append(entry("deploy", "success", None, "sha-1", "no room"), false)
        .unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        format!(
            "appending to {}: nothing was recorded (the partial write was removed): No space left on device (os error 28)",
            log.path.display()
        )
    );
    assert_eq!(
        std::fs::read(&log.path).unwrap(),
        before,
        "no partial record"
    );
    log.verify().unwrap();

    // Room again: appends resume on the intact chain.
    drop(filler);
    std::fs::remove_file(mnt.join("filler")).unwrap();
    log.append(
        entry("deploy", "success", None, "sha-1", "room again"),
        false,
    )
    .unwrap();
    log.verify().unwrap();
}

#[test]
fn a_state_dir_under_a_regular_file_gives_a_clear_error() {
    let fx = Fixture::new(false);
    std::fs::write(&fx.state, b"not a directory").unwrap();
    let e = fx
        .log()
        .append(entry("deploy", "success", None, "sha-1", "r"), false)
        .unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        format!(
            "creating state directory {}: Not a directory (os error 20)",
            fx.state.join("staging").display()
        )
    );
    let o = fx.xtask(&["audit", "verify", "--env", "staging"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        error_line(&o),
        format!(
            "error: opening {}: Not a directory (os error 20)",
            fx.path().display()
        )
    );
}

#[test]
fn a_read_only_state_dir_gives_a_clear_error_and_no_partial_record() {
    let fx = Fixture::new(false);
    fx.fill(4);
    // A torn last line, so that `audit repair` has something to write.
    let mut bytes = std::fs::read(fx.path()).unwrap();
    bytes.truncate(bytes.len() - 5);
    std::fs::write(fx.path(), &bytes).unwrap();
    let dir = fx.state.join("staging");
    let _bind = mount(&["--bind", dir.to_str().unwrap()], &dir);
    let _ro = mount(&["-o", "remount,bind,ro"], &dir);

    let e = fx
        .log()
        .append(entry("deploy", "success", None, "sha-1", "r"), false)
        .unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        format!(
            "opening {} for appending: Read-only file system (os error 30)",
            fx.path().display()
        )
    );
    let o = fx.xtask(&[
        "audit",
        "repair",
        "--env",
        "staging",
        "--reason",
        "read-only",
    ]);
    // Refused before anything runs: the log cannot take a record.
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let err = error_line(&o);
    assert!(err.contains("Read-only file system"), "{}", text(&o));
    assert_eq!(
        std::fs::read(fx.path()).unwrap(),
        bytes,
        "nothing written, nothing truncated"
    );
}
