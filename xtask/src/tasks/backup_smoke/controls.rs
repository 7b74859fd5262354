//! The checks after the restore that look at the restored database from
//! other angles: the same verdicts under another session TimeZone, and the
//! negative controls, each on a scratch copy of the restored database with
//! its triggers (the chain's guards, certctl's WORM trigger) disabled in
//! that copy only; the restored database itself is never written here.

use anyhow::{bail, Context, Result};

use super::negative;
use super::report::{self, Control, Finding, Speeds};
use super::run::{ms, Smoke};
use super::verify::{Head, Outcome};
use super::OTHER_TZ;
use crate::plan::Effect;

/// The same verdict on the same chain (ignoring the order rows were exported in).
fn same(a: &Outcome, b: &Outcome) -> bool {
    (a.total, a.walked, &a.head, &a.last, &a.brk, &a.chain_digest)
        == (b.total, b.walked, &b.head, &b.last, &b.brk, &b.chain_digest)
}

impl Smoke {
    pub(super) fn assert_timezone(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        let zone = self.data(&self.s.psql_tz(
            &restored,
            OTHER_TZ,
            Effect::ReadOnly,
            &["SHOW TimeZone"],
        ))?;
        let (sql, sql_took) = self.sql_verify(&restored, OTHER_TZ)?;
        let rust = self.rust_verify(&restored, OTHER_TZ)?;
        // The second measurement of both verifiers on the same rows: keep the best of each.
        if let Some(sp) = &mut self.report.verifier_speeds {
            *sp = Speeds::new(
                sp.rows,
                sp.sql_ms.min(ms(sql_took)),
                sp.export_ms.min(ms(rust.export)),
                sp.rust_ms.min(ms(rust.verify)),
            );
        }
        let (Some(utc_sql), Some(utc_rust)) = (self.report.after_sql.as_ref(), self.after.as_ref())
        else {
            bail!("the UTC results are missing");
        };
        let zone = zone.trim();
        let pass =
            zone == OTHER_TZ && same(&sql, utc_sql) && same(&rust.outcome, &utc_rust.outcome);
        self.report.check(
            "timezone-invariant",
            pass,
            format!(
                "session TimeZone {zone} (rows export as {}): SQL {}, Rust {} (identical to UTC: SQL {}, Rust {})",
                rust.sample_ts.as_deref().unwrap_or("-"),
                report::verdict(&sql),
                report::verdict(&rust.outcome),
                same(&sql, utc_sql),
                same(&rust.outcome, &utc_rust.outcome)
            ),
        );
        Ok(())
    }

    pub(super) fn negative_controls(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        let after = self.after.as_ref().context("no restored chain")?;
        let reference = self.reference()?.context("no manifest")?;
        if !negative::enough(&after.landmarks) {
            bail!(
                "the restored chain walks only {} rows: too few for the negative controls",
                after.landmarks.n
            );
        }
        let controls = negative::controls(self.s.profile, &after.landmarks);
        let file_copy = self.server_version_num >= 150_000;
        let mut done = Vec::new();
        for (i, t) in controls.into_iter().enumerate() {
            let copy = self.s.db(&format!("n{}", i + 1));
            self.cmd(&self.s.create_copy(&copy, &restored, file_copy))?;
            let sql_refs: Vec<&str> = t.sql.iter().map(String::as_str).collect();
            self.cmd(&self.s.psql(&copy, Effect::Mutating, &sql_refs))
                .with_context(|| format!("damaging the copy for {}", t.name))?;
            let (sql, _) = self.sql_verify(&copy, "UTC")?;
            let rust = self.rust_verify(&copy, "UTC")?.outcome;
            self.cmd(&self.s.drop_db(&copy))?;
            let mut diffs = Vec::new();
            let head = rust.head.as_ref().map(Head::value).unwrap_or_default();
            for (what, want, got) in [
                ("rows", reference.rows.to_string(), rust.total.to_string()),
                ("head", reference.head.clone(), head),
                (
                    "chain digest",
                    reference.chain_digest.clone(),
                    rust.chain_digest.clone(),
                ),
            ] {
                if !want.is_empty() && want != got {
                    diffs.push(if what == "rows" {
                        format!("{got} rows, manifest says {want}")
                    } else {
                        format!("{what} differs")
                    });
                }
            }
            let findings = vec![
                Finding {
                    check: "sql-verifier".into(),
                    caught: !sql.clean(),
                    detail: report::verdict(&sql),
                },
                Finding {
                    check: "rust-verifier".into(),
                    caught: !rust.clean(),
                    detail: report::verdict(&rust),
                },
                Finding {
                    check: "manifest".into(),
                    caught: !diffs.is_empty(),
                    detail: if diffs.is_empty() {
                        "matches".into()
                    } else {
                        diffs.join(", ")
                    },
                },
            ];
            let detected = findings.iter().any(|f| f.caught);
            done.push(Control {
                tamper: t,
                detected,
                findings,
            });
        }
        self.report.negative_controls = done;
        Ok(())
    }
}
