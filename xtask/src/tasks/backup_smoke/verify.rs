//! The independent Rust verifier, as the smoke uses it: the `backup-verify`
//! crate (optimized even in the dev build `cargo xtask` runs), addressed
//! by `--profile`. It recomputes every row's hash from rows exported with
//! `COPY ... TO STDOUT` and walks the chain itself, with no function from
//! the database, so a restored database cannot vouch for itself.

use anyhow::Result;

pub use backup_verify::{
    col, parse_head, parse_rows, Break, Form, Head, Landmarks, Link, Mark, Outcome, Row, ZEROS,
};

use crate::flags::Profile;

/// The canonical form a `--profile` names.
pub fn form(p: Profile) -> Form {
    match p {
        Profile::Default => Form::Default,
        Profile::Certctl => Form::Certctl,
    }
}

/// Parses an export and checks every row's hash (in parallel).
pub fn parse_and_check(p: Profile, export: &[u8]) -> Result<Vec<Link<'_>>> {
    backup_verify::parse_and_check(form(p), export)
}

/// Walks rows whose hashes were already checked.
pub fn walk(p: Profile, links: &[Link<'_>], head: Option<&Head>) -> Outcome {
    backup_verify::walk(form(p), links, head)
}

/// Verifies parsed rows against the head row.
pub fn verify(p: Profile, rows: &[Row<'_>], head: Option<&Head>) -> Outcome {
    backup_verify::verify(form(p), rows, head)
}

/// Verifies a row export on disk, streamed (see [`backup_verify::verify_file`]).
pub fn verify_file(
    p: Profile,
    rows: &std::path::Path,
    head: &[u8],
    checkpoint_at: Option<u64>,
) -> Result<(Outcome, Landmarks)> {
    backup_verify::verify_file(form(p), rows, head, checkpoint_at)
}

/// Parses both exports and verifies.
pub fn verify_export(p: Profile, rows: &[u8], head: &[u8]) -> Result<Outcome> {
    backup_verify::verify_export(form(p), rows, head)
}
