//! A smoke stopped by SIGTERM (a CI job cancelled, an operator's Ctrl-C)
//! exits 128 + 15 as an interruption, not as a failed verification, and
//! tears its cluster down on the way out: no work directory and no
//! postmaster are left behind.

#[path = "backup_smoke_support.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// The running cluster's directory of the smoke with process id `pid`.
fn running_cluster(pid: u32) -> Option<PathBuf> {
    let prefix = format!("xtask-backup-smoke-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .find(|d| d.join("data/postmaster.pid").exists())
}

/// Processes whose command line names `dir` (a postmaster and its children).
fn processes_in(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

#[test]
fn sigterm_stops_the_run_with_143_and_tears_the_cluster_down() {
    require_postgres();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["backup-smoke", "--rows", "20000"])
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let dir = loop {
        if let Some(d) = running_cluster(pid) {
            break d;
        }
        assert!(Instant::now() < deadline, "no cluster came up within 120 s");
        assert!(child.try_wait().unwrap().is_none(), "the smoke ended early");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Into the workload, so a command is running when the signal arrives.
    std::thread::sleep(Duration::from_millis(1500));
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert_eq!(processes_in(&dir), Vec::<String>::new(), "left running");
}
