//! Rules about reaching the host: privilege, the Docker socket, host paths,
//! devices, capabilities, namespaces and published ports. All judge the
//! rendered service (what would run).

use serde_json::Value;

use super::{list, scalar, strings};
use crate::tasks::security_modes::policy::Namespace;

pub fn privileged(s: &Value) -> Vec<String> {
    if s["privileged"] == Value::Bool(true) {
        vec!["privileged: true".into()]
    } else {
        vec![]
    }
}

/// Bind mounts of the service as (source, target, read-only).
fn binds(s: &Value) -> Vec<(String, String, bool)> {
    list(&s["volumes"])
        .iter()
        .filter(|m| m["type"].as_str().is_none_or(|t| t == "bind"))
        .map(|m| {
            (
                m["source"].as_str().unwrap_or_default().to_string(),
                m["target"].as_str().unwrap_or_default().to_string(),
                m["read_only"] == Value::Bool(true),
            )
        })
        .collect()
}

pub fn docker_socket(s: &Value) -> Vec<String> {
    let socket = |p: &str| {
        p.ends_with("docker.sock") || matches!(p.trim_end_matches('/'), "/var/run" | "/run")
    };
    list(&s["volumes"])
        .iter()
        .filter_map(|m| {
            let source = m["source"].as_str().unwrap_or_default();
            let target = m["target"].as_str().unwrap_or_default();
            (socket(source) || socket(target)).then(|| format!("mounts {source} at {target}"))
        })
        .collect()
}

/// Is `source` one of `paths` or below one (`/` counts only as itself)?
pub fn under<'a>(source: &str, paths: &'a [String]) -> Option<&'a str> {
    let src = match source.trim_end_matches('/') {
        "" if source.starts_with('/') => "/",
        s => s,
    };
    paths.iter().map(String::as_str).find(|p| {
        let p = match p.trim_end_matches('/') {
            "" => "/",
            p => p,
        };
        src == p || (p != "/" && src.starts_with(&format!("{p}/")))
    })
}

pub fn host_mounts(s: &Value, paths: &[String], allowed: &[String]) -> Vec<String> {
    binds(s)
        .into_iter()
        .filter_map(|(source, target, ro)| {
            if ro
                && allowed
                    .iter()
                    .any(|a| a.trim_end_matches('/') == source.trim_end_matches('/'))
            {
                return None;
            }
            let hit = under(&source, paths)?;
            let ro = if ro { " (read-only)" } else { "" };
            let below = if hit == source.trim_end_matches('/') || source == "/" {
                String::new()
            } else {
                format!(", which is under {hit}")
            };
            Some(format!("mounts host {source} at {target}{ro}{below}"))
        })
        .collect()
}

/// `security_opt` entries that lift a confinement the engine applies by
/// default (compose writes them `key=value` or `key:value`).
pub fn unconfined(s: &Value) -> Vec<String> {
    strings(&s["security_opt"])
        .into_iter()
        .filter_map(|o| {
            let norm = o.trim().to_ascii_lowercase().replacen(':', "=", 1);
            let what = match norm.as_str() {
                "apparmor=unconfined" => "no AppArmor profile",
                "seccomp=unconfined" => "no seccomp filter: every system call is allowed",
                "systempaths=unconfined" => "the host's masked /proc and /sys paths exposed",
                "label=disable" => "no SELinux labelling",
                _ => return None,
            };
            Some(format!("security_opt: {o} ({what})"))
        })
        .collect()
}

pub fn devices(s: &Value) -> Vec<String> {
    let mut out: Vec<String> = list(&s["devices"])
        .iter()
        .map(|d| match d {
            Value::String(d) => format!("device {d}"),
            d => {
                let src = d["source"].as_str().unwrap_or_default();
                let dst = d["target"].as_str().unwrap_or(src);
                format!("device {src}:{dst}")
            }
        })
        .collect();
    out.extend(
        strings(&s["device_cgroup_rules"])
            .into_iter()
            .map(|r| format!("device_cgroup_rules: {r}")),
    );
    out
}

/// A capability without `CAP_`, upper case.
fn cap(c: &str) -> String {
    let c = c.trim().to_ascii_uppercase();
    c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c)
}

pub fn added_caps(s: &Value, allowed: &[String]) -> Vec<String> {
    let allowed: Vec<String> = allowed.iter().map(|a| cap(a)).collect();
    strings(&s["cap_add"])
        .iter()
        .map(|c| cap(c))
        .filter(|c| !allowed.contains(c))
        .map(|c| match c.as_str() {
            "ALL" => "cap_add: ALL (every capability)".to_string(),
            _ => format!("cap_add: {c}"),
        })
        .collect()
}

pub fn namespace(s: &Value, ns: Namespace) -> Vec<String> {
    let key = ns.key();
    if s[key].as_str() == Some("host") {
        vec![format!("{key}: host")]
    } else {
        vec![]
    }
}

fn is_loopback(ip: &str) -> bool {
    ip.starts_with("127.") || ip == "::1" || ip == "[::1]"
}

/// A rendered `ports:` entry: (host ip as written, published port, target, protocol).
pub(super) fn port_fields(p: &Value) -> (String, String, String, String) {
    let published = match &p["published"] {
        Value::Null => "(random port)".to_string(),
        v => scalar(v),
    };
    (
        p["host_ip"].as_str().unwrap_or_default().to_string(),
        published,
        scalar(&p["target"]),
        p["protocol"].as_str().unwrap_or("tcp").to_string(),
    )
}

/// `ip:published->target/proto`, with no host ip shown as 0.0.0.0 (what
/// Docker binds then).
pub(super) fn port_shown(p: &Value) -> String {
    let (ip, published, target, proto) = port_fields(p);
    let ip = if ip.is_empty() { "0.0.0.0" } else { &ip };
    format!("{ip}:{published}->{target}/{proto}")
}

pub fn ports(s: &Value, name: &str, public: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in list(&s["ports"]) {
        let (ip, _, target, _) = port_fields(&p);
        if is_loopback(&ip) || public.contains(&format!("{name}:{target}")) {
            continue;
        }
        out.push(format!(
            "port {} is published beyond loopback",
            port_shown(&p)
        ));
    }
    out
}
