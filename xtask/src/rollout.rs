//! What deploy and rollback share: the verified history they plan from,
//! the lock step, the audit record, the health gate, and the app steps that
//! put an environment on a tag. Tasks sit above this module and never import
//! each other; this module builds plan values and runs nothing.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::audit::{History, ImageRef, Log};
use crate::config::{EngineKind, Env, Pull};
use crate::engine::slots::{Container, Set, Slot};
use crate::engine::{Running, Target};
use crate::exit::{fail, Code};
use crate::health::Gate;
use crate::plan::{AppStep, Plan, RecordSpec, Refusal, Step};

/// The steps that put `target`'s app services on its tag: a recreate, and on
/// Swarm the wait until the update converged (or Swarm rolled it back).
pub fn put_on(target: &Target, env: &Env) -> Vec<AppStep> {
    let mut steps = vec![AppStep::Recreate {
        target: target.clone(),
    }];
    if target.engine() == EngineKind::Swarm {
        steps.push(AppStep::Converge {
            target: target.clone(),
            timeout_secs: converge_secs(env),
        });
    }
    steps
}

/// [`put_on`], then the health gate for the tag within `gate_secs`: all a
/// rollback or a recovery does to the stack.
pub fn switch_to(target: &Target, env: &Env, gate_secs: u64) -> Vec<AppStep> {
    let mut steps = put_on(target, env);
    steps.push(gate(target, env, gate_secs));
    steps
}

/// The chain of `env`, verified, as history. A broken chain refuses (exit 6)
/// unless `force`, in which case the break is shown as a planning fact.
pub fn verified_history(
    log: &Log,
    force: bool,
    plan: &mut Plan,
) -> Result<(History, Option<String>)> {
    match log.verify() {
        Ok(v) => {
            plan.fact("audit chain", format!("{} record(s), head {}", v.count, v.head), &log.path.display().to_string());
            Ok((History::new(log.records()?), Some(v.head)))
        }
        Err(e) if force => {
            plan.fact("audit chain", format!("DOES NOT VERIFY ({e:#}); proceeding because of --force"), &log.path.display().to_string());
            Ok((History::new(readable_records(log)), None))
        }
        Err(e) => Err(fail(
            Code::Verify,
            format!("{e:#}; investigate before deploying (or pass --force --reason TEXT, which is recorded)"),
        )),
    }
}

/// Every line of a broken chain that still parses as a record: the best
/// history there is when an operator forces past a break.
fn readable_records(log: &Log) -> Vec<crate::audit::Record> {
    std::fs::read(&log.path)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// The environment's deploy lock, next to its audit log; with the head the
/// plan was made from, so a plan gone stale while waiting is refused.
pub fn lock(env: &str, log: &Log, wait_secs: u64, task: &str, head: Option<String>) -> Step {
    Step::Lock {
        env: env.into(),
        path: log.path.with_file_name("deploy.lock"),
        wait_secs,
        task: task.into(),
        planned_head: head.map(|h| (log.path.clone(), h)),
    }
}

/// The audit record a deploy or rollback appends; a forced one says so in its reason.
#[allow(clippy::too_many_arguments)]
pub fn record(
    env_name: &str,
    env: &Env,
    log: &Log,
    action: &str,
    from: Option<ImageRef>,
    to: Option<ImageRef>,
    reason: &str,
    force: bool,
) -> RecordSpec {
    let (from, from_digest, from_digests) = from.map_or((None, None, Default::default()), |f| {
        (Some(f.tag), f.digest, f.digests)
    });
    let (to, to_digest, to_digests, to_local) = to
        .map_or((None, None, Default::default(), Default::default()), |t| {
            (Some(t.tag), t.digest, t.digests, t.local)
        });
    RecordSpec {
        env: env_name.into(),
        log: log.path.clone(),
        sink: log.sink.clone(),
        action: action.into(),
        from,
        to,
        from_digest,
        to_digest,
        from_digests,
        to_digests,
        to_local,
        reason: if force {
            format!("[forced] {reason}")
        } else {
            reason.into()
        },
        repository: env
            .app_services
            .first()
            .and_then(|s| env.images.get(s))
            .cloned(),
        force,
        sets_of: None,
        notify: env.notify.as_ref().map(|n| n.hook()),
    }
}

/// What `target`'s tag points to in the registry now, per repository: one
/// read-only look-up each, side by side, bounded by the look-up limit.
pub fn digests(target: &Target) -> Result<BTreeMap<String, String>> {
    let secs = target.limits().look_up_secs;
    let repos = target.repositories();
    std::thread::scope(|s| {
        let asked: Vec<_> = repos
            .iter()
            .map(|r| {
                let tag = target.tag();
                (
                    r,
                    s.spawn(move || crate::engine::registry::digest(r, tag, secs)),
                )
            })
            .collect();
        asked
            .into_iter()
            .map(|(r, h)| {
                let d = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the registry look-up panicked")))?;
                Ok((r.clone(), d))
            })
            .collect()
    })
}

/// What a deploy runs, per repository, by the environment's `pull`.
pub struct Resolved {
    /// Registry digests (the registry's, or the one this host's image was
    /// pulled or pushed with); `Err` when the registry could not say.
    pub pins: Result<BTreeMap<String, String>>,
    /// This host's image ID, for an image no registry digest names.
    pub local: BTreeMap<String, String>,
    /// `pull = "never"`: images this host lacks.
    pub absent: Vec<String>,
}

/// Resolves `target`'s tag once, before anything is touched (read-only):
/// `always` asks the registry; `missing` and `never` take an image this
/// host has as it is (its registry digest where it has one, else its image
/// ID), and `missing` asks the registry for the others.
pub fn resolve(target: &Target) -> Resolved {
    if target.pull() == Pull::Always {
        return Resolved {
            pins: digests(target),
            local: BTreeMap::new(),
            absent: Vec::new(),
        };
    }
    let secs = target.limits().look_up_secs;
    let tag = target.tag();
    // Per repository: this host's image ID and registry digest, if it has it.
    type Here = Option<(String, Option<String>)>;
    let found: Vec<(String, Here)> = std::thread::scope(|s| {
        let asked: Vec<_> = target
            .repositories()
            .into_iter()
            .map(|r| {
                s.spawn(move || {
                    let here = crate::engine::docker::local_image(&format!("{r}:{tag}"));
                    (r, here)
                })
            })
            .collect();
        asked.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let (mut pins, mut local, mut absent) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
    let mut failed = None;
    for (r, here) in found {
        match here {
            Some((_, Some(d))) => {
                pins.insert(r, d);
            }
            Some((id, None)) => {
                local.insert(r, id);
            }
            None if target.pull() == Pull::Never => absent.push(r),
            None => match crate::engine::registry::digest(&r, tag, secs) {
                Ok(d) => {
                    pins.insert(r, d);
                }
                Err(e) => failed = Some(e),
            },
        }
    }
    Resolved {
        pins: failed.map_or(Ok(pins), Err),
        local,
        absent,
    }
}

/// `pull = "never"` and an image this host lacks: refused before anything
/// is touched (nothing would pull it).
pub fn absent_check(target: &Target, absent: &[String]) -> Option<Step> {
    (!absent.is_empty()).then(|| Step::Require {
        refusal: Refusal::NotLocal,
        what: "the images on this host (pull = \"never\")".into(),
        missing: absent
            .iter()
            .map(|r| {
                format!(
                    "image {r}:{} (build it here, or set pull = \"missing\" to pull it)",
                    target.tag()
                )
            })
            .collect(),
        overridden: Vec::new(),
    })
}

/// `target` pinned to the digests looked up (shown as facts, so the dry
/// run shows what the real run will run); unpinned, with the reason, when
/// the registry could not say.
pub fn pin(
    target: &Target,
    looked_up: &Result<BTreeMap<String, String>>,
    plan: &mut Plan,
) -> Target {
    match looked_up {
        Ok(pins) => {
            let pinned = target.pinned_each(pins.clone());
            let source = match target.pull() {
                Pull::Always => "the registry, read-only",
                Pull::Missing => {
                    "this host's images (docker image inspect), else the registry; read-only"
                }
                Pull::Never => "this host's images (docker image inspect), read-only",
            };
            show_pins(&pinned, source, plan);
            pinned
        }
        Err(e) => {
            plan.fact(
                "digest",
                format!("unknown ({e:#}); the steps run the tag as the registry has it then"),
                "the registry",
            );
            target.clone()
        }
    }
}

/// The directory of the environment's state: its audit log's.
pub fn state_dir(log: &crate::audit::Log) -> &std::path::Path {
    log.path.parent().unwrap_or(std::path::Path::new("."))
}

/// Do two images of one tag name other bytes? Only a digest both name can
/// tell (a record older than digests names none).
pub fn other_bytes(a: &ImageRef, b: &ImageRef) -> bool {
    let differ = |x: &Option<String>, y: &Option<String>| x.is_some() && y.is_some() && x != y;
    differ(&a.digest, &b.digest)
        || a.digests
            .iter()
            .any(|(s, d)| b.digests.get(s).is_some_and(|e| e != d))
}

/// One fact per app service: the digest it runs, and the override file
/// that pins it (rendered when the first step that reads it runs).
pub fn show_pins(target: &Target, source: &str, plan: &mut Plan) {
    let file = target.pins_file().map(|(p, _)| p.display().to_string());
    let local = target.service_local();
    for s in target.services() {
        let value = match (target.service_digests().get(s), local.get(s)) {
            (Some(d), _) => format!("{s} runs {}:{}@{d}", target.image_of(s), target.tag()),
            (None, Some(id)) => format!(
                "{s} runs {}:{} as this host has it, image {id} (no registry digest names it; pull = \"{}\"): the record names this image ID",
                target.image_of(s),
                target.tag(),
                target.pull().name()
            ),
            (None, None) => format!(
                "{s} runs {}:{} as the registry has it then (no digest known)",
                target.image_of(s),
                target.tag()
            ),
        };
        plan.fact("digest", value, source);
    }
    if let Some(f) = file {
        plan.fact(
            "pinned by",
            format!("{f} (services.<app>.image; mode 0600, passed after the compose files)"),
            "rendered by the tool",
        );
    }
}

/// The gate for `target`'s tag on an environment; when it fails, the last
/// log lines of the target's app services are shown.
pub fn gate(target: &Target, env: &Env, timeout_secs: u64) -> AppStep {
    AppStep::HealthGate(contract(target, env, timeout_secs))
}

/// The gate for `target`'s tag as a value (for `status`'s one-off probe).
pub fn gate_for(target: &Target, env: &Env, timeout_secs: u64) -> Gate {
    contract(target, env, timeout_secs)
}

/// What the gate for `target`'s tag requires, at the environment's URLs:
/// the environment's contract, and under a plain-2xx one the images the
/// target resolved (the body proves no version).
fn contract(target: &Target, env: &Env, timeout_secs: u64) -> Gate {
    let images = (env.health.contract == crate::config::ContractKind::Plain2xx).then(|| {
        let (filters, service_label) = match target.engine() {
            EngineKind::Compose => (
                vec![format!(
                    "label=com.docker.compose.project={}",
                    target.project()
                )],
                "com.docker.compose.service",
            ),
            EngineKind::Swarm => (
                vec![format!(
                    "label=com.docker.stack.namespace={}",
                    target.project()
                )],
                "com.docker.swarm.service.name",
            ),
        };
        Box::new(crate::health::ImageProof {
            filters,
            service_label: service_label.into(),
            want: target
                .services()
                .iter()
                .filter_map(|s| {
                    let repo = env.images.get(s)?;
                    Some((target.service_name(s), target.image_ref(repo)))
                })
                .collect(),
            look_up_secs: target.limits().look_up_secs,
        })
    });
    Gate {
        urls: env.health_urls.clone(),
        version: target.tag().into(),
        compliance_mode: env.compliance_mode.clone(),
        contract: Box::new(env.health.clone()),
        timeout_secs,
        images,
        logs: target.logs_commands(crate::health::LOG_LINES),
    }
}

/// How long a Swarm update may take to settle: the new tasks' health, and,
/// when they fail, Swarm's own rollback (which waits on its scheduler; about
/// 80s for the testbed on one node). Compose has no such step.
pub fn converge_secs(env: &Env) -> u64 {
    env.health_timeout_secs + env.rollback_timeout_secs + 90
}

/// What runs now: the engine's report, reconciled with the chain. After a
/// `kill -9`, a hand-run `docker compose up` or a half-finished recreate the
/// two disagree, and the engine is the fact.
#[derive(Debug, Clone)]
pub struct Now {
    /// The chain's current version (last successful deploy, promote or rollback).
    pub chain: Option<String>,
    /// Its image as the chain recorded it (digests where it named them).
    chain_ref: Option<ImageRef>,
    /// Are the app services' images in several repositories (so each has
    /// its own digest)?
    several: bool,
    pub engine: Running,
    apps: Vec<String>,
    /// Why the engine could not be asked, if it could not.
    pub unknown: Option<String>,
    /// The version the designated standby set holds: the default rollback
    /// target. Any other set without traffic is a leftover.
    pub standby: Option<String>,
}

impl Now {
    /// Looks up what `target`'s app services run (read-only); `Err` says
    /// why the engine could not be asked, and the chain alone is known.
    pub fn of(target: &Target, history: &History) -> (Now, Result<()>) {
        let engine = target.running();
        let mut now = Now {
            chain: history.current().map(str::to_string),
            chain_ref: history.current_ref().cloned(),
            several: target.repositories().len() > 1,
            engine: engine.as_ref().cloned().unwrap_or_default(),
            apps: target.services().to_vec(),
            unknown: engine.as_ref().err().map(|e| format!("{e:#}")),
            standby: None,
        };
        now.standby = default_target(history, &now);
        (now, engine.map(drop))
    }

    /// What the chain recorded for its current version (tag and digests), if any.
    pub fn chain_ref(&self) -> Option<&ImageRef> {
        self.chain_ref.as_ref()
    }

    /// A `Now` made by hand, for plan tests.
    #[cfg(test)]
    pub fn for_test(chain: Option<&str>, engine: Running, apps: &[&str]) -> Now {
        Now {
            chain: chain.map(Into::into),
            chain_ref: None,
            several: false,
            engine,
            apps: apps.iter().map(|a| a.to_string()).collect(),
            unknown: None,
            standby: None,
        }
    }

    /// The same, with `tag` as the standby's version (plan tests).
    #[cfg(test)]
    pub fn with_standby(self, tag: &str) -> Now {
        Now {
            standby: Some(tag.into()),
            ..self
        }
    }

    /// [`Now::of`], noting what runs, and any drift, as planning facts.
    pub fn look(target: &Target, history: &History, plan: &mut Plan) -> Now {
        let (now, asked) = Now::of(target, history);
        match &asked {
            Ok(()) => plan.fact(
                "running now",
                now.engine.describe(&now.apps),
                "the engine (docker ps / service ls)",
            ),
            // Preflight already refused an unreachable daemon on a real run;
            // a dry run without one plans from the chain alone.
            Err(e) => {
                plan.fact(
                    "running now",
                    format!("unknown ({e:#}); planning from the audit chain"),
                    "the engine",
                );
                return now;
            }
        }
        if let Some(d) = now.drift() {
            plan.fact("DRIFT", d, "the engine against the audit chain");
        }
        now
    }

    /// What the engine reports, in words (`api=sha-1, worker=sha-1`).
    pub fn describe(&self) -> String {
        self.engine.describe(&self.apps)
    }

    /// The one tag every app service runs, per the engine (none when it
    /// shows an image ID: a tag re-pushed under a running container).
    pub fn running(&self) -> Option<&str> {
        self.engine.tag(&self.apps).filter(|t| !t.is_empty())
    }

    /// The version serving now: the engine's, where it names one; else the chain's.
    pub fn serving(&self) -> Option<&str> {
        self.running().or(self.chain.as_deref())
    }

    /// [`Now::serving`] with its digest: the one the engine's image
    /// reference pins, else the chain's record of that version (the engine
    /// showed only an image ID, or the tag alone).
    pub fn serving_ref(&self) -> Option<ImageRef> {
        let tag = self.serving()?.to_string();
        let chain = self
            .chain_ref
            .as_ref()
            .filter(|_| self.chain.as_deref() == Some(tag.as_str()));
        let of = |s: &String| {
            self.running()
                .and_then(|_| self.engine.digest(s))
                .or_else(|| self.chain_digest_of(chain, s))
                .map(str::to_string)
        };
        let digests = match self.several {
            true => self
                .apps
                .iter()
                .filter_map(|s| Some((s.clone(), of(s)?)))
                .collect(),
            false => Default::default(),
        };
        Some(ImageRef {
            digests,
            ..ImageRef::new(tag, self.apps.first().and_then(of))
        })
    }

    /// The digest `chain` names for service `s`: its own, or the record's
    /// one digest where that covers it (one repository, or the first service).
    fn chain_digest_of<'a>(&self, chain: Option<&'a ImageRef>, s: &str) -> Option<&'a str> {
        let c = chain?;
        match c.digests.get(s) {
            Some(d) => Some(d),
            None if c.digests.is_empty()
                && (!self.several || self.apps.first().map(String::as_str) == Some(s)) =>
            {
                c.digest.as_deref()
            }
            None => None,
        }
    }

    /// How the engine and the chain disagree, if they do.
    pub fn drift(&self) -> Option<String> {
        let chain = self.chain.as_deref().unwrap_or("nothing");
        // The first service whose digest differs from the chain's record.
        let moved = self.apps.iter().find_map(|s| {
            let e = self.engine.digest(s)?;
            let c = self.chain_digest_of(self.chain_ref.as_ref(), s)?;
            (e != c).then_some((s, c, e))
        });
        match (self.running(), self.engine.is_empty()) {
            // The same tag with other bytes (re-pushed, then run by hand).
            (Some(r), _) if Some(r) == self.chain.as_deref() && moved.is_some() => {
                let (s, c, e) = moved?;
                let which = if self.several {
                    format!(" for {s}")
                } else {
                    String::new()
                };
                Some(format!(
                    "the audit chain says {r}@{} runs{which}; the engine reports {r}@{}",
                    crate::engine::registry::short(c),
                    crate::engine::registry::short(e)
                ))
            }
            (Some(r), _) if Some(r) == self.chain.as_deref() => None,
            (_, true) if self.chain.is_none() => None,
            _ => Some(format!(
                "the audit chain says {chain} runs; the engine reports {}",
                self.engine.describe(&self.apps)
            )),
        }
    }
}

/// Refuses a plan whose config contradicts itself: the health gate expects
/// one `compliance_mode` while the vars start the services in another, so
/// the gate could never pass (and the recovery's gate neither).
/// `None` when it agrees (nothing to show in the plan).
pub fn consistency(env_name: &str, env: &Env) -> Option<Step> {
    let mut missing = Vec::new();
    // A `${NAME}` value is compared as it will be read at run time.
    let started = env.vars.get("COMPLIANCE_MODE").map(|v| {
        crate::config::env_ref(v).map_or(v.clone(), |n| std::env::var(n).unwrap_or_default())
    });
    if let (Some(started), Some(mode)) = (started, &env.compliance_mode) {
        if &started != mode {
            missing.push(format!(
                "env.{env_name}.compliance_mode is {mode:?} but its vars start the services with COMPLIANCE_MODE={started:?}: the health gate could never pass; make them agree"
            ));
        }
    }
    (!missing.is_empty()).then(|| Step::Require {
        refusal: Refusal::Config,
        what: "a config that agrees with itself".into(),
        missing,
        overridden: Vec::new(),
    })
}

/// The default rollback target, relative to what runs. Normally the version
/// below the current one in the history. But when what runs is not the
/// chain's current version (a failed deploy left in place with
/// `--no-auto-rollback`, a `kill -9` mid-recreate, a hand-run
/// `docker compose up`), the target is the chain's current version: the
/// last one that passed. A failure that touched nothing changes neither.
pub fn default_target(h: &History, now: &Now) -> Option<String> {
    if now.drift().is_some() && !now.engine.is_empty() {
        if let Some(c) = h.current() {
            return Some(c.to_string());
        }
    }
    h.previous_good().map(str::to_string)
}

/// How long a deploy waits for a proxy it just started to answer.
pub const PROXY_WAIT_SECS: u64 = 15;
/// How long a rollback waits for the proxy: it starts none, so a short
/// wait covers one that is restarting, and a stack that is down is
/// refused in seconds rather than after the deploy's wait.
pub const PROXY_RECHECK_SECS: u64 = 2;

/// Blue/green plans from what the engine and the proxy report; when they
/// could not be asked, the plan is refused rather than made blind (it
/// could otherwise pick the serving set as the one to discard).
pub fn unknown_sets(target: &Target, now: &Now) -> Option<Step> {
    // Without docker at all, preflight refuses the real run (exit 2) and
    // a dry run is a preview from the chain, with that warning.
    if which::which("docker").is_err() {
        return None;
    }
    let why = now.unknown.clone().filter(|_| target.blue_green())?;
    Some(Step::Require {
        refusal: Refusal::UnknownSets,
        what: "the engine and the proxy report which set serves".into(),
        missing: vec![why],
        overridden: Vec::new(),
    })
}

/// Swarm: refuses, before anything is touched, a host that is not a
/// manager or a service whose placement no ready node can take (a lost
/// node). `None` on compose, or without docker (preflight refuses then).
pub fn placement(target: &Target) -> Option<Step> {
    if target.engine() != EngineKind::Swarm || which::which("docker").is_err() {
        return None;
    }
    let missing = target
        .placement_gaps()
        .unwrap_or_else(|e| vec![format!("the swarm could not be asked: {e:#}")]);
    (!missing.is_empty()).then(|| Step::Require {
        refusal: Refusal::Swarm,
        what: "a swarm manager, and nodes for every app service's placement".into(),
        missing,
        overridden: Vec::new(),
    })
}

/// The checks read from the compose files' render, before anything is
/// touched, in both modes: the config against the render ([`Refusal::Config`]),
/// the secrets files ([`Refusal::Secrets`]) and, for blue/green, the slot
/// label and unpublished app ports ([`Refusal::BlueGreen`]). Returns the
/// unmet ones as steps, and the render for the image check. Without
/// docker at all, nothing (preflight refuses the real run; a dry run
/// previews with that warning).
pub fn compose_checks(target: &Target, env: &Env) -> (Vec<Step>, Option<serde_json::Value>) {
    if which::which("docker").is_err() {
        return (Vec::new(), None);
    }
    let require = |refusal, what: &str, missing: Vec<String>| {
        (!missing.is_empty()).then(|| Step::Require {
            refusal,
            what: what.into(),
            missing,
            overridden: Vec::new(),
        })
    };
    let doc = match target.render() {
        Ok(d) => d,
        Err(e) => {
            let why = format!(
                "the compose files do not render with the config's vars and {}: {e:#}",
                env.tag_var
            );
            let step = require(
                Refusal::Config,
                "compose files that agree with the config",
                vec![why],
            );
            return (step.into_iter().collect(), None);
        }
    };
    let mut steps: Vec<Step> = [
        require(
            Refusal::Config,
            "compose files that agree with the config",
            config_gaps(target, env, &doc),
        ),
        require(
            Refusal::Secrets,
            "the secrets files the compose files name",
            secrets_gaps(&doc),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if target.blue_green() {
        steps.extend(require(
            Refusal::BlueGreen,
            "compose files ready for blue/green",
            target.blue_green_gaps(&doc),
        ));
    }
    (steps, Some(doc))
}

/// Where the config and the compose files' render disagree, each naming
/// the service, variable or port.
fn config_gaps(target: &Target, env: &Env, doc: &serde_json::Value) -> Vec<String> {
    let services = doc["services"].as_object().cloned().unwrap_or_default();
    let mut gaps = Vec::new();
    let proxy = env.proxy.as_ref().map(|p| p.service.clone());
    let listed: Vec<&String> = env
        .app_services
        .iter()
        .chain(&env.stateful_services)
        .chain(&proxy)
        .collect();
    for s in &listed {
        if !services.contains_key(s.as_str()) {
            let have: Vec<&str> = services.keys().map(String::as_str).collect();
            gaps.push(format!(
                "service `{s}` is not in the compose files (they define {})",
                have.join(", ")
            ));
        }
    }
    for s in services.keys() {
        if !listed.contains(&s) && !env.ignored_services.contains(s) {
            gaps.push(format!(
                "compose service `{s}` is in none of app_services, stateful_services and ignored_services: a deploy would never start it; list it"
            ));
        }
    }
    let tag = match target.tag() {
        "" => crate::engine::slots::RENDER_TAG,
        t => t,
    };
    for s in target.services() {
        let Some(image) = services.get(s).and_then(|v| v["image"].as_str()) else {
            continue;
        };
        let want = env.images.get(s).map(|r| format!("{r}:{tag}"));
        if !image.ends_with(&format!(":{tag}")) {
            gaps.push(format!(
                "app service `{s}`'s image `{image}` does not take its tag from `{}`: a deploy would not change its version",
                env.tag_var
            ));
        } else if want.as_deref().is_some_and(|w| w != image) {
            gaps.push(format!(
                "app service `{s}` runs image `{image}` but images.{s} is `{}`",
                env.images[s]
            ));
        }
    }
    // What the gate and the proxy dial must be published by some service.
    let published: Vec<u16> = services
        .values()
        .flat_map(|v| v["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| match &p["published"] {
            serde_json::Value::String(s) => s.parse().ok(),
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => None,
        })
        .collect();
    for (what, url) in env.health_urls.iter().map(|u| ("health url", u)) {
        if let Some(port) = loopback_port(url).filter(|p| !published.contains(p)) {
            gaps.push(format!(
                "{what} `{url}`: no compose service publishes port {port}"
            ));
        }
    }
    if let Some(p) = &env.proxy {
        for (s, port) in p.routes.iter().chain(&p.probe_ports) {
            let svc = &services.get(s).cloned().unwrap_or_default();
            let declared: Vec<u64> = svc["expose"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str().and_then(|e| e.parse().ok()).or(e.as_u64()))
                .collect();
            // Only a service that declares its ports can contradict the config.
            if !declared.is_empty() && !declared.contains(&u64::from(*port)) {
                gaps.push(format!(
                    "proxy names port {port} of `{s}`, which exposes {declared:?} in the compose files"
                ));
            }
        }
    }
    gaps
}

/// The port of a `http://127.0.0.1:PORT/...` (or localhost, [::1]) URL:
/// the ones this host's compose services must publish.
fn loopback_port(url: &str) -> Option<u16> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let host_port = rest.split('/').next()?;
    let (host, port) = host_port.rsplit_once(':')?;
    ["127.0.0.1", "localhost", "[::1]"]
        .contains(&host)
        .then(|| port.parse().ok())
        .flatten()
}

/// Secrets files the render names that do not exist.
fn secrets_gaps(doc: &serde_json::Value) -> Vec<String> {
    let Some(secrets) = doc["secrets"].as_object() else {
        return Vec::new();
    };
    secrets
        .iter()
        .filter_map(|(name, s)| {
            let file = s["file"].as_str()?;
            (!std::path::Path::new(file).is_file())
                .then(|| format!("secret `{name}`: file {file} does not exist"))
        })
        .collect()
}

/// The tag's images can be had: `pull` needs each in the registry; with
/// `local_ok` (a rollback), one present locally will do. Read-only
/// (`docker image inspect`, `docker manifest inspect`).
pub fn images_check(target: &Target, local_ok: bool) -> Option<Step> {
    if which::which("docker").is_err() {
        return None;
    }
    let refs = target.image_refs();
    let missing: Vec<String> = std::thread::scope(|s| {
        let asked: Vec<_> = refs
            .iter()
            .map(|r| {
                s.spawn(move || {
                    if local_ok && crate::engine::docker::image_present(r) {
                        return None;
                    }
                    crate::engine::docker::manifest(r)
                        .err()
                        .map(|why| format!("image {r}: {why}"))
                })
            })
            .collect();
        asked
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    });
    (!missing.is_empty()).then(|| Step::Require {
        refusal: Refusal::Manifest,
        what: "the tag's images in the registry".into(),
        missing,
        overridden: Vec::new(),
    })
}

/// Blue/green (compose behind a proxy): the steps that put `target`'s tag
/// in service, and the recovery that puts back the set serving now.
pub struct BlueGreen {
    pub steps: Vec<AppStep>,
    pub recovery: Vec<AppStep>,
    /// The set that will serve.
    pub set: Set,
}

/// Plans a blue/green switch to `target`'s tag from what runs (`now`).
///
/// When a standby set already holds the tag (the previous version, kept
/// warm or stopped), the switch goes to it: start what is stopped, gate,
/// switch, then hand the workers over. Otherwise a new set of the
/// configured replicas starts beside the serving one and the designated
/// standby (any other set is discarded first), is gated on its own
/// addresses, and the proxy switches. Either
/// way the old set is retired last: its workers stop only once the new
/// ones passed the gate, and its HTTP containers drain.
pub fn blue_green(target: &Target, env: &Env, now: &Now, gate_secs: u64) -> BlueGreen {
    let all = &now.engine.containers;
    let live = serving_slot(now);
    let of = |slot: Slot| all.iter().filter(move |c| c.slot == slot);
    let names = |slot: Slot, pick: &dyn Fn(&Container) -> bool| -> Vec<String> {
        of(slot)
            .filter(|c| pick(c))
            .map(|c| c.name.clone())
            .collect()
    };
    let gated = |set: &Set| AppStep::GateSet {
        set: set.clone(),
        gate: contract(set.target(), env, gate_secs),
    };
    let old = live
        .zip(now.serving())
        .map(|(l, tag)| target.on_tag(tag).set(l).known(of(l).cloned().collect()));

    let mut slots: Vec<Slot> = all.iter().map(|c| c.slot).collect();
    slots.sort();
    slots.dedup();
    let back = |leave: AppStep| -> Vec<AppStep> {
        // Nothing served before: stop what failed, as an in-place deploy would.
        let Some(old) = &old else {
            return vec![AppStep::Stop {
                target: target.clone(),
            }];
        };
        vec![
            AppStep::Start {
                set: old.clone(),
                names: Vec::new(),
            },
            gated(old),
            AppStep::Switch { set: old.clone() },
            leave,
        ]
    };
    let discard = |s: Slot| AppStep::Discard {
        set: target.on_tag(&tag_in(all, s)).set(s),
        names: names(s, &|_| true),
    };
    let mut steps = Vec::new();
    let (set, recovery) = match standby_with(target, now, target.tag()) {
        Some(slot) => {
            let set = target.set(slot).known(of(slot).cloned().collect());
            let stopped = |routed: bool| {
                names(slot, &|c: &Container| {
                    !c.running && set.part(routed).services().contains(&c.service)
                })
            };
            // Warm: nothing to start, and the switch is all that stands
            // between the command and traffic on the old version.
            if !stopped(true).is_empty() {
                steps.push(AppStep::Start {
                    set: set.part(true),
                    names: stopped(true),
                });
            }
            steps.push(gated(&set.part(true)));
            steps.push(AppStep::Switch { set: set.clone() });
            steps.push(gate(target, env, gate_secs));
            let workers = set.part(false);
            if !workers.services().is_empty() {
                steps.push(AppStep::Start {
                    set: workers.clone(),
                    names: stopped(false),
                });
                steps.push(gated(&workers));
            }
            let recovery = back(AppStep::Retire {
                set: set.clone(),
                names: Vec::new(),
            });
            (set, recovery)
        }
        None => {
            // Only the serving set and the designated standby stay while
            // the new set starts: any other (a set an interrupted run
            // left) goes first, so the new set's slot and its count are
            // taken from what remains.
            let standby = designated_standby(target, now);
            for s in slots.iter().copied() {
                if Some(s) != live && Some(s) != standby {
                    steps.push(discard(s));
                }
            }
            let kept: Vec<Slot> = slots
                .iter()
                .copied()
                .filter(|s| Some(*s) == live || Some(*s) == standby)
                .collect();
            let slot = Slot::free(&kept).unwrap_or(Slot::Amber);
            let set = target.set(slot);
            // Compose's `--scale` counts every container of a service,
            // stopped ones too: the kept sets' and the new set's replicas
            // from the config (never a count of what runs).
            let scale = target
                .services()
                .iter()
                .map(|s| {
                    let there = all
                        .iter()
                        .filter(|c| &c.service == s && kept.contains(&c.slot))
                        .count() as u32;
                    (s.clone(), there + set.replicas(s))
                })
                .collect();
            steps.push(AppStep::StartBeside {
                set: set.clone(),
                scale,
            });
            steps.push(gated(&set));
            steps.push(AppStep::Switch { set: set.clone() });
            steps.push(gate(target, env, gate_secs));
            let recovery = back(AppStep::Discard {
                set: set.clone(),
                names: Vec::new(),
            });
            (set, recovery)
        }
    };
    // The set that served becomes the standby and older ones go, so two
    // sets remain; a failed deploy never gets here and leaves the standby.
    // They go while the set that served drains (no traffic reaches them).
    for s in slots.iter().copied() {
        let gone = steps
            .iter()
            .any(|st| matches!(st, AppStep::Discard { set, .. } if set.slot() == s));
        if Some(s) != live && s != set.slot() && !gone {
            steps.push(discard(s));
        }
    }
    if let Some(old) = &old {
        steps.push(AppStep::Retire {
            set: old.clone(),
            names: names(old.slot(), &|c: &Container| c.running),
        });
    }
    BlueGreen {
        steps,
        recovery,
        set,
    }
}

/// The set with traffic: the proxy's, else unlabelled containers that run
/// (a stack deployed in place before it had a proxy).
fn serving_slot(now: &Now) -> Option<Slot> {
    now.engine.live.or_else(|| {
        now.engine
            .containers
            .iter()
            .any(|c| c.running && c.slot == Slot::Unlabelled)
            .then_some(Slot::Unlabelled)
    })
}

/// The standby set (no traffic) that holds every app service on `tag`,
/// if there is one: then a rollback to `tag` is a switch, and its images
/// are there.
pub fn standby_with(target: &Target, now: &Now, tag: &str) -> Option<Slot> {
    let all = &now.engine.containers;
    let live = serving_slot(now);
    let mut slots: Vec<Slot> = all
        .iter()
        .map(|c| c.slot)
        .filter(|s| Some(*s) != live)
        .collect();
    slots.sort();
    slots.dedup();
    slots.into_iter().find(|&slot| {
        let of = || all.iter().filter(move |c| c.slot == slot);
        // A pinned target wants its digests: a standby on the same tag
        // with other bytes (a re-pushed tag) is not it.
        let pins = target.service_digests();
        target
            .services()
            .iter()
            .all(|s| of().any(|c| &c.service == s))
            && of().all(|c| {
                c.tag == tag
                    && pins
                        .get(&c.service)
                        .is_none_or(|d| c.digest.as_deref() == Some(d.as_str()))
            })
    })
}

/// The standby set a deploy keeps while its new set starts: the set
/// without traffic that holds every app service on the default rollback
/// target (the first, in slot order, should there be two).
fn designated_standby(target: &Target, now: &Now) -> Option<Slot> {
    let tag = now.standby.as_deref()?;
    let all = &now.engine.containers;
    let live = serving_slot(now);
    [Slot::Blue, Slot::Green, Slot::Amber, Slot::Unlabelled]
        .into_iter()
        .filter(|s| Some(*s) != live)
        .find(|&slot| {
            let of = || all.iter().filter(move |c| c.slot == slot);
            of().next().is_some()
                && target
                    .services()
                    .iter()
                    .all(|s| of().any(|c| &c.service == s))
                && of().all(|c| c.tag == tag)
        })
}

/// The tag the containers of `slot` run (for showing a standby set).
fn tag_in(all: &[Container], slot: Slot) -> String {
    all.iter()
        .find(|c| c.slot == slot)
        .map(|c| c.tag.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(image_tags: &[(&str, &str, Option<&str>)]) -> Running {
        let mut r = Running::default();
        for (svc, tag, digest) in image_tags {
            r.services.insert(svc.to_string(), vec![tag.to_string()]);
            if let Some(d) = digest {
                r.digests.insert(svc.to_string(), vec![d.to_string()]);
            }
        }
        r
    }

    #[test]
    fn from_keeps_tag_and_digest_when_docker_shows_an_image_id() {
        let apps = ["api", "worker"];
        // A re-pushed tag under a container run by tag: docker shows an image ID.
        let mut now = Now::for_test(
            Some("v1"),
            engine(&[("api", "", None), ("worker", "", None)]),
            &apps,
        );
        now.chain_ref = Some(ImageRef::new("v1", Some("sha256:aa".into())));
        assert_eq!(
            now.serving_ref(),
            Some(ImageRef::new("v1", Some("sha256:aa".into())))
        );
        // A pinned container names its own digest, whatever the chain says.
        let mut pinned = Now::for_test(
            Some("v1"),
            engine(&[
                ("api", "v1", Some("sha256:bb")),
                ("worker", "v1", Some("sha256:bb")),
            ]),
            &apps,
        );
        pinned.chain_ref = Some(ImageRef::new("v1", Some("sha256:aa".into())));
        assert_eq!(
            pinned.serving_ref().unwrap().digest.as_deref(),
            Some("sha256:bb")
        );
        // ... and the same tag with other bytes than the chain's is drift.
        assert!(
            pinned.drift().unwrap().contains("v1@sha256:bb"),
            "{:?}",
            pinned.drift()
        );
    }
}
