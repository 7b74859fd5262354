//! The audit sink: a second copy of the log, byte for byte, on another disk
//! or mount. Comparing the two copies catches what one chain alone cannot:
//! truncation of the newest records and a consistent rewrite of either copy.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::chain::{self, Break, Tip};

/// How the sink stands against the local log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SinkState {
    /// Byte-identical.
    Match { count: u64 },
    /// No sink file, while the local log has records.
    Missing,
    /// The sink is a prefix of the local log (plus `torn_bytes` of a partial line).
    Behind { sink_count: u64, torn_bytes: u64 },
    /// The local log is a prefix of the sink: the newest local records are gone.
    Ahead { sink_count: u64 },
    /// The copies differ from `line` on.
    Differs {
        line: u64,
        #[serde(serialize_with = "chain_result")]
        sink_chain: Result<Tip, Break>,
    },
    /// The sink could not be read.
    Unreachable { error: String },
}

fn chain_result<S: serde::Serializer>(r: &Result<Tip, Break>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Ok(t) => s.serialize_str(&format!("verifies, head {}", t.head_hex())),
        Err(b) => s.serialize_str(&format!("breaks at {b}")),
    }
}

impl SinkState {
    pub fn is_match(&self) -> bool {
        matches!(self, SinkState::Match { .. })
    }

    /// Missing and behind come from a crash between the two writes (or a
    /// freshly configured sink); `audit repair` catches the sink up.
    pub fn repairable(&self) -> bool {
        matches!(self, SinkState::Missing | SinkState::Behind { .. })
    }

    /// One line for an operator; `local_count` is the local log's record count.
    pub fn describe(&self, sink: &Path, local_count: u64) -> String {
        let p = sink.display();
        match self {
            SinkState::Match { count } => format!("sink {p}: {count} records, matches the local log"),
            SinkState::Missing => format!(
                "sink {p} does not exist but the local log has {local_count} records: it was deleted, or was just configured (`audit repair` seeds it)"
            ),
            SinkState::Behind { sink_count, torn_bytes } => {
                let torn = if *torn_bytes > 0 { format!(" and {torn_bytes} bytes of a torn line") } else { String::new() };
                format!(
                    "sink {p} ends after line {sink_count}{torn} but the local log has {local_count}: the sink was truncated, or a crash came between the two writes (`audit repair` catches it up)"
                )
            }
            SinkState::Ahead { sink_count } => format!(
                "the local log ends after line {local_count} but sink {p} has {sink_count} lines: the newest {} local record(s) were deleted",
                sink_count.saturating_sub(local_count)
            ),
            SinkState::Differs { line, sink_chain } => {
                let sc = match sink_chain {
                    Ok(t) => format!("the sink's own chain verifies ({} records, head {})", t.count, t.head_hex()),
                    Err(b) => format!("the sink's own chain breaks at {b}"),
                };
                format!("line {line} differs between the local log and sink {p}: one copy was rewritten from there on; {sc}")
            }
            SinkState::Unreachable { error } => format!("sink {p} is unreachable: {error}"),
        }
    }
}

/// Reads until `buf` is full or the reader ends.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// Compares `local` (the local log, without a torn tail) with `sink`, streaming.
pub fn compare(
    local: &mut impl Read,
    sink: &mut impl Read,
    sink_path: &Path,
) -> std::io::Result<SinkState> {
    const CHUNK: usize = 1 << 20;
    let mut a = vec![0u8; CHUNK];
    let mut b = vec![0u8; CHUNK];
    // Complete lines in the common prefix, and whether it ends mid-line.
    let mut lines = 0u64;
    let mut partial = 0u64;
    loop {
        let na = fill(local, &mut a)?;
        let nb = fill(sink, &mut b)?;
        let n = na.min(nb);
        let same = if a[..n] == b[..n] {
            n
        } else {
            a[..n]
                .iter()
                .zip(&b[..n])
                .take_while(|(x, y)| x == y)
                .count()
        };
        let common = &a[..same];
        match common.iter().rposition(|&c| c == b'\n') {
            Some(i) => {
                lines += newlines(&common[..=i]);
                partial = (common.len() - i - 1) as u64;
            }
            None => partial += common.len() as u64,
        }
        if same < n {
            // The copies differ inside this chunk.
            let sink_chain = walk_file(sink_path);
            return Ok(SinkState::Differs {
                line: lines + 1,
                sink_chain,
            });
        }
        match (na == nb, na < CHUNK) {
            (true, true) => {
                return Ok(if partial == 0 {
                    SinkState::Match { count: lines }
                } else {
                    // Both end in the same partial line: the caller passes
                    // only verified (newline-terminated) local bytes, so this
                    // cannot happen; report it as a difference anyway.
                    SinkState::Differs {
                        line: lines + 1,
                        sink_chain: walk_file(sink_path),
                    }
                });
            }
            (true, false) => continue,
            (false, _) if na < nb => {
                // The local log ended first.
                let mut sink_lines = lines + newlines(&b[same..nb]);
                loop {
                    let k = fill(sink, &mut b)?;
                    if k == 0 {
                        break;
                    }
                    sink_lines += newlines(&b[..k]);
                }
                return Ok(SinkState::Ahead {
                    sink_count: sink_lines,
                });
            }
            (false, _) => {
                // The sink ended first: it is a prefix of the local log.
                return Ok(SinkState::Behind {
                    sink_count: lines,
                    torn_bytes: partial,
                });
            }
        }
    }
}

/// Verifies a file as a chain of its own (to say which copy still verifies).
pub fn walk_file(path: &Path) -> Result<Tip, Break> {
    let bytes = std::fs::read(path).unwrap_or_default();
    chain::check(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(local: &[u8], sink: &[u8]) -> SinkState {
        compare(&mut &local[..], &mut &sink[..], Path::new("/nonexistent")).unwrap()
    }

    #[test]
    fn states() {
        assert_eq!(cmp(b"a\nb\n", b"a\nb\n"), SinkState::Match { count: 2 });
        assert_eq!(cmp(b"", b""), SinkState::Match { count: 0 });
        assert_eq!(
            cmp(b"a\nb\n", b"a\n"),
            SinkState::Behind {
                sink_count: 1,
                torn_bytes: 0
            }
        );
        assert_eq!(
            cmp(b"a\nbcd\n", b"a\nb"),
            SinkState::Behind {
                sink_count: 1,
                torn_bytes: 1
            }
        );
        assert_eq!(
            cmp(b"a\n", b"a\nb\nc\n"),
            SinkState::Ahead { sink_count: 3 }
        );
        assert!(matches!(
            cmp(b"a\nb\nc\n", b"a\nx\nc\n"),
            SinkState::Differs { line: 2, .. }
        ));
        assert!(matches!(
            cmp(b"a\nb\n", b"a\nb\nc"),
            SinkState::Ahead { sink_count: 2 }
        ));
        // Across chunk boundaries.
        let big: Vec<u8> = (0..300_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut other = big.clone();
        let at = big.len() - 100;
        other[at] ^= 1;
        let line = big[..at].iter().filter(|&&c| c == b'\n').count() as u64 + 1;
        assert!(matches!(cmp(&big, &other), SinkState::Differs { line: l, .. } if l == line));
        assert_eq!(
            cmp(&big, &big[..big.len() - 7]),
            SinkState::Behind {
                sink_count: 299_999,
                torn_bytes: 5
            }
        );
    }
}
