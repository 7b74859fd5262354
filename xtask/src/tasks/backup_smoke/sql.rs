//! The SQL the smoke sends to read the chain back: the row and head exports
//! the Rust verifier parses, the SQL verifier calls, the trigger list, and
//! the parser of the SQL verifier's one-row answer.

use anyhow::{Context, Result};

use super::copy::{self, Field};
use super::verify::{self, Head, Outcome};
use crate::flags::Profile;

/// The rows in the order the Rust verifier streams them: seq, or certctl's
/// published (timestamp, id) order in byte order, whatever the database's
/// collation. The order only bounds the verifier's memory; it checks every
/// link itself.
pub fn export_rows(p: Profile) -> &'static str {
    match p {
        Profile::Default => "COPY (SELECT seq, id, occurred_at, actor, actor_type, action, resource_type, resource_id, details, event_category, prev_hash, row_hash FROM public.audit_events ORDER BY seq) TO STDOUT",
        Profile::Certctl => "COPY (SELECT NULL::bigint, id::text, \"timestamp\", actor, actor_type, action, resource_type, resource_id, details::text, event_category, prev_hash, row_hash FROM public.audit_events ORDER BY \"timestamp\", id::text COLLATE \"C\") TO STDOUT",
    }
}

pub fn export_head(p: Profile) -> &'static str {
    match p {
        Profile::Default => "COPY (SELECT seq, row_hash FROM public.audit_chain_head WHERE id = 1) TO STDOUT",
        Profile::Certctl => "COPY (SELECT NULL::bigint, row_hash FROM public.audit_chain_head WHERE id = 1) TO STDOUT",
    }
}

pub fn sql_verifier(p: Profile) -> &'static str {
    match p {
        Profile::Default => "COPY (SELECT * FROM audit_verify.verify_chain()) TO STDOUT",
        Profile::Certctl => "COPY (SELECT * FROM audit_verify.certctl_verify_chain()) TO STDOUT",
    }
}

/// The server's version (number and text) and whether the role may create databases.
pub const SERVER: &str =
    "COPY (SELECT current_setting('server_version_num'), current_setting('server_version'), \
     (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user)) TO STDOUT";

/// Every database named with this task's prefix.
pub fn scratch_databases() -> String {
    format!(
        "COPY (SELECT datname FROM pg_database WHERE starts_with(datname, '{}')) TO STDOUT",
        super::target::PREFIX
    )
}

/// The columns of the restored `audit_events`: name, who fills it when an
/// INSERT leaves it out (`generated`: only the database, as for identity
/// and generated columns; `default`; `none`), and type.
pub const COLUMNS: &str = "COPY (SELECT a.attname, \
     CASE WHEN a.attgenerated <> '' OR a.attidentity <> '' THEN 'generated' WHEN a.atthasdef THEN 'default' ELSE 'none' END, \
     format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
     WHERE a.attrelid = 'public.audit_events'::regclass AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum) TO STDOUT";

pub const TRIGGERS: &str = "COPY (SELECT c.relname, t.tgname, t.tgenabled, (t.tgtype & 7) = 7 \
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'public' AND c.relname IN ('audit_events', 'audit_chain_head') AND NOT t.tgisinternal \
     ORDER BY 1, 2) TO STDOUT";

/// The triggers our own schema must still have after a restore.
pub fn expected_triggers(p: Profile) -> &'static [&'static str] {
    match p {
        Profile::Default => &[
            "audit_events.zz_audit_events_chain",
            "audit_events.audit_events_append_only",
            "audit_events.audit_events_no_truncate",
            "audit_chain_head.audit_chain_head_guard",
            "audit_chain_head.audit_chain_head_no_truncate",
        ],
        Profile::Certctl => &[
            "audit_events.audit_events_worm_trigger",
            "audit_events.zz_audit_events_chain",
        ],
    }
}

/// What the SQL verifier function returned, as an [`Outcome`].
pub fn parse_sql_outcome(p: Profile, out: &[u8]) -> Result<Outcome> {
    let line = copy::lines(out)
        .next()
        .context("the SQL verifier returned no row")?;
    let s = |f: &Field<'_>| {
        f.as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let n = |f: &Field<'_>| -> Result<Option<i64>> {
        s(f).map(|v| {
            v.parse::<i64>()
                .with_context(|| format!("not a number: {v}"))
        })
        .transpose()
    };
    let brk = |at: Option<String>, kind: Option<String>, detail: Option<String>| {
        kind.map(|kind| verify::Break {
            at,
            kind,
            detail: detail.unwrap_or_default(),
        })
    };
    Ok(match p {
        Profile::Default => {
            let f: [Field<'_>; 9] = copy::fields(line).context("SQL verifier output")?;
            Outcome {
                walked: n(&f[0])?.unwrap_or(0) as u64,
                total: n(&f[1])?.unwrap_or(0) as u64,
                head: s(&f[3]).map(|hash| Head {
                    seq: n(&f[2]).ok().flatten(),
                    hash,
                }),
                last: Head {
                    seq: n(&f[4])?,
                    hash: s(&f[5]).unwrap_or_default(),
                },
                brk: brk(s(&f[6]), s(&f[7]), s(&f[8])),
                chain_digest: String::new(),
                published_order_breaks: None,
                published_first_break: None,
            }
        }
        Profile::Certctl => {
            let f: [Field<'_>; 8] = copy::fields(line).context("SQL verifier output")?;
            Outcome {
                walked: n(&f[0])?.unwrap_or(0) as u64,
                total: n(&f[1])?.unwrap_or(0) as u64,
                head: s(&f[2]).map(|hash| Head { seq: None, hash }),
                last: Head {
                    seq: None,
                    hash: s(&f[3]).unwrap_or_default(),
                },
                brk: brk(s(&f[4]), s(&f[5]), s(&f[6])),
                chain_digest: String::new(),
                published_order_breaks: n(&f[7])?.map(|v| v as u64),
                published_first_break: None,
            }
        }
    })
}

/// The collation certctl's `ORDER BY "timestamp", id` used in the source
/// database, as `pg_restore --create --schema-only` prints that database:
/// an explicit collation of `audit_events.id`, else the database's ICU
/// locale (`icu:LOCALE`) or its LC_COLLATE (`libc:LOCALE`).
pub fn source_collation(ddl: &str) -> Option<String> {
    let quoted = |line: &str, key: &str| -> Option<String> {
        let at = line.find(key)? + key.len();
        let rest = line[at..].trim_start().strip_prefix('=')?.trim_start();
        let rest = rest.strip_prefix('\'')?;
        Some(rest[..rest.find('\'')?].to_string())
    };
    let mut in_events = false;
    for line in ddl.lines() {
        let t = line.trim();
        if t.starts_with("CREATE TABLE") {
            in_events = t.contains("audit_events (");
        } else if in_events && t.starts_with("id ") {
            if let Some(i) = t.find(" COLLATE ") {
                let name = t[i + 9..].split([' ', ',']).next()?.to_string();
                return Some(format!("column:{name}"));
            }
        }
    }
    let db = ddl.lines().find(|l| l.starts_with("CREATE DATABASE"))?;
    if db.contains("LOCALE_PROVIDER = icu") {
        return quoted(db, "ICU_LOCALE").map(|l| format!("icu:{l}"));
    }
    quoted(db, "LC_COLLATE")
        .or_else(|| quoted(db, " LOCALE"))
        .map(|l| format!("libc:{l}"))
}

/// The name of a collation on this server for a [`source_collation`]
/// (`column:NAME` is already one): one row, or none.
pub fn collation_lookup(source: &str) -> Option<String> {
    let (kind, loc) = source.split_once(':')?;
    let loc = loc.replace('\'', "''");
    let cond = match kind {
        "icu" => format!("c.collprovider = 'i' AND COALESCE(to_jsonb(c)->>'colliculocale', to_jsonb(c)->>'colllocale') = '{loc}'"),
        "libc" => format!("c.collprovider = 'c' AND c.collcollate = '{loc}' AND c.collencoding IN (-1, 6)"),
        _ => return None,
    };
    Some(format!(
        "COPY (SELECT quote_ident(c.collname) FROM pg_collation c WHERE {cond} ORDER BY c.collname LIMIT 1) TO STDOUT"
    ))
}

/// certctl's own verifier walks `ORDER BY "timestamp", id` under the
/// database's collation; under `collation` (an SQL identifier): how many
/// rows break that order, how many of those follow a row that is missing
/// (real breaks), and the first break's position, id and whether it is real.
pub fn certctl_order(collation: &str) -> String {
    format!(
        "COPY (WITH o AS ( \
           SELECT e.id::text AS id, e.prev_hash, row_number() OVER w AS pos, \
                  COALESCE(e.prev_hash, '') IS DISTINCT FROM COALESCE(lag(e.row_hash) OVER w, '') AS brk \
             FROM public.audit_events e WINDOW w AS (ORDER BY e.\"timestamp\", e.id::text COLLATE {collation})), \
         b AS (SELECT id, pos, e_missing FROM ( \
           SELECT o.id, o.pos, o.prev_hash IS NOT NULL AND NOT EXISTS \
                  (SELECT 1 FROM public.audit_events p WHERE p.row_hash = o.prev_hash) AS e_missing \
             FROM o WHERE o.brk) x) \
         SELECT (SELECT count(*) FROM b), (SELECT count(*) FROM b WHERE e_missing), \
                f.pos, f.id, f.e_missing \
           FROM (SELECT 1) one LEFT JOIN (SELECT * FROM b ORDER BY pos LIMIT 1) f ON true) TO STDOUT"
    )
}
