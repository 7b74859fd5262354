//! Deploy and rollback against doing the same steps by hand, side by side in
//! one run, on the testbed stack behind its proxy (real engine, local
//! registry, blue/green on compose).
//!
//! The hand procedure is what an operator would type for the same result,
//! as a shell script ([`HAND_DEPLOY`], [`HAND_ROLLBACK`]):
//! - deploy: `docker compose pull`; stop and remove the standby set; start
//!   the new set beside the serving one (`up -d --no-recreate --scale`,
//!   labelled with its slot); a `curl` loop every 100 ms on each new
//!   container's own address until `/health` shows the new version; one
//!   line to the proxy's runtime API socket (the new containers' addresses
//!   into the set's server slots, enabled, every other server drained);
//!   stop the old worker while the same drain time runs;
//! - rollback: start the previous set's worker; the same `curl` loop on the
//!   previous set; the switch back; stop the new worker; the drain.
//!
//! The tool does all of that plus preflight, chain verification, the lock,
//! start-if-absent for Redis and the proxy, the mode check in the gate, the
//! check that the proxy routes where it should, and the fsynced audit append.
//! Gate latency: a 2 ms prober records when the new version first answers
//! through the proxy; the figure is how much later a gate polling the same
//! URL returns. Runs alternate tool and hand, so drift on a noisy machine
//! hits both alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::bed::{ensure_image, Bed, DRAIN_SECS};
use super::Section;
use crate::cmd::{Command, Effect};
use crate::health::Gate;

/// Shared by both scripts: compose on the scratch project, the containers
/// of a slot (and service), and the `curl` gate on a slot's own addresses.
const HAND_LIB: &str = r#"set -eu
dc() { docker compose -p "$P" -f "$F" "$@"; }
ids() { docker ps "$@" --filter "label=com.docker.compose.project=$P" --filter "label=fetchml.slot=$SLOT"; }
gate() {
  for c in $(ids -q); do
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")
    port=8080  # the worker answers on 8081 (the compose file)
    docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$c" | grep -qx worker && port=8081
    until curl -fsS "http://$ip:$port/health" 2>/dev/null | grep -q "\"version\":\"$FETCHML_TAG\""; do sleep 0.1; done
  done
}
# One line to HAProxy's runtime API (perl: its core IO::Socket::UNIX).
hap() { perl -MIO::Socket::UNIX -e '$s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "$ARGV[0]: $!\n"; print $s "$ARGV[1]\n"; print while <$s>' "$SOCK" "$1"; }
switch() {
  # Each set has its own server slots (blue s1-s5, green s6-s10, amber
  # s11-s15): the new containers' addresses go in and are enabled, then
  # every other enabled server is drained, in one line.
  case "$SLOT" in blue) n=0 ;; green) n=5 ;; *) n=10 ;; esac
  cmds="" mine=""
  for c in $(ids -q --filter label=com.docker.compose.service=api); do
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")
    n=$((n + 1)); mine="$mine s$n "
    cmds="$cmds set server fetchml-api/s$n addr $ip port 8080; set server fetchml-api/s$n state ready;"
  done
  for srv in $(hap "show stat" | awk -F, '$1 == "fetchml-api" && $2 != "FRONTEND" && $2 != "BACKEND" && $18 != "MAINT" && $18 != "DRAIN" { print $2 }'); do
    case "$mine" in *" $srv "*) ;; *) cmds="$cmds set server fetchml-api/$srv state drain;" ;; esac
  done
  hap "${cmds%;}" >/dev/null
  old=$(SLOT=$OLD ids -q --filter label=com.docker.compose.service=worker)
  # The drain runs from the switch while the old worker stops, as the tool does.
  if [ -n "$old" ]; then docker stop $old >/dev/null & fi
  sleep "$DRAIN"
  wait
}
"#;

/// The blue/green deploy by hand: `SLOT` is the new set's, `OLD` the
/// serving one's; every other set goes first (stopped, then removed).
const HAND_DEPLOY: &str = r#"dc pull --quiet api worker
for s in blue green amber; do
  if [ "$s" = "$OLD" ]; then continue; fi
  stale=$(SLOT=$s ids -aq)
  if [ -n "$stale" ]; then docker stop $stale >/dev/null; docker container rm $stale >/dev/null; fi
done
FETCHML_SLOT=$SLOT dc up -d --no-deps --no-build --no-recreate --scale api=2 --scale worker=2 api worker
gate
switch
"#;

/// The rollback to the warm set `SLOT` by hand.
const HAND_ROLLBACK: &str = r#"docker start $(ids -aq --filter label=com.docker.compose.service=worker) >/dev/null
gate
switch
"#;

impl Bed {
    /// Runs a hand procedure script with the scratch project's variables.
    fn hand(&self, script: &str, tag: &str, slot: &str, old: &str) -> Result<()> {
        let c = Command::new("bash", Effect::Mutating)
            .arg("-c")
            .arg(format!("{HAND_LIB}{script}"))
            .env("P", &self.project)
            .env("F", self.file.display().to_string())
            .env("FETCHML_TAG", tag)
            .env("SLOT", slot)
            .env("OLD", old)
            .env(
                "SOCK",
                self.dir
                    .join("proxy-admin")
                    .join(crate::engine::proxy::SOCKET)
                    .display()
                    .to_string(),
            )
            .env("DRAIN", DRAIN_SECS.to_string())
            .env("API_PORT", self.port.to_string())
            .env("PROXY_ADMIN_PORT", self.admin.to_string())
            .env("COMPLIANCE_MODE", "standard")
            .timeout(120);
        crate::cmd::run(&c, false)
            .map(drop)
            .context("the hand procedure failed")
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

/// Milliseconds from the first ok answer through the proxy (a 2 ms prober)
/// to a gate polling the same URL returning; the switch is made by hand
/// while both wait. `blue` serves `old`; green, on `tag`, is started first.
fn gate_latency(bed: &Bed, tag: &str) -> Result<f64> {
    let first_ok: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("http://127.0.0.1:{}/health", bed.port);
    let gate = Gate {
        urls: vec![url.clone()],
        version: tag.into(),
        compliance_mode: Some("standard".into()),
        contract: Default::default(),
        timeout_secs: 30,
        images: None,
        logs: vec![],
    };
    let prober = {
        let (first_ok, stop, url, gate) = (first_ok.clone(), stop.clone(), url, gate.clone());
        std::thread::spawn(move || {
            let c = crate::health::client();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(a) = crate::health::probe(&c, &url) {
                    if crate::health::judge(&a, &gate).is_ok() {
                        first_ok.lock().unwrap().get_or_insert_with(Instant::now);
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let gate = std::thread::spawn(move || crate::health::wait(&gate).map(|_| Instant::now()));
    bed.hand(HAND_DEPLOY, tag, "green", "blue")?;
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

/// Cargo's own start before `cargo xtask` runs the binary: the median of
/// three `cargo xtask --version`, in milliseconds.
pub fn cargo_start_ms() -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..3 {
        let c = Command::new("cargo", Effect::ReadOnly)
            .args(["xtask", "--version"])
            .cwd(crate::repo::workspace_root())
            .timeout(120);
        v.push(timed(|| crate::cmd::run(&c, false).map(drop))?);
    }
    Ok(median(&mut v))
}

pub fn run(quick: bool) -> Result<Section> {
    let n = if quick { 2 } else { 5 };
    let base = crate::repo::head_tag().unwrap_or_else(|_| "sha-000000000000".into());
    let [a, b, c] = ["a", "b", "c"].map(|t| format!("{base}-bench-{t}"));
    for t in [&a, &b, &c] {
        ensure_image(t, false)?;
    }
    let bed = Bed::new("deploy", "compose")?;
    // a serves in the blue set from here on; each round ends the same way.
    bed.xtask(&["deploy-staging", "--tag", &a])?;
    let (mut tool_d, mut hand_d, mut tool_r, mut hand_r, mut lat) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        // The tool deploys b and rolls back to a; by hand, c and back to a;
        // then the gate latency, on c. Every deploy finds a version the
        // standby set does not hold, so tool and hand both take the full
        // path (discard the standby, start, gate, switch, drain).
        tool_d.push(timed(|| bed.xtask(&["deploy-staging", "--tag", &b]))?);
        tool_r.push(timed(|| {
            bed.xtask(&["rollback", "staging", "--reason", "bench"])
        })?);
        hand_d.push(timed(|| bed.hand(HAND_DEPLOY, &c, "green", "blue"))?);
        hand_r.push(timed(|| bed.hand(HAND_ROLLBACK, &a, "blue", "green"))?);
        lat.push(gate_latency(&bed, &c)?);
        bed.hand(HAND_ROLLBACK, &a, "blue", "green")?;
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
        "Method: the testbed stack (api, worker, Redis, the proxy) on the local engine and \
registry, blue/green on compose, {n} rounds; each round deploys v2 and rolls back to v1 with the \
tool (the dev-build binary), then does the same by hand, so both see the same machine state. The \
hand procedure is the same blue/green steps typed as a shell script: `docker compose pull`; stop and \
remove the standby set; `up -d --no-recreate --scale` of the new set; a `curl` loop every 100 ms on \
each new container's own address; one line to the proxy's runtime API socket; stop the old worker; the same \
{DRAIN_SECS} s drain (the rollback: start the old worker, the `curl` loop, the switch back, stop \
the new worker, the drain). Medians in milliseconds. The tool's figure includes what the hand \
procedure skips: preflight, chain verification, the lock, start-if-absent for Redis and the proxy, \
the mode check in the gate, the routing checks, and the fsynced audit append. Gate latency: a 2 ms \
prober records when the new version first answers through the proxy; the figure is how much later \
a gate polling the same URL returns.\n\n\
| measure | tool (ms) | hand (ms) | tool / hand |\n|---|---:|---:|---:|\n\
| deploy-staging, v1 to v2 | {td:.0} | {hd:.0} | {:.2} |\n\
| rollback to the warm previous set, v2 to v1 | {tr:.0} | {hr:.0} | {:.2} |\n\n\
| gate notice latency | median {l:.1} ms | max {lmax:.1} ms | goal <= 100 ms |\n|---|---:|---:|---|\n",
        td / hd,
        tr / hr
    );
    Ok(Section {
        title: "Deploy and rollback against the hand procedure".into(),
        body,
    })
}
