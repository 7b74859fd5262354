//! `cargo xtask backup-smoke` end to end on the embedded default: a real
//! cluster, dump, restore, every assertion, and every negative control
//! caught and named in the JSON report. The certctl profile runs on rows
//! written by a trigger that implements certctl's published form.

#[path = "backup_smoke_support.rs"]
mod support;

use support::*;

const ASSERTIONS: [&str; 13] = [
    "known-answer",
    "verified-before-dump",
    "dump-listed",
    "restored",
    "count-equal",
    "head-byte-exact",
    "head-is-last-row",
    "sql-verifier-clean",
    "rust-verifier-agrees",
    "manifest-matches",
    "triggers-enabled",
    "timezone-invariant",
    "append-chains",
];

const CONTROLS: [&str; 9] = [
    "modify-row",
    "delete-middle-row",
    "delete-oldest-row",
    "delete-newest-rows",
    "swap-order",
    "truncate",
    "roll-back-head",
    "cut-tail-and-head",
    "move-separator",
];

/// Which checks caught a control, e.g. ["sql-verifier", "rust-verifier", "manifest"].
fn caught_by(c: &serde_json::Value) -> Vec<String> {
    c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["caught"] == true)
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect()
}

fn finding(c: &serde_json::Value, check: &str) -> String {
    c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn embedded_default_restores_byte_exact_and_catches_every_negative_control() {
    require_postgres();
    let r = smoke(&[], &[], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert_eq!(r.report["ok"], true);
    assert_eq!(r.report["profile"], "default");
    for a in ASSERTIONS {
        assert_eq!(r.assertion(a), "pass", "{a}:\n{}", r.text());
    }
    assert_eq!(r.report["after_rust"]["total"], 24);
    assert_eq!(r.report["manifest"]["rows"], 24);
    assert_eq!(
        r.report["manifest"]["head"],
        r.report["after_rust"]["head"]["seq"].to_string()
            + ":"
            + r.report["after_rust"]["head"]["hash"].as_str().unwrap()
    );

    let controls = r.report["negative_controls"].as_array().unwrap();
    assert_eq!(
        controls
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        CONTROLS
    );
    for name in CONTROLS {
        let c = r.control(name);
        assert_eq!(
            c["detected"],
            true,
            "{name} was not detected:\n{}",
            r.text()
        );
        assert_eq!(c["expect_detected"], true);
        assert!(!c["what"].as_str().unwrap().is_empty());
    }
    // The report names what broke, and where.
    let all = ["sql-verifier", "rust-verifier", "manifest"];
    assert!(
        finding(&r.control("modify-row"), "sql-verifier").starts_with("row-hash at 13"),
        "{}",
        r.text()
    );
    assert!(finding(&r.control("modify-row"), "rust-verifier").starts_with("row-hash at 13"));
    assert!(
        finding(&r.control("delete-middle-row"), "sql-verifier").starts_with("seq-gap at 14"),
        "{}",
        r.text()
    );
    assert!(finding(&r.control("delete-oldest-row"), "rust-verifier").starts_with("first-seq at 2"));
    assert!(finding(&r.control("delete-newest-rows"), "sql-verifier").starts_with("head-ahead"));
    assert_eq!(caught_by(&r.control("delete-newest-rows")), all);
    assert!(finding(&r.control("truncate"), "rust-verifier").contains("last row is seq 0"));
    assert!(finding(&r.control("roll-back-head"), "sql-verifier").starts_with("head-behind"));
    assert!(
        finding(&r.control("swap-order"), "sql-verifier").starts_with("row-hash at 12"),
        "{}",
        r.text()
    );
    // A consistent rewrite of rows and head passes both verifiers: only the
    // manifest kept outside the database catches it.
    assert_eq!(caught_by(&r.control("cut-tail-and-head")), ["manifest"]);
    // Length-prefixed fields: a moved separator changes the hash.
    assert_eq!(
        caught_by(&r.control("move-separator")),
        ["sql-verifier", "rust-verifier"]
    );

    let t: Vec<&str> = r.report["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["phase"].as_str().unwrap())
        .collect();
    for p in ["boot", "workload", "dump", "restore", "verify", "total"] {
        assert!(t.contains(&p), "no timing for {p}: {t:?}");
    }
    assert!(r.left_work_dir().is_empty(), "left {:?}", r.left_work_dir());
    // Progress lines are short labels: the commands show with -v and in
    // the dry run, not in a log that is no terminal.
    let err = r.stderr();
    assert!(
        err.contains("done: dump (exit 6 if pg_dump cannot)"),
        "{err}"
    );
    for l in err.lines() {
        assert!(l.chars().count() <= 200, "{} chars: {l}", l.chars().count());
    }
}

#[test]
fn certctl_profile_verifies_rows_written_by_its_published_form_and_names_its_blind_spot() {
    require_postgres();
    let r = smoke(&[], &["--profile", "certctl", "--rows", "40"], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    for a in ASSERTIONS {
        assert_eq!(r.assertion(a), "pass", "{a}:\n{}", r.text());
    }
    assert_eq!(r.report["after_rust"]["total"], 40);
    // Equal timestamps and ids out of insertion order: walking (timestamp, id)
    // as published would report breaks in this sound chain; the link walk does not.
    assert!(
        r.report["after_rust"]["published_order_breaks"]
            .as_u64()
            .unwrap()
            > 0,
        "{}",
        r.text()
    );
    assert!(
        r.report["warnings"].to_string().contains("false breaks"),
        "{}",
        r.text()
    );
    for name in CONTROLS {
        let c = r.control(name);
        if name == "move-separator" {
            assert_eq!(
                c["detected"],
                false,
                "the bare '|' form cannot see a moved separator:\n{}",
                r.text()
            );
            assert_eq!(c["expect_detected"], false);
            assert!(c["why_undetectable"].as_str().unwrap().contains("bare '|'"));
        } else {
            assert_eq!(c["detected"], true, "{name}:\n{}", r.text());
        }
    }
    assert!(
        finding(&r.control("delete-oldest-row"), "sql-verifier").starts_with("no-genesis"),
        "{}",
        r.text()
    );
    assert!(
        finding(&r.control("delete-middle-row"), "rust-verifier").starts_with("orphan"),
        "{}",
        r.text()
    );
    assert!(
        finding(&r.control("swap-order"), "rust-verifier").starts_with("row-hash"),
        "{}",
        r.text()
    );
    assert!(r.left_work_dir().is_empty());
}

#[test]
fn text_output_is_a_readable_summary_and_dry_run_makes_nothing() {
    require_postgres();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["--dry-run", "backup-smoke", "--rows", "100"])
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    for s in [
        "initdb",
        "pg_ctl",
        "--format=custom --no-owner --no-acl",
        "pg_restore --list",
        "--exit-on-error",
        "PGPASSWORD='***'",
        "teardown",
    ] {
        assert!(plan.contains(s), "the plan does not show {s}:\n{plan}");
    }
    let dir = plan
        .lines()
        .find_map(|l| l.trim().strip_prefix("work directory: "))
        .unwrap();
    let dir = dir.split(" (from").next().unwrap();
    assert!(!std::path::Path::new(dir).exists(), "dry run created {dir}");

    let r = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["backup-smoke", "--rows", "8"])
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", text(&r));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.starts_with("backup-smoke PASS: profile default, embedded cluster"),
        "{out}"
    );
    assert!(out.contains("  ok   head-byte-exact"), "{out}");
    assert!(out.contains("negative controls"), "{out}");
    assert!(out.trim_end().ends_with("backup-smoke: success"), "{out}");
}

#[test]
fn too_few_rows_is_bad_input() {
    let r = smoke(&[], &["--rows", "3"], &[]);
    assert_eq!(r.code(), Some(1), "{}", r.text());
    assert!(
        r.stderr().contains("--rows must be at least 8"),
        "{}",
        r.text()
    );
}

#[test]
fn leftover_work_directories_are_named_and_removed_only_with_destructive() {
    require_postgres();
    // A directory of a run whose process is gone (pid 4194303 is the kernel's maximum).
    let dead = std::env::temp_dir().join(format!(
        "xtask-backup-smoke-4194303-1000000000-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(dead.join("data")).unwrap();
    let r = smoke(&["--dry-run"], &[], &[]);
    let plan = r.out.stdout.clone();
    assert!(
        String::from_utf8_lossy(&plan).contains(&format!("{}: left alone", dead.display())),
        "{}",
        r.text()
    );
    let r = smoke(&[], &["--rows", "8"], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert!(dead.exists(), "removed without --destructive");
    let r = smoke(&[], &["--rows", "8", "--destructive"], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert!(!dead.exists(), "--destructive left {}", dead.display());
    assert!(
        r.report["warnings"]
            .to_string()
            .contains("removed the leftover"),
        "{}",
        r.text()
    );
}
