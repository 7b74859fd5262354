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

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::Section;
use crate::plan::Gate;

struct Bed {
    dir: PathBuf,
    config: PathBuf,
    project: String,
    compose: PathBuf,
    port: u16,
    wport: u16,
}

impl Bed {
    fn new() -> Result<Bed> {
        let dir = std::env::temp_dir().join(format!("xtask-bench-deploy-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let [port, wport] = crate::free_ports(2)?[..] else {
            unreachable!("asked for two ports")
        };
        let project = format!("xtbench-{}", std::process::id());
        let compose = crate::workspace_root().join("deployments/testbed/docker-compose.yml");
        let config = dir.join("deploy.toml");
        std::fs::write(
            &config,
            format!(
                r#"[env.staging]
project = "{project}"
compose_files = ["{}"]
app_services = ["api", "worker"]
stateful_services = ["redis"]
images = {{ api = "127.0.0.1:5000/fetchml/testbed", worker = "127.0.0.1:5000/fetchml/testbed" }}
health_urls = ["http://127.0.0.1:{port}/health", "http://127.0.0.1:{wport}/health"]
compliance_mode = "standard"
health_timeout_secs = 30
vars = {{ API_PORT = "{port}", WORKER_PORT = "{wport}", COMPLIANCE_MODE = "standard" }}
"#,
                compose.display()
            ),
        )?;
        Ok(Bed {
            dir,
            config,
            project,
            compose,
            port,
            wport,
        })
    }

    fn xtask(&self, args: &[&str]) -> Result<()> {
        let exe = std::env::current_exe()?;
        let o = Command::new(exe)
            .arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(args)
            .env("USER", "bench")
            .output()?;
        if !o.status.success() {
            bail!(
                "xtask {args:?} failed: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        Ok(())
    }

    fn compose(&self, tag: &str, args: &[&str]) -> Result<()> {
        let o = Command::new("docker")
            .args(["compose", "-p", &self.project, "-f"])
            .arg(&self.compose)
            .args(args)
            .env("FETCHML_TAG", tag)
            .env("API_PORT", self.port.to_string())
            .env("WORKER_PORT", self.wport.to_string())
            .env("COMPLIANCE_MODE", "standard")
            .output()?;
        if !o.status.success() {
            bail!(
                "docker compose {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        Ok(())
    }

    /// The hand procedure's gate: curl every 100 ms until both URLs show `tag`.
    fn curl_loop(&self, tag: &str) -> Result<()> {
        let start = Instant::now();
        for port in [self.port, self.wport] {
            loop {
                let o = Command::new("curl")
                    .args(["-fsS", &format!("http://127.0.0.1:{port}/health")])
                    .output()?;
                if o.status.success()
                    && String::from_utf8_lossy(&o.stdout)
                        .contains(&format!("\"version\":\"{tag}\""))
                {
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

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = self.compose("x", &["down", "-v", "--timeout", "2"]);
        let _ = std::fs::remove_dir_all(&self.dir);
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

fn build(tag: &str) -> Result<()> {
    let exe = std::env::current_exe()?;
    let o = Command::new(exe)
        .args([
            "--config",
            "deployments/testbed/deploy.toml",
            "build",
            "--push",
            "--tag",
            tag,
        ])
        .current_dir(crate::workspace_root())
        .output()?;
    if !o.status.success() {
        bail!("building {tag}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
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
    let base = crate::head_tag().unwrap_or_else(|_| "sha-000000000000".into());
    let (a, b) = (format!("{base}-bench-a"), format!("{base}-bench-b"));
    build(&a)?;
    build(&b)?;
    let bed = Bed::new()?;
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
