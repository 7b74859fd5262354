//! Every `cargo xtask` command shown in README.md, ROLLBACK.md and docs/**/*.md
//! (in ```sh, ```bash or ```shell blocks) runs as written:
//! - a `--dry-run` command is run, and must exit 0. Where it names no
//!   `--config` it runs against a copy of the testbed config whose state and
//!   audit sinks live in a fresh temporary directory, so it reads nothing a
//!   real run wrote. Each environment's history there is two successful
//!   deploys, `sha-aaaaaaaaaaaa` then `sha-bbbbbbbbbbbb` (the current one),
//!   which examples may name. It must be literal (no `$VAR`, no
//!   `<placeholder>`): a reader can paste it;
//! - any other command must name a task that `cargo xtask --help` lists, and
//!   its arguments must parse (clap is asked for `--help` after them, and
//!   rejects an unknown flag or subcommand before printing help).
//!
//! Shell syntax after the command (`| jq`, `&& ...`, `# comment`, `> file`)
//! is cut off; `\` continuations are joined.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    xtask::workspace_root()
}

fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.current_dir(root()).env_remove("GITHUB_ACTIONS");
    c
}

const TESTBED_CONFIG: &str = "deployments/testbed/deploy.toml";
const GLOBAL_WITH_VALUE: [&str; 3] = ["--format", "--config", "--state-dir"];
const FENCES: [&str; 3] = ["sh", "bash", "shell"];
/// The history every environment of a dry run's config starts with, oldest first.
const SEEDED: [&str; 2] = ["sha-aaaaaaaaaaaa", "sha-bbbbbbbbbbbb"];

/// A `cargo xtask` command found in a document.
#[derive(Debug)]
struct DocCommand {
    at: String,
    text: String,
    /// The words after `cargo xtask`.
    args: Vec<String>,
}

fn markdown_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in ["README.md", "ROLLBACK.md"] {
        let p = root().join(f);
        if p.exists() {
            out.push(p);
        }
    }
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "md") {
            out.push(p);
        }
    }
}

/// Shell words of a line, cut at the first unquoted operator or comment.
/// `None` for an unterminated quote.
fn shell_words(line: &str) -> Option<Vec<String>> {
    const OPS: [&str; 9] = ["|", "||", "&&", ";", "&", ">", ">>", "<", "2>&1"];
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |cur: &mut String, quoted: &mut bool, words: &mut Vec<String>| -> bool {
        // true: an operator or comment ends the command here
        let w = std::mem::take(cur);
        let stop = !*quoted && (OPS.contains(&w.as_str()) || w.starts_with('#'));
        if !stop {
            words.push(w);
        }
        *quoted = false;
        stop
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next()? {
                        q if q == c => break,
                        '\\' if c == '"' => cur.push(chars.next()?),
                        ch => cur.push(ch),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    in_word = false;
                    if end_word(&mut cur, &mut quoted, &mut words) {
                        return Some(words);
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        end_word(&mut cur, &mut quoted, &mut words);
    }
    Some(words)
}

/// The `cargo xtask` commands in one document's shell blocks.
fn commands_in(path: &Path, text: &str) -> (Vec<DocCommand>, Vec<String>) {
    let rel = path
        .strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string();
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut fence: Option<bool> = None; // Some(is a shell block)
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let t = raw.trim();
        if let Some(info) = t.strip_prefix("```") {
            fence = match fence {
                None => Some(FENCES.contains(&info.trim())),
                Some(_) => None,
            };
            pending = None;
            continue;
        }
        if fence != Some(true) {
            continue;
        }
        let (start, mut line) = match pending.take() {
            Some((n, head)) => (n, format!("{head} {t}")),
            None => (i + 1, t.strip_prefix("$ ").unwrap_or(t).to_string()),
        };
        if let Some(head) = line.strip_suffix('\\') {
            line = head.trim_end().to_string();
            pending = Some((start, line));
            continue;
        }
        if !(line.starts_with("cargo xtask ") || line == "cargo xtask") {
            continue;
        }
        let at = format!("{rel}:{start}");
        match shell_words(&line) {
            Some(w) => found.push(DocCommand {
                at,
                text: line.clone(),
                args: w[2..].to_vec(),
            }),
            None => problems.push(format!("{at}: `{line}`: unterminated quote")),
        }
    }
    (found, problems)
}

fn all_commands() -> (Vec<DocCommand>, Vec<String>) {
    let mut all = Vec::new();
    let mut problems = Vec::new();
    for f in markdown_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        let (c, p) = commands_in(&f, &text);
        all.extend(c);
        problems.extend(p);
    }
    (all, problems)
}

fn tasks() -> BTreeSet<String> {
    let out = xtask()
        .arg("--help")
        .output()
        .expect("running xtask --help");
    let help = String::from_utf8(out.stdout).unwrap();
    let section = help
        .split("Commands:")
        .nth(1)
        .expect("a Commands: section in --help");
    section
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|t| *t != "help")
        .map(str::to_string)
        .collect()
}

fn task_of(args: &[String]) -> Option<&str> {
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if GLOBAL_WITH_VALUE.contains(&a.as_str()) {
            skip = true;
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

fn output_text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The testbed config, copied into `dir` with its state and audit sinks
/// moved there too (`--state-dir` moves the logs, not the sinks) and every
/// other path made absolute, so a dry run reads nothing another run wrote.
fn isolated_testbed_config(dir: &Path) -> PathBuf {
    let mut cfg = xtask::config::Config::load(&root().join(TESTBED_CONFIG)).unwrap();
    for img in &mut cfg.images {
        img.dockerfile = cfg.base.join(&img.dockerfile);
        img.context = img.context.as_ref().map(|c| cfg.base.join(c));
    }
    for (name, env) in &mut cfg.envs {
        env.compose_files = env.compose_files.iter().map(|f| cfg.base.join(f)).collect();
        env.state_dir = dir.join("state");
        if env.audit_sink.is_some() {
            env.audit_sink = Some(dir.join(format!("sink-{name}")));
        }
    }
    let path = dir.join("deploy.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    for (name, env) in &cfg.envs {
        // `--state-dir` moves the sink too, to `<state-dir>/sink` (Ctx::log),
        // and `audit verify` (so every task's planning) compares it.
        let sink = env.audit_sink.as_ref().map(|_| env.state_dir.join("sink"));
        seed(&env.state_dir.join(name), name, sink.as_deref());
    }
    path
}

/// Two successful deploys, so rollback and status examples have a history.
fn seed(state: &Path, env: &str, sink: Option<&Path>) {
    let log = xtask::audit::Log::new(state, env, sink);
    let mut from = None;
    for tag in SEEDED {
        let to = xtask::audit::ImageRef::new(tag, None);
        let entry = xtask::audit::Entry {
            action: "deploy".into(),
            outcome: "success".into(),
            from: from.replace(to.clone()),
            to: Some(to),
            git_sha: None,
            reason: "docs example history".into(),
            error: None,
            set: None,
            duration_ms: 1,
        };
        log.append(entry, false).unwrap();
    }
}

/// Runs a dry-run command as written, against the testbed config unless it
/// names one, with a fresh state dir.
fn check_dry_run(c: &DocCommand) -> Option<String> {
    if let Some(w) = c
        .args
        .iter()
        .find(|w| w.contains('$') || (w.starts_with('<') && w.ends_with('>')))
    {
        return Some(format!(
            "{}: `{}`: a --dry-run example must be literal, not `{w}`",
            c.at, c.text
        ));
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = Vec::new();
    if !c.args.iter().any(|a| a == "--config") {
        args.extend([
            "--config".into(),
            isolated_testbed_config(tmp.path()).display().to_string(),
        ]);
    }
    if !c.args.iter().any(|a| a == "--state-dir") {
        args.extend([
            "--state-dir".into(),
            tmp.path().join("state").display().to_string(),
        ]);
    }
    args.extend(c.args.iter().cloned());
    let o = xtask().args(&args).output().expect("running xtask");
    // A preview of a plan the real run would refuse exits 5 after printing
    // the plan with the unmet gate: that is what such an example shows.
    let refused_preview = o.status.code() == Some(5)
        && String::from_utf8_lossy(&o.stdout).contains("NOT MET, would refuse");
    (!o.status.success() && !refused_preview)
        .then(|| format!("{}: `{}` failed:\n{}", c.at, c.text, output_text(&o)))
}

/// The task exists and the arguments parse.
fn check_parses(c: &DocCommand, tasks: &BTreeSet<String>) -> Option<String> {
    let Some(task) = task_of(&c.args) else {
        return Some(format!("{}: `{}` names no task", c.at, c.text));
    };
    if !tasks.contains(task) {
        return Some(format!(
            "{}: `{}`: `{task}` is not a task of `cargo xtask --help`",
            c.at, c.text
        ));
    }
    let mut args = c.args.clone();
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.insert(at, "--help".into());
    let o = xtask().args(&args).output().expect("running xtask");
    (!o.status.success()).then(|| {
        format!(
            "{}: `{}` does not parse:\n{}",
            c.at,
            c.text,
            output_text(&o)
        )
    })
}

#[test]
fn every_documented_command_runs_as_written() {
    let (commands, mut problems) = all_commands();
    let tasks = tasks();
    let dry: Vec<&DocCommand> = commands
        .iter()
        .filter(|c| c.args.iter().any(|a| a == "--dry-run"))
        .collect();
    assert!(
        commands.len() >= 10,
        "expected the docs to show cargo xtask commands; found {commands:#?}"
    );
    assert!(!dry.is_empty(), "expected --dry-run examples in the docs");
    for c in &commands {
        problems.extend(check_parses(c, &tasks));
    }
    for c in &dry {
        problems.extend(check_dry_run(c));
    }
    eprintln!(
        "{} documented commands checked, {} of them run as dry runs",
        commands.len(),
        dry.len()
    );
    assert!(
        problems.is_empty(),
        "documented commands that do not run as written:\n\n{}",
        problems.join("\n\n")
    );
}

#[test]
fn extraction_follows_shell_rules() {
    let doc = "\
text `cargo xtask nope` outside a block\n\
```sh\n\
cargo xtask --dry-run rollback prod --reason \"health check failed\" # why\n\
$ cargo xtask status staging | head -1\n\
cargo xtask deploy-prod \\\n\
  --tag sha-0123456789ab\n\
echo cargo xtask nope\n\
```\n\
```text\n\
cargo xtask not-in-a-shell-block\n\
```\n\
```bash\n\
cargo xtask audit show -n 5 > out.txt\n\
```\n";
    let (found, problems) = commands_in(Path::new("/x/doc.md"), doc);
    assert!(problems.is_empty(), "{problems:?}");
    let got: Vec<(String, Vec<String>)> = found.into_iter().map(|c| (c.at, c.args)).collect();
    let want = [
        (
            "/x/doc.md:3",
            vec![
                "--dry-run",
                "rollback",
                "prod",
                "--reason",
                "health check failed",
            ],
        ),
        ("/x/doc.md:4", vec!["status", "staging"]),
        (
            "/x/doc.md:5",
            vec!["deploy-prod", "--tag", "sha-0123456789ab"],
        ),
        ("/x/doc.md:13", vec!["audit", "show", "-n", "5"]),
    ];
    let want: Vec<(String, Vec<String>)> = want
        .iter()
        .map(|(a, w)| (a.to_string(), w.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_broken_command_is_caught() {
    let tasks = tasks();
    let cmd = |args: &[&str]| DocCommand {
        at: "t".into(),
        text: args.join(" "),
        args: args.iter().map(|s| s.to_string()).collect(),
    };
    assert!(check_parses(&cmd(&["deploy-stagin"]), &tasks)
        .unwrap()
        .contains("not a task"));
    assert!(
        check_parses(&cmd(&["rollback", "prod", "--too", "x"]), &tasks)
            .unwrap()
            .contains("does not parse")
    );
    assert!(check_parses(&cmd(&["rollback", "prod", "--to", "$TAG"]), &tasks).is_none());
    let e = check_dry_run(&cmd(&["--dry-run", "deploy-staging", "--tag", "$TAG"])).unwrap();
    assert!(e.contains("must be literal"), "{e}");
    // A dry run that fails (an environment the testbed config lacks) is reported.
    let e = check_dry_run(&cmd(&["--dry-run", "rollback", "qa"])).unwrap();
    assert!(e.contains("failed"), "{e}");
}
