//! docs/adopting.md runs as written: every line of its ```sh blocks, in
//! order, against the real engine and registry, on a copy of
//! `deployments/examples/hello/` with this test's own port, compose
//! project, image repository and state directory (the copy's `.state/`).
//! A trailing `# exits N` is the exit code the line must have (0 when
//! absent); `# prints TEXT` is what its stdout must be, trimmed.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{engines, exit_code, free_port, root, text};

const EXAMPLE: &str = "deployments/examples/hello";
const PORT: &str = "18480";
const PROJECT: &str = "hello-staging";
const REPOSITORY: &str = "127.0.0.1:5000/examples/hello";

/// One command of the walk-through.
#[derive(Debug)]
struct Line {
    command: String,
    exits: i32,
    prints: Option<String>,
}

/// The commands of a document's ```sh blocks, with what each must do.
fn walk_through(doc: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for raw in doc.lines() {
        let t = raw.trim();
        if let Some(info) = t.strip_prefix("```") {
            in_sh = !in_sh && info.trim() == "sh";
            continue;
        }
        if !in_sh || t.is_empty() {
            continue;
        }
        let (command, note) = match t.split_once(" # ") {
            Some((c, n)) => (c.trim(), n.trim()),
            None => (t, ""),
        };
        let exits = note
            .strip_prefix("exits ")
            .map(|n| n.parse().expect("`# exits N` takes a number"))
            .unwrap_or(0);
        let prints = note.strip_prefix("prints ").map(str::to_string);
        out.push(Line {
            command: command.to_string(),
            exits,
            prints,
        });
    }
    out
}

/// This test's copy of the example and its names; its stack and images
/// are removed on drop.
struct Copy {
    _dir: tempfile::TempDir,
    example: PathBuf,
    port: String,
    project: String,
    repository: String,
}

impl Copy {
    fn new() -> Copy {
        let dir = tempfile::tempdir().unwrap();
        let example = dir.path().join("hello");
        std::fs::create_dir(&example).unwrap();
        let unique = format!("xt-adopt-{}", std::process::id());
        let c = Copy {
            example,
            port: free_port().to_string(),
            project: unique.clone(),
            repository: format!("{REPOSITORY}-{unique}"),
            _dir: dir,
        };
        for f in ["Dockerfile", "docker-compose.yml", "deploy.toml"] {
            let text = std::fs::read_to_string(root().join(EXAMPLE).join(f)).unwrap();
            std::fs::write(c.example.join(f), c.ours(&text)).unwrap();
        }
        c
    }

    /// `text` with the example's port, project, repository and path made this test's.
    fn ours(&self, text: &str) -> String {
        text.replace(PORT, &self.port)
            .replace(PROJECT, &self.project)
            .replace(REPOSITORY, &self.repository)
            .replace(EXAMPLE, &self.example.display().to_string())
    }

    fn record_errors(&self) -> String {
        std::fs::read_to_string(self.example.join(".state/staging/audit.jsonl")).unwrap_or_default()
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        // Only what this test created: its project and its images.
        let _ = Command::new("docker")
            .args([
                "compose",
                "-p",
                &self.project,
                "down",
                "-v",
                "--timeout",
                "2",
            ])
            .output();
        for tag in ["v1", "v2", "v3"] {
            let _ = Command::new("docker")
                .args(["image", "rm", &format!("{}:{tag}", self.repository)])
                .output();
        }
    }
}

fn busybox_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("busybox").is_file()))
}

#[test]
fn the_adopting_walk_through_runs_as_written() {
    engines();
    assert!(
        busybox_on_path(),
        "the example's image is built from a static busybox: install one (Debian: busybox-static)"
    );
    let doc = std::fs::read_to_string(root().join("docs/adopting.md")).unwrap();
    let lines = walk_through(&doc);
    // The walk-through the issue asks for: a deploy, a broken one rolled
    // back (exit 3) with the old version still serving, and a rollback.
    let said = |f: &dyn Fn(&Line) -> bool| lines.iter().any(f);
    assert!(said(&|l| l
        .command
        .starts_with("cargo xtask deploy-staging")
        && l.exits == 0));
    assert!(said(&|l| l
        .command
        .starts_with("cargo xtask deploy-staging")
        && l.exits == 3));
    assert!(said(
        &|l| l.command.starts_with("cargo xtask rollback") && l.exits == 0
    ));
    assert!(said(&|l| l.prints.is_some()));

    let copy = Copy::new();
    let bin = env!("CARGO_BIN_EXE_xtask");
    for line in &lines {
        let command = copy.ours(&line.command);
        let command = match command.strip_prefix("cargo xtask ") {
            Some(rest) => format!("{bin} {rest}"),
            None => command,
        };
        let o = Command::new("sh")
            .args(["-c", &command])
            .current_dir(root())
            .env_remove("GITHUB_ACTIONS")
            .env_remove("CI")
            .env("USER", "adopting-e2e")
            .output()
            .unwrap();
        let shown = format!("`{}` (run as `{command}`)\n{}", line.command, text(&o));
        assert_eq!(exit_code(&o), line.exits, "{shown}");
        if let Some(want) = &line.prints {
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), want, "{shown}");
        }
        if line.exits == 3 {
            // The gate names the check that failed, on stderr and in the record.
            let stderr = String::from_utf8_lossy(&o.stderr);
            let why = format!("http://127.0.0.1:{}/health: HTTP 404; body", copy.port);
            assert!(stderr.contains(&why), "{shown}");
            assert!(
                copy.record_errors().contains(&why),
                "{}",
                copy.record_errors()
            );
        }
    }
}

#[test]
fn lines_carry_their_exit_code_and_output() {
    let doc = "text\n```sh\na --x\nb # exits 3\n\nc # prints v1\n```\n```text\nd\n```\n";
    let l = walk_through(doc);
    assert_eq!(l.len(), 3, "{l:?}");
    assert_eq!((l[0].command.as_str(), l[0].exits), ("a --x", 0));
    assert_eq!((l[1].command.as_str(), l[1].exits), ("b", 3));
    assert_eq!(l[2].prints.as_deref(), Some("v1"));
}
