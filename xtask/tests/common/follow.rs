//! `logs -f` under a signal: start it, wait until it has printed what the
//! test waits for, note the processes it started, signal it, and report
//! how it ended and whether any of them is left.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Followed {
    pub code: Option<i32>,
    /// Every line it printed on stdout.
    pub lines: Vec<String>,
    pub stderr: String,
    /// The processes it had started (its children when `want` was seen).
    pub children: Vec<u32>,
    /// Those of them still present after it ended.
    pub left: Vec<u32>,
    /// From the signal to its exit.
    pub took: Duration,
}

/// The children of `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let ppid = after.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Runs `c` (a `logs -f`), waits up to 60 s for a stdout line containing
/// `want` (after `trigger` ran once the first line is out: something that
/// makes the app log `want`), then sends `signal` and waits for the end.
pub fn follow_then_signal(
    mut c: Command,
    want: &str,
    trigger: impl FnOnce(),
    signal: i32,
) -> Followed {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting xtask logs -f");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let mut lines = Vec::new();
    let mut trigger = Some(trigger);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines.iter().any(|l: &String| l.contains(want)) && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
            if let Some(t) = trigger.take() {
                t();
            }
        }
    }
    let children = children_of(pid);
    // SAFETY: kill(2) of the child this test started.
    unsafe { libc::kill(pid as i32, signal) };
    let t = Instant::now();
    let status = child.wait().unwrap();
    let took = t.elapsed();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let stderr = err_reader.join().unwrap();
    // Gone once reaped: give the kernel a moment, bounded.
    let gone = Instant::now() + Duration::from_secs(5);
    let mut left: Vec<u32> = children.clone();
    while !left.is_empty() && Instant::now() < gone {
        left.retain(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        std::thread::sleep(Duration::from_millis(50));
    }
    Followed {
        code: status.code(),
        lines,
        stderr,
        children,
        left,
        took,
    }
}

/// `logs staging api -f` on `s`: a line the api logs after the follow
/// started (a request for `/<marker>`) arrives, SIGTERM ends it with 143
/// within 5 s, and every docker process it started is gone.
pub fn follow_the_api_then_stop(s: &super::Stack, marker: &str, engine: &str) {
    let want = format!("GET /{marker} -> 404");
    let mut c = s.cmd();
    c.args(["logs", "staging", "api", "-f", "-n", "1"]);
    let f = follow_then_signal(c, &want, || s.mark("staging", marker), libc::SIGTERM);
    assert!(
        f.lines.iter().any(|l| l.contains(&want)),
        "{:?}\n{}",
        f.lines,
        f.stderr
    );
    assert_eq!(f.code, Some(143), "{}", f.stderr);
    assert!(!f.children.is_empty(), "no docker process was seen");
    assert!(f.left.is_empty(), "left running: {:?}", f.left);
    assert!(f.took.as_secs() < 5, "took {:?}", f.took);
    assert!(f.stderr.contains("interrupted by SIGTERM"), "{}", f.stderr);
    eprintln!(
        "logs -f on {engine}: SIGTERM to exit in {} ms",
        f.took.as_millis()
    );
}
