//! What a verifier found: the head row, where and how the chain broke,
//! and the whole verdict. The SQL verifiers' answers are parsed into the
//! same types, so both findings can be shown side by side.

use serde::Serialize;

/// The head row: the default form keeps seq and hash, certctl only the hash.
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
    /// SHA-256 over the SHA-256 of `ns(id) ns(prev_hash) ns(row_hash)` of every row, in chain order
    /// (certctl: of the walked rows, then, if rows were left off the walk, the SHA-256 of every
    /// row's leaf in published order).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub chain_digest: String,
    /// certctl: rows whose prev_hash is not the row before them in (timestamp, id) order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_order_breaks: Option<u64>,
    /// certctl: the first of those, where certctl's own verifier (which walks
    /// the published order) reports its break: 1-based position and id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_first_break: Option<(u64, String)>,
}

impl Outcome {
    pub fn clean(&self) -> bool {
        self.brk.is_none() && self.walked == self.total
    }
}
