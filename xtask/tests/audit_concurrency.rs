//! Appends from several processes at once, and processes killed with
//! SIGKILL in the middle of a burst of appends, against the real filesystem.
//!
//! The appending processes are this test binary itself, re-run with
//! `child_appender` as the only test and its instructions in the
//! environment: the same `Log::append` every task uses, in separate
//! processes with their own locks and file descriptors.

#[path = "audit_support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use xtask::audit::{Kind, Log, Record, SinkState};

const STATE: &str = "XTASK_AUDIT_TEST_CHILD_STATE";
const SINK: &str = "XTASK_AUDIT_TEST_CHILD_SINK";
const ID: &str = "XTASK_AUDIT_TEST_CHILD_ID";
const COUNT: &str = "XTASK_AUDIT_TEST_CHILD_COUNT";

/// Not a test on its own (it returns at once): the body of the child
/// processes the tests below start. Appends COUNT records, or forever.
#[test]
fn child_appender() {
    let Some(state) = std::env::var_os(STATE) else {
        return;
    };
    let sink = std::env::var_os(SINK).map(PathBuf::from);
    let id = std::env::var(ID).unwrap();
    let count: Option<u64> = std::env::var(COUNT).ok().map(|c| c.parse().unwrap());
    let log = Log::new(Path::new(&state), "staging", sink.as_deref());
    let mut i = 0;
    while count.is_none_or(|c| i < c) {
        i += 1;
        let e = entry(
            "deploy",
            "success",
            None,
            &format!("sha-{id}-{i}"),
            &format!("child {id} record {i}"),
        );
        log.append(e, false).unwrap();
    }
}

fn spawn(fx: &Fixture, id: usize, count: Option<u64>) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "child_appender",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(STATE, fx.state.join("staging"))
    .env(ID, id.to_string())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(s) = &fx.sink_dir {
        c.env(SINK, s);
    }
    if let Some(n) = count {
        c.env(COUNT, n.to_string());
    }
    c.spawn().unwrap()
}

fn records(fx: &Fixture) -> Vec<Record> {
    fx.lines()
        .iter()
        .map(|l| serde_json::from_slice(l.strip_suffix(b"\n").unwrap()).unwrap())
        .collect()
}

#[test]
fn eight_processes_appending_200_each_make_one_chain_of_1600() {
    let fx = Fixture::new(true);
    let children: Vec<Child> = (0..8).map(|id| spawn(&fx, id, Some(200))).collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "a child failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = fx.xtask(&["audit", "verify", "--env", "staging"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let head = line_hash(fx.lines().last().unwrap());
    assert_eq!(
        stdout(&o),
        format!(
            "staging: 1600 records, head {head}\nstaging: sink {}: 1600 records, matches the local log\n",
            fx.sink().display()
        )
    );
    // Every record once, each child's in its own order: nothing lost, nothing forked.
    let recs = records(&fx);
    let mut next = [1u64; 8];
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        let (id, n) = r
            .reason
            .strip_prefix("child ")
            .unwrap()
            .split_once(" record ")
            .unwrap();
        let (id, n): (usize, u64) = (id.parse().unwrap(), n.parse().unwrap());
        assert_eq!(n, next[id], "child {id} out of order at line {}", i + 1);
        next[id] += 1;
    }
    assert_eq!(next, [201; 8]);
}

/// A cheap source of varied delays without a random-number crate.
fn jitter(round: u64, max_ms: u64) -> Duration {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_micros((n ^ round.wrapping_mul(0x9e37_79b9)) % (max_ms * 1000))
}

#[test]
fn kill_9_during_a_burst_never_leaves_a_modified_chain() {
    let fx = Fixture::new(true);
    fx.fill(3);
    let mut tally = std::collections::BTreeMap::<&str, u32>::new();
    for round in 0..12u64 {
        let before = fx.lines().len();
        let mut child = spawn(&fx, round as usize, None);
        // Let the burst get going, then kill it at an arbitrary moment.
        let start = Instant::now();
        while fx.lines().len() < before + 3 && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(jitter(round, 15));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let c = fx.log().check().unwrap();
        let local = match &c.local {
            Ok(_) => "clean",
            Err(b) if b.kind == Kind::Torn => "torn",
            Err(b) => panic!(
                "round {round}: kill -9 left a chain that verify calls {:?}: {b}",
                b.kind
            ),
        };
        let sink = match &c.sink {
            Some((_, SinkState::Match { .. })) => "in step",
            Some((_, s)) if s.repairable() => "behind",
            other => panic!("round {round}: the sink is {other:?}"),
        };
        *tally.entry(local).or_default() += 1;
        *tally.entry(sink).or_default() += 1;

        let o = fx.xtask(&["audit", "verify", "--env", "staging"]);
        let err = String::from_utf8_lossy(&o.stderr);
        for bad in [
            "modified",
            "deleted",
            "reordered",
            "inserted",
            "not JSON",
            "seq gap",
            "prev mismatch",
            "differs",
        ] {
            assert!(!err.contains(bad), "round {round}: {}", text(&o));
        }
        if o.status.code() != Some(0) {
            let o = fx.xtask(&[
                "audit",
                "repair",
                "--env",
                "staging",
                "--reason",
                &format!("kill -9 in round {round}"),
            ]);
            assert_eq!(o.status.code(), Some(0), "round {round}: {}", text(&o));
            let o = fx.xtask(&["audit", "verify", "--env", "staging"]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "round {round}: after repair: {}",
                text(&o)
            );
        }
    }
    eprintln!("after 12 kills: {tally:?}");
    let recs = records(&fx);
    assert!(recs.len() > 3 + 12 * 3, "{}", recs.len());
}
