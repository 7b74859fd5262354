//! The dynamic side: a booted compose project that takes itself down when
//! dropped, and the HTTP probes run against it.
//!
//! Probes only read: GET requests on loopback. The bearer token is read from
//! the policy's token file when a probe needs it and only ever sent as a
//! header, never printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::policy::{substitute, JsonCheck, Probe};
use super::proc::{self, Command};
use crate::cmd::one_line;

/// A compose project this run started. Dropping it runs `down -v` of that
/// project (and nothing else) unless [`Booted::down`] already did, so an
/// error or a panic between boot and teardown still cleans up.
pub struct Booted {
    pub project: String,
    down: Option<Command>,
    logs: Command,
    verbose: bool,
}

impl Booted {
    /// Armed before `up` runs: a half-started project is taken down too.
    pub fn arm(project: &str, down: Command, logs: Command, verbose: bool) -> Booted {
        Booted {
            project: project.into(),
            down: Some(down),
            logs,
            verbose,
        }
    }

    /// The last lines of the project's logs, for a failure report on stderr.
    pub fn logs(&self) -> String {
        proc::run(&self.logs, false).unwrap_or_else(|e| format!("(no logs: {e:#})"))
    }

    /// Takes the project down now and reports how that went.
    pub fn down(mut self) -> anyhow::Result<()> {
        match self.down.take() {
            Some(c) => proc::run(&c, self.verbose).map(drop),
            None => Ok(()),
        }
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if let Some(c) = self.down.take() {
            eprintln!(
                "tearing down {} (left up by an earlier failure)",
                self.project
            );
            if let Err(e) = proc::run(&c, self.verbose) {
                eprintln!("warning: could not tear down {}: {e:#}", self.project);
            }
        }
    }
}

/// One GET; the status and the body (a transport error is `Err`).
fn get(
    client: &reqwest::blocking::Client,
    url: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().map_err(|e| one_line(&e))?;
    let status = resp.status().as_u16();
    let body = resp.text().map_err(|e| one_line(&e))?;
    Ok((status, body))
}

/// What a JSON check found wrong with a body (empty: it holds).
fn judge_json(check: &JsonCheck, status: u16, body: &str, mode: &str, tag: &str) -> Vec<String> {
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        let head: String = body.chars().take(120).collect();
        return vec![format!(
            "GET {} answered {status} without JSON: {head}",
            check.path
        )];
    };
    check
        .expect
        .iter()
        .filter_map(|(field, want)| {
            let want = substitute(want, mode, tag);
            let got = match &json[field.as_str()] {
                Value::String(s) => s.clone(),
                Value::Null => "(missing)".into(),
                other => other.to_string(),
            };
            (got != want).then(|| {
                format!(
                    "GET {} ({status}): {field} is {got:?}, want {want:?}",
                    check.path
                )
            })
        })
        .collect()
}

/// Waits until every URL base answers the readiness check, or the timeout.
/// `Err` says what each unready service last showed.
pub fn wait_ready(
    bases: &BTreeMap<String, String>,
    ready: &JsonCheck,
    timeout: Duration,
    mode: &str,
    tag: &str,
) -> Result<f64, String> {
    let client = crate::health::client();
    let start = Instant::now();
    let mut last: BTreeMap<&str, String> = bases
        .keys()
        .map(|s| (s.as_str(), "no answer yet".to_string()))
        .collect();
    loop {
        for (svc, base) in bases {
            if last.get(svc.as_str()).is_some_and(String::is_empty) {
                continue;
            }
            let seen = match get(&client, &format!("{base}{}", ready.path), None) {
                Ok((status, body)) => judge_json(ready, status, &body, mode, tag).join("; "),
                Err(e) => e,
            };
            last.insert(svc.as_str(), seen);
        }
        if last.values().all(String::is_empty) {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() >= timeout {
            let waiting: Vec<String> = last
                .iter()
                .filter(|(_, w)| !w.is_empty())
                .map(|(s, w)| format!("{s}: {w}"))
                .collect();
            return Err(format!(
                "not ready after {}s: {}",
                timeout.as_secs(),
                waiting.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `probe` against one service; the findings (empty: it passed).
pub fn run(probe: &Probe, base: &str, token: Option<&str>, mode: &str, tag: &str) -> Vec<String> {
    let client = crate::health::client();
    match probe {
        Probe::Status {
            path,
            status,
            bearer,
            ..
        } => {
            let token = if *bearer { token } else { None };
            match get(&client, &format!("{base}{path}"), token) {
                Ok((got, _)) if got == *status => Vec::new(),
                Ok((got, _)) => {
                    let auth = if *bearer {
                        "with the token"
                    } else {
                        "without a token"
                    };
                    vec![format!("GET {path} {auth} answered {got}, want {status}")]
                }
                Err(e) => vec![format!("GET {path}: {e}")],
            }
        }
        Probe::Json { path, expect, .. } => {
            let check = JsonCheck {
                path: path.clone(),
                expect: expect.clone(),
            };
            match get(&client, &format!("{base}{path}"), None) {
                Ok((status, body)) => judge_json(&check, status, &body, mode, tag),
                Err(e) => vec![format!("GET {path}: {e}")],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_are_compared_after_substitution() {
        let check = JsonCheck {
            path: "/health".into(),
            expect: [
                ("compliance_mode".to_string(), "{mode}".to_string()),
                ("version".into(), "{tag}".into()),
            ]
            .into_iter()
            .collect(),
        };
        let body = r#"{"compliance_mode":"standard","version":"sha-1"}"#;
        assert!(judge_json(&check, 200, body, "standard", "sha-1").is_empty());
        assert_eq!(
            judge_json(&check, 200, body, "hipaa", "sha-1"),
            ["GET /health (200): compliance_mode is \"standard\", want \"hipaa\""]
        );
        assert_eq!(
            judge_json(&check, 502, "bad gateway", "x", "y"),
            ["GET /health answered 502 without JSON: bad gateway"]
        );
    }

    #[test]
    fn a_dropped_guard_tears_down_and_an_explicit_down_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("downs");
        let down = Command::new("sh", super::super::proc::Effect::Mutating)
            .arg("-c")
            .arg("echo x >> \"$0\"")
            .arg(count.display().to_string());
        let logs = Command::new("true", super::super::proc::Effect::ReadOnly);
        drop(Booted::arm("p1", down.clone(), logs.clone(), false));
        assert_eq!(
            std::fs::read_to_string(&count).unwrap(),
            "x\n",
            "drop ran down"
        );
        Booted::arm("p2", down, logs, false).down().unwrap();
        assert_eq!(
            std::fs::read_to_string(&count).unwrap(),
            "x\nx\n",
            "down ran once, drop did not repeat it"
        );
    }

    #[test]
    fn unreachable_service_is_not_ready() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bases = [("api".to_string(), format!("http://127.0.0.1:{port}"))]
            .into_iter()
            .collect();
        let ready = JsonCheck {
            path: "/health".into(),
            expect: [("redis".into(), "ok".into())].into_iter().collect(),
        };
        let e = wait_ready(&bases, &ready, Duration::from_millis(300), "dev", "t").unwrap_err();
        assert!(e.starts_with("not ready after 0s: api: "), "{e}");
    }
}
