//! `--format json` is a contract: every task prints exactly one JSON
//! document on stdout, on its success, refusal and failure paths alike, and
//! that document validates against docs/output.schema.json, with
//! `exit_code` equal to the process's exit status.
//!
//! The schema uses a small subset of JSON Schema, which
//! `common::schema::validate` checks exactly, failing on any keyword it
//! does not know, so the schema cannot silently outgrow it.
//! The per-task parts (`allOf`) are checked on the success, refusal,
//! failure and drift paths of every task.

mod common;

use serde_json::Value;

use common::schema::validate;
use common::*;

fn schema() -> Value {
    let text = std::fs::read_to_string(root().join("docs/output.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs xtask with `--format json` and checks the document; returns it.
fn doc(run: &dyn Fn(&[&str]) -> std::process::Output, args: &[&str], want_code: i32) -> Value {
    let mut full = vec!["--format", "json"];
    full.extend_from_slice(args);
    let o = run(&full);
    assert_eq!(exit_code(&o), want_code, "{args:?}: {}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not exactly one JSON document ({e}):\n{}",
            text(&o)
        )
    });
    let problems = validate(&schema(), &v, "$");
    assert!(problems.is_empty(), "{args:?}: {problems:?}\n{v:#}");
    assert_eq!(v["exit_code"], want_code, "{args:?}: {v:#}");
    if want_code == 0 {
        assert!(v["error"].is_null(), "{args:?}: {v:#}");
    } else {
        assert!(v["error"].is_string(), "{args:?}: {v:#}");
    }
    v
}

#[test]
fn the_schema_check_catches_a_bad_document() {
    let bad = serde_json::json!({"task": "x", "outcome": "fine", "exit_code": "0"});
    let p = validate(&schema(), &bad, "$");
    assert!(
        p.iter()
            .any(|l| l.contains("missing required field \"env\"")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|l| l.contains("\"fine\" is not one of")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|l| l.contains("is not of type \"integer\"")),
        "{p:?}"
    );
    // A task's own fields: a status document without them, and drift
    // that calls itself an error, are caught.
    let mut st = serde_json::json!({"task": "status", "env": "staging", "outcome": "error",
        "exit_code": 7, "from": null, "to": null, "error": "x", "audit_head": null});
    let p = validate(&schema(), &st, "$");
    assert!(
        p.iter()
            .any(|l| l.contains("missing required field \"health\"")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|l| l.contains("\"error\" is not \"drift\"")),
        "{p:?}"
    );
    st["history"] = serde_json::json!([{"seq": "1"}]);
    st["task"] = "history".into();
    st["exit_code"] = 0.into();
    st["deployments"] = serde_json::json!([{"seq": "1"}]);
    let p = validate(&schema(), &st, "$");
    assert!(
        p.iter()
            .any(|l| l.starts_with("$.deployments[0]: missing required field")),
        "{p:?}"
    );
}

#[test]
fn every_task_prints_one_valid_document_on_every_path() {
    let img = images();
    let s = Stack::new("json");
    let run = |a: &[&str]| s.run(a);
    // Success paths.
    for args in [
        &["status", "staging"][..],
        &["history", "staging"],
        &["lock", "status", "staging"],
        &["audit", "verify"],
        &["audit", "show", "--env", "staging"],
        &["backup-smoke", "--env", "staging", "--dry-run"],
        &["lock", "acquire", "staging", "-m", "contract", "--dry-run"],
        &["deploy-staging", "--tag", &img.v1, "--dry-run"],
        &[
            "rollback",
            "staging",
            "--to",
            &img.v1,
            "--force",
            "--dry-run",
        ],
    ] {
        doc(&run, args, 0);
    }
    // The rollback's plan carries the checklist it would print (this
    // config sets no post_rollback: the generic one).
    let rb = doc(
        &run,
        &[
            "rollback",
            "staging",
            "--to",
            &img.v1,
            "--force",
            "--dry-run",
        ],
        0,
    );
    assert_eq!(
        rb["plan"]["checklist"][0], "confirm the audit chain: cargo xtask audit verify staging",
        "{rb:#}"
    );
    // Nothing deployed: no container to read, in both modes.
    let logs = doc(&run, &["logs", "staging", "-n", "1"], 1);
    assert!(
        logs["error"]
            .as_str()
            .unwrap()
            .contains("nothing is deployed"),
        "{logs:#}"
    );
    doc(&run, &["logs", "staging", "--dry-run"], 1);
    let plan = doc(&run, &["deploy-staging", "--tag", &img.v1, "--dry-run"], 0);
    assert_eq!(plan["outcome"], "planned");
    assert_eq!(plan["env"], "staging");
    assert!(plan["plan"]["steps"].is_array(), "{plan:#}");
    let fixture = root().join("xtask/tests/fixtures/compose/insecure-overlay.yml");
    let sm = doc(
        &run,
        &[
            "security-modes-test",
            "--compose",
            &fixture.display().to_string(),
        ],
        // An overlay alone does not render: "could not check".
        9,
    );
    assert!(sm["report"].is_object(), "{sm:#}");

    // Every document about one environment names it, and every one that
    // read or wrote its chain carries the head; task names are the
    // command words.
    let l = doc(&run, &["lock", "acquire", "staging", "-m", "contract"], 0);
    assert_eq!(
        (l["task"].as_str(), l["env"].as_str()),
        (Some("lock acquire"), Some("staging"))
    );
    let refused = doc(&run, &["lock", "acquire", "staging", "-m", "again"], 5);
    assert_eq!(refused["outcome"], "refused", "{refused:#}");
    let l = doc(&run, &["lock", "release", "staging"], 0);
    let head = l["audit_head"].as_str().unwrap().to_string();
    for args in [
        &["audit", "verify", "staging"][..],
        &["audit", "show", "staging"],
        &["history", "staging"],
        &["status", "staging"],
    ] {
        let d = doc(&run, args, 0);
        assert_eq!(
            (d["env"].as_str(), d["audit_head"].as_str()),
            (Some("staging"), Some(head.as_str())),
            "{args:?}: {d:#}"
        );
    }
    let b = doc(&run, &["backup-smoke", "--env", "staging", "--dry-run"], 0);
    assert_eq!(b["env"], "staging", "{b:#}");
    let smoke = doc(&run, &["backup-smoke", "--env", "staging"], 0);
    assert_eq!(smoke["report"]["ok"], true, "{smoke:#}");

    // Refusals: recorded, with the head.
    let r = doc(&run, &["deploy-prod", "--tag", "sha-0123456789ab"], 5);
    assert_eq!(
        (r["outcome"].as_str(), r["env"].as_str()),
        (Some("refused"), Some("prod"))
    );
    assert!(
        r["audit_head"].as_str().is_some_and(|h| h.len() == 64),
        "{r:#}"
    );
    let r = doc(&run, &["rollback", "staging"], 5);
    assert_eq!(r["outcome"], "refused");
    assert!(
        r.get("checklist").is_none(),
        "a refusal changed nothing: {r:#}"
    );
    doc(
        &run,
        &["deploy-prod", "--tag", "sha-0123456789ab", "--dry-run"],
        5,
    );

    // A missing image is refused before anything is touched, in a dry run too.
    doc(
        &run,
        &["deploy-staging", "--tag", "sha-000000000000", "--dry-run"],
        5,
    );
    let f = doc(&run, &["deploy-staging", "--tag", "sha-000000000000"], 5);
    assert_eq!(
        (f["outcome"].as_str(), f["to"].as_str()),
        (Some("refused"), Some("sha-000000000000"))
    );

    // Failures: bad input, a bad config, a broken chain.
    let e = doc(&run, &["status"], 1);
    assert!(e["error"].as_str().unwrap().contains("<ENV>"), "{e:#}");
    doc(&run, &["deploy", "staging"], 1);
    doc(&run, &["status", "production"], 1);
    let log = s.state.join("staging/audit.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    let i = bytes.iter().position(|&b| b == b'r').unwrap();
    bytes[i] = b'R';
    std::fs::write(&log, bytes).unwrap();
    doc(&run, &["audit", "verify", "--env", "staging"], 6);
    doc(&run, &["status", "staging"], 6);
}

#[test]
fn a_rolled_back_deploy_is_one_document_naming_the_change() {
    let img = images();
    let s = Stack::new("json-rb");
    let run = |a: &[&str]| s.run(a);
    let ok = doc(&run, &["deploy-staging", "--tag", &img.v1], 0);
    assert_eq!(
        (ok["outcome"].as_str(), ok["to"].as_str()),
        (Some("success"), Some(img.v1.as_str()))
    );
    eprintln!("success: {ok:#}");
    let rb = doc(&run, &["deploy-staging", "--tag", &img.bad], 3);
    assert_eq!(rb["outcome"], "rolled-back");
    assert_eq!(
        (rb["from"].as_str(), rb["to"].as_str()),
        (Some(img.v1.as_str()), Some(img.bad.as_str()))
    );
    assert!(
        rb["error"].as_str().unwrap().contains("health gate failed"),
        "{rb:#}"
    );
    eprintln!("rolled back: {rb:#}");
    let refused = doc(&run, &["rollback", "staging", "--to", &img.v1], 5);
    eprintln!("refused: {refused:#}");

    // Logs of the in-place stack: its lines, each with its container.
    let logs = doc(&run, &["logs", "staging", "api", "-n", "2"], 0);
    let lines = logs["lines"].as_array().unwrap();
    assert!(!lines.is_empty() && lines.len() <= 2, "{logs:#}");
    assert!(
        lines[0]["source"].as_str().unwrap().contains("api"),
        "{logs:#}"
    );
    doc(&run, &["logs", "staging", "--dry-run"], 0);

    // Drift: the chain says v2 while the engine runs v1 (healthy).
    s.log("staging")
        .append(
            xtask::audit::Entry {
                action: "deploy".into(),
                outcome: "success".into(),
                from: None,
                to: Some(xtask::audit::ImageRef::new(img.v2.clone(), None)),
                git_sha: None,
                reason: "a record the engine does not match".into(),
                error: None,
                set: None,
                duration_ms: 1,
            },
            false,
        )
        .unwrap();
    let d = doc(&run, &["status", "staging"], 7);
    assert_eq!(d["outcome"], "drift", "{d:#}");
    assert_eq!(d["health"]["healthy"], true, "{d:#}");
    // Nothing serves: the health check fails, which goes before drift.
    let o = s.compose("staging", &["stop", "api"]);
    assert!(o.status.success(), "{}", text(&o));
    let u = doc(&run, &["status", "staging"], 8);
    assert_eq!(u["outcome"], "unhealthy", "{u:#}");
    assert!(
        u["failed_check"]
            .as_str()
            .is_some_and(|f| f.starts_with("health check: ")),
        "{u:#}"
    );
}
