//! The audit benchmark: verify throughput against `sha256sum` over the same
//! file, and append latency with fsync, measured in one run.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cmd::{Command, Effect};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::Section;
use crate::audit::{hex, Entry, ImageRef, Log, Record};

/// Writes a valid chain of `n` realistic records to `path` (no fsync: this is
/// test data, written in bulk); returns its size in bytes.
pub fn synthetic_chain(path: &Path, env: &str, n: u64) -> Result<u64> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut prev = [0u8; 32];
    let mut size = 0u64;
    let reasons = [
        "deploy",
        "health-check-failure",
        "nightly promotion after staging soak",
        "manual: roll back while the queue drains; see incident 2024-117 \"latency\"",
    ];
    for seq in 1..=n {
        let tag = |k: u64| format!("sha-{:012x}", k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16);
        let digest = |k: u64| Some(format!("sha256:{}", hex(&Sha256::digest(k.to_le_bytes()))));
        let rollback = seq % 10 == 0;
        let r = Record {
            seq,
            ts: format!(
                "2024-01-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                1 + seq % 28,
                seq % 24,
                seq % 60,
                (seq / 60) % 60,
                seq % 1_000_000
            ),
            env: env.into(),
            action: if rollback { "rollback" } else { "deploy" }.into(),
            outcome: "success".into(),
            from: Some(ImageRef::new(tag(seq - 1), digest(seq - 1))),
            to: Some(ImageRef::new(tag(seq), digest(seq))),
            git_sha: Some(hex(&Sha256::digest(seq.to_be_bytes())[..20])),
            actor: "deploy-bot (GITHUB_ACTOR)".into(),
            host: "ci-runner-07".into(),
            reason: reasons[(seq % 4) as usize].into(),
            error: None,
            set: None,
            duration_ms: 40_000 + seq % 20_000,
            prev: hex(&prev),
        };
        let mut line = serde_json::to_vec(&r)?;
        prev = Sha256::digest(&line).into();
        line.push(b'\n');
        size += line.len() as u64;
        w.write_all(&line)?;
    }
    w.flush()?;
    // Durable before timing starts, so no append pays for flushing it.
    w.get_ref().sync_all()?;
    Ok(size)
}

fn best_of(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn sha256sum(path: &Path) -> Result<()> {
    let c = Command::new("sha256sum", Effect::ReadOnly).arg(path.display().to_string());
    crate::cmd::run(&c, false)
        .map(drop)
        .context("running sha256sum (coreutils)")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Append latencies of `n` appends (each one write plus fsync, two with a sink).
fn appends(log: &Log, n: usize) -> Result<(Duration, Vec<Duration>)> {
    let entry = || Entry {
        action: "deploy".into(),
        outcome: "success".into(),
        from: Some(ImageRef::new("sha-0123456789ab", None)),
        to: Some(ImageRef::new("sha-ba9876543210", None)),
        git_sha: None,
        reason: "benchmark".into(),
        error: None,
        set: None,
        duration_ms: 1,
    };
    log.forget_verified();
    let t = Instant::now();
    log.append(entry(), false)?;
    let first = t.elapsed();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        log.append(entry(), false)?;
        lat.push(t.elapsed());
    }
    lat.sort();
    Ok((first, lat))
}

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(quick: bool) -> Result<Section> {
    let n: u64 = if quick { 100_000 } else { 1_000_000 };
    let appends_n = if quick { 50 } else { 300 };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = Scratch(
        std::env::temp_dir().join(format!("xtask-bench-audit-{}-{nanos}", std::process::id())),
    );
    let state = dir.0.join("state/bench");
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let log = Log::new(&state, "bench", None);
    eprintln!("audit: writing a chain of {n} records");
    let size = synthetic_chain(&log.path, "bench", n)?;

    // Warm the page cache, then take the best of several runs of each.
    sha256sum(&log.path)?;
    let runs = if quick { 3 } else { 5 };
    eprintln!("audit: sha256sum and verify, best of {runs}");
    let sum = best_of(runs, || sha256sum(&log.path))?;
    let mut count = 0;
    let verify = best_of(runs, || {
        count = log.verify()?.count;
        Ok(())
    })?;
    anyhow::ensure!(count == n, "verify counted {count} records, expected {n}");
    // The same SHA-256 code verify uses, over the whole file as one message:
    // what hashing alone costs here, without the per-line work.
    let whole = best_of(runs, || {
        let mut f = std::fs::File::open(&log.path)?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        std::hint::black_box(h.finalize());
        Ok(())
    })?;
    let ratio = verify.as_secs_f64() / sum.as_secs_f64();
    let rps = n as f64 / verify.as_secs_f64();

    eprintln!("audit: {appends_n} appends with fsync, local only and local + sink");
    // The first append of a process walks the whole chain; later ones skip
    // that while the files' stamps show nobody else wrote since.
    let (first, local) = appends(&log, appends_n)?;
    let sink_dir = dir.0.join("sink");
    std::fs::create_dir_all(&sink_dir)?;
    let with_sink = Log::new(&state, "bench", Some(&sink_dir));
    let sink = with_sink.sink.as_ref().expect("sink path");
    std::fs::copy(&log.path, sink)?;
    std::fs::File::open(sink)?.sync_all()?;
    let (first_sink, mirrored) = appends(&with_sink, appends_n)?;
    with_sink.verify()?;

    let mb = size as f64 / 1e6;
    let body = format!(
        "Method: a synthetic chain of {n} realistic records ({mb:.0} MB, {:.0} bytes a line) in the \
temp directory, page cache warm. `sha256sum` (coreutils, one process over the whole file) and \
`Log::verify` (the code behind `cargo xtask audit verify`: shared lock, stream, scan each line for \
the canonical shape, SHA-256 it, check `prev` and `seq`) each take the best of {runs} runs in the \
same process run. Appends: {appends_n} `Log::append` calls on that chain, each one write plus \
fsync of the file (plus the same for the sink copy in the second row). The first append of a \
process walks the whole chain (and compares the sink) and is shown on its own; later ones skip \
the walk while the files' size, mtime and ctime show nobody else wrote since (a concurrent writer \
sends the next append back to the full walk).\n\n\
| measure | value |\n|---|---|\n\
| records (bytes) | {n} ({mb:.1} MB) |\n\
| sha256sum over the file | {:.3} s ({:.0} MB/s) |\n\
| audit verify | {:.3} s ({:.2} M records/s, {:.0} MB/s) |\n\
| verify / sha256sum | {ratio:.2}x |\n\
| SHA-256 of the whole file, in process (the `sha2` crate verify uses) | {:.3} s ({:.0} MB/s) |\n\
| verify / in-process SHA-256 | {:.2}x |\n\
| append p50 / p99, local only | {} / {} |\n\
| append p50 / p99, local + sink | {} / {} |\n\
| first append of a process (full verify + fsync), local / + sink | {} / {} |\n",
        size as f64 / n as f64,
        sum.as_secs_f64(),
        mb / sum.as_secs_f64(),
        verify.as_secs_f64(),
        rps / 1e6,
        mb / verify.as_secs_f64(),
        whole.as_secs_f64(),
        mb / whole.as_secs_f64(),
        verify.as_secs_f64() / whole.as_secs_f64(),
        ms(percentile(&local, 0.5)),
        ms(percentile(&local, 0.99)),
        ms(percentile(&mirrored, 0.5)),
        ms(percentile(&mirrored, 0.99)),
        ms(first),
        ms(first_sink),
    );
    Ok(Section {
        title: "Audit log".into(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_chains_verify() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::new(dir.path(), "bench", None);
        synthetic_chain(&log.path, "bench", 500).unwrap();
        assert_eq!(log.verify().unwrap().count, 500);
    }

    /// `cargo test -p xtask --lib bench::audit::tests::measure -- --ignored --nocapture`
    #[test]
    #[ignore = "a benchmark"]
    fn measure() {
        let quick = std::env::var_os("AUDIT_BENCH_FULL").is_none();
        println!("{}", run(quick).unwrap().body);
    }
}
