//! The independent verifier of backup-smoke: recomputes every row's hash
//! from rows exported with `COPY ... TO STDOUT` and walks the chain itself.
//! It uses no function from the database, so a restored database cannot
//! vouch for itself, and a bug in the SQL canonical form shows up as a
//! disagreement between the two verifiers.
//!
//! A crate of its own so that it can be optimized cheaply: `cargo xtask`
//! runs a dev build, and the workspace compiles this crate (alone among
//! its members) at `opt-level = 3` even there, where xtask itself stays
//! unoptimized. Everything per-row lives here: splitting the COPY text,
//! undoing its escapes, the canonical payloads, SHA-256 and the walks.
//!
//! It reports breaks with the same kinds as the SQL verifiers in
//! `deployments/sql/`, so a report can show both findings side by side.

pub mod canon;
pub mod copy;
mod outcome;
mod row;
mod walk;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

pub use outcome::{Break, Head, Outcome};
pub use row::{col, parse_and_check, parse_head, parse_rows, Link, Row, ZEROS};
pub use walk::{sort, walk, Landmarks, Mark, Walker};

/// Which canonical form a chain was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The project's own: netstrings, walked by seq.
    Default,
    /// certctl's published form (migration 000047): `|`-joined, walked by links.
    Certctl,
}

/// Verifies parsed rows against the head row.
pub fn verify(form: Form, rows: &[Row<'_>], head: Option<&Head>) -> Outcome {
    let mut buf = Vec::new();
    let links: Vec<Link<'_>> = rows
        .iter()
        .map(|r| {
            let ok = row::matches(form, r, &mut buf);
            Link::of(r.clone(), ok, &mut buf)
        })
        .collect();
    walk(form, &links, head)
}

/// How much of a row export is read at a time: memory stays at about
/// twice this (the block being parsed and the next one being read),
/// whatever the table's size.
const BLOCK: usize = 8 << 20;

/// Reads `f` into `buf[filled..]` until `buf` is full or the file ends:
/// the new fill, and whether the file ended.
fn fill(
    f: &mut std::fs::File,
    buf: &mut [u8],
    mut filled: usize,
    path: &Path,
) -> Result<(usize, bool)> {
    while filled < buf.len() {
        let n = f
            .read(&mut buf[filled..])
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok((filled, true));
        }
        filled += n;
    }
    Ok((filled, false))
}

/// Calls `each` with the export's rows, parsed and hashed, a block at a
/// time, in the export's order. Parse errors name the export's line.
fn for_each_block(form: Form, path: &Path, mut each: impl FnMut(&[Link<'_>])) -> Result<u64> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // Two buffers, each zeroed once: the next block is read (by another
    // thread) while this one is parsed and walked, so the parsing threads
    // never wait for the disk or the page cache.
    let (mut cur, mut next) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
    let (mut filled, mut eof) = fill(&mut f, &mut cur, 0, path)?;
    let mut lines = 0u64;
    loop {
        let end = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', &cur[..filled]) {
                Some(i) => i + 1,
                // One row longer than the block: read on.
                None => {
                    cur.resize(cur.len() * 2, 0);
                    (filled, eof) = fill(&mut f, &mut cur, filled, path)?;
                    continue;
                }
            }
        };
        // The unparsed tail of this block starts the next one.
        let tail = filled - end;
        if next.len() < cur.len() {
            next.resize(cur.len(), 0);
        }
        next[..tail].copy_from_slice(&cur[end..filled]);
        let (walked, read) = std::thread::scope(|s| {
            let reader = (!eof).then(|| s.spawn(|| fill(&mut f, &mut next, tail, path)));
            let walked = row::for_each_piece(form, &cur[..end], &mut each);
            (walked, reader.map(|r| r.join()))
        });
        lines += walked.with_context(|| format!("in the rows after exported row {lines}"))?;
        match read {
            None => return Ok(lines),
            Some(Ok(r)) => (filled, eof) = r?,
            Some(Err(_)) => anyhow::bail!("the thread reading {} panicked", path.display()),
        }
        std::mem::swap(&mut cur, &mut next);
    }
}

/// Counts the rows of an export (its lines), streamed.
fn count_rows(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut n, mut last) = (0u64, b'\n');
    loop {
        let got = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if got == 0 {
            break;
        }
        n += memchr::memchr_iter(b'\n', &buf[..got]).count() as u64;
        last = buf[got - 1];
    }
    Ok(n + u64::from(last != b'\n'))
}

/// Verifies a row export on disk (rows in seq order for the default form,
/// in (timestamp, id) order for certctl: see [`walk`]) against its head
/// export, reading it a block at a time: memory does not grow with the
/// table. Returns the outcome and the rows the negative controls need,
/// with the row at chain position `checkpoint_at` (1-based) if asked.
pub fn verify_file(
    form: Form,
    rows: &Path,
    head: &[u8],
    checkpoint_at: Option<u64>,
) -> Result<(Outcome, Landmarks)> {
    let head = parse_head(head)?;
    // The rows are counted (for the landmarks' middle) by another thread
    // while the first block is read and parsed, not in a pass before it.
    std::thread::scope(|s| {
        let mut counting = Some(s.spawn(|| count_rows(rows)));
        let mut w = Walker::new(form, head, u64::MAX);
        w.landmarks.checkpoint_at = checkpoint_at;
        let mut counted = Ok(());
        for_each_block(form, rows, |links| {
            if let Some(c) = counting.take() {
                match c.join() {
                    Ok(Ok(n)) => w.landmarks.middle_at = Landmarks::middle_for(n),
                    Ok(Err(e)) => counted = Err(e),
                    Err(_) => {
                        counted = Err(anyhow::anyhow!("the thread counting the rows panicked"))
                    }
                }
            }
            links.iter().for_each(|l| w.push(l))
        })?;
        counted?;
        if w.needs_second_pass() {
            for_each_block(form, rows, |links| links.iter().for_each(|l| w.second(l)))?;
        }
        let landmarks = w.take_landmarks();
        Ok((w.finish(), landmarks))
    })
}

/// Parses both exports and verifies.
pub fn verify_export(form: Form, rows: &[u8], head: &[u8]) -> Result<Outcome> {
    let links = parse_and_check(form, rows)?;
    let head = parse_head(head)?;
    Ok(walk(form, &links, head.as_ref()))
}
