//! `security-modes-test`, the proxy rules: the proxy's admin API is out of
//! other containers' reach, in the config files it mounts and in its
//! published ports (127.0.0.1 or ::1 only) (`proxy-admin-loopback`), the app
//! services behind it publish nothing (`only-proxy-publishes`), and its
//! front port stays on loopback like every port (`loopback-ports`).
//!
//! Each fixture of `xtask/tests/fixtures/compose/proxy-*.yml` goes through
//! the real binary and the real `docker compose` with the shipped policy's
//! `standard` rules, and the exact findings, file, line and exit code are
//! asserted; then the same rules on the stacks the policy names: the
//! testbed under an overlay, and a copy of the real environments. Needs
//! the docker CLI and the compose v2 plugin (`cargo xtask setup`, which the
//! tests run first), no daemon.

mod common;
#[path = "security_modes_support.rs"]
mod support;

use std::path::Path;
use std::process::Output;

use common::{exit_code, root, text, xtask_bin};
use serde_json::Value;
use support::{
    compose_fixture, f, findings, found, one_document, policy_in, report, row, row_of, set_overlay,
    Found,
};

const APPS: [&str; 4] = ["--app-service", "api", "--app-service", "worker"];

/// The direct mode on fixture `name` as `standard`, api and worker being
/// the app services; stdout must be exactly one JSON document.
fn check(name: &str) -> (Output, Value) {
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
        .args(APPS)
        .current_dir(root())
        .output()
        .unwrap();
    let r = one_document(&o);
    (o, r)
}

/// Runs fixture `name` and asserts exactly `want`: exit 6, or exit 0 for none.
fn expect(name: &str, want: Vec<Found>) -> Value {
    let (o, r) = check(name);
    let mut want = want;
    want.sort();
    assert_eq!(found(&r), want, "findings of {name}:\n{}", text(&o));
    let code = if want.is_empty() { 0 } else { 6 };
    assert_eq!(exit_code(&o), code, "{}", text(&o));
    assert_eq!(r["passed"], want.is_empty());
    r
}

/// The line of `  <service>:` in `file`.
fn line_of(file: &Path, service: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    let want = format!("  {service}:");
    text.lines()
        .position(|l| l == want)
        .unwrap_or_else(|| panic!("no `{want}` in {}", file.display()))
        + 1
}

/// The one finding of `check` for `service` names fixture `name` at the
/// service's line.
fn located(r: &Value, check: &str, service: &str, name: &str) {
    let row = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["check"] == check)
        .unwrap_or_else(|| panic!("no row {check}: {r}"));
    let hit = row["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service"] == service)
        .unwrap_or_else(|| panic!("no finding for {service}: {row}"));
    let file = compose_fixture(name);
    assert!(
        hit["file"]
            .as_str()
            .unwrap()
            .ends_with(&format!("compose/{name}")),
        "{hit}"
    );
    assert_eq!(hit["line"], line_of(Path::new(&file), service), "{hit}");
}

#[test]
fn the_proxy_in_front_of_silent_app_services_passes() {
    let r = expect("proxy-good.yml", vec![]);
    for check in [
        "proxy-admin-loopback",
        "only-proxy-publishes",
        "loopback-ports",
    ] {
        let row = r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["check"] == check)
            .unwrap_or_else(|| panic!("no row {check}: {r}"));
        assert_eq!(row["passed"], true, "{row}");
    }
}

#[test]
fn an_admin_api_on_every_interface_is_caught() {
    let r = expect(
        "proxy-admin-public.yml",
        vec![
            f(
                "proxy-admin-loopback",
                "proxy",
                &[],
                "admin port 2019 is published on every interface (0.0.0.0:18090): publish it on 127.0.0.1 only",
            ),
            f(
                "loopback-ports",
                "proxy",
                &[],
                "port 0.0.0.0:18090->2019/tcp is published beyond loopback",
            ),
        ],
    );
    located(
        &r,
        "proxy-admin-loopback",
        "proxy",
        "proxy-admin-public.yml",
    );
}

#[test]
fn an_admin_api_without_a_host_ip_is_caught() {
    let r = expect(
        "proxy-admin-no-ip.yml",
        vec![
            f(
                "proxy-admin-loopback",
                "proxy",
                &[],
                "admin port 2019 is published on every interface (no host ip, host port 18090): publish it on 127.0.0.1 only",
            ),
            f(
                "loopback-ports",
                "proxy",
                &[],
                "port 0.0.0.0:18090->2019/tcp is published beyond loopback",
            ),
        ],
    );
    located(&r, "proxy-admin-loopback", "proxy", "proxy-admin-no-ip.yml");
}

#[test]
fn an_app_service_publishing_a_port_is_caught_on_loopback_too() {
    let r = expect(
        "proxy-app-port.yml",
        vec![
            f(
                "only-proxy-publishes",
                "api",
                &[],
                "port 127.0.0.1:9201->9101/tcp is published: only the proxy publishes ports",
            ),
            f(
                "only-proxy-publishes",
                "worker",
                &[],
                "port 0.0.0.0:9202->9102/tcp is published: only the proxy publishes ports",
            ),
            f(
                "loopback-ports",
                "worker",
                &[],
                "port 0.0.0.0:9202->9102/tcp is published beyond loopback",
            ),
        ],
    );
    located(&r, "only-proxy-publishes", "api", "proxy-app-port.yml");
    located(&r, "only-proxy-publishes", "worker", "proxy-app-port.yml");
}

#[test]
fn a_front_port_beyond_loopback_is_caught() {
    let r = expect(
        "proxy-front-public.yml",
        vec![f(
            "loopback-ports",
            "proxy",
            &[],
            "port 0.0.0.0:18080->8080/tcp is published beyond loopback",
        )],
    );
    located(&r, "loopback-ports", "proxy", "proxy-front-public.yml");
}

#[test]
fn the_testbed_with_its_admin_api_opened_by_an_overlay_names_both_files() {
    common::engines();
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("open-admin.yml");
    std::fs::write(
        &overlay,
        "services:\n  proxy:\n    ports: !override\n      - \"127.0.0.1:18080:8080\"\n      - \"0.0.0.0:18090:2019\"\n",
    )
    .unwrap();
    let policy = policy_in(dir.path(), |t| {
        set_overlay(t, "standard", &overlay.display().to_string());
        support::testbed_only(t);
    });
    let o = xtask_bin()
        .args(["--format", "json", "security-modes-test", "--static-only"])
        .args(["--mode", "standard", "--policy"])
        .arg(&policy)
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    let r = report(&o);
    let admin = row(&r, "standard", "static", "proxy-admin-loopback");
    assert_eq!(
        findings(admin, "proxy"),
        ["admin port 2019 is published on every interface (0.0.0.0:18090): publish it on 127.0.0.1 only"]
    );
    let hit = &admin["findings"][0];
    let base = root().join("deployments/testbed/docker-compose.yml");
    assert_eq!(
        hit["file"], "deployments/testbed/docker-compose.yml",
        "{hit}"
    );
    assert_eq!(hit["line"], line_of(&base, "proxy"), "{hit}");
    let also = hit["also"][0].as_str().unwrap();
    assert!(also.ends_with("open-admin.yml:2"), "{hit}");
    assert_eq!(
        row(&r, "standard", "static", "only-proxy-publishes")["passed"],
        true
    );
    let err = common::stderr(&o);
    assert!(
        err.contains("standard/testbed/proxy proxy-admin-loopback: admin port 2019 is published on every interface"),
        "{err}"
    );
}

#[test]
fn the_real_environments_are_held_to_the_proxy_rules() {
    // A copy of deploy.toml and its compose files in which staging's
    // api-server publishes its port again and prod's proxy mounts a config
    // whose runtime API listens on every interface of the container: each
    // environment is caught in its own mode, naming the service at its line
    // in that environment's compose file.
    common::engines();
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("deployments");
    let copy = |name: &str, edit: &dyn Fn(String) -> String| {
        let text = std::fs::read_to_string(src.join(name)).unwrap();
        let out = edit(text.clone());
        assert_ne!(out, text, "{name}: the edit must change something");
        std::fs::write(dir.path().join(name), out).unwrap();
    };
    std::fs::copy(src.join("deploy.toml"), dir.path().join("deploy.toml")).unwrap();
    copy("docker-compose.staging.yml", &|t| {
        t.replacen(
            "      PORT: \"9101\"\n",
            "      PORT: \"9101\"\n    ports:\n      - \"127.0.0.1:${API_PORT}:9101\"\n",
            1,
        )
    });
    std::fs::copy(src.join("haproxy.cfg"), dir.path().join("haproxy.cfg")).unwrap();
    let cfg = std::fs::read_to_string(src.join("haproxy.cfg")).unwrap();
    let open = cfg.replace(
        "stats socket /run/fetchml-proxy/admin.sock",
        "stats socket ipv4@0.0.0.0:9999",
    );
    assert_ne!(open, cfg);
    std::fs::write(dir.path().join("haproxy-open.cfg"), open).unwrap();
    copy("docker-compose.prod.yml", &|t| {
        t.replace("./haproxy.cfg:", "./haproxy-open.cfg:")
    });
    let config = dir.path().join("deploy.toml");
    let state = tempfile::tempdir().unwrap();
    let o = xtask_bin()
        .args(["--format", "json", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(state.path())
        .args([
            "security-modes-test",
            "--static-only",
            "--tag",
            "sha-0123456789ab",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    let r = report(&o);
    let mut failed: Vec<String> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["passed"] == false)
        .map(|x| format!("{}/{}/{}", x["stack"], x["mode"], x["check"]).replace('"', ""))
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        [
            "prod/hipaa/proxy-admin-loopback",
            "staging/standard/only-proxy-publishes",
        ],
        "only what the edits broke fails"
    );

    let staging = row_of(&r, "staging", "standard", "static", "only-proxy-publishes");
    let port = r#"port 127.0.0.1:9201->9101/tcp is published: only the proxy publishes ports"#;
    assert_eq!(findings(staging, "api-server"), [port]);
    let file = dir.path().join("docker-compose.staging.yml");
    assert_eq!(staging["findings"][0]["file"], file.display().to_string());
    assert_eq!(staging["findings"][0]["line"], line_of(&file, "api-server"));

    let prod = row_of(&r, "prod", "hipaa", "static", "proxy-admin-loopback");
    assert_eq!(
        findings(prod, "proxy"),
        ["haproxy-open.cfg: the runtime API listens on `ipv4@0.0.0.0:9999`, which other containers can reach: use a unix socket in a directory only the proxy mounts"]
    );
    let file = dir.path().join("docker-compose.prod.yml");
    assert_eq!(prod["findings"][0]["file"], file.display().to_string());
    assert_eq!(prod["findings"][0]["line"], line_of(&file, "proxy"));
}
