//! Secrets never leave, on the real engine and registry: a value planted
//! through the environment (a `${NAME}` var) and one planted through a
//! compose secrets file reach the stack, and neither appears in stdout,
//! stderr, the JSON document, the audit log, the sink or any other state
//! file, on the success, gate failure, pull failure, refusal and SIGTERM
//! paths. The gate-failure stack makes the app print the planted value in
//! its own logs, which the gate's diagnosis shows: the redaction is tested
//! on text that really carries the secret.

mod common;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const ENV_SECRET: &str = "zq-planted-env-4b8d02";
const FILE_SECRET: &str = "zq-planted-file-7e31c9";
const ENV_NAME: &str = "XT_PLANTED_DB_PASSWORD";

/// A stack whose config passes `DB_PASSWORD = "${XT_PLANTED_DB_PASSWORD}"`
/// and points the api token's secrets file at a planted one, with
/// `override_yaml` as an extra compose file.
fn planted(name: &str, gate_secs: u64, override_yaml: &str) -> Stack {
    engines();
    let s = Stack::with(
        name,
        Opts {
            gate_secs,
            ..Opts::default()
        },
    );
    let token = s.dir.path().join("api-token");
    std::fs::write(&token, FILE_SECRET).unwrap();
    let extra = s.dir.path().join("planted.yml");
    std::fs::write(&extra, override_yaml).unwrap();
    s.edit_config(
        &format!(
            "DB_PASSWORD = \"${{{ENV_NAME}}}\", API_TOKEN_FILE = \"{}\"",
            token.display()
        ),
        &[&extra],
    );
    s
}

fn run(s: &Stack, args: &[&str]) -> Output {
    s.cmd()
        .env(ENV_NAME, ENV_SECRET)
        .args(args)
        .output()
        .unwrap()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Neither planted value in `text`, nor in any state file (the audit logs,
/// the sink, the lock and its hold).
fn no_leak(s: &Stack, what: &str, text: &str) {
    for v in [ENV_SECRET, FILE_SECRET] {
        assert!(!text.contains(v), "{what}: the output carries {v}:\n{text}");
    }
    let mut all = Vec::new();
    files(&s.state, &mut all);
    for f in all {
        let body = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        for v in [ENV_SECRET, FILE_SECRET] {
            assert!(
                !body.contains(v),
                "{what}: {} carries {v}:\n{body}",
                f.display()
            );
        }
    }
}

fn label(s: &Stack, env: &str, service: &str, key: &str) -> String {
    let id = s.container_id(env, service);
    let o = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
            &id,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn mounts(s: &Stack, env: &str, service: &str) -> String {
    let id = s.container_id(env, service);
    let o = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{json .Mounts}}", &id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const LABELLED: &str = "services:\n  api:\n    labels:\n      xt.planted: ${DB_PASSWORD}\n";

#[test]
fn planted_secrets_never_leave_on_success_pull_failure_refusal_and_sigterm() {
    let img = images();
    let s = planted("sec-paths", 60, LABELLED);

    // Success, text and JSON, the dry runs, and --verbose (which echoes
    // the commands' own output).
    for args in [
        &["deploy-staging", "--tag", &img.v1, "--dry-run"][..],
        &[
            "--format",
            "json",
            "deploy-staging",
            "--tag",
            &img.v1,
            "--dry-run",
        ],
        &["--verbose", "deploy-staging", "--tag", &img.v1],
        &["--format", "json", "deploy-staging", "--tag", &img.v2],
        &["status", "staging"],
        &["--format", "json", "history", "staging"],
    ] {
        let o = run(&s, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        no_leak(&s, &format!("success {args:?}"), &text(&o));
    }
    // Both planted values really reached the stack.
    assert_eq!(label(&s, "staging", "api", "xt.planted"), ENV_SECRET);
    let m = mounts(&s, "staging", "api");
    assert!(
        m.contains(&s.dir.path().join("api-token").display().to_string()),
        "{m}"
    );
    assert_eq!(s.health("staging")["version"], img.v2);

    // A tag the registry does not have: refused while planning (the
    // manifest check), before any pull could fail; nothing leaks.
    for json in [false, true] {
        let mut args = vec!["deploy-staging", "--tag", "tb-missing-zq-0"];
        if json {
            args.splice(0..0, ["--format", "json"]);
        }
        let o = run(&s, &args);
        assert_eq!(exit_code(&o), 5, "{}", text(&o));
        no_leak(&s, "missing image", &text(&o));
        let rec = s.records("staging").pop().unwrap();
        assert_eq!(rec.outcome, "refused", "{rec:?}");
    }
    assert_eq!(s.health("staging")["version"], img.v2);

    // Refusal: prod's promotion gate (the tag never succeeded on staging),
    // dry and real alike.
    for dry in [true, false] {
        let mut args = vec!["deploy-prod", "--tag", &img.bad, "--yes"];
        if dry {
            args.push("--dry-run");
        }
        let o = run(&s, &args);
        assert_eq!(exit_code(&o), 5, "{}", text(&o));
        no_leak(&s, "refusal", &text(&o));
    }

    // SIGTERM while the broken version's gate waits: recorded, put back.
    let before = s.records("staging").len();
    let mut child = s
        .cmd()
        .env(ENV_NAME, ENV_SECRET)
        .args(["deploy-staging", "--tag", &img.bad])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = Arc::new(Mutex::new(String::new()));
    let reader = {
        let err = err.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut e = err.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        })
    };
    let start = Instant::now();
    // The recreate is done: the gate is waiting (up to 60s) for a version
    // that never turns healthy.
    while !err.lock().unwrap().contains("done: recreating") {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before the gate: {}",
            err.lock().unwrap()
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no recreate within 120s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        err.lock().unwrap()
    );
    assert_eq!(out.status.code(), Some(143), "{all}");
    no_leak(&s, "SIGTERM", &all);
    let recs = s.records("staging");
    assert_eq!(recs.len(), before + 1, "{all}");
    assert_eq!(recs.last().unwrap().outcome, "rolled-back", "{all}");
    assert_eq!(s.health("staging")["version"], img.v2);
    s.ok(&["audit", "verify", "--env", "staging"]);
}

#[test]
fn a_failed_gate_shows_the_apps_logs_with_the_planted_secret_redacted() {
    let img = images();
    // The app refuses to start and prints its COMPLIANCE_MODE, which here
    // is the planted secret: the gate's diagnosis shows those log lines.
    let s = planted(
        "sec-gate",
        8,
        "services:\n  api:\n    environment:\n      COMPLIANCE_MODE: ${DB_PASSWORD}\n  worker:\n    environment:\n      COMPLIANCE_MODE: ${DB_PASSWORD}\n",
    );
    for json in [false, true] {
        let mut args = vec!["deploy-staging", "--tag", &img.v1];
        if json {
            args.splice(0..0, ["--format", "json"]);
        }
        let o = run(&s, &args);
        let all = text(&o);
        assert!([3, 4].contains(&exit_code(&o)), "{all}");
        no_leak(&s, "gate failure", &all);
        // The app did print it; what reached us is redacted.
        assert!(
            stderr(&o).contains("COMPLIANCE_MODE=\"***\" is not one of"),
            "the diagnosis lacks the app's redacted log line: {all}"
        );
        let rec = s.records("staging").pop().unwrap();
        assert!(rec.outcome != "success", "{rec:?}");
    }
}
