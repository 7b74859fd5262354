//! `backup-smoke --profile certctl --dump FILE` on a database shaped like a
//! real certctl one: the stand-in schema carries migration 000032's
//! `event_category` CHECK and indexes and migration 000018's WORM trigger
//! and REVOKE. Rows are written only through the chain trigger, the
//! database is dumped as an operator would (`pg_dump -Fc --no-owner
//! --no-acl`), and the smoke passes end to end, its append included. One
//! row changed on a copy (the WORM trigger lifted there only) fails with
//! exit 6 naming that row. A machine without PostgreSQL fails these tests
//! with the reason.

#[path = "backup_smoke_support.rs"]
mod support;

use support::*;
use xtask::flags::Profile;

/// One value (COPY text) of a query in `db`.
fn one(c: &Cluster, db: &str, query: &str) -> String {
    c.psql(db, &[&format!("COPY ({query}) TO STDOUT")])
        .trim_end()
        .to_string()
}

#[test]
fn a_certctl_database_with_its_constraints_and_worm_trigger_verifies_from_its_dump() {
    let c = Cluster::start();
    // The application role exists and gets every privilege on the tables
    // created next: migration 000018 must take UPDATE and DELETE away again.
    c.psql("postgres", &["CREATE ROLE certctl NOLOGIN"]);
    c.create("certctl");
    c.psql(
        "certctl",
        &["ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO certctl"],
    );
    c.fill("certctl", Profile::Certctl, 40);

    // What migration 000032 adds.
    let check = one(
        &c,
        "certctl",
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'audit_events_event_category_check'",
    );
    for category in ["cert_lifecycle", "auth", "config"] {
        assert!(check.contains(category), "{check}");
    }
    let indexes = one(
        &c,
        "certctl",
        "SELECT string_agg(indexdef, ' | ' ORDER BY indexname) FROM pg_indexes \
         WHERE tablename = 'audit_events' AND indexdef LIKE '%event_category%'",
    );
    assert!(indexes.contains("(event_category)"), "{indexes}");
    assert!(
        indexes.contains("(event_category, \"timestamp\" DESC)"),
        "{indexes}"
    );
    assert_eq!(
        one(&c, "certctl", "SELECT column_default FROM information_schema.columns WHERE table_name = 'audit_events' AND column_name = 'event_category'"),
        "'cert_lifecycle'::text"
    );
    // The append of the old smoke: refused by the CHECK, as in a real database.
    let refused = c.try_psql(
        "certctl",
        &["INSERT INTO audit_events (id, actor, actor_type, action, resource_type, resource_id, event_category) \
           VALUES ('x', 'a', 'b', 'c', 'd', 'e', 'backup')"],
    );
    assert!(
        refused.is_err_and(|e| e.contains("audit_events_event_category_check")),
        "the CHECK constraint did not refuse 'backup'"
    );

    // What migration 000018 adds: BEFORE UPDATE OR DELETE, FOR EACH ROW
    // (tgtype bits ROW 1, BEFORE 2, DELETE 8, UPDATE 16), raising check_violation.
    assert_eq!(
        one(
            &c,
            "certctl",
            "SELECT tgtype FROM pg_trigger WHERE tgname = 'audit_events_worm_trigger'"
        ),
        "27"
    );
    for change in [
        "UPDATE audit_events SET actor = actor",
        "DELETE FROM audit_events",
    ] {
        c.psql(
            "certctl",
            &[&format!(
                "DO $$ BEGIN {change}; RAISE EXCEPTION 'not refused: {change}'; \
                 EXCEPTION WHEN check_violation THEN NULL; END $$"
            )],
        );
    }
    assert_eq!(
        one(
            &c,
            "certctl",
            "SELECT has_table_privilege('certctl', 'audit_events', 'INSERT')::text || ' ' || \
             has_table_privilege('certctl', 'audit_events', 'UPDATE')::text || ' ' || \
             has_table_privilege('certctl', 'audit_events', 'DELETE')::text"
        ),
        "true false false"
    );
    // Every row was chained by the trigger; none was changed after.
    assert_eq!(
        one(
            &c,
            "certctl",
            "SELECT count(*) FROM audit_events WHERE row_hash IS NULL"
        ),
        "0"
    );

    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("certctl", dir.path()).display().to_string();
    let r = smoke(&[], &["--profile", "certctl", "--dump", &dump], &[]);
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
    assert_eq!(r.report["after_rust"]["total"], 40);
    assert!(r.left_work_dir().is_empty());
}

#[test]
fn one_row_changed_on_a_copy_fails_with_exit_6_naming_that_row() {
    let c = Cluster::start();
    c.chain("certctl", Profile::Certctl, 20);
    let id = one(
        &c,
        "certctl",
        "SELECT id FROM audit_events ORDER BY \"timestamp\", id OFFSET 10 LIMIT 1",
    );
    c.psql("postgres", &["CREATE DATABASE changed TEMPLATE certctl"]);
    // The WORM trigger is lifted for the one UPDATE, in the copy only.
    c.psql(
        "changed",
        &[
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_worm_trigger",
            &format!("UPDATE audit_events SET resource_id = resource_id || ' (edited)' WHERE id = '{id}'"),
            "ALTER TABLE audit_events ENABLE TRIGGER audit_events_worm_trigger",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("changed", dir.path()).display().to_string();
    let r = smoke(
        &[],
        &["--profile", "certctl", "--dump", &dump],
        &[("GITHUB_ACTIONS", "true")],
    );
    assert_eq!(r.code(), Some(6), "{}", r.text());
    assert_eq!(r.assertion("sql-verifier-clean"), "fail");
    assert_eq!(r.assertion("rust-verifier-agrees"), "fail");
    assert_eq!(r.assertion("triggers-enabled"), "pass", "{}", r.text());
    for side in ["after_sql", "after_rust"] {
        assert_eq!(r.report[side]["break"]["kind"], "row-hash", "{}", r.text());
        assert_eq!(r.report[side]["break"]["at"], id.as_str(), "{}", r.text());
    }
    assert!(
        r.stderr().contains(&format!(
            "::error::backup-smoke: sql-verifier-clean: row-hash at {id}"
        )),
        "{}",
        r.text()
    );
    // The original, untouched, still verifies.
    let original = c.dump("certctl", dir.path()).display().to_string();
    let r = smoke(&[], &["--profile", "certctl", "--dump", &original], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
}

#[test]
fn the_wrong_profile_names_the_missing_column() {
    let c = Cluster::start();
    c.chain("certctl", Profile::Certctl, 8);
    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("certctl", dir.path()).display().to_string();
    let r = smoke(&[], &["--dump", &dump], &[]);
    assert_eq!(r.code(), Some(6), "{}", r.text());
    let error = r.report["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("assert-restored could not run: ")
            && error.ends_with("ERROR:  column h.seq does not exist"),
        "{}",
        r.text()
    );
}

/// The ids of the `n` newest rows in chain order (following the links back
/// from the head), and the row_hash of the row before them.
fn newest(c: &Cluster, db: &str, n: usize) -> (Vec<String>, String) {
    let out = c.psql(
        db,
        &[&format!(
            "COPY (WITH RECURSIVE t AS ( \
               SELECT id::text, prev_hash, 1 AS k FROM audit_events \
               WHERE row_hash = (SELECT row_hash FROM audit_chain_head WHERE id = 1) \
               UNION ALL SELECT e.id::text, e.prev_hash, t.k + 1 FROM audit_events e \
               JOIN t ON e.row_hash = t.prev_hash WHERE t.k < {n}) \
             SELECT id, prev_hash FROM t ORDER BY k) TO STDOUT"
        )],
    );
    let rows: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (id, prev) = l.split_once('\t').unwrap();
            (id.to_string(), prev.to_string())
        })
        .collect();
    assert_eq!(rows.len(), n, "{out}");
    let before = rows[n - 1].1.clone();
    (rows.into_iter().map(|r| r.0).collect(), before)
}

#[test]
fn a_checkpoint_catches_the_newest_rows_cut_with_the_head_moved_to_match() {
    let c = Cluster::start();
    c.chain("certctl", Profile::Certctl, 20);
    let dir = tempfile::tempdir().unwrap();
    let night1 = c.dump("certctl", dir.path());
    let arg = night1.display().to_string();
    // A dump without a manifest gets one beside it, holding the checkpoint.
    let r = smoke(&[], &["--profile", "certctl", "--dump", &arg], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert_eq!(r.assertion("checkpoint-holds"), "skip", "{}", r.text());
    let manifest = dir.path().join("certctl.dump.manifest.json");
    assert_eq!(
        r.report["manifest_written"],
        manifest.display().to_string(),
        "{}",
        r.text()
    );
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(m["rows"], 20);

    // The three newest rows deleted and the head moved back to match: a
    // consistent rewrite that both verifiers pass on the dump alone.
    let (ids, before) = newest(&c, "certctl", 3);
    let list: Vec<String> = ids.iter().map(|i| format!("'{i}'")).collect();
    c.psql(
        "certctl",
        &[
            "ALTER TABLE audit_events DISABLE TRIGGER USER",
            "ALTER TABLE audit_chain_head DISABLE TRIGGER USER",
            &format!(
                "DELETE FROM audit_events WHERE id::text IN ({})",
                list.join(", ")
            ),
            &format!("UPDATE audit_chain_head SET row_hash = '{before}' WHERE id = 1"),
            "ALTER TABLE audit_events ENABLE TRIGGER USER",
            "ALTER TABLE audit_chain_head ENABLE TRIGGER USER",
        ],
    );
    let later = tempfile::tempdir().unwrap();
    let night2 = c.dump("certctl", later.path()).display().to_string();
    let cp = manifest.display().to_string();
    let r = smoke(
        &[],
        &[
            "--profile",
            "certctl",
            "--dump",
            &night2,
            "--checkpoint",
            &cp,
        ],
        &[],
    );
    assert_eq!(r.code(), Some(6), "{}", r.text());
    assert_eq!(r.assertion("sql-verifier-clean"), "pass", "{}", r.text());
    assert_eq!(r.assertion("rust-verifier-agrees"), "pass", "{}", r.text());
    assert_eq!(r.assertion("checkpoint-holds"), "fail", "{}", r.text());
    assert!(
        r.text().contains("saw 20 rows, the restored chain has 17"),
        "{}",
        r.text()
    );

    // The untouched first dump still holds its own checkpoint.
    let r = smoke(
        &[],
        &["--profile", "certctl", "--dump", &arg, "--checkpoint", &cp],
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert_eq!(r.assertion("checkpoint-holds"), "pass", "{}", r.text());
}

#[test]
fn a_manifest_with_only_profile_rows_and_head_is_accepted() {
    let c = Cluster::start();
    c.chain("certctl", Profile::Certctl, 12);
    let head = one(
        &c,
        "certctl",
        "SELECT row_hash FROM audit_chain_head WHERE id = 1",
    );
    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("certctl", dir.path());
    std::fs::write(
        dir.path().join("certctl.dump.manifest.json"),
        format!(r#"{{"profile": "certctl", "rows": 12, "head": "{head}"}}"#),
    )
    .unwrap();
    let arg = dump.display().to_string();
    let r = smoke(&[], &["--profile", "certctl", "--dump", &arg], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    for a in ["count-equal", "head-byte-exact", "manifest-matches"] {
        assert_eq!(r.assertion(a), "pass", "{a}:\n{}", r.text());
    }
    // The same three fields as a checkpoint file.
    let cp = dir.path().join("checkpoint.json");
    std::fs::write(
        &cp,
        format!(r#"{{"profile": "certctl", "rows": 12, "head": "{head}"}}"#),
    )
    .unwrap();
    let r = smoke(
        &[],
        &[
            "--profile",
            "certctl",
            "--dump",
            &arg,
            "--checkpoint",
            &cp.display().to_string(),
        ],
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert_eq!(r.assertion("checkpoint-holds"), "pass", "{}", r.text());
}

/// The certctl schema in `db`, and rows written with ids `ids` in this
/// order, one transaction (so one timestamp: the id decides the published order).
fn certctl_rows(c: &Cluster, db: &str, ids: &[&str]) {
    c.fill(db, Profile::Certctl, 0);
    let values: Vec<String> = ids
        .iter()
        .map(|id| format!("('{id}', 'alice', 'user', 'cert.issue', 'certificate', 'c-{id}')"))
        .collect();
    c.psql(
        db,
        &[&format!(
            "INSERT INTO audit_events (id, actor, actor_type, action, resource_type, resource_id) VALUES {}",
            values.join(", ")
        )],
    );
}

#[test]
fn the_order_warning_names_the_row_certctl_reports_under_the_sources_icu_collation() {
    let c = Cluster::start();
    let icu = one(
        &c,
        "postgres",
        "SELECT count(*) FROM pg_collation WHERE collprovider = 'i' AND collname = 'en-US-x-icu'",
    );
    assert_eq!(
        icu, "1",
        "this PostgreSQL has no ICU en-US collation: it must be built with ICU"
    );
    c.psql(
        "postgres",
        &["CREATE DATABASE icu TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LC_COLLATE 'C' LC_CTYPE 'C'"],
    );
    // Chained in byte order (B2, D4, a1, c3): sound, and in order for a C
    // database; en-US puts a1 first, and certctl's verifier breaks there.
    certctl_rows(&c, "icu", &["B2", "D4", "a1", "c3"]);
    let certctl_first = one(
        &c,
        "icu",
        "SELECT id FROM (SELECT id, prev_hash, lag(row_hash) OVER (ORDER BY \"timestamp\", id) AS b \
         FROM audit_events) s WHERE prev_hash IS DISTINCT FROM b ORDER BY 1 LIMIT 1",
    );
    assert_eq!(certctl_first, "a1");
    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("icu", dir.path()).display().to_string();
    let r = smoke(&[], &["--profile", "certctl", "--dump", &dump], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    let w = r.report["warnings"].to_string();
    assert!(
        w.contains("first break at row a1, position 1 of 4") && w.contains("en-US"),
        "{}",
        r.text()
    );
    assert!(w.contains("false breaks"), "{}", r.text());
}

#[test]
fn a_deleted_row_is_never_called_a_false_break() {
    let c = Cluster::start();
    c.create("cut");
    certctl_rows(&c, "cut", &["a1", "b2", "c3", "d4", "e5"]);
    c.psql(
        "cut",
        &[
            "ALTER TABLE audit_events DISABLE TRIGGER USER",
            "DELETE FROM audit_events WHERE id = 'c3'",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let dump = c.dump("cut", dir.path()).display().to_string();
    let r = smoke(&[], &["--profile", "certctl", "--dump", &dump], &[]);
    assert_eq!(r.code(), Some(6), "{}", r.text());
    assert_eq!(
        r.report["after_rust"]["break"]["kind"],
        "orphan",
        "{}",
        r.text()
    );
    let w = r.report["warnings"].to_string();
    assert!(
        w.contains("first break at row d4, position 3 of 4") && w.contains("is real"),
        "{}",
        r.text()
    );
    assert!(!w.contains("false"), "{}", r.text());
}
