//! The canonical forms, computed in Rust: what each form hashes for a
//! row, and the timestamp conversions the forms need. The SQL twins are in
//! `deployments/sql/`; the known answers pin the two sides to each other.

use sha2::Digest;

use crate::row::{col, Cols, Row};
use crate::Form;

/// Parses PostgreSQL's ISO output (`DateStyle = ISO`) of a timestamptz,
/// `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]]`, into microseconds since the
/// Unix epoch. Any session TimeZone gives the same instant. Allocation-free:
/// it runs once per exported row.
pub fn parse_ts(s: &[u8]) -> Option<i64> {
    let mut at = 0;
    let year = digits(s, &mut at, 4, 6)?;
    expect(s, &mut at, b'-')?;
    let month = digits(s, &mut at, 2, 2)?;
    expect(s, &mut at, b'-')?;
    let day = digits(s, &mut at, 2, 2)?;
    expect(s, &mut at, b' ')?;
    let h = digits(s, &mut at, 2, 2)?;
    expect(s, &mut at, b':')?;
    let m = digits(s, &mut at, 2, 2)?;
    expect(s, &mut at, b':')?;
    let sec = digits(s, &mut at, 2, 2)?;
    let mut micros = 0;
    if s.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        micros = digits(s, &mut at, 1, 6)?;
        for _ in at - start..6 {
            micros *= 10;
        }
    }
    let sign = match s.get(at)? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    at += 1;
    let mut off = digits(s, &mut at, 2, 2)? * 3600;
    if s.get(at) == Some(&b':') {
        at += 1;
        off += digits(s, &mut at, 2, 2)? * 60;
        if s.get(at) == Some(&b':') {
            at += 1;
            off += digits(s, &mut at, 2, 2)?;
        }
    }
    if at != s.len() {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
            .ok()?;
    let days = i64::from(date.to_julian_day()) - 2_440_588;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec - sign * off;
    Some(secs * 1_000_000 + micros)
}

fn digits(s: &[u8], at: &mut usize, min: usize, max: usize) -> Option<i64> {
    let start = *at;
    let mut v = 0i64;
    while *at - start < max {
        match s.get(*at) {
            Some(b) if b.is_ascii_digit() => v = v * 10 + i64::from(b - b'0'),
            _ => break,
        }
        *at += 1;
    }
    (*at - start >= min).then_some(v)
}

fn expect(s: &[u8], at: &mut usize, c: u8) -> Option<()> {
    (s.get(*at) == Some(&c)).then(|| *at += 1)
}

/// `to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`, computed here.
pub fn certctl_ts(micros: i64, out: &mut Vec<u8>) {
    let secs = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    match i32::try_from(days + 2_440_588)
        .ok()
        .and_then(|j| time::Date::from_julian_day(j).ok())
    {
        Some(d) => {
            push_padded(out, i64::from(d.year()), 4);
            out.push(b'-');
            push_padded(out, i64::from(u8::from(d.month())), 2);
            out.push(b'-');
            push_padded(out, i64::from(d.day()), 2);
        }
        None => out.extend_from_slice(b"out-of-range"),
    }
    out.push(b'T');
    push_padded(out, sod / 3600, 2);
    out.push(b':');
    push_padded(out, sod / 60 % 60, 2);
    out.push(b':');
    push_padded(out, sod % 60, 2);
    out.push(b'.');
    push_padded(out, us, 6);
    out.push(b'Z');
}

/// `v` in at least `width` digits, zero-padded.
fn push_padded(out: &mut Vec<u8>, v: i64, width: u32) {
    if v < 0 || v >= 10i64.pow(width) {
        return push_int(out, v);
    }
    for k in (0..width).rev() {
        out.push(b'0' + (v / 10i64.pow(k) % 10) as u8);
    }
}

/// Decimal digits of `v`, as PostgreSQL prints a bigint, in `buf`.
pub(crate) fn decimal(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

pub(crate) fn push_int(out: &mut Vec<u8>, v: i64) {
    // Netstring lengths are almost all under 1000: no temporary buffer.
    let d = |x: i64| b'0' + x as u8;
    match v {
        0..=9 => out.push(d(v)),
        10..=99 => out.extend_from_slice(&[d(v / 10), d(v % 10)]),
        100..=999 => out.extend_from_slice(&[d(v / 100), d(v / 10 % 10), d(v % 10)]),
        _ => out.extend_from_slice(decimal(v, &mut [0; 20])),
    }
}

/// A netstring, `<byte length>:<bytes>,`, or `~` for NULL.
pub(crate) fn push_ns(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.push(b'~'),
        Some(v) => {
            push_int(out, v.len() as i64);
            out.push(b':');
            out.extend_from_slice(v);
            out.push(b',');
        }
    }
}

fn push_ns_int(out: &mut Vec<u8>, v: i64) {
    push_ns(out, Some(decimal(v, &mut [0; 20])));
}

/// The canonical payload of `r` in `form` (what its row_hash is the SHA-256 of).
pub fn payload(form: Form, r: &Row<'_>, out: &mut Vec<u8>) {
    payload_of(form, r.seq, r.ts_micros, &r.cols, out);
}

/// [`payload`] of a row's parts, so the per-row pass needs no [`Row`].
pub(crate) fn payload_of(
    form: Form,
    seq: Option<i64>,
    ts_micros: i64,
    cols: &Cols<'_>,
    out: &mut Vec<u8>,
) {
    let get = |c: usize| cols[c].as_deref();
    let text = |c: usize| get(c).unwrap_or_default();
    out.clear();
    match form {
        Form::Default => {
            push_ns(out, Some(b"fetchml.audit_events.v1"));
            push_ns_int(out, seq.unwrap_or_default());
            push_ns(out, get(col::PREV));
            push_ns(out, get(col::ID));
            push_ns_int(out, ts_micros);
            for c in [
                col::ACTOR,
                col::ACTOR_TYPE,
                col::ACTION,
                col::RESOURCE_TYPE,
                col::RESOURCE_ID,
                col::DETAILS,
                col::CATEGORY,
            ] {
                push_ns(out, get(c));
            }
        }
        Form::Certctl => {
            out.extend_from_slice(text(col::PREV));
            for c in [
                col::ID,
                col::ACTOR,
                col::ACTOR_TYPE,
                col::ACTION,
                col::RESOURCE_TYPE,
                col::RESOURCE_ID,
                col::DETAILS,
            ] {
                out.push(b'|');
                out.extend_from_slice(text(c));
            }
            out.push(b'|');
            certctl_ts(ts_micros, out);
            out.push(b'|');
            out.extend_from_slice(text(col::CATEGORY));
        }
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

pub fn hex(d: &[u8]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in d.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

/// Lower-case hex SHA-256 of `r`'s canonical payload.
pub fn row_hash(form: Form, r: &Row<'_>) -> String {
    let mut buf = Vec::new();
    payload(form, r, &mut buf);
    String::from_utf8_lossy(&hex(&sha256(&buf))).into_owned()
}
