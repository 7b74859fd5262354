//! Reading and writing PostgreSQL's `COPY` text format: one row per line,
//! columns separated by tabs, `\N` for NULL, and backslash escapes for the
//! backslash itself and the control characters. Every raw newline ends a
//! row (newlines inside values are escaped), so the rows of an export can
//! be split without looking at their contents.

use std::borrow::Cow;

use anyhow::{bail, Result};

/// One field of a row: `None` is SQL NULL.
pub type Field<'a> = Option<Cow<'a, [u8]>>;

/// Splits an export into its lines (rows), without the trailing newline.
pub fn lines(export: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = export.strip_suffix(b"\n").unwrap_or(export);
    let mut rest = (!body.is_empty()).then_some(body);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Splits an export into about `n` pieces that each end at a row boundary.
pub fn chunks(export: &[u8], n: usize) -> Vec<&[u8]> {
    let target = export.len().div_ceil(n.max(1)).max(1);
    let mut out = Vec::new();
    let mut rest = export;
    while rest.len() > target {
        match memchr::memchr(b'\n', &rest[target..]) {
            Some(i) => {
                let (a, b) = rest.split_at(target + i + 1);
                out.push(a);
                rest = b;
            }
            None => break,
        }
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Splits one line into exactly `N` fields and undoes the escapes.
pub fn fields<const N: usize>(line: &[u8]) -> Result<[Field<'_>; N]> {
    let mut out: [Field<'_>; N] = [const { None }; N];
    let mut n = 0;
    let mut start = 0;
    let mut escaped = false;
    // One scan finds the tabs and the (rare) backslashes together.
    for at in memchr::memchr2_iter(b'\t', b'\\', line).chain([line.len()]) {
        if at < line.len() && line[at] == b'\\' {
            escaped = true;
            continue;
        }
        if n < N {
            out[n] = field(&line[start..at], escaped)?;
        }
        n += 1;
        start = at + 1;
        escaped = false;
    }
    if n != N {
        bail!("expected {N} columns, found {n}");
    }
    Ok(out)
}

/// Calls `each` with the fields of every line of `export`, as [`lines`]
/// and [`fields`] split them, in one array reused for every line. A line
/// without a backslash (nearly all) is split on its tabs alone, and each
/// scan is a single-byte one, the cheapest kind. Stops at the first line
/// that [`fields`] would refuse, with its error.
pub fn each_line<'a, const N: usize>(
    export: &'a [u8],
    mut each: impl FnMut(&mut [Field<'a>; N]) -> Result<()>,
) -> Result<()> {
    let mut out: [Field<'a>; N] = [const { None }; N];
    for line in lines(export) {
        match split_plain(line, &mut out) {
            Some(n) if n != N => bail!("expected {N} columns, found {n}"),
            Some(_) => {}
            None => out = fields(line)?,
        }
        each(&mut out)?;
    }
    Ok(())
}

/// Splits a line on its tabs into `out` and returns how many fields it
/// has, or `None` if it has a backslash (the caller then takes
/// [`fields`]). Eight bytes at a time: a row's dozen short fields cost a
/// SIMD search's set-up each, more than this whole scan.
fn split_plain<'a, const N: usize>(line: &'a [u8], out: &mut [Field<'a>; N]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // The high bit of each byte of `x` that is zero, exactly (no borrow
    // runs from one byte into the next).
    let zeros = |x: u64| !(((x & LOW7) + LOW7) | x | LOW7);
    let (mut n, mut start) = (0, 0);
    let mut word = |at: usize, x: u64| -> Option<()> {
        if zeros(x ^ (ONES * u64::from(b'\\'))) != 0 {
            return None;
        }
        let mut tabs = zeros(x ^ (ONES * u64::from(b'\t')));
        while tabs != 0 {
            let tab = at + (tabs.trailing_zeros() / 8) as usize;
            if n < N {
                out[n] = Some(Cow::Borrowed(&line[start..tab]));
            }
            n += 1;
            start = tab + 1;
            tabs &= tabs - 1;
        }
        Some(())
    };
    let words = line.chunks_exact(8);
    let rest = words.remainder();
    for (i, w) in words.enumerate() {
        word(i * 8, u64::from_le_bytes(w.try_into().ok()?))?;
    }
    // The tail, padded with zero bytes (neither a tab nor a backslash).
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    word(line.len() - rest.len(), u64::from_le_bytes(tail))?;
    if n < N {
        out[n] = Some(Cow::Borrowed(&line[start..]));
    }
    Some(n + 1)
}

fn field(raw: &[u8], escaped: bool) -> Result<Field<'_>> {
    if !escaped {
        return Ok(Some(Cow::Borrowed(raw)));
    }
    if raw == b"\\N" {
        return Ok(None);
    }
    let mut v = Vec::with_capacity(raw.len());
    let mut it = raw.iter().copied();
    while let Some(b) = it.next() {
        if b != b'\\' {
            v.push(b);
            continue;
        }
        let Some(e) = it.next() else {
            bail!("a field ends in a lone backslash")
        };
        v.push(match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'\\' => b'\\',
            other => bail!("unexpected escape \\{} in COPY output", other as char),
        });
    }
    Ok(Some(Cow::Owned(v)))
}

/// Appends one value in COPY text form (for loading the workload).
pub fn push_field(out: &mut String, v: Option<&str>) {
    let Some(v) = v else {
        out.push_str("\\N");
        return;
    };
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_escapes_and_null() {
        let mut line = String::new();
        push_field(&mut line, Some("a\tb\\c\nd|'\""));
        line.push('\t');
        push_field(&mut line, None);
        line.push('\t');
        push_field(&mut line, Some(""));
        let out: [Field<'_>; 3] = fields(line.as_bytes()).unwrap();
        assert_eq!(out[0].as_deref(), Some(&b"a\tb\\c\nd|'\""[..]));
        assert_eq!(out[1], None);
        assert_eq!(out[2].as_deref(), Some(&b""[..]));
        assert!(fields::<4>(line.as_bytes()).is_err());
        assert!(fields::<2>(line.as_bytes()).is_err());
    }

    #[test]
    fn each_line_splits_as_lines_and_fields_do() {
        let good: &[u8] = b"1\ta\\tb\n\\N\t\n3\tc";
        let mut got = Vec::new();
        each_line::<2>(good, |f| Ok(got.push(f.clone()))).unwrap();
        let want: Vec<[Field<'_>; 2]> = lines(good).map(|l| fields(l).unwrap()).collect();
        assert_eq!(got, want);
        assert_eq!(got[0][1].as_deref(), Some(&b"a\tb"[..]));
        assert_eq!(got[1][0], None);
        for bad in [
            &b"1\ta\n2\n"[..],
            b"1\ta\n\n2\tb\n",
            b"1\ta\tb\n",
            b"1\t\\q\n",
        ] {
            assert!(each_line::<2>(bad, |_| Ok(())).is_err(), "{bad:?}");
        }
        each_line::<2>(b"", |_| panic!("no line")).unwrap();
    }

    #[test]
    fn the_word_at_a_time_split_finds_every_tab_and_backslash() {
        // Tabs at every offset within a word, beside bytes one bit away
        // from a tab or a backslash (0x89, 0x08, 0xdc, 0x5d).
        for len in 0..40 {
            for tab in 0..len {
                let mut line: Vec<u8> = (0..len)
                    .map(|i| [0x89, 0x08, b'a', 0xdc, 0x5d][i % 5])
                    .collect();
                line[tab] = b'\t';
                let mut out: [Field<'_>; 2] = Default::default();
                assert_eq!(split_plain(&line, &mut out), Some(2), "{line:?}");
                assert_eq!(out, fields::<2>(&line).unwrap(), "{line:?}");
                let mut escaped = line.clone();
                escaped[len - 1 - tab] = b'\\';
                if len - 1 - tab != tab {
                    assert_eq!(split_plain(&escaped, &mut out), None, "{escaped:?}");
                }
            }
        }
    }

    #[test]
    fn splits_rows() {
        assert_eq!(lines(b"").count(), 0);
        let data = b"1\ta\n22\tbb\n333\tccc\n";
        for n in 1..5 {
            let c = chunks(data, n);
            assert_eq!(c.concat(), data);
            assert!(c.iter().all(|p| p.ends_with(b"\n")), "{c:?}");
        }
        assert_eq!(
            lines(b"a\tb\nc\td\n").collect::<Vec<_>>(),
            vec![&b"a\tb"[..], &b"c\td"[..]]
        );
    }
}
