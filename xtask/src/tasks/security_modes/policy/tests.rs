//! Policy parsing and validation, on strings.

use super::*;

const GOOD: &str = r#"
[stack.testbed]
compose_files = ["testbed/docker-compose.yml"]
app_services = ["api"]
[stack.testbed.boot]
ports = { api = "API_PORT" }
token_file = "testbed/api-token.dev"
ready = { path = "/health", expect = { redis = "ok" } }

[rule.no-privileged]
kind = "no-privileged"
[rule.no-host-pid]
kind = "no-host-namespace"
namespace = "pid"
[rule.read-only]
kind = "read-only"

[probe.auth]
kind = "status"
path = "/api/jobs"
status = 401

[[mode]]
name = "standard"
overlay = "modes/standard.yml"
rules = ["no-privileged", "no-host-pid"]
app_rules = ["read-only"]
probes = ["auth"]
"#;

fn err(text: &str) -> String {
    format!("{:#}", Policy::parse(text, "p.toml").unwrap_err())
}

#[test]
fn parses() {
    let p = Policy::parse(GOOD, "p.toml").unwrap();
    assert_eq!(p.modes[0].name, "standard");
    assert_eq!(
        p.rules["no-host-pid"],
        Rule::NoHostNamespace {
            namespace: Namespace::Pid
        }
    );
    assert_eq!(p.boot_stack().unwrap().0, "testbed");
    assert_eq!(p.stacks["testbed"].tag_var, "FETCHML_TAG");
}

#[test]
fn unknown_kind_and_key_are_named() {
    let e = err(&GOOD.replace("kind = \"read-only\"", "kind = \"vibes\""));
    assert!(
        e.contains("unknown variant `vibes`") && e.contains("rule.read-only"),
        "{e}"
    );
    let e = err(&GOOD.replace("namespace = \"pid\"", "namespace = \"pid\"\nextra = 1"));
    assert!(e.contains("unknown field `extra`"), "{e}");
}

#[test]
fn references_must_resolve() {
    let cases = [
        (
            "rules = [\"no-privileged\", ",
            "rules = [\"nope\", ",
            "names rule `nope`",
        ),
        (
            "probes = [\"auth\"]",
            "probes = [\"missing\"]",
            "names probe `missing`",
        ),
        (
            "status = 401",
            "status = 401\nservices = [\"worker\"]",
            "targets `worker`",
        ),
        (
            "status = 401",
            "status = 401\nbearer = true",
            "sends the bearer token",
        ),
        (
            "name = \"standard\"",
            "name = \"Standard Mode\"",
            "mode `Standard Mode`",
        ),
        (
            "app_services = [\"api\"]",
            "app_services = []",
            "app_rules would check nothing",
        ),
    ];
    for (from, to, want) in cases {
        assert!(GOOD.contains(from), "fixture lacks {from}");
        let bad = GOOD.replacen(from, to, 1);
        let bad = if to.contains("bearer") {
            bad.replace("token_file = \"testbed/api-token.dev\"\n", "")
        } else {
            bad
        };
        let e = err(&bad);
        assert!(e.contains(want), "{to}: {e}");
    }
}

#[test]
fn probes_need_a_boot_stack() {
    let bad = GOOD.replace("[stack.testbed.boot]", "[stack.testbed.nope]");
    assert!(err(&bad).contains("unknown field `nope`"));
    let start = GOOD.find("[stack.testbed.boot]").unwrap();
    let end = GOOD.find("[rule.no-privileged]").unwrap();
    let bad = format!("{}{}", &GOOD[..start], &GOOD[end..]);
    assert!(
        err(&bad).contains("no stack has a [stack.NAME.boot]"),
        "{}",
        err(&bad)
    );
}

#[test]
fn env_stacks_take_everything_from_the_deploy_config() {
    let with_env = |extra: &str| format!("{GOOD}\n[stack.prod]\nenv = \"prod\"\n{extra}");
    let p = Policy::parse(&with_env(""), "p.toml").unwrap();
    assert!(p.has_env_stacks());
    let e = err(&with_env("compose_files = [\"x.yml\"]"));
    assert!(
        e.contains("takes compose_files, tag_var, app_services and vars from the deploy config"),
        "{e}"
    );
    let e = err(&with_env("[stack.prod.boot]\nports = { api = \"P\" }\nready = { path = \"/h\", expect = { a = \"b\" } }"));
    assert!(e.contains("checked statically only"), "{e}");
}

#[test]
fn select_names_valid_modes() {
    let p = Policy::parse(GOOD, "p.toml").unwrap();
    assert_eq!(p.select(None).unwrap().len(), 1);
    let e = p.select(Some("hipaa")).unwrap_err().to_string();
    assert_eq!(e, "unknown mode `hipaa`: the policy defines standard");
}

#[test]
fn substitution() {
    assert_eq!(substitute("{mode}/{tag}", "hipaa", "sha-1"), "hipaa/sha-1");
}

#[test]
fn proxy_rules_default_to_caddy_and_check_their_keys() {
    let text = GOOD.replace(
        "[rule.read-only]",
        "[rule.admin]\nkind = \"proxy-admin-loopback\"\n[rule.only-proxy]\nkind = \"no-published-ports\"\n[rule.read-only]",
    );
    let p = Policy::parse(&text, "p.toml").unwrap();
    assert_eq!(
        p.rules["admin"],
        Rule::ProxyAdminLoopback {
            service: "proxy".into(),
            admin_port: 2019
        }
    );
    assert_eq!(p.rules["only-proxy"], Rule::NoPublishedPorts);
    let e = err(&text.replace(
        "kind = \"proxy-admin-loopback\"",
        "kind = \"proxy-admin-loopback\"\nadmin_port = 0",
    ));
    assert!(
        e.contains("rule `admin`") && e.contains("admin_port"),
        "{e}"
    );
    let e = err(&text.replace(
        "kind = \"proxy-admin-loopback\"",
        "kind = \"proxy-admin-loopback\"\nservice = \"pro xy\"",
    ));
    assert!(e.contains("invalid service name"), "{e}");
}

#[test]
fn boot_reaches_services_through_a_port_or_at_their_container() {
    let with = |extra: &str| {
        GOOD.replace(
            "token_file = \"testbed/api-token.dev\"",
            &format!("token_file = \"testbed/api-token.dev\"\n{extra}"),
        )
    };
    let p = Policy::parse(
        &with("container_ports = { worker = 8080 }\nfree_ports = [\"PROXY_ADMIN_PORT\"]"),
        "p.toml",
    )
    .unwrap();
    let boot = p.stacks["testbed"].boot.as_ref().unwrap();
    assert_eq!(boot.services(), ["api", "worker"]);
    // A probe may target a service reached at its container.
    let targeted = with("container_ports = { worker = 8080 }")
        .replace("status = 401", "status = 401\nservices = [\"worker\"]");
    Policy::parse(&targeted, "p.toml").unwrap();
    for (extra, want) in [
        (
            "container_ports = { api = 8080 }",
            "`api` is in both ports and container_ports",
        ),
        ("container_ports = { worker = 0 }", "container_ports.worker"),
        ("free_ports = [\"API_PORT\"]", "`API_PORT` is already set"),
        (
            "free_ports = [\"FETCHML_TAG\"]",
            "`FETCHML_TAG` is already set",
        ),
    ] {
        let e = err(&with(extra));
        assert!(e.contains(want), "{extra}: {e}");
    }
}
