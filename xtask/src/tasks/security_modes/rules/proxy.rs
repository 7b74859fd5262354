//! Rules about the reverse proxy in front of the app services: its admin
//! API stays on the host's loopback, and the app services behind it publish
//! nothing (the proxy's front ports are `loopback-ports`' like any other).
//! Both judge the rendered service.

use serde_json::Value;

use super::host::{port_fields, port_shown};
use super::list;

/// Every binding of the admin API's container port that is not exactly
/// 127.0.0.1 or ::1. Another 127.x address is refused too: the xtask's
/// `admin_url` can only name those two, so nothing needs another.
pub fn admin_loopback(s: &Value, admin_port: u16) -> Vec<String> {
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
