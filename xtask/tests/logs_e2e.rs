//! `logs` on compose, blue/green behind the real proxy: the serving set's
//! lines, the standby's after a warm deploy, `-n`, `--since`, bad input,
//! the dry run, and a follow stopped by SIGTERM with nothing left behind.
//! Swarm's twin is in swarm_e2e.rs.

mod common;

use common::follow::follow_the_api_then_stop;
use common::*;
use time::format_description::well_known::Rfc3339;

#[test]
fn logs_of_the_serving_and_standby_sets_with_tail_since_and_a_follow_stopped_by_sigterm() {
    let img = images();
    let s = Stack::with(
        "logs",
        Opts {
            blue_green: true,
            ..Opts::default()
        },
    );
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    let v = |t: &str| format!("version={t} ");

    // Default: the serving set (v2), every app service, each line prefixed.
    let o = s.ok(&["logs", "staging"]);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("testbed api: {}", v(&img.v2))),
        "{out}"
    );
    assert!(
        out.contains(&format!("testbed worker: {}", v(&img.v2))),
        "{out}"
    );
    assert!(
        !out.contains(&v(&img.v1)),
        "the standby's lines leaked in:\n{out}"
    );
    assert!(out.lines().all(|l| l.contains(" | ")), "{out}");

    // The warm standby (v1): its api only.
    let o = s.ok(&["logs", "staging", "api", "--set", "standby"]);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("testbed api: {}", v(&img.v1))),
        "{out}"
    );
    assert!(
        !out.contains(&v(&img.v2)) && !out.contains("testbed worker"),
        "{out}"
    );

    // -n: the last line of the one api container.
    s.mark("staging", "tail-marker");
    let o = s.ok(&["logs", "staging", "api", "-n", "1"]);
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].ends_with("testbed api: GET /tail-marker -> 404"),
        "{lines:?}"
    );

    // --since: only what came after the mark.
    let t = time::OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    s.mark("staging", "since-marker");
    let o = s.ok(&["logs", "staging", "api", "--since", &t]);
    let out = stdout(&o);
    assert!(out.contains("GET /since-marker -> 404"), "{out}");
    assert!(
        !out.contains("tail-marker") && !out.contains("version="),
        "{out}"
    );
    let o = s.ok(&["logs", "staging", "api", "--since", "1h"]);
    assert!(stdout(&o).contains("tail-marker"));

    // Bad input: one line, exit 1, nothing printed on stdout.
    assert_bad_input(
        &s.run(&["logs", "nowhere"]),
        "unknown environment `nowhere`",
    );
    assert_bad_input(&s.run(&["logs", "staging", "db"]), "unknown service `db`");
    assert_bad_input(
        &s.run(&["logs", "staging", "--set", "purple"]),
        "unknown set `purple`",
    );
    assert_bad_input(
        &s.run(&["logs", "staging", "--since", "yesterday"]),
        "invalid --since",
    );
    assert_bad_input(
        &s.run(&["logs", "staging", "--set", "amber"]),
        "no amber set",
    );

    // The dry run shows the commands and runs none.
    let o = s.ok(&["--dry-run", "logs", "staging", "api", "-f", "-n", "5"]);
    let out = stdout(&o);
    assert!(out.contains("docker logs --follow --tail 5 "), "{out}");
    assert!(!out.contains("testbed api:"), "{out}");

    // JSON: the lines, with their container.
    let o = s.ok(&["--format", "json", "logs", "staging", "api", "-n", "1"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["task"], "logs");
    assert_eq!(doc["lines"].as_array().unwrap().len(), 1, "{doc}");
    assert!(
        doc["lines"][0]["source"].as_str().unwrap().contains("api"),
        "{doc}"
    );

    // -f: a line logged after it started arrives; SIGTERM ends it with 143,
    // and the docker processes it started are gone.
    follow_the_api_then_stop(&s, "follow-marker", "compose");
}
