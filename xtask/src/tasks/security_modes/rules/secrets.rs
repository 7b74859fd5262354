//! Secrets written into compose files: secret-named variables with a value
//! in the file, and URLs carrying a password.
//!
//! Both judge the raw service (`config --no-interpolate`): a reference to a
//! host variable (`${DB_PASSWORD}`, `$TOKEN`, `${X:?required}`) or an empty
//! value puts no secret in the file, while a literal, or a literal default
//! (`${DB_PASSWORD:-hunter2}`), does.
//!
//! Which names and values are secret is `crate::secret`'s rule, shared with
//! the deploy config's `vars`: names matched by token (`KEY` in `API_KEY`,
//! `KEY_ID` and `signingKey`, not in `X_KEYGEN_MODE`; `PGPASSWORD`,
//! `MYSQL_PWD`, `DBPASS`), names ending in a location (`_PATH`, `_DIR`) or
//! a setting (`_TTL`, `_LENGTH`, `_ENABLED`...) hold none, booleans,
//! numbers and durations are none, and names ending in the file segment
//! (`_FILE`) must hold a path.

use serde_json::Value;

use super::Service;
pub use crate::secret::Names;
use crate::secret::{
    classify, is_setting_value, literal, masked, urls_with_password, NameKind, REF,
};

/// A raw value for a message, without its contents.
fn described(v: &Value) -> String {
    match v {
        Value::String(s) if masked(s).contains(REF) => format!(
            "a default written in the file, {} characters, redacted",
            literal(&masked(s)).chars().count()
        ),
        Value::String(s) => format!("a {}-character value, redacted", s.chars().count()),
        _ => "a literal value, redacted".into(),
    }
}

/// Secret-named variables given a value in the file.
pub fn inline(svc: &Service, names: &Names) -> Vec<String> {
    let env = super::mapping(&svc.raw["environment"]);
    let mut out = Vec::new();
    for (key, value) in &env {
        let kind = classify(key, names);
        if kind == NameKind::Plain {
            continue;
        }
        let written = match value {
            Value::Null => continue, // passed through from the host environment
            Value::String(s) => literal(&masked(s)),
            other => other.to_string(),
        };
        if written.is_empty() {
            continue;
        }
        if kind == NameKind::File {
            if !written.contains('/') {
                out.push(format!(
                    "{key} should name a file but is {}",
                    described(value)
                ));
            }
            continue;
        }
        if is_setting_value(&written) {
            continue; // a flag, a count or a duration, never a secret
        }
        let file = format!("{key}_{}", names.file_suffix.trim_start_matches('_'));
        out.push(format!(
            "{key} is set inline ({}); use {file} with a secret",
            described(value)
        ));
    }
    out
}

/// Every string the service passes to the container or its runtime, with where it is.
fn texts(raw: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in super::mapping(&raw["environment"]) {
        if let Some(s) = v.as_str() {
            out.push((k, s.to_string()));
        }
    }
    for key in ["command", "entrypoint"] {
        for s in super::strings(&raw[key]) {
            out.push((key.to_string(), s));
        }
    }
    for s in super::strings(&raw["healthcheck"]["test"]) {
        out.push(("healthcheck".into(), s));
    }
    for (k, v) in super::mapping(&raw["labels"]) {
        if let Some(s) = v.as_str() {
            out.push((format!("label {k}"), s.to_string()));
        }
    }
    out
}

/// URLs with a password written in the file, and DSNs with a key in their
/// user part (Sentry's `https://KEY@host/1`).
pub fn url_credentials(raw: &Value) -> Vec<String> {
    texts(raw)
        .into_iter()
        .flat_map(|(at, text)| {
            let mut found: Vec<String> = urls_with_password(&masked(&text))
                .into_iter()
                .map(|u| format!("{at} holds a URL with a password written in the file ({u})"))
                .collect();
            if found.is_empty() && crate::secret::dsn_with_key(&at, &text) {
                found.push(format!("{at} holds a DSN with its key written in the file"));
            }
            found
        })
        .collect()
}
