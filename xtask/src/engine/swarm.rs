//! The Swarm lowering of a [`Target`], and the convergence watch that runs
//! after it.
//!
//! - recreate (deploy): `docker stack deploy` of the environment's stack
//!   file, with the tag and vars in the environment. Swarm updates only the
//!   services whose spec changed; the tag reaches only the app services'
//!   images, so a stateful service keeps its task (the end-to-end tests
//!   check its task ID). Never `--prune`.
//! - recreate, image-only (rollback): `docker service update --image` on each
//!   app service, `<stack>_<service>`; nothing else in the spec changes but
//!   the stack's image label, so a later `stack deploy` sees the change.
//! - stop (a failed first deploy): scale the app services to 0.
//! - converge: `docker stack deploy` returns before anything ran, and exits 0
//!   even when Swarm later rolls the update back by itself
//!   (`update_config.failure_action: rollback`). [`wait`] polls
//!   `docker service inspect` and `docker service ps` until every app service
//!   settled: its update completed and every replica runs the tag, or Swarm
//!   rolled it back, which is the distinguishable [`RolledBackBySwarm`].

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Deserialize;

use super::Target;
use crate::cmd::{Command, Effect};

/// The service label where `docker stack deploy` keeps the image its file
/// named (`com.docker.stack.image`).
const STACK_IMAGE_LABEL: &str = "com.docker.stack.image";

/// Between polls of the Swarm API.
const INTERVAL: Duration = Duration::from_millis(500);

fn docker(effect: Effect) -> Command {
    Command::new("docker", effect)
}

pub fn pull(t: &Target) -> Vec<Command> {
    t.image_refs()
        .into_iter()
        // `missing`: an image this node has runs as it is (a read-only look-up).
        .filter(|r| t.pull != crate::config::Pull::Missing || !super::docker::image_present(r))
        .map(|r| docker(Effect::Mutating).args(["pull", "--quiet"]).arg(r))
        .collect()
}

pub fn recreate(t: &Target) -> Vec<Command> {
    if t.image_only {
        return t
            .services
            .iter()
            .map(|s| {
                let image = t.image_ref(t.images.get(s).map_or("", String::as_str));
                // `stack deploy --resolve-image changed` compares the file's
                // image with this label, not with the running spec; a label
                // left at the tag the rollback replaced would make the next
                // deploy of that tag keep the rolled-back image, silently.
                let c = docker(Effect::Mutating).args([
                    "service",
                    "update",
                    "--detach",
                    "--with-registry-auth",
                ]);
                // `never`: the registry is not asked for the image's digest.
                let c = match t.pull {
                    crate::config::Pull::Never => c.arg("--no-resolve-image"),
                    _ => c,
                };
                c.arg("--label-add")
                    .arg(format!("{STACK_IMAGE_LABEL}={image}"))
                    .arg("--image")
                    .arg(image)
                    .arg(t.service_name(s))
            })
            .collect();
    }
    // `changed`: only an image whose tag changed is resolved to a registry
    // digest (pinning what every node runs); an unchanged one, like a
    // local-only stateful image, is left exactly as it is.
    let resolve = match t.pull {
        crate::config::Pull::Never => "never",
        _ => "changed",
    };
    let mut c = docker(Effect::Mutating).args([
        "stack",
        "deploy",
        "--detach=true",
        "--resolve-image",
        resolve,
        "--with-registry-auth",
    ]);
    for f in &t.files {
        c = c.arg("--compose-file").arg(f.display().to_string());
    }
    if let Some((path, body)) = t.pins_file() {
        c = c
            .arg("--compose-file")
            .arg(path.display().to_string())
            .file(path, body);
    }
    if let Some(dir) = t.files.first().and_then(|f| f.parent()) {
        c = c.cwd(dir);
    }
    c = c.arg(&t.project);
    for (k, v) in &t.vars {
        c = c.env_value(k, v.clone());
    }
    vec![c.env(&t.tag_var, &t.tag)]
}

pub fn stop(t: &Target) -> Vec<Command> {
    vec![docker(Effect::Mutating)
        .args(["service", "scale", "--detach"])
        .args(
            t.services
                .iter()
                .map(|s| format!("{}=0", t.service_name(s))),
        )]
}

/// What [`wait`] reads: the services' spec and update status, and each
/// service's tasks that should be running.
pub fn observe(t: &Target) -> Vec<Command> {
    let names: Vec<String> = t.services.iter().map(|s| t.service_name(s)).collect();
    let mut cmds = vec![docker(Effect::ReadOnly)
        .args(["service", "inspect"])
        .args(names.clone())];
    for n in names {
        cmds.push(docker(Effect::ReadOnly).args([
            "service",
            "ps",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Image}}|{{.CurrentState}}",
            n.as_str(),
        ]));
    }
    cmds
}

/// Swarm rolled the update back by itself: the deploy failed, and the
/// services already run the previous spec.
#[derive(Debug)]
pub struct RolledBackBySwarm {
    pub tag: String,
    pub services: Vec<String>,
    pub message: String,
}

impl fmt::Display for RolledBackBySwarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "swarm rolled the update to {} back by itself ({}: {})",
            self.tag,
            self.services.join(", "),
            self.message
        )
    }
}

impl std::error::Error for RolledBackBySwarm {}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Service {
    spec: Spec,
    update_status: Option<UpdateStatus>,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Spec {
    name: String,
    mode: Mode,
    task_template: TaskTemplate,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Mode {
    replicated: Option<Replicated>,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Replicated {
    replicas: Option<u64>,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskTemplate {
    container_spec: ContainerSpec,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSpec {
    image: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStatus {
    state: Option<String>,
    message: Option<String>,
}

/// Is `image` (`repo:tag` or `repo:tag@sha256:...`) `repo:tag`?
pub fn on_tag(image: &str, repo: &str, tag: &str) -> bool {
    let want = format!("{repo}:{tag}");
    image == want
        || image
            .strip_prefix(&want)
            .is_some_and(|rest| rest.starts_with('@'))
}

/// Where one service stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// Not yet: why.
    Waiting(String),
    /// Update complete and every replica runs the tag.
    Done,
    /// Swarm rolled the update back (the spec is the previous one again).
    RolledBack(String),
    /// Stuck in a state only a person can resolve.
    Stuck(String),
}

/// Judges one service from its inspect record and its running tasks
/// (`image|current state` lines).
fn judge(svc: &Service, repo: &str, tag: &str, tasks: &str) -> Settled {
    let state = svc
        .update_status
        .as_ref()
        .and_then(|u| u.state.clone())
        .unwrap_or_default();
    let message = svc
        .update_status
        .as_ref()
        .and_then(|u| u.message.clone())
        .unwrap_or_default();
    let spec_on_tag = on_tag(&svc.spec.task_template.container_spec.image, repo, tag);
    match state.as_str() {
        "paused" | "rollback_paused" => {
            return Settled::Stuck(format!("update {state}: {message}"))
        }
        "updating" => return Settled::Waiting("update in progress".into()),
        "rollback_started" => return Settled::Waiting("swarm is rolling the update back".into()),
        // A stale status from an earlier update cannot say "rolled back"
        // while the spec names this tag: stack deploy sets the spec first.
        "rollback_completed" if !spec_on_tag => return Settled::RolledBack(message),
        _ => {}
    }
    if !spec_on_tag {
        return Settled::Waiting(format!(
            "spec runs {}",
            svc.spec.task_template.container_spec.image
        ));
    }
    let want = svc
        .spec
        .mode
        .replicated
        .as_ref()
        .and_then(|r| r.replicas)
        .unwrap_or(1);
    let mut running = 0;
    for line in tasks.lines().filter(|l| !l.trim().is_empty()) {
        let (image, current) = line.split_once('|').unwrap_or((line, ""));
        if !on_tag(image, repo, tag) {
            return Settled::Waiting(format!("a task still runs {image}"));
        }
        if current.starts_with("Running") {
            running += 1;
        }
    }
    if running < want {
        return Settled::Waiting(format!("{running}/{want} replicas running {tag}"));
    }
    Settled::Done
}

/// Waits until every app service of `t` settled on its tag. Fails with
/// [`RolledBackBySwarm`] when Swarm rolled the update back, at once when an
/// update is paused, and after `timeout_secs` otherwise.
pub fn wait(t: &Target, timeout_secs: u64, verbose: bool) -> Result<()> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(timeout_secs);
    let mut reported = Instant::now();
    let cmds = observe(t);
    let since = crate::cmd::since_now();
    loop {
        crate::cmd::check_interrupt(since)?;
        let inspect = crate::cmd::run(&cmds[0], verbose)?;
        let services: Vec<Service> = serde_json::from_str(&inspect)
            .map_err(|e| anyhow::anyhow!("reading `docker service inspect` output: {e}"))?;
        let mut states = Vec::new();
        for (s, ps) in t.services.iter().zip(&cmds[1..]) {
            let name = t.service_name(s);
            let Some(svc) = services.iter().find(|v| v.spec.name == name) else {
                bail!("service {name} does not exist (was the stack deployed?)");
            };
            let tasks = crate::cmd::run(ps, verbose)?;
            let repo = t.images.get(s).map_or("", String::as_str);
            states.push((s.clone(), judge(svc, repo, &t.tag, &tasks)));
        }
        if let Some((s, Settled::Stuck(why))) = states
            .iter()
            .find(|(_, st)| matches!(st, Settled::Stuck(_)))
        {
            bail!(
                "swarm update of {s} to {} is stuck: {why}; resume or roll back by hand",
                t.tag
            );
        }
        let waiting: Vec<String> = states
            .iter()
            .filter_map(|(s, st)| match st {
                Settled::Waiting(why) => Some(format!("{s}: {why}")),
                _ => None,
            })
            .collect();
        if waiting.is_empty() {
            let rolled: Vec<(String, String)> = states
                .iter()
                .filter_map(|(s, st)| match st {
                    Settled::RolledBack(m) => Some((s.clone(), m.clone())),
                    _ => None,
                })
                .collect();
            if rolled.is_empty() {
                eprintln!(
                    "swarm update converged after {:.1}s: every replica of {} runs {}",
                    start.elapsed().as_secs_f64(),
                    t.services.join(", "),
                    t.tag
                );
                return Ok(());
            }
            return Err(RolledBackBySwarm {
                tag: t.tag.clone(),
                services: rolled.iter().map(|(s, _)| s.clone()).collect(),
                message: rolled[0].1.clone(),
            }
            .into());
        }
        if Instant::now() >= deadline {
            bail!(
                "swarm update to {} did not converge in {timeout_secs}s: {}",
                t.tag,
                waiting.join("; ")
            );
        }
        if reported.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "waiting for swarm ({:.0}s): {}",
                start.elapsed().as_secs_f64(),
                waiting.join("; ")
            );
            reported = Instant::now();
        }
        std::thread::sleep(INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(image: &str, state: Option<&str>) -> Service {
        let json = serde_json::json!({
            "Spec": {"Name": "s_api", "Mode": {"Replicated": {"Replicas": 1}},
                     "TaskTemplate": {"ContainerSpec": {"Image": image}}},
            "UpdateStatus": state.map(|s| serde_json::json!({"State": s, "Message": "m"})),
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn judges_every_update_state() {
        let new = "r/app:v2@sha256:00";
        let old = "r/app:v1@sha256:11";
        let run_new = "r/app:v2@sha256:00|Running 3 seconds ago\n";
        assert_eq!(
            judge(&svc(new, Some("completed")), "r/app", "v2", run_new),
            Settled::Done
        );
        assert_eq!(
            judge(&svc(new, None), "r/app", "v2", run_new),
            Settled::Done
        );
        assert!(matches!(
            judge(&svc(new, Some("updating")), "r/app", "v2", run_new),
            Settled::Waiting(_)
        ));
        assert!(matches!(
            judge(&svc(old, Some("rollback_started")), "r/app", "v2", ""),
            Settled::Waiting(_)
        ));
        assert_eq!(
            judge(&svc(old, Some("rollback_completed")), "r/app", "v2", ""),
            Settled::RolledBack("m".into())
        );
        assert!(matches!(
            judge(&svc(new, Some("paused")), "r/app", "v2", ""),
            Settled::Stuck(_)
        ));
        // A stale rollback status with the spec on the tag is judged by the tasks.
        assert_eq!(
            judge(
                &svc(new, Some("rollback_completed")),
                "r/app",
                "v2",
                run_new
            ),
            Settled::Done
        );
        // The spec on the tag is not enough: an old task or too few replicas wait.
        let mixed = "r/app:v1@sha256:11|Running 9 seconds ago\n";
        assert!(matches!(
            judge(&svc(new, Some("completed")), "r/app", "v2", mixed),
            Settled::Waiting(_)
        ));
        let starting = "r/app:v2@sha256:00|Starting 1 second ago\n";
        assert!(matches!(
            judge(&svc(new, Some("completed")), "r/app", "v2", starting),
            Settled::Waiting(_)
        ));
    }

    #[test]
    fn an_image_only_update_moves_the_stack_image_label_too() {
        let t = Target {
            env: "staging".into(),
            engine: crate::config::EngineKind::Swarm,
            cli: super::super::ComposeCli::V2Plugin,
            project: "st".into(),
            files: Vec::new(),
            tag_var: "FETCHML_TAG".into(),
            tag: "v1".into(),
            services: vec!["api".into()],
            images: [("api".to_string(), "r/app".to_string())].into(),
            vars: Default::default(),
            pins: Default::default(),
            state_dir: None,
            pull: Default::default(),
            local: Default::default(),
            image_only: true,
            limits: Default::default(),
            proxy: None,
        };
        let cmds = recreate(&t);
        assert_eq!(cmds.len(), 1);
        let shown = cmds[0].display_bare();
        assert!(
            shown.contains("service update --detach --with-registry-auth --label-add com.docker.stack.image=r/app:v1 --image r/app:v1 st_api"),
            "{shown}"
        );
    }

    #[test]
    fn several_repositories_run_their_digests_through_the_rendered_override() {
        let (a, w) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let t = Target {
            env: "staging".into(),
            engine: crate::config::EngineKind::Swarm,
            cli: super::super::ComposeCli::V2Plugin,
            project: "st".into(),
            files: vec!["/cfg/stack.yml".into()],
            tag_var: "FETCHML_TAG".into(),
            tag: "v1".into(),
            services: vec!["api".into(), "worker".into()],
            images: [("api", "r/api"), ("worker", "r/worker")]
                .map(|(s, r)| (s.to_string(), r.to_string()))
                .into(),
            vars: Default::default(),
            pins: Default::default(),
            state_dir: Some("/state/staging".into()),
            pull: Default::default(),
            local: Default::default(),
            image_only: false,
            limits: Default::default(),
            proxy: None,
        };
        // Unpinned: the tag alone, and no override.
        assert!(t.pins_file().is_none());
        let t = t.pinned_each(
            [("r/api", &a), ("r/worker", &w)]
                .map(|(r, d)| (r.to_string(), d.clone()))
                .into(),
        );
        let (path, body) = t.pins_file().unwrap();
        assert!(path.starts_with("/state/staging") && path.extension().is_some_and(|e| e == "yml"));
        assert!(
            body.contains(&format!("\"api\":\n    image: \"r/api:v1@{a}\"")),
            "{body}"
        );
        assert!(
            body.contains(&format!("\"worker\":\n    image: \"r/worker:v1@{w}\"")),
            "{body}"
        );
        // The stack deploy and compose's up read it after the user's files,
        // and write it when they start; a look-up neither reads nor writes it.
        let p = path.display().to_string();
        for c in [&recreate(&t)[0], &t.compose(Effect::Mutating)] {
            let at = c
                .args
                .iter()
                .position(|x| x == &p)
                .expect("the override is passed");
            assert!(c.args.iter().position(|x| x == "/cfg/stack.yml").unwrap() < at);
            assert_eq!(c.files.len(), 1);
            assert!(c
                .env
                .iter()
                .any(|e| e.name == "FETCHML_TAG" && e.value.expose() == "v1"));
        }
        assert!(t.compose(Effect::ReadOnly).files.is_empty());
        // A record names every service's digest, and reads back to the same pins.
        let r = t.image_ref_record();
        assert_eq!(r.digest.as_deref(), Some(a.as_str()));
        assert_eq!(r.digests.len(), 2);
        assert_eq!(
            t.on_tag("v1").pinned_ref(Some(&r)).pins_file(),
            t.pins_file()
        );
        // An older record (one digest) pins the first service's repository only.
        let old = crate::audit::ImageRef::new("v1", Some(a.clone()));
        assert_eq!(t.record_digests(&old).keys().collect::<Vec<_>>(), ["api"]);
    }

    #[test]
    fn on_tag_needs_the_whole_tag() {
        assert!(on_tag("r/app:v2", "r/app", "v2"));
        assert!(on_tag("r/app:v2@sha256:ab", "r/app", "v2"));
        assert!(!on_tag("r/app:v20", "r/app", "v2"));
        assert!(!on_tag("r/app:v2", "r/other", "v2"));
    }
}
