//! What runs now: the image tag each app service's containers (compose) or
//! service spec (swarm) carry, as the engine reports it (read-only). The
//! plans reconcile it with the audit chain (`rollout::Now`).

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::Target;
use crate::cmd::{Command, Effect};
use crate::config::EngineKind;

/// What the engine reports running for an environment's app services: the
/// image tag of each running container (compose) or service spec (swarm).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Running {
    /// App service -> the tags it runs (several while a recreate is half done).
    pub services: BTreeMap<String, Vec<String>>,
}

impl Running {
    /// The one tag every app service runs, if they agree and all run.
    pub fn tag(&self, app_services: &[String]) -> Option<&str> {
        let mut tags = app_services
            .iter()
            .map(|s| self.services.get(s).map(Vec::as_slice).unwrap_or(&[]));
        let first = tags.next()?;
        let [t] = first else { return None };
        tags.all(|ts| ts == [t.clone()]).then_some(t.as_str())
    }

    /// Nothing of the app runs.
    pub fn is_empty(&self) -> bool {
        self.services.values().all(Vec::is_empty)
    }

    /// `api=sha-1, worker=sha-1 sha-2`, or `nothing running`.
    pub fn describe(&self, app_services: &[String]) -> String {
        if self.is_empty() {
            return "nothing running".into();
        }
        app_services
            .iter()
            .map(|s| {
                let tags = self
                    .services
                    .get(s)
                    .map(|t| t.join(" "))
                    .unwrap_or_default();
                format!("{s}={}", if tags.is_empty() { "-" } else { &tags })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The tag of an image reference (`repo:tag`, `repo:tag@sha256:...`).
fn tag_of(image: &str) -> Option<String> {
    let image = image.split('@').next().unwrap_or(image);
    let (repo, tag) = image.rsplit_once(':')?;
    (!tag.contains('/') && !repo.is_empty()).then(|| tag.to_string())
}

impl Target {
    /// The read-only look-up of what runs (see [`Target::running`]).
    pub fn running_command(&self) -> Command {
        let c = Command::new("docker", Effect::ReadOnly);
        let c = match self.engine {
            EngineKind::Compose => c.args([
                "ps".to_string(),
                "--filter".into(),
                format!("label=com.docker.compose.project={}", self.project),
                "--format".into(),
                "{{.Label \"com.docker.compose.service\"}}\t{{.Image}}".into(),
            ]),
            EngineKind::Swarm => c.args([
                "service".to_string(),
                "ls".into(),
                "--filter".into(),
                format!("label=com.docker.stack.namespace={}", self.project),
                "--format".into(),
                "{{.Name}}\t{{.Image}}".into(),
            ]),
        };
        c.timeout(self.limits.look_up_secs)
    }

    /// What the engine runs now for the app services (read-only).
    pub fn running(&self) -> Result<Running> {
        let out = crate::cmd::run(&self.running_command(), false)?;
        Ok(self.parse_running(&out))
    }

    fn parse_running(&self, out: &str) -> Running {
        let mut r = Running::default();
        for line in out.lines() {
            let Some((name, image)) = line.split_once('\t') else {
                continue;
            };
            let service = match self.engine {
                EngineKind::Swarm => name
                    .strip_prefix(&format!("{}_", self.project))
                    .unwrap_or(name),
                EngineKind::Compose => name,
            };
            if !self.services.iter().any(|s| s == service) {
                continue;
            }
            if let Some(tag) = tag_of(image.trim()) {
                let tags = r.services.entry(service.to_string()).or_default();
                if !tags.contains(&tag) {
                    tags.push(tag);
                    tags.sort();
                }
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::engine::ComposeCli;

    fn target(engine: EngineKind) -> Target {
        Target {
            env: "staging".into(),
            engine,
            cli: ComposeCli::V2Plugin,
            project: "p".into(),
            files: vec![],
            tag_var: "T".into(),
            tag: "sha-2".into(),
            services: vec!["api".into(), "worker".into()],
            images: BTreeMap::new(),
            vars: BTreeMap::new(),
            image_only: false,
            limits: Limits::default(),
        }
    }

    #[test]
    fn running_tags_are_read_per_app_service() {
        let t = target(EngineKind::Compose);
        let apps = t.services.clone();
        let r = t.parse_running(
            "api\t127.0.0.1:5000/x:sha-1\nworker\t127.0.0.1:5000/x:sha-1\nredis\tredis:7\n",
        );
        assert_eq!(r.tag(&apps), Some("sha-1"));
        assert_eq!(r.describe(&apps), "api=sha-1, worker=sha-1");
        let half = t.parse_running("api\tr/x:sha-2\nworker\tr/x:sha-1\n");
        assert_eq!(half.tag(&apps), None);
        assert_eq!(half.describe(&apps), "api=sha-2, worker=sha-1");
        let none = t.parse_running("");
        assert!(none.is_empty());
        assert_eq!(none.describe(&apps), "nothing running");
        let s = target(EngineKind::Swarm);
        let r = s.parse_running("p_api\tr/x:sha-3@sha256:abc\np_worker\tr/x:sha-3\np_redis\tr:7\n");
        assert_eq!(r.tag(&apps), Some("sha-3"));
    }
}
