//! Scope by construction, checked: every plan deploy and rollback can produce
//! stays on the app services, on both engines. No step may name `down`, `rm`,
//! `-v`, a volume, `prune` (`--prune`) or a migration; a stateful service may
//! only appear in the start-if-absent step, which carries `--no-recreate`;
//! rollback plans may not name a stateful service at all. On Swarm a
//! stateful service is `<stack>_<name>`, caught the same way; the one Swarm
//! command that does not list services, `docker stack deploy`, may appear in
//! deploy plans only (rollback is `docker service update --image` per app
//! service). A step type added later that lowers to any such command fails
//! here, because the check reads the rendered commands.

use std::path::Path;

use crate::audit::{Entry, ImageRef, Log};
use crate::config::Config;
use crate::ctx::Ctx;
use crate::engine::ComposeCli;
use crate::flags::{Format, Global, Rollback};
use crate::plan::{AppStep, Plan, Step};
use crate::tasks::deploy::{self, Request};

const FORBIDDEN: [&str; 8] = [
    "down",
    "rm",
    "-v",
    "--volumes",
    "volume",
    "prune",
    "--prune",
    "migrate",
];

/// `bluegreen` is compose behind a proxy (`[env.NAME.proxy]`).
const ENGINES: [&str; 3] = ["compose", "swarm", "bluegreen"];

fn setup(dir: &Path) -> (Ctx, Config) {
    setup_on(dir, "compose")
}

fn setup_on(dir: &Path, engine: &str) -> (Ctx, Config) {
    std::fs::write(dir.join("compose.yml"), "services: {}\n").unwrap();
    let toml = r#"
[env.staging]
engine = "ENGINE"
project = "s"
compose_files = ["compose.yml"]
app_services = ["api", "worker"]
stateful_services = ["redis", "postgres", "minio"]
images = { api = "r/api", worker = "r/worker" }
health_urls = ["http://127.0.0.1:1/health"]
compliance_mode = "standard"

[env.prod]
engine = "ENGINE"
project = "p"
compose_files = ["compose.yml"]
app_services = ["api", "worker"]
stateful_services = ["redis", "postgres", "minio"]
images = { api = "r/api", worker = "r/worker" }
health_urls = ["http://127.0.0.1:2/health"]
compliance_mode = "hipaa"
promote_from = "staging"
require_evidence = ["security-modes-test", "backup-smoke"]
"#;
    let path = dir.join("deploy.toml");
    let toml = match engine {
        "bluegreen" => toml.replace("ENGINE", "compose").replace(
            "compliance_mode = \"",
            "proxy = { service = \"edge\", admin_dir = \"proxy-admin\", routes = { api = 8080 }, probe_ports = { worker = 8080 } }\ncompliance_mode = \"",
        ),
        _ => toml.replace("ENGINE", engine),
    };
    std::fs::write(&path, toml).unwrap();
    let global = Global {
        dry_run: true,
        format: Format::Text,
        config: path.clone(),
        state_dir: Some(dir.join("state")),
        verbose: false,
    };
    (Ctx { global }, Config::load(&path).unwrap())
}

fn seed(ctx: &Ctx, cfg: &Config, env: &str, tags: &[&str]) {
    let log: Log = ctx.log(cfg, env).unwrap();
    for t in tags {
        let e = Entry {
            action: "deploy".into(),
            outcome: "success".into(),
            from: None,
            to: Some(ImageRef::new(t.to_string(), None)),
            git_sha: None,
            reason: "seed".into(),
            error: None,
            set: None,
            duration_ms: 0,
        };
        log.append(e, false).unwrap();
    }
}

/// The one removal a plan may hold: blue/green's discard of a set without
/// traffic, `docker container rm` of app containers by name (no `-v`, no
/// `--force`), never a stateful service's container.
fn app_container_rm(step: &Step, c: &crate::plan::Command, stateful: &[&str]) -> bool {
    let Step::App(AppStep::Discard { set, .. }) = step else {
        return false;
    };
    let [container, rm, names @ ..] = &c.args[..] else {
        return false;
    };
    c.program == "docker"
        && container == "container"
        && rm == "rm"
        && !names.is_empty()
        && names.iter().all(|n| {
            !n.starts_with('-')
                && set
                    .services()
                    .iter()
                    .any(|s| n.contains(&format!("-{s}-")) || n.contains(&format!(" {s}")))
                && !stateful.iter().any(|s| n.contains(&format!("-{s}-")))
        })
}

fn check(plan: &Plan, stateful: &[&str], allow_stateful_start: bool) {
    for step in plan.all_steps() {
        for c in step.commands() {
            for a in c.args.iter().chain(std::iter::once(&c.program)) {
                assert!(
                    !FORBIDDEN.contains(&a.as_str()) || app_container_rm(&step, &c, stateful),
                    "{}: `{a}` in {}",
                    plan.task,
                    c.display()
                );
            }
            // `redis`, or on Swarm `<stack>_redis` (and `<stack>_redis=0` for scale).
            let names_stateful = c.args.iter().any(|a| {
                stateful.iter().any(|s| {
                    let svc = a.split('=').next().unwrap_or(a);
                    a == s || svc.ends_with(&format!("_{s}"))
                })
            });
            if names_stateful {
                let ok = allow_stateful_start
                    && matches!(step, Step::StartStateful { .. })
                    && c.args.iter().any(|a| a == "--no-recreate");
                assert!(
                    ok,
                    "{}: a stateful service is named by {}",
                    plan.task,
                    c.display()
                );
            }
        }
    }
}

#[test]
fn every_deploy_plan_stays_on_app_services() {
    let mut n = 0;
    for engine in ENGINES {
        n += deploy_plans_on(engine);
    }
    assert_eq!(n, 72);
}

fn deploy_plans_on(engine: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, cfg) = setup_on(dir.path(), engine);
    seed(&ctx, &cfg, "staging", &["sha-aaaaaaaaaaaa"]);
    let stateful = ["redis", "postgres", "minio"];
    let mut n = 0;
    for env in ["staging", "prod"] {
        for history in [false, true] {
            if history {
                seed(&ctx, &cfg, env, &["sha-111111111111", "sha-222222222222"]);
            }
            for (force, no_auto) in [(false, false), (true, false), (true, true)] {
                let req = Request {
                    env: env.into(),
                    tag: "sha-aaaaaaaaaaaa".into(),
                    reason: "scope".into(),
                    force,
                    lock_wait: 0,
                    no_auto_rollback: no_auto,
                    confirmed: None,
                };
                for cli in [ComposeCli::V2Plugin, ComposeCli::V1Standalone] {
                    let plan = deploy::plan(&ctx, &cfg, &req, "deploy", cli).unwrap();
                    check(&plan, &stateful, true);
                    if engine == "swarm" {
                        let rendered = plan.render();
                        assert!(rendered.contains("docker stack deploy"), "{rendered}");
                        assert!(
                            plan.all_steps()
                                .iter()
                                .any(|s| matches!(s, Step::App(AppStep::Converge { .. }))),
                            "{rendered}"
                        );
                    }
                    n += 1;
                }
            }
        }
    }
    n
}

#[test]
fn every_rollback_plan_can_only_recreate_app_services() {
    for engine in ENGINES {
        rollback_plans_on(engine);
    }
}

fn rollback_plans_on(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, cfg) = setup_on(dir.path(), engine);
    seed(
        &ctx,
        &cfg,
        "staging",
        &["sha-111111111111", "sha-222222222222", "sha-333333333333"],
    );
    let stateful = ["redis", "postgres", "minio"];
    for to in [None, Some("sha-111111111111"), Some("sha-999999999999")] {
        for cli in [ComposeCli::V2Plugin, ComposeCli::V1Standalone] {
            let args = Rollback {
                env: "staging".into(),
                to: to.map(Into::into),
                reason: "scope".into(),
                force: true,
                lock_wait: 0,
            };
            let plan = crate::tasks::rollback::build(
                &ctx,
                &cfg,
                &args,
                cli,
                Plan::new("rollback", Some("staging")),
            )
            .unwrap();
            check(&plan, &stateful, false);
            for s in plan.all_steps() {
                assert!(
                    matches!(
                        s,
                        // Refusals decided while planning act on nothing.
                        Step::Lock { .. }
                            | Step::Require { .. }
                            | Step::Refuse { .. }
                            | Step::ProxyReady { .. }
                            | Step::App(
                                AppStep::EnsureImages { .. }
                                    | AppStep::Recreate { .. }
                                    | AppStep::Converge { .. }
                                    | AppStep::HealthGate(_)
                                    | AppStep::Discard { .. }
                                    | AppStep::StartBeside { .. }
                                    | AppStep::Start { .. }
                                    | AppStep::GateSet { .. }
                                    | AppStep::Switch { .. }
                                    | AppStep::Retire { .. }
                                    | AppStep::Stop { .. }
                            )
                    ),
                    "rollback plan has a step outside its scope: {s:?}"
                );
                // Image-only: no whole-stack deploy in a rollback.
                for c in s.commands() {
                    assert!(
                        !c.args.iter().any(|a| a == "stack"),
                        "rollback runs {}",
                        c.display()
                    );
                }
            }
        }
    }
}

#[test]
fn the_check_itself_catches_a_forbidden_step() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, cfg) = setup(dir.path());
    let req = Request {
        env: "staging".into(),
        tag: "sha-aaaaaaaaaaaa".into(),
        reason: "x".into(),
        force: false,
        lock_wait: 0,
        no_auto_rollback: false,
        confirmed: None,
    };
    let mut plan = deploy::plan(&ctx, &cfg, &req, "deploy", ComposeCli::V2Plugin).unwrap();
    let Some(Step::App(AppStep::Recreate { target })) = plan
        .steps
        .iter()
        .find(|s| matches!(s, Step::App(AppStep::Recreate { .. })))
        .cloned()
    else {
        panic!("no recreate step")
    };
    plan.step(Step::run(
        "sneaky",
        target
            .compose(crate::plan::Effect::Mutating)
            .args(["down", "-v"]),
    ));
    let caught = std::panic::catch_unwind(|| check(&plan, &["redis"], true));
    assert!(caught.is_err(), "a `down -v` step went unnoticed");
}

#[test]
fn the_check_catches_a_stateful_swarm_service() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, cfg) = setup_on(dir.path(), "swarm");
    let req = Request {
        env: "staging".into(),
        tag: "sha-aaaaaaaaaaaa".into(),
        reason: "x".into(),
        force: false,
        lock_wait: 0,
        no_auto_rollback: false,
        confirmed: None,
    };
    let mut plan = deploy::plan(&ctx, &cfg, &req, "deploy", ComposeCli::V2Plugin).unwrap();
    let sneaky = crate::plan::Command::new("docker", crate::plan::Effect::Mutating).args([
        "service",
        "update",
        "--image",
        "r/redis:8",
        "s_redis",
    ]);
    plan.step(Step::run("sneaky", sneaky));
    let caught = std::panic::catch_unwind(|| check(&plan, &["redis"], true));
    assert!(
        caught.is_err(),
        "a service update of s_redis went unnoticed"
    );
}

/// Blue/green plans made from what runs: a set with traffic is never
/// discarded or retired before the switch away from it, and the one
/// removal is of containers without traffic.
#[test]
fn blue_green_never_removes_the_serving_set() {
    use crate::engine::slots::{Container, Slot};
    use crate::engine::{Running, Target};
    use crate::rollout::{blue_green, Now};
    let dir = tempfile::tempdir().unwrap();
    let (_ctx, cfg) = setup_on(dir.path(), "bluegreen");
    let env = cfg.env("staging").unwrap();
    let c = |name: &str, service: &str, slot, tag: &str, running| Container {
        name: name.into(),
        service: service.into(),
        slot,
        tag: tag.into(),
        digest: None,
        running,
    };
    // Blue serves v2; green is the warm standby on v1 (its worker stopped).
    let engine = Running {
        services: [("api", "sha-222222222222"), ("worker", "sha-222222222222")]
            .iter()
            .map(|(s, t)| (s.to_string(), vec![t.to_string()]))
            .collect(),
        live: Some(Slot::Blue),
        digests: Default::default(),
        containers: vec![
            c("s-api-1", "api", Slot::Blue, "sha-222222222222", true),
            c("s-worker-1", "worker", Slot::Blue, "sha-222222222222", true),
            c("s-api-2", "api", Slot::Green, "sha-111111111111", true),
            c(
                "s-worker-2",
                "worker",
                Slot::Green,
                "sha-111111111111",
                false,
            ),
        ],
    };
    let now = Now::for_test(Some("sha-222222222222"), engine, &["api", "worker"])
        .with_standby("sha-111111111111");
    let stateful = ["redis", "postgres", "minio"];
    for (tag, switch_only) in [("sha-111111111111", true), ("sha-333333333333", false)] {
        let t = Target::app(&cfg, "staging", env, tag, ComposeCli::V2Plugin).unwrap();
        let bg = blue_green(&t, env, &now, 10);
        let mut plan = Plan::new("deploy", Some("staging"));
        for s in bg.steps.iter().chain(&bg.recovery) {
            plan.step(Step::App(s.clone()));
        }
        check(&plan, &stateful, false);
        let switch_at = bg
            .steps
            .iter()
            .position(|s| matches!(s, AppStep::Switch { .. }))
            .expect("a switch");
        for (i, s) in bg.steps.iter().enumerate() {
            match s {
                AppStep::Discard { set, names } => {
                    assert_eq!(
                        set.slot(),
                        Slot::Green,
                        "discards a set it should not: {s:?}"
                    );
                    assert_eq!(names, &["s-api-2", "s-worker-2"]);
                    assert!(
                        i > switch_at,
                        "the standby goes only once the new set serves"
                    );
                }
                AppStep::Retire { set, .. } => {
                    assert_eq!(set.slot(), Slot::Blue);
                    assert!(i > switch_at, "retired before the switch");
                    assert_eq!(i, bg.steps.len() - 1, "the drain is the last step");
                }
                // To the warm standby, or to a third set beside both.
                AppStep::Switch { set } => {
                    let want = if switch_only {
                        Slot::Green
                    } else {
                        Slot::Amber
                    };
                    assert_eq!(set.slot(), want);
                }
                _ => {}
            }
        }
        let discards = bg
            .steps
            .iter()
            .any(|s| matches!(s, AppStep::Discard { .. }));
        let starts_beside = bg
            .steps
            .iter()
            .any(|s| matches!(s, AppStep::StartBeside { .. }));
        assert_eq!(
            (discards, starts_beside),
            (!switch_only, !switch_only),
            "{tag}: {:?}",
            bg.steps
        );
        // The recovery switches back to blue, and only then acts on the new set.
        let back = bg
            .recovery
            .iter()
            .position(|s| matches!(s, AppStep::Switch { set } if set.slot() == Slot::Blue))
            .expect("recovery switches back");
        assert!(bg.recovery.iter().skip(back).all(|s| match s {
            AppStep::Discard { set, .. } | AppStep::Retire { set, .. } => set.slot() != Slot::Blue,
            _ => true,
        }));
    }
}

/// After a `kill -9` right after a new set started, three sets exist: the
/// next deploy removes the leftover before its own set starts, in the
/// slot that frees, and scales by the configured replicas, not by what runs.
#[test]
fn blue_green_removes_a_leftover_set_first_and_adds_only_the_configured_replicas() {
    use crate::engine::slots::{Container, Slot};
    use crate::engine::{Running, Target};
    use crate::rollout::{blue_green, Now};
    let dir = tempfile::tempdir().unwrap();
    let (_ctx, cfg) = setup_on(dir.path(), "bluegreen");
    let env = cfg.env("staging").unwrap();
    let c = |name: &str, service: &str, slot, tag: &str| Container {
        name: name.into(),
        service: service.into(),
        slot,
        tag: tag.into(),
        digest: None,
        running: true,
    };
    let (v1, v2, v3) = ("sha-111111111111", "sha-222222222222", "sha-333333333333");
    // Blue serves v2, green is the standby on v1, amber is what a killed
    // deploy of v3 left.
    let mut containers = Vec::new();
    for (i, (slot, tag)) in [(Slot::Blue, v2), (Slot::Green, v1), (Slot::Amber, v3)]
        .into_iter()
        .enumerate()
    {
        containers.push(c(&format!("s-api-{}", i + 1), "api", slot, tag));
        containers.push(c(&format!("s-worker-{}", i + 1), "worker", slot, tag));
    }
    let engine = Running {
        services: [("api", v2), ("worker", v2)]
            .iter()
            .map(|(s, t)| (s.to_string(), vec![t.to_string()]))
            .collect(),
        live: Some(Slot::Blue),
        containers,
        digests: Default::default(),
    };
    let now = Now::for_test(Some(v2), engine, &["api", "worker"]).with_standby(v1);
    let t = Target::app(
        &cfg,
        "staging",
        env,
        "sha-444444444444",
        ComposeCli::V2Plugin,
    )
    .unwrap();
    let bg = blue_green(&t, env, &now, 10);
    let start = bg
        .steps
        .iter()
        .position(|s| matches!(s, AppStep::StartBeside { .. }))
        .expect("a new set starts");
    let AppStep::StartBeside { set, scale } = &bg.steps[start] else {
        unreachable!()
    };
    assert_eq!(set.slot(), Slot::Amber, "{:?}", bg.steps);
    // Blue and green stay while it starts: two of each, plus one.
    assert_eq!(scale.get("api"), Some(&3), "{scale:?}");
    assert_eq!(scale.get("worker"), Some(&3), "{scale:?}");
    let discards: Vec<(usize, Slot)> = bg
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            AppStep::Discard { set, .. } => Some((i, set.slot())),
            _ => None,
        })
        .collect();
    let switch_at = bg
        .steps
        .iter()
        .position(|s| matches!(s, AppStep::Switch { .. }))
        .unwrap();
    // The leftover goes before the start; the standby only after the switch.
    assert_eq!(discards.len(), 2, "{:?}", bg.steps);
    assert!(discards.contains(&(discards[0].0, Slot::Amber)) && discards[0].0 < start);
    assert!(discards[1].1 == Slot::Green && discards[1].0 > switch_at);

    // With `replicas = { api = 2 }` the new set gets two api containers.
    let toml = std::fs::read_to_string(dir.path().join("deploy.toml"))
        .unwrap()
        .replacen(
            "probe_ports = { worker = 8080 }",
            "probe_ports = { worker = 8080 }, replicas = { api = 2 }",
            1,
        );
    std::fs::write(dir.path().join("deploy.toml"), toml).unwrap();
    let cfg = Config::load(&dir.path().join("deploy.toml")).unwrap();
    let env = cfg.env("staging").unwrap();
    let t = Target::app(
        &cfg,
        "staging",
        env,
        "sha-444444444444",
        ComposeCli::V2Plugin,
    )
    .unwrap();
    let bg = blue_green(&t, env, &now, 10);
    let scale = bg
        .steps
        .iter()
        .find_map(|s| match s {
            AppStep::StartBeside { scale, .. } => Some(scale.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((scale["api"], scale["worker"]), (4, 3), "{scale:?}");
}
