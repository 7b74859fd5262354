//! Webhook notifications: after a deploy, promote or rollback appended its
//! audit record, the record and the new chain head are posted as JSON to
//! the environment's webhook (`[env.NAME.notify]`).
//!
//! - The URL is read from the tool's environment (`url_env`), never from
//!   the config file: webhook URLs carry their token in the path or query.
//!   It is registered as a secret when read, so no output, record or note
//!   carries it, and it is never stored.
//! - Each attempt has a time limit, and failed attempts are retried a
//!   bounded number of times with a short, doubling pause, so a receiver
//!   that is down or hangs costs a known, small amount of time.
//! - A notification that was not delivered never changes the task's
//!   outcome or exit code: it is a warning, and a line in
//!   `<state>/<env>/notify-failures.jsonl` (0600), not in the audit
//!   chain, whose head was just posted and printed as the run's anchor.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::cmd::one_line;
use crate::cmd::redact::{redact, redact_json, register};

/// The first pause between attempts; each later one doubles it.
const BACKOFF: Duration = Duration::from_millis(250);
/// The file, in the environment's state directory, that keeps undelivered notifications.
pub const FAILURES: &str = "notify-failures.jsonl";

/// One environment's webhook, resolved when the plan is made. Its
/// `Debug` and `Serialize` leave the URL out.
#[derive(Clone, Serialize)]
pub struct Hook {
    /// The variable the URL is read from (shown; the URL never is).
    pub url_env: String,
    /// The URL, when the variable is set and not empty.
    #[serde(skip)]
    url: Option<String>,
    pub timeout_secs: u64,
    pub retries: u32,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("url_env", &self.url_env)
            .field("set", &self.url.is_some())
            .field("timeout_secs", &self.timeout_secs)
            .field("retries", &self.retries)
            .finish()
    }
}

/// Why a notification was not delivered, and how many attempts it took.
#[derive(Debug, Clone)]
pub struct Failed {
    pub attempts: u32,
    pub error: String,
}

impl Hook {
    /// Reads the URL from `url_env` now and registers it as a secret.
    pub fn from_env(url_env: &str, timeout_secs: u64, retries: u32) -> Hook {
        let url = std::env::var(url_env).ok().filter(|u| !u.trim().is_empty());
        if let Some(u) = &url {
            register(u);
        }
        Hook {
            url_env: url_env.into(),
            url,
            timeout_secs,
            retries,
        }
    }

    /// Is the variable set?
    pub fn is_set(&self) -> bool {
        self.url.is_some()
    }

    /// The longest a [`Hook::post`] can take: every attempt's limit and
    /// every pause between them.
    pub fn bound(&self) -> Duration {
        let pauses: Duration = (0..self.retries).map(|i| BACKOFF * 2u32.pow(i)).sum();
        Duration::from_secs(self.timeout_secs) * (self.retries + 1) + pauses
    }

    /// Posts `payload` (redacted first), retrying a failed attempt up to
    /// `retries` times. Returns the attempts it took, or why it failed
    /// (in words that never hold the URL).
    pub fn post(&self, payload: &Value) -> Result<u32, Failed> {
        let Some(url) = &self.url else {
            return Err(Failed {
                attempts: 0,
                error: format!("{} is not set (or empty)", self.url_env),
            });
        };
        let mut body = payload.clone();
        redact_json(&mut body);
        let client = match reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(self.timeout_secs))
            .timeout(Duration::from_secs(self.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                return Err(Failed {
                    attempts: 0,
                    error: redact(&format!("building the HTTP client: {}", e.without_url())),
                })
            }
        };
        let mut error = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(BACKOFF * 2u32.pow(attempt - 1));
            }
            let started = Instant::now();
            let sent = client
                .post(url)
                .header(
                    "user-agent",
                    concat!("fetchml-xtask/", env!("CARGO_PKG_VERSION")),
                )
                .json(&body)
                .send();
            error = match sent {
                Ok(r) if r.status().is_success() => return Ok(attempt + 1),
                Ok(r) => format!("HTTP {}", r.status()),
                // reqwest's own words name the URL: take it out.
                Err(e) => {
                    let kind = if e.is_timeout() {
                        format!(
                            "no answer within {}s",
                            started.elapsed().as_secs().max(self.timeout_secs)
                        )
                    } else {
                        one_line(&e.without_url())
                    };
                    redact(&kind)
                }
            };
        }
        Err(Failed {
            attempts: self.retries + 1,
            error,
        })
    }
}

/// Appends `note` (one JSON line) to `dir`/[`FAILURES`], created 0600.
pub fn note_failure(dir: &Path, note: &Value) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(FAILURES);
    let mut note = note.clone();
    redact_json(&mut note);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)?;
    let mut line = serde_json::to_vec(&note)?;
    line.push(b'\n');
    f.write_all(&line)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_counts_every_attempt_and_pause() {
        let h = Hook {
            url_env: "X".into(),
            url: None,
            timeout_secs: 2,
            retries: 2,
        };
        assert_eq!(h.bound(), Duration::from_millis(2000 * 3 + 250 + 500));
    }

    #[test]
    fn neither_debug_nor_json_shows_the_url() {
        let h = Hook {
            url_env: "X".into(),
            url: Some("http://127.0.0.1:9/hooks/T0KEN".into()),
            timeout_secs: 1,
            retries: 0,
        };
        assert!(!format!("{h:?}").contains("T0KEN"));
        assert!(!serde_json::to_string(&h).unwrap().contains("T0KEN"));
    }

    #[test]
    fn an_unset_variable_is_a_failure_with_no_attempt() {
        let h = Hook::from_env("XTASK_NOTIFY_TEST_UNSET_VAR", 1, 1);
        assert!(!h.is_set());
        let e = h.post(&serde_json::json!({})).unwrap_err();
        assert_eq!(e.attempts, 0);
        assert!(e.error.contains("XTASK_NOTIFY_TEST_UNSET_VAR is not set"));
    }
}
