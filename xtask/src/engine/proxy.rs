//! The reverse proxy's admin API (Caddy 2): where each HTTP app service's
//! route sends traffic, and the switch.
//!
//! A route is the `reverse_proxy` handler whose `@id` is `fetchml-<service>`
//! (deployments/testbed/proxy.json). The switch replaces its `upstreams`
//! array in one `PATCH`: Caddy builds the new config beside the old one and
//! swaps it in, so a request goes either to the old containers or to the new
//! ones, never nowhere, and requests in flight finish where they started.

use std::time::Duration;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::health::one_line;

/// The `@id` of `service`'s route in the proxy's config.
pub fn route_id(service: &str) -> String {
    format!("fetchml-{service}")
}

#[derive(Debug, Serialize, Deserialize)]
struct Upstream {
    dial: String,
}

/// The admin API answers in milliseconds; a proxy that takes seconds is
/// treated as down, which refuses a deploy before anything is touched.
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("building an HTTP client with static settings")
}

fn url(admin: &str, service: &str) -> String {
    format!(
        "{}/id/{}/upstreams",
        admin.trim_end_matches('/'),
        route_id(service)
    )
}

/// Where `service`'s route sends traffic now: its upstreams' `host:port`.
pub fn upstreams(admin: &str, service: &str) -> Result<Vec<String>> {
    let u = url(admin, service);
    let resp = client().get(&u).send().map_err(|e| {
        anyhow::anyhow!(
            "the proxy's admin API at {admin} does not answer: {}",
            one_line(&e)
        )
    })?;
    let status = resp.status();
    let body = resp.text().unwrap_or_default();
    if !status.is_success() {
        return Err(anyhow::Error::new(Answered).context(format!(
            "the proxy at {admin} has no route `{}` for {service} (HTTP {status}: {}); its config must give the reverse_proxy handler that \"@id\"",
            route_id(service),
            body.trim()
        )));
    }
    let ups: Vec<Upstream> = serde_json::from_str(&body).map_err(|_| {
        anyhow::Error::new(Answered).context(format!(
            "the proxy's {} upstreams are not a list of dials: {body}",
            route_id(service)
        ))
    })?;
    Ok(ups.into_iter().map(|u| u.dial).collect())
}

/// Marks an error where the proxy answered (it is misconfigured, not
/// starting): waiting longer will not help.
#[derive(Debug)]
pub struct Answered;
impl std::fmt::Display for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the proxy answered")
    }
}
impl std::error::Error for Answered {}

/// Did the proxy answer (as opposed to not being reachable)?
pub fn answered(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Answered>().is_some())
}

/// Points `service`'s route at `dials` (`container:port`), atomically.
pub fn point(admin: &str, service: &str, dials: &[String]) -> Result<()> {
    if dials.is_empty() {
        bail!("no containers to send {service}'s traffic to");
    }
    let body: Vec<Upstream> = dials.iter().map(|d| Upstream { dial: d.clone() }).collect();
    let resp = client()
        .patch(url(admin, service))
        .json(&body)
        .send()
        .map_err(|e| {
            anyhow::anyhow!("switching {service} at the proxy {admin}: {}", one_line(&e))
        })?;
    let status = resp.status();
    if !status.is_success() {
        bail!(
            "the proxy at {admin} refused the switch of {service} (HTTP {status}): {}",
            resp.text().unwrap_or_default().trim()
        );
    }
    Ok(())
}

/// The container name in a dial (`name:port`).
pub fn host_of(dial: &str) -> &str {
    dial.rsplit_once(':').map_or(dial, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dials_and_ids() {
        assert_eq!(host_of("p-api-2:8080"), "p-api-2");
        assert_eq!(host_of("api"), "api");
        assert_eq!(route_id("api"), "fetchml-api");
        assert_eq!(
            url("http://127.0.0.1:1/", "api"),
            "http://127.0.0.1:1/id/fetchml-api/upstreams"
        );
    }
}
