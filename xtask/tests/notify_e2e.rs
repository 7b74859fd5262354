//! Webhook notifications end to end: real deploys of the testbed on
//! compose, a webhook receiver started by the test (`common::receiver`),
//! and the rule that a notification never changes an outcome and never
//! shows its URL.

mod common;

use std::time::{Duration, Instant};

use common::receiver::{down_url, Answer, Receiver};
use common::*;

const VAR: &str = "XT_NOTIFY_URL";

/// A stack whose two environments notify the webhook in `$XT_NOTIFY_URL`,
/// with a 1 s limit per attempt and 2 retries.
fn stack(name: &str) -> Stack {
    let s = Stack::new(name);
    let mut cfg = std::fs::read_to_string(&s.config).unwrap();
    for env in ["staging", "prod"] {
        cfg.push_str(&format!(
            "\n[env.{env}.notify]\nurl_env = \"{VAR}\"\ntimeout_secs = 1\nretries = 2\n"
        ));
    }
    std::fs::write(&s.config, cfg).unwrap();
    s
}

fn run(s: &Stack, url: &str, args: &[&str]) -> std::process::Output {
    s.cmd().env(VAR, url).args(args).output().unwrap()
}

/// Nothing the tool printed or stored holds the URL's token.
fn assert_no_token(s: &Stack, token: &str, outputs: &[&std::process::Output]) {
    for o in outputs {
        assert!(
            !text(o).contains(token),
            "the webhook URL was shown:\n{}",
            text(o)
        );
    }
    let mut stored = Vec::new();
    let mut dirs = vec![s.state.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(t) = std::fs::read_to_string(&p) {
                stored.push((p, t));
            }
        }
    }
    assert!(!stored.is_empty());
    for (p, t) in stored {
        assert!(!t.contains(token), "{} holds the webhook URL", p.display());
    }
}

/// The last record of `env`'s chain as JSON, and the chain's head.
fn last_record(s: &Stack, env: &str) -> (serde_json::Value, String) {
    let head = s.log(env).verify().unwrap().head;
    let r = s.records(env).pop().unwrap();
    (serde_json::to_value(r).unwrap(), head)
}

fn failures(s: &Stack, env: &str) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(s.state.join(env).join("notify-failures.jsonl")) {
        Ok(t) => t
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn every_outcome_is_posted_with_its_record_and_head_and_a_failed_post_changes_nothing() {
    let imgs = images();
    let s = stack("notify");
    let hook = Receiver::start(Answer::Status(204));
    let token = "T0KEN-notify-success-1f2e3d";
    let url = hook.url(token);

    // Success: one post, with the record as written and the new head.
    let o = run(&s, &url, &["deploy-staging", "--tag", &imgs.v1]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    let got = hook.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    let (record, head) = last_record(&s, "staging");
    let b = &got[0].body;
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, format!("/hooks/{token}"));
    assert_eq!(b["record"], record);
    assert_eq!(b["head"], head.as_str());
    assert_eq!(last_line(&o), format!("audit head: {head}"));
    assert_eq!(
        (b["action"].as_str(), b["outcome"].as_str()),
        (Some("deploy"), Some("success"))
    );
    assert_eq!(b["exit_code"], 0);
    assert_eq!(b["record"]["to"]["tag"], imgs.v1.as_str());

    // A refusal (no --yes for prod), in JSON: posted, and the document says so.
    let o = run(
        &s,
        &url,
        &["--format", "json", "deploy-prod", "--tag", &imgs.v1],
    );
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["notify"]["sent"], true, "{doc}");
    let got = hook.requests();
    assert_eq!(got.len(), 2);
    let (record, head) = last_record(&s, "prod");
    assert_eq!(got[1].body["outcome"], "refused");
    assert_eq!(got[1].body["exit_code"], 5);
    assert_eq!(got[1].body["env"], "prod");
    assert_eq!(got[1].body["record"], record);
    assert_eq!(got[1].body["head"], head.as_str());
    assert_eq!(doc["audit_head"], head.as_str());

    // A broken deploy rolls back: posted as rolled-back, exit 3 kept.
    let broken = run(&s, &url, &["deploy-staging", "--tag", &imgs.bad]);
    assert_eq!(exit_code(&broken), 3, "{}", text(&broken));
    let got = hook.requests();
    assert_eq!(got.len(), 3);
    let (record, head) = last_record(&s, "staging");
    assert_eq!(got[2].body["outcome"], "rolled-back");
    assert_eq!(got[2].body["exit_code"], 3);
    assert_eq!(got[2].body["record"], record);
    assert_eq!(got[2].body["head"], head.as_str());
    assert!(failures(&s, "staging").is_empty());

    // Interrupted: SIGTERM once the recreate began; staging is put back,
    // the exit is 143, and the record that says so is posted.
    let mut child = s
        .cmd()
        .env(VAR, &url)
        .args(["deploy-staging", "--tag", &imgs.v2])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("recreating") {
        let mut l = String::new();
        if std::io::BufRead::read_line(&mut err, &mut l).unwrap() == 0 {
            break;
        }
        seen.push_str(&l);
    }
    // SAFETY: kill(2) of the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::io::Read::read_to_string(&mut err, &mut seen).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143), "{seen}");
    let got = hook.requests();
    assert_eq!(got.len(), 4, "{seen}");
    let (record, head) = last_record(&s, "staging");
    assert_eq!(got[3].body["exit_code"], 143);
    assert_eq!(got[3].body["record"], record);
    assert_eq!(got[3].body["head"], head.as_str());
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("interrupted by SIGTERM"),
        "{record}"
    );
    assert!(!seen.contains(token), "{seen}");

    // The receiver is down: the deploy succeeds as it would have, within
    // the posts' bound (3 attempts), and the failure is noted and shown.
    let down_token = "T0KEN-notify-down-9a8b7c";
    let t = Instant::now();
    let o = run(
        &s,
        &down_url(down_token),
        &["deploy-staging", "--tag", &imgs.v2],
    );
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(120));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "warning: notify: the webhook in ${VAR} was not told (3 attempt(s)"
        )),
        "{err}"
    );
    let (_, head) = last_record(&s, "staging");
    assert_eq!(last_line(&o), format!("audit head: {head}"));
    assert_eq!(s.history("staging").current(), Some(imgs.v2.as_str()));
    let noted = failures(&s, "staging");
    assert_eq!(noted.len(), 1, "{noted:?}");
    assert_eq!(noted[0]["head"], head.as_str());
    assert_eq!(noted[0]["attempts"], 3);
    assert_eq!(noted[0]["outcome"], "success");
    // Refused connections: the pauses alone (0.25 s + 0.5 s), well under one attempt's limit each.
    assert!(noted[0]["took_ms"].as_u64().unwrap() < 3000, "{noted:?}");
    eprintln!(
        "notify, receiver down: {} ms for 3 attempts",
        noted[0]["took_ms"]
    );

    // A receiver that never answers: each attempt ends at its 1 s limit;
    // the refusal's code is kept.
    let hung = Receiver::start(Answer::Never);
    let hung_token = "T0KEN-notify-hung-5d4c3b";
    let o2 = run(
        &s,
        &hung.url(hung_token),
        &["deploy-prod", "--tag", &imgs.v1],
    );
    assert_eq!(exit_code(&o2), 5, "{}", text(&o2));
    assert_eq!(hung.requests().len(), 3);
    let noted = failures(&s, "prod");
    assert_eq!(noted.len(), 1, "{noted:?}");
    let took = noted[0]["took_ms"].as_u64().unwrap();
    assert!((3000..3000 + 750 + 2000).contains(&took), "{noted:?}");
    eprintln!("notify, receiver hung: {took} ms for 3 attempts of 1 s");
    assert!(stderr(&o2).contains("no answer within 1s"), "{}", text(&o2));

    // The chains still verify: the failures are beside them, not in them.
    s.ok(&["audit", "verify"]);
    assert_no_token(&s, token, &[&broken]);
    assert_no_token(&s, down_token, &[&o]);
    assert_no_token(&s, hung_token, &[&o2]);
}

#[test]
fn a_dry_run_names_the_variable_and_an_unset_one_is_a_warning_not_a_refusal() {
    let s = stack("notify-dry");
    let token = "T0KEN-notify-dry-77aa";
    let o = run(
        &s,
        &format!("http://127.0.0.1:9/hooks/{token}"),
        &["deploy-staging", "--tag", "sha-0123456789ab", "--dry-run"],
    );
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "then: post the record and the new head to the webhook in ${VAR} (set;"
        )),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains(token), "{}", text(&o));
    let o = s
        .cmd()
        .env_remove(VAR)
        .args(["deploy-staging", "--tag", "sha-0123456789ab", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("NOT SET: the run warns and tells no one"),
        "{}",
        text(&o)
    );
}
