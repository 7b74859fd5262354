//! Prod runs exactly the bytes staging tested, on the real engine and
//! registry: a tag re-pushed with other bytes (the same `APP_VERSION`, so
//! the health gate cannot tell) is refused by the promotion gate, naming
//! both digests, in the dry run and the real run alike; `--force` runs the
//! new digest and the record says so; a rollback runs the digest its
//! target ran with, whatever the tag points to now; and `from` keeps tag
//! and digest.

mod common;

use std::process::Command;

use common::*;

const REPO: &str = "127.0.0.1:5000/fetchml/testbed";

fn push_variant(tag: &str, v: &str) -> String {
    variant(REPO, tag, v, true)
}

/// `(container ID, image ID, configured image)` of each app container of `env`.
fn app_containers(s: &Stack, env: &str) -> Vec<(String, String, String)> {
    ["api", "worker"]
        .iter()
        .map(|svc| app_container(s, env, svc))
        .collect()
}

fn short(d: &str) -> String {
    xtask::engine::registry::short(d)
}

/// Every app container of `env` runs exactly `digest`.
fn runs(s: &Stack, env: &str, tag: &str, digest: &str) {
    let want = image_id(&format!("{REPO}@{digest}"));
    for (id, img, cfg) in app_containers(s, env) {
        assert_eq!(
            img, want,
            "container {id} of {env} runs another image ({cfg})"
        );
        assert_eq!(
            cfg,
            format!("{REPO}:{tag}@{digest}"),
            "container {id} of {env}"
        );
    }
}

#[test]
fn a_moved_tag_is_refused_forced_and_rolled_back_by_digest() {
    let imgs = images();
    let s = Stack::with(
        "digest",
        Opts {
            require_evidence: "\"backup-smoke\"",
            ..Opts::default()
        },
    );
    let tag = format!("dg-{}-t", std::process::id());
    let a = push_variant(&tag, "a");

    // Staging tests T at digest a, with its evidence; prod runs v2.
    s.ok(&["deploy-staging", "--tag", &imgs.v2]);
    let v2 = s.records("staging")[0].to.clone().unwrap();
    assert!(
        v2.digest.is_some(),
        "the deploy record names no digest: {v2:?}"
    );
    let plan = s.ok(&["--dry-run", "deploy-staging", "--tag", &tag]);
    for svc in ["api", "worker"] {
        assert!(
            stdout(&plan).contains(&format!("{svc} runs {REPO}:{tag}@{a}")),
            "the dry run does not show {svc}'s pin:\n{}",
            text(&plan)
        );
    }
    s.ok(&["deploy-staging", "--tag", &tag]);
    runs(&s, "staging", &tag, &a);
    let smoke = s
        .cmd()
        .args([
            "backup-smoke",
            "--rows",
            "8",
            "--tag",
            &tag,
            "--env",
            "staging",
        ])
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGDATABASE")
        .output()
        .unwrap();
    assert!(smoke.status.success(), "backup-smoke: {}", text(&smoke));
    let staging = s.records("staging");
    let deployed = staging[staging.len() - 2].to.clone().unwrap();
    let evidence = staging.last().unwrap();
    assert_eq!(deployed.digest.as_deref(), Some(a.as_str()));
    assert_eq!(evidence.action, "backup-smoke");
    assert_eq!(
        evidence.to.as_ref().unwrap().digest.as_deref(),
        Some(a.as_str())
    );
    s.ok(&[
        "deploy-prod",
        "--tag",
        &imgs.v2,
        "--yes",
        "--force",
        "--reason",
        "first",
    ]);

    // Other bytes under the same tag: the gate sees it, in the dry run too.
    let b = push_variant(&tag, "b");
    assert_ne!(a, b);
    let before = app_containers(&s, "prod");
    let dry = s.run(&["--dry-run", "deploy-prod", "--tag", &tag, "--yes"]);
    let real = s.run(&["deploy-prod", "--tag", &tag, "--yes"]);
    for o in [&dry, &real] {
        assert_eq!(exit_code(o), 5, "{}", text(o));
        let line = first_error_line(o);
        assert!(
            line.contains(&short(&a)) && line.contains(&short(&b)),
            "the refusal does not name both digests: {line}"
        );
    }
    assert_eq!(first_error_line(&dry), first_error_line(&real));
    assert_eq!(
        app_containers(&s, "prod"),
        before,
        "a refused deploy touched prod"
    );
    let refused = s.records("prod").last().unwrap().clone();
    assert_eq!(refused.outcome, "refused");

    // --force runs the new digest, and the record says which and why.
    s.ok(&[
        "deploy-prod",
        "--tag",
        &tag,
        "--yes",
        "--force",
        "--reason",
        "moved",
    ]);
    runs(&s, "prod", &tag, &b);
    let forced = s.records("prod").last().unwrap().clone();
    assert_eq!(
        forced.to.as_ref().unwrap().digest.as_deref(),
        Some(b.as_str())
    );
    assert_eq!(
        forced.from.as_ref(),
        Some(&v2),
        "from is what served, with its digest"
    );
    assert!(
        forced.reason.contains("OVERRIDDEN")
            && forced.reason.contains(&short(&a))
            && forced.reason.contains(&short(&b)),
        "{}",
        forced.reason
    );

    // Staging moves on; `from` is T at the digest that served, and the
    // rollback runs a, although the registry's T is b now.
    s.ok(&["deploy-staging", "--tag", &imgs.v1]);
    let next = s.records("staging").last().unwrap().clone();
    assert_eq!(next.from, Some(deployed.clone()));
    let line = s
        .records("staging")
        .iter()
        .position(|r| r.action == "deploy" && r.to.as_ref() == Some(&deployed))
        .unwrap()
        + 1;
    s.ok(&["rollback", "staging", "--reason", "moved-tag"]);
    runs(&s, "staging", &tag, &a);
    let back = s.records("staging").last().unwrap().clone();
    assert_eq!(back.to, Some(deployed.clone()));
    let status = s.ok(&["status", "staging"]);
    assert!(
        stdout(&status).contains(&format!("current: {tag}@{}", short(&a))),
        "{}",
        text(&status)
    );

    // --to @N takes the digest of that record.
    s.ok(&["deploy-staging", "--tag", &imgs.v1]);
    s.ok(&[
        "rollback",
        "staging",
        "--to",
        &format!("@{line}"),
        "--reason",
        "by-line",
    ]);
    runs(&s, "staging", &tag, &a);

    let _ = Command::new("docker")
        .args(["image", "rm", &format!("{REPO}:{tag}")])
        .output();
}

/// A container run by the tag alone, then the tag re-pushed: docker shows
/// only an image ID, and the next record's `from` still names the tag and
/// the digest that served, from the chain.
#[test]
fn from_survives_a_tag_moved_under_a_container_run_by_tag() {
    let imgs = images();
    let s = Stack::new("digest-from");
    let tag = format!("dg-{}-f", std::process::id());
    let a = push_variant(&tag, "a");
    s.ok(&["deploy-staging", "--tag", &tag]);
    let deployed = s.records("staging")[0].to.clone().unwrap();
    assert_eq!(deployed.digest.as_deref(), Some(a.as_str()));
    // The same bytes, recreated by hand by the tag alone (as before pins).
    let (api, admin) = s.ports[0];
    let o = Command::new("docker")
        .args(["compose", "-p", &s.project("staging"), "-f"])
        .arg(root().join("deployments/testbed/docker-compose.yml"))
        .args(["up", "-d", "--no-deps", "--force-recreate", "api", "worker"])
        .env("FETCHML_TAG", &tag)
        .env("API_PORT", api.to_string())
        .env("PROXY_ADMIN_PORT", admin.to_string())
        .env("COMPLIANCE_MODE", "standard")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let b = push_variant(&tag, "b");
    assert_ne!(a, b);
    let shown = s.running_images("staging", "api");
    assert!(
        shown.iter().all(|i| !i.contains(&tag)),
        "docker still shows the tag, so this test would prove nothing: {shown:?}"
    );
    s.ok(&["deploy-staging", "--tag", &imgs.v1]);
    let next = s.records("staging").last().unwrap().clone();
    assert_eq!(next.from, Some(deployed), "{next:?}");
    let _ = Command::new("docker")
        .args(["image", "rm", &format!("{REPO}:{tag}")])
        .output();
}

/// Two repositories under one tag variable (as production's api-server and
/// worker): each service runs the digest resolved for its own repository;
/// the dry run shows both; a tag moved in one repository is refused by the
/// promotion gate naming that service and both digests, with prod
/// untouched; `--force` records the overridden digest; a rollback runs the
/// recorded digests although the tag moved.
#[test]
fn several_repositories_each_run_and_record_their_digest() {
    let pid = std::process::id();
    let repo = |s: &str| format!("127.0.0.1:5000/fetchml/pin-{pid}-{s}");
    let (api, worker) = (repo("api"), repo("worker"));
    let s = Stack::with(
        "pin",
        Opts {
            repos: Some((api.clone(), worker.clone())),
            ..Opts::default()
        },
    );
    let (tag, next) = (format!("pin-{pid}-t"), format!("pin-{pid}-n"));
    // Other bytes per repository, so each service has a digest of its own.
    let (api_a, worker_a) = (
        variant(&api, &tag, "a-api", true),
        variant(&worker, &tag, "a-worker", true),
    );
    assert_ne!(api_a, worker_a);
    for r in [&api, &worker] {
        variant(r, &next, "n", true);
    }
    // Each service runs, and the running containers show, its own digest.
    let runs = |env: &str, t: &str, want: &[(&str, &str, &str)]| {
        for (svc, r, d) in want {
            let (id, img, cfg) = app_container(&s, env, svc);
            assert_eq!(
                cfg,
                format!("{r}:{t}@{d}"),
                "container {id} ({svc}) of {env}"
            );
            assert_eq!(
                img,
                image_id(&format!("{r}@{d}")),
                "container {id} ({svc}) of {env}"
            );
        }
    };
    let pinned_a = [
        ("api", api.as_str(), api_a.as_str()),
        ("worker", worker.as_str(), worker_a.as_str()),
    ];

    let dry = s.ok(&["--dry-run", "deploy-staging", "--tag", &tag]);
    for (svc, r, d) in pinned_a {
        assert!(
            stdout(&dry).contains(&format!("{svc} runs {r}:{tag}@{d}")),
            "the dry run does not show {svc}'s pin:\n{}",
            text(&dry)
        );
    }
    assert!(!stdout(&dry).contains("not pinned"), "{}", text(&dry));
    s.ok(&["deploy-staging", "--tag", &tag]);
    runs("staging", &tag, &pinned_a);
    let deployed = s.records("staging").last().unwrap().to.clone().unwrap();
    assert_eq!(deployed.digest.as_deref(), Some(api_a.as_str()));
    assert_eq!(
        deployed.digests,
        [("api", &api_a), ("worker", &worker_a)]
            .map(|(k, v)| (k.to_string(), v.clone()))
            .into()
    );
    // The override is the state dir's, owner-only.
    let pins: Vec<_> = std::fs::read_dir(s.state.join("staging"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pins-")
        })
        .collect();
    assert!(!pins.is_empty(), "no rendered override in the state dir");
    for p in &pins {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    s.ok(&["deploy-prod", "--tag", &tag, "--yes"]);
    runs("prod", &tag, &pinned_a);

    // Only the worker's tag moves: the gate names the worker and both digests.
    let worker_b = variant(&worker, &tag, "b-worker", true);
    assert_ne!(worker_a, worker_b);
    let before: Vec<_> = ["api", "worker"]
        .iter()
        .map(|v| app_container(&s, "prod", v))
        .collect();
    let dry = s.run(&["--dry-run", "deploy-prod", "--tag", &tag, "--yes"]);
    let real = s.run(&["deploy-prod", "--tag", &tag, "--yes"]);
    for o in [&dry, &real] {
        assert_eq!(exit_code(o), 5, "{}", text(o));
        let line = first_error_line(o);
        assert!(
            line.contains("worker")
                && line.contains(&short(&worker_a))
                && line.contains(&short(&worker_b)),
            "the refusal does not name the worker and both its digests: {line}"
        );
    }
    assert_eq!(first_error_line(&dry), first_error_line(&real));
    let after: Vec<_> = ["api", "worker"]
        .iter()
        .map(|v| app_container(&s, "prod", v))
        .collect();
    assert_eq!(after, before, "a refused deploy touched prod");

    // --force runs the moved worker, and the record names its digest.
    s.ok(&[
        "deploy-prod",
        "--tag",
        &tag,
        "--yes",
        "--force",
        "--reason",
        "moved",
    ]);
    runs(
        "prod",
        &tag,
        &[pinned_a[0], ("worker", worker.as_str(), worker_b.as_str())],
    );
    let forced = s.records("prod").last().unwrap().clone();
    let to = forced.to.as_ref().unwrap();
    assert_eq!(to.digests.get("worker"), Some(&worker_b));
    assert_eq!(to.digests.get("api"), Some(&api_a));
    assert!(
        forced.reason.contains("OVERRIDDEN") && forced.reason.contains(&short(&worker_b)),
        "{}",
        forced.reason
    );

    // Staging moves on; the rollback runs the digests T ran with, not the
    // worker's digest the registry's T names now.
    s.ok(&["deploy-staging", "--tag", &next]);
    let back = s.ok(&["rollback", "staging", "--reason", "moved-tag"]);
    runs("staging", &tag, &pinned_a);
    assert_eq!(
        s.records("staging").last().unwrap().to,
        Some(deployed.clone()),
        "{}",
        text(&back)
    );
    let status = s.ok(&["status", "staging"]);
    assert!(
        stdout(&status).contains(&format!(
            "{tag}[api@{},worker@{}]",
            short(&api_a),
            short(&worker_a)
        )),
        "{}",
        text(&status)
    );

    let mut built = Vec::new();
    for r in [&api, &worker] {
        for t in [&tag, &next] {
            built.push(format!("{r}:{t}"));
        }
    }
    remove_images(&built);
}

/// `pull = "never"`: an image built on this host and never pushed deploys
/// as it is, and the record names its image ID (there is no registry
/// digest); a tag this host lacks is refused before anything is touched,
/// in the dry run and the real run alike.
#[test]
fn pull_never_deploys_a_local_only_image_and_refuses_a_missing_one() {
    let pid = std::process::id();
    let repo = format!("127.0.0.1:5000/fetchml/pin-{pid}-local");
    let s = Stack::with(
        "pin-local",
        Opts {
            repos: Some((repo.clone(), repo.clone())),
            pull: Some("never"),
            ..Opts::default()
        },
    );
    let tag = format!("pin-{pid}-l");
    variant(&repo, &tag, "local", false);
    let id = image_id(&format!("{repo}:{tag}"));
    let dry = s.ok(&["--dry-run", "deploy-staging", "--tag", &tag]);
    assert!(
        stdout(&dry).contains(&format!(
            "api runs {repo}:{tag} as this host has it, image {id}"
        )),
        "the dry run does not say the image is this host's:\n{}",
        text(&dry)
    );
    assert!(
        !stdout(&dry).contains(" pull --quiet")
            && stdout(&dry).contains("up -d --no-deps --no-build --pull never"),
        "nothing is pulled:\n{}",
        text(&dry)
    );
    s.ok(&["deploy-staging", "--tag", &tag]);
    let before: Vec<_> = ["api", "worker"]
        .iter()
        .map(|v| app_container(&s, "staging", v))
        .collect();
    for (c, img, cfg) in &before {
        assert_eq!((img, cfg), (&id, &format!("{repo}:{tag}")), "container {c}");
    }
    let to = s.records("staging").last().unwrap().to.clone().unwrap();
    assert_eq!(
        to.digest, None,
        "no registry digest names a local-only image: {to:?}"
    );
    assert_eq!(
        to.local,
        [("api", &id), ("worker", &id)]
            .map(|(k, v)| (k.to_string(), v.clone()))
            .into()
    );

    // A tag this host lacks: nothing would pull it, so nothing starts.
    let gone = format!("pin-{pid}-gone");
    let dry = s.run(&["--dry-run", "deploy-staging", "--tag", &gone]);
    let real = s.run(&["deploy-staging", "--tag", &gone]);
    for o in [&dry, &real] {
        assert_eq!(exit_code(o), 5, "{}", text(o));
        assert!(
            first_error_line(o).contains(&format!(
                "pull = \"never\") not met: missing image {repo}:{gone}"
            )),
            "{}",
            text(o)
        );
    }
    assert_eq!(first_error_line(&dry), first_error_line(&real));
    let after: Vec<_> = ["api", "worker"]
        .iter()
        .map(|v| app_container(&s, "staging", v))
        .collect();
    assert_eq!(after, before, "a refused deploy touched staging");
    assert_eq!(s.records("staging").last().unwrap().outcome, "refused");
    remove_images(&[format!("{repo}:{tag}")]);
}

/// `pull = "missing"`: an image this host has runs as it is (a local-only
/// one by its image ID, nothing asked of the registry for it); one it lacks
/// is resolved in the registry, pulled and pinned by its digest.
#[test]
fn pull_missing_runs_what_this_host_has_and_pulls_the_rest() {
    let pid = std::process::id();
    let repo = format!("127.0.0.1:5000/fetchml/pin-{pid}-missing");
    let s = Stack::with(
        "pin-missing",
        Opts {
            repos: Some((repo.clone(), repo.clone())),
            pull: Some("missing"),
            ..Opts::default()
        },
    );
    let (here, there) = (format!("pin-{pid}-h"), format!("pin-{pid}-r"));
    variant(&repo, &here, "here", false);
    let id = image_id(&format!("{repo}:{here}"));
    s.ok(&["deploy-staging", "--tag", &here]);
    let to = s.records("staging").last().unwrap().to.clone().unwrap();
    assert_eq!(
        (to.digest.as_deref(), to.local.get("api")),
        (None, Some(&id))
    );
    // In the registry only: pulled, and run by its digest.
    let d = variant(&repo, &there, "there", true);
    remove_images(&[format!("{repo}:{there}")]);
    let plan = s.ok(&["--dry-run", "deploy-staging", "--tag", &there]);
    assert!(
        stdout(&plan).contains("pull --quiet --policy missing"),
        "{}",
        text(&plan)
    );
    s.ok(&["deploy-staging", "--tag", &there]);
    let (_, img, cfg) = app_container(&s, "staging", "worker");
    assert_eq!(cfg, format!("{repo}:{there}@{d}"));
    assert_eq!(img, image_id(&format!("{repo}@{d}")));
    let to = s.records("staging").last().unwrap().to.clone().unwrap();
    assert_eq!(
        (to.digest.as_deref(), to.local.is_empty()),
        (Some(d.as_str()), true)
    );
    remove_images(&[format!("{repo}:{here}"), format!("{repo}:{there}")]);
}
