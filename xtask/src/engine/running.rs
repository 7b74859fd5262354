//! What runs now: the image tag each app service's containers (compose) or
//! service spec (swarm) carry, as the engine reports it (read-only). The
//! plans reconcile it with the audit chain (`rollout::Now`).

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::slots::{Container, Slot};
use super::Target;
use crate::cmd::{Command, Effect};
use crate::config::EngineKind;

/// What the engine reports running for an environment's app services: the
/// image tag of each running container (compose) or service spec (swarm).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Running {
    /// App service -> the tags it runs (several while a recreate is half done).
    /// Blue/green: of the set the proxy sends traffic to.
    pub services: BTreeMap<String, Vec<String>>,
    /// Blue/green: the set the proxy sends traffic to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Slot>,
    /// App service -> the digests its image references pin (the same
    /// containers as `services`); empty for images run by tag alone.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, Vec<String>>,
    /// Blue/green: every app container of every set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
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

    /// The one digest every running container of `service` pins, if they agree.
    pub fn digest(&self, service: &str) -> Option<&str> {
        match self.digests.get(service).map(Vec::as_slice) {
            Some([d]) => Some(d.as_str()),
            _ => None,
        }
    }

    fn note(&mut self, service: &str, tag: String, digest: Option<String>) {
        let tags = self.services.entry(service.to_string()).or_default();
        if !tags.contains(&tag) {
            tags.push(tag);
            tags.sort();
        }
        if let Some(d) = digest {
            let ds = self.digests.entry(service.to_string()).or_default();
            if !ds.contains(&d) {
                ds.push(d);
                ds.sort();
            }
        }
    }

    /// Nothing of the app runs.
    pub fn is_empty(&self) -> bool {
        self.services.values().all(Vec::is_empty)
    }

    /// `api=sha-1, worker=sha-1 sha-2`, or `nothing running`; blue/green
    /// adds which set serves and what the other one holds.
    pub fn describe(&self, app_services: &[String]) -> String {
        let sets = self.describe_sets();
        if self.is_empty() {
            return format!("nothing running{sets}");
        }
        let tags = app_services
            .iter()
            .map(|s| {
                let tags = self
                    .services
                    .get(s)
                    .map(|t| {
                        let shown: Vec<&str> = t
                            .iter()
                            .map(|t| {
                                if t.is_empty() {
                                    "(an untagged image)"
                                } else {
                                    t
                                }
                            })
                            .collect();
                        shown.join(" ")
                    })
                    .unwrap_or_default();
                format!("{s}={}", if tags.is_empty() { "-" } else { &tags })
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!("{tags}{sets}")
    }

    /// `; green set serves; blue set on v1: api warm, worker stopped`.
    fn describe_sets(&self) -> String {
        let mut out = String::new();
        if let Some(l) = self.live {
            out.push_str(&format!("; the {} set serves", l.name()));
        }
        let mut slots: Vec<Slot> = self.containers.iter().map(|c| c.slot).collect();
        slots.dedup();
        for s in slots.into_iter().filter(|s| Some(*s) != self.live) {
            let cs: Vec<&Container> = self.containers.iter().filter(|c| c.slot == s).collect();
            let state = |c: &Container| match (c.running, self.live.is_some()) {
                (true, true) => "warm",
                (true, false) => "running",
                (false, _) => "stopped",
            };
            let parts: Vec<String> = cs
                .iter()
                .map(|c| format!("{} {}", c.name, state(c)))
                .collect();
            let tag = cs.first().map_or("", |c| c.tag.as_str());
            out.push_str(&format!(
                "; {} set on {tag}: {}",
                s.name(),
                parts.join(", ")
            ));
        }
        out
    }
}

/// The digest an image reference pins (`repo:tag@sha256:...`).
pub(super) fn digest_of(image: &str) -> Option<String> {
    image
        .split_once('@')
        .map(|(_, d)| d.trim().to_string())
        .filter(|d| d.starts_with("sha256:"))
}

/// The tag of an image reference (`repo:tag`, `repo:tag@sha256:...`).
pub(super) fn tag_of(image: &str) -> Option<String> {
    // An image ID (`sha256:...` or 12 hex) names no tag.
    if image.starts_with("sha256:") {
        return None;
    }
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
                // Untruncated, `.Image` keeps the digest a pinned container runs.
                "--no-trunc".into(),
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
        if self.blue_green() {
            return self.running_sets();
        }
        let out = crate::cmd::run(&self.running_command(), false)?;
        Ok(self.parse_running(&out))
    }

    /// Blue/green: the tags of the set the proxy sends traffic to (of
    /// every running container while no labelled set has traffic yet).
    fn running_sets(&self) -> Result<Running> {
        let containers = self.containers()?;
        // No app container yet (a first deploy): nothing to ask the proxy,
        // which may not have started either.
        if containers.is_empty() {
            return Ok(Running::default());
        }
        let live = self.live_slot(&containers)?;
        let mut r = Running {
            live,
            ..Running::default()
        };
        for c in containers
            .iter()
            .filter(|c| c.running && live.is_none_or(|l| l == c.slot))
        {
            r.note(&c.service, c.tag.clone(), c.digest.clone());
        }
        r.containers = containers;
        Ok(r)
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
            // An image ID instead of a reference: the tag was re-pushed
            // under the container; the planners take its version from the chain.
            let tag = tag_of(image.trim()).unwrap_or_default();
            r.note(service, tag, digest_of(image));
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
            pins: BTreeMap::new(),
            state_dir: None,
            pull: Default::default(),
            local: Default::default(),
            image_only: false,
            limits: Limits::default(),
            proxy: None,
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
        assert_eq!(r.digest("api"), Some("sha256:abc"));
        assert_eq!(r.digest("worker"), None);
        // An untruncated image ID (the tag moved under the container) names no tag.
        assert_eq!(tag_of(&format!("sha256:{}", "a".repeat(64))), None);
        let moved = t.parse_running(&format!("api\tsha256:{}\n", "a".repeat(64)));
        assert_eq!(moved.services["api"], [""]);
    }
}
