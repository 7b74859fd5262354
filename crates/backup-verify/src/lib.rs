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

/// How much of a row export is read at a time: memory stays at about this
/// much (times two while a block is parsed), whatever the table's size.
const BLOCK: usize = 8 << 20;

/// Calls `each` with the export's rows, parsed and hashed, a block at a
/// time, in the export's order. Parse errors name the export's line.
fn for_each_block(form: Form, path: &Path, mut each: impl FnMut(&[Link<'_>])) -> Result<u64> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // One buffer for the whole file: zeroed once, the unparsed tail of a
    // block moved to its front before the next read.
    let mut buf = vec![0u8; BLOCK];
    let (mut filled, mut lines, mut eof) = (0, 0u64, false);
    while !eof {
        // Fill the block (a read may return less than asked).
        while filled < buf.len() {
            let n = f
                .read(&mut buf[filled..])
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                eof = true;
                break;
            }
            filled += n;
        }
        let end = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(i) => i + 1,
                // One row longer than the block: read on.
                None => {
                    buf.resize(buf.len() * 2, 0);
                    continue;
                }
            }
        };
        lines += row::for_each_piece(form, &buf[..end], &mut each)
            .with_context(|| format!("in the rows after exported row {lines}"))?;
        buf.copy_within(end..filled, 0);
        filled -= end;
    }
    Ok(lines)
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
    let n = count_rows(rows)?;
    let mut w = Walker::new(form, head, Landmarks::middle_for(n));
    w.landmarks.checkpoint_at = checkpoint_at;
    for_each_block(form, rows, |links| links.iter().for_each(|l| w.push(l)))?;
    if w.needs_second_pass() {
        for_each_block(form, rows, |links| links.iter().for_each(|l| w.second(l)))?;
    }
    let landmarks = w.take_landmarks();
    Ok((w.finish(), landmarks))
}

/// Parses both exports and verifies.
pub fn verify_export(form: Form, rows: &[u8], head: &[u8]) -> Result<Outcome> {
    let links = parse_and_check(form, rows)?;
    let head = parse_head(head)?;
    Ok(walk(form, &links, head.as_ref()))
}
