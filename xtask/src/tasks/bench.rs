//! `bench`: run every benchmark (`crate::bench::{audit, backup, deploy, zero_downtime}`) and
//! rewrite each one's section of `docs/benchmarks.md` between its markers,
//! `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`. Text outside the markers
//! (the method introduction) is left as written.
//!
//! A benchmark that fails keeps its section's previous text, with a dated note
//! saying why it was not regenerated, the others are still rewritten, and the
//! task then exits 1. `--quick` runs smaller inputs and prints the sections
//! instead of writing the file; `--only NAME` runs one benchmark and
//! rewrites its section alone.
//!
//! Needs: what each benchmark needs (the deploy benchmark: the engines from
//! `cargo xtask setup`). Never touches: anything in docs/benchmarks.md outside
//! the markers; the environments' stacks and audit logs (benchmarks use their
//! own scratch projects and directories).

use anyhow::{bail, Context, Result};

use crate::bench::Section;
use crate::ctx::Ctx;
use crate::exec::Actions;
use crate::flags::Bench;
use crate::plan::{Effect, Plan, Step};
use crate::repo::workspace_root;

/// The document the tables live in, relative to the workspace root.
pub const DOC: &str = "docs/benchmarks.md";

type BenchFn = fn(bool) -> Result<Section>;

/// Every benchmark, in the order they run and appear.
const AREAS: [(&str, BenchFn); 4] = [
    ("audit", crate::bench::audit::run),
    ("backup", crate::bench::backup::run),
    ("deploy", crate::bench::deploy::run),
    ("zero-downtime", crate::bench::zero_downtime::run),
];

/// The first words of the note left in a section whose benchmark failed.
const NOTE: &str = "> **Not regenerated**";

pub fn run(ctx: &Ctx, args: Bench) -> Result<()> {
    // Measured in the build `cargo xtask` runs, the dev build: that is
    // what users run. The code whose speed they feel (the chain walk, the
    // backup verifier) is optimized there by the workspace's dev profile.
    let mut plan = Plan::new("bench", None);
    let picked = AREAS
        .iter()
        .filter(|(name, _)| args.only.is_empty() || args.only.iter().any(|o| o == name));
    for (name, _) in picked {
        plan.step(Step::action(
            name,
            format!("run the {name} benchmark"),
            Effect::ReadOnly,
        ));
    }
    if args.quick {
        plan.step(Step::action(
            "print",
            "print the sections (quick: smaller inputs, the file is not rewritten)",
            Effect::ReadOnly,
        ));
    } else {
        plan.step(Step::action(
            "rewrite",
            format!("rewrite each section of {DOC} between its markers (a failed benchmark keeps its old text, with a note)"),
            Effect::Mutating,
        ));
    }
    plan.step(Step::action(
        "report",
        "fail (exit 1) if any benchmark failed",
        Effect::ReadOnly,
    ));
    ctx.finish(
        &plan,
        &mut BenchActions {
            quick: args.quick,
            results: Vec::new(),
        },
    )
}

struct BenchActions {
    quick: bool,
    results: Vec<(&'static str, Result<Section, String>)>,
}

impl Actions for BenchActions {
    fn run(&mut self, id: &str) -> Result<()> {
        if let Some((name, f)) = AREAS.iter().find(|(n, _)| *n == id) {
            // A failure is kept, not returned: the other benchmarks still run.
            let r = f(self.quick).map_err(|e| format!("{e:#}").replace('\n', " "));
            if let Err(e) = &r {
                eprintln!("bench {name} failed: {e}");
            }
            self.results.push((name, r));
            return Ok(());
        }
        match id {
            "print" => {
                for (_, r) in &self.results {
                    if let Ok(s) = r {
                        println!("## {}\n\n{}\n", s.title, s.body.trim_end());
                    }
                }
                Ok(())
            }
            "rewrite" => {
                let path = workspace_root().join(DOC);
                let doc = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let date = time::OffsetDateTime::now_utc().date().to_string();
                let new = rewrite(&doc, &self.results, &date)?;
                std::fs::write(&path, new)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("rewrote {DOC}");
                Ok(())
            }
            "report" => {
                let failed: Vec<String> = self
                    .results
                    .iter()
                    .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
                    .collect();
                if failed.is_empty() {
                    Ok(())
                } else {
                    bail!(
                        "{} benchmark(s) failed: {}",
                        failed.len(),
                        failed.join("; ")
                    )
                }
            }
            other => bail!("bench has no action {other}"),
        }
    }
}

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    )
}

/// The document with each named section replaced: by the new section, or,
/// for a failed benchmark, by its old text (earlier notes dropped) and a note.
pub fn rewrite(
    doc: &str,
    results: &[(&str, Result<Section, String>)],
    date: &str,
) -> Result<String> {
    let mut out = doc.to_string();
    for (name, r) in results {
        let (open, close) = markers(name);
        let start = out
            .find(&open)
            .with_context(|| format!("{DOC} has no `{open}` marker for the {name} benchmark"))?;
        let inner_start = start + open.len();
        let end = out[inner_start..]
            .find(&close)
            .map(|i| inner_start + i)
            .with_context(|| format!("{DOC} has `{open}` but no `{close}` after it"))?;
        let inner = match r {
            Ok(s) => format!("\n## {}\n\n{}\n", s.title.trim(), s.body.trim()),
            Err(e) => {
                let kept: Vec<&str> = out[inner_start..end]
                    .trim()
                    .lines()
                    .filter(|l| !l.starts_with(NOTE))
                    .collect();
                let old = kept.join("\n");
                let old = old.trim_end();
                let sep = if old.is_empty() { "" } else { "\n\n" };
                format!("\n{old}{sep}{NOTE} on {date}: the benchmark failed: {e}\n")
            }
        };
        out.replace_range(inner_start..end, &inner);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_TEXT: &str = "# Benchmarks\n\nHow we measure.\n\n<!-- bench:audit -->\nold audit\n<!-- /bench:audit -->\n\ntext between\n\n<!-- bench:deploy -->\n## Deploy\n\n| a |\n<!-- /bench:deploy -->\n";

    fn section(title: &str, body: &str) -> Result<Section, String> {
        Ok(Section {
            title: title.into(),
            body: body.into(),
        })
    }

    #[test]
    fn rewrites_between_markers_only() {
        let out = rewrite(
            DOC_TEXT,
            &[("audit", section("Audit log", "| x |\n|---|\n| 1 |\n"))],
            "2026-01-02",
        )
        .unwrap();
        assert!(out.starts_with("# Benchmarks\n\nHow we measure.\n\n<!-- bench:audit -->\n## Audit log\n\n| x |\n|---|\n| 1 |\n<!-- /bench:audit -->\n\ntext between"), "{out}");
        assert!(
            out.ends_with("<!-- bench:deploy -->\n## Deploy\n\n| a |\n<!-- /bench:deploy -->\n"),
            "{out}"
        );
        // Idempotent: the same result gives the same file.
        let again = rewrite(
            &out,
            &[("audit", section("Audit log", "| x |\n|---|\n| 1 |\n"))],
            "2026-01-03",
        )
        .unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn a_failed_benchmark_keeps_its_text_with_one_note() {
        let once = rewrite(
            DOC_TEXT,
            &[("deploy", Err("docker daemon unreachable".into()))],
            "2026-01-02",
        )
        .unwrap();
        assert!(once.contains("## Deploy\n\n| a |\n\n> **Not regenerated** on 2026-01-02: the benchmark failed: docker daemon unreachable\n<!-- /bench:deploy -->"), "{once}");
        let twice = rewrite(&once, &[("deploy", Err("still down".into()))], "2026-01-03").unwrap();
        assert_eq!(twice.matches(NOTE).count(), 1, "{twice}");
        assert!(
            twice.contains("on 2026-01-03: the benchmark failed: still down"),
            "{twice}"
        );
        // A later success removes the note with the old text.
        let fixed = rewrite(
            &twice,
            &[("deploy", section("Deploy", "| b |"))],
            "2026-01-04",
        )
        .unwrap();
        assert!(
            !fixed.contains(NOTE) && fixed.contains("| b |") && !fixed.contains("| a |"),
            "{fixed}"
        );
    }

    #[test]
    fn a_missing_marker_is_an_error_naming_it() {
        let e = rewrite(DOC_TEXT, &[("backup", section("B", "b"))], "d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `<!-- bench:backup -->` marker"), "{e}");
    }

    #[test]
    fn the_shipped_document_has_every_marker() {
        let doc = std::fs::read_to_string(workspace_root().join(DOC)).unwrap();
        let results: Vec<_> = AREAS
            .iter()
            .map(|(n, _)| (*n, Err("x".to_string())))
            .collect();
        rewrite(&doc, &results, "d").unwrap();
    }
}
