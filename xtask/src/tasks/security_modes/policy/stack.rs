//! The `[stack.NAME]` tables: the compose files a mode is rendered on, what
//! the checks need to know about them, and how the dynamic probes boot the
//! one stack that has a `boot` table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::validate;

/// A base stack: compose files plus what the checks need to know about them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// An environment of the deploy config (`--config`): rendered as deploy
    /// renders it (its compose files and vars, no overlay) and checked only in
    /// the mode it declares (`compliance_mode`). Static checks only.
    pub env: Option<String>,
    /// The base compose files the mode overlays are layered on (not with `env`).
    #[serde(default)]
    pub compose_files: Vec<PathBuf>,
    /// The variable that carries the image tag into compose.
    #[serde(default = "default_tag_var")]
    pub tag_var: String,
    /// The services `app_rules` apply to.
    #[serde(default)]
    pub app_services: Vec<String>,
    /// Non-secret variables for compose (render and boot).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// `service:container-port` pairs allowed to publish beyond loopback.
    #[serde(default)]
    pub public_ports: Vec<String>,
    /// Exact image references allowed without a `sha-` tag or digest.
    #[serde(default)]
    pub unpinned_images: Vec<String>,
    /// How the dynamic probes boot this stack; exactly one stack has it.
    pub boot: Option<Boot>,
    /// For an `env` stack, the mode its environment declares (set by [`Policy::bind_envs`]).
    #[serde(skip)]
    pub fixed_mode: Option<String>,
    /// A compose file named with `--compose`: checked as it is, no overlay.
    #[serde(skip)]
    pub direct: bool,
    /// For an `env` stack, the deploy config's `${NAME}` vars, read from
    /// the environment (set by [`Policy::bind_envs`]); passed as secrets.
    #[serde(skip)]
    pub secret_vars: BTreeMap<String, String>,
}

impl Stack {
    /// Is `mode` checked on this stack?
    pub fn applies(&self, mode: &str) -> bool {
        self.fixed_mode.as_deref().is_none_or(|m| m == mode)
    }

    /// Is the mode's overlay layered on this stack? Not on a deploy
    /// environment (deploy applies none) nor on a file named with `--compose`.
    pub fn takes_overlay(&self) -> bool {
        self.env.is_none() && !self.direct
    }

    /// A stack of one compose file, checked as it is (`--compose FILE`).
    pub fn direct(file: PathBuf, app_services: Vec<String>) -> Stack {
        Stack {
            env: None,
            compose_files: vec![file],
            tag_var: default_tag_var(),
            app_services,
            vars: BTreeMap::new(),
            public_ports: vec![],
            unpinned_images: vec![],
            boot: None,
            fixed_mode: None,
            direct: true,
            secret_vars: BTreeMap::new(),
        }
    }
}

pub(super) fn default_tag_var() -> String {
    "FETCHML_TAG".into()
}

/// How to boot a stack for the dynamic probes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// Service -> the variable that sets its loopback host port; each gets a
    /// free port. Behind the proxy that is the proxy's front port variable.
    #[serde(default)]
    pub ports: BTreeMap<String, String>,
    /// Services that publish no port (app services behind the proxy) -> the
    /// container port they answer on: probed at the container's own address
    /// on the compose network, as the deploy gate does.
    #[serde(default)]
    pub container_ports: BTreeMap<String, u16>,
    /// Variables that each get a free loopback port but are not probed (the
    /// proxy's admin API), so a run never collides with a running stack.
    #[serde(default)]
    pub free_ports: Vec<String>,
    /// The bearer token the stack is configured with (for `bearer = true` probes).
    pub token_file: Option<PathBuf>,
    /// The stack counts as booted when every probed service answers this.
    pub ready: JsonCheck,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The command that builds the images the boot needs for a tag
    /// (`{tag}` substituted); preflight names it when one is missing.
    pub build: Option<String>,
}

fn default_timeout() -> u64 {
    60
}

impl Boot {
    /// Every service the probes reach: through a loopback port or at its
    /// container's address.
    pub fn services(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .ports
            .keys()
            .chain(self.container_ports.keys())
            .cloned()
            .collect();
        all.sort();
        all
    }
}

/// A GET whose JSON body must carry these field values (any HTTP status).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCheck {
    pub path: String,
    /// Field -> expected value; `{mode}` and `{tag}` are substituted.
    pub expect: BTreeMap<String, String>,
}

impl Stack {
    pub(super) fn validate(&self) -> Result<()> {
        if let Some(env) = &self.env {
            validate::env_name(env)?;
            let own = !self.compose_files.is_empty()
                || !self.app_services.is_empty()
                || !self.vars.is_empty();
            if own || self.tag_var != default_tag_var() {
                bail!("env = \"{env}\" takes compose_files, tag_var, app_services and vars from the deploy config; remove them here");
            }
            if self.boot.is_some() {
                bail!("an env stack is checked statically only; boot the testbed stack instead");
            }
        } else if self.compose_files.is_empty() {
            bail!("compose_files is empty (or name a deploy environment with env = \"NAME\")");
        }
        validate::var_name(&self.tag_var)?;
        for s in &self.app_services {
            validate::service_name(s)?;
        }
        for k in self.vars.keys() {
            validate::var_name(k)?;
            if k == &self.tag_var {
                bail!("vars.{k} would override the tag variable; the tag comes from --tag");
            }
        }
        for p in &self.public_ports {
            let ok = p
                .split_once(':')
                .is_some_and(|(s, port)| !s.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                bail!("public_ports entry `{p}` must be service:container-port, e.g. web:443");
            }
        }
        if let Some(b) = &self.boot {
            if b.ports.is_empty() && b.container_ports.is_empty() {
                bail!("boot.ports and boot.container_ports are empty: the probes need at least one service to reach");
            }
            for (svc, var) in &b.ports {
                validate::service_name(svc)?;
                validate::var_name(var)?;
                if b.container_ports.contains_key(svc) {
                    bail!("boot: `{svc}` is in both ports and container_ports");
                }
            }
            for (svc, port) in &b.container_ports {
                validate::service_name(svc)?;
                if *port == 0 {
                    bail!("boot.container_ports.{svc} must be the port the service answers on");
                }
            }
            for var in &b.free_ports {
                validate::var_name(var)?;
                if b.ports.values().any(|v| v == var) || var == &self.tag_var {
                    bail!("boot.free_ports: `{var}` is already set by boot.ports or is the tag variable");
                }
            }
            if b.timeout_secs == 0 {
                bail!("boot.timeout_secs must be at least 1");
            }
            if !b.ready.path.starts_with('/') || b.ready.expect.is_empty() {
                bail!("boot.ready needs a path starting with / and at least one expected field");
            }
        }
        Ok(())
    }
}
