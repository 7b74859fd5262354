//! The secret rules: name segments, what counts as written in the file, URLs.

use serde_json::{json, Value};

use super::{violations, Scope, Service};
use crate::secret::{has_word, masked, segments, urls_with_password};
use crate::tasks::security_modes::policy::rule::{
    default_location_suffixes, default_setting_suffixes,
};
use crate::tasks::security_modes::policy::{Rule, Stack};

fn rule() -> Rule {
    Rule::NoInlineSecrets {
        key_patterns: ["PASSWORD", "SECRET", "TOKEN", "KEY", "API_KEY"]
            .map(String::from)
            .to_vec(),
        file_suffix: "_FILE".into(),
        location_suffixes: default_location_suffixes(),
        setting_suffixes: default_setting_suffixes(),
        allowed_keys: vec!["KEYCLOAK_REALM".into()],
    }
}

fn check(rule: &Rule, raw: Value) -> Vec<String> {
    let s = Stack::direct("x.yml".into(), vec![]);
    let scope = Scope {
        mode: "m",
        tag: "t",
        stack: &s,
    };
    // The rendered side is deliberately different: these rules read the raw one.
    let svc = Service {
        name: "api",
        rendered: &json!({"environment": {"DB_PASSWORD": "interpolated"}}),
        raw: &raw,
    };
    violations(rule, &scope, &svc)
}

#[test]
fn names_split_into_segments() {
    assert_eq!(segments("X_KEYGEN_MODE"), ["X", "KEYGEN", "MODE"]);
    assert_eq!(segments("signingKey"), ["SIGNING", "KEY"]);
    assert_eq!(segments("db.password-file"), ["DB", "PASSWORD", "FILE"]);
    let s = segments("MY_API_KEY");
    assert!(has_word(&s, "KEY") && has_word(&s, "API_KEY") && !has_word(&s, "KEY_ID"));
    assert!(!has_word(&segments("X_KEYGEN_MODE"), "KEY"));
    assert!(has_word(&segments("KEY_ID"), "KEY"), "KEY_ at the start");
}

#[test]
fn references_are_masked_literals_and_defaults_kept() {
    assert_eq!(masked("${A}"), "\u{1}");
    assert_eq!(masked("$A-x"), "\u{1}-x");
    assert_eq!(masked("${A:?must be set}"), "\u{1}");
    assert_eq!(masked("${A:-hunter2}"), "\u{1}hunter2");
    assert_eq!(masked("${A:-${B}}"), "\u{1}\u{1}");
    assert_eq!(masked("$$literal"), "$literal");
    assert_eq!(masked("cost: 5$"), "cost: 5$");
}

#[test]
fn inline_secrets_are_named_never_shown() {
    let raw = json!({"environment": {
        "DB_PASSWORD": "hunter2", "API_TOKEN_FILE": "/run/secrets/t", "api_key": null,
        "KEYCLOAK_REALM": "x", "SESSION_TOKEN_FILE": "hunter2", "MODE": "x",
        "signingKey": "abc", "KEY_MATERIAL": "abc", "JWT_SECRET": "${JWT_SECRET:-changeme}"
    }});
    let v = check(&rule(), raw);
    assert_eq!(
        v,
        [
            "DB_PASSWORD is set inline (a 7-character value, redacted); use DB_PASSWORD_FILE with a secret",
            "SESSION_TOKEN_FILE should name a file but is a 7-character value, redacted",
            "signingKey is set inline (a 3-character value, redacted); use signingKey_FILE with a secret",
            "KEY_MATERIAL is set inline (a 3-character value, redacted); use KEY_MATERIAL_FILE with a secret",
            "JWT_SECRET is set inline (a default written in the file, 8 characters, redacted); use JWT_SECRET_FILE with a secret",
        ]
    );
    assert!(!v.concat().contains("hunter2") && !v.concat().contains("changeme"));
}

#[test]
fn segment_and_location_false_positives_are_gone() {
    let raw = json!({"environment": {
        "X_KEYGEN_MODE": "fast", "TLS_KEY_PATH": "/certs/key.pem", "KEY_DIR": "/keys",
        "MONKEY_BUSINESS": "1", "TOKENIZER": "bpe",
        "DB_PASSWORD": "${DB_PASSWORD}", "REDIS_PASSWORD": "", "API_TOKEN": null,
        "ADMIN_SECRET": "${ADMIN_SECRET:?set it}", "X_API_KEY": "$X_API_KEY"
    }});
    assert_eq!(check(&rule(), raw), Vec::<String>::new());
}

#[test]
fn urls_with_a_written_password() {
    let m = |s: &str| urls_with_password(&masked(s));
    assert_eq!(
        m("postgres://app:secret@db:5432/x"),
        ["postgres://app:***@db:5432"]
    );
    assert_eq!(
        m("--a=redis://:pw@cache/0 --b=amqp://u:p@mq"),
        ["redis://:***@cache", "amqp://u:***@mq"]
    );
    assert_eq!(
        m("postgres://${U}:${P:-dflt}@db/x"),
        ["postgres://${...}:***@db"]
    );
    assert_eq!(
        m("dé→postgres://ü:pä@db"),
        ["postgres://ü:***@db"],
        "non-ASCII around a URL"
    );
    for clean in [
        "postgres://app:${DB_PASSWORD}@db/x",
        "postgres://app@db/x",
        "http://example.com/a:b@c",
        "https://user:@host",
        "${DATABASE_URL}",
    ] {
        assert!(m(clean).is_empty(), "{clean}: {:?}", m(clean));
    }
}

#[test]
fn url_rule_looks_everywhere_and_names_where() {
    let raw = json!({
        "environment": {"DATABASE_URL": "postgres://app:secret@db/app", "OK_URL": "postgres://app:${P}@db/app"},
        "command": ["serve", "--cache=redis://:pw@cache:6379"],
        "healthcheck": {"test": ["CMD", "check", "http://admin:admin@127.0.0.1/health"]},
        "labels": {"backup.target": "s3://key:secret@bucket"}
    });
    let v = check(&Rule::NoUrlCredentials, raw);
    assert_eq!(
        v,
        [
            "DATABASE_URL holds a URL with a password written in the file (postgres://app:***@db)",
            "command holds a URL with a password written in the file (redis://:***@cache:6379)",
            "healthcheck holds a URL with a password written in the file (http://admin:***@127.0.0.1)",
            "label backup.target holds a URL with a password written in the file (s3://key:***@bucket)",
        ]
    );
    assert!(!v.concat().contains("secret@"));
}

#[test]
fn list_form_environment_is_read_too() {
    // The uninterpolated render of merged files keeps `KEY=VALUE` lists.
    let raw = json!({
        "environment": ["DB_PASSWORD=hunter2", "API_TOKEN", "X_KEYGEN_MODE=fast", "URL=postgres://a:b@db/x"],
        "labels": ["backup=s3://k:s@bucket"]
    });
    assert_eq!(
        check(&rule(), raw.clone()),
        ["DB_PASSWORD is set inline (a 7-character value, redacted); use DB_PASSWORD_FILE with a secret"]
    );
    assert_eq!(check(&Rule::NoUrlCredentials, raw).len(), 2);
}

/// The shipped policy's patterns (deployments/security-modes.toml).
fn shipped() -> Rule {
    Rule::NoInlineSecrets {
        key_patterns: [
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
        ]
        .map(String::from)
        .to_vec(),
        file_suffix: "_FILE".into(),
        location_suffixes: default_location_suffixes(),
        setting_suffixes: default_setting_suffixes(),
        allowed_keys: vec![],
    }
}

fn inline_keys(raw: Value) -> Vec<String> {
    check(&shipped(), raw)
        .into_iter()
        .map(|v| v.split(' ').next().unwrap().to_string())
        .collect()
}

#[test]
fn issue_27_missed_pgpassword() {
    assert_eq!(
        inline_keys(json!({"environment": {"PGPASSWORD": "postgres"}})),
        ["PGPASSWORD"]
    );
}

#[test]
fn issue_27_missed_mysql_pwd() {
    assert_eq!(
        inline_keys(json!({"environment": {"MYSQL_PWD": "root"}})),
        ["MYSQL_PWD"]
    );
}

#[test]
fn issue_27_missed_dbpass() {
    assert_eq!(
        inline_keys(json!({"environment": {"DBPASS": "netbox"}})),
        ["DBPASS"]
    );
}

#[test]
fn issue_27_boolean_password_access_is_not_a_secret() {
    assert!(inline_keys(json!({"environment": {"PASSWORD_ACCESS": "true"}})).is_empty());
}

#[test]
fn issue_27_token_ttl_is_not_a_secret() {
    assert!(inline_keys(json!({"environment": {"TOKEN_TTL": "3600"}})).is_empty());
}

#[test]
fn issue_27_password_min_length_is_not_a_secret() {
    assert!(inline_keys(json!({"environment": {"PASSWORD_MIN_LENGTH": "12"}})).is_empty());
}

#[test]
fn setting_values_and_names_never_hide_a_real_secret() {
    // A number, a boolean or a duration is no secret under any name; a
    // setting suffix only counts as the last token; PWD alone is a path.
    let raw = json!({"environment": {
        "DB_PASSWORD": 5432, "API_TOKEN": "30s", "SECRET_KEY": false,
        "TTL_TOKEN": "abc123", "PWD": "/app", "BYPASS_PROXY": "yes-please",
        "SSH_PUBLIC_KEY": "ssh-ed25519 AAAA", "SECRET_KEY_BASE": "f00dfeed"
    }});
    assert_eq!(inline_keys(raw), ["TTL_TOKEN", "SECRET_KEY_BASE"]);
}

#[test]
fn a_dsn_with_its_key_is_a_url_credential() {
    let raw = json!({"environment": {
        "SENTRY_DSN": "https://0123abcd@o1.ingest.example/2",
        "OTHER_DSN": "https://o1.ingest.example/2", "REF_DSN": "https://${KEY}@host/1"
    }});
    assert_eq!(
        check(&Rule::NoUrlCredentials, raw),
        ["SENTRY_DSN holds a DSN with its key written in the file"]
    );
}
