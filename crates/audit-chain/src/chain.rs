//! The chain walk: a scanner for the canonical record bytes, the fast
//! streaming verifier, and the diagnosis of a break.
//!
//! The fast path never allocates per line: it scans each line once for the
//! canonical shape (taking `seq` and `prev` on the way), hashes it, and
//! compares. Only when something is wrong does [`diagnose`] load every line
//! and work out what happened and where, which is worth the time.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev` of the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// Where a chain that verified ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// Records (lines); equal to the last `seq`.
    pub count: u64,
    /// SHA-256 of the last line (without its newline), or [`GENESIS`].
    pub head: [u8; 32],
    /// Bytes of the file covered, newlines included.
    pub len: u64,
}

impl Tip {
    pub const EMPTY: Tip = Tip {
        count: 0,
        head: GENESIS,
        len: 0,
    };

    pub fn head_hex(&self) -> String {
        hex(&self.head)
    }
}

/// What kind of break the first bad line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The last line has no newline: a write was cut short.
    Torn,
    /// The line is not JSON at all.
    NotJson,
    /// JSON, but not a record in the canonical form.
    NotARecord,
    /// The line's bytes changed after the next record was chained to it.
    Modified,
    /// Records are missing before this line.
    Deleted,
    /// The line is chained after a different line than the one before it.
    Reordered,
    /// The line is not part of the chain: its neighbours are chained to each other.
    Inserted,
    /// `prev` is not the hash of the line before, and no likelier story fits.
    PrevMismatch,
    /// `prev` is right but `seq` is not the line number.
    SeqGap,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Torn => "torn",
            Kind::NotJson => "not JSON",
            Kind::NotARecord => "not a record",
            Kind::Modified => "modified",
            Kind::Deleted => "deleted",
            Kind::Reordered => "reordered",
            Kind::Inserted => "inserted",
            Kind::PrevMismatch => "prev mismatch",
            Kind::SeqGap => "seq gap",
        }
    }
}

/// The first bad line of a log and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// 1-based line number.
    pub line: u64,
    pub kind: Kind,
    pub detail: String,
    /// Byte offset where the bad line starts.
    pub offset: u64,
    /// Bytes from `offset` to the end of the file (torn: exactly the torn bytes).
    pub tail_len: u64,
    /// Newline-terminated lines in the whole file.
    pub lines: u64,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {}: {}",
            self.line,
            self.kind.as_str(),
            self.detail
        )
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8; 32], out: &mut [u8; 64]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses 64 lowercase hex digits.
pub fn parse_hex32(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The canonical scanner.

/// Why a line is not a canonical record, and the byte where that shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanError {
    pub at: usize,
    pub expected: &'static str,
}

/// `seq` and `prev` of a canonical record.
#[derive(Debug, Clone, Copy)]
pub struct Scanned {
    pub seq: u64,
    pub prev: [u8; 32],
}

struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A bit set in the byte of `x` that is `"`, `\` or below 0x20; bits above
/// the lowest set one may be spurious (borrows), the lowest is exact.
#[inline(always)]
fn specials(x: u64) -> u64 {
    let q = x ^ (LO * b'"' as u64);
    let s = x ^ (LO * b'\\' as u64);
    let zq = q.wrapping_sub(LO) & !q;
    let zs = s.wrapping_sub(LO) & !s;
    let lt = x.wrapping_sub(LO * 0x20) & !x;
    (zq | zs | lt) & HI
}

impl Cur<'_> {
    #[inline(always)]
    fn err(&self, expected: &'static str) -> ScanError {
        ScanError {
            at: self.i,
            expected,
        }
    }

    #[inline(always)]
    fn lit(&mut self, s: &'static [u8], expected: &'static str) -> Result<(), ScanError> {
        if self.b.len() >= self.i + s.len() && &self.b[self.i..self.i + s.len()] == s {
            self.i += s.len();
            Ok(())
        } else {
            // Point at the first byte that differs (or the end).
            let same = self.b[self.i.min(self.b.len())..]
                .iter()
                .zip(s)
                .take_while(|(a, b)| a == b)
                .count();
            self.i += same;
            Err(self.err(expected))
        }
    }

    fn uint(&mut self) -> Result<u64, ScanError> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            if self.i > start && v == 0 {
                return Err(self.err("a number without leading zeros"));
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add((c - b'0') as u64))
                .ok_or_else(|| self.err("a number below 2^64"))?;
            self.i += 1;
        }
        if self.i == start {
            return Err(self.err("a number"));
        }
        Ok(v)
    }

    /// A JSON string exactly as serde_json writes it: no escapes but `\"`,
    /// `\\`, `\b \f \n \r \t` and `\u00XX` (lowercase) for other controls.
    fn string(&mut self) -> Result<(), ScanError> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(self.err("a string"));
        }
        self.i += 1;
        loop {
            if let Some(chunk) = self.b.get(self.i..self.i + 8) {
                let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                let m = specials(x);
                if m == 0 {
                    self.i += 8;
                    continue;
                }
                self.i += (m.trailing_zeros() / 8) as usize;
            }
            let Some(&c) = self.b.get(self.i) else {
                return Err(self.err("the end of the string"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => self.escape()?,
                0..=0x1f => return Err(self.err("no raw control character in a string")),
                _ => self.i += 1,
            }
        }
    }

    fn escape(&mut self) -> Result<(), ScanError> {
        let c = self.b.get(self.i + 1).copied();
        match c {
            Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 2;
                Ok(())
            }
            Some(b'u') => {
                let h = self
                    .b
                    .get(self.i + 2..self.i + 6)
                    .ok_or_else(|| self.err("a complete \\u escape"))?;
                let v = match (h[0], h[1], nibble(h[2]), nibble(h[3])) {
                    (b'0', b'0', Some(a), Some(b)) => (a << 4) | b,
                    _ => return Err(self.err("\\u00XX only for control characters")),
                };
                if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                    return Err(self.err("the short escape or the raw character"));
                }
                self.i += 6;
                Ok(())
            }
            _ => Err(self.err("a canonical escape")),
        }
    }

    fn string_or_null(&mut self) -> Result<(), ScanError> {
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            Ok(())
        } else {
            self.string()
        }
    }

    /// `null`, `{"tag":S}` or `{"tag":S,"digest":S}`, then optionally
    /// `,"digests":{"K":S,...}` and `,"local":{"K":S,...}`.
    fn image_ref(&mut self) -> Result<(), ScanError> {
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return Ok(());
        }
        self.lit(b"{\"tag\":", "null or {\"tag\":")?;
        self.string()?;
        if self.b[self.i..].starts_with(b",\"digest\":") {
            self.i += 10;
            self.string()?;
        }
        for key in [&b",\"digests\":{"[..], &b",\"local\":{"[..]] {
            if self.b[self.i..].starts_with(key) {
                self.i += key.len();
                self.map()?;
            }
        }
        self.lit(b"}", "}")
    }
}

impl Cur<'_> {
    /// The rest of a non-empty map of strings after its `{`: keys strictly
    /// ascending, as a sorted map serializes.
    fn map(&mut self) -> Result<(), ScanError> {
        let b = self.b;
        let mut last: Option<&[u8]> = None;
        loop {
            let at = self.i;
            self.string()?;
            let key = &b[at..self.i];
            if last.is_some_and(|l| l >= key) {
                return Err(self.err("keys in ascending order"));
            }
            last = Some(key);
            self.lit(b":", ":")?;
            self.string()?;
            if self.b[self.i..].starts_with(b",") {
                self.i += 1;
            } else {
                break;
            }
        }
        self.lit(b"}", "}")
    }
}

/// The shape of a canonical record: everything but the 64 bytes of `prev`
/// (which the walk compares with the expected hex as they are).
pub struct Shape {
    pub seq: u64,
    pub prev_at: usize,
    pub end: usize,
}

fn scan_shape(b: &[u8]) -> Result<Shape, ScanError> {
    let mut c = Cur { b, i: 0 };
    c.lit(b"{\"seq\":", "{\"seq\":")?;
    let seq = c.uint()?;
    c.lit(b",\"ts\":", ",\"ts\":")?;
    c.string()?;
    c.lit(b",\"env\":", ",\"env\":")?;
    c.string()?;
    c.lit(b",\"action\":", ",\"action\":")?;
    c.string()?;
    c.lit(b",\"outcome\":", ",\"outcome\":")?;
    c.string()?;
    c.lit(b",\"from\":", ",\"from\":")?;
    c.image_ref()?;
    c.lit(b",\"to\":", ",\"to\":")?;
    c.image_ref()?;
    c.lit(b",\"git_sha\":", ",\"git_sha\":")?;
    c.string_or_null()?;
    c.lit(b",\"actor\":", ",\"actor\":")?;
    c.string()?;
    c.lit(b",\"host\":", ",\"host\":")?;
    c.string()?;
    c.lit(b",\"reason\":", ",\"reason\":")?;
    c.string()?;
    if c.b[c.i..].starts_with(b",\"error\":") {
        c.i += 9;
        c.string()?;
    }
    if c.b[c.i..].starts_with(b",\"set\":") {
        c.i += 7;
        c.string()?;
    }
    c.lit(b",\"duration_ms\":", ",\"duration_ms\":")?;
    c.uint()?;
    c.lit(b",\"prev\":\"", ",\"prev\":\"")?;
    let prev_at = c.i;
    if b.len() < prev_at + 64 {
        c.i = b.len();
        return Err(c.err("64 lowercase hex digits"));
    }
    c.i += 64;
    c.lit(b"\"}\n", "\"} and the end of the line")?;
    Ok(Shape {
        seq,
        prev_at,
        end: c.i - 1,
    })
}

/// Scans one canonical record at the start of `b`, through its newline.
pub fn scan(b: &[u8]) -> Result<Scanned, ScanError> {
    let s = scan_shape(b)?;
    let prev = parse_hex32(&b[s.prev_at..s.prev_at + 64]).ok_or(ScanError {
        at: s.prev_at,
        expected: "64 lowercase hex digits",
    })?;
    Ok(Scanned { seq: s.seq, prev })
}

// ---------------------------------------------------------------------------
// The fast walk.

/// Walks the complete lines of `buf` as the continuation of `tip`. Returns
/// the bytes consumed; stops early (`Err(consumed)`) at the first line that
/// is not a canonical record continuing the chain, or `Ok(consumed)` when
/// only an incomplete line (or nothing) remains.
pub fn walk_buf(buf: &[u8], tip: &mut Tip) -> Result<usize, usize> {
    let mut pos = 0;
    let mut head_hex = [0u8; 64];
    hex_into(&tip.head, &mut head_hex);
    while pos < buf.len() {
        let rest = &buf[pos..];
        let s = match scan_shape(rest) {
            Ok(s) => s,
            // A canonical line holds no raw newline, so a scan that fails
            // before any newline ran out of bytes: wait for more.
            Err(_) if !rest.contains(&b'\n') => return Ok(pos),
            Err(_) => return Err(pos),
        };
        let line = &rest[..s.end];
        if rest[s.prev_at..s.prev_at + 64] != head_hex
            || s.seq != tip.count + 1
            || std::str::from_utf8(line).is_err()
        {
            return Err(pos);
        }
        tip.head = Sha256::digest(line).into();
        hex_into(&tip.head, &mut head_hex);
        tip.count += 1;
        tip.len += s.end as u64 + 1;
        pos += s.end + 1;
    }
    Ok(pos)
}

/// Streams `r` through [`walk_buf`] from `start`. `Ok(Ok(tip))` when every
/// byte is part of the chain; `Ok(Err(()))` at the first problem (the caller
/// then reads the whole file and runs [`diagnose`]).
pub fn walk_reader(r: &mut impl Read, start: Tip) -> std::io::Result<Result<Tip, ()>> {
    let mut tip = start;
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match r.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        filled += n;
        let consumed = match walk_buf(&buf[..filled], &mut tip) {
            Ok(c) => c,
            Err(_) => return Ok(Err(())),
        };
        if n == 0 {
            // End of file: anything left is an incomplete (torn) line.
            return Ok(if consumed == filled { Ok(tip) } else { Err(()) });
        }
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
    }
}

/// Verifies a whole log held in memory: its tip, or its first break.
pub fn check(bytes: &[u8]) -> Result<Tip, Break> {
    let mut tip = Tip::EMPTY;
    match walk_buf(bytes, &mut tip) {
        Ok(n) if n == bytes.len() => Ok(tip),
        _ => Err(diagnose(bytes)),
    }
}

// ---------------------------------------------------------------------------
// Diagnosis.

struct Line<'a> {
    bytes: &'a [u8],
    offset: usize,
    hash: [u8; 32],
    /// `seq` and `prev`, when the line is a canonical record.
    rec: Option<(u64, [u8; 32])>,
}

/// Names the first bad line of `bytes` and the likeliest story. Call it only
/// on a log that does not verify; on a good one it returns a `seq gap`
/// pointing past the end, which callers never see.
pub fn diagnose(bytes: &[u8]) -> Break {
    let mut lines: Vec<Line> = Vec::new();
    let mut offset = 0;
    for seg in bytes.split_inclusive(|&b| b == b'\n') {
        let body = seg.strip_suffix(b"\n").unwrap_or(seg);
        let rec = if seg.ends_with(b"\n") {
            scan(seg)
                .ok()
                .filter(|_| std::str::from_utf8(body).is_ok())
                .map(|s| (s.seq, s.prev))
        } else {
            None
        };
        lines.push(Line {
            bytes: body,
            offset,
            hash: Sha256::digest(body).into(),
            rec,
        });
        offset += seg.len();
    }
    let total = bytes.len();
    let complete = bytes.iter().filter(|&&c| c == b'\n').count() as u64;
    let brk = |n: usize, kind: Kind, detail: String| {
        let off = lines[n - 1].offset;
        Break {
            line: n as u64,
            kind,
            detail,
            offset: off as u64,
            tail_len: (total - off) as u64,
            lines: complete,
        }
    };
    // Where each hash first occurs (line number), for "chained after line m".
    let mut at: HashMap<[u8; 32], usize> = HashMap::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        at.entry(l.hash).or_insert(i + 1);
    }
    let hash_of = |n: usize| if n == 0 { GENESIS } else { lines[n - 1].hash };
    let count = lines.len();

    for n in 1..=count {
        let l = &lines[n - 1];
        if n == count && !bytes.ends_with(b"\n") {
            return brk(
                n,
                Kind::Torn,
                format!(
                    "{} bytes without a newline: a write was cut short",
                    l.bytes.len()
                ),
            );
        }
        let Some((seq, prev)) = l.rec else {
            return brk(n, not_a_record_kind(l.bytes), not_a_record_detail(l.bytes));
        };
        let next = lines.get(n).and_then(|l| l.rec);
        if prev == hash_of(n - 1) {
            if seq == n as u64 {
                continue;
            }
            if next.is_some_and(|(s, p)| p != l.hash && s == n as u64 + 1) {
                return brk(
                    n,
                    Kind::Modified,
                    format!(
                        "seq reads {seq} where {n} was expected, and line {} is not chained to it",
                        n + 1
                    ),
                );
            }
            return brk(n, Kind::SeqGap, format!("seq {seq} where {n} was expected"));
        }
        // prev mismatch: work out the likeliest story.
        let found = if prev == GENESIS {
            Some(0)
        } else {
            at.get(&prev).copied()
        };
        if let Some(m) = found.filter(|&m| m >= n) {
            return brk(
                n,
                Kind::Reordered,
                format!("it is chained after line {m} (seq {seq}): records were moved"),
            );
        }
        if next.is_some_and(|(_, p)| p == hash_of(n - 1)) {
            return brk(
                n,
                Kind::Inserted,
                format!(
                    "line {} is chained to line {}, not to this line",
                    n + 1,
                    n - 1
                ),
            );
        }
        if let Some(m) = found {
            if seq == m as u64 + 1 {
                let what = if m + 1 == n - 1 {
                    format!("line {} sits", m + 1)
                } else {
                    format!("lines {}-{} sit", m + 1, n - 1)
                };
                return brk(
                    m + 1,
                    Kind::Inserted,
                    format!("line {n} (seq {seq}) is chained to line {m}: {what} between them"),
                );
            }
            return brk(
                n,
                Kind::Reordered,
                format!("it is chained after line {m} (seq {seq}): records were moved"),
            );
        }
        let expected = n as u64;
        if seq > expected {
            let missing = seq - expected;
            return brk(
                n,
                Kind::Deleted,
                format!(
                    "{missing} record(s) missing before this line (seq jumps from {} to {seq})",
                    expected - 1
                ),
            );
        }
        if seq == expected {
            if n == 1 {
                return brk(
                    1,
                    Kind::Modified,
                    "its prev is not the genesis value (64 zeros)".into(),
                );
            }
            if next.is_some_and(|(_, p)| p == l.hash) {
                return brk(
                    n - 1,
                    Kind::Modified,
                    format!("its SHA-256 is not the prev recorded by line {n}"),
                );
            }
            if n == count {
                return brk(
                    n - 1,
                    Kind::Modified,
                    format!("its SHA-256 is not the prev recorded by line {n} (or the prev of line {n}, the last line, was edited)"),
                );
            }
            return brk(
                n,
                Kind::Modified,
                format!(
                    "its prev matches no line and line {} is not chained to it",
                    n + 1
                ),
            );
        }
        return brk(
            n,
            Kind::PrevMismatch,
            format!("its prev matches no line of the log and seq {seq} repeats an earlier one"),
        );
    }
    Break {
        line: count as u64 + 1,
        kind: Kind::SeqGap,
        detail: "no break (diagnose called on a log that verifies)".into(),
        offset: total as u64,
        tail_len: 0,
        lines: complete,
    }
}

fn not_a_record_kind(line: &[u8]) -> Kind {
    if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err() {
        Kind::NotJson
    } else {
        Kind::NotARecord
    }
}

fn not_a_record_detail(line: &[u8]) -> String {
    if line.is_empty() {
        return "an empty line".into();
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        return format!("{e}");
    }
    if let Err(e) = serde_json::from_slice::<crate::Record>(line) {
        return format!("{e}");
    }
    let mut with_nl = line.to_vec();
    with_nl.push(b'\n');
    match scan(&with_nl) {
        Err(e) => format!(
            "not in the canonical form: expected {} at byte {}",
            e.expected,
            e.at + 1
        ),
        Ok(_) => "not valid UTF-8".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, prev: &[u8; 32], reason: &str) -> Vec<u8> {
        let r = crate::Record {
            seq,
            ts: "2024-01-15T14:30:00.000000Z".into(),
            env: "staging".into(),
            action: "deploy".into(),
            outcome: "success".into(),
            from: None,
            to: Some(crate::ImageRef::new(format!("sha-{seq:012}"), None)),
            git_sha: None,
            actor: "ci (USER)".into(),
            host: "h".into(),
            reason: reason.into(),
            error: seq.is_multiple_of(3).then(|| format!("step {seq} failed")),
            set: seq.is_multiple_of(2).then(|| "green".to_string()),
            duration_ms: 7,
            prev: hex(prev),
        };
        let mut v = serde_json::to_vec(&r).unwrap();
        v.push(b'\n');
        v
    }

    fn chain(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|i| {
                let l = line(i, &prev, &format!("reason {i}"));
                prev = Sha256::digest(&l[..l.len() - 1]).into();
                l
            })
            .collect()
    }

    fn err(lines: &[Vec<u8>]) -> String {
        check(&lines.concat()).unwrap_err().to_string()
    }

    #[test]
    fn good_chain_verifies_in_memory_and_streaming() {
        let c = chain(50).concat();
        let tip = check(&c).unwrap();
        assert_eq!(tip.count, 50);
        assert_eq!(tip.len, c.len() as u64);
        let streamed = walk_reader(&mut &c[..], Tip::EMPTY).unwrap().unwrap();
        assert_eq!(streamed, tip);
        // Small reads split lines across buffers.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                let n = b.len().min(self.0.len()).min(7);
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        assert_eq!(
            walk_reader(&mut Dribble(&c), Tip::EMPTY).unwrap().unwrap(),
            tip
        );
        assert_eq!(check(b"").unwrap(), Tip::EMPTY);
    }

    #[test]
    fn every_tamper_names_its_line_and_kind() {
        let c = chain(10);
        let mut m = c.clone();
        let p = m[4].iter().position(|&b| b == b'r').unwrap() + 30;
        m[4][p] ^= 1;
        assert_eq!(
            err(&m),
            "line 5: modified: its SHA-256 is not the prev recorded by line 6"
        );

        let mut d = c.clone();
        d.remove(4);
        assert_eq!(
            err(&d),
            "line 5: deleted: 1 record(s) missing before this line (seq jumps from 4 to 6)"
        );
        let mut d = c.clone();
        d.remove(0);
        assert_eq!(
            err(&d),
            "line 1: deleted: 1 record(s) missing before this line (seq jumps from 0 to 2)"
        );

        let mut s = c.clone();
        s.swap(3, 4);
        assert_eq!(
            err(&s),
            "line 4: reordered: it is chained after line 5 (seq 5): records were moved"
        );

        // A careful forger: right prev, right seq; the next line gives it away.
        let mut f = c.clone();
        let prev: [u8; 32] = Sha256::digest(&c[3][..c[3].len() - 1]).into();
        f.insert(4, line(5, &prev, "forged"));
        assert_eq!(
            err(&f),
            "line 5: inserted: line 6 (seq 5) is chained to line 4: line 5 sits between them"
        );
        // A careless one: a copied line.
        let mut f = c.clone();
        f.insert(4, c[1].clone());
        assert_eq!(
            err(&f),
            "line 5: inserted: line 6 is chained to line 4, not to this line"
        );

        let mut t = c.concat();
        t.truncate(t.len() - 10);
        let e = check(&t).unwrap_err();
        assert_eq!(e.kind, Kind::Torn);
        assert_eq!(e.line, 10);
        assert_eq!(e.offset + e.tail_len, t.len() as u64);
        assert_eq!(e.offset, c[..9].concat().len() as u64);

        let mut j = c.clone();
        j[2][0] = b'x';
        assert!(err(&j).starts_with("line 3: not JSON: "), "{}", err(&j));
        let mut r = c.clone();
        r[2] = b"{\"seq\":3}\n".to_vec();
        assert!(err(&r).starts_with("line 3: not a record: "), "{}", err(&r));

        // Re-hashed after a deletion without renumbering: only seq shows it.
        let mut g = c.clone();
        g.remove(4);
        let mut prev: [u8; 32] = Sha256::digest(&g[3][..g[3].len() - 1]).into();
        for l in g.iter_mut().skip(4) {
            let rec: crate::Record = serde_json::from_slice(l).unwrap();
            *l = line(rec.seq, &prev, &rec.reason);
            prev = Sha256::digest(&l[..l.len() - 1]).into();
        }
        assert_eq!(err(&g), "line 5: seq gap: seq 6 where 5 was expected");
    }

    #[test]
    fn scanner_accepts_exactly_serde_json_canonical_output() {
        let tricky = [
            "plain",
            "q\"uote",
            "back\\slash",
            "ctl\u{1}\u{1f}\n\t\r\u{8}\u{c}",
            "ünï ✓ \u{7f} /",
            "",
        ];
        for t in tricky {
            let l = line(1, &GENESIS, t);
            scan(&l).unwrap_or_else(|e| panic!("{t:?}: {e:?} in {}", String::from_utf8_lossy(&l)));
            assert_eq!(scan_shape(&l).unwrap().end, l.len() - 1);
        }
        // Non-canonical spellings of valid JSON are refused.
        let base = String::from_utf8(line(1, &GENESIS, "x")).unwrap();
        for bad in [
            base.replace("\"seq\":1", "\"seq\": 1"),
            base.replace("\"seq\":1", "\"seq\":01"),
            base.replace("\"reason\":\"x\"", "\"reason\":\"\\u0078\""),
            base.replace("\"reason\":\"x\"", "\"reason\":\"\\/\""),
            base.replace("\"env\":\"staging\",", ""),
            base.replace("\"prev\":\"0", "\"prev\":\"A"),
            base.replace('}', "} "),
        ] {
            assert!(scan(bad.as_bytes()).is_err(), "{bad}");
        }
        // Per-service digests (several repositories): read back as written;
        // keys out of order or an empty map are another spelling.
        let mut r: crate::Record = serde_json::from_str(&base[..base.len() - 1]).unwrap();
        r.to = Some(crate::ImageRef {
            digests: [("api", "sha256:a"), ("worker", "sha256:b")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            local: [("worker".to_string(), "sha256:c".to_string())].into(),
            ..crate::ImageRef::new("t", Some("sha256:a".into()))
        });
        let multi = serde_json::to_string(&r).unwrap() + "\n";
        scan(multi.as_bytes()).unwrap_or_else(|e| panic!("{e:?} in {multi}"));
        assert_eq!(scan_shape(multi.as_bytes()).unwrap().end, multi.len() - 1);
        for bad in [
            multi.replace(
                "\"api\":\"sha256:a\",\"worker\"",
                "\"worker\":\"sha256:a\",\"api\"",
            ),
            multi.replace("{\"api\":\"sha256:a\",\"worker\":\"sha256:b\"}", "{}"),
        ] {
            assert!(scan(bad.as_bytes()).is_err(), "{bad}");
        }
        // Mutations: whatever the scanner accepts, serde reads back to the same bytes.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut l = line(3, &GENESIS, "a \"b\" \\ c ✓");
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % (l.len() as u64 - 1)) as usize;
            l[i] = (seed >> 32) as u8;
            if let (Ok(_), Ok(s)) = (scan(&l), scan_shape(&l)) {
                let body = &l[..s.end];
                if let Ok(text) = std::str::from_utf8(body) {
                    let r: crate::Record =
                        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
                    assert_eq!(serde_json::to_vec(&r).unwrap(), body, "{text}");
                }
            }
        }
    }
}
