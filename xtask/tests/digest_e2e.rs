//! Prod runs exactly the bytes staging tested, on the real engine and
//! registry: a tag re-pushed with other bytes (the same `APP_VERSION`, so
//! the health gate cannot tell) is refused by the promotion gate, naming
//! both digests, in the dry run and the real run alike; `--force` runs the
//! new digest and the record says so; a rollback runs the digest its
//! target ran with, whatever the tag points to now; and `from` keeps tag
//! and digest.

mod common;

use std::process::{Command, Stdio};

use common::*;

const REPO: &str = "127.0.0.1:5000/fetchml/testbed";

/// Builds `REPO:tag` from v1's image with `APP_VERSION=tag` and a label
/// that makes each variant other bytes, pushes it, and returns the
/// registry's digest of the tag.
fn push_variant(tag: &str, variant: &str) -> String {
    let from = &images().v1;
    let dockerfile =
        format!("FROM {REPO}:{from}\nENV APP_VERSION={tag}\nLABEL digest-e2e.variant={variant}\n");
    let image = format!("{REPO}:{tag}");
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", &image, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    build
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let o = build.wait_with_output().unwrap();
    assert!(o.status.success(), "docker build {image}: {}", text(&o));
    let o = Command::new("docker")
        .args(["push", "--quiet", &image])
        .output()
        .unwrap();
    assert!(o.status.success(), "docker push {image}: {}", text(&o));
    xtask::engine::registry::digest(REPO, tag, 10).unwrap()
}

/// `(image ID, configured image)` of each app container of `env`, by container ID.
fn app_containers(s: &Stack, env: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for svc in ["api", "worker"] {
        let id = s.container_id(env, svc);
        assert!(!id.is_empty(), "no {svc} container in {env}");
        let o = Command::new("docker")
            .args(["inspect", "--format", "{{.Image}} {{.Config.Image}}", &id])
            .output()
            .unwrap();
        let t = stdout(&o);
        let (img, cfg) = t.trim().split_once(' ').unwrap();
        out.push((id, img.to_string(), cfg.to_string()));
    }
    out
}

/// The local image ID of `REPO@digest`.
fn image_id(digest: &str) -> String {
    let o = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{REPO}@{digest}"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    stdout(&o).trim().to_string()
}

fn short(d: &str) -> String {
    xtask::engine::registry::short(d)
}

/// Every app container of `env` runs exactly `digest`.
fn runs(s: &Stack, env: &str, tag: &str, digest: &str) {
    let want = image_id(digest);
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

fn first_error_line(o: &std::process::Output) -> String {
    stderr(o)
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_string()
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
    assert!(
        stdout(&plan).contains(&format!("FETCHML_TAG={tag}@{a}")),
        "the dry run does not show the pinned tag:\n{}",
        text(&plan)
    );
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
