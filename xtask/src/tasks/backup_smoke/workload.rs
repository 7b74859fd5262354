//! The synthetic workload: rows that are deliberately awkward for a
//! canonical form (unicode, `|`, quotes, backslashes, tabs and newlines in
//! fields, NULL next to '', nested JSON with numbers like 1.50, equal and
//! pre-1970 timestamps), written by one serial session and then by several
//! concurrent writers. Deterministic: row `i` is always the same row, so a
//! failure can be replayed.
//!
//! Small runs insert with INSERT (some rows share a transaction); from
//! [`INSERT_ROWS`] on, the rest is bulk-loaded with COPY in blocks of
//! [`COPY_BLOCK`] rows, each its own transaction: every row updates the
//! head row, and one transaction updating a row 100k times slows to a crawl.

use std::fmt::Write as _;

use super::copy::push_field;
use crate::flags::Profile;

/// Rows inserted one statement at a time before bulk loading starts.
pub const INSERT_ROWS: u32 = 64;
/// Rows per COPY block (and per transaction).
pub const COPY_BLOCK: u32 = 500;
/// Concurrent writer sessions.
pub const WRITERS: u32 = 4;
/// Fewest rows for a meaningful run: the negative controls need an oldest,
/// a middle and a newest row, and a row with `|` inside a field (row 5).
pub const MIN_ROWS: u32 = 8;

const ACTORS: [&str; 11] = [
    "alice",
    "Zoë Ångström",
    "李雷",
    "o'brien",
    "bob \"the builder\"",
    "svc|deployer",
    "emoji 🚀 bot",
    "tab\tand\nnewline",
    "back\\slash",
    "",
    "Ωmega",
];
const ACTOR_TYPES: [&str; 4] = ["user", "service", "system", "api-key"];
const ACTIONS: [&str; 7] = [
    "certificate.issue",
    "certificate.renew",
    "certificate.revoke",
    "auth.login",
    "policy|update",
    "comma,colon:semi;",
    "key.rotate",
];
const RESOURCE_TYPES: [&str; 5] = ["certificate", "user", "policy", "a|b", "key"];
const DETAILS: [Option<&str>; 9] = [
    None,
    Some("{}"),
    Some(r#"{"amount": 1.50, "currency": "EUR"}"#),
    Some(r#"{"a": {"b": [1, 2.50, {"c": null}]}, "s": "pipe|quote\"", "u": "caf\u00e9"}"#),
    Some("[]"),
    Some(r#""just a string""#),
    Some(r#"{"big": 12345678901234567890.000001, "neg": -0.0, "exp": 1e-7, "tiny": 0.10}"#),
    Some(
        r#"{"k|": "|v", "emoji": "🚀", "ctl": "\u0001", "nested": {"deeper": {"deepest": [[], {}]}}}"#,
    ),
    Some("null"),
];
const CATEGORIES: [Option<&str>; 5] = [
    None,
    Some("security"),
    Some("lifecycle"),
    Some(""),
    Some("a|b"),
];

/// certctl's table accepts only these (migration 000032's CHECK, NOT NULL).
const CERTCTL_CATEGORIES: [&str; 3] = ["cert_lifecycle", "auth", "config"];

/// 2024-01-15T14:30:00Z in microseconds since the epoch.
const BASE_MICROS: i64 = 1_705_329_000_000_000;

/// One row of the workload, as the client sends it (the trigger adds the chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRow {
    /// certctl only: its ids are text, and deliberately not in insertion order.
    pub id: Option<String>,
    /// An explicit timestamp literal; `None` is the column default, now().
    pub ts: Option<String>,
    pub actor: String,
    pub actor_type: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub details: Option<String>,
    pub category: Option<String>,
}

/// Row `i` of the workload; `explicit_ts` false leaves the timestamp to now().
pub fn row(profile: Profile, i: u32, explicit_ts: bool) -> WorkRow {
    let n = i as usize;
    let resource_id = match i % 4 {
        0 => format!("cert-{i}"),
        1 => format!("CN=example.com|O=Acme \"Corp\" {i}"),
        2 => format!("key 'quoted' {i}"),
        _ => format!("😀-{i}"),
    };
    WorkRow {
        id: (profile == Profile::Certctl)
            .then(|| format!("evt-{:08x}-{i}", i.wrapping_mul(2_654_435_761))),
        ts: explicit_ts.then(|| ts_literal(i)),
        actor: ACTORS[n % ACTORS.len()].into(),
        actor_type: ACTOR_TYPES[n % ACTOR_TYPES.len()].into(),
        action: ACTIONS[n % ACTIONS.len()].into(),
        resource_type: RESOURCE_TYPES[n % RESOURCE_TYPES.len()].into(),
        resource_id,
        details: DETAILS[n % DETAILS.len()].map(str::to_string),
        category: match profile {
            Profile::Default => CATEGORIES[n % CATEGORIES.len()].map(str::to_string),
            Profile::Certctl => Some(CERTCTL_CATEGORIES[n % CERTCTL_CATEGORIES.len()].into()),
        },
    }
}

/// Timestamps: mostly rising, every fifth equal to the one before, one
/// before 1970, one far ahead, one written with a +05:45 offset.
fn ts_literal(i: u32) -> String {
    match i {
        3 => "1969-12-31 23:59:59.5+00".into(),
        7 => "2099-12-31 23:59:59.999999+00".into(),
        13 => "2024-01-15 20:15:13.25+05:45".into(),
        _ => {
            let k = if i.is_multiple_of(5) && i > 0 {
                i - 1
            } else {
                i
            };
            let micros = BASE_MICROS + i64::from(k) * 1_000_000 + i64::from(k) * 7919 % 1_000_000;
            utc(micros)
        }
    }
}

fn utc(micros: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .expect("in range");
    let f = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]+00"
    );
    t.format(&f).expect("formatting a UTC timestamp")
}

/// The columns the client supplies, in the order the scripts use.
pub fn columns(profile: Profile) -> &'static str {
    match profile {
        Profile::Default => {
            "occurred_at, actor, actor_type, action, resource_type, resource_id, details, event_category"
        }
        Profile::Certctl => {
            "id, \"timestamp\", actor, actor_type, action, resource_type, resource_id, details, event_category"
        }
    }
}

fn lit(v: Option<&str>) -> String {
    match v {
        Some(v) => format!("'{}'", v.replace('\'', "''")),
        None => "NULL".into(),
    }
}

/// `INSERT ...;` for one row (DEFAULT for a timestamp left to now()).
pub fn insert(profile: Profile, r: &WorkRow) -> String {
    let ts =
        r.ts.as_deref()
            .map_or("DEFAULT".to_string(), |t| lit(Some(t)));
    let mut vals = Vec::new();
    if profile == Profile::Certctl {
        vals.push(lit(r.id.as_deref()));
    }
    vals.push(ts);
    for v in [
        &r.actor,
        &r.actor_type,
        &r.action,
        &r.resource_type,
        &r.resource_id,
    ] {
        vals.push(lit(Some(v)));
    }
    vals.push(
        r.details
            .as_deref()
            .map_or("NULL".into(), |d| format!("{}::jsonb", lit(Some(d)))),
    );
    vals.push(lit(r.category.as_deref()));
    format!(
        "INSERT INTO audit_events ({}) VALUES ({});\n",
        columns(profile),
        vals.join(", ")
    )
}

fn copy_line(profile: Profile, r: &WorkRow, out: &mut String) {
    let mut fields: Vec<Option<&str>> = Vec::with_capacity(9);
    if profile == Profile::Certctl {
        fields.push(r.id.as_deref());
    }
    fields.push(r.ts.as_deref());
    for v in [
        &r.actor,
        &r.actor_type,
        &r.action,
        &r.resource_type,
        &r.resource_id,
    ] {
        fields.push(Some(v));
    }
    fields.push(r.details.as_deref());
    fields.push(r.category.as_deref());
    for (k, f) in fields.into_iter().enumerate() {
        if k > 0 {
            out.push('\t');
        }
        push_field(out, f);
    }
    out.push('\n');
}

/// The whole workload of `rows` rows: one serial script, then one script
/// per concurrent writer.
#[derive(Debug, Clone)]
pub struct Workload {
    pub serial: String,
    pub writers: Vec<String>,
    pub serial_rows: u32,
    pub concurrent_rows: u32,
}

/// How many rows the serial session writes, and how many the concurrent writers.
pub fn split(rows: u32) -> (u32, u32) {
    let concurrent = (rows / 3).min(WRITERS * 100);
    (rows - concurrent, concurrent)
}

/// Writes the serial script of `serial_rows` rows to `out`, a COPY block at
/// a time, so a run of millions of rows never holds the script in memory.
pub fn write_serial(
    profile: Profile,
    serial_rows: u32,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut serial = String::from("SET standard_conforming_strings = on;\n");
    let inserted = serial_rows.min(INSERT_ROWS);
    let mut i = 0;
    while i < inserted {
        // Every eighth row opens a three-row transaction: rows sharing a
        // transaction (and its now()) must still chain in order.
        if i % 8 == 0 && i + 3 <= inserted {
            serial.push_str("BEGIN;\n");
            for k in i..i + 3 {
                serial.push_str(&insert(profile, &row(profile, k, true)));
            }
            serial.push_str("COMMIT;\n");
            i += 3;
        } else {
            serial.push_str(&insert(profile, &row(profile, i, true)));
            i += 1;
        }
    }
    let mut start = inserted;
    while start < serial_rows {
        let end = (start + COPY_BLOCK).min(serial_rows);
        let _ = writeln!(
            serial,
            "COPY audit_events ({}) FROM STDIN;",
            columns(profile)
        );
        for k in start..end {
            copy_line(profile, &row(profile, k, true), &mut serial);
        }
        serial.push_str("\\.\n");
        out.write_all(serial.as_bytes())?;
        serial.clear();
        start = end;
    }
    out.write_all(serial.as_bytes())
}

/// The concurrent writers' scripts (at most [`WRITERS`] * 100 rows in all).
pub fn writers(profile: Profile, rows: u32) -> Vec<String> {
    let (serial_rows, concurrent) = split(rows);
    let mut writers: Vec<String> = (0..WRITERS.min(concurrent.max(1)))
        .map(|_| String::from("SET standard_conforming_strings = on;\n"))
        .collect();
    if concurrent > 0 {
        // Writer 0 puts all its rows in one transaction (one now() for all,
        // the head row locked throughout); the others commit row by row.
        writers[0].push_str("BEGIN;\n");
        for k in 0..concurrent {
            let w = (k % writers.len() as u32) as usize;
            let r = row(profile, serial_rows + k, false);
            writers[w].push_str(&insert(profile, &r));
        }
        writers[0].push_str("COMMIT;\n");
    } else {
        writers.clear();
    }
    writers
}

/// The whole workload in memory (tests and small fixtures).
pub fn build(profile: Profile, rows: u32) -> Workload {
    let (serial_rows, concurrent) = split(rows);
    let mut serial = Vec::new();
    write_serial(profile, serial_rows, &mut serial).expect("writing to memory");
    Workload {
        serial: String::from_utf8(serial).expect("the workload is UTF-8"),
        writers: writers(profile, rows),
        serial_rows,
        concurrent_rows: concurrent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_deterministic_and_varied() {
        assert_eq!(
            row(Profile::Default, 5, true),
            row(Profile::Default, 5, true)
        );
        assert_eq!(row(Profile::Default, 5, true).actor, "svc|deployer");
        assert_eq!(
            row(Profile::Default, 3, true).ts.as_deref(),
            Some("1969-12-31 23:59:59.5+00")
        );
        assert_eq!(
            row(Profile::Default, 10, true).ts,
            row(Profile::Default, 9, true).ts
        );
        assert_eq!(ts_literal(0), "2024-01-15 14:30:00.000000+00");
        assert!(
            row(Profile::Certctl, 1, false).id.is_some()
                && row(Profile::Default, 1, false).id.is_none()
        );
        assert!((0..20).all(|i| row(Profile::Certctl, i, true)
            .category
            .is_some_and(|c| CERTCTL_CATEGORIES.contains(&c.as_str()))));
    }

    #[test]
    fn the_workload_splits_into_inserts_copy_blocks_and_writers() {
        let w = build(Profile::Default, 24);
        assert_eq!(
            (w.serial_rows, w.concurrent_rows, w.writers.len()),
            (16, 8, 4)
        );
        assert_eq!(w.serial.matches("INSERT INTO").count(), 16);
        assert_eq!(
            w.writers
                .iter()
                .map(|s| s.matches("INSERT INTO").count())
                .sum::<usize>(),
            8
        );
        let big = build(Profile::Certctl, 2000);
        assert_eq!(big.concurrent_rows, 400);
        assert_eq!(big.serial.matches("COPY audit_events").count(), 4);
        let copied: usize = big
            .serial
            .split("FROM STDIN;\n")
            .skip(1)
            .map(|block| {
                let data = block.split("\\.\n").next().unwrap();
                super::super::copy::lines(data.as_bytes())
                    .inspect(|l| assert!(super::super::copy::fields::<9>(l).is_ok()))
                    .count()
            })
            .sum();
        assert_eq!(copied, 1600 - 64);
        assert!(insert(Profile::Default, &row(Profile::Default, 3, true)).contains("'o''brien'"));
    }
}
