//! Swarm preflight, read-only: is this host a manager, and can every app
//! service be placed on the nodes that are up? Asked before a deploy or a
//! rollback touches anything, so a missing manager or a lost node is a
//! refusal with its reason, not a `stack deploy` that converges nowhere.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::Target;
use crate::cmd::{self, Command, Effect};
use crate::config::EngineKind;

/// One swarm node, as `docker node inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub hostname: String,
    pub role: String,
    /// `ready` or `down` (or `unknown`, `disconnected`).
    pub state: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    pub labels: BTreeMap<String, String>,
}

impl Node {
    fn usable(&self) -> bool {
        self.state == "ready" && self.availability == "active"
    }

    /// Does the node satisfy one placement constraint (`node.role ==
    /// manager`, `node.hostname != x`, `node.labels.k == v`)? Constraints
    /// on anything else are not judged here (true).
    fn satisfies(&self, constraint: &str) -> bool {
        let (key, eq, want) = match constraint.split_once("==") {
            Some((k, v)) => (k, true, v),
            None => match constraint.split_once("!=") {
                Some((k, v)) => (k, false, v),
                None => return true,
            },
        };
        let (key, want) = (key.trim(), want.trim());
        let have = match key {
            "node.role" => Some(self.role.as_str()),
            "node.hostname" => Some(self.hostname.as_str()),
            _ => match key.strip_prefix("node.labels.") {
                Some(l) => self.labels.get(l).map(String::as_str),
                None => return true,
            },
        };
        (have == Some(want)) == eq
    }
}

fn docker(args: &[&str], secs: u64) -> Command {
    Command::new("docker", Effect::ReadOnly)
        .args(args.iter().copied())
        .timeout(secs)
}

/// Every node of the swarm (asked of a manager).
pub fn nodes(secs: u64) -> Result<Vec<Node>> {
    let ids = cmd::run(&docker(&["node", "ls", "--quiet"], secs), false)?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let mut args = vec![
        "node",
        "inspect",
        "--format",
        "{{.Description.Hostname}}\t{{.Spec.Role}}\t{{.Status.State}}\t{{.Spec.Availability}}\t{{json .Spec.Labels}}",
    ];
    args.extend(ids);
    let out = cmd::run(&docker(&args, secs), false)?;
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(5, '\t').collect();
            let [hostname, role, state, availability, labels] = f[..] else {
                anyhow::bail!("unexpected `docker node inspect` line: {l}");
            };
            Ok(Node {
                hostname: hostname.into(),
                role: role.into(),
                state: state.into(),
                availability: availability.into(),
                labels: serde_json::from_str::<Option<BTreeMap<String, String>>>(labels)
                    .unwrap_or_default()
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// What one app service asks of the nodes: its placement constraints,
/// replicas and `max_replicas_per_node`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub constraints: Vec<String>,
    pub replicas: u64,
    pub max_per_node: Option<u64>,
}

/// Why `service` cannot be placed on `nodes`, if it cannot.
pub fn unplaceable(service: &str, needs: &Needs, nodes: &[Node]) -> Option<String> {
    let matching: Vec<&Node> = nodes
        .iter()
        .filter(|n| needs.constraints.iter().all(|c| n.satisfies(c)))
        .collect();
    let usable = matching.iter().filter(|n| n.usable()).count() as u64;
    let unusable: Vec<String> = matching
        .iter()
        .filter(|n| !n.usable())
        .map(|n| format!("{} is {}/{}", n.hostname, n.state, n.availability))
        .collect();
    let placement = match needs.constraints.is_empty() {
        true => "any node".to_string(),
        false => needs.constraints.join(" and "),
    };
    let why = |what: String| {
        let down = match unusable.is_empty() {
            true => String::new(),
            false => format!(" ({})", unusable.join(", ")),
        };
        Some(format!(
            "app service `{service}` ({placement}): {what}{down}"
        ))
    };
    if usable == 0 {
        return why("no ready, active node matches".into());
    }
    match needs.max_per_node {
        Some(m) if m * usable < needs.replicas => why(format!(
            "{} replicas at most {m} per node need {} ready nodes, {usable} match",
            needs.replicas,
            needs.replicas.div_ceil(m)
        )),
        _ => None,
    }
}

impl Target {
    /// Swarm: what stands between this host and a deploy or rollback of
    /// the app services: not a manager, or a service whose placement no
    /// ready node can take. Empty on compose.
    pub fn placement_gaps(&self) -> Result<Vec<String>> {
        if self.engine != EngineKind::Swarm {
            return Ok(Vec::new());
        }
        let secs = self.limits.look_up_secs;
        let info = cmd::run(
            &docker(
                &[
                    "info",
                    "--format",
                    "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
                ],
                secs,
            ),
            false,
        )?;
        if info.trim() != "active true" {
            return Ok(vec![format!(
                "this host is not a swarm manager (swarm state: {}); run the task on a manager, or `docker swarm init` one",
                info.trim()
            )]);
        }
        let nodes = nodes(secs)?;
        let needs = self.needs()?;
        Ok(self
            .services
            .iter()
            .filter_map(|s| unplaceable(s, needs.get(s).unwrap_or(&Needs::default()), &nodes))
            .collect())
    }

    /// Each app service's placement, from the stack file's render.
    fn needs(&self) -> Result<BTreeMap<String, Needs>> {
        // A rollback asks before its tag is chosen; placement does not
        // depend on the tag, but a stack file may require it to render
        // (`${FETCHML_TAG:?...}`), so an untagged look-up renders on a
        // placeholder.
        let on = match self.tag.is_empty() {
            true => self.on_tag("sha-000000000000"),
            false => self.clone(),
        };
        let c = on.render_command();
        let doc: serde_json::Value = serde_json::from_str(&cmd::run(&c, false)?)
            .context("reading the stack file's render")?;
        Ok(self
            .services
            .iter()
            .map(|s| {
                let d = &doc["services"][s]["deploy"];
                let needs = Needs {
                    constraints: d["placement"]["constraints"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|c| c.as_str().map(Into::into))
                                .collect()
                        })
                        .unwrap_or_default(),
                    replicas: d["replicas"].as_u64().unwrap_or(1),
                    max_per_node: d["placement"]["max_replicas_per_node"].as_u64(),
                };
                (s.clone(), needs)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, role: &str, state: &str, label: Option<(&str, &str)>) -> Node {
        Node {
            hostname: host.into(),
            role: role.into(),
            state: state.into(),
            availability: "active".into(),
            labels: label
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn placement_is_judged_on_ready_nodes() {
        let nodes = [
            node("one", "manager", "ready", None),
            node("two", "worker", "down", Some(("fetchml.pool", "gpu"))),
        ];
        let any = Needs {
            replicas: 2,
            ..Needs::default()
        };
        assert_eq!(unplaceable("api", &any, &nodes), None);
        let gpu = Needs {
            constraints: vec!["node.labels.fetchml.pool == gpu".into()],
            replicas: 1,
            max_per_node: None,
        };
        let e = unplaceable("worker", &gpu, &nodes).unwrap();
        assert!(
            e.contains("no ready, active node matches (two is down/active)"),
            "{e}"
        );
        let spread = Needs {
            replicas: 2,
            max_per_node: Some(1),
            ..Needs::default()
        };
        let e = unplaceable("api", &spread, &nodes).unwrap();
        assert!(e.contains("need 2 ready nodes, 1 match"), "{e}");
        let manager = Needs {
            constraints: vec!["node.role == manager".into()],
            replicas: 1,
            max_per_node: None,
        };
        assert_eq!(unplaceable("redis", &manager, &nodes), None);
        let not_one = Needs {
            constraints: vec!["node.hostname != one".into()],
            replicas: 1,
            max_per_node: None,
        };
        assert!(unplaceable("x", &not_one, &nodes).is_some());
    }
}
