//! Blue/green on compose: two sets of an environment's app containers in
//! one compose project, told apart by the `fetchml.slot` label, with the
//! reverse proxy (see [`super::proxy`]) sending traffic to one of them.
//!
//! A new set is started beside the serving one with `up --no-recreate
//! --scale` (compose keeps the existing containers and adds the new ones,
//! labelled by `FETCHML_SLOT`). It is gated container by container on its
//! own address, the proxy switches, and the old set is drained: its
//! workers stop, its HTTP containers stay warm (or stop) for a rollback.
//!
//! Every [`Set`] comes from a [`Target`], so a set names app services only.
//! Containers are found by label when a step runs; the plan shows which.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{bounded, proxy, Target};
use crate::cmd::{self, Command, Effect};
use crate::config::{KeepPrevious, Proxy};

/// The container label that names a container's set.
pub const LABEL: &str = "fetchml.slot";
/// How long a proxy started again after it was lost gets to answer.
const RESTART_WAIT_SECS: u64 = 15;
/// The variable the compose file puts in that label.
pub const SLOT_VAR: &str = "FETCHML_SLOT";

/// Which set a container belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Slot {
    Blue,
    Green,
    /// The third set: a deploy starts beside both the serving set and the
    /// standby one, so a deploy that fails leaves the standby warm.
    Amber,
    /// Containers started without a slot: by an in-place deploy before
    /// blue/green, or by hand. Treated as a set of its own.
    Unlabelled,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
            Slot::Amber => "amber",
            Slot::Unlabelled => "unlabelled",
        }
    }
    /// The `docker ps` filter selecting this slot's containers; `None` for
    /// the unlabelled ones, which no label selects.
    pub fn filter(self) -> Option<String> {
        (self != Slot::Unlabelled).then(|| format!("label={LABEL}={}", self.name()))
    }
    /// The slot a new set takes: the first of blue, green, amber that no
    /// set in `used` holds.
    pub fn free(used: &[Slot]) -> Option<Slot> {
        [Slot::Blue, Slot::Green, Slot::Amber]
            .into_iter()
            .find(|s| !used.contains(s))
    }
    fn parse(s: &str) -> Slot {
        match s {
            "blue" => Slot::Blue,
            "green" => Slot::Green,
            "amber" => Slot::Amber,
            _ => Slot::Unlabelled,
        }
    }
}

/// One app container, as `docker ps -a` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub name: String,
    pub service: String,
    pub slot: Slot,
    pub tag: String,
    /// The digest its image reference pins (`repo:tag@sha256:...`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub running: bool,
}

/// One set (a slot) of an environment's app services on a tag: what a
/// blue/green deploy starts, gates, switches to and retires.
#[derive(Debug, Clone, Serialize)]
pub struct Set {
    #[serde(flatten)]
    target: Target,
    slot: Slot,
    /// Its containers as the plan found them (an existing set); empty
    /// for a set still to start, whose containers are looked up by label.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    known: Vec<Container>,
    /// The HTTP and worker containers' `(service, IP)` a gate just passed:
    /// what a switch right after it points the proxy at.
    #[serde(skip)]
    gated: Option<Vec<(String, String)>>,
}

/// One of a set's containers, inspected.
struct Member {
    name: String,
    service: String,
    running: bool,
    ip: Option<String>,
}

impl Target {
    /// This target's services as the set in `slot`.
    pub fn set(&self, slot: Slot) -> Set {
        Set {
            target: self.clone(),
            slot,
            known: Vec::new(),
            gated: None,
        }
    }

    /// The environment's proxy config, when it deploys blue/green.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref()
    }

    /// Does this target deploy blue/green (compose behind a proxy)?
    pub fn blue_green(&self) -> bool {
        self.proxy.is_some() && self.engine == crate::config::EngineKind::Compose
    }

    /// Every app container of the project, of every set (read-only).
    pub fn containers(&self) -> Result<Vec<Container>> {
        let c = Command::new("docker", Effect::ReadOnly)
            .args(["ps", "--all", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.project))
            .args(["--format"])
            .arg(format!(
                "{{{{.Names}}}}\t{{{{.Label \"com.docker.compose.service\"}}}}\t{{{{.Label \"{LABEL}\"}}}}\t{{{{.Image}}}}\t{{{{.State}}}}"
            ))
            // Untruncated, `.Image` keeps the digest a pinned container runs.
            .arg("--no-trunc")
            .timeout(self.limits.look_up_secs);
        Ok(parse_containers(&cmd::run(&c, false)?, &self.services))
    }

    /// The slot the proxy sends traffic to (read-only): `None` when its
    /// routes point at no labelled set (the bootstrap config, or an
    /// in-place stack). `Err` when the proxy does not answer or its routes
    /// disagree.
    pub fn live_slot(&self, containers: &[Container]) -> Result<Option<Slot>> {
        let Some(p) = self.proxy.as_ref().filter(|_| self.blue_green()) else {
            return Ok(None);
        };
        let admin = admin_of(p);
        let mut seen: Option<Slot> = None;
        let mut by_ip: Option<BTreeMap<String, String>> = None;
        for service in p.routes.keys() {
            let dials = proxy::upstreams(admin, service)?;
            for d in &dials {
                let host = proxy::host_of(d);
                // The proxy names containers by address: map it back.
                let name = match containers.iter().any(|c| c.name == host) {
                    true => host.to_string(),
                    false => {
                        if by_ip.is_none() {
                            by_ip = Some(self.names_by_ip(containers)?);
                        }
                        match by_ip.as_ref().and_then(|m| m.get(host)) {
                            Some(n) => n.clone(),
                            // A service name (`api:8080`): the bootstrap config.
                            None => return Ok(None),
                        }
                    }
                };
                let Some(c) = containers.iter().find(|c| c.name == name) else {
                    return Ok(None);
                };
                match seen {
                    Some(s) if s != c.slot => bail!(
                        "the proxy sends traffic to both the {} and the {} set; run a rollback to put it on one",
                        s.name(),
                        c.slot.name()
                    ),
                    _ => seen = Some(c.slot),
                }
            }
        }
        Ok(seen)
    }

    /// The running ones of `containers` by network address (read-only:
    /// one `docker inspect`).
    fn names_by_ip(&self, containers: &[Container]) -> Result<BTreeMap<String, String>> {
        let names: Vec<String> = containers
            .iter()
            .filter(|c| c.running)
            .map(|c| c.name.clone())
            .collect();
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let c = Command::new("docker", Effect::ReadOnly)
            .args(["inspect", "--format"])
            .arg("{{.Name}}\t{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}")
            .args(names)
            .timeout(self.limits.look_up_secs);
        let mut m = BTreeMap::new();
        for l in cmd::run(&c, false)?.lines() {
            if let Some((name, ips)) = l.split_once('\t') {
                for ip in ips.split_whitespace() {
                    m.insert(ip.to_string(), name.trim_start_matches('/').to_string());
                }
            }
        }
        Ok(m)
    }
}

/// The proxy's admin directory, as a path string for [`proxy`].
fn admin_of(p: &Proxy) -> &str {
    p.admin_dir
        .as_deref()
        .and_then(|d| d.to_str())
        .unwrap_or_default()
}

impl Target {
    /// Waits up to `wait_secs` for the proxy's admin API (a proxy just
    /// started takes a moment), then requires a route for each HTTP
    /// service. A proxy that answers without a route fails at once.
    pub fn proxy_ready(&self, wait_secs: u64) -> Result<()> {
        let p = self.proxy.as_ref().context("no [proxy] configured")?;
        let admin = admin_of(p);
        let deadline = Instant::now() + Duration::from_secs(wait_secs);
        let since = cmd::since_now();
        for service in p.routes.keys() {
            loop {
                match proxy::upstreams(admin, service) {
                    Ok(_) => break,
                    Err(e) if proxy::answered(&e) || Instant::now() >= deadline => return Err(e),
                    Err(_) => {
                        cmd::check_interrupt(since)?;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Target {
    /// The compose files' render (`config --format json`, read-only), on
    /// this target's tag (a placeholder when it has none yet) and with
    /// the slot label set to [`RENDER_SLOT`], as the plan's checks read it.
    pub fn render(&self) -> Result<serde_json::Value> {
        let on = match self.tag.is_empty() {
            true => self.on_tag(RENDER_TAG),
            false => self.clone(),
        };
        let c = on.render_command().env(SLOT_VAR, RENDER_SLOT);
        let out = cmd::run(&c, false).map_err(|e| {
            // compose's own words, on one line.
            anyhow::anyhow!(
                "{}",
                format!("{e:#}")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })?;
        serde_json::from_str(&out).context("reading `docker compose config --format json`")
    }

    /// What the compose files lack for blue/green, read from their
    /// [`render`](Target::render): each app service must carry the slot
    /// label from `FETCHML_SLOT` (or the new set could not be told from the
    /// old) and publish no port (two sets could not run side by side).
    pub fn blue_green_gaps(&self, doc: &serde_json::Value) -> Vec<String> {
        let mut gaps = Vec::new();
        for s in &self.services {
            let svc = &doc["services"][s];
            if svc["labels"][LABEL].as_str() != Some(RENDER_SLOT) {
                gaps.push(format!(
                    "app service `{s}` has no label `{LABEL}: ${{{SLOT_VAR}:-}}` in its compose file"
                ));
            }
            let want = self.proxy.as_ref().map_or(1, |p| p.replicas(s));
            if let Some(n) = svc["deploy"]["replicas"]
                .as_u64()
                .filter(|n| *n != u64::from(want))
            {
                gaps.push(format!(
                    "app service `{s}` has `deploy.replicas: {n}` in its compose file but the config gives each set {want}; set proxy.replicas = {{ {s} = {n} }}"
                ));
            }
            if svc["ports"].as_array().is_some_and(|p| !p.is_empty()) {
                gaps.push(format!(
                    "app service `{s}` publishes a port: behind the proxy only the proxy publishes"
                ));
            }
        }
        gaps
    }
}

/// The tag an untagged target renders on.
pub const RENDER_TAG: &str = "sha-000000000000";
/// The slot label's value in a render.
const RENDER_SLOT: &str = "slot-probe";

fn parse_containers(out: &str, services: &[String]) -> Vec<Container> {
    let mut v: Vec<Container> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [name, service, slot, image, state] = f[..] else {
                return None;
            };
            services.iter().any(|s| s == service).then(|| Container {
                name: name.into(),
                service: service.into(),
                slot: Slot::parse(slot),
                tag: super::running::tag_of(image).unwrap_or_default(),
                digest: super::running::digest_of(image),
                running: state == "running",
            })
        })
        .collect();
    v.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
    v
}

impl Set {
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// The same set, with the containers the plan found it to have.
    pub fn known(self, containers: Vec<Container>) -> Set {
        Set {
            known: containers,
            ..self
        }
    }

    /// The set's containers, inspected in one call: by the names the plan
    /// knew (no `ps` first), else found by label. Names that left the set
    /// meanwhile are dropped.
    fn resolve(&self) -> Result<Vec<Member>> {
        let names: Vec<String> = match self.known.is_empty() {
            false => self.known.iter().map(|c| c.name.clone()).collect(),
            true => {
                let all = self.target.containers()?;
                self.members(&all).iter().map(|c| c.name.clone()).collect()
            }
        };
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let inspect = Command::new("docker", Effect::ReadOnly)
            .args(["inspect", "--format"])
            .arg(format!(
                "{{{{.Name}}}}\t{{{{index .Config.Labels \"com.docker.compose.service\"}}}}\t{{{{index .Config.Labels \"{LABEL}\"}}}}\t{{{{.State.Running}}}}\t{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}} {{{{end}}}}"
            ))
            .args(names.clone())
            .timeout(self.target.limits.look_up_secs);
        let out = match cmd::run(&inspect, false) {
            Ok(o) => o,
            // A known container is gone: look the set up by label instead.
            Err(_) if !self.known.is_empty() => {
                return Set {
                    known: Vec::new(),
                    ..self.clone()
                }
                .resolve()
            }
            Err(e) => return Err(e),
        };
        Ok(out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let [name, service, slot, running, ips] = f[..] else {
                    return None;
                };
                (Slot::parse(slot) == self.slot && self.services().iter().any(|s| s == service))
                    .then(|| Member {
                        name: name.trim_start_matches('/').to_string(),
                        service: service.to_string(),
                        running: running == "true",
                        ip: ips.split_whitespace().next().map(str::to_string),
                    })
            })
            .collect())
    }
    pub fn target(&self) -> &Target {
        &self.target
    }
    pub fn tag(&self) -> &str {
        self.target.tag()
    }
    pub fn services(&self) -> &[String] {
        self.target.services()
    }

    /// The same set, narrowed to the HTTP services behind the proxy
    /// (`routed`) or to the rest, the workers.
    pub fn part(&self, routed: bool) -> Set {
        let mut s = self.clone();
        let routes = self.target.proxy.as_ref().map(|p| &p.routes);
        s.target
            .services
            .retain(|svc| routes.is_some_and(|r| r.contains_key(svc)) == routed);
        s
    }

    /// `blue api, worker on v2`.
    pub fn describe(&self) -> String {
        format!(
            "the {} set ({} on {})",
            self.slot.name(),
            self.services().join(", "),
            if self.tag().is_empty() {
                "its tag"
            } else {
                self.tag()
            }
        )
    }

    /// This set's containers among `all`.
    fn members<'a>(&self, all: &'a [Container]) -> Vec<&'a Container> {
        all.iter()
            .filter(|c| c.slot == self.slot && self.services().contains(&c.service))
            .collect()
    }

    /// How many containers of `service` the set has: from the config.
    pub fn replicas(&self, service: &str) -> u32 {
        self.target
            .proxy
            .as_ref()
            .map_or(1, |p| p.replicas(service))
    }

    /// `up --no-recreate --no-start --scale`: creates the set's containers
    /// beside the ones there are (`scale` counts all of them), labelled
    /// with its slot, and starts none: a stopped standby stays stopped.
    pub fn start_beside_command(&self, scale: &BTreeMap<String, u32>) -> Command {
        let mut c = self.target.compose(Effect::Mutating).args([
            "up",
            "-d",
            "--no-deps",
            "--no-build",
            "--no-recreate",
            "--no-start",
        ]);
        c = c.args(self.target.up_pull());
        for (s, n) in scale {
            c = c.arg("--scale").arg(format!("{s}={n}"));
        }
        let c = c
            .args(self.services().to_vec())
            .env(SLOT_VAR, self.slot.name());
        bounded(vec![c], self.target.limits.recreate_secs).remove(0)
    }

    /// The commands [`Set::start`], [`Set::stop`] and [`Set::discard`]
    /// run, with the containers named as the plan knows them.
    pub fn container_commands(&self, verbs: &[&str], names: &[String]) -> Vec<Command> {
        let shown = if names.is_empty() {
            vec![format!(
                "<{} containers of {}>",
                self.slot.name(),
                self.services().join(", ")
            )]
        } else {
            names.to_vec()
        };
        verbs
            .iter()
            .map(|v| {
                Command::new("docker", Effect::Mutating)
                    .args(v.split(' '))
                    .args(shown.clone())
                    .timeout(self.target.limits.stop_secs)
            })
            .collect()
    }

    fn act(
        &self,
        verb: &str,
        pick: impl Fn(&Container) -> bool,
        verbose: bool,
    ) -> Result<Vec<String>> {
        let all = self.target.containers()?;
        let names: Vec<String> = self
            .members(&all)
            .into_iter()
            .filter(|c| pick(c))
            .map(|c| c.name.clone())
            .collect();
        if !names.is_empty() {
            for c in self.container_commands(&[verb], &names) {
                cmd::run(&c, verbose)?;
            }
        }
        Ok(names)
    }

    /// Starts the set's stopped containers (a warm one is left as it is).
    pub fn start(&self, verbose: bool) -> Result<()> {
        self.act("start", |c| !c.running, verbose).map(drop)
    }

    /// Stops the set's running containers (SIGTERM, then the service's
    /// stop grace period): a worker finishes the job it holds.
    pub fn stop(&self, verbose: bool) -> Result<()> {
        self.act("stop", |c| c.running, verbose).map(drop)
    }

    /// Refuses to act on the set the proxy sends traffic to: whatever the
    /// plan believed, a set with traffic is never stopped or removed.
    fn without_traffic(&self, what: &str) -> Result<()> {
        let all = self.target.containers()?;
        if self.target.live_slot(&all)? == Some(self.slot) {
            bail!(
                "refusing to {what} {}: the proxy sends it traffic",
                self.describe()
            );
        }
        Ok(())
    }

    /// Stops, then removes, the set's containers (no volume is touched:
    /// `container rm` without `--volumes`). Compose's `--scale` would
    /// otherwise start them again beside the next set.
    pub fn discard(&self, verbose: bool) -> Result<()> {
        self.without_traffic("discard")?;
        // Every one, whatever `ps` said: a `docker start` that a signal cut
        // short may still be starting a container the daemon had accepted.
        self.act("stop", |_| true, verbose)?;
        self.act("container rm", |_| true, verbose).map(drop)
    }

    /// Creates the set beside the others, then starts its containers.
    /// First checks that `scale` still adds exactly the set's replicas to
    /// what is there: compose meets a `--scale` below the count by
    /// removing containers, which could be serving ones.
    pub fn start_beside(&self, scale: &BTreeMap<String, u32>, verbose: bool) -> Result<()> {
        let all = self.target.containers()?;
        for (s, n) in scale {
            let there = all.iter().filter(|c| &c.service == s).count() as u32;
            if there + self.replicas(s) != *n {
                bail!(
                    "{s} has {there} container(s), not the {} the plan counted; re-run to plan from what runs now",
                    n.saturating_sub(self.replicas(s))
                );
            }
        }
        cmd::run(&self.start_beside_command(scale), verbose)?;
        self.start(verbose)
    }

    /// [`Set::discard`] of a set this run started, on a failure path. When
    /// the proxy does not answer, the set is removed anyway if this run
    /// never pointed a route at it (`pointed`): then no traffic could have
    /// reached it, and a proxy started again routes where it routed before.
    pub fn discard_started(&self, pointed: bool, verbose: bool) -> Result<()> {
        match self.without_traffic("discard") {
            Err(e) if pointed || !self.proxy_unreachable() => return Err(e),
            _ => {}
        }
        self.act("stop", |_| true, verbose)?;
        self.act("container rm", |_| true, verbose).map(drop)
    }

    /// The proxy's admin API does not answer at all (as opposed to
    /// answering that it routes elsewhere).
    fn proxy_unreachable(&self) -> bool {
        let Ok(p) = self.proxy_cfg() else {
            return false;
        };
        let admin = admin_of(p);
        p.routes
            .keys()
            .next()
            .is_some_and(|s| proxy::upstreams(admin, s).is_err_and(|e| !proxy::answered(&e)))
    }

    /// The health URL of each of the set's containers, on its own address
    /// (no proxy in between). Fails when a service has no running container.
    /// With them, the set with the running containers they reach as its
    /// known ones: the set a gate passed on, so a switch right after it
    /// sends traffic to exactly those containers, with no further look-up
    /// between the gate and the traffic.
    pub fn probed(&self) -> Result<(Vec<String>, Set)> {
        let p = self.proxy_cfg()?;
        let members = self.resolve()?;
        for s in self.services() {
            if !members.iter().any(|c| &c.service == s && c.running) {
                bail!("{}: no running {s} container", self.describe());
            }
        }
        let urls = members
            .iter()
            .filter(|c| c.running)
            .map(|c| {
                let ip =
                    c.ip.as_deref()
                        .with_context(|| format!("container {} has no network address", c.name))?;
                let port = p.port(&c.service).unwrap_or(80);
                Ok(format!("http://{ip}:{port}{}", p.health_path))
            })
            .collect::<Result<Vec<_>>>()?;
        let gated = members
            .iter()
            .filter(|c| c.running)
            .filter_map(|c| c.ip.clone().map(|ip| (c.service.clone(), ip)))
            .collect();
        let tag = self.target.tag().to_string();
        let known = members
            .into_iter()
            .filter(|c| c.running)
            .map(|c| Container {
                name: c.name,
                service: c.service,
                slot: self.slot,
                tag: tag.clone(),
                digest: self.target.digest().map(str::to_string),
                running: true,
            })
            .collect();
        let mut passed = self.clone().known(known);
        passed.gated = Some(gated);
        Ok((urls, passed))
    }

    /// The last `lines` log lines of each of the set's known containers
    /// (`docker logs`, read-only): a failed gate on this set explains
    /// itself with the containers under test only, not the standby's or
    /// the old set's, which `compose logs SERVICE` would mix in.
    pub fn logs_commands(&self, lines: u32) -> Vec<Command> {
        self.known
            .iter()
            .map(|c| {
                Command::new("docker", Effect::ReadOnly)
                    .args(["logs", "--tail"])
                    .arg(lines.to_string())
                    .arg(c.name.clone())
                    .timeout(self.target.limits.look_up_secs)
            })
            .collect()
    }

    /// Points the proxy's route of each of the set's HTTP services at the
    /// set's containers. Each route switches atomically. A proxy that is
    /// down (lost mid-deploy) is started again first: it comes back routing
    /// where it was last switched (its saved server state), then switches.
    pub fn switch(&self) -> Result<()> {
        self.switch_counted(&mut 0)
    }

    /// [`Set::switch`], counting in `pointed` the routes that switched
    /// (a failed switch may have moved some of them).
    pub fn switch_counted(&self, pointed: &mut usize) -> Result<()> {
        match self.switch_once(pointed) {
            Err(e) if proxy::unreachable(&e) => {
                let t = &self.target;
                let service = &self.proxy_cfg()?.service;
                eprintln!("{e:#}: starting the proxy again (it routes where it was last switched)");
                let up = t
                    .compose(Effect::Mutating)
                    .args(["up", "-d", "--no-recreate", "--no-deps", "--no-build"])
                    .arg(service)
                    .timeout(t.limits.recreate_secs);
                let again = match t.proxy_admin_dir() {
                    Some(d) => proxy::prepare_dir(d),
                    None => Ok(()),
                }
                .and_then(|()| cmd::run(&up, false).map(drop))
                .and_then(|()| t.proxy_ready(RESTART_WAIT_SECS));
                if let Err(e2) = again {
                    bail!(
                        "{e:#}, and starting it again failed ({e2:#}); start it by hand (`docker compose -p {} up -d {service}`), then run `cargo xtask rollback {}`",
                        t.project,
                        t.env
                    );
                }
                self.switch_once(pointed)
            }
            r => r,
        }
    }

    fn switch_once(&self, pointed: &mut usize) -> Result<()> {
        let p = self.proxy_cfg()?;
        let admin = admin_of(p);
        // An existing set was inspected by the gate just before: its
        // containers' addresses as the gate reached them are the ones to
        // switch to, with no further look-up between the gate and the traffic.
        let members: Vec<(String, String)> = match &self.gated {
            Some(g) => g.clone(),
            None => self
                .resolve()?
                .into_iter()
                .filter(|c| c.running)
                .map(|c| {
                    let ip = c
                        .ip
                        .with_context(|| format!("container {} has no network address", c.name))?;
                    Ok((c.service, ip))
                })
                .collect::<Result<_>>()?,
        };
        for (service, port) in &p.routes {
            if !self.services().contains(service) {
                continue;
            }
            let dials: Vec<String> = members
                .iter()
                .filter(|(s, _)| s == service)
                .map(|(_, ip)| format!("{ip}:{port}"))
                .collect();
            proxy::point(admin, service, &dials)
                .with_context(|| format!("switching {service} to {}", self.describe()))?;
            *pointed += 1;
        }
        Ok(())
    }

    /// The `IP:port` of the set's HTTP containers on `service`'s route.
    fn dials(&self, service: &str, port: u16) -> Result<Vec<String>> {
        Ok(self
            .resolve()?
            .into_iter()
            .filter(|c| c.service == service)
            .filter_map(|c| c.ip.map(|ip| format!("{ip}:{port}")))
            .collect())
    }

    /// Waits until the proxy has no request in flight on the set's HTTP
    /// containers (a slow request started before the switch finishes
    /// there), until `until` at the latest.
    fn drained(&self, until: Instant) -> Result<()> {
        let p = self.proxy_cfg()?;
        let admin = admin_of(p);
        let mut dials = Vec::new();
        for (service, port) in &p.routes {
            if self.services().contains(service) {
                dials.push((service.clone(), self.dials(service, *port)?));
            }
        }
        let since = cmd::since_now();
        loop {
            let mut busy = 0;
            for (service, d) in &dials {
                busy += proxy::sessions(admin, service, d)?;
            }
            if busy == 0 || Instant::now() >= until {
                return Ok(());
            }
            cmd::check_interrupt(since)?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Retires a set that no longer gets traffic: its workers stop now
    /// (SIGTERM: each finishes its job); its HTTP containers get
    /// `drain_secs` to finish what is in flight, then stay warm or stop.
    /// The drain runs from `switched` (when the proxy stopped sending this
    /// set new requests), while the workers stop and anything else runs.
    pub fn retire(&self, switched: Option<Instant>, verbose: bool) -> Result<()> {
        let p = self.proxy_cfg()?.clone();
        let until = switched.unwrap_or_else(Instant::now) + Duration::from_secs(p.drain_secs);
        self.without_traffic("retire")?;
        self.part(false).stop(verbose)?;
        self.part(true).drained(until)?;
        if p.keep_previous == KeepPrevious::Stopped {
            self.part(true).stop(verbose)?;
        }
        Ok(())
    }

    fn proxy_cfg(&self) -> Result<&Proxy> {
        self.target
            .proxy
            .as_ref()
            .context("this environment has no [proxy] section: it deploys in place")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_read_with_their_set() {
        let apps = vec!["api".to_string(), "worker".to_string()];
        let out = "p-api-2\tapi\tgreen\tr/x:v2\trunning\np-api-1\tapi\tblue\tr/x:v1\trunning\np-worker-1\tworker\t\tr/x:v1\texited\np-redis-1\tredis\t\tredis:7\trunning\n";
        let c = parse_containers(out, &apps);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(
            (c[0].name.as_str(), c[0].slot, c[0].tag.as_str()),
            ("p-api-1", Slot::Blue, "v1")
        );
        assert_eq!(c[1].slot, Slot::Green);
        assert_eq!((c[2].slot, c[2].running), (Slot::Unlabelled, false));
        assert_eq!(Slot::free(&[Slot::Blue]), Some(Slot::Green));
        assert_eq!(Slot::free(&[Slot::Unlabelled]), Some(Slot::Blue));
        assert_eq!(Slot::free(&[Slot::Green, Slot::Blue]), Some(Slot::Amber));
        assert_eq!(Slot::free(&[Slot::Green, Slot::Blue, Slot::Amber]), None);
    }
}
