//! What looks like a secret: the one set of rules that security-modes
//! applies to compose files and the config applies to its `vars`, so a
//! value refused in one is refused in the other.
//!
//! - **Names** are matched by token. A name splits into segments at `_`,
//!   `-`, `.` and camelCase humps; a secret word (`PASSWORD`, `PWD`,
//!   `TOKEN`, `KEY`...) must be a whole segment (`X_KEYGEN_MODE` is not a
//!   key), or a long word closing a compound segment (`PGPASSWORD`), or a
//!   short one behind a known qualifier (`DBPASS`, `ROOTPWD`).
//! - A name whose **last** segment says the value is a setting (`_TTL`,
//!   `_LENGTH`, `_ACCESS`, `_ENABLED`...) or a location (`_PATH`, `_DIR`)
//!   holds no secret; `PWD` alone is the shell's working directory; `KEY`
//!   after `PUBLIC`, `PRIMARY`, `SORT`... is not a credential.
//! - A **value** that is a boolean, a number or a duration is no secret,
//!   whatever its name.
//! - A URL with a password (`https://user:pass@host`), a `password=` field
//!   of a connection string, a private key block or a well-known token
//!   shape is a secret whatever the name.

/// Marks a host-variable reference in [`masked`] text.
pub const REF: char = '\u{1}';

/// The secret words of the config's rule (security-modes takes its own
/// list from the policy, `key_patterns`).
pub const NAME_WORDS: [&str; 12] = [
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "KEY",
    "APIKEY",
    "CREDENTIALS",
    "CREDENTIAL",
    "PRIVATE_KEY",
];

/// Last segments that make a name a setting about a secret, not the
/// secret: `TOKEN_TTL`, `PASSWORD_MIN_LENGTH`, `PASSWORD_ACCESS`.
pub const SETTING_SUFFIXES: [&str; 40] = [
    "TTL",
    "LENGTH",
    "LEN",
    "ACCESS",
    "ENABLED",
    "ENABLE",
    "DISABLED",
    "DISABLE",
    "REQUIRED",
    "EXPIRY",
    "EXPIRES",
    "EXPIRE",
    "EXPIRATION",
    "TIMEOUT",
    "LIFETIME",
    "AGE",
    "INTERVAL",
    "ALGORITHM",
    "ALG",
    "TYPE",
    "MODE",
    "SIZE",
    "BITS",
    "COUNT",
    "ROUNDS",
    "ITERATIONS",
    "POLICY",
    "HEADER",
    "PREFIX",
    "ROTATION",
    "RETRIES",
    "ATTEMPTS",
    "STRENGTH",
    "FORMAT",
    "VERSION",
    "LIMIT",
    "MIN",
    "MAX",
    "NAME",
    "SECONDS",
];

/// Last segments that name where a secret is, not what it is.
pub const LOCATION_SUFFIXES: [&str; 2] = ["PATH", "DIR"];

/// The segment of names that point at a secret file (`API_TOKEN_FILE`).
pub const FILE_SUFFIX: &str = "FILE";

/// Qualifiers glued to a short secret word in one segment: `DBPASS`,
/// `PGPASS`, `ROOTPWD`. Only these, so `BYPASS` and `COMPASS` stay words.
const QUALIFIERS: [&str; 10] = [
    "DB", "PG", "MYSQL", "SQL", "ROOT", "ADMIN", "USER", "REDIS", "SMTP", "LDAP",
];

/// Segments before `KEY` that make it a name, not a credential.
const NOT_CREDENTIAL_KEYS: [&str; 6] = [
    "PUBLIC",
    "PRIMARY",
    "FOREIGN",
    "SORT",
    "PARTITION",
    "ROUTING",
];

/// What makes a name secret, and which names hold something else.
pub struct Names<'a> {
    /// Secret words (`PASSWORD`, `API_KEY`).
    pub patterns: &'a [String],
    /// Names ending in this segment must hold a path (`_FILE`).
    pub file_suffix: &'a str,
    /// Last segments naming a location (`_PATH`, `_DIR`).
    pub locations: &'a [String],
    /// Last segments naming a setting (`_TTL`, `_LENGTH`).
    pub settings: &'a [String],
    /// Exact names that match but hold no secret.
    pub allowed: &'a [String],
}

/// How a name reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Holds a secret.
    Secret,
    /// Names a file that holds a secret (`_FILE`): must be a path.
    File,
    /// No secret: a setting, a location, an ordinary name.
    Plain,
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

/// Does segment `seg` carry the one-segment secret `word` as a token: the
/// word itself, a long word closing a compound (`PGPASSWORD`, six letters
/// or more, where English has no such endings), or a short word behind a
/// known qualifier (`DBPASS`)?
fn token(seg: &str, word: &str) -> bool {
    seg == word
        || (word.len() >= 6 && seg.ends_with(word))
        || seg
            .strip_suffix(word)
            .is_some_and(|q| QUALIFIERS.contains(&q))
}

/// Does `name` hold the secret word `word` by token?
fn holds(name: &[String], word: &str) -> bool {
    let w = segments(word);
    match w.as_slice() {
        [] => false,
        [one] => name.iter().enumerate().any(|(i, seg)| {
            token(seg, one)
                && !(one == "KEY" && i > 0 && NOT_CREDENTIAL_KEYS.contains(&name[i - 1].as_str()))
        }),
        _ => has_word(name, word),
    }
}

/// How `name` reads under `names`.
pub fn classify(name: &str, names: &Names) -> NameKind {
    let segs = segments(name);
    if names.allowed.iter().any(|a| a == name)
        || matches!(segs.as_slice(), [one] if one == "PWD" || one == "OLDPWD")
        || !names.patterns.iter().any(|p| holds(&segs, p))
    {
        return NameKind::Plain;
    }
    let last = |list: &[String]| list.iter().any(|l| ends_with_word(&segs, l));
    if ends_with_word(&segs, names.file_suffix) {
        NameKind::File
    } else if last(names.locations) || last(names.settings) {
        NameKind::Plain
    } else {
        NameKind::Secret
    }
}

/// The config's own rule: [`NAME_WORDS`] and the default suffixes.
pub fn config_name(name: &str) -> NameKind {
    let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    classify(
        name,
        &Names {
            patterns: &own(&NAME_WORDS),
            file_suffix: FILE_SUFFIX,
            locations: &own(&LOCATION_SUFFIXES),
            settings: &own(&SETTING_SUFFIXES),
            allowed: &[],
        },
    )
}

/// A boolean, a number (ten digits at most: longer digit strings can be
/// tokens) or a duration (`30s`, `1h30m`, `500ms`, `7d`): never a secret.
pub fn is_setting_value(v: &str) -> bool {
    let v = v.trim();
    let lower = v.to_ascii_lowercase();
    if ["true", "false", "yes", "no", "on", "off"].contains(&lower.as_str()) {
        return true;
    }
    let unsigned = lower.strip_prefix(['-', '+']).unwrap_or(&lower);
    let number = |s: &str| {
        let mut parts = s.splitn(2, '.');
        let int = parts.next().unwrap_or("");
        let frac = parts.next();
        !int.is_empty()
            && int.chars().all(|c| c.is_ascii_digit())
            && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
            && s.chars().filter(char::is_ascii_digit).count() <= 10
    };
    if number(unsigned) {
        return true;
    }
    duration(&lower)
}

/// `1h30m`, `500ms`, `30s`, `7d`, `2w`, `15min`: one or more number-unit pairs.
fn duration(s: &str) -> bool {
    const UNITS: [&str; 15] = [
        "ns", "us", "µs", "ms", "secs", "sec", "s", "mins", "min", "m", "hours", "h", "days", "d",
        "w",
    ];
    let mut rest = s;
    let mut pairs = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 || digits == rest.len() {
            return false;
        }
        rest = &rest[digits..];
        let Some(u) = UNITS.iter().find(|u| rest.starts_with(*u)) else {
            return false;
        };
        rest = &rest[u.len()..];
        pairs += 1;
    }
    pairs > 0
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
pub fn literal(masked: &str) -> String {
    masked
        .chars()
        .filter(|c| *c != REF)
        .collect::<String>()
        .trim()
        .to_string()
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

/// Why a literal value is a secret whatever its name, if it is one: a URL
/// with a password, a `password=` field, a private key, a known token shape.
pub fn secret_value(v: &str) -> Option<&'static str> {
    if !urls_with_password(&masked(v)).is_empty() {
        return Some("a URL with a password");
    }
    let lower = v.to_ascii_lowercase();
    let field = ["password=", "pwd=", "passwd="].iter().any(|f| {
        lower.match_indices(f).any(|(i, _)| {
            let before = lower[..i].chars().last();
            let value = &v[i + f.len()..];
            before.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
                && value
                    .chars()
                    .next()
                    .is_some_and(|c| !c.is_whitespace() && c != ';' && c != '&')
        })
    });
    if field {
        return Some("a connection string with a password");
    }
    if v.contains("PRIVATE KEY-----") {
        return Some("a private key");
    }
    let tokens = [
        "ghp_",
        "gho_",
        "ghs_",
        "ghu_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "sk_live_",
    ];
    if tokens.iter().any(|t| v.starts_with(t)) && v.len() >= 20 {
        return Some("an access token");
    }
    let aws = v.len() == 20
        && v.starts_with("AKIA")
        && v.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if aws {
        return Some("an access key id");
    }
    None
}

/// A DSN-named value with credentials in its userinfo (Sentry's
/// `https://KEY@host/1`: the key is the user part).
pub fn dsn_with_key(name: &str, value: &str) -> bool {
    has_word(&segments(name), "DSN")
        && value.split_once("://").is_some_and(|(_, rest)| {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            authority
                .rsplit_once('@')
                .is_some_and(|(user, _)| !literal(&masked(user)).is_empty())
        })
}

/// Why a config value written as `value` under `name` is refused, if it is:
/// the config holds no secret itself; it reads one from the environment.
pub fn config_refusal(name: &str, value: &str) -> Option<String> {
    if let Some(why) = secret_value(value) {
        return Some(format!("holds {why}"));
    }
    if dsn_with_key(name, value) {
        return Some("is a DSN with a key in it".into());
    }
    match config_name(name) {
        NameKind::Secret if !value.trim().is_empty() && !is_setting_value(value) => {
            Some("has a secret name".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_matched_by_token() {
        for secret in [
            "PGPASSWORD",
            "MYSQL_PWD",
            "DBPASS",
            "DB_PASS",
            "ROOTPWD",
            "DB_PASSWORD",
            "API_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "signingKey",
            "SMTP_PASSWD",
            "CLIENTSECRET",
            "TOKEN",
        ] {
            assert_eq!(config_name(secret), NameKind::Secret, "{secret}");
        }
        for plain in [
            "PWD",
            "OLDPWD",
            "BYPASS_CACHE",
            "COMPASS_HEADING",
            "X_KEYGEN_MODE",
            "TOKENIZER",
            "MONKEY",
            "SSH_PUBLIC_KEY",
            "PRIMARY_KEY",
            "TLS_KEY_PATH",
            "FETCHML_SECRETS_DIR",
            "API_PORT",
        ] {
            assert_eq!(config_name(plain), NameKind::Plain, "{plain}");
        }
        assert_eq!(config_name("API_TOKEN_FILE"), NameKind::File);
    }

    #[test]
    fn setting_suffixes_are_not_secrets() {
        for n in [
            "TOKEN_TTL",
            "PASSWORD_MIN_LENGTH",
            "PASSWORD_ACCESS",
            "SECRET_ROTATION_ENABLED",
            "JWT_TOKEN_EXPIRY",
            "API_KEY_HEADER",
        ] {
            assert_eq!(config_name(n), NameKind::Plain, "{n}");
        }
        // The setting must be the last token: a setting word inside is not enough.
        assert_eq!(config_name("TTL_TOKEN"), NameKind::Secret);
    }

    #[test]
    fn booleans_numbers_and_durations_are_not_secrets() {
        for v in [
            "true", "FALSE", "yes", "off", "3600", "12", "-1", "0.5", "30s", "1h30m", "500ms",
            "7d", "15min",
        ] {
            assert!(is_setting_value(v), "{v}");
        }
        for v in [
            "hunter2",
            "3f9a0c77e1d24b58",
            "12345678901234",
            "s3cr3t",
            "1h30x",
            "h",
            "",
            "1.2.3",
        ] {
            assert!(!is_setting_value(v), "{v}");
        }
        assert_eq!(config_refusal("PASSWORD_ACCESS", "true"), None);
        assert_eq!(config_refusal("TOKEN_TTL", "3600"), None);
        assert_eq!(config_refusal("PASSWORD_MIN_LENGTH", "12"), None);
        assert_eq!(config_refusal("SESSION_TOKEN", "24h"), None);
    }

    #[test]
    fn values_that_are_secrets_whatever_the_name() {
        let r = |n, v| config_refusal(n, v);
        assert_eq!(
            r("UPSTREAM", "https://user:pass@host/x").as_deref(),
            Some("holds a URL with a password")
        );
        assert_eq!(
            r("CONN", "host=db user=app password=hunter2").as_deref(),
            Some("holds a connection string with a password")
        );
        assert!(r("JDBC", "jdbc:sqlserver://db;user=a;password=x").is_some());
        assert!(r("X", "-----BEGIN RSA PRIVATE KEY-----\nabc").is_some());
        assert!(r("GH", "ghp_0123456789abcdefABCDEF0123").is_some());
        assert!(r("ID", "AKIAIOSFODNN7EXAMPLE").is_some());
        assert_eq!(
            r("SENTRY_DSN", "https://abc123@o1.ingest.example/1").as_deref(),
            Some("is a DSN with a key in it")
        );
        for ok in [
            ("SENTRY_DSN", ""),
            ("SENTRY_DSN", "https://o1.ingest.example/1"),
            ("UPSTREAM", "https://user@host/x"),
            ("CONN", "host=db user=app password="),
            ("OPTS", "require_password=true"),
            ("COMPLIANCE_MODE", "hipaa"),
            ("FETCHML_SECRETS_DIR", "/etc/fetchml/secrets"),
            ("DB_PASSWORD", ""),
        ] {
            assert_eq!(r(ok.0, ok.1), None, "{ok:?}");
        }
        assert_eq!(
            r("PGPASSWORD", "postgres").as_deref(),
            Some("has a secret name")
        );
    }
}
