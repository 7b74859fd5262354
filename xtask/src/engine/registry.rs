//! What a tag points to in its registry now: one read-only look-up per
//! image, made while planning, so a deploy runs the digest it showed and a
//! moved tag is seen before anything is touched.
//!
//! A registry docker reaches over plain HTTP by default (loopback) is asked
//! directly, `HEAD /v2/<name>/manifests/<tag>`, whose `Docker-Content-Digest`
//! is the digest a pull by that tag stores (a few ms, no process). Any other
//! registry is asked through `docker manifest inspect --verbose`: docker has
//! its TLS and its credentials, and this binary has neither.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{output, Command, Effect};

/// What `Accept` names: a pull by tag may get any of these, and the digest
/// of whichever the registry returns is the one docker records.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The digest (`sha256:<64 hex>`) `repository:tag` points to in the
/// registry now, within `timeout_secs`.
pub fn digest(repository: &str, tag: &str, timeout_secs: u64) -> Result<String> {
    let (host, name) = split(repository);
    if loopback(&host) {
        head(&host, &name, tag, timeout_secs)
    } else {
        manifest_inspect(repository, tag, timeout_secs)
    }
}

/// The digest `tag` points to for an environment's first app service's
/// image (the repository records name digests of): what an evidence task
/// tests and records. `Ok(None)` for an environment without images.
pub fn of_env(env: &crate::config::Env, tag: &str) -> Result<Option<String>> {
    let first = env.app_services.first().and_then(|s| env.images.get(s));
    first
        .map(|r| digest(r, tag, env.timeouts.look_up_secs))
        .transpose()
}

/// Each app service's digest of `tag`, when the environment's app services
/// use several repositories (what a record's `digests` carries); empty
/// when they share one ([`of_env`] is then every service's).
pub fn each_of_env(
    env: &crate::config::Env,
    tag: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut repos: Vec<&String> = env.images.values().collect();
    repos.sort();
    repos.dedup();
    if repos.len() < 2 {
        return Ok(Default::default());
    }
    let mut by_repo = std::collections::BTreeMap::new();
    for r in repos {
        by_repo.insert(r, digest(r, tag, env.timeouts.look_up_secs)?);
    }
    Ok(env
        .app_services
        .iter()
        .filter_map(|s| Some((s.clone(), by_repo.get(env.images.get(s)?)?.clone())))
        .collect())
}

/// `(registry host, repository path)`, as docker reads a reference: the
/// first component is a host when it has a dot, a colon or is `localhost`.
fn split(repository: &str) -> (String, String) {
    match repository.split_once('/') {
        Some((h, rest)) if h.contains('.') || h.contains(':') || h == "localhost" => {
            (h.to_string(), rest.to_string())
        }
        Some(_) => ("registry-1.docker.io".into(), repository.to_string()),
        None => (
            "registry-1.docker.io".into(),
            format!("library/{repository}"),
        ),
    }
}

fn loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, _)| h);
    h == "localhost" || h == "[::1]" || h.starts_with("127.")
}

fn head(host: &str, name: &str, tag: &str, timeout_secs: u64) -> Result<String> {
    let url = format!("http://{host}/v2/{name}/manifests/{tag}");
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(timeout_secs.min(5)))
        .timeout(Duration::from_secs(timeout_secs))
        .build()
        .context("building an HTTP client")?;
    let r = client
        .head(&url)
        .header("Accept", ACCEPT)
        .send()
        .with_context(|| format!("registry {host} did not answer HEAD {url}"))?;
    match r.status().as_u16() {
        200 => {}
        404 => bail!("the registry {host} has no {name}:{tag}"),
        s => bail!("registry {host} answered HEAD {url} with HTTP {s}"),
    }
    let d = r
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    checked(d).with_context(|| format!("registry {host} sent no digest for {name}:{tag}"))
}

/// A registry reached over TLS: docker's own look-up. A multi-platform
/// index answers with one descriptor per platform; the daemon's (linux/amd64
/// here) is the manifest that runs, and pinning it pins those bytes.
fn manifest_inspect(repository: &str, tag: &str, timeout_secs: u64) -> Result<String> {
    let reference = format!("{repository}:{tag}");
    let c = Command::new("docker", Effect::ReadOnly)
        .args(["manifest", "inspect", "--verbose"])
        .arg(&reference)
        .timeout(timeout_secs);
    let o = output(&c)?;
    if !o.success {
        bail!(
            "docker manifest inspect {reference}: {}",
            o.stderr.lines().next().unwrap_or("failed").trim()
        );
    }
    let v: serde_json::Value = serde_json::from_str(&o.stdout)
        .with_context(|| format!("reading docker manifest inspect {reference}"))?;
    let pick = match &v {
        serde_json::Value::Array(all) => all.iter().find(|d| {
            let p = &d["Descriptor"]["platform"];
            p["os"] == "linux"
                && p["architecture"]
                    == std::env::consts::ARCH
                        .replace("x86_64", "amd64")
                        .replace("aarch64", "arm64")
        }),
        one => Some(one),
    };
    let d = pick
        .and_then(|d| d["Descriptor"]["digest"].as_str())
        .unwrap_or_default();
    checked(d).with_context(|| format!("docker manifest inspect {reference} named no digest"))
}

fn checked(d: &str) -> Result<String> {
    match d.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(d.to_string()),
        _ => bail!("not a sha256 digest: {d:?}"),
    }
}

/// `sha256:0123456789ab`: the first 12 hex digits, as status and history show.
pub fn short(digest: &str) -> String {
    let h = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}", &h[..h.len().min(12)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_as_docker_reads_them() {
        assert_eq!(
            split("127.0.0.1:5000/fetchml/testbed"),
            ("127.0.0.1:5000".into(), "fetchml/testbed".into())
        );
        assert_eq!(
            split("registry.example/a/b"),
            ("registry.example".into(), "a/b".into())
        );
        assert_eq!(
            split("redis"),
            ("registry-1.docker.io".into(), "library/redis".into())
        );
        assert!(loopback("127.0.0.1:5000") && loopback("localhost:5000"));
        assert!(!loopback("registry.example"));
        assert_eq!(
            short(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
        assert!(checked("sha256:12").is_err());
    }
}
