//! Input validation that runs before anything else: a value that fails here
//! never reaches a command line, a file or the audit log.
//!
//! Every value still travels as one argument (xshell), so validation is a
//! second wall, not the only one: it turns a confusing docker error into a
//! clear one-line refusal with exit code 1.

use anyhow::{bail, Result};

fn all(s: &str, ok: impl Fn(char) -> bool) -> bool {
    s.chars().all(ok)
}

/// An image tag: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`.
pub fn tag(t: &str) -> Result<()> {
    let first_ok = t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || t.len() > 128
        || !all(t, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
        })
    {
        bail!(
            "invalid tag {:?}: a tag is 1-128 of [A-Za-z0-9_.-] and starts with a letter or digit",
            t
        );
    }
    Ok(())
}

/// An environment name as written in the config.
pub fn env_name(n: &str) -> Result<()> {
    let first_ok = n.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || n.len() > 32
        || !all(n, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })
    {
        bail!("invalid environment name {n:?}: use lowercase letters, digits and -");
    }
    Ok(())
}

/// A compose project name.
pub fn project_name(n: &str) -> Result<()> {
    let first_ok = n
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok
        || !all(n, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')
        })
    {
        bail!("invalid project name {n:?}: use lowercase letters, digits, - and _");
    }
    Ok(())
}

/// A compose service name.
pub fn service_name(n: &str) -> Result<()> {
    let first_ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !all(n, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
        })
    {
        bail!("invalid service name {n:?}");
    }
    Ok(())
}

/// An environment variable name.
pub fn var_name(n: &str) -> Result<()> {
    let first_ok = n
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_');
    if !first_ok
        || !all(n, |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
        })
    {
        bail!("invalid variable name {n:?}: use A-Z, 0-9 and _");
    }
    Ok(())
}

/// An image repository without tag: `host[:port]/path`, lowercase path components.
pub fn repository(r: &str) -> Result<()> {
    let ok = !r.is_empty()
        && !r.starts_with(['-', '/', '.'])
        && !r.ends_with('/')
        && !r.contains("//")
        && all(r, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/' | ':')
        })
        && !r.rsplit('/').next().unwrap_or("").contains(':');
    if !ok {
        bail!("invalid image repository {r:?}: expected host[:port]/name without a tag");
    }
    Ok(())
}

/// A free-text reason: stored verbatim (JSON-escaped) but bounded, and without
/// control characters that would forge extra lines in the `audit show` form.
pub fn reason(r: &str) -> Result<()> {
    if r.trim().is_empty() {
        bail!("--reason is empty: say why, in a few words");
    }
    if r.len() > 1024 {
        bail!(
            "--reason is {} bytes: it can be at most 1024 bytes",
            r.len()
        );
    }
    if r.chars().any(|c| c.is_control()) {
        bail!("--reason contains a control character (newline, tab, escape); write it on one line");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for good in [
            "sha-0123456789ab",
            "v1.2.3",
            "sha-0123456789ab-dirty",
            "A_b.c-d",
            &"a".repeat(128),
        ] {
            tag(good).unwrap();
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            "-x",
            ".x",
            "sha-1; rm -rf /",
            "$(id)",
            "a\nb",
            "--help",
            "a b",
            "a/b",
            "a:b",
            "ä",
            &long,
        ] {
            let e = tag(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid tag"), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "one line for {bad:?}");
        }
    }

    #[test]
    fn reasons() {
        reason("health-check-failure").unwrap();
        reason("sha-1; rm -rf / $(id) `x` 'quoted' \"dq\" | pipes").unwrap();
        reason("unicode: rückgängig ✓").unwrap();
        reason(&"x".repeat(1024)).unwrap();
        let e = reason(&"x".repeat(1025)).unwrap_err().to_string();
        assert_eq!(e, "--reason is 1025 bytes: it can be at most 1024 bytes");
        for bad in ["", "  ", "two\nlines", "esc\u{1b}[31m", &"x".repeat(1025)] {
            assert!(reason(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        env_name("staging").unwrap();
        for bad in ["Staging", "1st", "a b", "a;b", ""] {
            assert!(env_name(bad).is_err(), "{bad:?}");
        }
        repository("127.0.0.1:5000/fetchml/api").unwrap();
        for bad in [
            "127.0.0.1:5000/fetchml/api:v1",
            "Fetch/API",
            "",
            "a//b",
            "-a",
        ] {
            assert!(repository(bad).is_err(), "{bad:?}");
        }
        var_name("FETCHML_TAG").unwrap();
        assert!(var_name("fetchml-tag").is_err());
    }
}
