//! Fixtures for the audit tests (included by each `audit_*.rs` and
//! `status_*.rs` with `#[path]`): a temp config with one environment, its
//! state dir and optional sink, the real binary, and byte-level tampering.
//! Compiled on its own too, as a test crate without tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xtask::audit::{Entry, ImageRef, Log};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The `--state-dir` root; the log lives in `<state>/staging/audit.jsonl`.
    pub state: PathBuf,
    pub sink_dir: Option<PathBuf>,
}

impl Fixture {
    /// One environment, `staging`, with a sink directory if `sink`.
    pub fn new(sink: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        // Where the binary puts the sink when --state-dir is given.
        let sink_dir = sink.then(|| state.join("sink"));
        let sink_line = sink_dir
            .as_ref()
            .map(|s| format!("audit_sink = {:?}\n", s.display().to_string()))
            .unwrap_or_default();
        let config = dir.path().join("deploy.toml");
        std::fs::write(
            &config,
            format!(
                "[env.staging]\n\
                 project = \"t-staging\"\n\
                 compose_files = [\"docker-compose.yml\"]\n\
                 app_services = [\"api\"]\n\
                 images = {{ api = \"127.0.0.1:5000/fetchml/testbed\" }}\n\
                 health_urls = [\"http://127.0.0.1:1/health\"]\n\
                 compliance_mode = \"standard\"\n\
                 {sink_line}"
            ),
        )
        .unwrap();
        Fixture {
            dir,
            config,
            state,
            sink_dir,
        }
    }

    pub fn log(&self) -> Log {
        Log::new(
            &self.state.join("staging"),
            "staging",
            self.sink_dir.as_deref(),
        )
    }

    pub fn path(&self) -> PathBuf {
        self.log().path
    }

    pub fn sink(&self) -> PathBuf {
        self.log().sink.expect("a fixture with a sink")
    }

    /// Runs the real binary with this config and state dir.
    pub fn xtask(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running xtask")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args);
        c.env_remove("GITHUB_ACTIONS").env("USER", "tester");
        for v in [
            "GITHUB_ACTOR",
            "GITEA_ACTOR",
            "FORGEJO_ACTOR",
            "CI_COMMIT_AUTHOR",
        ] {
            c.env_remove(v);
        }
        c
    }

    /// Appends `n` deploy records through the library (the code every task uses).
    pub fn fill(&self, n: u64) {
        let log = self.log();
        for i in 1..=n {
            log.append(
                entry(
                    "deploy",
                    "success",
                    Some(&format!("sha-{:012}", i - 1)),
                    &format!("sha-{i:012}"),
                    &format!("deploy {i}"),
                ),
                false,
            )
            .unwrap();
        }
    }

    /// The log's lines, each with its newline.
    pub fn lines(&self) -> Vec<Vec<u8>> {
        read_lines(&self.path())
    }

    pub fn write_lines(&self, lines: &[Vec<u8>]) {
        std::fs::write(self.path(), lines.concat()).unwrap();
    }

    pub fn head(&self) -> String {
        self.log().verify().unwrap().head
    }
}

pub fn read_lines(p: &Path) -> Vec<Vec<u8>> {
    std::fs::read(p)
        .unwrap()
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

pub fn entry(action: &str, outcome: &str, from: Option<&str>, to: &str, reason: &str) -> Entry {
    Entry {
        action: action.into(),
        outcome: outcome.into(),
        from: from.map(|t| ImageRef::new(t, None)),
        to: Some(ImageRef::new(to, None)),
        git_sha: None,
        reason: reason.into(),
        error: None,
        set: None,
        duration_ms: 12,
    }
}

/// SHA-256 hex of a line without its newline: what the next record's `prev` holds.
pub fn line_hash(line: &[u8]) -> String {
    xtask::audit::sha_hex(line.strip_suffix(b"\n").unwrap_or(line))
}

/// The lines `e` printed on stderr that start with `error: `.
pub fn error_line(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "expected one error line:\n{}", text(o));
    lines[0].to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts exit 6 and exactly this error line.
#[track_caller]
pub fn assert_verify_fails(o: &Output, expected: &str) {
    assert_eq!(o.status.code(), Some(6), "{}", text(o));
    assert_eq!(error_line(o), format!("error: {expected}"), "{}", text(o));
}
