//! The engine lowers the typed stack steps (pull, recreate, stop) to commands.
//!
//! A [`Target`] is "these app services of this environment, on this tag". It
//! can only be built from an environment's config, which takes the service
//! list from `app_services`, so no deploy or rollback plan can name a
//! stateful service, `down`, a volume or `rm`: those words have no
//! constructor here. The scope tests in `tasks::scope` check the rendered
//! commands anyway.
//!
//! The engine (`engine = "compose" | "swarm"` per environment) is a property
//! of the `Target`: the plans say "pull", "recreate", "stop" and
//! "converge", and only the methods here look at which engine runs
//! the stack. The Swarm lowering lives in [`swarm`].

use std::collections::BTreeMap;
use std::path::PathBuf;

pub mod cluster;
pub mod docker;
pub mod placement;
pub mod proxy;
pub mod registry;
mod running;
pub mod slots;
pub mod swarm;

pub use running::Running;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::audit::ImageRef;
use crate::cmd::{Command, Effect, Secretable};
use crate::config::{Config, EngineKind, Env, Limits, Proxy, Pull};

/// The variable that gives the compose file the proxy's admin directory.
pub const PROXY_ADMIN_DIR_VAR: &str = "FETCHML_PROXY_ADMIN_DIR";
/// The variable that gives the compose file the proxy's `uid:gid`.
pub const PROXY_USER_VAR: &str = "FETCHML_PROXY_USER";

/// The compose variables that give the proxy its admin directory (resolved)
/// and the user it runs as, as every compose command of the tool sets them.
pub fn proxy_vars(admin_dir: &std::path::Path) -> [(&'static str, String); 2] {
    let (uid, gid) = proxy::user();
    [
        (PROXY_ADMIN_DIR_VAR, admin_dir.display().to_string()),
        (PROXY_USER_VAR, format!("{uid}:{gid}")),
    ]
}

/// Which compose CLI runs the stack: the v2 plugin, or v1 as a detected fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComposeCli {
    V2Plugin,
    V1Standalone,
}

/// The app services of one environment on one tag.
///
/// Its fields are private and its only constructor reads `app_services`, so
/// no code outside this module can make a `Target` that names a stateful
/// service: a rollback or a recovery, built from targets alone, cannot
/// reach the queue, storage or database.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    env: String,
    engine: EngineKind,
    cli: ComposeCli,
    project: String,
    files: Vec<PathBuf>,
    tag_var: String,
    tag: String,
    /// App services only (from `app_services`).
    services: Vec<String>,
    /// Image repository per app service.
    images: BTreeMap<String, String>,
    /// `${NAME}` values read from the environment, secret (shown `***`).
    vars: BTreeMap<String, Secretable>,
    /// Repository -> the digest its tag pointed to when the plan was made
    /// (or the one a record names): what runs, whatever the tag says later.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pins: BTreeMap<String, String>,
    /// When images are pulled (`pull` of the environment).
    pull: Pull,
    /// Repository -> the image ID this host has under the tag, for an
    /// image no registry digest names (`pull = "missing" | "never"`): what
    /// the record names; it runs by its tag.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    local: BTreeMap<String, String>,
    /// The environment's state directory, where the override that pins
    /// the images is rendered (see [`Target::pins_file`]).
    #[serde(skip)]
    state_dir: Option<PathBuf>,
    /// Swarm: change only the app services' image (`docker service update
    /// --image`), not the whole stack. A rollback is image-only; compose
    /// recreates the same way in both cases.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    image_only: bool,
    #[serde(skip)]
    limits: Limits,
    /// Blue/green behind this proxy (compose), or in place (`None`).
    #[serde(skip)]
    proxy: Option<Proxy>,
}

/// The stateful services of an environment: the one thing a deploy may do
/// to them is start them where they are absent (`--no-recreate`).
#[derive(Debug, Clone, Serialize)]
pub struct Stateful {
    services: Vec<String>,
    #[serde(skip)]
    base: Target,
}

impl Stateful {
    /// The stateful services of `target`'s environment.
    /// The proxy counts as one: started where absent, never recreated.
    pub fn of(target: &Target, env: &Env) -> Stateful {
        let mut services = env.stateful_services.clone();
        if let Some(p) = &env.proxy {
            services.push(p.service.clone());
        }
        Stateful {
            services,
            base: target.clone(),
        }
    }
    pub fn services(&self) -> &[String] {
        &self.services
    }

    /// Does starting them start the proxy (so that it cannot be asked before)?
    pub fn starts_proxy(&self) -> bool {
        self.base
            .proxy
            .as_ref()
            .is_some_and(|p| self.services.contains(&p.service))
    }

    /// The proxy's admin directory, when the proxy is among them: created
    /// (mode 0700, the proxy's user) before compose starts it.
    pub fn proxy_admin_dir(&self) -> Option<&std::path::Path> {
        self.base.proxy_admin_dir()
    }

    /// Do all of them run now (read-only)? Then starting them is a no-op a
    /// deploy can skip: `up --no-recreate` still costs compose's whole
    /// project load. `false` when the engine cannot be asked.
    pub fn all_running(&self) -> bool {
        if self.base.engine == EngineKind::Swarm {
            return false;
        }
        let c = Command::new("docker", Effect::ReadOnly)
            .args(["ps", "--filter"])
            .arg(format!(
                "label=com.docker.compose.project={}",
                self.base.project
            ))
            .args(["--filter", "status=running", "--format"])
            .arg("{{.Label \"com.docker.compose.service\"}}")
            .timeout(self.base.limits.look_up_secs);
        crate::cmd::run(&c, false).is_ok_and(|out| {
            self.services
                .iter()
                .all(|s| out.lines().any(|l| l.trim() == s))
        })
    }

    /// Starts stateful services that are not running yet, and only those:
    /// `--no-recreate` keeps an existing container (and its data) as it is,
    /// even when its config changed. A first deploy into an empty
    /// environment needs its queue; no deploy may replace it.
    pub fn start_commands(&self) -> Vec<Command> {
        // Swarm: `docker stack deploy` creates a missing service and leaves
        // one whose spec did not change as it is, so there is no separate step.
        if self.services.is_empty() || self.base.engine == EngineKind::Swarm {
            return Vec::new();
        }
        vec![self
            .base
            .compose(Effect::Mutating)
            .args(["up", "-d", "--no-recreate", "--no-deps", "--no-build"])
            .args(self.services.clone())
            .timeout(self.base.limits.recreate_secs)]
    }
}

impl Target {
    /// All app services of `env_name`, on `tag`.
    pub fn app(
        cfg: &Config,
        env_name: &str,
        env: &Env,
        tag: &str,
        cli: ComposeCli,
    ) -> Result<Target> {
        crate::validate::tag(tag)?;
        let files: Vec<PathBuf> = env.compose_files.iter().map(|f| cfg.resolve(f)).collect();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            bail!(
                "env `{env_name}`: compose file {} not found (compose_files in the config)",
                missing.display()
            );
        }
        // The admin directory, resolved against the config file like every
        // other path; the socket in it must fit a unix socket address.
        let mut proxy = env.proxy.clone();
        if let Some(p) = proxy.as_mut() {
            if let Some(d) = p.admin_dir.as_mut() {
                *d = cfg.resolve(d);
                let sock = d.join(proxy::SOCKET);
                if sock.as_os_str().len() > 100 {
                    bail!(
                        "env `{env_name}`: the proxy's admin socket {} is longer than a unix socket path may be (100 bytes here); set proxy.admin_dir to a shorter directory",
                        sock.display()
                    );
                }
            }
        }
        Ok(Target {
            env: env_name.into(),
            engine: env.engine,
            cli,
            project: env.project.clone(),
            files,
            tag_var: env.tag_var.clone(),
            tag: tag.into(),
            services: env.app_services.clone(),
            images: env.images.clone(),
            vars: env
                .var_values()
                .with_context(|| format!("env `{env_name}`"))?,
            pins: BTreeMap::new(),
            pull: env.pull,
            local: BTreeMap::new(),
            state_dir: None,
            image_only: false,
            limits: env.timeouts,
            proxy,
        })
    }

    /// The app services of `env_name` with no tag yet: for looking up what
    /// runs before the tag is decided.
    pub fn untagged(cfg: &Config, env_name: &str, env: &Env, cli: ComposeCli) -> Result<Target> {
        let mut t = Target::app(cfg, env_name, env, "sha-000000000000", cli)?;
        t.tag.clear();
        Ok(t)
    }

    /// The same target, changing only images when applied (rollback).
    pub fn image_only(self) -> Target {
        Target {
            image_only: true,
            ..self
        }
    }

    /// The same services on another tag (the rollback of a deploy), not
    /// pinned: [`Target::pinned_ref`] says which digests it runs.
    pub fn on_tag(&self, tag: &str) -> Target {
        Target {
            tag: tag.into(),
            pins: BTreeMap::new(),
            local: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// The proxy's admin directory (resolved), when it is switched through one.
    pub fn proxy_admin_dir(&self) -> Option<&std::path::Path> {
        self.proxy
            .as_ref()
            .filter(|_| self.engine == EngineKind::Compose)
            .and_then(|p| p.admin_dir.as_deref())
    }

    /// The same target, rendering its pins in `dir` (the environment's
    /// state directory): without one a pinned target would run the tag.
    pub fn keeping_state_in(self, dir: &std::path::Path) -> Target {
        Target {
            state_dir: Some(dir.to_path_buf()),
            ..self
        }
    }

    /// The same target running the digests a record names: per service
    /// where it names them (several repositories), else its one digest for
    /// the first service's repository (a record from before per-service
    /// digests names no other). A service the record has no digest for
    /// runs its tag.
    pub fn pinned_ref(&self, r: Option<&ImageRef>) -> Target {
        let pins = r
            .map(|r| self.record_digests(r))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(s, d)| Some((self.images.get(&s)?.clone(), d)))
            .collect();
        Target {
            pins,
            ..self.clone()
        }
    }

    /// The digest a record names for each app service: its own where the
    /// record names several, else the record's one digest for the services
    /// of the first service's repository (all of them, with one repository).
    pub fn record_digests(&self, r: &ImageRef) -> BTreeMap<String, String> {
        let first = self.repository();
        self.services
            .iter()
            .filter_map(|s| {
                let d = match r.digests.get(s) {
                    Some(d) => d,
                    None if r.digests.is_empty()
                        && self.images.get(s).map(String::as_str) == first =>
                    {
                        r.digest.as_ref()?
                    }
                    None => return None,
                };
                Some((s.clone(), d.clone()))
            })
            .collect()
    }

    /// The same target noting the image IDs this host has for repositories
    /// no registry digest names (it runs them by tag; the record names them).
    pub fn with_local(&self, local: BTreeMap<String, String>) -> Target {
        Target {
            local,
            ..self.clone()
        }
    }

    /// The local image ID per app service (see [`Target::with_local`]).
    pub fn service_local(&self) -> BTreeMap<String, String> {
        self.services
            .iter()
            .filter_map(|s| {
                let id = self.images.get(s).and_then(|r| self.local.get(r))?;
                Some((s.clone(), id.clone()))
            })
            .collect()
    }

    /// What each app service runs, as the promotion gate compares it: its
    /// registry digest, else this host's image ID.
    pub fn identity(&self) -> BTreeMap<String, String> {
        let mut all = self.service_local();
        all.extend(self.service_digests());
        all
    }

    /// The same of a record (see [`Target::record_digests`]).
    pub fn record_identity(&self, r: &ImageRef) -> BTreeMap<String, String> {
        let mut all: BTreeMap<String, String> = r
            .local
            .iter()
            .filter(|(s, _)| self.services.contains(s))
            .map(|(s, id)| (s.clone(), id.clone()))
            .collect();
        all.extend(self.record_digests(r));
        all
    }

    /// When images are pulled.
    pub fn pull(&self) -> Pull {
        self.pull
    }

    /// The same target with one digest per repository, as the registry answered.
    pub fn pinned_each(&self, pins: BTreeMap<String, String>) -> Target {
        Target {
            pins,
            ..self.clone()
        }
    }

    /// Distinct image repositories of the app services.
    pub fn repositories(&self) -> Vec<String> {
        let mut r: Vec<String> = self.images.values().cloned().collect();
        r.sort();
        r.dedup();
        r
    }

    /// The repository the record's digest is of: the first app service's.
    pub fn repository(&self) -> Option<&str> {
        self.services
            .first()
            .and_then(|s| self.images.get(s))
            .map(String::as_str)
    }

    /// The digest this target runs (of [`Target::repository`]), when pinned.
    pub fn digest(&self) -> Option<&str> {
        self.repository()
            .and_then(|r| self.pins.get(r))
            .map(String::as_str)
    }

    /// The repository of app service `s` (empty when the config names none).
    pub fn image_of(&self, s: &str) -> &str {
        self.images.get(s).map_or("", String::as_str)
    }

    /// The digest each app service runs, where pinned.
    pub fn service_digests(&self) -> BTreeMap<String, String> {
        self.services
            .iter()
            .filter_map(|s| {
                let d = self.images.get(s).and_then(|r| self.pins.get(r))?;
                Some((s.clone(), d.clone()))
            })
            .collect()
    }

    /// What a record says this target runs: the tag, the first service's
    /// digest, and, when the services' images are in several
    /// repositories, every service's.
    pub fn image_ref_record(&self) -> ImageRef {
        ImageRef {
            digests: if self.repositories().len() > 1 {
                self.service_digests()
            } else {
                BTreeMap::new()
            },
            local: self.service_local(),
            ..ImageRef::new(self.tag.clone(), self.digest().map(str::to_string))
        }
    }

    /// Is every app service's image pinned to a digest, or known by this
    /// host's image ID?
    pub fn fully_pinned(&self) -> bool {
        self.repositories()
            .iter()
            .all(|r| self.pins.contains_key(r) || self.local.contains_key(r))
    }

    /// The override that makes compose and the stack file run exactly the
    /// pinned digests: `services.<svc>.image: repo:tag@sha256:...` for each
    /// pinned app service, named by its contents (the new version's and the
    /// recovery's can both be needed in one operation), in the state
    /// directory. Passed after the user's files, so it wins; written just
    /// before a command that reads it starts. `None` when nothing is pinned.
    pub fn pins_file(&self) -> Option<(PathBuf, String)> {
        let dir = self.state_dir.as_ref()?;
        let mut body = String::from(
            "# Rendered by cargo xtask: the digests this operation runs (docs/architecture.md, \"Every service runs its digest\").\nservices:\n",
        );
        let mut any = false;
        for s in &self.services {
            let Some(repo) = self.images.get(s).filter(|r| self.pins.contains_key(*r)) else {
                continue;
            };
            any = true;
            body.push_str(&format!(
                "  {}:\n    image: {}\n",
                serde_json::Value::from(s.as_str()),
                serde_json::Value::from(self.image_ref(repo))
            ));
        }
        if !any {
            return None;
        }
        let hash = crate::audit::sha_hex(body.as_bytes());
        Some((dir.join(format!("pins-{}.yml", &hash[..12])), body))
    }

    /// `repo:tag`, or `repo:tag@digest` when pinned.
    pub fn image_ref(&self, repository: &str) -> String {
        match self.pins.get(repository) {
            Some(d) => format!("{repository}:{}@{d}", self.tag),
            None => format!("{repository}:{}", self.tag),
        }
    }

    /// `docker compose -p P -f F...` with the tag and vars in the environment.
    pub fn compose(&self, effect: Effect) -> Command {
        self.compose_via(effect, None)
    }

    /// `config --format json`: the compose files' render, a read-only
    /// look-up the planners make. It asks the v2 plugin binary directly, as
    /// the preflight does: the program the docker CLI would start, in half
    /// the time (the CLI first scans every plugin). What a plan shows and
    /// runs goes through `docker compose`.
    pub fn render_command(&self) -> Command {
        let plugin = match self.cli {
            ComposeCli::V2Plugin => docker::compose_plugin(),
            ComposeCli::V1Standalone => None,
        };
        self.compose_via(Effect::ReadOnly, plugin)
            .args(["config", "--format", "json"])
            .timeout(self.limits.look_up_secs)
    }

    fn compose_via(&self, effect: Effect, plugin: Option<String>) -> Command {
        let mut c = match (self.cli, plugin) {
            (_, Some(plugin)) => Command::new(&plugin, effect),
            (ComposeCli::V2Plugin, None) => Command::new("docker", effect).arg("compose"),
            (ComposeCli::V1Standalone, None) => Command::new("docker-compose", effect),
        };
        c = c.arg("-p").arg(&self.project);
        for f in &self.files {
            c = c.arg("-f").arg(f.display().to_string());
        }
        // What changes the stack runs the pinned digests; a look-up needs
        // no pins (and so writes no file while a plan is made).
        if effect == Effect::Mutating {
            if let Some((path, body)) = self.pins_file() {
                c = c.arg("-f").arg(path.display().to_string()).file(path, body);
            }
        }
        for (k, v) in &self.vars {
            c = c.env_value(k, v.clone());
        }
        // The proxy's admin directory, bind-mounted into the proxy alone,
        // and the user it runs as (the directory's owner).
        if let Some(d) = self.proxy_admin_dir() {
            for (k, v) in proxy_vars(d) {
                c = c.env(k, v);
            }
        }
        c.env(&self.tag_var, &self.tag)
    }

    /// Distinct `repo:tag` references of the target's images.
    pub fn image_refs(&self) -> Vec<String> {
        let mut refs: Vec<String> = self.images.values().map(|r| self.image_ref(r)).collect();
        refs.sort();
        refs.dedup();
        refs
    }

    pub fn pull_commands(&self) -> Vec<Command> {
        let cmds = match self.engine {
            EngineKind::Swarm => swarm::pull(self),
            EngineKind::Compose => {
                let c = self.compose(Effect::Mutating).arg("pull").arg("--quiet");
                // An image this host has runs as it is.
                let c = match self.pull {
                    Pull::Missing => c.args(["--policy", "missing"]),
                    Pull::Always | Pull::Never => c,
                };
                vec![c.args(self.services.clone())]
            }
        };
        bounded(cmds, self.limits.pull_secs)
    }

    pub fn recreate_commands(&self) -> Vec<Command> {
        let cmds = match self.engine {
            EngineKind::Swarm => swarm::recreate(self),
            EngineKind::Compose => vec![self
                .compose(Effect::Mutating)
                .args(["up", "-d", "--no-deps", "--no-build"])
                .args(self.up_pull())
                .args(self.services.clone())],
        };
        bounded(cmds, self.limits.recreate_secs)
    }

    pub fn stop_commands(&self) -> Vec<Command> {
        let cmds = match self.engine {
            EngineKind::Swarm => swarm::stop(self),
            EngineKind::Compose => vec![self
                .compose(Effect::Mutating)
                .arg("stop")
                .args(self.services.clone())],
        };
        bounded(cmds, self.limits.stop_secs)
    }

    /// The last `lines` log lines of each app service (read-only), for a
    /// failed gate's diagnosis.
    pub fn logs_commands(&self, lines: u32) -> Vec<Command> {
        let n = lines.to_string();
        let cmds = match self.engine {
            EngineKind::Compose => vec![self
                .compose(Effect::ReadOnly)
                .args(["logs", "--no-color", "--tail", n.as_str()])
                .args(self.services.clone())],
            EngineKind::Swarm => self
                .services
                .iter()
                .map(|s| {
                    Command::new("docker", Effect::ReadOnly)
                        .args(["service", "logs", "--no-task-ids", "--tail", n.as_str()])
                        .arg(self.service_name(s))
                })
                .collect(),
        };
        bounded(cmds, self.limits.look_up_secs)
    }

    /// What `compose up` is told about pulling: with `pull = "never"`,
    /// never (compose would otherwise pull an image it lacks by itself).
    pub fn up_pull(&self) -> Vec<&'static str> {
        match self.pull {
            Pull::Never => vec!["--pull", "never"],
            Pull::Always | Pull::Missing => Vec::new(),
        }
    }

    /// The time limits of this environment's engine commands.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

impl Target {
    pub fn env(&self) -> &str {
        &self.env
    }
    pub fn engine(&self) -> EngineKind {
        self.engine
    }
    pub fn project(&self) -> &str {
        &self.project
    }
    pub fn tag(&self) -> &str {
        &self.tag
    }
    pub fn services(&self) -> &[String] {
        &self.services
    }
    pub fn is_image_only(&self) -> bool {
        self.image_only
    }

    /// The read-only look-ups the converge step polls (Swarm only).
    pub fn converge_commands(&self) -> Vec<Command> {
        match self.engine {
            EngineKind::Swarm => bounded(swarm::observe(self), self.limits.look_up_secs),
            EngineKind::Compose => Vec::new(),
        }
    }

    /// A service's name as the engine knows it.
    pub fn service_name(&self, service: &str) -> String {
        match self.engine {
            EngineKind::Swarm => format!("{}_{service}", self.project),
            EngineKind::Compose => service.to_string(),
        }
    }
}

fn bounded(cmds: Vec<Command>, secs: u64) -> Vec<Command> {
    cmds.into_iter().map(|c| c.timeout(secs)).collect()
}
