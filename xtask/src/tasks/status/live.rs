//! `status`'s live checks: what the health endpoints and the proxy say
//! now, beside what the chain and the engine say.
//!
//! - The serving version is probed at the environment's health URLs with
//!   the gate's own contract (`[env.NAME.health]`, docs/health.md: by
//!   default status `ok`, the version that runs, the environment's
//!   compliance mode; under plain 2xx, the containers' images too), once,
//!   with a short limit.
//! - Blue/green: each standby set (no traffic) is probed on its own
//!   containers' addresses against its own version, and the proxy must
//!   answer with a route for each HTTP service.
//!
//! All probes run at once, so the checks take about one probe's time
//! (at most [`crate::health::client`]'s 2 s limit). A failing serving
//! version or a proxy that is down is `status`'s exit 8; a standby that
//! fails is shown, not an exit (it serves nothing).

use serde::Serialize;

use crate::config::Env;
use crate::engine::slots::{Container, Slot};
use crate::engine::Target;
use crate::health::{judge, probe, prove_images, Gate};
use crate::rollout::{standby_with, Now};

/// One URL probed once.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub url: String,
    pub ok: bool,
    /// `ok`, or why the answer did not count.
    pub detail: String,
}

/// The serving version at the environment's health URLs.
#[derive(Debug, Clone, Serialize)]
pub struct Serving {
    pub version: String,
    pub compliance_mode: Option<String>,
    pub healthy: bool,
    pub probes: Vec<Probe>,
}

/// A set without traffic (blue/green): what a rollback to its version
/// switches to.
#[derive(Debug, Clone, Serialize)]
pub struct Standby {
    pub slot: Slot,
    /// Its version, in full.
    pub version: String,
    pub containers: Vec<Container>,
    /// `null` when none of its HTTP containers runs (a stopped standby).
    pub healthy: Option<bool>,
    pub probes: Vec<Probe>,
    /// Is it what `rollback ENV` would switch to?
    pub rollback_target: bool,
}

/// The proxy, blue/green only.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyCheck {
    pub up: bool,
    /// `a route for each of api, ...`, or why not.
    pub detail: String,
}

/// Everything the live checks found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Live {
    pub serving: Option<Serving>,
    pub standby: Vec<Standby>,
    pub proxy: Option<ProxyCheck>,
    /// The failing check that makes `status` exit 8, in one line.
    pub failed: Option<String>,
    pub took_ms: u64,
}

fn probe_all(urls: &[String], gate: &Gate) -> Vec<Probe> {
    let client = crate::health::client();
    let mut probes: Vec<Probe> = std::thread::scope(|s| {
        let hs: Vec<_> = urls
            .iter()
            .map(|u| {
                let c = &client;
                s.spawn(move || {
                    let r = probe(c, u).and_then(|h| judge(&h, gate));
                    Probe {
                        url: u.clone(),
                        ok: r.is_ok(),
                        detail: r.err().unwrap_or_else(|| "ok".into()),
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("a probe thread does not panic"))
            .collect()
    });
    // Plain 2xx: the body proved no version; the containers' images do.
    if let Some(p) = gate.images.as_ref().filter(|_| probes.iter().all(|p| p.ok)) {
        if let Err(why) = prove_images(p) {
            probes.push(Probe {
                url: "image check".into(),
                ok: false,
                detail: why,
            });
        }
    }
    probes
}

/// The gate's contract for `version` at `urls`, probed once; `target` is
/// on that version (pinned where its digest is known).
fn gate(urls: Vec<String>, version: &str, env: &Env, target: Option<&Target>) -> Gate {
    let g = match target {
        Some(t) => crate::rollout::gate_for(t, env, 2),
        None => Gate {
            urls: Vec::new(),
            version: version.into(),
            compliance_mode: env.compliance_mode.clone(),
            contract: Box::new(env.health.clone()),
            timeout_secs: 2,
            images: None,
            logs: Vec::new(),
        },
    };
    Gate {
        urls,
        logs: Vec::new(),
        ..g
    }
}

/// The standby sets of `now` (blue/green), probed on their own addresses.
fn standby(target: &Target, env: &Env, now: &Now, rollback: Option<&str>) -> Vec<Standby> {
    let all = &now.engine.containers;
    let Some(live) = now.engine.live else {
        return Vec::new();
    };
    let mut slots: Vec<Slot> = all.iter().map(|c| c.slot).filter(|s| *s != live).collect();
    slots.sort();
    slots.dedup();
    std::thread::scope(|s| {
        let hs: Vec<_> = slots
            .into_iter()
            .map(|slot| {
                s.spawn(move || {
                    let containers: Vec<Container> =
                        all.iter().filter(|c| c.slot == slot).cloned().collect();
                    let mut tags: Vec<&str> = containers.iter().map(|c| c.tag.as_str()).collect();
                    tags.sort();
                    tags.dedup();
                    let version = tags.join(" ");
                    let set = target
                        .on_tag(&version)
                        .set(slot)
                        .known(containers.clone())
                        .part(true);
                    let http_runs = containers
                        .iter()
                        .any(|c| c.running && set.services().contains(&c.service));
                    let probes = match set.probed() {
                        Ok((urls, _)) => {
                            let g = gate(urls, &version, env, Some(&target.on_tag(&version)));
                            // Its HTTP containers only: a warm standby's
                            // workers are stopped by design.
                            let g = Gate {
                                images: g
                                    .images
                                    .as_ref()
                                    .map(|p| p.of_set(slot.filter(), set.services())),
                                ..g
                            };
                            probe_all(&g.urls, &g)
                        }
                        Err(e) if http_runs => vec![Probe {
                            url: String::new(),
                            ok: false,
                            detail: format!("{e:#}"),
                        }],
                        Err(_) => Vec::new(),
                    };
                    Standby {
                        slot,
                        healthy: (!probes.is_empty()).then(|| probes.iter().all(|p| p.ok)),
                        probes,
                        rollback_target: rollback == Some(version.as_str())
                            && standby_with(target, now, &version) == Some(slot),
                        version,
                        containers,
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("a standby check does not panic"))
            .collect()
    })
}

/// Runs the live checks of `env`: the serving version (`serving`: what
/// the engine runs, else the chain's current; `None`: nothing deployed),
/// and on blue/green the standby sets and the proxy. `target` and `now`
/// are `None` when the engine could not be asked.
pub fn check(
    env: &Env,
    target: Option<&Target>,
    now: Option<&Now>,
    serving: Option<&str>,
    rollback: Option<&str>,
) -> Live {
    let start = std::time::Instant::now();
    let blue_green = target.filter(|t| t.blue_green());
    let (serving, standby, proxy) = std::thread::scope(|s| {
        let proxy = blue_green.map(|t| {
            s.spawn(move || match t.proxy_ready(0) {
                Ok(()) => ProxyCheck {
                    up: true,
                    detail: format!(
                        "a route for each of {}",
                        t.proxy()
                            .map(|p| p.routes.keys().cloned().collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    ),
                },
                Err(e) => ProxyCheck {
                    up: false,
                    detail: format!("{e:#}"),
                },
            })
        });
        let standby = blue_green
            .zip(now)
            .map(|(t, n)| s.spawn(move || standby(t, env, n, rollback)));
        let serving = serving.map(|v| {
            // Plain 2xx: the serving set's containers, on the digests the
            // chain recorded for the version.
            let on = target.map(|t| {
                let t = t.on_tag(v);
                match now
                    .filter(|n| n.chain.as_deref() == Some(v))
                    .and_then(Now::chain_ref)
                {
                    Some(r) => t.pinned_ref(Some(r)),
                    None => t,
                }
            });
            let mut g = gate(env.health_urls.clone(), v, env, on.as_ref());
            if let (Some(p), Some(live)) = (g.images.as_mut(), now.and_then(|n| n.engine.live)) {
                p.filters.extend(live.filter());
            }
            let probes = probe_all(&g.urls, &g);
            Serving {
                version: v.into(),
                compliance_mode: env.compliance_mode.clone(),
                healthy: probes.iter().all(|p| p.ok),
                probes,
            }
        });
        (
            serving,
            standby.map_or_else(Vec::new, |h| {
                h.join().expect("the standby check does not panic")
            }),
            proxy.map(|h| h.join().expect("the proxy check does not panic")),
        )
    });
    let failed = match (&proxy, &serving) {
        (Some(p), _) if !p.up => Some(format!("proxy check: the proxy is down: {}", p.detail)),
        (_, Some(s)) if !s.healthy => {
            let bad = s.probes.iter().find(|p| !p.ok);
            Some(format!(
                "health check: the serving version {} is unhealthy: {}",
                s.version,
                bad.map(|p| format!("{}: {}", p.url, p.detail))
                    .unwrap_or_default()
            ))
        }
        _ => None,
    };
    Live {
        serving,
        standby,
        proxy,
        failed,
        took_ms: start.elapsed().as_millis() as u64,
    }
}

impl Standby {
    /// `sha-… (the blue set: api-1 warm, worker-1 stopped; health ok)`.
    pub fn describe(&self) -> String {
        let cs: Vec<String> = self
            .containers
            .iter()
            .map(|c| format!("{} {}", c.name, if c.running { "warm" } else { "stopped" }))
            .collect();
        let health = match (self.healthy, self.probes.iter().find(|p| !p.ok)) {
            (None, _) => "not probed: no HTTP container runs".to_string(),
            (Some(true), _) => "health ok".to_string(),
            (Some(false), Some(p)) => format!("health FAILING: {}", p.detail),
            (Some(false), None) => "health FAILING".to_string(),
        };
        format!(
            "{} (the {} set: {}; {health})",
            self.version,
            self.slot.name(),
            cs.join(", ")
        )
    }
}
