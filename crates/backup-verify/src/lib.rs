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

use anyhow::Result;

pub use outcome::{Break, Head, Outcome};
pub use row::{col, parse_and_check, parse_head, parse_rows, Link, Row, ZEROS};
pub use walk::walk;

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

/// Parses both exports and verifies.
pub fn verify_export(form: Form, rows: &[u8], head: &[u8]) -> Result<Outcome> {
    let links = parse_and_check(form, rows)?;
    let head = parse_head(head)?;
    Ok(walk(form, &links, head.as_ref()))
}
