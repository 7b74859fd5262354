//! `deployments/security-modes.toml` read into typed, validated structs.
//!
//! The policy is data: stacks (the base compose files the mode overlays are
//! layered on), named rules of a fixed set of kinds, named probes, and the
//! modes that pick which rules and probes apply to them. A new mode, or a new
//! rule of an existing kind, is a change to the file only.
//!
//! Parsing is separate from [`Policy::validate`], so the rules about the file
//! are unit-tested on strings. Relative paths resolve against the file's own
//! directory, so a policy and its overlays can move together (tests write
//! whole policies to temp dirs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::cmd::Secretable;
use crate::validate;

pub mod rule;
mod stack;
pub use rule::{Namespace, Rule};
pub use stack::{JsonCheck, Stack};

/// The whole policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Base stacks by name; every mode is rendered on each of them.
    #[serde(rename = "stack")]
    pub stacks: BTreeMap<String, Stack>,
    /// Modes in the order they run and are reported.
    #[serde(rename = "mode")]
    pub modes: Vec<Mode>,
    #[serde(default, rename = "rule")]
    pub rules: BTreeMap<String, Rule>,
    #[serde(default, rename = "probe")]
    pub probes: BTreeMap<String, Probe>,
    /// Directory the file was read from.
    #[serde(skip)]
    pub base: PathBuf,
}

/// One mode: an overlay and the rules and probes it must pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mode {
    pub name: String,
    pub overlay: PathBuf,
    /// Rules every service of the rendered stack must pass.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Rules the stack's app services must pass.
    #[serde(default)]
    pub app_rules: Vec<String>,
    /// Probes against the booted stack.
    #[serde(default)]
    pub probes: Vec<String>,
}

/// A dynamic probe against the booted stack.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Probe {
    /// GET `path` must answer `status`.
    Status {
        path: String,
        status: u16,
        /// Send the stack's bearer token.
        #[serde(default)]
        bearer: bool,
        /// Default: every service in `boot.ports` and `boot.container_ports`.
        #[serde(default)]
        services: Vec<String>,
    },
    /// GET `path` must answer JSON with these field values.
    Json {
        path: String,
        expect: BTreeMap<String, String>,
        #[serde(default)]
        services: Vec<String>,
    },
}

impl Probe {
    pub fn services(&self) -> &[String] {
        match self {
            Probe::Status { services, .. } | Probe::Json { services, .. } => services,
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Probe::Status {
                path,
                status,
                bearer,
                ..
            } => {
                let auth = if *bearer {
                    "with the token"
                } else {
                    "without a token"
                };
                format!("GET {path} {auth} answers {status}")
            }
            Probe::Json { path, expect, .. } => {
                let fields: Vec<String> = expect.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("GET {path} reports {}", fields.join(", "))
            }
        }
    }
}

/// `{mode}` and `{tag}` in a policy value.
pub fn substitute(template: &str, mode: &str, tag: &str) -> String {
    template.replace("{mode}", mode).replace("{tag}", tag)
}

impl Policy {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading policy {}: pass --policy PATH to use another file",
                path.display()
            )
        })?;
        let mut p = Self::parse(&text, &path.display().to_string())?;
        p.base = crate::config::base_dir(path);
        Ok(p)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy> {
        let p: Policy = crate::config::from_toml(text, origin)?;
        p.validate()
            .with_context(|| format!("{origin}: invalid policy"))?;
        Ok(p)
    }

    /// The rules that types alone cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.stacks.is_empty() {
            bail!("no stacks: add a [stack.NAME] table with compose_files");
        }
        if self.modes.is_empty() {
            bail!("no modes: add a [[mode]] table");
        }
        let mut names = BTreeSet::new();
        for m in &self.modes {
            validate::env_name(&m.name).with_context(|| format!("mode `{}`", m.name))?;
            if !names.insert(m.name.as_str()) {
                bail!("mode `{}` is declared twice", m.name);
            }
            for r in m.rules.iter().chain(&m.app_rules) {
                if !self.rules.contains_key(r) {
                    bail!(
                        "mode `{}` names rule `{r}`, which no [rule.{r}] table defines",
                        m.name
                    );
                }
            }
            for p in &m.probes {
                if !self.probes.contains_key(p) {
                    bail!(
                        "mode `{}` names probe `{p}`, which no [probe.{p}] table defines",
                        m.name
                    );
                }
            }
            if m.rules.is_empty() && m.app_rules.is_empty() && m.probes.is_empty() {
                bail!(
                    "mode `{}` has no rules and no probes: it would pass by checking nothing",
                    m.name
                );
            }
        }
        for (name, rule) in &self.rules {
            rule.validate().with_context(|| format!("rule `{name}`"))?;
        }
        for (name, s) in &self.stacks {
            s.validate().with_context(|| format!("stack `{name}`"))?;
            if s.env.is_none()
                && s.app_services.is_empty()
                && self.modes.iter().any(|m| !m.app_rules.is_empty())
            {
                bail!("stack `{name}`: app_services is empty, so app_rules would check nothing");
            }
        }
        let booted: Vec<&String> = self
            .stacks
            .iter()
            .filter(|(_, s)| s.boot.is_some())
            .map(|(n, _)| n)
            .collect();
        if booted.len() > 1 {
            let list: Vec<&str> = booted.iter().map(|s| s.as_str()).collect();
            bail!(
                "stacks {} all have [boot]; the probes boot exactly one",
                list.join(" and ")
            );
        }
        let wants_probes = self.modes.iter().any(|m| !m.probes.is_empty());
        if let Some(boot) = self.boot_stack().and_then(|(_, s)| s.boot.as_ref()) {
            for (name, p) in &self.probes {
                for svc in p.services() {
                    if !boot.ports.contains_key(svc) && !boot.container_ports.contains_key(svc) {
                        bail!("probe `{name}` targets `{svc}`, which has no port in boot.ports or boot.container_ports");
                    }
                }
                if matches!(p, Probe::Status { bearer: true, .. }) && boot.token_file.is_none() {
                    bail!("probe `{name}` sends the bearer token, but boot.token_file is not set");
                }
            }
        } else if wants_probes {
            bail!("modes name probes, but no stack has a [stack.NAME.boot] table to boot");
        }
        Ok(())
    }

    /// The stack the probes boot, if any.
    pub fn boot_stack(&self) -> Option<(&str, &Stack)> {
        self.stacks
            .iter()
            .find(|(_, s)| s.boot.is_some())
            .map(|(n, s)| (n.as_str(), s))
    }

    /// Does any stack name a deploy environment (so the deploy config is needed)?
    pub fn has_env_stacks(&self) -> bool {
        self.stacks.values().any(|s| s.env.is_some())
    }

    /// Fills each `env` stack from the deploy config: compose files, tag
    /// variable, app services, vars, and the one mode it is checked in.
    pub fn bind_envs(&mut self, cfg: &crate::config::Config) -> Result<()> {
        let modes: Vec<String> = self.modes.iter().map(|m| m.name.clone()).collect();
        for (name, s) in self.stacks.iter_mut() {
            let Some(env_name) = s.env.clone() else {
                continue;
            };
            let e = cfg
                .env(&env_name)
                .with_context(|| format!("stack `{name}`"))?;
            let Some(mode) = e.compliance_mode.clone() else {
                bail!("stack `{name}`: environment `{env_name}` sets no compliance_mode; set the mode it runs in");
            };
            if !modes.contains(&mode) {
                bail!(
                    "stack `{name}`: environment `{env_name}` runs in mode `{mode}`, which the policy does not define"
                );
            }
            s.compose_files = e.compose_files.iter().map(|f| cfg.resolve(f)).collect();
            s.tag_var = e.tag_var.clone();
            s.app_services = e.app_services.clone();
            for (k, v) in crate::config::var_values(&e.vars)
                .with_context(|| format!("stack `{name}`: environment `{env_name}`"))?
            {
                match v {
                    Secretable::Plain(p) => s.vars.insert(k, p),
                    Secretable::Secret(x) => s.secret_vars.insert(k, x),
                };
            }
            // As the tool's own compose commands set them.
            if let Some(d) = e
                .proxy
                .as_ref()
                .filter(|_| e.engine == crate::config::EngineKind::Compose)
                .and_then(|p| p.admin_dir.as_ref())
            {
                for (k, v) in crate::engine::proxy_vars(&cfg.resolve(d)) {
                    s.vars.insert(k.to_string(), v);
                }
            }
            s.fixed_mode = Some(mode);
        }
        Ok(())
    }

    /// The modes to run: all, or the one named (an unknown name lists the valid ones).
    pub fn select(&self, only: Option<&str>) -> Result<Vec<&Mode>> {
        match only {
            None => Ok(self.modes.iter().collect()),
            Some(name) => match self.modes.iter().find(|m| m.name == name) {
                Some(m) => Ok(vec![m]),
                None => {
                    let valid: Vec<&str> = self.modes.iter().map(|m| m.name.as_str()).collect();
                    bail!(
                        "unknown mode `{name}`: the policy defines {}",
                        valid.join(", ")
                    )
                }
            },
        }
    }

    /// A path from the policy, against the policy's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

#[cfg(test)]
mod tests;
