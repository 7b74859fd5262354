//! `--format json` is a contract: every task prints exactly one JSON
//! document on stdout, on its success, refusal and failure paths alike, and
//! that document validates against docs/output.schema.json, with
//! `exit_code` equal to the process's exit status.
//!
//! The schema uses a small subset of JSON Schema (type, required,
//! properties, enum); [`validate`] checks exactly that subset and fails on
//! any keyword it does not know, so the schema cannot silently outgrow it.

mod common;

use serde_json::Value;

use common::*;

fn schema() -> Value {
    let text = std::fs::read_to_string(root().join("docs/output.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn type_ok(want: &Value, v: &Value) -> bool {
    let one = |t: &str| match t {
        "object" => v.is_object(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "null" => v.is_null(),
        "array" => v.is_array(),
        "boolean" => v.is_boolean(),
        other => panic!("schema type {other} is not checked here"),
    };
    match want {
        Value::String(t) => one(t),
        Value::Array(ts) => ts.iter().any(|t| one(t.as_str().unwrap())),
        other => panic!("bad type {other}"),
    }
}

/// Problems of `v` against `schema`, one line each.
fn validate(schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (k, s) in schema.as_object().unwrap() {
        match k.as_str() {
            "$schema" | "title" | "description" | "additionalProperties" => {}
            "type" => {
                if !type_ok(s, v) {
                    out.push(format!("{at}: {v} is not of type {s}"));
                }
            }
            "enum" => {
                if !s.as_array().unwrap().contains(v) {
                    out.push(format!("{at}: {v} is not one of {s}"));
                }
            }
            "required" => {
                for r in s.as_array().unwrap() {
                    if v.get(r.as_str().unwrap()).is_none() {
                        out.push(format!("{at}: missing required field {r}"));
                    }
                }
            }
            "properties" => {
                for (name, sub) in s.as_object().unwrap() {
                    if let Some(field) = v.get(name) {
                        out.extend(validate(sub, field, &format!("{at}.{name}")));
                    }
                }
            }
            other => panic!("schema keyword {other} is not checked by this test"),
        }
    }
    out
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
}

#[test]
fn every_task_prints_one_valid_document_on_every_path() {
    let s = Stack::new("json");
    let run = |a: &[&str]| s.run(a);
    // Success paths.
    for args in [
        &["status", "staging"][..],
        &["history", "staging"],
        &["lock", "status", "staging"],
        &["audit", "verify"],
        &["audit", "show", "--env", "staging"],
        &["deploy-staging", "--tag", "sha-0123456789ab", "--dry-run"],
        &[
            "rollback",
            "staging",
            "--to",
            "sha-0123456789ab",
            "--force",
            "--dry-run",
        ],
    ] {
        doc(&run, args, 0);
    }
    let plan = doc(
        &run,
        &["deploy-staging", "--tag", "sha-0123456789ab", "--dry-run"],
        0,
    );
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
        8,
    );
    assert!(sm["report"].is_object(), "{sm:#}");

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
    doc(
        &run,
        &["deploy-prod", "--tag", "sha-0123456789ab", "--dry-run"],
        5,
    );

    // Failures: bad input, a bad config, a missing image, a broken chain.
    let e = doc(&run, &["status"], 1);
    assert!(e["error"].as_str().unwrap().contains("<ENV>"), "{e:#}");
    doc(&run, &["deploy", "staging"], 1);
    doc(&run, &["status", "production"], 1);
    let f = doc(&run, &["deploy-staging", "--tag", "sha-000000000000"], 1);
    assert_eq!(
        (f["outcome"].as_str(), f["to"].as_str()),
        (Some("failure"), Some("sha-000000000000"))
    );
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
}
