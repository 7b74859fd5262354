//! A passing smoke with `--tag` leaves the evidence the production
//! promotion gate reads: a `backup-smoke | success` record for that tag in
//! the environment's audit log. A failing smoke is recorded as a failure,
//! which is no evidence.

#[path = "backup_smoke_support.rs"]
mod support;

use support::*;
use xtask::audit::{History, Log};
use xtask::flags::Profile;

const CONFIG: &str = r#"
[env.staging]
project = "fetchml-bsmoke-evidence"
compose_files = ["docker-compose.yml"]
app_services = ["api"]
images = { api = "127.0.0.1:5000/fetchml/testbed" }
health_urls = ["http://127.0.0.1:9/health"]
compliance_mode = "standard"
"#;

#[test]
fn a_pass_with_a_tag_is_recorded_and_a_failure_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let state = dir.path().join("state");
    let (cfg, st) = (config.display().to_string(), state.display().to_string());
    let global = ["--config", cfg.as_str(), "--state-dir", st.as_str()];
    let log = Log::new(&state.join("staging"), "staging", None);

    let r = smoke(&global, &["--rows", "8", "--tag", "sha-0123456789ab"], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    let records = log.records().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].action.as_str(), records[0].outcome.as_str()),
        ("backup-smoke", "success")
    );
    assert!(History::new(records).has_evidence("backup-smoke", "sha-0123456789ab"));
    assert!(log.verify().is_ok());

    let c = Cluster::start();
    c.chain("app", Profile::Default, 8);
    c.psql(
        "app",
        &[
            "ALTER TABLE audit_events DISABLE TRIGGER USER",
            "DELETE FROM audit_events WHERE seq = 4",
        ],
    );
    let dump = c.dump("app", dir.path()).display().to_string();
    let r = smoke(
        &global,
        &[
            "--dump",
            &dump,
            "--tag",
            "sha-bbbbbbbbbbbb",
            "--env",
            "staging",
        ],
        &[],
    );
    assert_eq!(r.code(), Some(6), "{}", r.text());
    let h = History::new(log.records().unwrap());
    assert!(
        !h.has_evidence("backup-smoke", "sha-bbbbbbbbbbbb"),
        "a failed smoke left evidence"
    );
    // The failure is recorded as one (the plan's record, on every outcome).
    assert_eq!(h.records.len(), 2);
    let last = &h.records[1];
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("backup-smoke", "failure")
    );
    // The tool's account goes in `error`; the reason stays the plan's own.
    assert!(
        last.error
            .as_deref()
            .is_some_and(|e| e.contains("check(s) failed")),
        "{last:?}"
    );
    assert!(log.verify().is_ok());
}

#[test]
fn a_bad_tag_is_refused_before_anything_runs() {
    let r = smoke(&[], &["--tag", "sha-1; rm -rf /"], &[]);
    assert_eq!(r.code(), Some(1), "{}", r.text());
    assert!(r.left_work_dir().is_empty());
}

#[test]
fn the_environments_recorded_checkpoint_catches_a_later_dump_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let state = dir.path().join("state");
    let (cfg, st) = (config.display().to_string(), state.display().to_string());
    let global = ["--config", cfg.as_str(), "--state-dir", st.as_str()];
    let log = Log::new(&state.join("staging"), "staging", None);

    let c = Cluster::start();
    c.chain("app", Profile::Default, 10);
    let night1 = tempfile::tempdir().unwrap();
    let dump = c.dump("app", night1.path()).display().to_string();
    let r = smoke(
        &global,
        &["--dump", &dump, "--tag", "sha-0123456789ab"],
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.text());
    let reason = log.records().unwrap()[0].reason.clone();
    assert!(reason.contains("; checkpoint rows=10 head=10:"), "{reason}");

    // The two newest rows cut and the head moved back to match.
    c.psql(
        "app",
        &[
            "ALTER TABLE audit_events DISABLE TRIGGER USER",
            "ALTER TABLE audit_chain_head DISABLE TRIGGER USER",
            "DELETE FROM audit_events WHERE seq > 8",
            "UPDATE audit_chain_head SET seq = 8, row_hash = (SELECT row_hash FROM audit_events WHERE seq = 8) WHERE id = 1",
        ],
    );
    let night2 = tempfile::tempdir().unwrap();
    let dump = c.dump("app", night2.path()).display().to_string();
    let r = smoke(
        &global,
        &["--dump", &dump, "--tag", "sha-0123456789ab"],
        &[],
    );
    assert_eq!(r.code(), Some(6), "{}", r.text());
    assert_eq!(r.assertion("sql-verifier-clean"), "pass", "{}", r.text());
    assert_eq!(r.assertion("checkpoint-holds"), "fail", "{}", r.text());
    assert!(
        r.text().contains("the staging audit record of"),
        "{}",
        r.text()
    );
}
