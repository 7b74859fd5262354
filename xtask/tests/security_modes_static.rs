//! `security-modes-test`, static half: the shipped modes pass every rule
//! (the new ones included) on the testbed and on the real environments as
//! deployed, a policy runs on any base file with its port allow-list, and a
//! broken overlay fails its render row. Rule-by-rule catches are in
//! `security_modes_insecure.rs`, the tools in `security_modes_tools.rs`.
//! These need the docker CLI and the compose v2 plugin (installed by
//! `cargo xtask setup`, which the tests run), never a running container.

mod common;
#[path = "security_modes_support.rs"]
mod support;

use std::process::Output;

use common::{exit_code, root, text, xtask_bin};
use serde_json::Value;
use support::{findings, fixture, policy_in, report, row, row_of, set_overlay};

fn run(args: &[&str]) -> Output {
    common::engines();
    xtask_bin().args(args).current_dir(root()).output().unwrap()
}

#[test]
fn shipped_modes_pass_static_checks() {
    let o = run(&[
        "--format",
        "json",
        "security-modes-test",
        "--static-only",
        "--tag",
        "sha-0123456789ab",
    ]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    let r = report(&o);
    assert_eq!(r["passed"], true, "{r}");
    let rules = [
        "render",
        "no-privileged",
        "no-docker-socket",
        "no-host-mounts",
        "no-devices",
        "no-added-capabilities",
        "no-unconfined",
        "no-host-network",
        "no-host-pid",
        "no-host-ipc",
        "no-host-uts",
        "loopback-ports",
        "proxy-admin-loopback",
        "no-inline-secrets",
        "no-url-credentials",
        "pinned-images",
        "mode-set",
        "only-proxy-publishes",
    ];
    for mode in ["dev", "standard", "hipaa"] {
        for rule in rules {
            assert_eq!(
                row(&r, mode, "static", rule)["passed"],
                true,
                "{mode} {rule}"
            );
        }
    }
    for rule in [
        "read-only",
        "no-new-privileges",
        "cap-drop-all",
        "healthcheck",
        "restart-policy",
        "audit-sink",
    ] {
        assert_eq!(
            row(&r, "hipaa", "static", rule)["passed"],
            true,
            "hipaa {rule}"
        );
    }
    assert!(
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["phase"] == "static"),
        "static only: {r}"
    );
    // The real environments, as deploy.toml deploys them, each in its own mode only.
    let all_hipaa = [
        &rules[..],
        &[
            "read-only",
            "no-new-privileges",
            "cap-drop-all",
            "healthcheck",
            "restart-policy",
            "audit-sink",
        ],
    ]
    .concat();
    for rule in &all_hipaa {
        assert_eq!(
            row_of(&r, "prod", "hipaa", "static", rule)["passed"],
            true,
            "prod {rule}"
        );
    }
    for rule in rules {
        assert_eq!(
            row_of(&r, "staging", "standard", "static", rule)["passed"],
            true,
            "staging {rule}"
        );
    }
    let elsewhere = |stack: &str, mode: &str| {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["stack"] == stack && x["mode"] == mode)
    };
    assert!(
        !elsewhere("prod", "dev")
            && !elsewhere("prod", "standard")
            && !elsewhere("staging", "hipaa")
    );
}

#[test]
fn env_stacks_are_rendered_from_the_deploy_config() {
    // The testbed's deploy config: the same environments on the testbed's
    // compose file. The shipped policy allows its locally built Redis for the
    // env stacks (the demo and rehearsals point them at the testbed), so the
    // run passes; with that entry taken out of one stack's allow-list, that
    // stack (and only it) is caught, naming the image.
    let state = tempfile::tempdir().unwrap();
    let s = state.path().display().to_string();
    let args = |policy: Option<&str>| {
        let mut a = vec![
            "--format".to_string(),
            "json".into(),
            "--config".into(),
            "deployments/testbed/deploy.toml".into(),
            "--state-dir".into(),
            s.clone(),
            "security-modes-test".into(),
            "--static-only".into(),
            "--tag".into(),
            "sha-0123456789ab".into(),
        ];
        if let Some(p) = policy {
            a.extend(["--policy".to_string(), p.to_string()]);
        }
        a
    };
    let shipped = args(None);
    let o = run(&shipped.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
    for (stack, mode) in [("staging", "standard"), ("prod", "hipaa")] {
        assert!(common::stderr(&o).contains(&format!(
            "render {stack} as deploy does (deploy environment {stack}, which runs {mode})"
        )));
    }

    let dir = tempfile::tempdir().unwrap();
    let policy = policy_in(dir.path(), |t| {
        let list = t["stack"]["staging"]["unpinned_images"]
            .as_array_mut()
            .unwrap();
        list.retain(|v| v.as_str() != Some("fetchml/testbed-redis:local"));
    });
    let edited = args(Some(&policy.display().to_string()));
    let o = run(&edited.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    let r = report(&o);
    let pinned = row_of(&r, "staging", "standard", "static", "pinned-images");
    assert_eq!(
        findings(pinned, "redis"),
        ["fetchml/testbed-redis:local: tag `local` is neither sha- nor a digest"]
    );
    assert_eq!(
        row_of(&r, "prod", "hipaa", "static", "pinned-images")["passed"],
        true
    );
}

#[test]
fn any_base_file_and_public_port_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let add_stack = |allow: &[&str]| {
        let allow: Vec<toml::Value> = allow
            .iter()
            .map(|a| toml::Value::String(a.to_string()))
            .collect();
        move |t: &mut toml::Table| {
            let mut s = toml::Table::new();
            s.insert(
                "compose_files".into(),
                toml::Value::Array(vec![fixture("public-base.yml").into()]),
            );
            s.insert(
                "app_services".into(),
                toml::Value::Array(vec!["api".into(), "worker".into()]),
            );
            s.insert("public_ports".into(), toml::Value::Array(allow));
            t["stack"]
                .as_table_mut()
                .unwrap()
                .insert("public".into(), s.into());
        }
    };
    let p = policy_in(dir.path(), add_stack(&[])).display().to_string();
    let o = run(&[
        "--format",
        "json",
        "security-modes-test",
        "--static-only",
        "--mode",
        "standard",
        "--policy",
        &p,
    ]);
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    let r = report(&o);
    let bad: Vec<&Value> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["passed"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "only the public port fails: {bad:?}");
    assert_eq!(bad[0]["stack"], "public");
    assert_eq!(
        findings(bad[0], "proxy"),
        ["port 0.0.0.0:8443->8443/tcp is published beyond loopback"]
    );

    let p = policy_in(dir.path(), add_stack(&["proxy:8443"]))
        .display()
        .to_string();
    let o = run(&[
        "--format",
        "json",
        "security-modes-test",
        "--static-only",
        "--mode",
        "standard",
        "--policy",
        &p,
    ]);
    assert_eq!(exit_code(&o), 0, "allow-listed:\n{}", text(&o));
}

#[test]
fn a_broken_overlay_fails_its_render_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = policy_in(dir.path(), |t| {
        set_overlay(t, "dev", "/nonexistent/dev.yml")
    })
    .display()
    .to_string();
    let o = run(&[
        "--format",
        "json",
        "security-modes-test",
        "--static-only",
        "--policy",
        &p,
    ]);
    // Only the render failed: "could not check", not "insecure".
    assert_eq!(exit_code(&o), 9, "{}", text(&o));
    let r = report(&o);
    let render = row(&r, "dev", "static", "render");
    assert_eq!(render["passed"], false);
    assert!(findings(render, "-")[0].contains("nonexistent"), "{render}");
    assert_eq!(row(&r, "standard", "static", "render")["passed"], true);
}
