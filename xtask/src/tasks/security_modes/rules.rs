//! The static rule kinds, checked against one service of the config that
//! `docker compose config --format json` rendered (compose did the YAML,
//! the merging of overlays and the interpolation; nothing here parses YAML).
//!
//! Each check returns the offending values, one line each; empty means the
//! service passes. Secret values are never echoed, only their keys.

use serde_json::Value;

use super::policy::{substitute, Rule, Stack};

/// What a check needs besides the rule and the service.
pub struct Scope<'a> {
    pub mode: &'a str,
    pub tag: &'a str,
    pub stack: &'a Stack,
}

/// The offending values of `service` (named `name`) under `rule`.
pub fn violations(rule: &Rule, scope: &Scope, name: &str, service: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match rule {
        Rule::NoPrivileged => {
            if service["privileged"] == Value::Bool(true) {
                out.push("privileged: true".into());
            }
        }
        Rule::NoDockerSocket => {
            for m in list(&service["volumes"]) {
                let source = m["source"].as_str().unwrap_or_default();
                let target = m["target"].as_str().unwrap_or_default();
                let socket = |p: &str| {
                    p.ends_with("docker.sock")
                        || matches!(p.trim_end_matches('/'), "/var/run" | "/run")
                };
                if socket(source) || socket(target) {
                    out.push(format!("mounts {source} at {target}"));
                }
            }
        }
        Rule::NoHostNamespace { namespace } => {
            let key = namespace.key();
            if service[key].as_str() == Some("host") {
                out.push(format!("{key}: host"));
            }
        }
        Rule::LoopbackPorts => {
            for p in list(&service["ports"]) {
                let ip = p["host_ip"].as_str().unwrap_or_default();
                let target = scalar(&p["target"]);
                if is_loopback(ip)
                    || scope
                        .stack
                        .public_ports
                        .contains(&format!("{name}:{target}"))
                {
                    continue;
                }
                let published = match &p["published"] {
                    Value::Null => "(random port)".to_string(),
                    v => scalar(v),
                };
                let proto = p["protocol"].as_str().unwrap_or("tcp");
                let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
                out.push(format!(
                    "port {ip}:{published}->{target}/{proto} is published beyond loopback"
                ));
            }
        }
        Rule::NoInlineSecrets {
            key_patterns,
            file_suffix,
            allowed_keys,
        } => {
            let env = service["environment"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (key, value) in &env {
                let upper = key.to_ascii_uppercase();
                let secret = key_patterns
                    .iter()
                    .any(|p| !p.is_empty() && upper.contains(&p.to_ascii_uppercase()));
                if !secret || allowed_keys.contains(key) {
                    continue;
                }
                if upper.ends_with(&file_suffix.to_ascii_uppercase()) {
                    if !value.as_str().is_some_and(|v| v.starts_with('/')) {
                        out.push(format!(
                            "{key} should name a file but is {}",
                            redacted(value)
                        ));
                    }
                    continue;
                }
                out.push(format!(
                    "{key} is set inline ({}); use {key}{file_suffix} with a secret",
                    redacted(value)
                ));
            }
        }
        Rule::PinnedImages { tag_prefixes } => {
            if let Some(v) = image_problem(service, tag_prefixes, &scope.stack.unpinned_images) {
                out.push(v);
            }
        }
        Rule::EnvEquals { key, value } => {
            let want = substitute(value, scope.mode, scope.tag);
            let got = &service["environment"][key.as_str()];
            if got.as_str() != Some(want.as_str()) {
                out.push(format!("{key} is {}, want {want:?}", shown(got)));
            }
        }
        Rule::ReadOnly => {
            if service["read_only"] != Value::Bool(true) {
                out.push(format!("read_only is {}", shown(&service["read_only"])));
            }
        }
        Rule::NoNewPrivileges => {
            let opts = strings(&service["security_opt"]);
            let on = opts.iter().any(|o| {
                let o = o.replace('=', ":");
                o == "no-new-privileges" || o == "no-new-privileges:true"
            });
            if !on {
                out.push(format!(
                    "security_opt is {opts:?}, lacks no-new-privileges:true"
                ));
            }
        }
        Rule::CapDropAll => {
            let caps = strings(&service["cap_drop"]);
            if !caps.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
                out.push(format!("cap_drop is {caps:?}, want [\"ALL\"]"));
            }
        }
        Rule::Healthcheck => {
            let h = &service["healthcheck"];
            if h.is_null() {
                out.push("no healthcheck".into());
            } else if h["disable"] == Value::Bool(true) {
                out.push("healthcheck is disabled".into());
            } else if strings(&h["test"]).first().is_some_and(|t| t == "NONE") {
                out.push("healthcheck test is NONE".into());
            }
        }
        Rule::RestartPolicy => {
            let restart = service["restart"].as_str().unwrap_or_default();
            let swarm = service["deploy"]["restart_policy"]["condition"]
                .as_str()
                .unwrap_or_default();
            let ok = matches!(restart, "always" | "unless-stopped")
                || restart.starts_with("on-failure")
                || matches!(swarm, "any" | "on-failure");
            if !ok {
                out.push(format!("restart is {}", shown(&service["restart"])));
            }
        }
        Rule::AuditSink { env } => out.extend(audit_sink_problem(service, env)),
    }
    out
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        _ => list(v).iter().map(scalar).collect(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A value for a message: `unset` for a missing key, JSON otherwise.
fn shown(v: &Value) -> String {
    if v.is_null() {
        "unset".into()
    } else {
        v.to_string()
    }
}

/// A possibly secret value, described without its contents.
fn redacted(v: &Value) -> String {
    match v {
        Value::Null => "passed through from the host environment".into(),
        Value::String(s) if s.is_empty() => "an empty value".into(),
        Value::String(s) => format!("a {}-character value, redacted", s.chars().count()),
        _ => "a literal value, redacted".into(),
    }
}

fn is_loopback(ip: &str) -> bool {
    ip.starts_with("127.") || ip == "::1" || ip == "[::1]"
}

fn image_problem(service: &Value, prefixes: &[String], allowed: &[String]) -> Option<String> {
    let Some(image) = service["image"].as_str() else {
        return Some("no image: it would be built at deploy time, so nothing pins it".into());
    };
    if let Some((_, digest)) = image.split_once('@') {
        return (!digest.starts_with("sha256:")).then(|| format!("{image}: digest is not sha256"));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last.split_once(':').map(|(_, t)| t);
    match tag {
        _ if allowed.iter().any(|a| a == image) && tag != Some("latest") => None,
        None => Some(format!("{image} has no tag, which means latest")),
        Some("latest") => Some(format!("{image} floats on latest")),
        Some(t) if prefixes.iter().any(|p| t.starts_with(p.as_str())) => None,
        Some(t) => Some(format!(
            "{image}: tag `{t}` is neither {} nor a digest",
            prefixes.join("/")
        )),
    }
}

fn audit_sink_problem(service: &Value, var: &str) -> Option<String> {
    let dir = match &service["environment"][var] {
        Value::String(s) if s.starts_with('/') => s.trim_end_matches('/').to_string(),
        Value::String(s) if s.is_empty() => return Some(format!("{var} is empty: no audit sink")),
        Value::Null => return Some(format!("{var} is unset: no audit sink")),
        other => return Some(format!("{var} is {other}, not an absolute path")),
    };
    let dir = if dir.is_empty() { "/".to_string() } else { dir };
    let covers = |mount: &str| {
        let m = mount.trim_end_matches('/');
        !m.is_empty() && (dir == m || dir.starts_with(&format!("{m}/")))
    };
    let tmpfs = strings(&service["tmpfs"])
        .iter()
        .any(|t| covers(t.split(':').next().unwrap_or_default()));
    let volume = list(&service["volumes"])
        .into_iter()
        .find(|v| covers(v["target"].as_str().unwrap_or_default()));
    match volume {
        Some(v) if v["read_only"] == Value::Bool(true) => {
            Some(format!("{var}={dir} is on a read-only mount"))
        }
        Some(_) => None,
        None if tmpfs => None,
        None => Some(format!(
            "{var}={dir} is not on a volume or tmpfs, so it is not writable on a read-only root"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::policy::Namespace;
    use super::*;
    use serde_json::json;

    fn stack() -> Stack {
        Stack {
            env: None,
            fixed_mode: None,
            compose_files: vec![],
            tag_var: "T".into(),
            app_services: vec!["api".into()],
            vars: Default::default(),
            public_ports: vec!["web:443".into()],
            unpinned_images: vec!["local/redis:local".into()],
            boot: None,
        }
    }

    fn check(rule: Rule, name: &str, svc: Value) -> Vec<String> {
        let s = stack();
        violations(
            &rule,
            &Scope {
                mode: "hipaa",
                tag: "sha-1",
                stack: &s,
            },
            name,
            &svc,
        )
    }

    #[test]
    fn namespaces_and_privilege() {
        assert_eq!(
            check(Rule::NoPrivileged, "a", json!({"privileged": true})),
            ["privileged: true"]
        );
        assert!(check(Rule::NoPrivileged, "a", json!({"privileged": false})).is_empty());
        let net = Rule::NoHostNamespace {
            namespace: Namespace::Network,
        };
        assert_eq!(
            check(net.clone(), "a", json!({"network_mode": "host"})),
            ["network_mode: host"]
        );
        assert!(check(net, "a", json!({"network_mode": "bridge"})).is_empty());
        let sock = json!({"volumes": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/s"}]});
        assert_eq!(
            check(Rule::NoDockerSocket, "a", sock),
            ["mounts /var/run/docker.sock at /s"]
        );
        let run = json!({"volumes": [{"type": "bind", "source": "/run/", "target": "/h"}]});
        assert_eq!(check(Rule::NoDockerSocket, "a", run).len(), 1);
    }

    #[test]
    fn ports() {
        let svc = json!({"ports": [
            {"host_ip": "127.0.0.1", "target": 8080, "published": "1"},
            {"target": 8080, "published": "2", "protocol": "tcp"},
            {"host_ip": "0.0.0.0", "target": 9, "protocol": "udp"},
        ]});
        assert_eq!(
            check(Rule::LoopbackPorts, "api", svc),
            [
                "port 0.0.0.0:2->8080/tcp is published beyond loopback",
                "port 0.0.0.0:(random port)->9/udp is published beyond loopback"
            ]
        );
        let web = json!({"ports": [{"target": 443, "published": "443"}]});
        assert!(
            check(Rule::LoopbackPorts, "web", web).is_empty(),
            "allow-listed"
        );
    }

    #[test]
    fn secrets_are_named_never_shown() {
        let rule = Rule::NoInlineSecrets {
            key_patterns: vec!["PASSWORD".into(), "TOKEN".into(), "KEY".into()],
            file_suffix: "_FILE".into(),
            allowed_keys: vec!["KEYCLOAK_REALM".into()],
        };
        let svc = json!({"environment": {
            "DB_PASSWORD": "hunter2", "API_TOKEN_FILE": "/run/secrets/t", "api_key": null,
            "KEYCLOAK_REALM": "x", "SESSION_TOKEN_FILE": "hunter2", "MODE": "x"
        }});
        let v = check(rule, "api", svc);
        assert_eq!(
            v,
            [
                "DB_PASSWORD is set inline (a 7-character value, redacted); use DB_PASSWORD_FILE with a secret",
                "api_key is set inline (passed through from the host environment); use api_key_FILE with a secret",
                "SESSION_TOKEN_FILE should name a file but is a 7-character value, redacted",
            ]
        );
        assert!(!v.concat().contains("hunter2"));
    }

    #[test]
    fn images() {
        let rule = || Rule::PinnedImages {
            tag_prefixes: vec!["sha-".into()],
        };
        let img = |i: &str| check(rule(), "a", json!({"image": i}));
        assert!(img("127.0.0.1:5000/fetchml/api:sha-0123456789ab").is_empty());
        assert!(img("repo/x@sha256:abcd").is_empty());
        assert!(img("local/redis:local").is_empty(), "allow-listed");
        assert_eq!(
            img("127.0.0.1:5000/busybox"),
            ["127.0.0.1:5000/busybox has no tag, which means latest"]
        );
        assert_eq!(img("busybox:latest"), ["busybox:latest floats on latest"]);
        assert_eq!(
            img("busybox:1.36"),
            ["busybox:1.36: tag `1.36` is neither sha- nor a digest"]
        );
        assert_eq!(check(rule(), "a", json!({"build": {}})).len(), 1);
    }

    #[test]
    fn hardening() {
        let good = json!({
            "read_only": true, "security_opt": ["no-new-privileges:true"], "cap_drop": ["ALL"],
            "healthcheck": {"test": ["CMD", "x"]}, "restart": "unless-stopped",
            "environment": {"AUDIT_SINK_DIR": "/audit", "COMPLIANCE_MODE": "hipaa"},
            "tmpfs": ["/audit:uid=1"]
        });
        let rules = [
            Rule::ReadOnly,
            Rule::NoNewPrivileges,
            Rule::CapDropAll,
            Rule::Healthcheck,
            Rule::RestartPolicy,
            Rule::AuditSink {
                env: "AUDIT_SINK_DIR".into(),
            },
            Rule::EnvEquals {
                key: "COMPLIANCE_MODE".into(),
                value: "{mode}".into(),
            },
        ];
        for r in &rules {
            assert!(check(r.clone(), "api", good.clone()).is_empty(), "{r:?}");
            let empty = check(r.clone(), "api", json!({}));
            assert_eq!(
                empty.len(),
                1,
                "{r:?} must fail on a bare service: {empty:?}"
            );
        }
        let off = json!({"security_opt": ["no-new-privileges:false"], "healthcheck": {"disable": true}, "restart": "no"});
        assert_eq!(check(Rule::NoNewPrivileges, "a", off.clone()).len(), 1);
        assert_eq!(
            check(Rule::Healthcheck, "a", off.clone()),
            ["healthcheck is disabled"]
        );
        assert_eq!(check(Rule::RestartPolicy, "a", off), ["restart is \"no\""]);
        let ro = json!({"environment": {"S": "/audit/x"}, "volumes": [{"target": "/audit", "read_only": true}]});
        assert_eq!(
            check(Rule::AuditSink { env: "S".into() }, "a", ro),
            ["S=/audit/x is on a read-only mount"]
        );
        let bare = json!({"environment": {"S": "/var/log"}, "tmpfs": ["/audit"]});
        assert_eq!(
            check(Rule::AuditSink { env: "S".into() }, "a", bare).len(),
            1
        );
        let wrong = json!({"environment": {"COMPLIANCE_MODE": "standard"}});
        let mode = Rule::EnvEquals {
            key: "COMPLIANCE_MODE".into(),
            value: "{mode}".into(),
        };
        assert_eq!(
            check(mode, "a", wrong),
            ["COMPLIANCE_MODE is \"standard\", want \"hipaa\""]
        );
    }
}
