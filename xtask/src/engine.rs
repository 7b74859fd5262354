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
//! [`Target::rollout`], and only the methods here look at which engine runs
//! the stack. The Swarm lowering lives in [`swarm`].

use std::collections::BTreeMap;
use std::path::PathBuf;

pub mod swarm;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::config::{Config, EngineKind, Env};
use crate::plan::{Command, Effect, Step};

/// Which compose CLI runs the stack: the v2 plugin, or v1 as a detected fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComposeCli {
    V2Plugin,
    V1Standalone,
}

/// The app services of one environment on one tag.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub env: String,
    pub engine: EngineKind,
    pub cli: ComposeCli,
    pub project: String,
    pub files: Vec<PathBuf>,
    pub tag_var: String,
    pub tag: String,
    /// App services only (from `app_services`).
    pub services: Vec<String>,
    /// Stateful services: only ever started when absent (`--no-recreate`), never recreated.
    pub stateful: Vec<String>,
    /// Image repository per app service.
    pub images: BTreeMap<String, String>,
    pub vars: BTreeMap<String, String>,
    /// Swarm: change only the app services' image (`docker service update
    /// --image`), not the whole stack. A rollback is image-only; compose
    /// recreates the same way in both cases.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub image_only: bool,
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
        Ok(Target {
            env: env_name.into(),
            engine: env.engine,
            cli,
            project: env.project.clone(),
            files,
            tag_var: env.tag_var.clone(),
            tag: tag.into(),
            services: env.app_services.clone(),
            stateful: env.stateful_services.clone(),
            images: env.images.clone(),
            vars: env.vars.clone(),
            image_only: false,
        })
    }

    /// The same target, changing only images when applied (rollback).
    pub fn image_only(self) -> Target {
        Target {
            image_only: true,
            ..self
        }
    }

    /// The steps that put the app services on the tag: a recreate, and on
    /// Swarm the wait until the update converged (or Swarm rolled it back).
    pub fn rollout(&self, timeout_secs: u64) -> Vec<Step> {
        let mut steps = vec![Step::Recreate {
            target: self.clone(),
        }];
        if self.engine == EngineKind::Swarm {
            steps.push(Step::Converge {
                target: self.clone(),
                timeout_secs,
            });
        }
        steps
    }

    /// The same services on another tag (the rollback of a deploy).
    pub fn on_tag(&self, tag: &str) -> Target {
        Target {
            tag: tag.into(),
            ..self.clone()
        }
    }

    /// `docker compose -p P -f F...` with the tag and vars in the environment.
    pub fn compose(&self, effect: Effect) -> Command {
        let mut c = match self.cli {
            ComposeCli::V2Plugin => Command::new("docker", effect).arg("compose"),
            ComposeCli::V1Standalone => Command::new("docker-compose", effect),
        };
        c = c.arg("-p").arg(&self.project);
        for f in &self.files {
            c = c.arg("-f").arg(f.display().to_string());
        }
        for (k, v) in &self.vars {
            c = c.env(k, v);
        }
        c.env(&self.tag_var, &self.tag)
    }

    /// Distinct `repo:tag` references of the target's images.
    pub fn image_refs(&self) -> Vec<String> {
        let mut refs: Vec<String> = self
            .images
            .values()
            .map(|r| format!("{r}:{}", self.tag))
            .collect();
        refs.sort();
        refs.dedup();
        refs
    }

    pub fn pull_commands(&self) -> Vec<Command> {
        if self.engine == EngineKind::Swarm {
            return swarm::pull(self);
        }
        vec![self
            .compose(Effect::Mutating)
            .arg("pull")
            .arg("--quiet")
            .args(self.services.clone())]
    }

    pub fn recreate_commands(&self) -> Vec<Command> {
        if self.engine == EngineKind::Swarm {
            return swarm::recreate(self);
        }
        vec![self
            .compose(Effect::Mutating)
            .args(["up", "-d", "--no-deps", "--no-build"])
            .args(self.services.clone())]
    }

    /// Starts stateful services that are not running yet, and only those:
    /// `--no-recreate` keeps an existing container (and its data) as it is,
    /// even when its config changed. A first deploy into an empty
    /// environment needs its queue; no deploy may replace it.
    pub fn start_stateful_commands(&self) -> Vec<Command> {
        // Swarm: `docker stack deploy` creates a missing service and leaves
        // one whose spec did not change as it is, so there is no separate step.
        if self.stateful.is_empty() || self.engine == EngineKind::Swarm {
            return Vec::new();
        }
        vec![self
            .compose(Effect::Mutating)
            .args(["up", "-d", "--no-recreate", "--no-deps", "--no-build"])
            .args(self.stateful.clone())]
    }

    pub fn stop_commands(&self) -> Vec<Command> {
        if self.engine == EngineKind::Swarm {
            return swarm::stop(self);
        }
        vec![self
            .compose(Effect::Mutating)
            .arg("stop")
            .args(self.services.clone())]
    }
}

impl Target {
    /// The read-only look-ups [`Step::Converge`] polls (Swarm only).
    pub fn converge_commands(&self) -> Vec<Command> {
        match self.engine {
            EngineKind::Swarm => swarm::observe(self),
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
