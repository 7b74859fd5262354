//! The append check: after the restore, a new row must chain onto the old
//! head and the chain must still verify. The row is the newest row's own
//! fields under a fresh id, so whatever constraints the restored table
//! carries (certctl's `event_category` CHECK, NOT NULLs, types of its own)
//! accept it; the columns come from the restored table itself, not from
//! our schema. Nothing is updated or deleted: the only write is the INSERT,
//! and the chain trigger moving the head.

use anyhow::{bail, Context, Result};

use super::copy::{self, Field};
use super::report;
use super::run::{short, Smoke};
use super::verify::Head;
use crate::flags::Profile;
use crate::plan::Effect;

/// A column of the restored `audit_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub fill: Fill,
    /// As `format_type` prints it (`text`, `bigint`, `character varying(64)`).
    pub type_name: String,
}

/// Who gives a column its value when an INSERT leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Generated or identity: only the database may.
    Database,
    /// A default the database would use.
    Default,
    /// Nobody: the INSERT must name it.
    None,
}

/// Parses the answer of [`super::sql::COLUMNS`].
pub fn parse_columns(out: &[u8]) -> Result<Vec<Column>> {
    copy::lines(out)
        .map(|line| {
            let f: [Field<'_>; 3] = copy::fields(line).context("column list")?;
            let t = |i: usize| {
                f[i].as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let fill = match t(1).as_str() {
                "generated" => Fill::Database,
                "default" => Fill::Default,
                _ => Fill::None,
            };
            Ok(Column {
                name: t(0),
                fill,
                type_name: t(2),
            })
        })
        .collect()
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The columns the chain trigger sets, whatever an INSERT says.
fn chain_columns(p: Profile) -> &'static [&'static str] {
    match p {
        Profile::Default => &["seq", "prev_hash", "row_hash"],
        Profile::Certctl => &["prev_hash", "row_hash"],
    }
}

/// A value for a key column without a default that no row has yet.
fn fresh_id(c: &Column, run_id: &str) -> Result<String> {
    let t = c.type_name.as_str();
    Ok(match t {
        "text" | "name" => format!("'xtask-backup-smoke-{run_id}'"),
        _ if t.starts_with("character varying") || t.starts_with("character(") => {
            format!("'xtask-backup-smoke-{run_id}'")
        }
        "uuid" => "gen_random_uuid()".into(),
        "bigint" | "integer" | "smallint" | "numeric" => format!(
            "(SELECT COALESCE(max(e.{0}), 0) + 1 FROM public.audit_events e)",
            ident(&c.name)
        ),
        other => bail!(
            "column {} has no default and a type ({other}) this check cannot make a fresh value of",
            c.name
        ),
    })
}

/// `COPY (INSERT ... SELECT <the newest row's fields> ... RETURNING seq, prev_hash, row_hash) TO STDOUT`.
pub fn append_sql(p: Profile, cols: &[Column], run_id: &str) -> Result<String> {
    if cols.is_empty() {
        bail!("public.audit_events has no columns");
    }
    let (mut names, mut values) = (Vec::new(), Vec::new());
    for c in cols {
        if chain_columns(p).contains(&c.name.as_str()) || c.fill == Fill::Database {
            continue;
        }
        let value = match (c.name.as_str(), c.fill) {
            ("id", Fill::Default) => continue,
            ("id", _) => fresh_id(c, run_id)?,
            _ => format!("n.{}", ident(&c.name)),
        };
        names.push(ident(&c.name));
        values.push(value);
    }
    let seq = match p {
        Profile::Default => "seq",
        Profile::Certctl => "NULL::bigint",
    };
    Ok(format!(
        "COPY (INSERT INTO public.audit_events ({}) SELECT {} FROM public.audit_events n \
         WHERE n.row_hash = (SELECT h.row_hash FROM public.audit_chain_head h WHERE h.id = 1) LIMIT 1 \
         RETURNING {seq}, prev_hash, row_hash) TO STDOUT",
        names.join(", "),
        values.join(", ")
    ))
}

impl Smoke {
    pub(super) fn assert_append(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        let old = self
            .report
            .after_rust
            .clone()
            .context("no restored chain")?;
        let cols = self.data(
            &self
                .s
                .psql(&restored, Effect::ReadOnly, &[super::sql::COLUMNS]),
        )?;
        let insert = append_sql(
            self.s.profile,
            &parse_columns(cols.as_bytes())?,
            &self.s.run_id,
        )?;
        let out = match self.cmd(&self.s.psql(&restored, Effect::Mutating, &[&insert])) {
            Ok(o) if o.trim().is_empty() => {
                let why = "no row has the head's hash, so there is no newest row to copy";
                self.report.check("append-chains", false, why);
                return Ok(());
            }
            Ok(o) => o,
            Err(e) => {
                let why = format!("appending a copy of the newest row failed: {e:#}");
                self.report.check("append-chains", false, why);
                return Ok(());
            }
        };
        let f: [Field<'_>; 3] =
            copy::fields(out.trim_end_matches('\n').as_bytes()).context("the appended row")?;
        let t = |i: usize| {
            f[i].as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let (seq, prev, hash) = (t(0), t(1).unwrap_or_default(), t(2).unwrap_or_default());
        let old_head = old.head.clone().unwrap_or(Head {
            seq: None,
            hash: String::new(),
        });
        let (sql, _) = self.sql_verify(&restored, "UTC")?;
        let mut problems = Vec::new();
        if prev != old_head.hash {
            problems.push(format!(
                "its prev_hash {} is not the old head {}",
                short(&prev),
                short(&old_head.hash)
            ));
        }
        if let (Some(s), Some(h)) = (&seq, old_head.seq) {
            if s.parse::<i64>().ok() != Some(h + 1) {
                problems.push(format!("its seq {s} does not follow the old head's {h}"));
            }
        }
        if !sql.clean()
            || sql.total != old.total + 1
            || sql.last.hash != hash
            || sql.head.as_ref().map(|h| &h.hash) != Some(&hash)
        {
            problems.push(format!(
                "after the append the SQL verifier says {}",
                report::verdict(&sql)
            ));
        }
        let detail = if problems.is_empty() {
            format!(
                "the new row{} copies the newest row's fields under a fresh id, chains onto {}, and the head moved to it; {}",
                seq.map(|s| format!(" (seq {s})")).unwrap_or_default(),
                short(&old_head.hash),
                report::verdict(&sql)
            )
        } else {
            problems.join("; ")
        };
        self.report
            .check("append-chains", problems.is_empty(), detail);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, fill: Fill, type_name: &str) -> Column {
        Column {
            name: name.into(),
            fill,
            type_name: type_name.into(),
        }
    }

    #[test]
    fn the_new_row_copies_the_newest_rows_fields_and_leaves_the_chain_to_the_trigger() {
        let default = [
            col("id", Fill::Database, "bigint"),
            col("seq", Fill::None, "bigint"),
            col("occurred_at", Fill::Default, "timestamp with time zone"),
            col("actor", Fill::None, "text"),
            col("prev_hash", Fill::None, "text"),
            col("row_hash", Fill::None, "text"),
        ];
        let sql = append_sql(Profile::Default, &default, "1_2_3").unwrap();
        assert!(
            sql.starts_with("COPY (INSERT INTO public.audit_events (\"occurred_at\", \"actor\") SELECT n.\"occurred_at\", n.\"actor\" FROM"),
            "{sql}"
        );
        assert!(
            sql.ends_with("RETURNING seq, prev_hash, row_hash) TO STDOUT"),
            "{sql}"
        );

        let certctl = [
            col("id", Fill::None, "text"),
            col("event_category", Fill::Default, "text"),
            col("prev_hash", Fill::None, "text"),
        ];
        let sql = append_sql(Profile::Certctl, &certctl, "9").unwrap();
        assert!(
            sql.contains(
                "(\"id\", \"event_category\") SELECT 'xtask-backup-smoke-9', n.\"event_category\""
            ),
            "{sql}"
        );
        assert!(sql.contains("RETURNING NULL::bigint"), "{sql}");

        let uuid = [
            col("id", Fill::None, "uuid"),
            col("a\"b", Fill::None, "text"),
        ];
        let sql = append_sql(Profile::Certctl, &uuid, "9").unwrap();
        assert!(
            sql.contains("SELECT gen_random_uuid(), n.\"a\"\"b\""),
            "{sql}"
        );
        let with_default = [
            col("id", Fill::Default, "uuid"),
            col("x", Fill::None, "text"),
        ];
        assert!(append_sql(Profile::Certctl, &with_default, "9")
            .unwrap()
            .contains("(\"x\") SELECT n.\"x\""));
        assert!(append_sql(Profile::Certctl, &[col("id", Fill::None, "inet")], "9").is_err());
    }

    #[test]
    fn columns_parse_from_the_lookup() {
        let out = b"id\tgenerated\tbigint\nevent_category\tdefault\ttext\nactor\tnone\ttext\n";
        let c = parse_columns(out).unwrap();
        assert_eq!(c[0], col("id", Fill::Database, "bigint"));
        assert_eq!(c[1].fill, Fill::Default);
        assert_eq!(c[2].fill, Fill::None);
    }
}
