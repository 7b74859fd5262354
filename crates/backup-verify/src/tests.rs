//! Unit tests of the verifier: SHA-256, timestamps, each break by name,
//! the separator the certctl form cannot see, and the link walk.

use crate::canon::{certctl_ts, hex, parse_ts, row_hash, sha256};
use crate::walk::text;
use crate::*;

fn row(seq: i64, prev: &str, actor: &str, ts: i64) -> Row<'static> {
    let mut r = Row {
        seq: Some(seq),
        ts_micros: ts,
        cols: Default::default(),
    };
    r.set(col::SEQ, Some(&seq.to_string()));
    r.set(col::ID, Some(&seq.to_string()));
    r.set(col::TS, Some("(parsed)"));
    r.set(col::ACTOR, Some(actor));
    r.set(col::ACTOR_TYPE, Some("user"));
    r.set(col::ACTION, Some("auth.login"));
    r.set(col::RESOURCE_TYPE, Some("user"));
    r.set(col::RESOURCE_ID, Some("u-1"));
    r.set(col::CATEGORY, Some(""));
    r.set(col::PREV, Some(prev));
    r
}

fn seal(form: Form, r: &mut Row<'_>) -> String {
    let h = row_hash(form, r);
    r.set(col::ROW_HASH, Some(&h));
    h
}

/// A sound default-form chain of `n` rows and its head.
fn chain(n: i64) -> (Vec<Row<'static>>, Head) {
    let mut rows = Vec::new();
    let mut prev = ZEROS.to_string();
    for s in 1..=n {
        let mut r = row(s, &prev, "alice", 1_700_000_000_000_000 + s / 2);
        prev = seal(Form::Default, &mut r);
        rows.push(r);
    }
    (
        rows,
        Head {
            seq: Some(n),
            hash: prev,
        },
    )
}

#[test]
fn sha256_and_hex_give_the_published_test_vector() {
    assert_eq!(
        hex(&sha256(b"abc")),
        *b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn timestamps_parse_to_the_same_instant_in_any_zone() {
    let utc = parse_ts(b"2024-01-15 14:30:00.123456+00").unwrap();
    assert_eq!(utc, 1_705_329_000_123_456);
    assert_eq!(parse_ts(b"2024-01-15 20:15:00.123456+05:45"), Some(utc));
    assert_eq!(parse_ts(b"2024-01-15 11:00:00.123456-03:30"), Some(utc));
    assert_eq!(parse_ts(b"1969-12-31 23:59:59.5+00"), Some(-500_000));
    assert_eq!(parse_ts(b"1970-01-01 00:00:00+00"), Some(0));
    assert_eq!(
        parse_ts(b"1850-01-01 00:00:00+00:09:21"),
        Some((-3_786_825_600 - 561) * 1_000_000)
    );
    assert_eq!(parse_ts(b"yesterday"), None);
    let mut out = Vec::new();
    certctl_ts(-500_000, &mut out);
    assert_eq!(out, b"1969-12-31T23:59:59.500000Z");
}

#[test]
fn a_sound_chain_verifies_and_each_break_is_named() {
    let (rows, head) = chain(6);
    let o = verify(Form::Default, &rows, Some(&head));
    assert!(o.clean(), "{o:?}");
    assert_eq!((o.walked, o.last.seq), (6, Some(6)));

    let kind = |rows: &[Row<'_>], head: Option<&Head>| {
        verify(Form::Default, rows, head)
            .brk
            .map(|b| (b.kind, b.at))
    };
    let mut modified = rows.clone();
    modified[2].set(col::ACTOR, Some("mallory"));
    assert_eq!(
        kind(&modified, Some(&head)),
        Some(("row-hash".into(), Some("3".into())))
    );
    let mut middle = rows.clone();
    middle.remove(3);
    assert_eq!(
        kind(&middle, Some(&head)),
        Some(("seq-gap".into(), Some("5".into())))
    );
    assert_eq!(
        kind(&rows[1..], Some(&head)),
        Some(("first-seq".into(), Some("2".into())))
    );
    assert_eq!(kind(&rows[..4], Some(&head)).unwrap().0, "head-ahead");
    assert_eq!(kind(&[], Some(&head)).unwrap().0, "head-ahead");
    let old = Head {
        seq: Some(4),
        hash: text(rows[3].get(col::ROW_HASH).unwrap()),
    };
    assert_eq!(kind(&rows, Some(&old)).unwrap().0, "head-behind");
    assert_eq!(kind(&rows, None).unwrap().0, "head-missing");
    let mut swapped = rows.clone();
    swapped[1].seq = Some(3);
    swapped[2].seq = Some(2);
    assert_eq!(
        kind(&swapped, Some(&head)),
        Some(("row-hash".into(), Some("2".into())))
    );
}

#[test]
fn a_moved_separator_changes_the_default_hash_but_not_the_certctl_one() {
    let (rows, _) = chain(1);
    let mut a = rows[0].clone();
    a.set(col::ACTOR, Some("alice|x"));
    a.set(col::ACTOR_TYPE, Some("user"));
    let mut b = a.clone();
    b.set(col::ACTOR, Some("alice"));
    b.set(col::ACTOR_TYPE, Some("x|user"));
    assert_ne!(row_hash(Form::Default, &a), row_hash(Form::Default, &b));
    assert_eq!(row_hash(Form::Certctl, &a), row_hash(Form::Certctl, &b));
    // NULL and '' differ in the default form only.
    let mut n = a.clone();
    n.set(col::CATEGORY, None);
    assert_ne!(row_hash(Form::Default, &a), row_hash(Form::Default, &n));
    assert_eq!(row_hash(Form::Certctl, &a), row_hash(Form::Certctl, &n));
}

#[test]
fn certctl_walks_links_not_timestamps() {
    // Three rows with one timestamp and ids that sort against the chain.
    let mut rows: Vec<Row<'static>> = Vec::new();
    let mut prev: Option<String> = None;
    for id in ["c", "b", "a"] {
        let mut r = row(0, "", "bob", 1_700_000_000_000_000);
        r.seq = None;
        r.set(col::SEQ, None);
        r.set(col::ID, Some(id));
        r.set(col::PREV, prev.as_deref());
        prev = Some(seal(Form::Certctl, &mut r));
        rows.push(r);
    }
    let head = Head {
        seq: None,
        hash: prev.unwrap(),
    };
    let o = verify(Form::Certctl, &rows, Some(&head));
    assert!(o.clean(), "{o:?}");
    assert_eq!(o.published_order_breaks, Some(3));
    let o = verify(Form::Certctl, &rows[1..], Some(&head));
    assert_eq!(o.brk.unwrap().kind, "no-genesis");
    let o = verify(
        Form::Certctl,
        &[rows[0].clone(), rows[2].clone()],
        Some(&head),
    );
    assert_eq!(
        o.brk.map(|b| (b.kind, b.at)),
        Some(("orphan".into(), Some("a".into())))
    );
}

/// `rows` as a COPY text export.
fn export(rows: &[Row<'_>]) -> String {
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.cols.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            copy::push_field(
                &mut out,
                c.as_deref().map(|b| std::str::from_utf8(b).unwrap()),
            );
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_streamed_file_walk_gives_the_in_memory_verdict_landmarks_and_line_errors() {
    let (mut rows, head) = chain(200);
    for r in &mut rows {
        let mut ts = Vec::new();
        certctl_ts(r.ts_micros, &mut ts);
        let ts = text(&ts).replace('T', " ").replace('Z', "+00");
        r.set(col::TS, Some(&ts));
    }
    // An escaped value takes the slow split; the hash is over the unescaped bytes.
    rows[7].set(col::DETAILS, Some("{\"a\":\"tab\\there\"}\n"));
    let h = seal(Form::Default, &mut rows[7]);
    rows[8].set(col::PREV, Some(&h));
    for i in 8..rows.len() {
        let h = seal(Form::Default, &mut rows[i]);
        if let Some(next) = rows.get_mut(i + 1) {
            next.set(col::PREV, Some(&h));
        }
    }
    let head = Head {
        hash: text(rows[199].get(col::ROW_HASH).unwrap()),
        ..head
    };
    let dir = std::env::temp_dir().join(format!("backup-verify-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rows.copy");
    let head_line = format!("200\t{}\n", head.hash);

    std::fs::write(&file, export(&rows)).unwrap();
    let (o, lm) = verify_file(Form::Default, &file, head_line.as_bytes(), Some(150)).unwrap();
    assert!(o.clean(), "{o:?}");
    assert_eq!(o, verify(Form::Default, &rows, Some(&head)));
    assert_eq!(lm.n, 200);
    assert_eq!(lm.first.as_ref().map(|m| m.seq), Some(Some(1)));
    assert_eq!(lm.middle_at, 99);
    assert_eq!(lm.middle.first().map(|m| m.seq), Some(Some(100)));
    assert_eq!(lm.middle.len(), 64);
    let last: Vec<_> = lm.last.iter().map(|m| m.seq).collect();
    assert_eq!(last, [Some(198), Some(199), Some(200)]);
    assert_eq!(lm.last[2].row_hash, head.hash);
    assert_eq!(lm.at_checkpoint.as_ref().map(|m| m.seq), Some(Some(150)));

    let mut bad = export(&rows);
    let line_120 = bad.lines().nth(119).unwrap().to_string();
    bad = bad.replace(&line_120, &line_120.replacen('\t', " ", 1));
    std::fs::write(&file, bad).unwrap();
    let e = verify_file(Form::Default, &file, head_line.as_bytes(), None).unwrap_err();
    assert!(format!("{e:#}").contains("exported row 120"), "{e:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}
