//! Every tamper case, caught at the right line by the real binary
//! (`cargo xtask audit verify`), with the exact line it reports.

#[path = "audit_support.rs"]
mod support;

use support::*;
use xtask::audit::Record;
use xtask::exit::{code_of, Code};

fn verify(fx: &Fixture, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["audit", "verify", "--env", "staging"];
    args.extend_from_slice(extra);
    fx.xtask(&args)
}

/// A 10-record chain, tampered by `f`.
fn tampered(sink: bool, f: impl FnOnce(&mut Vec<Vec<u8>>)) -> Fixture {
    let fx = Fixture::new(sink);
    fx.fill(10);
    let mut lines = fx.lines();
    f(&mut lines);
    fx.write_lines(&lines);
    fx
}

fn flip_reason_byte(line: &mut [u8]) {
    let at = line
        .windows(7)
        .position(|w| w == b"deploy ")
        .expect("a reason")
        + 7;
    line[at] ^= 1;
}

fn record(line: &[u8]) -> Record {
    serde_json::from_slice(line.strip_suffix(b"\n").unwrap()).unwrap()
}

fn encode(r: &Record) -> Vec<u8> {
    let mut v = serde_json::to_vec(r).unwrap();
    v.push(b'\n');
    v
}

/// Re-chains lines `from..` (0-based) after an edit, as a careful forger would.
fn rechain(lines: &mut [Vec<u8>], from: usize) {
    for i in from..lines.len() {
        let mut r = record(&lines[i]);
        r.prev = if i == 0 {
            xtask::audit::GENESIS.into()
        } else {
            line_hash(&lines[i - 1])
        };
        lines[i] = encode(&r);
    }
}

#[test]
fn a_good_chain_verifies_with_count_and_head() {
    let fx = Fixture::new(false);
    fx.fill(10);
    let o = verify(&fx, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        stdout(&o),
        format!("staging: 10 records, head {}\n", line_hash(&fx.lines()[9]))
    );
    let o = verify(&fx, &["--expect-head", &fx.head().to_uppercase()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn one_flipped_byte_in_a_middle_record() {
    let fx = tampered(false, |l| flip_reason_byte(&mut l[4]));
    let p = fx.path().display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!("staging: {p}: line 5: modified: its SHA-256 is not the prev recorded by line 6"),
    );
}

#[test]
fn a_byte_that_breaks_the_json() {
    let fx = tampered(false, |l| l[2][0] = b'x');
    let p = fx.path().display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!("staging: {p}: line 3: not JSON: expected value at line 1 column 1"),
    );
}

#[test]
fn deleted_middle_and_oldest_records() {
    let fx = tampered(false, |l| {
        l.remove(4);
    });
    let p = fx.path().display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!("staging: {p}: line 5: deleted: 1 record(s) missing before this line (seq jumps from 4 to 6)"),
    );
    let fx = tampered(false, |l| {
        l.remove(0);
    });
    let p = fx.path().display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!("staging: {p}: line 1: deleted: 1 record(s) missing before this line (seq jumps from 0 to 2)"),
    );
}

#[test]
fn deleted_newest_record_is_caught_by_expect_head_and_by_the_sink() {
    let fx = Fixture::new(true);
    fx.fill(10);
    let anchored = fx.head();
    let mut lines = fx.lines();
    let h5 = line_hash(&lines[4]);
    lines.pop();
    fx.write_lines(&lines);
    let h9 = line_hash(&lines[8]);

    // The chain alone still verifies: that is the limit --expect-head and the sink exist for.
    let chain_alone = xtask::audit::check_bytes(&lines.concat()).unwrap();
    assert_eq!(chain_alone.count, 9);

    let sink = fx.sink().display().to_string();
    let sink_says = format!("staging: the local log ends after line 9 but sink {sink} has 10 lines: the newest 1 local record(s) were deleted");
    assert_verify_fails(&verify(&fx, &[]), &sink_says);

    // Without the sink, --expect-head catches it.
    let no_sink = Fixture::new(false);
    std::fs::create_dir_all(no_sink.path().parent().unwrap()).unwrap();
    no_sink.write_lines(&lines);
    let o = verify(&no_sink, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_verify_fails(
        &verify(&no_sink, &["--expect-head", &anchored]),
        &format!(
            "staging: head {h9} (9 records) is not the expected {anchored}: it is no line of this log: the record it anchored was deleted or changed, or the chain was rewritten"
        ),
    );
    // An anchor that newer records follow is named as such.
    assert_verify_fails(
        &verify(&no_sink, &["--expect-head", &h5]),
        &format!("staging: head {h9} (9 records) is not the expected {h5}: it is line 5 of 9: 4 record(s) were appended after it"),
    );
}

#[test]
fn two_swapped_records() {
    let fx = tampered(false, |l| l.swap(3, 4));
    let p = fx.path().display().to_string();
    assert_verify_fails(&verify(&fx, &[]), &format!("staging: {p}: line 4: reordered: it is chained after line 5 (seq 5): records were moved"));
}

#[test]
fn an_inserted_forged_record() {
    // A careful forger: right seq, and prev is the hash of the line before.
    let fx = tampered(false, |l| {
        let mut forged = record(&l[4]);
        forged.reason = "nothing to see".into();
        forged.prev = line_hash(&l[3]);
        l.insert(4, encode(&forged));
    });
    let p = fx.path().display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!("staging: {p}: line 5: inserted: line 6 (seq 5) is chained to line 4: line 5 sits between them"),
    );
}

#[test]
fn a_deletion_rehashed_without_renumbering_is_a_seq_gap() {
    let fx = tampered(false, |l| {
        l.remove(4);
        rechain(l, 4);
    });
    let p = fx.path().display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!("staging: {p}: line 5: seq gap: seq 6 where 5 was expected"),
    );
}

#[test]
fn a_consistent_rewrite_is_caught_only_by_the_sink_or_expect_head() {
    let fx = Fixture::new(true);
    fx.fill(10);
    let original = fx.head();
    let mut lines = fx.lines();
    let mut r = record(&lines[2]);
    r.reason = "rewritten history".into();
    lines[2] = encode(&r);
    rechain(&mut lines, 3);
    fx.write_lines(&lines);
    let rewritten = line_hash(&lines[9]);

    // The documented limit: the chain alone verifies.
    let chain_alone = xtask::audit::check_bytes(&lines.concat()).unwrap();
    assert_eq!(chain_alone.head_hex(), rewritten);

    let sink = fx.sink().display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!(
            "staging: line 3 differs between the local log and sink {sink}: one copy was rewritten from there on; the sink's own chain verifies (10 records, head {original})"
        ),
    );
    let no_sink = Fixture::new(false);
    std::fs::create_dir_all(no_sink.path().parent().unwrap()).unwrap();
    no_sink.write_lines(&lines);
    assert_eq!(verify(&no_sink, &[]).status.code(), Some(0));
    assert_verify_fails(
        &verify(&no_sink, &["--expect-head", &original]),
        &format!(
            "staging: head {rewritten} (10 records) is not the expected {original}: it is no line of this log: the record it anchored was deleted or changed, or the chain was rewritten"
        ),
    );
}

#[test]
fn tampering_with_the_local_copy_shows_the_sink_still_verifies() {
    let fx = Fixture::new(true);
    fx.fill(10);
    let original = fx.head();
    let mut lines = fx.lines();
    flip_reason_byte(&mut lines[4]);
    fx.write_lines(&lines);
    let (p, sink) = (
        fx.path().display().to_string(),
        fx.sink().display().to_string(),
    );
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!(
            "staging: {p}: line 5: modified: its SHA-256 is not the prev recorded by line 6; \
             staging: line 5 differs between the local log and sink {sink}: one copy was rewritten from there on; the sink's own chain verifies (10 records, head {original})"
        ),
    );
}

#[test]
fn tampering_with_the_sink_copy() {
    let fx = Fixture::new(true);
    fx.fill(10);
    let sink = fx.sink();
    let mut s = read_lines(&sink);
    flip_reason_byte(&mut s[4]);
    std::fs::write(&sink, s.concat()).unwrap();
    let sd = sink.display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!(
            "staging: line 5 differs between the local log and sink {sd}: one copy was rewritten from there on; the sink's own chain breaks at line 5: modified: its SHA-256 is not the prev recorded by line 6"
        ),
    );
    // Repair never touches a sink that diverges.
    let o = fx.xtask(&["audit", "repair", "--env", "staging", "--reason", "try"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert_eq!(read_lines(&sink), s);
}

#[test]
fn a_truncated_sink_is_caught_and_repair_catches_it_up() {
    let fx = Fixture::new(true);
    fx.fill(10);
    let sink = fx.sink();
    let mut s = read_lines(&sink);
    s.truncate(8);
    std::fs::write(&sink, s.concat()).unwrap();
    let sd = sink.display().to_string();
    let says = format!(
        "staging: sink {sd} ends after line 8 but the local log has 10: the sink was truncated, or a crash came between the two writes (`audit repair` catches it up)"
    );
    assert_verify_fails(&verify(&fx, &[]), &says);
    // Appends refuse until it is dealt with.
    let e = fx
        .log()
        .append(entry("deploy", "success", None, "sha-x", "r"), false)
        .unwrap_err();
    assert_eq!(code_of(&e), Code::Verify, "{e:#}");
    let o = fx.xtask(&[
        "audit",
        "repair",
        "--env",
        "staging",
        "--reason",
        "sink remounted",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = verify(&fx, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("staging: 11 records, head"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(&sink).unwrap(),
        std::fs::read(fx.path()).unwrap()
    );
    let last = record(fx.lines().last().unwrap());
    assert_eq!(
        (last.action.as_str(), last.reason.as_str()),
        ("repair", "sink remounted (caught up the sink)")
    );
}

#[test]
fn a_torn_last_line_is_reported_and_repaired_exactly() {
    let fx = Fixture::new(true);
    fx.fill(10);
    let mut bytes = std::fs::read(fx.path()).unwrap();
    let full = bytes.len();
    bytes.truncate(full - 10);
    std::fs::write(fx.path(), &bytes).unwrap();
    // What a crash mid-write leaves in the sink too: the torn bytes are never mirrored.
    let sink_before = std::fs::read(fx.sink()).unwrap();
    let lines = fx.lines();
    let torn = lines[9].len();
    let offset = full - 10 - torn;
    let p = fx.path().display().to_string();
    let sd = fx.sink().display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!(
            "staging: {p}: line 10: torn: {torn} bytes without a newline: a write was cut short; `cargo xtask audit repair staging --reason TEXT` truncates it; \
             staging: the local log ends after line 9 but sink {sd} has 10 lines: the newest 1 local record(s) were deleted"
        ),
    );

    // Not even --force appends after a torn line.
    let e = fx
        .log()
        .append(entry("deploy", "success", None, "sha-x", "r"), true)
        .unwrap_err();
    assert_eq!(code_of(&e), Code::Verify);
    assert!(format!("{e:#}").contains("audit repair"), "{e:#}");

    // The sink is ahead (it has the record whose local write was torn):
    // repair refuses to guess. Put the sink where a real crash leaves it.
    let o = fx.xtask(&["audit", "repair", "--env", "staging", "--reason", "r"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    let nine = lines[..9].concat();
    std::fs::write(fx.sink(), &nine).unwrap();
    assert_ne!(sink_before, nine);

    // The dry run shows exactly what it would truncate and changes nothing.
    let o = fx.xtask(&[
        "--dry-run",
        "audit",
        "repair",
        "--env",
        "staging",
        "--reason",
        "power loss on ci-7",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan = stdout(&o);
    assert!(
        plan.contains(&format!(
            "truncate the torn last line of {p}: the {torn} bytes from offset {offset} (line 10); nothing before it changes"
        )),
        "{plan}"
    );
    assert!(plan.contains("dry run: nothing was changed"), "{plan}");
    assert_eq!(std::fs::read(fx.path()).unwrap(), bytes);

    let o = fx.xtask(&[
        "audit",
        "repair",
        "--env",
        "staging",
        "--reason",
        "power loss on ci-7",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let after = fx.lines();
    assert_eq!(after.len(), 10);
    assert_eq!(after[..9].concat(), nine, "only the torn bytes went");
    let rec = record(&after[9]);
    assert_eq!(rec.action, "repair");
    assert_eq!(
        rec.reason,
        format!("power loss on ci-7 (truncated {torn} torn bytes of line 10)")
    );
    let out = stdout(&o);
    assert_eq!(
        out.lines().last().unwrap(),
        format!("audit head: {}", line_hash(&after[9])),
        "{out}"
    );
    let o = verify(&fx, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Nothing left to repair: says so, changes nothing.
    let o = fx.xtask(&["audit", "repair", "--env", "staging", "--reason", "again"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fx.lines().len(), 10);
}

#[test]
fn repair_refuses_tampering() {
    let fx = tampered(false, |l| flip_reason_byte(&mut l[4]));
    let before = std::fs::read(fx.path()).unwrap();
    let o = fx.xtask(&[
        "audit",
        "repair",
        "--env",
        "staging",
        "--reason",
        "make it go away",
    ]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(error_line(&o).contains("line 5: modified"), "{}", text(&o));
    assert_eq!(std::fs::read(fx.path()).unwrap(), before);
}

#[test]
fn appends_refuse_a_broken_chain_unless_forced_and_the_record_says_so() {
    let fx = tampered(false, |l| flip_reason_byte(&mut l[4]));
    let before = std::fs::read(fx.path()).unwrap();
    let e = fx
        .log()
        .append(entry("rollback", "success", None, "sha-1", "manual"), false)
        .unwrap_err();
    assert_eq!(code_of(&e), Code::Verify);
    assert!(
        format!("{e:#}").starts_with("refusing to append to "),
        "{e:#}"
    );
    assert_eq!(std::fs::read(fx.path()).unwrap(), before);

    fx.log()
        .append(
            entry("rollback", "success", None, "sha-1", "[forced] manual"),
            true,
        )
        .unwrap();
    let lines = fx.lines();
    assert_eq!(lines.len(), 11);
    let forced = record(&lines[10]);
    assert_eq!(forced.seq, 11);
    assert_eq!(forced.prev, line_hash(&lines[9]));
    assert_eq!(forced.reason, "[forced] manual [forced past audit break: line 5: modified: its SHA-256 is not the prev recorded by line 6]");
    // The break stays visible: nothing rewrites the log.
    let p = fx.path().display().to_string();
    assert_verify_fails(
        &verify(&fx, &[]),
        &format!("staging: {p}: line 5: modified: its SHA-256 is not the prev recorded by line 6"),
    );
}

#[test]
fn json_reports_the_break() {
    let fx = tampered(false, |l| l.swap(3, 4));
    let o = fx.xtask(&["--format", "json", "audit", "verify", "--env", "staging"]);
    assert_eq!(o.status.code(), Some(6));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["exit_code"], 6);
    let c = &v["chains"][0];
    assert_eq!(c["ok"], false);
    assert_eq!(c["break"]["line"], 4);
    assert_eq!(c["break"]["kind"], "reordered");
}
