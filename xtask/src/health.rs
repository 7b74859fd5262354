//! The health gate: polls every URL until the service contract holds for the
//! deployed tag, or the timeout passes.
//!
//! A response counts only when `status` is `ok`, `version` equals the tag
//! just deployed (an old container still answering does not count), and
//! `compliance_mode` equals the environment's expected mode.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Deserialize;

/// What the health gate waits for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Gate {
    pub urls: Vec<String>,
    /// `version` must equal this tag, so an old container answering does not count.
    pub version: String,
    pub compliance_mode: String,
    pub timeout_secs: u64,
    /// Read-only look-ups whose output explains a failure (the new
    /// containers' last log lines); run once when the gate gives up.
    #[serde(skip)]
    pub logs: Vec<crate::cmd::Command>,
}

/// Log lines per container (or service) shown when a gate fails.
pub const LOG_LINES: u32 = 20;

/// Between polls. Short, so the gate notices a healthy service within ~one interval.
const INTERVAL: Duration = Duration::from_millis(50);

/// The fields of `/health` the gate reads.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub compliance_mode: String,
    /// The response body as it came (for a failed gate's diagnosis).
    #[serde(skip)]
    pub body: String,
}

/// One probe of one URL: the parsed body, or why it did not count.
pub fn probe(client: &reqwest::blocking::Client, url: &str) -> std::result::Result<Health, String> {
    // On the environment's host: through the operation's SSH tunnel when
    // the environment is remote, never this machine's loopback by accident.
    let url = crate::cmd::remote::reach_url(url).map_err(|e| format!("{e:#}"))?;
    let resp = client.get(&url).send().map_err(|e| one_line(&e))?;
    let code = resp.status();
    let body = resp.text().map_err(|e| one_line(&e))?;
    match serde_json::from_str::<Health>(&body) {
        Ok(h) => Ok(Health { body, ..h }),
        Err(_) => Err(format!(
            "HTTP {code}: {}",
            body.chars().take(200).collect::<String>()
        )),
    }
}

/// An error and its sources on one line.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s.replace('\n', " ")
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("building an HTTP client with static settings")
}

/// Checks one response against the gate; `Err` says what is wrong.
pub fn judge(h: &Health, gate: &Gate) -> std::result::Result<(), String> {
    if h.status != "ok" {
        return Err(format!("status is {:?}", h.status));
    }
    if h.version != gate.version {
        return Err(format!(
            "version is {:?}, want {:?}",
            h.version, gate.version
        ));
    }
    if h.compliance_mode != gate.compliance_mode {
        return Err(format!(
            "compliance_mode is {:?}, want {:?}",
            h.compliance_mode, gate.compliance_mode
        ));
    }
    Ok(())
}

/// Waits until every URL passes. Returns the last health seen per URL.
pub fn wait(gate: &Gate) -> Result<Vec<Health>> {
    let client = client();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(gate.timeout_secs);
    let spinner = std::io::stderr().is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let mut last: Vec<String> = vec!["no answer yet".into(); gate.urls.len()];
    let mut passed: Vec<Option<Health>> = vec![None; gate.urls.len()];
    let mut reported = Instant::now();
    let since = crate::cmd::since_now();
    loop {
        if let Err(e) = crate::cmd::check_interrupt(since) {
            if let Some(s) = &spinner {
                s.finish_and_clear();
            }
            return Err(e.context(format!("health gate for version {} stopped", gate.version)));
        }
        for (i, url) in gate.urls.iter().enumerate() {
            if passed[i].is_some() {
                continue;
            }
            match probe(&client, url) {
                Ok(h) => match judge(&h, gate) {
                    Ok(()) => passed[i] = Some(h),
                    Err(why) => last[i] = format!("{why}; body {}", truncate(h.body.trim(), 300)),
                },
                Err(why) => last[i] = why,
            }
        }
        if passed.iter().all(Option::is_some) {
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            eprintln!(
                "health gate passed after {:.1}s: version {} in {} mode",
                start.elapsed().as_secs_f64(),
                gate.version,
                gate.compliance_mode
            );
            return Ok(passed.into_iter().flatten().collect());
        }
        let waiting: Vec<String> = gate
            .urls
            .iter()
            .zip(&last)
            .zip(&passed)
            .filter(|(_, p)| p.is_none())
            .map(|((u, why), _)| crate::cmd::redact::redact(&format!("{u}: {why}")))
            .collect();
        if Instant::now() >= deadline {
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            let logs = diagnose(gate);
            bail!(
                "health gate failed after {}s for version {}; last seen: {}{logs}",
                gate.timeout_secs,
                gate.version,
                waiting.join("; ")
            );
        }
        match &spinner {
            Some(s) => s.set_message(format!(
                "waiting for health ({:.0}s): {}",
                start.elapsed().as_secs_f64(),
                waiting.join("; ")
            )),
            None if reported.elapsed() >= Duration::from_secs(5) => {
                eprintln!(
                    "waiting for health ({:.0}s): {}",
                    start.elapsed().as_secs_f64(),
                    waiting.join("; ")
                );
                reported = Instant::now();
            }
            None => {}
        }
        std::thread::sleep(INTERVAL);
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    format!("{}...", s.chars().take(n).collect::<String>())
}

/// Runs the gate's log look-ups once, prints their output on stderr, and
/// returns a one-line summary (each service's last log line) for the error.
fn diagnose(gate: &Gate) -> String {
    let mut last = Vec::new();
    for c in &gate.logs {
        match crate::cmd::output(c) {
            Ok(o) => {
                // A service may log its own secrets: none leaves through us.
                let text = crate::cmd::redact::redact(&format!("{}{}", o.stdout, o.stderr));
                eprintln!("--- last log lines: {}", c.display_bare());
                eprint!("{text}");
                // `docker logs NAME` (one container) has no `svc |` prefix.
                let one = (c.args.first().map(String::as_str) == Some("logs"))
                    .then(|| c.args.last().cloned())
                    .flatten()
                    .unwrap_or_default();
                let mut per: Vec<(String, String)> = Vec::new();
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let (svc, msg) = match one.as_str() {
                        "" => line.split_once('|').unwrap_or(("", line)),
                        name => (name, line),
                    };
                    let svc = svc.trim().to_string();
                    match per.iter_mut().find(|(s, _)| *s == svc) {
                        Some(p) => p.1 = msg.trim().to_string(),
                        None => per.push((svc, msg.trim().to_string())),
                    }
                }
                last.extend(per.into_iter().map(|(s, m)| {
                    if s.is_empty() {
                        truncate(&m, 200)
                    } else {
                        format!("{s}: {}", truncate(&m, 200))
                    }
                }));
            }
            Err(e) => eprintln!("(no logs from `{}`: {e:#})", c.display_bare()),
        }
    }
    if last.is_empty() {
        String::new()
    } else {
        format!("; last log lines: {}", last.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate {
            urls: vec![],
            version: "sha-b".into(),
            compliance_mode: "hipaa".into(),
            timeout_secs: 1,
            logs: vec![],
        }
    }
    fn h(status: &str, version: &str, mode: &str) -> Health {
        Health {
            status: status.into(),
            version: version.into(),
            compliance_mode: mode.into(),
            body: String::new(),
        }
    }

    #[test]
    fn all_three_must_hold() {
        assert!(judge(&h("ok", "sha-b", "hipaa"), &gate()).is_ok());
        assert!(judge(&h("failing", "sha-b", "hipaa"), &gate())
            .unwrap_err()
            .contains("status"));
        assert!(judge(&h("ok", "sha-a", "hipaa"), &gate())
            .unwrap_err()
            .contains("version is \"sha-a\""));
        assert!(judge(&h("ok", "sha-b", "dev"), &gate())
            .unwrap_err()
            .contains("compliance_mode"));
    }

    #[test]
    fn unreachable_url_times_out_with_last_seen() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let g = Gate {
            urls: vec![format!("http://127.0.0.1:{port}/health")],
            ..gate()
        };
        let e = wait(&g).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "health gate failed after 1s for version sha-b; last seen: http://127.0.0.1:"
            ),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }
}
