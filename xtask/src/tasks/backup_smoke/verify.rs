//! The independent verifier: recomputes every row's hash in Rust (sha2)
//! from rows exported with `COPY ... TO STDOUT`, and walks the chain
//! itself. It uses no function from the database, so a restored database
//! cannot vouch for itself, and a bug in the SQL canonical form shows up
//! as a disagreement between the two verifiers.
//!
//! It reports breaks with the same kinds as the SQL verifiers in
//! `deployments/sql/`, so the report can show both findings side by side.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::canon::{hex, parse_ts, payload, push_ns, sha256};
use super::copy::{self, Field};
use crate::flags::Profile;

/// The "previous hash" of the first row in the default profile.
pub const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Columns of a row export, in this order (the certctl profile exports NULL for seq).
pub mod col {
    pub const SEQ: usize = 0;
    pub const ID: usize = 1;
    pub const TS: usize = 2;
    pub const ACTOR: usize = 3;
    pub const ACTOR_TYPE: usize = 4;
    pub const ACTION: usize = 5;
    pub const RESOURCE_TYPE: usize = 6;
    pub const RESOURCE_ID: usize = 7;
    pub const DETAILS: usize = 8;
    pub const CATEGORY: usize = 9;
    pub const PREV: usize = 10;
    pub const ROW_HASH: usize = 11;
    pub const COUNT: usize = 12;
}

const NOT_NULL: [(usize, &str); 8] = [
    (col::ID, "id"),
    (col::TS, "the timestamp"),
    (col::ACTOR, "actor"),
    (col::ACTOR_TYPE, "actor_type"),
    (col::ACTION, "action"),
    (col::RESOURCE_TYPE, "resource_type"),
    (col::RESOURCE_ID, "resource_id"),
    (col::ROW_HASH, "row_hash"),
];

/// One exported row: its columns as exported bytes (the hash is over
/// bytes), with seq and the timestamp parsed.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub seq: Option<i64>,
    /// Microseconds since the Unix epoch, parsed from the exported timestamp.
    pub ts_micros: i64,
    pub cols: [Field<'a>; col::COUNT],
}

impl<'a> Row<'a> {
    /// Checks the NOT NULL columns and parses seq and the timestamp.
    pub fn new(cols: [Field<'a>; col::COUNT]) -> Result<Row<'a>> {
        if let Some((_, name)) = NOT_NULL.iter().find(|(c, _)| cols[*c].is_none()) {
            bail!("{name} is NULL");
        }
        let seq = cols[col::SEQ].as_deref().map(parse_int).transpose()?;
        let ts = cols[col::TS].as_deref().unwrap_or_default();
        let ts_micros = parse_ts(ts)
            .with_context(|| format!("unreadable timestamp {:?}", String::from_utf8_lossy(ts)))?;
        Ok(Row {
            seq,
            ts_micros,
            cols,
        })
    }
    pub fn get(&self, c: usize) -> Option<&[u8]> {
        self.cols[c].as_deref()
    }
    pub(super) fn text(&self, c: usize) -> &[u8] {
        self.get(c).unwrap_or_default()
    }
    pub fn set(&mut self, c: usize, v: Option<&str>) {
        self.cols[c] = v.map(|v| Cow::Owned(v.as_bytes().to_vec()));
    }
}

/// What a walk needs of a row, once its hash was checked.
#[derive(Debug, Clone)]
pub struct Link<'a> {
    pub seq: Option<i64>,
    pub ts_micros: i64,
    pub id: Cow<'a, [u8]>,
    pub prev_hash: Option<Cow<'a, [u8]>>,
    pub row_hash: Cow<'a, [u8]>,
    /// Does row_hash match the row's contents?
    pub ok: bool,
    /// SHA-256 of `ns(id) ns(prev_hash) ns(row_hash)`: this row's part of the chain digest.
    pub leaf: [u8; 32],
}

impl<'a> Link<'a> {
    /// Computed where the row's hash is checked (in parallel), so the
    /// sequential walk only hashes 32 bytes a row.
    fn of(mut r: Row<'a>, ok: bool, buf: &mut Vec<u8>) -> Link<'a> {
        buf.clear();
        push_ns(buf, r.get(col::ID));
        push_ns(buf, r.get(col::PREV));
        push_ns(buf, r.get(col::ROW_HASH));
        let leaf = sha256(buf);
        Link {
            seq: r.seq,
            ts_micros: r.ts_micros,
            id: r.cols[col::ID].take().unwrap_or_default(),
            prev_hash: r.cols[col::PREV].take(),
            row_hash: r.cols[col::ROW_HASH].take().unwrap_or_default(),
            ok,
            leaf,
        }
    }
    fn prev(&self) -> &[u8] {
        self.prev_hash.as_deref().unwrap_or_default()
    }
}

/// The head row: the default profile keeps seq and hash, certctl only the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    pub hash: String,
}

impl Head {
    /// The head as one string, compared byte for byte across the restore.
    pub fn value(&self) -> String {
        match self.seq {
            Some(s) => format!("{s}:{}", self.hash),
            None => self.hash.clone(),
        }
    }
}

/// Where and how a chain broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The seq (default) or id (certctl) of the row where it broke, if a row.
    pub at: Option<String>,
    pub kind: String,
    pub detail: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// What a verifier found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub total: u64,
    /// Rows that passed before the first break.
    pub walked: u64,
    /// The head row; `None` when it is missing.
    pub head: Option<Head>,
    /// The last walked row (default: seq 0 and 64 zeros when empty; certctl: '').
    pub last: Head,
    #[serde(rename = "break")]
    pub brk: Option<Break>,
    /// SHA-256 over the SHA-256 of `ns(id) ns(prev_hash) ns(row_hash)` of every row, in chain order.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub chain_digest: String,
    /// certctl: rows whose prev_hash is not the row before them in (timestamp, id) order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_order_breaks: Option<u64>,
    /// Indices of the verified rows in chain order (walked rows first).
    #[serde(skip)]
    pub order: Vec<usize>,
}

impl Outcome {
    pub fn clean(&self) -> bool {
        self.brk.is_none() && self.walked == self.total
    }
}

/// Parses a row export (see [`col`]); errors name the line.
pub fn parse_rows(export: &[u8]) -> Result<Vec<Row<'_>>> {
    copy::lines(export)
        .enumerate()
        .map(|(i, line)| {
            copy::fields(line)
                .and_then(Row::new)
                .with_context(|| format!("exported row {}", i + 1))
        })
        .collect()
}

/// Parses a head export: `seq<TAB>row_hash` (seq NULL in certctl); no line is a missing head.
pub fn parse_head(export: &[u8]) -> Result<Option<Head>> {
    let mut heads = Vec::new();
    for line in copy::lines(export) {
        let f: [Field<'_>; 2] = copy::fields(line).context("head row")?;
        let seq = f[0].as_deref().map(parse_int).transpose()?;
        let hash = f[1]
            .as_deref()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .unwrap_or_default();
        heads.push(Head { seq, hash });
    }
    if heads.len() > 1 {
        bail!("the head table has {} rows with id 1", heads.len());
    }
    Ok(heads.pop())
}

fn parse_int(s: &[u8]) -> Result<i64> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an integer: {:?}", String::from_utf8_lossy(s)))
}

fn matches(profile: Profile, r: &Row<'_>, buf: &mut Vec<u8>) -> bool {
    payload(profile, r, buf);
    hex(&sha256(buf)) == r.text(col::ROW_HASH)
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
}

/// Parses an export and checks every row's hash in one pass, in parallel
/// over row-aligned pieces of the export (parsing costs as much as
/// hashing; a row's hash depends only on the row itself). Only what the
/// walk needs is kept of each row.
pub fn parse_and_check(profile: Profile, export: &[u8]) -> Result<Vec<Link<'_>>> {
    let parts = copy::chunks(export, threads());
    let done: Vec<Result<Vec<Link<'_>>>> = std::thread::scope(|s| {
        let running: Vec<_> = parts
            .iter()
            .map(|part| {
                s.spawn(move || -> Result<Vec<Link<'_>>> {
                    let mut buf = Vec::with_capacity(512);
                    let mut out = Vec::with_capacity(part.len() / 200);
                    for line in copy::lines(part) {
                        let r = Row::new(copy::fields(line)?)?;
                        let ok = matches(profile, &r, &mut buf);
                        out.push(Link::of(r, ok, &mut buf));
                    }
                    Ok(out)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a verifier thread panicked")))
            })
            .collect()
    });
    let mut links = Vec::new();
    for d in done {
        match d {
            Ok(l) => links.extend(l),
            // Parse again in one piece, so the error names the export's own line number.
            Err(e) => return Err(parse_rows(export).err().unwrap_or(e)),
        }
    }
    Ok(links)
}

/// Verifies parsed rows against the head row.
pub fn verify(profile: Profile, rows: &[Row<'_>], head: Option<&Head>) -> Outcome {
    let mut buf = Vec::new();
    let links: Vec<Link<'_>> = rows
        .iter()
        .map(|r| {
            let ok = matches(profile, r, &mut buf);
            Link::of(r.clone(), ok, &mut buf)
        })
        .collect();
    walk(profile, &links, head)
}

/// Parses both exports and verifies.
pub fn verify_export(profile: Profile, rows: &[u8], head: &[u8]) -> Result<Outcome> {
    let links = parse_and_check(profile, rows)?;
    let head = parse_head(head)?;
    Ok(walk(profile, &links, head.as_ref()))
}

/// Walks rows whose hashes were already checked.
pub fn walk(profile: Profile, links: &[Link<'_>], head: Option<&Head>) -> Outcome {
    match profile {
        Profile::Default => walk_by_seq(links, head),
        Profile::Certctl => walk_by_links(links, head),
    }
}

/// The chain digest: SHA-256 over each row's leaf (the SHA-256 of
/// `ns(id) ns(prev_hash) ns(row_hash)`), in chain order.
struct ChainDigest(Vec<u8>);

impl ChainDigest {
    fn new() -> ChainDigest {
        ChainDigest(Vec::new())
    }
    fn add(&mut self, r: &Link<'_>) {
        self.0.extend_from_slice(&r.leaf);
    }
    fn hex(self) -> String {
        String::from_utf8_lossy(&hex(&sha256(&self.0))).into_owned()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn brk(at: Option<String>, kind: &str, detail: String) -> Option<Break> {
    Some(Break {
        at,
        kind: kind.into(),
        detail,
    })
}

fn walk_by_seq(rows: &[Link<'_>], head: Option<&Head>) -> Outcome {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].seq.unwrap_or(i64::MIN));
    let mut digest = ChainDigest::new();
    let mut walked = 0u64;
    let mut last: Option<usize> = None;
    let mut found = None;
    for &i in &order {
        let r = &rows[i];
        digest.add(r);
        if found.is_some() {
            continue;
        }
        let want = last.map_or(0, |l| rows[l].seq.unwrap_or(0)) + 1;
        let prev_want = last.map_or(ZEROS.as_bytes(), |l| &rows[l].row_hash[..]);
        let seq = r.seq.unwrap_or(i64::MIN);
        if seq == want && r.ok && r.prev_hash.as_deref() == Some(prev_want) {
            walked += 1;
            last = Some(i);
            continue;
        }
        let at = Some(seq.to_string());
        found = if seq != want {
            if want == 1 {
                brk(
                    at,
                    "first-seq",
                    format!("the first row has seq {seq}, not 1: the oldest rows are missing"),
                )
            } else if seq < want {
                brk(at, "duplicate-seq", format!("seq {seq} appears twice"))
            } else {
                brk(
                    at,
                    "seq-gap",
                    format!(
                        "seq {seq} follows seq {}: rows in between are missing",
                        want - 1
                    ),
                )
            }
        } else if !r.ok {
            brk(
                at,
                "row-hash",
                format!(
                    "seq {seq}: row_hash does not match the row's contents: the row was modified"
                ),
            )
        } else {
            brk(
                at,
                "prev-link",
                format!("seq {seq}: prev_hash is not the row_hash of seq {}: rows were reordered or replaced", seq - 1),
            )
        };
    }
    let last = match last {
        Some(l) => Head {
            seq: rows[l].seq,
            hash: text(&rows[l].row_hash),
        },
        None => Head {
            seq: Some(0),
            hash: ZEROS.into(),
        },
    };
    if found.is_none() {
        found = match head {
            None => brk(None, "head-missing", "audit_chain_head has no row 1".into()),
            Some(h) => {
                let (hs, ls) = (h.seq.unwrap_or(0), last.seq.unwrap_or(0));
                if hs > ls {
                    brk(None, "head-ahead", format!("the head names seq {hs} but the last row is seq {ls}: the newest rows were deleted or the table truncated"))
                } else if hs < ls {
                    brk(None, "head-behind", format!("the head names seq {hs} but the last row is seq {ls}: the head was rolled back"))
                } else if h.hash != last.hash {
                    brk(
                        None,
                        "head-hash",
                        format!("the head hash is not the row_hash of seq {ls}"),
                    )
                } else {
                    None
                }
            }
        };
    }
    Outcome {
        total: rows.len() as u64,
        walked,
        head: head.cloned(),
        last,
        brk: found,
        chain_digest: digest.hex(),
        published_order_breaks: None,
        order,
    }
}

fn walk_by_links(rows: &[Link<'_>], head: Option<&Head>) -> Outcome {
    let total = rows.len() as u64;
    // (timestamp, id): the published order, also the tie-break wherever one is needed.
    let mut published: Vec<usize> = (0..rows.len()).collect();
    published
        .sort_by(|&a, &b| (rows[a].ts_micros, &rows[a].id).cmp(&(rows[b].ts_micros, &rows[b].id)));
    let mut published_breaks = 0u64;
    let mut before: &[u8] = b"";
    for &i in &published {
        if rows[i].prev() != before {
            published_breaks += 1;
        }
        before = &rows[i].row_hash;
    }
    let mut by_prev: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for &i in &published {
        by_prev.entry(rows[i].prev()).or_default().push(i);
    }

    let mut walked = 0u64;
    let mut order = Vec::with_capacity(rows.len());
    let mut visited = vec![false; rows.len()];
    let mut digest = ChainDigest::new();
    let mut cur: &[u8] = b"";
    let mut last = Head {
        seq: None,
        hash: String::new(),
    };
    let mut found = None;
    while let Some(next) = by_prev.get(cur) {
        let i = next[0];
        let id = text(&rows[i].id);
        if let Some(&j) = next.get(1) {
            let from = if cur.is_empty() {
                "the start of the chain".to_string()
            } else {
                text(cur)
            };
            found = brk(
                Some(text(&rows[j].id)),
                "fork",
                format!("rows {id} and {} both follow {from}", text(&rows[j].id)),
            );
            break;
        }
        if !rows[i].ok {
            found = brk(
                Some(id.clone()),
                "row-hash",
                format!(
                    "row {id}: row_hash does not match the row's contents: the row was modified"
                ),
            );
            break;
        }
        walked += 1;
        if walked > total || visited[i] {
            found = brk(Some(id), "cycle", "the links form a cycle".into());
            break;
        }
        visited[i] = true;
        order.push(i);
        digest.add(&rows[i]);
        last.hash = text(&rows[i].row_hash);
        cur = &rows[i].row_hash;
    }
    for &i in &published {
        if !visited[i] {
            order.push(i);
            digest.add(&rows[i]);
        }
    }
    if found.is_none() && walked < total {
        let hashes: HashSet<&[u8]> = rows.iter().map(|r| &*r.row_hash).collect();
        let at = published
            .iter()
            .map(|&i| &rows[i])
            .find(|r| !r.prev().is_empty() && !hashes.contains(r.prev()))
            .map(|r| text(&r.id));
        found = if walked == 0 {
            brk(at, "no-genesis", format!("no row has prev_hash NULL: the oldest row is missing ({total} rows unreachable)"))
        } else {
            let before = at.clone().unwrap_or_else(|| "them".into());
            brk(
                at,
                "orphan",
                format!("{} of {total} rows are not reachable from the first row: a row before {before} was deleted", total - walked),
            )
        };
    } else if found.is_none() {
        found = match head {
            None => brk(None, "head-missing", "audit_chain_head has no row 1".into()),
            Some(h) if h.hash == last.hash => None,
            Some(h) if rows.iter().any(|r| *r.row_hash == *h.hash.as_bytes()) => brk(
                None,
                "head-behind",
                "the head names a row that is not the last one: the head was rolled back".into(),
            ),
            Some(_) => brk(
                None,
                "head-ahead",
                "the head names a hash that no row has: the newest rows were deleted or the table truncated".into(),
            ),
        };
    }
    Outcome {
        total,
        walked,
        head: head.cloned(),
        last,
        brk: found,
        chain_digest: digest.hex(),
        published_order_breaks: Some(published_breaks),
        order,
    }
}

#[cfg(test)]
mod tests {
    use super::super::canon::{certctl_ts, row_hash};
    use super::*;
    use sha2::{Digest, Sha256};

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

    fn seal(profile: Profile, r: &mut Row<'_>) -> String {
        let h = row_hash(profile, r);
        r.set(col::ROW_HASH, Some(&h));
        h
    }

    /// A sound default-profile chain of `n` rows and its head.
    fn chain(n: i64) -> (Vec<Row<'static>>, Head) {
        let mut rows = Vec::new();
        let mut prev = ZEROS.to_string();
        for s in 1..=n {
            let mut r = row(s, &prev, "alice", 1_700_000_000_000_000 + s / 2);
            prev = seal(Profile::Default, &mut r);
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
    fn our_padding_gives_the_same_digest_as_sha2() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(
                sha256(&data[..n])[..],
                Sha256::digest(&data[..n])[..],
                "length {n}"
            );
        }
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
        let o = verify(Profile::Default, &rows, Some(&head));
        assert!(o.clean(), "{o:?}");
        assert_eq!((o.walked, o.last.seq), (6, Some(6)));

        let kind = |rows: &[Row<'_>], head: Option<&Head>| {
            verify(Profile::Default, rows, head)
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
        assert_ne!(
            row_hash(Profile::Default, &a),
            row_hash(Profile::Default, &b)
        );
        assert_eq!(
            row_hash(Profile::Certctl, &a),
            row_hash(Profile::Certctl, &b)
        );
        // NULL and '' differ in the default form only.
        let mut n = a.clone();
        n.set(col::CATEGORY, None);
        assert_ne!(
            row_hash(Profile::Default, &a),
            row_hash(Profile::Default, &n)
        );
        assert_eq!(
            row_hash(Profile::Certctl, &a),
            row_hash(Profile::Certctl, &n)
        );
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
            prev = Some(seal(Profile::Certctl, &mut r));
            rows.push(r);
        }
        let head = Head {
            seq: None,
            hash: prev.unwrap(),
        };
        let o = verify(Profile::Certctl, &rows, Some(&head));
        assert!(o.clean(), "{o:?}");
        assert_eq!(o.published_order_breaks, Some(3));
        let o = verify(Profile::Certctl, &rows[1..], Some(&head));
        assert_eq!(o.brk.unwrap().kind, "no-genesis");
        let o = verify(
            Profile::Certctl,
            &[rows[0].clone(), rows[2].clone()],
            Some(&head),
        );
        assert_eq!(
            o.brk.map(|b| (b.kind, b.at)),
            Some(("orphan".into(), Some("a".into())))
        );
    }
}
