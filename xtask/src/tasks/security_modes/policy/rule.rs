//! The static rule kinds a policy can name, with their parameters and the
//! checks on those parameters that types alone cannot express. What each
//! kind catches is in `rules`; the runbook lists them for policy authors.

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::validate;

/// A static rule; `kind` picks the check, the other keys are its parameters.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Rule {
    /// `privileged: true` is refused.
    NoPrivileged,
    /// No bind mount of the Docker socket (or the directory holding it).
    NoDockerSocket,
    /// No bind mount of a host directory that exposes the host itself.
    NoHostMounts {
        /// Host paths refused as a bind source, and everything below them
        /// (`/` only as itself).
        #[serde(default = "default_host_paths")]
        paths: Vec<String>,
        /// Exact host paths that may be mounted read-only even though they
        /// are under one of `paths` (the time zone files under /etc).
        #[serde(default = "default_allowed_host_paths")]
        allowed: Vec<String>,
    },
    /// No `security_opt` that lifts a confinement: `apparmor=unconfined`,
    /// `seccomp=unconfined`, `systempaths=unconfined`, `label=disable`.
    NoUnconfined,
    /// No host devices (`devices:`, `device_cgroup_rules:`).
    NoDevices,
    /// No `cap_add` beyond the allowed capabilities.
    NoAddedCapabilities {
        /// Capabilities that may be added (with or without `CAP_`).
        #[serde(default)]
        allowed: Vec<String>,
    },
    /// No sharing of the host's namespace.
    NoHostNamespace {
        namespace: Namespace,
    },
    /// Published ports bind to loopback unless the stack allow-lists them.
    LoopbackPorts,
    /// The reverse proxy's admin API is published on 127.0.0.1 or ::1 only,
    /// whatever the stack allow-lists: it reconfigures the proxy. The proxy
    /// is the compose service named `service`; a stack without it passes.
    ProxyAdminLoopback {
        #[serde(default = "default_proxy_service")]
        service: String,
        /// The container port the admin API listens on (Caddy's 2019).
        #[serde(default = "default_admin_port")]
        admin_port: u16,
    },
    /// The service publishes no port at all (app services behind the proxy:
    /// only the proxy publishes).
    NoPublishedPorts,
    /// Secret-named variables must point at a file (`<NAME>_FILE`), never
    /// hold the value in the compose file.
    NoInlineSecrets {
        /// Words that make a name secret when they are whole segments of it
        /// (`_KEY`, `KEY_`, `_KEY` at the end; `API_KEY` as two segments).
        key_patterns: Vec<String>,
        /// Names ending in this segment must hold a path.
        #[serde(default = "default_file_suffix")]
        file_suffix: String,
        /// Names ending in one of these segments name a location, not a
        /// secret (`TLS_KEY_PATH`, `KEY_DIR`).
        #[serde(default = "default_location_suffixes")]
        location_suffixes: Vec<String>,
        /// Names whose last segment is one of these hold a setting about a
        /// secret, not the secret (`TOKEN_TTL`, `PASSWORD_MIN_LENGTH`).
        #[serde(default = "default_setting_suffixes")]
        setting_suffixes: Vec<String>,
        /// Exact names that match a pattern but hold no secret.
        #[serde(default)]
        allowed_keys: Vec<String>,
    },
    /// No URL with a password in its userinfo (`postgres://u:secret@db/x`)
    /// written in the compose file.
    NoUrlCredentials,
    /// Images carry a digest or a tag with one of these prefixes; never `latest`.
    PinnedImages {
        tag_prefixes: Vec<String>,
    },
    /// An environment variable has this value (`{mode}`, `{tag}` substituted).
    EnvEquals {
        key: String,
        value: String,
    },
    ReadOnly,
    NoNewPrivileges,
    CapDropAll,
    Healthcheck,
    RestartPolicy,
    /// The variable naming the audit sink is set and lies on a writable mount.
    AuditSink {
        env: String,
    },
}

pub fn default_host_paths() -> Vec<String> {
    [
        "/",
        "/boot",
        "/proc",
        "/sys",
        "/dev",
        "/lib/modules",
        "/etc",
        "/root",
        "/run",
        "/var/lib/docker",
        "/var/lib/containerd",
    ]
    .map(String::from)
    .to_vec()
}

pub fn default_allowed_host_paths() -> Vec<String> {
    ["/etc/localtime", "/etc/timezone"]
        .map(String::from)
        .to_vec()
}

fn default_proxy_service() -> String {
    "proxy".into()
}

fn default_admin_port() -> u16 {
    2019
}

fn default_file_suffix() -> String {
    "_FILE".into()
}

pub fn default_location_suffixes() -> Vec<String> {
    vec!["_PATH".into(), "_DIR".into()]
}

pub fn default_setting_suffixes() -> Vec<String> {
    crate::secret::SETTING_SUFFIXES
        .iter()
        .map(|s| format!("_{s}"))
        .collect()
}

/// A namespace compose can share with the host.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    Network,
    Pid,
    Ipc,
    Uts,
    Userns,
    Cgroup,
}

impl Namespace {
    /// The service key that selects it.
    pub fn key(self) -> &'static str {
        match self {
            Namespace::Network => "network_mode",
            Namespace::Pid => "pid",
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
            Namespace::Userns => "userns_mode",
            Namespace::Cgroup => "cgroup",
        }
    }
}

/// A name-segment word: letters and digits, `_` between segments.
fn segment_word(w: &str) -> bool {
    let w = w.trim_start_matches('_');
    !w.is_empty()
        && !w.ends_with('_')
        && !w.contains("__")
        && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Rule {
    pub(super) fn validate(&self) -> Result<()> {
        match self {
            Rule::NoInlineSecrets {
                key_patterns,
                file_suffix,
                location_suffixes,
                setting_suffixes,
                ..
            } => {
                if key_patterns.is_empty() {
                    bail!("key_patterns is empty: no key would ever count as a secret");
                }
                for w in key_patterns
                    .iter()
                    .chain(location_suffixes)
                    .chain(setting_suffixes)
                    .chain([file_suffix])
                {
                    if !segment_word(w) {
                        bail!("`{w}` is not a name segment: use letters and digits, joined by _ (e.g. \"API_KEY\", \"_PATH\")");
                    }
                }
            }
            Rule::NoHostMounts { paths, allowed } => {
                if paths.is_empty() {
                    bail!("paths is empty: the rule would check nothing");
                }
                if let Some(p) = paths.iter().chain(allowed).find(|p| !p.starts_with('/')) {
                    bail!("paths entry `{p}` must be an absolute host path");
                }
            }
            Rule::NoAddedCapabilities { allowed } => {
                if let Some(c) = allowed.iter().find(|c| !segment_word(c)) {
                    bail!("allowed entry `{c}` is not a capability name like NET_BIND_SERVICE");
                }
            }
            Rule::PinnedImages { tag_prefixes }
                if tag_prefixes.is_empty() || tag_prefixes.iter().any(|p| p.is_empty()) =>
            {
                bail!("tag_prefixes needs at least one non-empty prefix, e.g. \"sha-\"");
            }
            Rule::EnvEquals { key, .. } | Rule::AuditSink { env: key } => validate::var_name(key)?,
            Rule::ProxyAdminLoopback {
                service,
                admin_port,
            } => {
                validate::service_name(service)?;
                if *admin_port == 0 {
                    bail!(
                        "admin_port must be the container port the admin API listens on, e.g. 2019"
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }
}
