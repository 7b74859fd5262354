//! Deploy and rollback against doing the same steps by hand, side by side in
//! one run, on the testbed stack (real engine, local registry).
//!
//! - deploy: `cargo xtask deploy-staging` (preflight, chain check, lock,
//!   pull, start-if-absent, recreate, gate, audit append) against the hand
//!   procedure `docker compose pull`, `up -d --no-deps`, and a `curl` loop
//!   every 100 ms until `/health` shows the new version;
//! - recovery: `cargo xtask rollback staging` (image check, chain check,
//!   lock, recreate, gate, audit append) against `up -d --no-deps` with the
//!   previous tag plus the same `curl` loop;
//! - gate latency: how long after the service first answers ok (seen by a
//!   2 ms prober) the gate returns.
//!
//! Runs alternate tool and hand, so drift on a noisy machine hits both alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::bed::{ensure_image, Bed};
use super::Section;
use crate::cmd::{Command, Effect};
use crate::health::Gate;

/// The hand procedure, on the same scratch environment.
impl Bed {
    /// The hand procedure's gate: curl every 100 ms until both URLs show `tag`.
    fn curl_loop(&self, tag: &str) -> Result<()> {
        let start = Instant::now();
        for port in [self.port, self.wport] {
            loop {
                let curl = Command::new("curl", Effect::ReadOnly)
                    .args(["-fsS", &format!("http://127.0.0.1:{port}/health")])
                    .timeout(5);
                let o = crate::cmd::output(&curl)?;
                if o.success && o.stdout.contains(&format!("\"version\":\"{tag}\"")) {
                    break;
                }
                if start.elapsed() > Duration::from_secs(30) {
                    bail!("hand procedure: {tag} never answered");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    fn hand_deploy(&self, tag: &str) -> Result<()> {
        self.compose(tag, &["pull", "--quiet", "api", "worker"])?;
        self.compose(tag, &["up", "-d", "--no-deps", "api", "worker"])?;
        self.curl_loop(tag)
    }

    fn hand_rollback(&self, tag: &str) -> Result<()> {
        self.compose(tag, &["up", "-d", "--no-deps", "api", "worker"])?;
        self.curl_loop(tag)
    }
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds from the first ok answer (a 2 ms prober) to the gate returning.
fn gate_latency(bed: &Bed, tag: &str) -> Result<f64> {
    let first_ok: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("http://127.0.0.1:{}/health", bed.port);
    let prober = {
        let (first_ok, stop, url, tag) =
            (first_ok.clone(), stop.clone(), url.clone(), tag.to_string());
        std::thread::spawn(move || {
            let c = crate::health::client();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(h) = crate::health::probe(&c, &url) {
                    if h.status == "ok" && h.version == tag {
                        first_ok.lock().unwrap().get_or_insert_with(Instant::now);
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // The gate polls from before the recreate, as in a deploy, so the new
    // version turns ok while the gate is already waiting for it.
    let gate = Gate {
        urls: vec![url],
        version: tag.into(),
        compliance_mode: "standard".into(),
        timeout_secs: 30,
    };
    let gate = std::thread::spawn(move || crate::health::wait(&gate).map(|_| Instant::now()));
    bed.compose(tag, &["up", "-d", "--no-deps", "api"])?;
    let noticed = gate
        .join()
        .map_err(|_| anyhow::anyhow!("the gate thread panicked"))??;
    stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    let first = first_ok
        .lock()
        .unwrap()
        .context("the prober never saw ok")?;
    Ok(noticed.saturating_duration_since(first).as_secs_f64() * 1000.0)
}

pub fn run(quick: bool) -> Result<Section> {
    let n = if quick { 2 } else { 5 };
    let base = crate::repo::head_tag().unwrap_or_else(|_| "sha-000000000000".into());
    let (a, b) = (format!("{base}-bench-a"), format!("{base}-bench-b"));
    ensure_image(&a)?;
    ensure_image(&b)?;
    let bed = Bed::new("deploy", "compose")?;
    bed.xtask(&["deploy-staging", "--tag", &a])?;
    let (mut tool_d, mut hand_d, mut tool_r, mut hand_r, mut lat) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        // a runs; deploy b (tool), roll back to a (tool); deploy b (hand), back to a (hand).
        tool_d.push(timed(|| bed.xtask(&["deploy-staging", "--tag", &b]))?);
        tool_r.push(timed(|| {
            bed.xtask(&["rollback", "staging", "--reason", "bench"])
        })?);
        hand_d.push(timed(|| bed.hand_deploy(&b))?);
        hand_r.push(timed(|| bed.hand_rollback(&a))?);
        lat.push(gate_latency(&bed, &b)?);
        bed.hand_rollback(&a)?;
    }
    let (td, hd, tr, hr) = (
        median(&mut tool_d),
        median(&mut hand_d),
        median(&mut tool_r),
        median(&mut hand_r),
    );
    let lmax = lat.iter().cloned().fold(0.0, f64::max);
    let l = median(&mut lat);
    let body = format!(
        "Method: the testbed stack (api, worker, Redis) on the local engine and registry, \
{n} rounds; each round deploys v2 and rolls back to v1 with the tool, then does the same by hand \
(`docker compose pull` + `up -d --no-deps` + a `curl` loop every 100 ms), so both see the same machine \
state. Medians in milliseconds. The tool's figure includes what the hand procedure skips: preflight, \
chain verification, the lock, start-if-absent for Redis, the version and compliance-mode gate on both \
services, and the fsynced audit append. Gate latency: a 2 ms prober records when the new version first \
answers ok; the figure is how much later the gate returns.\n\n\
| measure | tool (ms) | hand (ms) | tool / hand |\n|---|---:|---:|---:|\n\
| deploy-staging, v1 to v2 | {td:.0} | {hd:.0} | {:.2} |\n\
| time to recover (rollback), v2 to v1 | {tr:.0} | {hr:.0} | {:.2} |\n\n\
| gate notice latency | median {l:.1} ms | max {lmax:.1} ms | goal <= 100 ms |\n|---|---:|---:|---|\n",
        td / hd,
        tr / hr
    );
    Ok(Section {
        title: "Deploy and rollback against the hand procedure".into(),
        body,
    })
}
