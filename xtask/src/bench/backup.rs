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

use anyhow::Result;

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
    // `cargo xtask bench` always measures from an optimized build (it re-runs
    // itself with --release), so the figures above are that build's.
    if let Some((n, r)) = reports.last() {
        let speed = r
            .verifier_speeds
            .as_ref()
            .map_or(f64::NAN, |s| s.rust_vs_sql);
        body.push_str(&format!(
            "\nGoals: Rust verifier at least 10x the SQL verifier: {speed:.1}x at {n} rows ({} build). \
Whole smoke under 60 s: {} at {n} rows.\n",
            build(),
            secs(r.ms("total")),
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
