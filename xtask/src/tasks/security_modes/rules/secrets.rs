//! Secrets written into compose files: secret-named variables with a value
//! in the file, and URLs carrying a password.
//!
//! Both judge the raw service (`config --no-interpolate`): a reference to a
//! host variable (`${DB_PASSWORD}`, `$TOKEN`, `${X:?required}`) or an empty
//! value puts no secret in the file, while a literal, or a literal default
//! (`${DB_PASSWORD:-hunter2}`), does.
//!
//! Names are matched on whole segments (split at `_`, `-`, `.` and at
//! camelCase humps), so the pattern `KEY` matches `API_KEY`, `KEY_ID` and
//! `signingKey`, but not `X_KEYGEN_MODE`. Names ending in a location
//! segment (`_PATH`, `_DIR` by default) name where something is, not the
//! secret itself, and names ending in the file segment (`_FILE`) must hold a
//! path.

use serde_json::Value;

use super::Service;

/// Marks a host-variable reference in [`masked`] text.
const REF: char = '\u{1}';

/// What makes a name secret, and which names are pointers to a location.
pub struct Names<'a> {
    pub patterns: &'a [String],
    pub file_suffix: &'a str,
    pub locations: &'a [String],
    pub allowed: &'a [String],
}

/// The segments of a variable name, upper case.
pub fn segments(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        let split = !c.is_ascii_alphanumeric() || (prev_lower && c.is_ascii_uppercase());
        if split && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if c.is_ascii_alphanumeric() {
            cur.push(c.to_ascii_uppercase());
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Does `name` hold `word` (one or more segments, like `API_KEY`) as whole segments?
pub fn has_word(name: &[String], word: &str) -> bool {
    let w = segments(word);
    !w.is_empty() && name.windows(w.len()).any(|win| win == w.as_slice())
}

/// Does `name` end with the segments of `suffix` (`_PATH`)?
pub fn ends_with_word(name: &[String], suffix: &str) -> bool {
    let w = segments(suffix);
    !w.is_empty() && name.ends_with(&w)
}

/// Raw compose text with every host-variable reference replaced by [`REF`]
/// and `$$` by `$`; a default (`:-`, `-`) or alternative (`:+`, `+`) value
/// is kept, masked in turn, because it is written in the file.
pub fn masked(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < chars.len() && depth > 0 {
                    match chars[j] {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                let end = if depth == 0 { j - 1 } else { j };
                let inner: String = chars[i + 2..end].iter().collect();
                out.push(REF);
                let name_len = inner
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(inner.len());
                let op = &inner[name_len..];
                let kept = [":-", ":+", "-", "+"]
                    .iter()
                    .find_map(|p| op.strip_prefix(p));
                if let Some(v) = kept {
                    out.push_str(&masked(v));
                }
                i = j;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(REF);
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out
}

/// The literal text of masked text (references dropped), trimmed.
fn literal(masked: &str) -> String {
    masked
        .chars()
        .filter(|c| *c != REF)
        .collect::<String>()
        .trim()
        .to_string()
}

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
        let segs = segments(key);
        let secret = names.patterns.iter().any(|p| has_word(&segs, p));
        if !secret || names.allowed.contains(key) {
            continue;
        }
        if names.locations.iter().any(|l| ends_with_word(&segs, l)) {
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
        if ends_with_word(&segs, names.file_suffix) {
            if !written.contains('/') {
                out.push(format!(
                    "{key} should name a file but is {}",
                    described(value)
                ));
            }
            continue;
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

/// `scheme://user:***@host` for each URL in masked text whose password is written.
pub fn urls_with_password(masked: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = masked;
    while let Some(at) = rest.find("://") {
        // The scheme is the ASCII run before `://` (byte offsets stay on char
        // boundaries because every char it may hold is one byte).
        let scheme_start = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || "+.-".contains(*c)))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let scheme = &rest[scheme_start..at];
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            if let Some((user, password)) = userinfo.split_once(':') {
                if !scheme.is_empty() && !literal(password).is_empty() {
                    let user = if user.contains(REF) { "${...}" } else { user };
                    let host = if literal(host).is_empty() {
                        "${...}".to_string()
                    } else {
                        host.replace(REF, "${...}")
                    };
                    out.push(format!("{scheme}://{user}:***@{host}"));
                }
            }
        }
        rest = &after[end..];
    }
    out
}

/// URLs with a password written in the file.
pub fn url_credentials(raw: &Value) -> Vec<String> {
    texts(raw)
        .into_iter()
        .flat_map(|(at, text)| {
            urls_with_password(&masked(&text))
                .into_iter()
                .map(move |u| format!("{at} holds a URL with a password written in the file ({u})"))
        })
        .collect()
}
