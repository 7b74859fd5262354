//! The checks: the known answer, verification before the dump, and every
//! assertion on the restored database. Each records its result in the
//! report and lets the run go on.

use anyhow::{Context, Result};

use super::copy::{self, Field};
use super::phases::file_sha256;
use super::report::{self, Manifest, Speeds, MANIFEST_FORMAT};
use super::run::{ms, short, Smoke};
use super::sql;
use super::verify::{Head, Outcome};
use super::KAT_TZ;
use crate::flags::Profile;
use crate::plan::Effect;

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
        if let Some(w) = self.certctl_order_note(&rust.outcome, &src)? {
            self.report.warnings.push(w);
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
        // The last walked row in chain order.
        let last_row = match rust.landmarks.last.last() {
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
                    // A manifest needs only profile, rows and head; the rest is compared when present.
                    if want.is_empty() {
                        continue;
                    }
                    if want != got {
                        diffs.push(format!("{what} {want} != {got}"));
                    }
                }
                let detail = if diffs.is_empty() && m.chain_digest.is_empty() {
                    "rows and head match (the manifest holds nothing else)".to_string()
                } else if diffs.is_empty() {
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
        match &self.s.checkpoint {
            Some(c) => {
                let found = rust.landmarks.at_checkpoint.as_ref().map(|m| match m.seq {
                    Some(s) => format!("{s}:{}", m.row_hash),
                    None => m.row_hash.clone(),
                });
                let pass = found.as_deref() == Some(c.head.as_str()) && o.total >= c.rows;
                let detail = match &found {
                    _ if o.total < c.rows => format!(
                        "the checkpoint ({}) saw {} rows, the restored chain has {}: rows were deleted or the chain rolled back",
                        c.source, c.rows, o.total
                    ),
                    Some(f) if pass => format!(
                        "row {} of the chain is still the head {} of the checkpoint ({})",
                        c.rows, short(f), c.source
                    ),
                    Some(f) => format!(
                        "row {} of the chain is {}, the checkpoint ({}) says {}: the chain was rewritten or rolled back",
                        c.rows, f, c.source, c.head
                    ),
                    None => format!(
                        "the walk did not reach row {} of the checkpoint ({})",
                        c.rows, c.source
                    ),
                };
                r.check("checkpoint-holds", pass, detail);
                r.checkpoint = Some(c.clone());
            }
            None => r.skip(
                "checkpoint-holds",
                "no checkpoint: pass --checkpoint FILE, or record one with --tag and --dump",
            ),
        }
        // A dump without a manifest gets one, so the next run has something to compare.
        if let (Some(d), None, Some(m)) = (&self.s.dump, &self.s.dump_manifest, &r.manifest) {
            if o.clean() {
                let path = std::path::PathBuf::from(format!("{}.manifest.json", d.display()));
                let text = serde_json::to_string_pretty(m)? + "\n";
                match std::fs::write(&path, text) {
                    Ok(()) => r.manifest_written = Some(path.display().to_string()),
                    Err(e) => r.warnings.push(format!(
                        "could not write the manifest {}: {e}",
                        path.display()
                    )),
                }
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
        if self.before.is_none() {
            if let Some(w) = self.certctl_order_note(&rust.outcome, &restored)? {
                self.report.warnings.push(w);
            }
        }
        self.after = Some(rust);
        Ok(())
    }

    /// What certctl's own verifier, which walks `ORDER BY "timestamp", id`
    /// under the source database's collation, would say of this chain: its
    /// first break (position and id), and whether the breaks are order
    /// artifacts of a sound chain or real (a row before them is missing).
    fn certctl_order_note(&mut self, o: &Outcome, db: &str) -> Result<Option<String>> {
        if self.s.profile != Profile::Certctl {
            return Ok(None);
        }
        // The source's collation travels in the dump; a workload's source is ours (C).
        let source = match &self.s.dump {
            Some(_) => sql::source_collation(&self.data(&self.s.source_ddl())?),
            None => None,
        };
        let c_like =
            |s: &str| matches!(s, "libc:C" | "libc:POSIX" | "libc:C.UTF-8" | "libc:C.utf8");
        let (collation, named) = match source.as_deref() {
            None => ("\"C\"".to_string(), "C".to_string()),
            Some(s) if c_like(s) => ("\"C\"".to_string(), "C".to_string()),
            Some(s) => match s.strip_prefix("column:") {
                Some(name) => (name.to_string(), name.to_string()),
                None => {
                    let q = sql::collation_lookup(s).context("collation lookup")?;
                    let found = self.data(&self.s.psql(db, Effect::ReadOnly, &[&q]))?;
                    match found.trim() {
                        "" => {
                            return Ok(Some(format!(
                                "the source database sorts with collation {s}, which this server does not have: certctl's own verifier's order (and the breaks it reports) cannot be predicted here"
                            )))
                        }
                        name => (name.to_string(), format!("{name} (the source's {s})")),
                    }
                }
            },
        };
        let out = self.data(&self.s.certctl_order(db, &collation))?;
        let line = out.lines().next().unwrap_or_default();
        let f: [Field<'_>; 5] = copy::fields(line.as_bytes()).context("certctl order")?;
        let t = |i: usize| {
            f[i].as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let breaks: u64 = t(0).and_then(|v| v.parse().ok()).unwrap_or(0);
        let real: u64 = t(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        let (Some(pos), Some(id)) = (t(2), t(3)) else {
            return Ok(None);
        };
        let first_real = t(4).as_deref() == Some("t");
        let head = format!(
            "certctl's own verifier (ORDER BY \"timestamp\", id under collation {named}) would report its first break at row {id}, position {pos} of {}: {breaks} rows do not follow the row before them in that order",
            o.total
        );
        let verdict = if o.clean() {
            "the chain is sound by its links, so all of these are false breaks (order artifacts)"
                .to_string()
        } else if first_real {
            format!("that first break is real: the row before {id} is missing ({real} of the {breaks} follow a missing row)")
        } else {
            format!("{real} of them follow a missing row, and the links break too (see the verifiers): none of them is called false")
        };
        Ok(Some(format!("{head}; {verdict}")))
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
}
