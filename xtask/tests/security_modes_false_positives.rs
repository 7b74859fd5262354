//! `security-modes-test --compose FILE`, continued: the false positives the
//! old checks reported and these no longer do (each asserted by name, on
//! the fixtures of `xtask/tests/fixtures/compose/`), and the direct mode's
//! flags: `--app-service`, `--sarif`, a file compose cannot render, and bad
//! input. Real binary, real `docker compose`; `cargo xtask setup` first.

mod common;
#[path = "security_modes_support.rs"]
mod support;

use std::process::Output;

use common::{exit_code, root, text, xtask_bin};
use serde_json::Value;
use support::{compose_fixture, f, found, one_document};

/// Runs the direct mode on fixture `name` as `standard`.
fn check(name: &str, extra: &[&str]) -> (Output, Value) {
    common::engines();
    let o = xtask_bin()
        .args([
            "--format",
            "json",
            "security-modes-test",
            "--mode",
            "standard",
        ])
        .args(["--compose", &compose_fixture(name)])
        .args(extra)
        .current_dir(root())
        .output()
        .unwrap();
    let r = one_document(&o);
    (o, r)
}

/// The value of the one no-inline-secrets finding naming `key`, if any.
fn secret_finding(key: &str) -> Option<String> {
    let (_, r) = check("secret-names.yml", &[]);
    found(&r)
        .into_iter()
        .find(|(rule, _, _, v)| rule == "no-inline-secrets" && v.starts_with(&format!("{key} ")))
        .map(|x| x.3)
}

#[test]
fn false_positive_key_inside_a_word_is_gone() {
    assert_eq!(secret_finding("X_KEYGEN_MODE"), None);
    assert_eq!(secret_finding("TOKENIZER"), None);
}

#[test]
fn false_positive_location_suffixes_are_gone() {
    assert_eq!(secret_finding("TLS_KEY_PATH"), None);
    assert_eq!(secret_finding("KEY_DIR"), None);
    assert_eq!(secret_finding("API_TOKEN_FILE"), None);
}

#[test]
fn false_positive_host_interpolation_is_gone() {
    // ${DB_PASSWORD} is interpolated (empty here, with a warning), and
    // ${ADMIN_TOKEN:-} has an empty default: neither is written in the file.
    assert_eq!(secret_finding("DB_PASSWORD"), None);
    assert_eq!(secret_finding("ADMIN_TOKEN"), None);
}

#[test]
fn false_positive_empty_and_passed_through_values_are_gone() {
    assert_eq!(secret_finding("REDIS_PASSWORD"), None);
    assert_eq!(secret_finding("SMTP_PASSWORD"), None);
}

#[test]
fn false_positive_benign_mounts_and_interpolated_urls_are_gone() {
    // Covered by the exact lists above; asserted by name so a regression says which.
    let (_, r) = check("host-mounts.yml", &[]);
    assert!(found(&r).iter().all(|x| x.1 != "app"), "{:?}", found(&r));
    let (_, r) = check("url-credentials.yml", &[]);
    assert!(
        found(&r)
            .iter()
            .all(|x| !x.3.starts_with("REPLICA_URL") && !x.3.starts_with("SERVICE_URL")),
        "{:?}",
        found(&r)
    );
}

#[test]
fn app_service_flag_applies_the_app_rules() {
    let (o, r) = check(
        "clean.yml",
        &["--app-service", "web", "--app-service", "ghost"],
    );
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    let got = found(&r);
    assert!(
        got.contains(&f(
            "mode-set",
            "web",
            &[],
            "COMPLIANCE_MODE is unset, want \"standard\""
        )),
        "{got:?}"
    );
    assert!(
        got.contains(&f(
            "mode-set",
            "ghost",
            &[],
            "app service is not in the rendered config"
        )),
        "{got:?}"
    );
}

#[test]
fn sarif_names_rule_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let sarif = dir.path().join("out.sarif");
    let (o, _) = check("profiles.yml", &["--sarif", &sarif.display().to_string()]);
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(d["version"], "2.1.0");
    let results = d["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{d}");
    let priv_ = results
        .iter()
        .find(|x| x["ruleId"] == "no-privileged")
        .unwrap();
    assert_eq!(
        priv_["message"]["text"],
        "debug-shell (profile debug): privileged: true (modes: standard)"
    );
    let loc = &priv_["locations"][0]["physicalLocation"];
    assert!(loc["artifactLocation"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("compose/profiles.yml"));
    assert_eq!(loc["region"]["startLine"], 13);
}

#[test]
fn a_file_compose_cannot_render_fails_its_render_row() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "services:\n  x:\n    image: a\n    privileged: maybe\n",
    )
    .unwrap();
    common::engines();
    let o = xtask_bin()
        .args(["--format", "json", "security-modes-test", "--compose"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        exit_code(&o),
        9,
        "could not check, not insecure: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("could not check"),
        "{}",
        text(&o)
    );
    let r = one_document(&o);
    let render = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["check"] == "render")
        .unwrap();
    assert_eq!(render["passed"], false);
    assert!(
        render["findings"][0]["value"]
            .as_str()
            .unwrap()
            .contains("privileged"),
        "{render}"
    );
}

#[test]
fn a_missing_env_file_is_could_not_check_with_composes_message() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("compose.yml");
    std::fs::write(
        &f,
        "services:\n  x:\n    image: a:sha-0123456789ab\n    env_file: [missing.env]\n",
    )
    .unwrap();
    common::engines();
    let o = xtask_bin()
        .args(["security-modes-test", "--mode", "standard", "--compose"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 9, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("could not check") && err.contains("missing.env"),
        "{err}"
    );
}

#[test]
fn composes_unset_variable_warnings_are_shown() {
    common::engines();
    // secret-names.yml reads ${DB_PASSWORD} and ${ADMIN_TOKEN:-}; the first is unset here.
    let o = xtask_bin()
        .args(["security-modes-test", "--mode", "standard", "--compose"])
        .arg(compose_fixture("secret-names.yml"))
        .current_dir(root())
        .env_remove("DB_PASSWORD")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("warning: ")
            && l.contains("compose: The \"DB_PASSWORD\" variable is not set")),
        "{}",
        text(&o)
    );
    assert!(
        !err.contains("ADMIN_TOKEN\" variable"),
        "an empty default is no warning: {err}"
    );
}

#[test]
fn bad_input_is_exit_1() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--compose", "/nonexistent/compose.yml"],
            "compose file /nonexistent/compose.yml not found",
        ),
        (
            &["--compose", "x.yml", "--tag", "sha-0123456789ab"],
            "cannot be used with",
        ),
        (
            &["--app-service", "web"],
            "required arguments were not provided",
        ),
    ];
    for (args, want) in cases {
        let o = xtask_bin()
            .arg("security-modes-test")
            .args(*args)
            .current_dir(root())
            .output()
            .unwrap();
        assert_eq!(exit_code(&o), 1, "{args:?}: {}", text(&o));
        assert!(common::stderr(&o).contains(want), "{args:?}: {}", text(&o));
    }
}
