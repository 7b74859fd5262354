//! The walks: in seq order (the default form) or along the links (the
//! certctl form, whose published order is not the chain's), each naming
//! the first break with the same kinds as the SQL verifiers, and the
//! chain digest over every row in chain order.

use std::collections::{HashMap, HashSet};

use crate::canon::{hex, sha256};
use crate::outcome::{Break, Head, Outcome};
use crate::row::{Link, ZEROS};
use crate::Form;

/// Walks rows whose hashes were already checked.
pub fn walk(form: Form, links: &[Link<'_>], head: Option<&Head>) -> Outcome {
    match form {
        Form::Default => walk_by_seq(links, head),
        Form::Certctl => walk_by_links(links, head),
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

pub(crate) fn text(b: &[u8]) -> String {
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
