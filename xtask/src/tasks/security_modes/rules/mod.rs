//! The static rule kinds, checked against one service of the config that
//! `docker compose config --format json` rendered (compose did the YAML,
//! anchors, `extends`, the merging of files and the interpolation; nothing
//! here parses YAML).
//!
//! Each service is seen twice: as rendered (interpolated, what would run)
//! and raw (`config --no-interpolate`, what the files say). Most rules judge
//! what would run; the secret rules judge what is written in the file, so a
//! value that comes from the host environment (`${DB_PASSWORD}`) is not
//! "set inline".
//!
//! Each check returns the offending values, one line each; empty means the
//! service passes. Secret values are never echoed, only their keys.

mod hardening;
mod host;
mod proxy;
mod secrets;
#[cfg(test)]
mod secrets_tests;
#[cfg(test)]
mod tests;

use serde_json::Value;

use super::policy::{Rule, Stack};

/// What a check needs besides the rule and the service.
pub struct Scope<'a> {
    pub mode: &'a str,
    pub tag: &'a str,
    pub stack: &'a Stack,
}

/// One service, rendered and raw.
pub struct Service<'a> {
    pub name: &'a str,
    /// Interpolated and merged: what would run.
    pub rendered: &'a Value,
    /// Uninterpolated: what the compose files say.
    pub raw: &'a Value,
}

/// The offending values of `svc` under `rule`.
pub fn violations(rule: &Rule, scope: &Scope, svc: &Service) -> Vec<String> {
    let s = svc.rendered;
    match rule {
        Rule::NoPrivileged => host::privileged(s),
        Rule::NoDockerSocket => host::docker_socket(s),
        Rule::NoHostMounts { paths, allowed } => host::host_mounts(s, paths, allowed),
        Rule::NoUnconfined => host::unconfined(s),
        Rule::NoDevices => host::devices(s),
        Rule::NoAddedCapabilities { allowed } => host::added_caps(s, allowed),
        Rule::NoHostNamespace { namespace } => host::namespace(s, *namespace),
        Rule::LoopbackPorts => host::ports(s, svc.name, &scope.stack.public_ports),
        Rule::ProxyAdminLoopback {
            service,
            admin_port,
        } if service == svc.name => proxy::admin_loopback(s, *admin_port),
        Rule::ProxyAdminLoopback { .. } => vec![],
        Rule::NoPublishedPorts => proxy::no_published_ports(s),
        Rule::NoInlineSecrets {
            key_patterns,
            file_suffix,
            location_suffixes,
            setting_suffixes,
            allowed_keys,
        } => secrets::inline(
            svc,
            &secrets::Names {
                patterns: key_patterns,
                file_suffix,
                locations: location_suffixes,
                settings: setting_suffixes,
                allowed: allowed_keys,
            },
        ),
        Rule::NoUrlCredentials => secrets::url_credentials(svc.raw),
        Rule::PinnedImages { tag_prefixes } => {
            hardening::image(s, tag_prefixes, &scope.stack.unpinned_images)
                .into_iter()
                .collect()
        }
        Rule::EnvEquals { key, value } => hardening::env_equals(s, key, value, scope),
        Rule::ReadOnly => hardening::read_only(s),
        Rule::NoNewPrivileges => hardening::no_new_privileges(s),
        Rule::CapDropAll => hardening::cap_drop_all(s),
        Rule::Healthcheck => hardening::healthcheck(s),
        Rule::RestartPolicy => hardening::restart(s),
        Rule::AuditSink { env } => hardening::audit_sink(s, env).into_iter().collect(),
    }
}

/// A mapping that compose may leave in list form (`KEY=VALUE`, or `KEY`
/// alone for a value passed through): the uninterpolated render of merged
/// files keeps `environment` and `labels` as lists.
fn mapping(v: &Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
                None => (kv.to_string(), Value::Null),
            })
            .collect(),
        _ => serde_json::Map::new(),
    }
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
