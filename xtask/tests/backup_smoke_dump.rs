//! `backup-smoke --dump FILE`: the operator's real use. A dump made
//! elsewhere (here: by a cluster of the test's own) restores into a scratch
//! database and its chain verifies; with a manifest beside it, count, head
//! and digest are compared too. A dump whose chain was tampered with, a
//! dump that does not match its manifest, and a truncated dump all fail
//! with exit 6, naming what broke (as `::error::` lines in CI).

#[path = "backup_smoke_support.rs"]
mod support;

use support::*;
use xtask::flags::Profile;

#[test]
fn an_external_dump_verifies_and_its_manifest_is_compared_next_time() {
    let c = Cluster::start();
    c.chain("app", Profile::Default, 30);
    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("app", dir.path());
    let arg = dump.display().to_string();

    let r = smoke(&[], &["--dump", &arg], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    for a in [
        "dump-listed",
        "restored",
        "head-is-last-row",
        "sql-verifier-clean",
        "rust-verifier-agrees",
        "triggers-enabled",
        "timezone-invariant",
        "append-chains",
    ] {
        assert_eq!(r.assertion(a), "pass", "{a}:\n{}", r.text());
    }
    for a in ["count-equal", "head-byte-exact", "manifest-matches"] {
        assert_eq!(
            r.assertion(a),
            "skip",
            "{a} without a manifest:\n{}",
            r.text()
        );
    }
    assert_eq!(r.report["after_rust"]["total"], 30);
    assert!(r.report["negative_controls"].as_array().unwrap().is_empty());
    assert!(r.left_work_dir().is_empty());

    // Keep the manifest the report gave beside the dump: now it is compared.
    let manifest = dir.path().join("app.dump.manifest.json");
    std::fs::write(
        &manifest,
        serde_json::to_string_pretty(&r.report["manifest"]).unwrap(),
    )
    .unwrap();
    let r = smoke(&[], &["--dump", &arg], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    for a in ["count-equal", "head-byte-exact", "manifest-matches"] {
        assert_eq!(r.assertion(a), "pass", "{a}:\n{}", r.text());
    }

    // A manifest that says more rows than the dump has: rows went missing.
    let mut m = r.report["manifest"].clone();
    m["rows"] = serde_json::json!(31);
    std::fs::write(&manifest, m.to_string()).unwrap();
    let r = smoke(&[], &["--dump", &arg], &[("GITHUB_ACTIONS", "true")]);
    assert_eq!(r.code(), Some(6), "{}", r.text());
    assert_eq!(r.assertion("count-equal"), "fail");
    assert_eq!(r.assertion("manifest-matches"), "fail");
    assert!(
        r.stderr()
            .contains("::error::backup-smoke: count-equal: 31 rows in the manifest, 30 restored"),
        "{}",
        r.text()
    );
    assert_eq!(r.report["ok"], false);
}

#[test]
fn a_tampered_dump_fails_with_exit_6_and_names_the_row() {
    let c = Cluster::start();
    c.chain("app", Profile::Default, 20);
    c.psql(
        "app",
        &[
            "ALTER TABLE audit_events DISABLE TRIGGER USER",
            "UPDATE audit_events SET details = '{\"amount\": 1.5}' WHERE seq = 7",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("app", dir.path());
    let r = smoke(
        &[],
        &["--dump", &dump.display().to_string()],
        &[("GITHUB_ACTIONS", "true")],
    );
    assert_eq!(r.code(), Some(6), "{}", r.text());
    assert_eq!(r.assertion("sql-verifier-clean"), "fail");
    assert_eq!(r.assertion("rust-verifier-agrees"), "fail");
    // The disabled triggers travel in the dump as disabled: named too.
    assert_eq!(r.assertion("triggers-enabled"), "fail", "{}", r.text());
    assert_eq!(r.report["after_rust"]["break"]["kind"], "row-hash");
    assert_eq!(r.report["after_rust"]["break"]["at"], "7");
    assert_eq!(r.report["after_sql"]["break"]["at"], "7");
    assert!(
        r.stderr()
            .contains("::error::backup-smoke: sql-verifier-clean: row-hash at 7"),
        "{}",
        r.text()
    );
    assert!(r.left_work_dir().is_empty());
}

#[test]
fn a_truncated_dump_does_not_restore_and_fails_with_exit_6() {
    let c = Cluster::start();
    c.chain("app", Profile::Default, 10);
    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("app", dir.path());
    let bytes = std::fs::read(&dump).unwrap();
    std::fs::write(&dump, &bytes[..bytes.len() / 2]).unwrap();
    let r = smoke(&[], &["--dump", &dump.display().to_string()], &[]);
    assert_eq!(r.code(), Some(6), "{}", r.text());
    assert_eq!(r.report["ok"], false);
    assert!(
        r.report["error"].as_str().unwrap().contains("pg_restore"),
        "{}",
        r.text()
    );
    assert!(r.left_work_dir().is_empty());
}

#[test]
fn a_certctl_dump_verifies_under_the_certctl_profile_only() {
    let c = Cluster::start();
    c.chain("certctl", Profile::Certctl, 16);
    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("certctl", dir.path()).display().to_string();
    let r = smoke(&[], &["--dump", &dump, "--profile", "certctl"], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert_eq!(r.assertion("sql-verifier-clean"), "pass");
    assert_eq!(r.assertion("rust-verifier-agrees"), "pass");
    assert_eq!(r.assertion("append-chains"), "pass");
    // The same dump read with the wrong canonical form does not verify.
    let r = smoke(&[], &["--dump", &dump], &[]);
    assert_eq!(r.code(), Some(6), "{}", r.text());
}

#[test]
fn a_missing_dump_file_is_bad_input() {
    let r = smoke(&[], &["--dump", "/nonexistent/nightly.dump"], &[]);
    assert_eq!(r.code(), Some(1), "{}", r.text());
    assert!(r.stderr().contains("no such file"), "{}", r.text());
}
