//! The checks: the known answer, verification before the dump, every
//! post-restore assertion, the time zone check, the negative controls on
//! scratch copies, and the append after the restore. Each records its
//! result in the report and lets the run go on.

use anyhow::{bail, Context, Result};

use super::copy::{self, Field};
use super::negative;
use super::report::{self, Control, Finding, Manifest, Speeds, MANIFEST_FORMAT};
use super::run::{file_sha256, ms, short, Smoke};
use super::sql;
use super::verify::{Head, Outcome};
use super::{KAT_TZ, OTHER_TZ};
use crate::flags::Profile;
use crate::plan::Effect;

/// The same verdict on the same chain (ignoring the order rows were exported in).
fn same(a: &Outcome, b: &Outcome) -> bool {
    (a.total, a.walked, &a.head, &a.last, &a.brk, &a.chain_digest)
        == (b.total, b.walked, &b.head, &b.last, &b.brk, &b.chain_digest)
}

impl Smoke {
    pub(super) fn known_answer(&mut self) -> Result<()> {
        let kat = self.s.db("kat");
        let file = self.s.kat_sql();
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("-- known-answer-head:"))
            .map(|h| h.trim().to_string())
            .with_context(|| format!("{} has no `-- known-answer-head:` line", file.display()))?;
        let sql = self.cmd(&self.s.files_tz(&kat, KAT_TZ, std::slice::from_ref(&file)));
        let rust = self.rust_verify(&kat, KAT_TZ)?;
        let got = rust
            .outcome
            .head
            .as_ref()
            .map(Head::value)
            .unwrap_or_default();
        let mut problems = Vec::new();
        if let Err(e) = &sql {
            problems.push(format!("the trigger under TimeZone {KAT_TZ}: {e:#}"));
        }
        if !rust.outcome.clean() || rust.outcome.last.value() != expected {
            problems.push(format!(
                "the Rust verifier reached {got} ({})",
                report::verdict(&rust.outcome)
            ));
        }
        let detail = if problems.is_empty() {
            format!(
                "{} rows give head {expected} in SQL (TimeZone {KAT_TZ}) and in Rust",
                rust.outcome.total
            )
        } else {
            format!("expected head {expected}: {}", problems.join("; "))
        };
        self.report
            .check("known-answer", problems.is_empty(), detail);
        Ok(())
    }

    pub(super) fn verify_before(&mut self) -> Result<()> {
        let src = self.s.db("src");
        let (sql, _) = self.sql_verify(&src, "UTC")?;
        let rust = self.rust_verify(&src, "UTC")?;
        let o = &rust.outcome;
        let pass = sql.clean() && o.clean() && o.total == u64::from(self.s.rows);
        self.report.check(
            "verified-before-dump",
            pass,
            format!(
                "{} rows written; SQL: {}; Rust: {}",
                o.total,
                report::verdict(&sql),
                report::verdict(o)
            ),
        );
        if let Some(b) = o.published_order_breaks.filter(|&b| b > 0) {
            self.report.warnings.push(format!(
                "{b} rows are out of (timestamp, id) order: a verifier that walks the published certctl order reports {b} false breaks on this sound chain"
            ));
        }
        self.before = Some(rust.outcome);
        Ok(())
    }

    /// The manifest to compare against: ours, or the one beside `--dump FILE`.
    pub(super) fn reference(&self) -> Result<Option<Manifest>> {
        let path = match &self.s.dump_manifest {
            Some(p) => p.clone(),
            None if self.s.dump.is_none() => self.s.manifest_file(),
            None => return Ok(None),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the manifest {}", path.display()))?;
        let m: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("parsing the manifest {}", path.display()))?;
        Ok(Some(m))
    }

    pub(super) fn assert_restored(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        let (sql, sql_took) = self.sql_verify(&restored, "UTC")?;
        let rust = self.rust_verify(&restored, "UTC")?;
        let o = &rust.outcome;
        let head = o.head.as_ref().map(Head::value);
        let reference = self.reference()?;
        let dump_sha = file_sha256(&self.s.dump_file())?;
        let r = &mut self.report;
        if self.s.dump.is_some() {
            // What this dump holds, in manifest form: keep it beside the dump
            // as FILE.manifest.json, and the next run compares against it.
            r.manifest = Some(Manifest {
                format: MANIFEST_FORMAT.into(),
                profile: r.profile.clone(),
                rows: o.total,
                head: head.clone().unwrap_or_default(),
                last_row_hash: o.last.hash.clone(),
                chain_digest: o.chain_digest.clone(),
                dump_file: self
                    .s
                    .dump_file()
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dump_sha256: dump_sha.clone(),
                created: crate::audit::now_rfc3339(),
            });
        }

        match &reference {
            Some(m) => {
                r.check(
                    "count-equal",
                    o.total == m.rows,
                    format!("{} rows in the manifest, {} restored", m.rows, o.total),
                );
                let same_head = head.as_deref() == Some(m.head.as_str());
                r.check(
                    "head-byte-exact",
                    same_head && sql.head == o.head,
                    format!(
                        "manifest {} vs restored {}",
                        m.head,
                        head.as_deref().unwrap_or("(no head row)")
                    ),
                );
            }
            None => {
                r.skip(
                    "count-equal",
                    "no manifest beside the dump: nothing to compare the count with",
                );
                r.skip(
                    "head-byte-exact",
                    "no manifest beside the dump: nothing to compare the head with",
                );
            }
        }
        // The last row in chain order, whether or not the walk got there.
        let last_row = match rust.chain.last() {
            Some(c) => Head {
                seq: c.seq,
                hash: c.row_hash.clone(),
            },
            None => o.last.clone(),
        };
        r.check(
            "head-is-last-row",
            o.head.as_ref() == Some(&last_row),
            format!(
                "head {} / last row {}",
                head.as_deref().unwrap_or("(none)"),
                last_row.value()
            ),
        );
        r.check(
            "sql-verifier-clean",
            sql.clean() && sql.total == o.total,
            report::verdict(&sql),
        );
        let agree = o.clean() && sql.walked == o.walked && sql.last == o.last && sql.head == o.head;
        r.check(
            "rust-verifier-agrees",
            agree,
            format!(
                "Rust recomputed every row: {}; SQL said {}",
                report::verdict(o),
                report::verdict(&sql)
            ),
        );
        match &reference {
            Some(m) => {
                let mut diffs = Vec::new();
                for (what, want, got) in [
                    ("rows", m.rows.to_string(), o.total.to_string()),
                    ("head", m.head.clone(), head.clone().unwrap_or_default()),
                    (
                        "last_row_hash",
                        m.last_row_hash.clone(),
                        o.last.hash.clone(),
                    ),
                    (
                        "chain_digest",
                        m.chain_digest.clone(),
                        o.chain_digest.clone(),
                    ),
                    ("dump_sha256", m.dump_sha256.clone(), dump_sha),
                ] {
                    if want != got {
                        diffs.push(format!("{what} {want} != {got}"));
                    }
                }
                let detail = if diffs.is_empty() {
                    format!(
                        "rows, head, last row hash, chain digest {} and dump SHA-256 {} all match",
                        short(&m.chain_digest),
                        short(&m.dump_sha256)
                    )
                } else {
                    diffs.join("; ")
                };
                r.check("manifest-matches", diffs.is_empty(), detail);
            }
            None => r.skip("manifest-matches", "no manifest beside the dump"),
        }
        if let Some(b) = o.published_order_breaks.filter(|&b| b > 0) {
            if self.before.is_none() {
                r.warnings.push(format!("{b} rows are out of (timestamp, id) order: a verifier that walks the published certctl order reports {b} false breaks on this chain"));
            }
        }
        r.verifier_speeds = Some(Speeds::new(
            o.total,
            ms(sql_took),
            ms(rust.export),
            ms(rust.verify),
        ));
        r.after_sql = Some(sql);
        r.after_rust = Some(o.clone());
        r.time(
            "verify",
            (sql_took + rust.export + rust.verify).as_millis() as u64,
        );
        self.check_triggers(&restored)?;
        self.after = Some(rust);
        Ok(())
    }

    pub(super) fn check_triggers(&mut self, db: &str) -> Result<()> {
        let out = self.data(&self.s.psql(db, Effect::ReadOnly, &[sql::TRIGGERS]))?;
        let mut names = Vec::new();
        let mut disabled = Vec::new();
        let mut before_insert = false;
        for line in copy::lines(out.as_bytes()) {
            let f: [Field<'_>; 4] = copy::fields(line).context("trigger list")?;
            let t = |i: usize| {
                f[i].as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let name = format!("{}.{}", t(0), t(1));
            let enabled = matches!(t(2).as_str(), "O" | "A");
            if !enabled {
                disabled.push(format!("{name} (tgenabled {})", t(2)));
            }
            before_insert |= enabled && t(0) == "audit_events" && t(3) == "t";
            names.push(name);
        }
        // Our own schema's trigger names are known; a certctl dump's are not.
        let ours = self.s.profile == Profile::Default || self.s.dump.is_none();
        let missing: Vec<&str> = if ours {
            sql::expected_triggers(self.s.profile)
                .iter()
                .copied()
                .filter(|n| !names.iter().any(|x| x == n))
                .collect()
        } else {
            Vec::new()
        };
        let pass = disabled.is_empty() && missing.is_empty() && before_insert;
        let mut detail = format!(
            "{} triggers, all enabled; a BEFORE INSERT row trigger chains audit_events",
            names.len()
        );
        if !pass {
            detail = format!(
                "disabled: [{}]; missing: [{}]; enabled BEFORE INSERT row trigger on audit_events: {}",
                disabled.join(", "),
                missing.join(", "),
                if before_insert { "yes" } else { "no" }
            );
        }
        self.report.check("triggers-enabled", pass, detail);
        Ok(())
    }

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
        let controls = negative::controls(self.s.profile, &after.chain);
        // FILE_COPY copies the files; WAL_LOG (15's default) writes every page
        // through the WAL, which was slower here at every size tried.
        let strategy = if self.server_version_num >= 150_000 {
            " STRATEGY FILE_COPY"
        } else {
            ""
        };
        let mut done = Vec::new();
        for (i, t) in controls.into_iter().enumerate() {
            let copy = self.s.db(&format!("n{}", i + 1));
            let create = format!("CREATE DATABASE \"{copy}\" TEMPLATE \"{restored}\"{strategy}");
            self.cmd(
                &self
                    .s
                    .psql(&self.s.conn.maintenance_db, Effect::Mutating, &[&create]),
            )?;
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
                if want != got {
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

    pub(super) fn assert_append(&mut self) -> Result<()> {
        let restored = self.s.db("restored");
        let old = self
            .report
            .after_rust
            .clone()
            .context("no restored chain")?;
        let insert = match self.s.profile {
            Profile::Default => "COPY (INSERT INTO audit_events (actor, actor_type, action, resource_type, resource_id, details, event_category) \
                 VALUES ('xtask backup-smoke', 'system', 'backup.restore-verified', 'database', current_database(), '{\"verified\": true}', 'backup') \
                 RETURNING seq, prev_hash, row_hash) TO STDOUT"
                .to_string(),
            Profile::Certctl => format!(
                "COPY (INSERT INTO audit_events (id, actor, actor_type, action, resource_type, resource_id, details, event_category) \
                 VALUES ('xtask-backup-smoke-{}', 'xtask backup-smoke', 'system', 'backup.restore-verified', 'database', current_database(), '{{\"verified\": true}}', 'backup') \
                 RETURNING NULL::bigint, prev_hash, row_hash) TO STDOUT",
                self.s.run_id
            ),
        };
        let out = match self.cmd(&self.s.psql(&restored, Effect::Mutating, &[&insert])) {
            Ok(o) => o,
            Err(e) => {
                self.report.check(
                    "append-chains",
                    false,
                    format!("appending a row failed: {e:#}"),
                );
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
                "the new row{} chains onto {} and the head moved to it; {}",
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
