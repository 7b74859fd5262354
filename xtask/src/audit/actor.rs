//! Who acts and where, as recorded in every record's `actor` and `host`.
//!
//! The actor is the CI's actor where CI names one, else `$USER` or
//! `$LOGNAME`, each with the variable it came from. Where none is set
//! (containers, some CI runners) it is the account name of the process's
//! uid from /etc/passwd (`root (uid 0)`), read from files, so no libc call
//! is needed. It is one line and at most [`MAX_ACTOR`] bytes, like a reason.

use super::one_line;

/// The most bytes an actor takes in a record (the same bound as a reason).
pub const MAX_ACTOR: usize = 1024;

/// The variables that name the actor, in order of preference.
const VARS: [&str; 6] = [
    "GITHUB_ACTOR",
    "GITEA_ACTOR",
    "FORGEJO_ACTOR",
    "CI_COMMIT_AUTHOR",
    "USER",
    "LOGNAME",
];

/// Who is acting: see the module comment.
pub fn actor() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| real_uid(&s));
    let passwd = std::fs::read_to_string("/etc/passwd").ok();
    actor_from(|v| std::env::var(v).ok(), uid, passwd.as_deref())
}

/// [`actor`] from its inputs: a variable lookup, the real uid, /etc/passwd's text.
pub fn actor_from(
    var: impl Fn(&str) -> Option<String>,
    uid: Option<u32>,
    passwd: Option<&str>,
) -> String {
    for name in VARS {
        if let Some(v) = var(name).filter(|v| !v.trim().is_empty()) {
            return capped(&one_line(v.trim()), &format!(" ({name})"));
        }
    }
    match (uid, uid.and_then(|u| passwd.and_then(|p| account(p, u)))) {
        (Some(u), Some(name)) => capped(&one_line(&name), &format!(" (uid {u})")),
        (Some(u), None) => format!("uid {u} (no CI actor, USER or account name)"),
        (None, _) => "unknown (no CI actor, USER or uid)".into(),
    }
}

/// `name` cut (with `…`) so that `name` plus `suffix` fits in [`MAX_ACTOR`] bytes.
fn capped(name: &str, suffix: &str) -> String {
    let room = MAX_ACTOR - suffix.len();
    if name.len() <= room {
        return format!("{name}{suffix}");
    }
    let mut end = room - '…'.len_utf8();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…{suffix}", &name[..end])
}

/// The real uid from /proc/self/status (`Uid: real effective saved fs`).
pub fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// The account name of `uid` in /etc/passwd's text (`name:x:uid:gid:...`).
pub fn account(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty() && !name.starts_with('#')).then(|| name.to_string())
    })
}

/// The host name (the kernel's, else `$HOSTNAME`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          deploy:x:1001:1001::/home/deploy:/bin/sh\n";

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn without_user_the_uid_names_the_account() {
        assert_eq!(actor_from(none, Some(0), Some(PASSWD)), "root (uid 0)");
        assert_eq!(
            actor_from(none, Some(1001), Some(PASSWD)),
            "deploy (uid 1001)"
        );
        assert_eq!(
            actor_from(none, Some(4242), Some(PASSWD)),
            "uid 4242 (no CI actor, USER or account name)"
        );
        assert_eq!(
            actor_from(none, Some(0), None),
            "uid 0 (no CI actor, USER or account name)"
        );
        assert_eq!(
            actor_from(none, None, Some(PASSWD)),
            "unknown (no CI actor, USER or uid)"
        );
    }

    #[test]
    fn variables_come_first_in_order_and_blank_ones_are_skipped() {
        let vars = |v: &str| match v {
            "GITHUB_ACTOR" => Some("  ".to_string()),
            "USER" => Some("alice".to_string()),
            "LOGNAME" => Some("bob".to_string()),
            _ => None,
        };
        assert_eq!(actor_from(vars, Some(0), Some(PASSWD)), "alice (USER)");
    }

    #[test]
    fn the_actor_is_capped_at_1024_bytes_on_a_char_boundary() {
        let huge = "é".repeat(100_000);
        let a = actor_from(|v| (v == "USER").then(|| huge.clone()), None, None);
        assert!(a.len() <= MAX_ACTOR, "{}", a.len());
        assert!(a.ends_with("… (USER)"), "{}", &a[a.len() - 20..]);
        let fits = "a".repeat(MAX_ACTOR - " (USER)".len());
        let a = actor_from(|v| (v == "USER").then(|| fits.clone()), None, None);
        assert_eq!(a.len(), MAX_ACTOR);
        assert!(!a.contains('…'));
        let newline = actor_from(|v| (v == "USER").then(|| "a\nb".into()), None, None);
        assert_eq!(newline, "a b (USER)");
    }

    #[test]
    fn uid_and_account_parsing() {
        let status = "Name:\txtask\nUid:\t1001\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(real_uid(status), Some(1001));
        assert_eq!(real_uid("Name: x\n"), None);
        assert_eq!(account(PASSWD, 1).as_deref(), Some("daemon"));
        assert_eq!(account("broken line\n::x\n", 0), None);
    }
}
