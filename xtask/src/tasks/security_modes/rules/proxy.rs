//! Rules about the reverse proxy in front of the app services: its admin
//! API is out of reach of the other containers (a unix socket, or the
//! container's own loopback) and, where a port of it is published, only on
//! the host's loopback; the app services behind it publish nothing (the
//! proxy's front ports are `loopback-ports`' like any other). Both judge the
//! rendered service, and the first also the proxy config files it mounts.

use serde_json::Value;

use super::host::{port_fields, port_shown};
use super::list;

/// Every binding of the admin API's container port that is not exactly
/// 127.0.0.1 or ::1 (another 127.x address is refused too: nothing needs
/// one), and every admin listener in the proxy config files the service
/// bind-mounts that another container could reach.
pub fn admin_loopback(s: &Value, admin_port: u16) -> Vec<String> {
    let mut v = published_admin(s, admin_port);
    for m in list(&s["volumes"]) {
        if m["type"].as_str() != Some("bind") {
            continue;
        }
        let src = m["source"].as_str().unwrap_or_default();
        let Ok(text) = std::fs::read_to_string(src) else {
            continue;
        };
        let name = std::path::Path::new(src)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found = match serde_json::from_str::<Value>(&text) {
            Ok(j) if j.get("apps").is_some() || j.get("admin").is_some() => caddy_admin(&j),
            Ok(_) => Vec::new(),
            Err(_) => haproxy_admin(&text),
        };
        v.extend(found.into_iter().map(|f| format!("{name}: {f}")));
    }
    v
}

/// HAProxy's runtime API: every `stats socket` on a TCP address other than
/// the container's loopback (`*:N`, `:N`, `0.0.0.0`, `ipv4@`/`ipv6@` of
/// another address), or in the abstract namespace (no file permissions),
/// and every stats page that grants admin rights. A unix socket passes.
pub fn haproxy_admin(cfg: &str) -> Vec<String> {
    let mut v = Vec::new();
    for line in cfg.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["stats", "socket", addr, ..] if !private_socket(addr) => v.push(format!(
                "the runtime API listens on `{addr}`, which other containers can reach: use a unix socket in a directory only the proxy mounts"
            )),
            ["stats", "admin", ..] => v.push(
                "a stats page grants admin rights (`stats admin`): use the runtime API on a unix socket instead".to_string(),
            ),
            _ => {}
        }
    }
    v
}

/// A unix socket path, or a TCP address on the container's loopback.
fn private_socket(addr: &str) -> bool {
    if addr.starts_with('/') || addr.starts_with("unix@") {
        return true;
    }
    let a = addr
        .strip_prefix("ipv4@")
        .or_else(|| addr.strip_prefix("ipv6@"))
        .unwrap_or(addr);
    let host = a.rsplit_once(':').map_or(a, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

/// Caddy's admin API: `admin.listen` other than a unix socket or the
/// container's loopback. No `admin` (the default, localhost:2019) or a
/// disabled one passes.
pub fn caddy_admin(cfg: &Value) -> Vec<String> {
    let admin = &cfg["admin"];
    if admin["disabled"].as_bool() == Some(true) {
        return Vec::new();
    }
    let Some(listen) = admin["listen"].as_str() else {
        return Vec::new();
    };
    let a = listen.strip_prefix("tcp/").unwrap_or(listen);
    if a.starts_with("unix/") || private_socket(a) {
        return Vec::new();
    }
    vec![format!(
        "the admin API listens on `{listen}`, which other containers can reach: use a unix socket in a directory only the proxy mounts, or disable it"
    )]
}

fn published_admin(s: &Value, admin_port: u16) -> Vec<String> {
    let admin = admin_port.to_string();
    list(&s["ports"])
        .iter()
        .filter_map(|p| {
            let (ip, published, target, _) = port_fields(p);
            if target != admin || matches!(ip.as_str(), "127.0.0.1" | "::1" | "[::1]") {
                return None;
            }
            Some(match ip.as_str() {
                "" => format!(
                    "admin port {admin} is published on every interface (no host ip, host port {published}): publish it on 127.0.0.1 only"
                ),
                "0.0.0.0" | "::" | "[::]" => format!(
                    "admin port {admin} is published on every interface ({ip}:{published}): publish it on 127.0.0.1 only"
                ),
                _ => format!(
                    "admin port {admin} is published on {ip}:{published}, not on 127.0.0.1 or ::1"
                ),
            })
        })
        .collect()
}

/// Every published port, on any address: behind the proxy, an app service
/// is reached through it (and two sets of it could not both bind a port).
pub fn no_published_ports(s: &Value) -> Vec<String> {
    list(&s["ports"])
        .iter()
        .map(|p| {
            format!(
                "port {} is published: only the proxy publishes ports",
                port_shown(p)
            )
        })
        .collect()
}
