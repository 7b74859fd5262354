//! Every compose file and overlay under `deployments/`, validated by the real
//! `docker compose config` with the variables its environment in deploy.toml
//! gives it, plus the properties the deploy tasks rely on:
//! - deploy.toml (and the testbed's) load with `Config::load`;
//! - each environment renders, and the image compose runs for an app service
//!   is exactly `images.<service>:<tag>` from the config, with the tag coming
//!   from the tag variable, which compose refuses to run without;
//! - every service is classified as app or stateful (none escapes the scope
//!   rules), and every published port is bound to loopback;
//! - in the real stack, stateful services have a healthcheck and a named
//!   volume, and secrets reach containers only as files;
//! - staging and prod have the same shape (only variables differ);
//! - every overlay in `deployments/modes/` validates on top of a base.
//!
//! Compose missing is a failure with the reason, never a skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use xtask::config::{Config, Env};

const TAG: &str = "sha-0123456789ab";

fn root() -> PathBuf {
    xtask::workspace_root()
}

fn deployments() -> PathBuf {
    root().join("deployments")
}

/// The configs whose environments are rendered, relative to deployments/.
const CONFIGS: [&str; 3] = [
    "deploy.toml",
    "testbed/deploy.toml",
    "examples/hello/deploy.toml",
];

fn load(rel: &str) -> Config {
    let path = deployments().join(rel);
    Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
}

/// Fails (never skips) when the compose v2 CLI is missing.
fn require_compose() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = Command::new("docker").args(["compose", "version", "--short"]).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "`docker compose version` failed ({}): the compose v2 plugin is needed; run `cargo xtask setup`",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run docker ({e}): the docker CLI and compose v2 are needed; run `cargo xtask setup`"),
        }
    });
}

/// `docker compose [-p project] -f F... <args>` with exactly the given
/// variables (plus PATH and HOME), so nothing leaks in from the test's
/// environment.
fn compose(
    project: Option<&str>,
    files: &[PathBuf],
    vars: &BTreeMap<String, String>,
    args: &[&str],
) -> Output {
    require_compose();
    let mut c = Command::new("docker");
    c.env_clear();
    for k in ["PATH", "HOME", "DOCKER_CONFIG"] {
        if let Some(v) = std::env::var_os(k) {
            c.env(k, v);
        }
    }
    c.envs(vars).arg("compose");
    if let Some(p) = project {
        c.args(["-p", p]);
    }
    for f in files {
        c.arg("-f").arg(f);
    }
    c.args(args).current_dir(deployments());
    c.output().expect("running docker compose")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// The variables an environment hands compose: its vars plus the tag.
fn vars_of(env: &Env) -> BTreeMap<String, String> {
    let mut v = env.vars.clone();
    // The proxy's admin directory and user, as the tool sets them.
    if let Some(d) = env.proxy.as_ref().and_then(|p| p.admin_dir.as_ref()) {
        for (k, val) in xtask::engine::proxy_vars(d) {
            v.insert(k.to_string(), val);
        }
    }
    v.insert(env.tag_var.clone(), TAG.into());
    v
}

fn files_of(cfg: &Config, env: &Env) -> Vec<PathBuf> {
    env.compose_files.iter().map(|f| cfg.resolve(f)).collect()
}

/// The environment's stack as compose renders it (JSON).
fn render(cfg: &Config, name: &str) -> Value {
    let env = cfg.env(name).unwrap();
    let files = files_of(cfg, env);
    let q = compose(Some(&env.project), &files, &vars_of(env), &["config", "-q"]);
    assert!(
        q.status.success(),
        "env {name}: docker compose config -q: {}",
        stderr(&q)
    );
    let out = compose(
        Some(&env.project),
        &files,
        &vars_of(env),
        &["config", "--format", "json"],
    );
    assert!(out.status.success(), "env {name}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("compose config --format json is JSON")
}

fn services(doc: &Value) -> &serde_json::Map<String, Value> {
    doc["services"].as_object().expect("services")
}

#[test]
fn deploy_configs_load() {
    let cfg = load("deploy.toml");
    let names: Vec<&str> = cfg.envs.keys().map(String::as_str).collect();
    assert_eq!(names, ["prod", "staging"]);
    let prod = cfg.env("prod").unwrap();
    assert_eq!(prod.promote_from.as_deref(), Some("staging"));
    assert_eq!(
        prod.require_evidence,
        ["security-modes-test", "backup-smoke"]
    );
    assert_eq!(prod.compliance_mode.as_deref(), Some("hipaa"));
    assert!(
        prod.audit_sink.is_some(),
        "prod (hipaa) mirrors its audit log to a sink"
    );
    assert_eq!(
        cfg.env("staging").unwrap().compliance_mode.as_deref(),
        Some("standard")
    );
    let images: Vec<&str> = cfg.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(images, ["api-server", "worker"]);
    // The testbed twin too: the demo and the end-to-end tests use it.
    assert_eq!(load("testbed/deploy.toml").envs.len(), 2);
}

#[test]
fn every_environment_renders_with_its_own_images_and_tag() {
    for rel in CONFIGS {
        let cfg = load(rel);
        for (name, env) in &cfg.envs {
            let at = format!("{rel} env {name}");
            let doc = render(&cfg, name);
            let svcs = services(&doc);
            let classified: BTreeSet<&str> = env
                .app_services
                .iter()
                .chain(&env.stateful_services)
                .chain(env.proxy.as_ref().map(|p| &p.service))
                .map(String::as_str)
                .collect();
            let rendered: BTreeSet<&str> = svcs.keys().map(String::as_str).collect();
            assert_eq!(
                rendered, classified,
                "{at}: every service must be an app service, a stateful one or the proxy"
            );
            for svc in &env.app_services {
                let want = format!("{}:{TAG}", env.images[svc]);
                assert_eq!(
                    svcs[svc]["image"].as_str(),
                    Some(want.as_str()),
                    "{at}: image of {svc}"
                );
            }
            for (svc, s) in svcs {
                for p in s["ports"].as_array().into_iter().flatten() {
                    assert_eq!(
                        p["host_ip"].as_str(),
                        Some("127.0.0.1"),
                        "{at}: {svc} publishes {p} beyond loopback"
                    );
                }
            }
            // Without the tag variable compose must refuse, not run a default.
            let mut no_tag = vars_of(env);
            no_tag.remove(&env.tag_var);
            let o = compose(
                Some(&env.project),
                &files_of(&cfg, env),
                &no_tag,
                &["config", "-q"],
            );
            assert!(
                !o.status.success(),
                "{at}: compose ran without {}",
                env.tag_var
            );
            assert!(stderr(&o).contains(&env.tag_var), "{at}: {}", stderr(&o));
        }
    }
}

#[test]
fn the_real_stack_keeps_state_and_secrets_safe() {
    let cfg = load("deploy.toml");
    for (name, env) in &cfg.envs {
        let doc = render(&cfg, name);
        let svcs = services(&doc);
        // The file's own name is the project, so a hand-run compose finds the same containers.
        let plain = compose(
            None,
            &files_of(&cfg, env),
            &vars_of(env),
            &["config", "--format", "json"],
        );
        let plain: Value = serde_json::from_slice(&plain.stdout).unwrap();
        assert_eq!(
            plain["name"].as_str(),
            Some(env.project.as_str()),
            "env {name}: name: in the compose file"
        );
        for svc in &env.stateful_services {
            let s = &svcs[svc];
            assert!(
                s["healthcheck"]["test"].is_array(),
                "env {name}: {svc} has no healthcheck"
            );
            let named = s["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["type"] == "volume");
            assert!(named, "env {name}: {svc} keeps no named volume");
        }
        for svc in &env.app_services {
            assert!(
                svcs[svc]["healthcheck"]["test"].is_array(),
                "env {name}: {svc} has no healthcheck"
            );
            assert_eq!(
                svcs[svc]["read_only"],
                Value::Bool(true),
                "env {name}: {svc} is not read_only"
            );
        }
        for (svc, s) in svcs {
            for (k, v) in s["environment"].as_object().into_iter().flatten() {
                let secretish = ["PASSWORD", "SECRET", "TOKEN", "KEY"]
                    .iter()
                    .any(|w| k.contains(w));
                if secretish {
                    let path = v.as_str().unwrap_or("");
                    assert!(
                        k.ends_with("_FILE") && path.starts_with("/run/secrets/"),
                        "env {name}: {svc}.environment.{k} must point to a secret file, not hold a value"
                    );
                }
            }
        }
        for (secret, def) in doc["secrets"].as_object().expect("secrets") {
            assert!(
                def["file"].is_string(),
                "env {name}: secret {secret} must come from a file"
            );
        }
    }
}

/// The set of keys at each level that matters, so the two files cannot drift apart.
fn shape(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (svc, s) in services(doc) {
        let mut keys: BTreeSet<String> = s.as_object().unwrap().keys().cloned().collect();
        for k in s["environment"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            keys.insert(format!("environment.{k}"));
        }
        for v in s["volumes"].as_array().into_iter().flatten() {
            keys.insert(format!("mount {}", v["target"].as_str().unwrap_or("?")));
        }
        out.insert(svc.clone(), keys);
    }
    for section in ["volumes", "secrets", "networks"] {
        out.insert(
            section.into(),
            doc[section]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect(),
        );
    }
    out
}

#[test]
fn staging_and_prod_have_the_same_shape() {
    let cfg = load("deploy.toml");
    assert_eq!(
        shape(&render(&cfg, "staging")),
        shape(&render(&cfg, "prod"))
    );
}

/// Every compose file under deployments/ (outside modes/) belongs to an
/// environment of some config, so none goes unvalidated.
#[test]
fn every_compose_file_belongs_to_an_environment() {
    let mut used = BTreeSet::new();
    for rel in CONFIGS {
        let cfg = load(rel);
        for env in cfg.envs.values() {
            used.extend(
                files_of(&cfg, env)
                    .into_iter()
                    .map(|p| std::fs::canonicalize(p).unwrap()),
            );
        }
    }
    let mut found = Vec::new();
    collect_compose_files(&deployments(), &mut found);
    assert!(!found.is_empty());
    for f in found {
        let c = std::fs::canonicalize(&f).unwrap();
        assert!(
            used.contains(&c),
            "{} is in no environment of {CONFIGS:?}: add it, or it is never validated",
            f.display()
        );
    }
}

fn collect_compose_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "modes" {
                collect_compose_files(&p, out);
            }
        } else if (name.starts_with("docker-compose") || name.starts_with("compose"))
            && name.ends_with(".yml")
        {
            out.push(p);
        }
    }
}

/// Each security-mode overlay must validate on top of at least one base
/// stack (the testbed's or the real one), with that base's variables.
#[test]
fn mode_overlays_validate_on_a_base() {
    let dir = deployments().join("modes");
    let mut overlays: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")))
            .collect(),
        Err(_) => Vec::new(),
    };
    overlays.sort();
    if overlays.is_empty() {
        eprintln!("no overlays in {} yet", dir.display());
    }
    let mut bases = Vec::new();
    for rel in ["testbed/deploy.toml", "deploy.toml"] {
        let cfg = load(rel);
        for (name, env) in &cfg.envs {
            bases.push((
                format!("{rel} env {name}"),
                env.project.clone(),
                files_of(&cfg, env),
                vars_of(env),
            ));
        }
    }
    for overlay in overlays {
        let mut errors = Vec::new();
        let mut ok = Vec::new();
        for (label, project, files, vars) in &bases {
            let mut all = files.clone();
            all.push(overlay.clone());
            let o = compose(Some(project), &all, vars, &["config", "-q"]);
            if o.status.success() {
                ok.push(label.clone());
            } else {
                errors.push(format!("on {label}: {}", stderr(&o)));
            }
        }
        assert!(
            !ok.is_empty(),
            "{} validates on no base:\n  {}",
            overlay.display(),
            errors.join("\n  ")
        );
        eprintln!("{} validates on {}", overlay.display(), ok.join(", "));
    }
}
