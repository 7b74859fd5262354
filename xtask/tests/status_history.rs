//! `status`, `history` and `audit show` through the real binary: all three
//! derived from the chain, in text and JSON.

#[path = "audit_support.rs"]
mod support;

use support::*;
use xtask::audit::{fitted, line_form, Record, GENESIS};

fn records(fx: &Fixture) -> Vec<Record> {
    fx.log().records().unwrap()
}

/// deploy v0, v1, v2, a failed deploy of v3 (rolled back), then a rollback from v2 to v1.
fn deployed() -> Fixture {
    let fx = Fixture::new(false);
    let log = fx.log();
    log.append(entry("deploy", "success", None, "sha-v0", "first"), false)
        .unwrap();
    log.append(
        entry("deploy", "success", Some("sha-v0"), "sha-v1", "deploy"),
        false,
    )
    .unwrap();
    log.append(
        entry("deploy", "success", Some("sha-v1"), "sha-v2", "deploy"),
        false,
    )
    .unwrap();
    log.append(
        entry(
            "deploy",
            "rolled-back",
            Some("sha-v2"),
            "sha-v3",
            "health gate failed",
        ),
        false,
    )
    .unwrap();
    log.append(
        entry("security-modes-test", "success", None, "sha-v2", "evidence"),
        false,
    )
    .unwrap();
    log.append(
        entry(
            "rollback",
            "success",
            Some("sha-v2"),
            "sha-v1",
            "health-check-failure",
        ),
        false,
    )
    .unwrap();
    fx
}

#[test]
fn status_names_current_previous_good_last_event_and_head() {
    let fx = deployed();
    let recs = records(&fx);
    let o = fx.xtask(&["status", "staging"]);
    // No stack runs here: the health URL does not answer, which is exit 8,
    // named in one line.
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    assert!(
        error_line(&o).starts_with("error: staging: health check: the serving version sha-v1 is unhealthy: http://127.0.0.1:1/health: "),
        "{}",
        text(&o)
    );
    // The last event on one line where it fits 100 columns, else split.
    let (event, _) = fitted("last event: ", recs.last().unwrap(), 100);
    // This fixture has no compose file, so the engine cannot be asked; the
    // line says so (the e2e tests show what runs and drift).
    let out = stdout(&o);
    let engine = out.lines().nth(3).unwrap_or_default();
    assert!(
        engine.starts_with("running now: unknown (env `staging`: compose file"),
        "{out}"
    );
    let rest: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("running now: ") && !l.starts_with("health: FAILING: "))
        .collect();
    assert_eq!(
        rest.join("\n") + "\n",
        format!(
            "env: staging\ncurrent: sha-v1\nrollback target: sha-v0\n{}\nsink: none configured\nrecords: 6\naudit head: {}\n",
            event.join("\n"),
            fx.head()
        )
    );
    assert!(stdout(&o).lines().all(|l| l.chars().count() <= 100));
    let o = fx.xtask(&["--format", "json", "status", "staging"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["current"], "sha-v1");
    // After a rollback from v2 to v1 the next target is v0, never v2.
    assert_eq!(v["rollback_target"], "sha-v0");
    assert_eq!(v["last_event"]["action"], "rollback");
    assert_eq!(v["head"], fx.head());
}

#[test]
fn history_lists_deployments_and_the_rollback_target() {
    let fx = deployed();
    let recs = records(&fx);
    let o = fx.xtask(&["history", "staging"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut want = String::new();
    for r in recs.iter().filter(|r| r.action != "security-modes-test") {
        want.push_str(&format!("#{} {}\n", r.seq, line_form(r)));
    }
    want.push_str("current: sha-v1\nrollback target: sha-v0\n");
    assert_eq!(stdout(&o), want);
    let o = fx.xtask(&["--format", "json", "history", "staging"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["deployments"].as_array().unwrap().len(), 5);
    assert_eq!(v["rollback_target"], "sha-v0");

    let empty = Fixture::new(false);
    let o = empty.xtask(&["status", "staging"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("current: none (nothing deployed yet)\n"),
        "{}",
        text(&o)
    );
    assert!(
        stdout(&o).ends_with(&format!("records: 0\naudit head: {GENESIS}\n")),
        "{}",
        text(&o)
    );
}

#[test]
fn status_and_history_refuse_a_chain_that_does_not_verify() {
    let fx = deployed();
    let mut lines = fx.lines();
    lines.swap(1, 2);
    fx.write_lines(&lines);
    for task in ["status", "history"] {
        let o = fx.xtask(&[task, "staging"]);
        assert_eq!(o.status.code(), Some(6), "{}", text(&o));
        assert!(error_line(&o).contains("line 2: reordered"), "{}", text(&o));
        assert!(stdout(&o).is_empty(), "{}", text(&o));
    }
}

/// Writes records with fixed timestamps, chained, as the log would.
fn write_chain(fx: &Fixture, mut recs: Vec<Record>) {
    let mut prev = GENESIS.to_string();
    let mut out = Vec::new();
    for (i, r) in recs.iter_mut().enumerate() {
        r.seq = i as u64 + 1;
        r.prev = prev;
        let line = serde_json::to_vec(r).unwrap();
        prev = xtask::audit::sha_hex(&line);
        out.extend(line);
        out.push(b'\n');
    }
    std::fs::create_dir_all(fx.path().parent().unwrap()).unwrap();
    std::fs::write(fx.path(), out).unwrap();
}

fn rec(action: &str, from: Option<&str>, to: &str, reason: &str) -> Record {
    serde_json::from_value(serde_json::json!({
        "seq": 0, "ts": "2024-01-15T14:30:00.123456Z", "env": "staging", "action": action, "outcome": "success",
        "from": from.map(|t| serde_json::json!({"tag": t})), "to": {"tag": to}, "git_sha": null,
        "actor": "deploy-user", "host": "h", "reason": reason, "duration_ms": 1, "prev": ""
    }))
    .unwrap()
}

#[test]
fn show_prints_the_familiar_line_form() {
    let fx = Fixture::new(false);
    write_chain(
        &fx,
        vec![
            rec("deploy", None, "sha-abc123", "first"),
            rec("deploy", Some("sha-abc123"), "sha-def456", "deploy"),
            rec(
                "rollback",
                Some("sha-def456"),
                "sha-abc123",
                "health-check-failure",
            ),
        ],
    );
    let o = fx.xtask(&["audit", "show", "--env", "staging", "-n", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        stdout(&o),
        "3  2024-01-15T14:30:00Z | rollback | success | from=sha-def456 | to=sha-abc123 | actor=deploy-user | reason=health-check-failure\n"
    );
    let o = fx.xtask(&["audit", "show"]);
    assert_eq!(stdout(&o).lines().count(), 3, "{}", text(&o));
    let o = fx.xtask(&[
        "--format", "json", "audit", "show", "--env", "staging", "-n", "2",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let v = &doc["records"];
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["reason"], "health-check-failure");
    assert_eq!(v[1]["ts"], "2024-01-15T14:30:00.123456Z");
}

#[test]
fn reasons_are_stored_verbatim_and_shown_inert() {
    let fx = Fixture::new(false);
    // The library takes any text (the CLI refuses control characters first).
    let evil = "x | actor=root | reason=ok\n2024-01-01T00:00:00Z | deploy | success\u{202e} $(id) `id` \"q\" \\";
    fx.log()
        .append(
            entry("rollback", "success", Some("sha-a"), "sha-b", evil),
            false,
        )
        .unwrap();
    // Stored verbatim, JSON-escaped: one line in the file.
    assert_eq!(fx.lines().len(), 1);
    assert_eq!(records(&fx)[0].reason, evil);
    let o = fx.xtask(&["audit", "show", "--env", "staging"]);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.ends_with(
            " | reason=x \\| actor=root \\| reason=ok\\u{a}2024-01-01T00:00:00Z \\| deploy \\| success\\u{202e} $(id) `id` \"q\" \\\\\n"
        ),
        "{out}"
    );
    // Through the CLI, a control character never gets that far.
    let o = fx.xtask(&[
        "audit",
        "repair",
        "--env",
        "staging",
        "--reason",
        "two\nlines",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn show_on_a_broken_chain_shows_what_is_there_then_exits_6() {
    let fx = deployed();
    let mut lines = fx.lines();
    lines[2] = b"{\"not\": \"a record\"}\n".to_vec();
    fx.write_lines(&lines);
    let o = fx.xtask(&["audit", "show", "--env", "staging"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(lines[1].starts_with("2  "), "{out}");
    assert_eq!(lines[2], "3! ?? not a record: {\"not\": \"a record\"}");
    assert!(
        lines[3].starts_with("   ^ the chain breaks here: line 3: not a record")
            && lines[3].ends_with("the lines after it are unverified"),
        "{out}"
    );
    for (i, l) in lines[4..].iter().enumerate() {
        assert!(l.starts_with(&format!("{}? ", i + 4)), "{out}");
    }
    assert!(
        error_line(&o).contains("line 3: not a record"),
        "{}",
        text(&o)
    );
}
