//! The walks, streamed: rows arrive one at a time in the export's order
//! (seq order for the default form, the published (timestamp, id) order
//! for certctl) and only a bounded state is kept, so memory does not grow
//! with the table. Each walk names the first break with the same kinds as
//! the SQL verifiers, and computes the chain digest over the rows in chain
//! order.
//!
//! The order rows arrive in is only a matter of memory, never of the
//! verdict: the default walk checks that seq rises, and the certctl walk
//! follows the links itself, parking a row whose predecessor has not come
//! yet. The published order is nearly the chain order (only rows that share
//! a timestamp or were stamped out of order differ), so few rows are parked
//! on a sound chain; on a broken one the parked rows are capped, and a
//! second pass over the same rows names the break.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::canon::hex;
use crate::outcome::{Break, Head, Outcome};
use crate::row::{Link, ZEROS};
use crate::Form;

/// Rows of the certctl form parked while they wait for their predecessor:
/// at most this many are kept (about 200 bytes each).
const PARKED_CAP: usize = 1 << 16;
/// Rows kept around the middle of the chain for the negative controls.
const MIDDLE: usize = 64;

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

/// A row as the negative controls name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    pub id: String,
    pub seq: Option<i64>,
    pub ts_micros: i64,
    pub row_hash: String,
}

impl Mark {
    fn of(l: &Link<'_>) -> Mark {
        let mut m = Mark::default();
        m.fill(l);
        m
    }
    /// Overwrites this mark with `l`, reusing its buffers (once per row).
    fn fill(&mut self, l: &Link<'_>) {
        set_text(&mut self.id, &l.id);
        set_text(&mut self.row_hash, &l.row_hash);
        self.seq = l.seq;
        self.ts_micros = l.ts_micros;
    }
}

/// `text(b)` into `s`, reusing its allocation. Runs for every walked row:
/// the exported hashes and ids are valid UTF-8, checked without the
/// slower lossy conversion.
fn set_text(s: &mut String, b: &[u8]) {
    s.clear();
    match std::str::from_utf8(b) {
        Ok(t) => s.push_str(t),
        Err(_) => s.push_str(&String::from_utf8_lossy(b)),
    }
}

/// The few rows of the chain the negative controls need, in chain order:
/// the first, [`MIDDLE`] from position `middle_at`, and the last three.
#[derive(Debug, Clone, Default)]
pub struct Landmarks {
    /// Rows in chain order (walked rows; in the default form every row).
    pub n: u64,
    pub first: Option<Mark>,
    pub middle_at: u64,
    pub middle: Vec<Mark>,
    pub last: Vec<Mark>,
    /// A checkpoint's position (1-based: its row count) and the row found there.
    pub checkpoint_at: Option<u64>,
    pub at_checkpoint: Option<Mark>,
}

impl Landmarks {
    /// Where the middle window should start for a chain of `rows` rows.
    pub fn middle_for(rows: u64) -> u64 {
        (rows / 2).saturating_sub(1)
    }
    /// Every landmark but the last three (see [`Walker::take_landmarks`]).
    fn add(&mut self, l: &Link<'_>) {
        if self.n == 0 {
            self.first = Some(Mark::of(l));
        }
        if self.n >= self.middle_at && self.middle.len() < MIDDLE {
            self.middle.push(Mark::of(l));
        }
        if self.checkpoint_at == Some(self.n + 1) {
            self.at_checkpoint = Some(Mark::of(l));
        }
        self.n += 1;
    }
}

/// A walked row's bytes, kept in a ring of the last three: copied bytes
/// per row, made text only once at the end.
#[derive(Default)]
struct Raw {
    id: Vec<u8>,
    seq: Option<i64>,
    ts_micros: i64,
    row_hash: Vec<u8>,
}

impl Raw {
    fn fill(&mut self, l: &Link<'_>) {
        self.id.clear();
        self.id.extend_from_slice(&l.id);
        self.row_hash.clear();
        self.row_hash.extend_from_slice(&l.row_hash);
        self.seq = l.seq;
        self.ts_micros = l.ts_micros;
    }
    fn mark(&self) -> Mark {
        Mark {
            id: text(&self.id),
            seq: self.seq,
            ts_micros: self.ts_micros,
            row_hash: text(&self.row_hash),
        }
    }
}

/// A row parked until its predecessor is walked.
struct Parked {
    /// Its place in the arrival (published) order.
    at: u64,
    id: Vec<u8>,
    seq: Option<i64>,
    ts_micros: i64,
    row_hash: Vec<u8>,
    ok: bool,
    leaf: [u8; 32],
}

impl Parked {
    fn link(&self) -> Link<'_> {
        Link {
            seq: self.seq,
            ts_micros: self.ts_micros,
            id: self.id.as_slice().into(),
            prev_hash: None,
            row_hash: self.row_hash.as_slice().into(),
            ok: self.ok,
            leaf: self.leaf,
        }
    }
}

/// A streamed walk: [`Walker::push`] every row in the export's order, then
/// a [`Walker::second`] pass over the same rows if
/// [`Walker::needs_second_pass`], then [`Walker::finish`].
pub struct Walker {
    form: Form,
    head: Option<Head>,
    total: u64,
    walked: u64,
    found: Option<Break>,
    /// SHA-256 over the leaves of the rows in chain order.
    digest: Sha256,
    /// certctl: SHA-256 over the leaves of every row in published order
    /// (folded into the digest when not every row was walked).
    all: Sha256,
    /// The last walked row (default: seq and hash; certctl: hash); its
    /// hash is kept as bytes in `last_hash` while walking.
    last: Head,
    last_hash: Vec<u8>,
    /// The last three walked rows, a ring indexed by walked count.
    tail: [Raw; 3],
    /// The last row that arrived (default: its seq, to check the order).
    prev_seq: Option<i64>,
    /// certctl: the row_hash of the row before this one in published order.
    before: Vec<u8>,
    published_breaks: u64,
    published_first: Option<(u64, String)>,
    /// certctl: some row's hash is the head's.
    head_seen: bool,
    parked: HashMap<Vec<u8>, Vec<Parked>>,
    parked_rows: usize,
    overflow: bool,
    /// Second pass: which parked prev_hashes are some row's hash, and the
    /// first row (published order) following each.
    exists: HashSet<Vec<u8>>,
    first_follower: HashMap<Vec<u8>, Vec<u8>>,
    pub landmarks: Landmarks,
}

impl Walker {
    /// `middle_at`: where the landmarks' middle window starts (see [`Landmarks::middle_for`]).
    pub fn new(form: Form, head: Option<Head>, middle_at: u64) -> Walker {
        let last = match form {
            Form::Default => Head {
                seq: Some(0),
                hash: ZEROS.into(),
            },
            Form::Certctl => Head {
                seq: None,
                hash: String::new(),
            },
        };
        Walker {
            form,
            head,
            last_hash: last.hash.as_bytes().to_vec(),
            tail: Default::default(),
            total: 0,
            walked: 0,
            found: None,
            digest: Sha256::new(),
            all: Sha256::new(),
            last,
            prev_seq: None,
            before: Vec::new(),
            published_breaks: 0,
            published_first: None,
            head_seen: false,
            parked: HashMap::new(),
            parked_rows: 0,
            overflow: false,
            exists: HashSet::new(),
            first_follower: HashMap::new(),
            landmarks: Landmarks {
                middle_at,
                ..Landmarks::default()
            },
        }
    }

    pub fn push(&mut self, l: &Link<'_>) {
        self.total += 1;
        match self.form {
            Form::Default => self.push_by_seq(l),
            Form::Certctl => self.push_by_links(l),
        }
    }

    fn push_by_seq(&mut self, r: &Link<'_>) {
        self.digest.update(r.leaf);
        self.mark(r);
        let seq = r.seq.unwrap_or(i64::MIN);
        let out_of_order = self.prev_seq.is_some_and(|p| seq < p);
        self.prev_seq = Some(seq);
        if self.found.is_some() {
            return;
        }
        let at = Some(seq.to_string());
        if out_of_order {
            self.found = brk(
                at,
                "export-order",
                format!(
                    "seq {seq} arrived after a higher seq: the rows were not exported in seq order"
                ),
            );
            return;
        }
        let want = self.last.seq.unwrap_or(0) + 1;
        let prev_want: &[u8] = if self.walked == 0 {
            ZEROS.as_bytes()
        } else {
            &self.last_hash
        };
        if seq == want && r.ok && r.prev_hash.as_deref() == Some(prev_want) {
            self.walked += 1;
            self.last.seq = r.seq;
            self.last_hash.clear();
            self.last_hash.extend_from_slice(&r.row_hash);
            return;
        }
        self.found = if seq != want {
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

    fn push_by_links(&mut self, r: &Link<'_>) {
        self.all.update(r.leaf);
        if r.prev() != self.before.as_slice() {
            if self.published_breaks == 0 {
                self.published_first = Some((self.total, text(&r.id)));
            }
            self.published_breaks += 1;
        }
        self.before.clear();
        self.before.extend_from_slice(&r.row_hash);
        if let Some(h) = &self.head {
            self.head_seen |= *r.row_hash == *h.hash.as_bytes();
        }
        if self.found.is_some() {
            return;
        }
        if r.prev() == self.last_hash.as_slice() {
            self.step(r);
            self.unpark();
        } else if self.parked_rows < PARKED_CAP {
            self.parked_rows += 1;
            self.parked
                .entry(r.prev().to_vec())
                .or_default()
                .push(Parked {
                    at: self.total,
                    id: r.id.to_vec(),
                    seq: r.seq,
                    ts_micros: r.ts_micros,
                    row_hash: r.row_hash.to_vec(),
                    ok: r.ok,
                    leaf: r.leaf,
                });
        } else {
            self.overflow = true;
        }
    }

    /// Walks onto `r`, whose prev_hash is the last walked row's hash.
    fn step(&mut self, r: &Link<'_>) {
        if !r.ok {
            let id = text(&r.id);
            self.found = brk(
                Some(id.clone()),
                "row-hash",
                format!(
                    "row {id}: row_hash does not match the row's contents: the row was modified"
                ),
            );
            return;
        }
        self.walked += 1;
        self.digest.update(r.leaf);
        self.mark(r);
        self.last_hash.clear();
        self.last_hash.extend_from_slice(&r.row_hash);
    }

    /// Walks on through parked rows that follow the last walked one.
    fn unpark(&mut self) {
        while self.found.is_none() {
            let Some(next) = self.parked.remove(self.last_hash.as_slice()) else {
                return;
            };
            self.parked_rows -= next.len();
            let from = text(&self.last_hash);
            if let Some(j) = next.get(1) {
                let (i, j) = (text(&next[0].id), text(&j.id));
                self.found = brk(
                    Some(j.clone()),
                    "fork",
                    format!("rows {i} and {j} both follow {from}"),
                );
                return;
            }
            self.step(&next[0].link());
        }
    }

    /// Whether the break can only be named with a second pass over the rows.
    pub fn needs_second_pass(&self) -> bool {
        self.form == Form::Certctl && self.found.is_none() && self.walked < self.total
    }

    /// The second pass: every row again, in the same order.
    pub fn second(&mut self, r: &Link<'_>) {
        if self.parked.contains_key(&*r.row_hash) {
            self.exists.insert(r.row_hash.to_vec());
        }
        if self.parked.contains_key(r.prev()) {
            self.first_follower
                .entry(r.prev().to_vec())
                .or_insert_with(|| r.id.to_vec());
        }
    }

    /// A walked row: the landmarks, and the ring of the last three.
    fn mark(&mut self, r: &Link<'_>) {
        self.tail[(self.landmarks.n % 3) as usize].fill(r);
        self.landmarks.add(r);
    }

    /// The landmarks of the rows walked so far, with the last three.
    pub fn take_landmarks(&mut self) -> Landmarks {
        let n = self.landmarks.n;
        self.landmarks.last = (n.saturating_sub(3)..n)
            .map(|i| self.tail[(i % 3) as usize].mark())
            .collect();
        std::mem::take(&mut self.landmarks)
    }

    pub fn finish(mut self) -> Outcome {
        set_text(&mut self.last.hash, &self.last_hash);
        let total = self.total;
        let published_order_breaks = (self.form == Form::Certctl).then_some(self.published_breaks);
        if self.form == Form::Certctl && self.found.is_none() && self.walked < total {
            self.found = self.name_the_break();
        }
        if self.found.is_none() {
            self.found = self.head_check();
        }
        let mut digest = self.digest;
        if self.form == Form::Certctl && self.walked < total {
            // Rows off the walk: their leaves in published order, folded in
            // as one hash (the digest of a sound chain is unchanged by this).
            digest.update(self.all.finalize());
        }
        Outcome {
            total,
            walked: self.walked,
            head: self.head,
            last: self.last,
            brk: self.found,
            chain_digest: text(&hex(&digest.finalize())),
            published_order_breaks,
            published_first_break: self.published_first,
        }
    }

    /// certctl, when rows are left off the walk: the first parked row (in
    /// published order) whose predecessor is no row is where rows were
    /// deleted; failing that, a row whose predecessor was already followed
    /// by another is a fork.
    fn name_the_break(&self) -> Option<Break> {
        let mut rows: Vec<(&[u8], &Parked)> = self
            .parked
            .iter()
            .flat_map(|(p, v)| v.iter().map(move |r| (p.as_slice(), r)))
            .collect();
        rows.sort_by_key(|(_, r)| r.at);
        let parked_hashes: HashSet<&[u8]> = rows.iter().map(|(_, r)| &*r.row_hash).collect();
        let total = self.total;
        let unreachable = total - self.walked;
        let orphan = rows
            .iter()
            .find(|(p, _)| !p.is_empty() && !self.exists.contains(*p))
            .map(|(_, r)| text(&r.id));
        if self.walked == 0 {
            return brk(orphan, "no-genesis", format!("no row has prev_hash NULL: the oldest row is missing ({total} rows unreachable)"));
        }
        if orphan.is_none() {
            let fork = rows.iter().find(|(p, _)| {
                !parked_hashes.contains(p) && (p.is_empty() || self.exists.contains(*p))
            });
            if let Some((p, r)) = fork {
                let j = text(&r.id);
                let i = self
                    .first_follower
                    .get(*p)
                    .map_or_else(|| "another".into(), |i| text(i));
                let from = if p.is_empty() {
                    "the start of the chain".to_string()
                } else {
                    text(p)
                };
                return brk(
                    Some(j.clone()),
                    "fork",
                    format!("rows {i} and {j} both follow {from}"),
                );
            }
        }
        let before = orphan.clone().unwrap_or_else(|| "them".into());
        let capped = if self.overflow {
            format!(" (only the first {PARKED_CAP} were kept to name the break)")
        } else {
            String::new()
        };
        brk(
            orphan,
            "orphan",
            format!("{unreachable} of {total} rows are not reachable from the first row: a row before {before} was deleted{capped}"),
        )
    }

    fn head_check(&self) -> Option<Break> {
        let last = &self.last;
        match (self.form, &self.head) {
            (_, None) => brk(None, "head-missing", "audit_chain_head has no row 1".into()),
            (Form::Default, Some(h)) => {
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
            (Form::Certctl, Some(h)) if h.hash == last.hash => None,
            (Form::Certctl, Some(_)) if self.head_seen => brk(
                None,
                "head-behind",
                "the head names a row that is not the last one: the head was rolled back".into(),
            ),
            (Form::Certctl, Some(_)) => brk(
                None,
                "head-ahead",
                "the head names a hash that no row has: the newest rows were deleted or the table truncated".into(),
            ),
        }
    }
}

/// The order a walk wants its rows in: seq (default) or (timestamp, id) (certctl).
pub fn sort(form: Form, links: &mut [Link<'_>]) {
    match form {
        Form::Default => links.sort_by_key(|r| r.seq.unwrap_or(i64::MIN)),
        Form::Certctl => links.sort_by(|a, b| (a.ts_micros, &a.id).cmp(&(b.ts_micros, &b.id))),
    }
}

/// Walks rows already in memory (tests, the known answer): sorted into the
/// export's order, then streamed through a [`Walker`].
pub fn walk(form: Form, links: &[Link<'_>], head: Option<&Head>) -> Outcome {
    let mut sorted = links.to_vec();
    sort(form, &mut sorted);
    let mut w = Walker::new(
        form,
        head.cloned(),
        Landmarks::middle_for(sorted.len() as u64),
    );
    for l in &sorted {
        w.push(l);
    }
    if w.needs_second_pass() {
        for l in &sorted {
            w.second(l);
        }
    }
    w.finish()
}
