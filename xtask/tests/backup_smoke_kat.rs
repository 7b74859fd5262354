//! Known answers without a database: the rows of `deployments/sql/*known_answer.sql`,
//! as PostgreSQL exported them (`tests/fixtures/backup/`), must give the head
//! written in that SQL file when the Rust verifier recomputes them. The
//! smoke checks the same file against the trigger on every run; together
//! they pin the canonical form on both sides.

use std::path::PathBuf;

use xtask::flags::Profile;
use xtask::tasks::backup_smoke::verify;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        xtask::workspace_root()
            .join("xtask/tests/fixtures/backup")
            .join(name),
    )
    .unwrap()
}

fn expected_head(sql: &str) -> String {
    let path: PathBuf = xtask::workspace_root().join("deployments/sql").join(sql);
    let text = std::fs::read_to_string(&path).unwrap();
    let head = text
        .lines()
        .find_map(|l| l.strip_prefix("-- known-answer-head:"))
        .expect("a known-answer-head line");
    let head = head.trim().to_string();
    // The SQL assertion in the same file names the same head.
    assert!(
        text.matches(head.as_str()).count() >= 3,
        "{sql}: the head in the comment and the DO block differ"
    );
    head
}

#[test]
fn default_profile_known_answer() {
    let o = verify::verify_export(
        Profile::Default,
        &fixture("known_answer.default.rows"),
        &fixture("known_answer.default.head"),
    )
    .unwrap();
    assert!(o.clean(), "{o:?}");
    assert_eq!(o.total, 8);
    assert_eq!(o.head.unwrap().value(), expected_head("known_answer.sql"));
}

#[test]
fn certctl_profile_known_answer() {
    let o = verify::verify_export(
        Profile::Certctl,
        &fixture("known_answer.certctl.rows"),
        &fixture("known_answer.certctl.head"),
    )
    .unwrap();
    assert!(o.clean(), "{o:?}");
    assert_eq!(o.total, 5);
    assert_eq!(
        o.head.unwrap().value(),
        expected_head("certctl/known_answer.sql")
    );
    // Three rows share a timestamp and their ids sort against the chain.
    assert!(o.published_order_breaks.unwrap() > 0);
}

#[test]
fn one_changed_byte_changes_the_answer() {
    let rows = fixture("known_answer.default.rows");
    let text = String::from_utf8(rows).unwrap().replacen("1.50", "1.5", 1);
    let o = verify::verify_export(
        Profile::Default,
        text.as_bytes(),
        &fixture("known_answer.default.head"),
    )
    .unwrap();
    let b = o.brk.expect("1.50 and 1.5 are different bytes");
    assert_eq!((b.kind.as_str(), b.at.as_deref()), ("row-hash", Some("1")));
}
