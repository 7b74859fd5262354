//! The backup benchmark: the whole `backup-smoke` at 24, 10k and 100k rows
//! on the embedded cluster, with the time broken down by phase, and the
//! Rust verifier against the SQL verifier function on the same restored
//! rows, measured in the same run (each smoke times both verifiers twice,
//! once per session TimeZone, and keeps the best of each).
//!
//! Each smoke runs as users run it: `cargo xtask --format json backup-smoke
//! --rows N`, the dev build, through the process layer; the figures come
//! from the report in its one JSON document. (The benchmark does not call
//! the task's code in-process: a benchmark is below the tasks.)

use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::Value;

use super::Section;
use crate::cmd::{Command, Effect};

fn secs(ms: Option<u64>) -> String {
    ms.map_or("-".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

/// The wall time of `phase` in a smoke's report.
fn ms(r: &Value, phase: &str) -> Option<u64> {
    r["timings"]
        .as_array()?
        .iter()
        .find(|t| t["phase"] == phase)
        .and_then(|t| t["ms"].as_u64())
}

fn speed_row(s: &Value) -> String {
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "| dev | {} | {:.0} ms ({:.0}k rows/s) | {:.1} ms ({:.0}k rows/s) | **{:.1}x** | {:.0} ms | {:.1}x |\n",
        s["rows"],
        f("sql_ms"),
        f("sql_rows_per_s") / 1e3,
        f("rust_ms"),
        f("rust_rows_per_s") / 1e3,
        f("rust_vs_sql"),
        f("export_ms"),
        f("rust_with_export_vs_sql")
    )
}

/// One smoke of `rows` rows through `cargo xtask` (the dev build); its report.
fn smoke(rows: u32) -> Result<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let c = Command::new(&cargo, Effect::Mutating)
        .args(["xtask", "--format", "json", "backup-smoke", "--rows"])
        .arg(rows.to_string())
        .cwd(crate::repo::workspace_root())
        .timeout(1200);
    let out =
        crate::cmd::run(&c, false).with_context(|| format!("backup-smoke with {rows} rows"))?;
    let doc: Value = serde_json::from_str(&out).context("reading backup-smoke's JSON document")?;
    Ok(doc["report"].clone())
}

pub fn run(quick: bool) -> Result<Section> {
    let sizes: &[u32] = if quick {
        &[24, 10_000]
    } else {
        &[24, 10_000, 100_000]
    };
    let mut reports: Vec<(u32, Value)> = Vec::new();
    for &n in sizes {
        eprintln!("backup: smoke with {n} rows");
        let t = Instant::now();
        let r = smoke(n)?;
        eprintln!("backup: {n} rows took {:.1} s", t.elapsed().as_secs_f64());
        reports.push((n, r));
    }
    let target = reports
        .first()
        .and_then(|(_, r)| r["target"].as_str())
        .unwrap_or_default()
        .to_string();
    let version = reports
        .first()
        .and_then(|(_, r)| r["server_version"].as_str())
        .unwrap_or_default()
        .to_string();
    let mut body = format!(
        "Method: `cargo xtask backup-smoke --rows N` on the {} (PostgreSQL {version}), in one \
`cargo xtask bench` run, each smoke through `cargo xtask` (the dev build users run). Each phase is wall time: workload (the serial INSERTs and COPY \
blocks through the chain trigger, then the concurrent writers), dump (`pg_dump --format=custom`), \
restore (`pg_restore --exit-on-error` into a fresh database), verify (the SQL verifier function, \
the COPY export and the Rust verifier on the restored rows), negative controls (nine damaged \
scratch copies, each verified by both verifiers and the manifest), and the whole smoke from \
`initdb` to teardown.\n\n\
| rows | workload | dump | restore | verify | negative controls | whole smoke |\n|---|---|---|---|---|---|---|\n",
        target.split(" on ").next().unwrap_or("embedded cluster"),
    );
    for (n, r) in &reports {
        body.push_str(&format!(
            "| {n} | {} | {} | {} | {} | {} | {} |\n",
            secs(ms(r, "workload")),
            secs(ms(r, "dump")),
            secs(ms(r, "restore")),
            secs(ms(r, "verify")),
            secs(ms(r, "negative-controls")),
            secs(ms(r, "total")),
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
        let s = &r["verifier_speeds"];
        if s["rows"].as_u64().is_some_and(|n| n >= 10_000) {
            body.push_str(&speed_row(s));
        }
    }
    if let Some((n, r)) = reports.last() {
        let speed = r["verifier_speeds"]["rust_vs_sql"]
            .as_f64()
            .unwrap_or(f64::NAN);
        body.push_str(&format!(
            "\nGoals: Rust verifier at least 10x the SQL verifier: {speed:.1}x at {n} rows (dev build). \
Whole smoke under 60 s: {} at {n} rows.\n",
            secs(ms(r, "total")),
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
    #[ignore = "a benchmark: boots clusters"]
    fn measure() {
        let quick = std::env::var_os("BACKUP_BENCH_QUICK").is_some();
        println!("{}", super::run(quick).unwrap().body);
    }
}
