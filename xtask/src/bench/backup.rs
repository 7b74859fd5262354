//! The backup benchmark: the whole `backup-smoke` at 24, 10k and 100k rows
//! on the embedded cluster, with the time broken down by phase, and the
//! Rust verifier against the SQL verifier function on the same restored
//! rows, measured in the same run (each smoke times both verifiers twice,
//! once per session TimeZone, and keeps the best of each).
//!
//! The smoke runs in this process, so in the build `cargo xtask` makes: a
//! dev build, where xtask's own code is unoptimized (its dependencies are
//! optimized, see the workspace Cargo.toml). Verifier throughput is a
//! property of optimized code, so the full run also runs the 100k smoke
//! twice from `cargo run --release` and reports that row separately.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::Section;
use crate::tasks::backup_smoke::report::{Report, Speeds};

fn secs(ms: Option<u64>) -> String {
    ms.map_or("-".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    }
}

/// The 100k smoke from an optimized build of this workspace, best of `runs`.
fn optimized(rows: u32, runs: usize) -> Result<(Speeds, u64)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut best: Option<(Speeds, u64)> = None;
    for i in 0..runs {
        eprintln!(
            "backup: {rows}-row smoke from a release build ({}/{runs})",
            i + 1
        );
        let out = std::process::Command::new(&cargo)
            .args([
                "run",
                "--release",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "--format",
                "json",
                "backup-smoke",
                "--rows",
            ])
            .arg(rows.to_string())
            .current_dir(crate::workspace_root())
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running cargo run --release")?;
        if !out.status.success() {
            bail!("the release-build smoke failed ({})", out.status);
        }
        let first = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let r: serde_json::Value =
            serde_json::from_str(&first).context("reading the release-build report")?;
        let sp = &r["verifier_speeds"];
        let total = r["timings"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["phase"] == "total"))
            .and_then(|t| t["ms"].as_u64());
        let f = |k: &str| sp[k].as_f64().unwrap_or(f64::NAN);
        let s = Speeds::new(
            sp["rows"].as_u64().unwrap_or(0),
            f("sql_ms"),
            f("export_ms"),
            f("rust_ms"),
        );
        let total = total.unwrap_or(0);
        best = Some(match best {
            None => (s, total),
            Some((b, t)) => (
                Speeds::new(
                    b.rows,
                    b.sql_ms.min(s.sql_ms),
                    b.export_ms.min(s.export_ms),
                    b.rust_ms.min(s.rust_ms),
                ),
                t.min(total),
            ),
        });
    }
    best.context("no runs")
}

fn speed_row(build: &str, s: &Speeds) -> String {
    format!(
        "| {build} | {} | {:.0} ms ({:.0}k rows/s) | {:.1} ms ({:.0}k rows/s) | **{:.1}x** | {:.0} ms | {:.1}x |\n",
        s.rows,
        s.sql_ms,
        s.sql_rows_per_s / 1e3,
        s.rust_ms,
        s.rust_rows_per_s / 1e3,
        s.rust_vs_sql,
        s.export_ms,
        s.rust_with_export_vs_sql
    )
}

pub fn run(quick: bool) -> Result<Section> {
    let sizes: &[u32] = if quick {
        &[24, 10_000]
    } else {
        &[24, 10_000, 100_000]
    };
    let mut reports: Vec<(u32, Report)> = Vec::new();
    for &n in sizes {
        eprintln!("backup: smoke with {n} rows");
        let t = Instant::now();
        let r = crate::tasks::backup_smoke::measure(n)?;
        eprintln!("backup: {n} rows took {:.1} s", t.elapsed().as_secs_f64());
        reports.push((n, r));
    }
    let release = if quick {
        None
    } else {
        Some(optimized(100_000, 2)?)
    };

    let target = reports
        .first()
        .map(|(_, r)| r.target.clone())
        .unwrap_or_default();
    let version = reports
        .first()
        .and_then(|(_, r)| r.server_version.clone())
        .unwrap_or_default();
    let mut body = format!(
        "Method: `cargo xtask backup-smoke --rows N` on the {} (PostgreSQL {version}), in one \
`cargo xtask bench` run, in a {} build (`cargo xtask` runs a dev build). Each phase is wall time: workload (the serial INSERTs and COPY \
blocks through the chain trigger, then the concurrent writers), dump (`pg_dump --format=custom`), \
restore (`pg_restore --exit-on-error` into a fresh database), verify (the SQL verifier function, \
the COPY export and the Rust verifier on the restored rows), negative controls (nine damaged \
scratch copies, each verified by both verifiers and the manifest), and the whole smoke from \
`initdb` to teardown.\n\n\
| rows | workload | dump | restore | verify | negative controls | whole smoke |\n|---|---|---|---|---|---|---|\n",
        target.split(" on ").next().unwrap_or("embedded cluster"),
        build()
    );
    for (n, r) in &reports {
        body.push_str(&format!(
            "| {n} | {} | {} | {} | {} | {} | {} |\n",
            secs(r.ms("workload")),
            secs(r.ms("dump")),
            secs(r.ms("restore")),
            secs(r.ms("verify")),
            secs(r.ms("negative-controls")),
            secs(r.ms("total")),
        ));
    }
    body.push_str(
        "\nVerifiers on the same restored rows, same run: the SQL function `audit_verify.verify_chain()` \
(wall time of its psql call) against the Rust verifier (parse the COPY text, recompute every row's \
SHA-256, walk the chain, digest it), best of two measurements each; the export (two `COPY ... TO \
STDOUT`) is shown apart and then counted against Rust.\n\n\
| build | rows | SQL verifier | Rust verifier | Rust vs SQL | export | Rust + export vs SQL |\n|---|---|---|---|---|---|---|\n",
    );
    for (_, r) in &reports {
        if let Some(s) = r.verifier_speeds.as_ref().filter(|s| s.rows >= 10_000) {
            body.push_str(&speed_row(build(), s));
        }
    }
    let largest = reports.last().and_then(|(_, r)| r.ms("total"));
    if let Some((s, total)) = &release {
        body.push_str(&speed_row(
            "release (`cargo run --release`, best of 2 smokes)",
            s,
        ));
        body.push_str(&format!(
            "\nGoals: Rust verifier at least 10x the SQL verifier: {:.1}x in the release build, {:.1}x in the dev build \
(unoptimized Rust; the block function of `sha2` and `memchr` are optimized dependencies). Whole 100k-row smoke under 60 s: \
{} (dev build), {} (release build).\n",
            s.rust_vs_sql,
            reports.last().and_then(|(_, r)| r.verifier_speeds.as_ref()).map_or(f64::NAN, |s| s.rust_vs_sql),
            secs(largest),
            secs(Some(*total)),
        ));
    }
    Ok(Section {
        title: "Backup smoke".into(),
        body,
    })
}

#[cfg(test)]
mod tests {
    /// `cargo test -p xtask --lib bench::backup::tests::measure -- --ignored --nocapture`
    /// (the full run; `BACKUP_BENCH_QUICK=1` for the quick one).
    #[test]
    #[ignore = "a benchmark: boots clusters and builds in release mode"]
    fn measure() {
        let quick = std::env::var_os("BACKUP_BENCH_QUICK").is_some();
        println!("{}", super::run(quick).unwrap().body);
    }
}
