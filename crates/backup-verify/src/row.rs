//! Rows of a `COPY ... TO STDOUT` export: the column layout, the parsed
//! row, the link a walk keeps of it, and the parallel parse-and-hash pass
//! that turns an export into links.

use std::borrow::Cow;

use anyhow::{bail, Context, Result};

use crate::canon::{hex, parse_ts, payload, payload_of, push_ns, sha256};
use crate::copy::{self, Field};
use crate::outcome::Head;
use crate::Form;

/// The "previous hash" of the first row in the default form.
pub const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Columns of a row export, in this order (the certctl form exports NULL for seq).
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

/// The columns of one exported row.
pub type Cols<'a> = [Field<'a>; col::COUNT];

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
    pub fn new(cols: Cols<'a>) -> Result<Row<'a>> {
        let (seq, ts_micros) = keys(&cols)?;
        Ok(Row {
            seq,
            ts_micros,
            cols,
        })
    }
    pub fn get(&self, c: usize) -> Option<&[u8]> {
        self.cols[c].as_deref()
    }
    pub(crate) fn text(&self, c: usize) -> &[u8] {
        self.get(c).unwrap_or_default()
    }
    pub fn set(&mut self, c: usize, v: Option<&str>) {
        self.cols[c] = v.map(|v| Cow::Owned(v.as_bytes().to_vec()));
    }
}

/// Checks the NOT NULL columns; seq and the timestamp, parsed.
fn keys(cols: &Cols<'_>) -> Result<(Option<i64>, i64)> {
    if let Some((_, name)) = NOT_NULL.iter().find(|(c, _)| cols[*c].is_none()) {
        bail!("{name} is NULL");
    }
    let seq = cols[col::SEQ].as_deref().map(parse_int).transpose()?;
    let ts = cols[col::TS].as_deref().unwrap_or_default();
    let ts_micros = parse_ts(ts)
        .with_context(|| format!("unreadable timestamp {:?}", String::from_utf8_lossy(ts)))?;
    Ok((seq, ts_micros))
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
    pub(crate) fn of(mut r: Row<'a>, ok: bool, buf: &mut Vec<u8>) -> Link<'a> {
        Link::take(r.seq, r.ts_micros, &mut r.cols, ok, buf)
    }
    /// [`Link::of`] a row's parts, taking the columns it keeps.
    fn take(
        seq: Option<i64>,
        ts_micros: i64,
        cols: &mut Cols<'a>,
        ok: bool,
        buf: &mut Vec<u8>,
    ) -> Link<'a> {
        buf.clear();
        push_ns(buf, cols[col::ID].as_deref());
        push_ns(buf, cols[col::PREV].as_deref());
        push_ns(buf, cols[col::ROW_HASH].as_deref());
        let leaf = sha256(buf);
        Link {
            seq,
            ts_micros,
            id: cols[col::ID].take().unwrap_or_default(),
            prev_hash: cols[col::PREV].take(),
            row_hash: cols[col::ROW_HASH].take().unwrap_or_default(),
            ok,
            leaf,
        }
    }
    pub(crate) fn prev(&self) -> &[u8] {
        self.prev_hash.as_deref().unwrap_or_default()
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

pub(crate) fn matches(form: Form, r: &Row<'_>, buf: &mut Vec<u8>) -> bool {
    payload(form, r, buf);
    hex(&sha256(buf)) == r.text(col::ROW_HASH)
}

/// [`matches`] of a row's parts.
fn matches_cols(
    form: Form,
    seq: Option<i64>,
    ts_micros: i64,
    cols: &Cols<'_>,
    buf: &mut Vec<u8>,
) -> bool {
    payload_of(form, seq, ts_micros, cols, buf);
    hex(&sha256(buf)) == cols[col::ROW_HASH].as_deref().unwrap_or_default()
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
}

/// Parses and checks one row-aligned piece of an export.
fn check_piece(form: Form, piece: &[u8]) -> Result<Vec<Link<'_>>> {
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(piece.len() / 200);
    // The columns are borrowed in place (no row is moved around): a row
    // is about 300 bytes of column slices, copied each time it moves.
    copy::each_line(piece, |cols: &mut Cols<'_>| {
        let (seq, ts) = keys(cols)?;
        let ok = matches_cols(form, seq, ts, cols, &mut buf);
        out.push(Link::take(seq, ts, cols, ok, &mut buf));
        Ok(())
    })?;
    Ok(out)
}

/// Parses an export and checks every row's hash in one pass, in parallel
/// (parsing costs as much as hashing; a row's hash depends only on the
/// row itself). The export is cut into many more row-aligned pieces than
/// there are threads, and each thread takes the next piece when it is
/// done, so a thread the scheduler starves on a busy machine does not hold
/// the others up. Only what the walk needs is kept of each row.
pub fn parse_and_check(form: Form, export: &[u8]) -> Result<Vec<Link<'_>>> {
    let n = threads();
    let pieces = copy::chunks(export, if n > 1 { n * 8 } else { 1 });
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<Vec<Link<'_>>>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..n.min(pieces.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(piece) = pieces.get(i) else {
                            break mine;
                        };
                        mine.push((i, check_piece(form, piece)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join().unwrap_or_else(|_| {
                    vec![(0, Err(anyhow::anyhow!("a verifier thread panicked")))]
                })
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    let mut links = Vec::with_capacity(
        done.iter()
            .map(|(_, d)| d.as_ref().map_or(0, Vec::len))
            .sum(),
    );
    for (_, d) in done {
        match d {
            Ok(l) => links.extend(l),
            // Parse again in one piece, so the error names the export's own line number.
            Err(e) => return Err(parse_rows(export).err().unwrap_or(e)),
        }
    }
    Ok(links)
}

/// [`parse_and_check`], with the parsed rows handed to `each` on the
/// calling thread, a piece at a time in the export's order, as soon as
/// that piece and every one before it are done: the caller's walk runs
/// while the other threads parse, not after them. Returns the rows seen.
pub fn for_each_piece(form: Form, export: &[u8], mut each: impl FnMut(&[Link<'_>])) -> Result<u64> {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let n = threads();
    let pieces = copy::chunks(export, if n > 1 { n * 8 } else { 1 });
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    let walked = std::thread::scope(|s| {
        let workers: Vec<_> = (0..n.min(pieces.len()))
            .map(|_| {
                let (tx, pieces, next) = (tx.clone(), &pieces, &next);
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Relaxed);
                    let Some(piece) = pieces.get(i) else {
                        break;
                    };
                    // The receiver is gone once a piece failed: stop.
                    if tx.send((i, check_piece(form, piece))).is_err() {
                        break;
                    }
                })
            })
            .collect();
        drop(tx);
        // Pieces done out of order wait here for the ones before them.
        let mut done: Vec<Option<Result<Vec<Link<'_>>>>> = pieces.iter().map(|_| None).collect();
        let (mut at, mut rows) = (0, 0u64);
        for (i, r) in rx {
            done[i] = Some(r);
            while let Some(r) = done.get_mut(at).and_then(Option::take) {
                match r {
                    Ok(links) => {
                        rows += links.len() as u64;
                        each(&links);
                    }
                    Err(e) => {
                        next.store(pieces.len(), Relaxed);
                        return Err(e);
                    }
                }
                at += 1;
            }
        }
        // Joined here, so that a panic is an error rather than ours.
        let panicked = workers.into_iter().any(|w| w.join().is_err());
        if panicked || at < pieces.len() {
            bail!("a verifier thread panicked");
        }
        Ok(rows)
    });
    // Parse again in one piece, so the error names the export's own line number.
    walked.map_err(|e| parse_rows(export).err().unwrap_or(e))
}
