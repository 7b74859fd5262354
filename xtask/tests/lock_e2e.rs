//! A maintenance hold against real deploys (the testbed stack on the local
//! engines): while `lock acquire -m MESSAGE` holds staging, a real
//! `deploy-staging` and a `rollback` are refused with exit 5, naming the
//! holder and the message, and nothing runs differently; `lock release`
//! lets the next deploy through. Every step is in the chain, which verifies.

mod common;

use common::*;

#[test]
fn a_maintenance_hold_refuses_a_real_deploy_and_release_lets_it_through() {
    let img = images();
    let s = Stack::new("maint");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let api = s.container_id("staging", "api");
    let msg = "db migration, back by 15:00";

    s.ok(&["lock", "acquire", "staging", "-m", msg]);
    let o = s.run(&["deploy-staging", "--tag", &img.v2]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("environment `staging` is held for maintenance by e2e-test (USER) on ")
            && e.contains(&format!(
                ": \"{msg}\"; `cargo xtask lock release staging` ends it"
            )),
        "{e}"
    );
    // Nothing changed: same version, same container.
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    assert_eq!(s.container_id("staging", "api"), api);
    let o = s.ok(&["status", "staging"]);
    assert!(
        stdout(&o).contains("maintenance: HELD by e2e-test (USER) on "),
        "{}",
        text(&o)
    );

    s.ok(&["lock", "release", "staging", "-m", "migration done"]);
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    assert_eq!(s.health("staging")["version"], img.v2.as_str());

    // A rollback is held off the same way.
    s.ok(&["lock", "acquire", "staging", "-m", msg]);
    let o = s.run(&["rollback", "staging", "--reason", "bad release"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(stderr(&o).contains(&format!("\"{msg}\"")), "{}", text(&o));
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    s.ok(&["lock", "release", "staging"]);

    let got: Vec<(String, String)> = s
        .records("staging")
        .into_iter()
        .map(|r| (r.action, r.outcome))
        .collect();
    let want = [
        ("deploy", "success"),
        ("lock-acquire", "success"),
        ("deploy", "refused"),
        ("lock-release", "success"),
        ("deploy", "success"),
        ("lock-acquire", "success"),
        ("rollback", "refused"),
        ("lock-release", "success"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, o)| (a.to_string(), o.to_string()))
        .collect();
    assert_eq!(got, want);
    // The refusal's record names the hold too, and the chain and its sink verify.
    let refused = &s.records("staging")[2];
    let error = refused.error.as_deref().unwrap_or_default();
    assert!(error.contains(msg), "{refused:?}");
    s.ok(&["audit", "verify", "--env", "staging"]);
}
