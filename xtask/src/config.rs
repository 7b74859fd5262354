//! `deployments/deploy.toml` read into typed, validated structs.
//!
//! Parsing (I/O and TOML) is separate from [`Config::validate`], so the rules
//! are unit-tested on strings without touching files. Relative paths in the
//! file are resolved against the file's own directory, so a config and its
//! compose files can move together (tests write whole configs to temp dirs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cmd::Secretable;
use crate::secret;
use crate::validate;

// docs/config.md and docs/deploy.schema.json are generated from these types
// (xtask/tests/config_reference.rs): a field's doc comment is the key's
// description there, so say what it means, its unit and what absent means.

/// The whole deployment config, `deployments/deploy.toml`: the images to
/// build and the environments to deploy. Unknown keys are refused, at every
/// level, and so is a value that looks secret. Relative paths resolve
/// against the file's own directory.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Images the `build` task produces (`[[image]]`, one table per image),
    /// one CI matrix job each. A config that only deploys can have none.
    #[serde(default, rename = "image")]
    pub images: Vec<Image>,
    /// Environments by name (`[env.NAME]`; at least one). NAME is what the
    /// tasks take (`deploy-staging`, `rollback NAME`, `status NAME`).
    #[serde(rename = "env")]
    pub envs: BTreeMap<String, Env>,
    /// Directory the file was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base: PathBuf,
}

/// One image of the build matrix.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The image's name in the build matrix and in `build --image NAME`;
    /// unique among the `[[image]]` tables.
    pub name: String,
    /// Repository without tag, e.g. `127.0.0.1:5000/fetchml/testbed`; the
    /// build tags it with `--tag`.
    pub repository: String,
    /// The Dockerfile, relative to this config file.
    pub dockerfile: PathBuf,
    /// Build context, relative to this config file; absent, the
    /// Dockerfile's directory.
    pub context: Option<PathBuf>,
    /// A workspace package built as a static binary and placed at the context root first.
    pub cargo_package: Option<String>,
    /// Extra `--build-arg`s. Shown in plans and kept in the image, so a
    /// value that looks secret is refused.
    #[serde(default)]
    #[schemars(example = serde_json::json!({ "GIT_SHA": "0123456789ab" }))]
    pub build_args: BTreeMap<String, String>,
}

/// How an environment's stack is run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Docker Compose v2 (`docker compose -p PROJECT`).
    #[default]
    Compose,
    /// A Docker Swarm stack (`docker stack deploy`), see docs/swarm.md.
    Swarm,
}

/// When a deploy pulls its app services' images (`pull` per environment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    /// Every deploy pulls, and runs the digest the registry names for the
    /// tag when the plan is made.
    #[default]
    Always,
    /// Only images this host lacks are pulled; one it has runs as it is
    /// (pinned by its registry digest where it has one, else recorded by
    /// its image ID).
    Missing,
    /// Nothing is pulled and the registry is not asked: every image must be
    /// on this host already, or the deploy is refused before anything is
    /// touched. For images built here and never pushed.
    Never,
}

impl Pull {
    pub fn name(self) -> &'static str {
        match self {
            Pull::Always => "always",
            Pull::Missing => "missing",
            Pull::Never => "never",
        }
    }
}

/// One environment: a stack on one engine, the services a deploy may
/// touch, its health gate, its promotion gate and its proxy.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Env {
    /// What runs the stack: `compose` or `swarm`.
    #[serde(default)]
    pub engine: EngineKind,
    /// Compose project (or swarm stack) name: lowercase letters, digits,
    /// `-` and `_`. Two environments on one engine need different names.
    pub project: String,
    /// The compose files (`-f`, in order), relative to this config file;
    /// on swarm, the stack files.
    pub compose_files: Vec<PathBuf>,
    /// The environment variable that carries the image tag into compose:
    /// the compose files name the app images as `repo:${TAG_VAR}`.
    #[serde(default = "default_tag_var")]
    pub tag_var: String,
    /// The only services deploy and rollback may recreate; each needs an
    /// entry in `images`.
    pub app_services: Vec<String>,
    /// Queue, storage, database: never recreated, never `down`, never lose
    /// a volume. A deploy starts one only where it is absent.
    #[serde(default)]
    pub stateful_services: Vec<String>,
    /// Compose services that are neither app nor stateful services and
    /// that a deploy deliberately never starts (one-off jobs, tools). Every
    /// other compose service must be in one of the two lists.
    #[serde(default)]
    #[schemars(example = ["migrate", "psql"])]
    pub ignored_services: Vec<String>,
    /// Image repository (without tag) per app service, one entry for each
    /// of `app_services` and no other.
    pub images: BTreeMap<String, String>,
    /// When a deploy pulls the app services' images: `"always"` (the
    /// default), `"missing"` (only images this host lacks) or `"never"`
    /// (images built on this host; a missing one is refused).
    #[serde(default)]
    pub pull: Pull,
    /// The health gate's URLs (http or https, no credentials): every one
    /// must answer the health contract (`health`) with the new version
    /// before a deploy counts. With a proxy, the URLs through it.
    pub health_urls: Vec<String>,
    /// The security mode the stack runs in (`dev`, `standard` or `hipaa`):
    /// what the `mode` check of the health contract wants, and what
    /// security-modes-test checks it in. Optional: an app without modes
    /// leaves it out (and the `mode` check).
    pub compliance_mode: Option<String>,
    /// What each health URL must answer (`[env.NAME.health]`, docs/health.md):
    /// by default a JSON body with `status` ok, `version` the tag and
    /// `compliance_mode` the environment's (when it has one).
    #[serde(default)]
    pub health: HealthContract,
    /// How long a deploy's health gate waits for every URL to pass, in
    /// seconds (at least 1); past it the deploy fails and is rolled back.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1))]
    pub health_timeout_secs: u64,
    /// The same limit for a rollback's health gate, in seconds (at least 1).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1))]
    pub rollback_timeout_secs: u64,
    /// Root of the tool's state (audit log, lock), relative to this config
    /// file; the environment's own directory is `<state_dir>/<env>`.
    /// `--state-dir` overrides it.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// A second copy of the audit log, on another disk or mount; appended
    /// with the log, and compared by `audit verify`.
    pub audit_sink: Option<PathBuf>,
    /// Variables passed to compose (ports, mode). A value that looks
    /// secret is refused; a whole value `${NAME}` is read from the tool's
    /// environment at run time, as a secret (redacted wherever shown).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Promotion gate: a tag must have a successful deploy in the named
    /// environment first.
    pub promote_from: Option<String>,
    /// Promotion gate: passing records required for the tag, from
    /// `security-modes-test` and `backup-smoke`.
    #[serde(default)]
    pub require_evidence: Vec<String>,
    /// Time limits of the engine commands; past one, the command's whole
    /// process group is killed and the step fails.
    #[serde(default)]
    pub timeouts: Limits,
    /// Blue/green behind a reverse proxy (`[env.NAME.proxy]`): new app
    /// containers start beside the serving ones and the proxy switches.
    /// Without it, a deploy recreates the app services in place.
    pub proxy: Option<Proxy>,
    /// The checklist printed after a rollback that ran (succeeded or
    /// failed; a refused one changed nothing and gets none), and shown by
    /// its dry run and in its JSON output. `{env}` in an item becomes the
    /// environment's name. Name what a rollback does not put back in your
    /// stack (queues, caches, schema) and whom to tell. Absent, a generic
    /// checklist; `[]`, none.
    #[serde(default = "default_post_rollback")]
    pub post_rollback: Vec<String>,
    /// A webhook told of every deploy, promote and rollback outcome
    /// (`[env.NAME.notify]`): its audit record and the new chain head.
    pub notify: Option<Notify>,
    /// Where the environment's engine lives, when not on this machine:
    /// `ssh://user@host[:port]` (docker's own SSH transport). Every engine
    /// command of the environment runs there, and its health URLs and
    /// proxy admin socket are reached there through an SSH tunnel the tool
    /// opens for the operation (docs/architecture.md, "Remote hosts").
    #[schemars(example = &"ssh://deploy@staging.example:22")]
    pub host: Option<String>,
    /// A docker context to run the environment's engine commands in
    /// (`docker context ls`); the other way to say where it lives.
    #[schemars(example = &"staging")]
    pub context: Option<String>,
    /// For an environment on an SSH host (`host`): the directory on that
    /// host holding its deploy lock and audit chain, as `<dir>/<env>`;
    /// relative to the SSH user's home unless absolute. Operators on
    /// different machines take this one lock and append to this one chain;
    /// each machine keeps a mirror of the chain in its own `state_dir`.
    #[serde(default = "default_host_state_dir")]
    #[schemars(example = &".fetchml-xtask/state")]
    pub host_state_dir: String,
}

fn default_host_state_dir() -> String {
    ".fetchml-xtask/state".into()
}

/// An environment's webhook. Per environment, because staging and
/// production usually tell different channels, and a rehearsal
/// environment tells none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The environment variable that holds the webhook URL when the task
    /// runs (e.g. `FETCHML_NOTIFY_URL`). A webhook URL carries its token,
    /// so the file never holds one.
    #[schemars(example = &"FETCHML_NOTIFY_URL")]
    pub url_env: String,
    /// Time limit of one attempt, in seconds (1 to 30).
    #[serde(default = "default_notify_timeout")]
    #[schemars(range(min = 1, max = 30))]
    pub timeout_secs: u64,
    /// Attempts after a failed first one (0 to 5), after 0.25 s, 0.5 s, ...
    #[serde(default = "default_notify_retries")]
    #[schemars(range(max = 5))]
    pub retries: u32,
    /// Refused when the config loads: only here to say why.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub url: Option<String>,
}

fn default_notify_timeout() -> u64 {
    5
}
fn default_notify_retries() -> u32 {
    2
}

impl Notify {
    fn validate(&self) -> Result<()> {
        const WHY: &str = "a webhook URL carries its token, so the config never holds one: write url_env = \"NAME\" and export NAME=<url> where the task runs";
        if self.url.is_some() || self.url_env.contains("://") {
            bail!("notify: {WHY}");
        }
        validate::var_name(&self.url_env).context("notify.url_env")?;
        if !(1..=30).contains(&self.timeout_secs) {
            bail!("notify.timeout_secs must be 1 to 30");
        }
        if self.retries > 5 {
            bail!("notify.retries must be 0 to 5");
        }
        Ok(())
    }

    /// The webhook as a plan carries it: the URL read from `url_env` now.
    pub fn hook(&self) -> crate::notify::Hook {
        crate::notify::Hook::from_env(&self.url_env, self.timeout_secs, self.retries)
    }
}

/// The reverse proxy (HAProxy) in front of an environment's HTTP app
/// services, and how a deploy uses it. See docs/architecture.md, "Blue/green".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    /// The compose service running the proxy. Started where absent, like a
    /// stateful service; a deploy or a rollback never recreates it.
    pub service: String,
    /// The host directory holding the proxy's runtime API socket
    /// (`admin.sock`) and its saved server state, mounted into the proxy
    /// container only: absolute, or relative to the config file. The tool
    /// passes it to compose as `FETCHML_PROXY_ADMIN_DIR`. Compose only: on
    /// Swarm the proxy finds tasks by DNS and needs none.
    pub admin_dir: Option<PathBuf>,
    /// HTTP app services behind the proxy, and the container port each
    /// serves on. The proxy's route for service S has `@id` `fetchml-S`.
    pub routes: BTreeMap<String, u16>,
    /// The other app services (workers: no traffic) and the container port
    /// where each answers the health path; the gate asks them directly.
    #[serde(default)]
    pub probe_ports: BTreeMap<String, u16>,
    /// The path the gate asks each new container at its own address, before
    /// any traffic reaches it.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// After a switch, how long the old containers may finish in-flight
    /// requests before they are stopped or kept warm, in seconds.
    #[serde(default = "default_drain")]
    pub drain_secs: u64,
    /// What happens to the previous set's HTTP containers after the drain:
    /// `warm` (kept running without traffic: a rollback is a switch) or
    /// `stopped` (a rollback starts them first). Workers are always stopped.
    #[serde(default)]
    pub keep_previous: KeepPrevious,
    /// Containers per app service in each set (default 1). A new set gets
    /// exactly these, never a count taken from what runs: after an
    /// interrupted deploy what runs can be several sets.
    #[serde(default)]
    #[schemars(example = serde_json::json!({ "api": 2 }))]
    pub replicas: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeepPrevious {
    /// Kept running without traffic: a rollback is a proxy switch.
    #[default]
    Warm,
    /// Stopped: a rollback starts them first.
    Stopped,
}

impl Proxy {
    /// The container port the gate probes for `service`.
    pub fn port(&self, service: &str) -> Option<u16> {
        self.routes
            .get(service)
            .or_else(|| self.probe_ports.get(service))
            .copied()
    }

    /// How many containers of `service` a set runs.
    pub fn replicas(&self, service: &str) -> u32 {
        self.replicas.get(service).copied().unwrap_or(1)
    }

    fn validate(&self, env: &Env) -> Result<()> {
        if self.routes.is_empty() {
            bail!("proxy.routes is empty: name the HTTP app services behind the proxy");
        }
        for s in self
            .routes
            .keys()
            .chain(self.probe_ports.keys())
            .chain(self.replicas.keys())
        {
            if !env.app_services.contains(s) {
                bail!("proxy names `{s}`, which is not in app_services");
            }
        }
        if let Some((s, _)) = self.replicas.iter().find(|(_, n)| **n == 0) {
            bail!(
                "proxy.replicas: `{s}` = 0; a set needs at least one container of each app service"
            );
        }
        if let Some(s) = self
            .routes
            .keys()
            .find(|s| self.probe_ports.contains_key(*s))
        {
            bail!("proxy: `{s}` is in both routes and probe_ports");
        }
        if let Some(s) = env.app_services.iter().find(|s| self.port(s).is_none()) {
            bail!("proxy: app service `{s}` is in neither routes nor probe_ports: the gate needs its port");
        }
        if env.app_services.contains(&self.service) || env.stateful_services.contains(&self.service)
        {
            bail!(
                "proxy.service `{}` is also an app or stateful service",
                self.service
            );
        }
        validate::service_name(&self.service)?;
        if !self.health_path.starts_with('/') || self.health_path.contains(char::is_whitespace) {
            bail!(
                "proxy.health_path `{}` must be a path like /health",
                self.health_path
            );
        }
        match (&self.admin_dir, env.engine) {
            (Some(d), _) => admin_dir(d)?,
            (None, EngineKind::Compose) => {
                bail!("proxy.admin_dir is required on compose: the switch goes through the socket in it")
            }
            _ => {}
        }
        Ok(())
    }
}

/// A directory path, absolute or relative to the config file: not a URL,
/// not `~` (no shell expands it), and short enough for the socket in it.
fn admin_dir(d: &Path) -> Result<()> {
    let s = d.to_string_lossy();
    if s.is_empty() || s.contains("://") || s.starts_with('~') || s.contains(['$', '\n', ',']) {
        bail!(
            "proxy.admin_dir `{s}` must be a directory path, absolute or relative to the config file (the proxy's admin socket is created in it)"
        );
    }
    Ok(())
}

fn default_health_path() -> String {
    "/health".into()
}
fn default_drain() -> u64 {
    2
}

/// Per step-kind time limits of engine commands, in seconds. The defaults
/// fit the real stack on a slow registry; `[env.NAME.timeouts]` overrides
/// them, and dry-run shows each command's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// `pull` of the app images (and a rollback's image pull).
    pub pull_secs: u64,
    /// `up -d` of the app services, or a swarm `stack deploy`/`service update`.
    pub recreate_secs: u64,
    /// `stop` of the app services, and starting absent stateful ones.
    pub stop_secs: u64,
    /// Read-only look-ups against the engine (`ps`, `inspect`, `config`).
    pub look_up_secs: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            pull_secs: 600,
            recreate_secs: 300,
            stop_secs: 120,
            look_up_secs: 30,
        }
    }
}

/// What a health URL must answer for the gate and `status` to count it
/// (docs/health.md is the reference).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthContract {
    /// `json`: a 2xx whose JSON body passes `checks`; `2xx`: any 2xx
    /// answer, with the version proven by the image the gated containers run.
    #[serde(default)]
    pub contract: ContractKind,
    /// The JSON checks that apply (`status`, `version`, `mode`); default:
    /// all three, `mode` only when the environment sets `compliance_mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = ["status", "version"])]
    pub checks: Option<Vec<Check>>,
    /// The JSON field the `status` check reads.
    #[serde(default = "default_status_field")]
    pub status_field: String,
    /// The values of `status_field` that count as healthy.
    #[serde(default = "default_status_ok")]
    pub status_ok: Vec<String>,
    /// The JSON field the `version` check reads; it must equal the tag.
    #[serde(default = "default_version_field")]
    pub version_field: String,
    /// The JSON field the `mode` check reads; it must equal `compliance_mode`.
    #[serde(default = "default_mode_field")]
    pub mode_field: String,
}

/// The kinds of health contract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ContractKind {
    #[default]
    #[serde(rename = "json")]
    Json,
    #[serde(rename = "2xx")]
    Plain2xx,
}

/// One check of the JSON health contract.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Status,
    Version,
    Mode,
}

impl Default for HealthContract {
    fn default() -> Self {
        HealthContract {
            contract: ContractKind::Json,
            checks: None,
            status_field: default_status_field(),
            status_ok: default_status_ok(),
            version_field: default_version_field(),
            mode_field: default_mode_field(),
        }
    }
}

impl HealthContract {
    /// The checks that apply in an environment with `mode` (none for `2xx`).
    pub fn checks(&self, mode: Option<&str>) -> Vec<Check> {
        match (&self.contract, &self.checks) {
            (ContractKind::Plain2xx, _) => Vec::new(),
            (ContractKind::Json, Some(c)) => c.clone(),
            (ContractKind::Json, None) => {
                let mut c = vec![Check::Status, Check::Version];
                if mode.is_some() {
                    c.push(Check::Mode);
                }
                c
            }
        }
    }

    fn validate(&self, mode: Option<&str>) -> Result<()> {
        let checks = self.checks.as_deref().unwrap_or_default();
        if self.contract == ContractKind::Plain2xx && self.checks.is_some() {
            bail!("health.checks applies to the json contract only: remove it, or set health.contract = \"json\"");
        }
        if checks.contains(&Check::Mode) && mode.is_none() {
            bail!("health.checks has `mode` but the environment sets no compliance_mode: set one, or drop the check");
        }
        for (k, v) in [
            ("status_field", &self.status_field),
            ("version_field", &self.version_field),
            ("mode_field", &self.mode_field),
        ] {
            if v.trim().is_empty() {
                bail!("health.{k} is empty: name the JSON field, or leave the check out of health.checks");
            }
        }
        if self.status_ok.is_empty() {
            bail!("health.status_ok is empty: list the status values that count as healthy");
        }
        Ok(())
    }
}

fn default_status_field() -> String {
    "status".into()
}
fn default_status_ok() -> Vec<String> {
    vec!["ok".into()]
}
fn default_version_field() -> String {
    "version".into()
}
fn default_mode_field() -> String {
    "compliance_mode".into()
}

fn default_tag_var() -> String {
    "FETCHML_TAG".into()
}
fn default_timeout() -> u64 {
    60
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(".state")
}
fn default_post_rollback() -> Vec<String> {
    vec![
        "confirm the audit chain: cargo xtask audit verify {env}".into(),
        "find the root cause of the failed version before deploying it again".into(),
    ]
}

/// The JSON Schema of deploy.toml, derived from [`Config`]: shipped as
/// docs/deploy.schema.json, rendered as docs/config.md.
pub fn schema() -> serde_json::Value {
    let mut s = schemars::schema_for!(Config).to_value();
    s["title"] = "deploy.toml".into();
    no_null(&mut s);
    s
}

/// TOML has no null (an optional key is left out), so the `null` that
/// schemars allows for an `Option` goes.
fn no_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(m) = v else { return };
    if let Some(Value::Array(ts)) = m.get_mut("type") {
        ts.retain(|t| t != "null");
        if ts.len() == 1 {
            let t = ts.remove(0);
            m.insert("type".into(), t);
        }
    }
    if let Some(Value::Array(alts)) = m.get_mut("anyOf") {
        alts.retain(|a| a.get("type").is_none_or(|t| t != "null"));
        if let [Value::Object(only)] = alts.as_slice() {
            let only = only.clone();
            m.remove("anyOf");
            for (k, x) in only {
                m.entry(k).or_insert(x);
            }
        }
    }
    for (k, x) in m.iter_mut() {
        if k == "default" || k == "examples" {
            continue;
        }
        match x {
            Value::Array(a) => a.iter_mut().for_each(no_null),
            other => no_null(other),
        }
    }
}

const MODES: [&str; 3] = ["dev", "standard", "hipaa"];
/// Evidence the promotion gate knows how to look up.
pub const EVIDENCE: [&str; 2] = ["security-modes-test", "backup-smoke"];

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading config {}: pass --config PATH to use another file",
                path.display()
            )
        })?;
        let mut cfg = Self::parse(&text, &path.display().to_string())?;
        cfg.base = base_dir(path);
        Ok(cfg)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        let cfg: Config = from_toml(text, origin)?;
        cfg.validate()
            .with_context(|| format!("{origin}: invalid config"))?;
        Ok(cfg)
    }

    /// Checks the rules that types alone cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.envs.is_empty() {
            bail!("no environments: add an [env.NAME] table");
        }
        let mut image_names = std::collections::BTreeSet::new();
        for img in &self.images {
            if !image_names.insert(&img.name) {
                bail!("image `{}` is declared twice", img.name);
            }
            validate::repository(&img.repository)
                .with_context(|| format!("image `{}`", img.name))?;
            for (k, v) in &img.build_args {
                if let Some(why) = secret::config_refusal(k, v) {
                    bail!("image `{}`: build_args.{k} {why}: build args are shown in plans and kept in the image; never pass a secret as one", img.name);
                }
            }
        }
        for (name, env) in &self.envs {
            validate::env_name(name)?;
            env.validate(name, self)
                .with_context(|| format!("env `{name}`"))?;
        }
        Ok(())
    }

    /// The environment called `name`, or an error listing the valid ones.
    pub fn env(&self, name: &str) -> Result<&Env> {
        self.envs.get(name).ok_or_else(|| {
            let valid: Vec<&str> = self.envs.keys().map(String::as_str).collect();
            anyhow::anyhow!(
                "unknown environment `{name}`: valid environments are {}",
                valid.join(", ")
            )
        })
    }

    /// Resolves a path from the config against the config's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        normalize(&self.base.join(p))
    }
}

impl Env {
    /// Where the environment's engine lives (`host` or `context`, or here).
    pub fn location(&self) -> Result<crate::cmd::remote::Where> {
        use crate::cmd::remote::Where;
        match (&self.host, &self.context) {
            (Some(_), Some(_)) => {
                bail!("`host` and `context` both say where the environment lives: keep one")
            }
            (Some(h), None) => Where::parse_host(h),
            (None, Some(c)) if validate::project_name(c).is_err() => {
                bail!("context `{c}` is not a docker context name")
            }
            (None, Some(c)) => Ok(Where::Context(c.clone())),
            (None, None) => Ok(Where::Local),
        }
    }

    fn validate(&self, name: &str, cfg: &Config) -> Result<()> {
        validate::project_name(&self.project)?;
        self.location()?;
        validate::var_name(&self.tag_var)?;
        if self.compose_files.is_empty() {
            bail!("compose_files is empty");
        }
        if self.app_services.is_empty() {
            bail!("app_services is empty: deploy needs at least one service to recreate");
        }
        for s in self.app_services.iter().chain(&self.stateful_services) {
            validate::service_name(s)?;
        }
        if let Some(s) = self
            .app_services
            .iter()
            .find(|s| self.stateful_services.contains(s))
        {
            bail!("service `{s}` is both an app service and a stateful service");
        }
        for s in &self.ignored_services {
            validate::service_name(s)?;
            if self.app_services.contains(s) || self.stateful_services.contains(s) {
                bail!("service `{s}` is in ignored_services and in app_services or stateful_services: pick one");
            }
        }
        for s in &self.app_services {
            let repo = self.images.get(s).with_context(|| {
                format!("app service `{s}` has no image repository in `images`")
            })?;
            validate::repository(repo).with_context(|| format!("images.{s}"))?;
        }
        if let Some(extra) = self.images.keys().find(|k| !self.app_services.contains(k)) {
            bail!("images.{extra} names a service that is not in app_services");
        }
        if self.health_urls.is_empty() {
            bail!("health_urls is empty: the health gate needs at least one URL");
        }
        for u in &self.health_urls {
            if let Some(why) = secret::secret_value(u) {
                bail!("a health url holds {why}: plans and records show health urls; serve /health without credentials");
            }
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("health url `{u}` must start with http:// or https://");
            }
        }
        if let Some(mode) = self
            .compliance_mode
            .as_deref()
            .filter(|m| !MODES.contains(m))
        {
            bail!(
                "compliance_mode `{mode}` is not one of {}",
                MODES.join(", ")
            );
        }
        self.health.validate(self.compliance_mode.as_deref())?;
        if self.health_timeout_secs == 0 || self.rollback_timeout_secs == 0 {
            bail!("timeouts must be at least 1 second");
        }
        for (k, v) in &self.vars {
            validate::var_name(k)?;
            if k == &self.tag_var {
                bail!("vars.{k} would override the tag variable; the tag comes from --tag");
            }
            check_var(k, v)?;
        }
        if let Some(from) = &self.promote_from {
            if from == name {
                bail!("promote_from names the environment itself");
            }
            if !cfg.envs.contains_key(from) {
                bail!("promote_from names unknown environment `{from}`");
            }
        }
        if let Some(p) = &self.proxy {
            p.validate(self)?;
        }
        for item in &self.post_rollback {
            if item.trim().is_empty() || item.contains(char::is_control) {
                bail!("post_rollback: every item is one line of text, not empty");
            }
            if let Some(why) = secret::secret_value(item) {
                bail!(
                    "a post_rollback item holds {why}: the checklist is printed and shown in plans"
                );
            }
        }
        if let Some(n) = &self.notify {
            n.validate()?;
        }
        for e in &self.require_evidence {
            if !EVIDENCE.contains(&e.as_str()) {
                bail!(
                    "require_evidence `{e}` is not one of {}",
                    EVIDENCE.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The vars as commands get them: a `${NAME}` value is read from the
    /// tool's environment now, marked secret (redacted wherever shown, and
    /// registered so no output or record carries it); an unset or empty one
    /// is refused. Every plan that passes vars reads them here, so a dry run
    /// refuses exactly what the real run would.
    pub fn var_values(&self) -> Result<BTreeMap<String, Secretable>> {
        var_values(&self.vars)
    }

    /// The post-rollback checklist of the environment called `name`.
    pub fn post_rollback(&self, name: &str) -> Vec<String> {
        self.post_rollback
            .iter()
            .map(|s| s.replace("{env}", name))
            .collect()
    }

    /// The directory on the environment's SSH host holding its lock and
    /// chain, or `None` when they are kept on this machine (no `host`).
    pub fn host_state(&self, name: &str) -> Result<Option<(crate::cmd::remote::Where, String)>> {
        let at = self.location()?;
        if !matches!(at, crate::cmd::remote::Where::Ssh { .. }) {
            return Ok(None);
        }
        let d = self.host_state_dir.trim_end_matches('/');
        if d.is_empty() || d.chars().any(|c| c.is_control()) {
            bail!(
                "host_state_dir `{}` is not a directory path",
                self.host_state_dir
            );
        }
        Ok(Some((at, format!("{d}/{name}"))))
    }

    /// The directory holding this environment's audit log and lock.
    pub fn state_dir(&self, cfg: &Config, name: &str, override_root: Option<&Path>) -> PathBuf {
        match override_root {
            Some(root) => root.join(name),
            None => cfg.resolve(&self.state_dir).join(name),
        }
    }
}

/// The `NAME` of a whole value `${NAME}`.
pub fn env_ref(value: &str) -> Option<&str> {
    value.strip_prefix("${")?.strip_suffix('}')
}

/// A var's value, checked when the config is loaded: `${NAME}` (read at
/// run time) or a literal that does not look secret by `crate::secret`'s
/// rules, the ones security-modes applies to compose files.
fn check_var(k: &str, v: &str) -> Result<()> {
    if let Some(name) = env_ref(v) {
        return validate::var_name(name).with_context(|| format!("vars.{k}"));
    }
    if v.contains("${") {
        bail!("vars.{k}: only a whole value `${{NAME}}` is read from the environment; nothing else is interpolated");
    }
    if let Some(why) = secret::config_refusal(k, v) {
        bail!(
            "vars.{k} {why}: the config holds no secrets; put it in a compose secrets file (`secrets:`, read as {k}_FILE), or write {k} = \"${{{k}}}\" to read it from the environment at run time"
        );
    }
    Ok(())
}

/// See [`Env::var_values`]; shared with security-modes' env stacks.
pub fn var_values(vars: &BTreeMap<String, String>) -> Result<BTreeMap<String, Secretable>> {
    vars.iter()
        .map(|(k, v)| {
            let value = match env_ref(v) {
                None => Secretable::Plain(v.clone()),
                Some(name) => match std::env::var(name) {
                    Ok(s) if !s.is_empty() => {
                        crate::cmd::redact::register(&s);
                        Secretable::Secret(s)
                    }
                    _ => bail!(
                        "vars.{k} reads ${{{name}}} from the environment, and {name} is not set (or empty): export {name} and run again; nothing was changed"
                    ),
                },
            };
            Ok((k.clone(), value))
        })
        .collect()
}

/// Deserializes TOML; an error is one line naming `origin`, line, column and
/// the offending key (shared by deploy.toml and security-modes.toml).
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let (line, col) = inner
            .span()
            .map(|s| line_col(text, s.start))
            .unwrap_or((1, 1));
        let key = if key == "." {
            String::new()
        } else {
            format!(" (key `{key}`)")
        };
        let msg = inner.message().trim().replace('\n', ": ");
        anyhow::anyhow!("{origin}:{line}:{col}: {msg}{key}")
    })
}

/// The absolute directory of a config file: what its relative paths resolve against.
pub fn base_dir(path: &Path) -> PathBuf {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    std::path::absolute(&base).unwrap_or(base)
}

/// Removes `.` and `..` lexically, so paths read as plainly as they are written.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
[[image]]
name = "testbed"
repository = "127.0.0.1:5000/fetchml/testbed"
dockerfile = "testbed/Dockerfile"

[env.staging]
project = "fetchml-staging"
compose_files = ["docker-compose.yml"]
app_services = ["api", "worker"]
stateful_services = ["redis"]
images = { api = "127.0.0.1:5000/fetchml/testbed", worker = "127.0.0.1:5000/fetchml/testbed" }
health_urls = ["http://127.0.0.1:18080/health"]
compliance_mode = "standard"

[env.prod]
project = "fetchml-prod"
compose_files = ["docker-compose.yml"]
app_services = ["api"]
images = { api = "127.0.0.1:5000/fetchml/testbed" }
health_urls = ["http://127.0.0.1:19080/health"]
compliance_mode = "hipaa"
promote_from = "staging"
require_evidence = ["security-modes-test"]
"#;

    fn err(text: &str) -> String {
        format!("{:#}", Config::parse(text, "deploy.toml").unwrap_err())
    }

    #[test]
    fn good_config_parses() {
        let cfg = Config::parse(GOOD, "deploy.toml").unwrap();
        assert_eq!(cfg.envs.len(), 2);
        assert_eq!(cfg.env("staging").unwrap().tag_var, "FETCHML_TAG");
        assert_eq!(
            cfg.env("prod").unwrap().promote_from.as_deref(),
            Some("staging")
        );
    }

    #[test]
    fn post_rollback_is_the_config_s_with_env_named_else_a_generic_default() {
        let cfg = Config::parse(GOOD, "deploy.toml").unwrap();
        assert_eq!(
            cfg.env("prod").unwrap().post_rollback("prod"),
            [
                "confirm the audit chain: cargo xtask audit verify prod",
                "find the root cause of the failed version before deploying it again"
            ]
        );
        let own = GOOD.replacen(
            "compliance_mode = \"standard\"",
            "compliance_mode = \"standard\"\npost_rollback = [\"drain the {env} queue\", \"tell #ops\"]",
            1,
        );
        let cfg = Config::parse(&own, "deploy.toml").unwrap();
        assert_eq!(
            cfg.env("staging").unwrap().post_rollback("staging"),
            ["drain the staging queue", "tell #ops"]
        );
        let none = own.replace("[\"drain the {env} queue\", \"tell #ops\"]", "[]");
        let cfg = Config::parse(&none, "deploy.toml").unwrap();
        assert!(cfg
            .env("staging")
            .unwrap()
            .post_rollback("staging")
            .is_empty());
        for bad in [
            "\"\"",
            "\"two\\nlines\"",
            "\"see https://u:hunter2-zq@h/x\"",
        ] {
            let e = err(&own.replace("\"tell #ops\"", bad));
            assert!(
                e.contains("post_rollback") && !e.contains("hunter2-zq"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn proxy_admin_dir_is_a_directory_path_and_required_on_compose() {
        let with = |proxy: &str| {
            GOOD.replacen(
                "compliance_mode = \"standard\"",
                &format!("compliance_mode = \"standard\"\nproxy = {{ service = \"proxy\", routes = {{ api = 8080 }}, probe_ports = {{ worker = 8080 }}{proxy} }}"),
                1,
            )
        };
        let cfg = Config::parse(&with(", admin_dir = \"../state/proxy\""), "deploy.toml").unwrap();
        let p = cfg.env("staging").unwrap().proxy.as_ref().unwrap();
        assert_eq!(p.admin_dir.as_deref(), Some(Path::new("../state/proxy")));
        assert!(err(&with("")).contains("proxy.admin_dir is required on compose"));
        for bad in ["http://127.0.0.1:18090", "~/proxy", ""] {
            let e = err(&with(&format!(", admin_dir = \"{bad}\"")));
            assert!(e.contains("must be a directory path"), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_env_lists_valid_ones() {
        let cfg = Config::parse(GOOD, "deploy.toml").unwrap();
        let e = cfg.env("production").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown environment `production`: valid environments are prod, staging"
        );
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let e = err("[env.staging]\nproject = \"x\"\ncompose_files = [\"a.yml\"\n");
        assert!(
            e.starts_with("deploy.toml:4:1: invalid array: expected `]`"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn the_health_contract_defaults_to_the_json_one_and_is_checked() {
        let cfg = Config::parse(GOOD, "deploy.toml").unwrap();
        let prod = cfg.env("prod").unwrap();
        assert_eq!(prod.health, HealthContract::default());
        assert_eq!(
            prod.health.checks(prod.compliance_mode.as_deref()),
            [Check::Status, Check::Version, Check::Mode]
        );
        // No compliance_mode: no mode check, unless asked for (refused).
        let no_mode = GOOD.replace("compliance_mode = \"hipaa\"\n", "");
        let cfg = Config::parse(&no_mode, "deploy.toml").unwrap();
        let prod = cfg.env("prod").unwrap();
        assert_eq!(prod.health.checks(None), [Check::Status, Check::Version]);
        let with = |mode: &str, health: &str| {
            GOOD.replace(
                "compliance_mode = \"hipaa\"\n",
                &format!("{mode}health = {{ {health} }}\n"),
            )
        };
        assert!(err(&with("", "checks = [\"mode\"]")).contains("sets no compliance_mode"));
        assert!(err(&with("", "contract = \"2xx\", checks = [\"status\"]"))
            .contains("health.checks applies to the json contract only"));
        assert!(err(&with("", "status_ok = []")).contains("health.status_ok is empty"));
        assert!(err(&with("", "contract = \"plain\"")).contains("unknown variant `plain`"));
        let cfg = Config::parse(&with("", "contract = \"2xx\""), "deploy.toml").unwrap();
        let prod = cfg.env("prod").unwrap();
        assert_eq!(prod.health.contract, ContractKind::Plain2xx);
        assert!(prod.health.checks(None).is_empty());
    }

    #[test]
    fn wrong_type_names_the_key() {
        let bad = GOOD.replace("app_services = [\"api\"]", "app_services = \"api\"");
        let e = err(&bad);
        assert!(e.contains("key `env.prod.app_services`"), "{e}");
        assert!(e.starts_with("deploy.toml:19:"), "{e}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let bad = GOOD.replace(
            "compliance_mode = \"hipaa\"",
            "compliance_mode = \"hipaa\"\nhealth_url = \"x\"",
        );
        let e = err(&bad);
        assert!(e.contains("unknown field `health_url`"), "{e}");
    }

    #[test]
    fn rules() {
        let cases = [
            (
                "stateful_services = [\"redis\"]",
                "stateful_services = [\"redis\", \"api\"]",
                "both an app service and a stateful service",
            ),
            (
                "compliance_mode = \"standard\"",
                "compliance_mode = \"lax\"",
                "compliance_mode `lax` is not one of",
            ),
            (
                "project = \"fetchml-staging\"",
                "project = \"Fetch ML\"",
                "project name",
            ),
            (
                "promote_from = \"staging\"",
                "promote_from = \"qa\"",
                "unknown environment `qa`",
            ),
            (
                "require_evidence = [\"security-modes-test\"]",
                "require_evidence = [\"vibes\"]",
                "require_evidence `vibes`",
            ),
            (
                "health_urls = [\"http://127.0.0.1:19080/health\"]",
                "health_urls = [\"127.0.0.1:19080\"]",
                "must start with http",
            ),
            (
                "app_services = [\"api\"]\n",
                "app_services = [\"api\", \"web\"]\n",
                "app service `web` has no image repository",
            ),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "fixture lacks {from}");
            let e = err(&GOOD.replacen(from, to, 1));
            assert!(e.contains(want), "{to}: {e}");
        }
    }

    fn with_vars(vars: &str) -> String {
        GOOD.replacen(
            "compliance_mode = \"standard\"",
            &format!("compliance_mode = \"standard\"\nvars = {{ {vars} }}"),
            1,
        )
    }

    #[test]
    fn secret_looking_vars_are_refused_in_one_line() {
        let cases = [
            (
                "DB_PASSWORD = \"hunter2-zq\"",
                "vars.DB_PASSWORD has a secret name",
            ),
            (
                "PGPASSWORD = \"postgres\"",
                "vars.PGPASSWORD has a secret name",
            ),
            (
                "SENTRY_DSN = \"https://k3y@sentry.example/1\"",
                "vars.SENTRY_DSN is a DSN",
            ),
            (
                "UPSTREAM = \"https://u:hunter2-zq@h/x\"",
                "vars.UPSTREAM holds a URL with a password",
            ),
            ("DB_PASSWORD = \"pre-${X}\"", "only a whole value `${NAME}`"),
        ];
        for (vars, want) in cases {
            let e = err(&with_vars(vars));
            assert!(e.contains(want), "{vars}: {e}");
            assert!(
                !e.contains("hunter2-zq") && !e.contains("k3y@"),
                "the value is never shown: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        let e = err(&with_vars("API_TOKEN = \"abc123\""));
        assert!(
            e.contains("compose secrets file") && e.contains("API_TOKEN = \"${API_TOKEN}\""),
            "{e}"
        );
    }

    #[test]
    fn references_settings_and_plain_vars_load() {
        let ok = with_vars(
            "DB_PASSWORD = \"${XTASK_TEST_DB_PASSWORD}\", TOKEN_TTL = \"3600\", PASSWORD_ACCESS = \"true\", FETCHML_SECRETS_DIR = \"/etc/x\", API_PORT = \"9201\"",
        );
        Config::parse(&ok, "deploy.toml").unwrap();
    }

    #[test]
    fn health_urls_with_credentials_are_refused() {
        let bad = GOOD.replace(
            "http://127.0.0.1:18080/health",
            "http://u:hunter2-zq@127.0.0.1:18080/health",
        );
        let e = err(&bad);
        assert!(
            e.contains("a health url holds a URL with a password") && !e.contains("hunter2-zq"),
            "{e}"
        );
    }

    #[test]
    fn a_reference_is_read_at_run_time_as_a_secret_and_a_missing_one_refused() {
        let vars: BTreeMap<String, String> = [
            (
                "DB_PASSWORD".to_string(),
                "${XTASK_CFG_TEST_UNSET_VAR}".to_string(),
            ),
            ("API_PORT".to_string(), "9201".to_string()),
        ]
        .into();
        let e = format!("{:#}", var_values(&vars).unwrap_err());
        assert_eq!(e, "vars.DB_PASSWORD reads ${XTASK_CFG_TEST_UNSET_VAR} from the environment, and XTASK_CFG_TEST_UNSET_VAR is not set (or empty): export XTASK_CFG_TEST_UNSET_VAR and run again; nothing was changed");
        // PATH is set in every test run: read, and marked secret.
        let vars: BTreeMap<String, String> =
            [("X_PASSWORD".to_string(), "${PATH}".to_string())].into();
        let v = var_values(&vars).unwrap();
        assert_eq!(v["X_PASSWORD"].shown(), "***");
        assert_eq!(v["X_PASSWORD"].expose(), std::env::var("PATH").unwrap());
    }

    #[test]
    fn a_webhook_url_in_the_file_is_refused_and_a_variable_name_is_taken() {
        let with = |t: &str| format!("{GOOD}\n[env.staging.notify]\n{t}\n");
        for bad in [
            "url_env = \"NOTIFY\"\nurl = \"https://hooks.example/T0/secret\"",
            "url_env = \"https://hooks.example/T0/secret\"",
        ] {
            let e = err(&with(bad));
            assert!(e.contains("carries its token"), "{e}");
            assert!(!e.contains("T0/secret"), "{e}");
        }
        assert!(err(&with("url_env = \"N\"\nretries = 9")).contains("retries must be 0 to 5"));
        let cfg = Config::parse(&with("url_env = \"FETCHML_NOTIFY_URL\""), "t").unwrap();
        let n = cfg.envs["staging"].notify.as_ref().unwrap();
        assert_eq!((n.timeout_secs, n.retries), (5, 2));
    }
}
