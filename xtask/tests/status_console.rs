//! The operator's console through the real binary: `status` fits 100
//! columns while `--format json` and `audit show --full` keep every byte,
//! `history -n N --since WHEN`, the actor recorded where `USER` is unset,
//! and argument errors that name the argument and the fix.

#[path = "audit_support.rs"]
mod support;

use support::*;
use xtask::audit::{Record, GENESIS};

/// Writes `recs` as a chain (seq and prev filled in), with their own timestamps.
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

fn rec(ts: &str, action: &str, to: &str, reason: &str) -> Record {
    serde_json::from_value(serde_json::json!({
        "seq": 0, "ts": ts, "env": "staging", "action": action, "outcome": "success",
        "from": null, "to": {"tag": to}, "git_sha": null, "actor": "deploy-user (USER)",
        "host": "h", "reason": reason, "duration_ms": 1, "prev": ""
    }))
    .unwrap()
}

fn now_minus(hours: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::hours(hours);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn status_fits_100_columns_and_json_and_show_full_keep_the_whole_reason() {
    let fx = Fixture::new(false);
    let long = format!(
        "28 rule FAILs: {}",
        "tls: plaintext accepted on 6379; ".repeat(150)
    );
    write_chain(
        &fx,
        vec![
            rec(&now_minus(2), "deploy", "sha-aaaaaaaaaaaa", "first"),
            rec(
                &now_minus(1),
                "security-modes-test",
                "sha-aaaaaaaaaaaa",
                &long,
            ),
        ],
    );
    let o = fx.xtask(&["status", "staging"]);
    // No stack runs here, so the health URL does not answer: exit 8.
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    let out = stdout(&o);
    for l in out.lines() {
        assert!(
            l.chars().count() <= 100,
            "{} columns: {l}",
            l.chars().count()
        );
    }
    assert!(
        out.contains("\n  reason=28 rule FAILs: tls: plaintext"),
        "{out}"
    );
    assert!(
        out.contains("`cargo xtask audit show staging -n 1 --full` shows it whole"),
        "{out}"
    );
    let o = fx.xtask(&["--format", "json", "status", "staging"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["last_event"]["reason"], long.as_str());

    let o = fx.xtask(&["audit", "show", "--env", "staging", "-n", "1"]);
    let short = stdout(&o);
    assert!(short.trim_end().ends_with('…'), "{short}");
    assert!(short.len() < 400, "{short}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--full shows them whole"));
    let o = fx.xtask(&["audit", "show", "--env", "staging", "-n", "1", "--full"]);
    assert!(
        stdout(&o)
            .trim_end()
            .ends_with(&format!("reason={}", long.trim_end())),
        "{}",
        text(&o)
    );
}

#[test]
fn history_takes_the_newest_n_and_a_since() {
    let fx = Fixture::new(false);
    write_chain(
        &fx,
        vec![
            rec(&now_minus(72), "deploy", "sha-v1", "a"),
            rec(&now_minus(30), "deploy", "sha-v2", "b"),
            rec(&now_minus(5), "security-modes-test", "sha-v3", "c"),
            rec(&now_minus(3), "deploy", "sha-v3", "d"),
            rec(&now_minus(1), "deploy", "sha-v4", "e"),
        ],
    );
    let shown = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["history", "staging"];
        a.extend(args);
        let o = fx.xtask(&a);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(shown(&[]), ["#1", "#2", "#4", "#5"]);
    assert_eq!(shown(&["-n", "2"]), ["#4", "#5"]);
    assert_eq!(shown(&["--since", "2d"]), ["#2", "#4", "#5"]);
    assert_eq!(shown(&["--since", "4h", "-n", "1"]), ["#5"]);
    assert_eq!(shown(&["--since", &now_minus(4)]), ["#4", "#5"]);
    assert!(shown(&["--since", "30m"]).is_empty());
    // Current and the rollback target come from the whole chain, whatever is shown.
    let o = fx.xtask(&["history", "staging", "-n", "1"]);
    assert!(stdout(&o).ends_with("current: sha-v4\nrollback target: sha-v3\n"));
    let o = fx.xtask(&["--format", "json", "history", "staging", "--since", "2d"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["deployments"].as_array().unwrap().len(), 3);
    let o = fx.xtask(&["history", "staging", "--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        error_line(&o).contains("an age (90m, 2h, 3d, 1w)"),
        "{}",
        text(&o)
    );
}

/// The account name of this process's uid, read the way the xtask reads it.
fn my_account() -> (u32, String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = xtask::audit::actor::real_uid(&status).unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let name = xtask::audit::actor::account(&passwd, uid).expect("this uid has an account");
    (uid, name)
}

#[test]
fn without_user_the_record_names_the_uid_account() {
    let fx = Fixture::new(false);
    let o = fx
        .cmd(&["lock", "acquire", "staging", "-m", "window"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (uid, name) = my_account();
    let recs = fx.log().records().unwrap();
    assert_eq!(recs[0].actor, format!("{name} (uid {uid})"));
    // A huge USER is capped at 1 KiB in the record.
    let o = fx
        .cmd(&["lock", "release", "staging"])
        .env("USER", "u".repeat(100_000))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let actor = &fx.log().records().unwrap()[1].actor;
    assert!(
        actor.len() <= 1024 && actor.ends_with("… (USER)"),
        "{}",
        actor.len()
    );
}

#[test]
fn argument_errors_name_the_argument_and_the_fix_in_one_line() {
    let fx = Fixture::new(false);
    for (args, want) in [
        (
            &["status"][..],
            "error: the following required arguments were not provided: <ENV>; \
             usage: cargo xtask status <ENV>; see `cargo xtask status --help`",
        ),
        (
            &["deploy-staging", "--force"][..],
            "error: the following required arguments were not provided: --reason <TEXT>; \
             usage: cargo xtask deploy-staging --reason <TEXT> --force; \
             see `cargo xtask deploy-staging --help`",
        ),
    ] {
        let o = fx.xtask(args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stderr), format!("{want}\n"));
    }
    let o = fx.xtask(&["deploy", "staging"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("tip: some similar subcommands exist:"), "{e}");
    assert!(
        e.contains("did you mean `cargo xtask deploy-staging`"),
        "{e}"
    );
}
