//! The health gate: polls every URL until the environment's health
//! contract holds for the deployed tag, or the timeout passes.
//!
//! The contract (`[env.NAME.health]`, docs/health.md) is a JSON one by
//! default: a 2xx whose body has `status` ok, `version` equal to the tag
//! just deployed (an old container still answering does not count) and
//! `compliance_mode` equal to the environment's. Which fields are checked,
//! their names and the accepted statuses are configurable. A plain `2xx`
//! contract counts any 2xx answer; the body cannot prove the version then,
//! so the gate also checks that the gated containers run the image the
//! deploy resolved (`docker inspect`). A failure names the check that failed.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cmd::one_line;
use crate::cmd::{Command, Effect};
use crate::config::{Check, ContractKind, HealthContract};

/// What the health gate waits for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Gate {
    pub urls: Vec<String>,
    /// The `version` check wants this tag, so an old container answering does not count.
    pub version: String,
    /// What the `mode` check wants (the environment's, when it has one).
    pub compliance_mode: Option<String>,
    /// Boxed, as `images`: a gate rides in plan steps, which stay small.
    pub contract: Box<HealthContract>,
    pub timeout_secs: u64,
    /// Plain 2xx: the images the gated containers must run, in place of
    /// the version a JSON body would report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Box<ImageProof>>,
    /// Read-only look-ups whose output explains a failure (the new
    /// containers' last log lines); run once when the gate gives up.
    #[serde(skip)]
    pub logs: Vec<crate::cmd::Command>,
}

/// Log lines per container (or service) shown when a gate fails.
pub const LOG_LINES: u32 = 20;

/// Between polls. Short, so the gate notices a healthy service within ~one interval.
const INTERVAL: Duration = Duration::from_millis(50);

/// Between image checks of a plain-2xx gate whose URLs already answer.
const PROOF_INTERVAL: Duration = Duration::from_millis(500);

/// One answer of a health URL.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    pub code: u16,
    /// The response body as it came (for a failed gate's diagnosis).
    pub body: String,
}

/// Which containers a plain-2xx gate inspects, and the image each must run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageProof {
    /// `docker ps --filter` values selecting the gated containers: the
    /// project's, and under blue/green the set's.
    pub filters: Vec<String>,
    /// The container label that names its service.
    pub service_label: String,
    /// Service (as that label names it) -> the image reference the deploy
    /// resolved (`repo:tag@sha256:...` when the registry answered).
    pub want: BTreeMap<String, String>,
    pub look_up_secs: u64,
}

impl ImageProof {
    /// The same proof for one blue/green set: its containers (`filter`)
    /// and its `services` only, as a set's HTTP part and its workers are
    /// gated apart, and the other set runs another image by design.
    pub fn of_set(&self, filter: Option<String>, services: &[String]) -> Box<ImageProof> {
        let mut p = self.clone();
        p.want.retain(|s, _| services.contains(s));
        p.filters.extend(filter);
        Box::new(p)
    }
}

impl Gate {
    /// The checks in force, for plans and messages: `a 2xx with
    /// status=ok, version=t1, compliance_mode=hipaa`.
    pub fn describe(&self) -> String {
        let c = &self.contract;
        let fields: Vec<String> = c
            .checks(self.compliance_mode.as_deref())
            .into_iter()
            .map(|check| match check {
                Check::Status => format!("{}={}", c.status_field, c.status_ok.join("|")),
                Check::Version => format!("{}={}", c.version_field, self.version),
                Check::Mode => format!(
                    "{}={}",
                    c.mode_field,
                    self.compliance_mode.as_deref().unwrap_or("")
                ),
            })
            .collect();
        let mut out = "a 2xx".to_string();
        if !fields.is_empty() {
            out.push_str(&format!(" with {}", fields.join(", ")));
        }
        if let Some(p) = &self.images {
            let mut refs: Vec<&str> = p.want.values().map(String::as_str).collect();
            refs.sort();
            refs.dedup();
            out.push_str(&format!(", and the containers run {}", refs.join(", ")));
        }
        out
    }
}

/// One request to one URL: its answer, or why there was none.
pub fn probe(client: &reqwest::blocking::Client, url: &str) -> std::result::Result<Answer, String> {
    // On the environment's host: through the operation's SSH tunnel when
    // the environment is remote, never this machine's loopback by accident.
    let url = crate::cmd::remote::reach_url(url).map_err(|e| format!("{e:#}"))?;
    let resp = client.get(&url).send().map_err(|e| one_line(&e))?;
    let code = resp.status().as_u16();
    let body = resp.text().map_err(|e| one_line(&e))?;
    Ok(Answer { code, body })
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("building an HTTP client with static settings")
}

/// Checks one answer against the gate's contract (the body only: see
/// [`prove_images`] for the plain-2xx version proof); `Err` names every
/// check that failed, e.g. `HTTP 503, status is "failing", want "ok"`.
pub fn judge(a: &Answer, gate: &Gate) -> std::result::Result<(), String> {
    let mut failed = Vec::new();
    let ok_code = (200..300).contains(&a.code);
    if !ok_code {
        failed.push(format!("HTTP {}", a.code));
    }
    let c = &gate.contract;
    let checks = c.checks(gate.compliance_mode.as_deref());
    if c.contract == ContractKind::Json && !checks.is_empty() {
        match serde_json::from_str::<serde_json::Value>(&a.body) {
            Ok(serde_json::Value::Object(body)) => {
                for check in checks {
                    let (field, want): (&str, Vec<&str>) = match check {
                        Check::Status => (
                            &c.status_field,
                            c.status_ok.iter().map(String::as_str).collect(),
                        ),
                        Check::Version => (&c.version_field, vec![gate.version.as_str()]),
                        Check::Mode => (
                            &c.mode_field,
                            vec![gate.compliance_mode.as_deref().unwrap_or_default()],
                        ),
                    };
                    match body.get(field) {
                        None => failed.push(format!("field {field} missing")),
                        Some(v) => {
                            let got = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                            if !want.contains(&got.as_str()) {
                                failed.push(format!(
                                    "{field} is {}, want {}",
                                    shown(v),
                                    want.iter()
                                        .map(|w| format!("{w:?}"))
                                        .collect::<Vec<_>>()
                                        .join(" or ")
                                ));
                            }
                        }
                    }
                }
            }
            // A failing status code already says it; its body need not be JSON.
            _ if !ok_code => {}
            Ok(_) => failed.push("body is not a JSON object".into()),
            Err(_) => failed.push("body is not JSON".into()),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join(", "))
    }
}

/// A JSON value as a message shows it: strings quoted, others as written.
fn shown(v: &serde_json::Value) -> String {
    match v.as_str() {
        Some(s) => format!("{s:?}"),
        None => v.to_string(),
    }
}

/// Plain 2xx: every wanted service has a running container among the
/// gated ones, and each runs the image the deploy resolved (compared by
/// image ID, from `docker inspect`). `Err` names the container that does not.
pub fn prove_images(p: &ImageProof) -> std::result::Result<(), String> {
    let mut ps = Command::new("docker", Effect::ReadOnly).arg("ps");
    for f in &p.filters {
        ps = ps.arg("--filter").arg(f.clone());
    }
    let ps = ps
        .arg("--format")
        .arg(format!(
            "{{{{.ID}}}}\t{{{{.Label \"{}\"}}}}",
            p.service_label
        ))
        .timeout(p.look_up_secs);
    let listed = crate::cmd::run(&ps, false).map_err(|e| format!("{e:#}"))?;
    let ids: Vec<(&str, &str)> = listed
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, s)| p.want.contains_key(*s))
        .collect();
    if let Some(s) = p.want.keys().find(|s| !ids.iter().any(|(_, t)| t == s)) {
        return Err(format!("no running {s} container"));
    }
    let mut want_ids = BTreeMap::new();
    for r in p.want.values() {
        let c = Command::new("docker", Effect::ReadOnly)
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(r.clone())
            .timeout(p.look_up_secs);
        let id = crate::cmd::run(&c, false).map_err(|e| format!("image {r}: {e:#}"))?;
        want_ids.insert(r.clone(), id.trim().to_string());
    }
    let inspect = Command::new("docker", Effect::ReadOnly)
        .args([
            "inspect",
            "--format",
            "{{.Name}}\t{{.Image}}\t{{.Config.Image}}",
        ])
        .args(ids.iter().map(|(id, _)| id.to_string()))
        .timeout(p.look_up_secs);
    let found = crate::cmd::run(&inspect, false).map_err(|e| format!("{e:#}"))?;
    for (line, (_, service)) in found.lines().zip(&ids) {
        let mut f = line.split('\t');
        let (name, image, reference) = (
            f.next().unwrap_or("").trim_start_matches('/'),
            f.next().unwrap_or(""),
            f.next().unwrap_or(""),
        );
        let want = &p.want[*service];
        let want_id = &want_ids[want];
        if image != want_id {
            return Err(format!(
                "container {name} runs {} ({reference}), want {want} ({})",
                short(image),
                short(want_id)
            ));
        }
    }
    Ok(())
}

/// `sha256:0123456789ab` of an image ID.
fn short(id: &str) -> &str {
    &id[..id.len().min("sha256:".len() + 12)]
}

/// Waits until every URL passes. Returns the last answer per URL.
pub fn wait(gate: &Gate) -> Result<Vec<Answer>> {
    let client = client();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(gate.timeout_secs);
    let spinner = std::io::stderr().is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let mut last: Vec<String> = vec!["no answer yet".into(); gate.urls.len()];
    let mut passed: Vec<Option<Answer>> = vec![None; gate.urls.len()];
    // Plain 2xx: why the containers' images do not prove the version yet.
    let mut unproven: Option<String> = None;
    // Three docker look-ups each: not at every poll.
    let mut proved_at: Option<Instant> = None;
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
                Ok(a) => match judge(&a, gate) {
                    Ok(()) => passed[i] = Some(a),
                    Err(why) => {
                        // One line: an HTML error page spans several.
                        let body = a.body.split_whitespace().collect::<Vec<_>>().join(" ");
                        last[i] = format!("{why}; body {}", truncate(&body, 300))
                    }
                },
                Err(why) => last[i] = why,
            }
        }
        let answered = passed.iter().all(Option::is_some);
        if answered && proved_at.is_none_or(|t| t.elapsed() >= PROOF_INTERVAL) {
            unproven = gate.images.as_ref().and_then(|p| prove_images(p).err());
            proved_at = Some(Instant::now());
        }
        if answered && unproven.is_none() {
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            eprintln!(
                "health gate passed after {:.1}s: version {} ({})",
                start.elapsed().as_secs_f64(),
                gate.version,
                gate.describe()
            );
            return Ok(passed.into_iter().flatten().collect());
        }
        let mut waiting: Vec<String> = gate
            .urls
            .iter()
            .zip(&last)
            .zip(&passed)
            .filter(|(_, p)| p.is_none())
            .map(|((u, why), _)| crate::cmd::redact::redact(&format!("{u}: {why}")))
            .collect();
        if let Some(why) = &unproven {
            waiting.push(format!("image check: {why}"));
        }
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
            compliance_mode: Some("hipaa".into()),
            contract: Box::default(),
            timeout_secs: 1,
            images: None,
            logs: vec![],
        }
    }
    fn answer(code: u16, body: &str) -> Answer {
        Answer {
            code,
            body: body.into(),
        }
    }
    fn judged(code: u16, body: &str, g: &Gate) -> std::result::Result<(), String> {
        judge(&answer(code, body), g)
    }
    const GOOD: &str = r#"{"status":"ok","version":"sha-b","compliance_mode":"hipaa"}"#;

    #[test]
    fn the_default_contract_passes_status_version_and_mode() {
        assert_eq!(judged(200, GOOD, &gate()), Ok(()));
    }

    #[test]
    fn each_failing_check_is_named() {
        let g = gate();
        let cases = [
            (503, GOOD, "HTTP 503"),
            (200, "OK", "body is not JSON"),
            (200, "[1]", "body is not a JSON object"),
            (
                200,
                r#"{"status":"failing","version":"sha-b","compliance_mode":"hipaa"}"#,
                r#"status is "failing", want "ok""#,
            ),
            (
                200,
                r#"{"status":"ok","version":"sha-a","compliance_mode":"hipaa"}"#,
                r#"version is "sha-a", want "sha-b""#,
            ),
            (
                200,
                r#"{"status":"ok","version":"sha-b","compliance_mode":"dev"}"#,
                r#"compliance_mode is "dev", want "hipaa""#,
            ),
            (
                200,
                r#"{"status":"ok","version":"sha-b"}"#,
                "field compliance_mode missing",
            ),
            (
                200,
                r#"{"status":"ok","compliance_mode":"hipaa"}"#,
                "field version missing",
            ),
            (
                200,
                r#"{"status":"ok","version":7,"compliance_mode":"hipaa"}"#,
                r#"version is 7, want "sha-b""#,
            ),
            // A failing code with a JSON body says both.
            (
                503,
                r#"{"status":"failing","version":"sha-b","compliance_mode":"hipaa"}"#,
                r#"HTTP 503, status is "failing", want "ok""#,
            ),
        ];
        for (code, body, want) in cases {
            assert_eq!(
                judged(code, body, &g),
                Err(want.to_string()),
                "{code} {body}"
            );
        }
    }

    #[test]
    fn fields_names_accepted_statuses_and_checks_are_configurable() {
        let g = Gate {
            contract: Box::new(HealthContract {
                checks: Some(vec![Check::Status, Check::Version]),
                status_field: "state".into(),
                status_ok: vec!["UP".into(), "healthy".into()],
                version_field: "build".into(),
                ..HealthContract::default()
            }),
            ..gate()
        };
        assert_eq!(judged(200, r#"{"state":"UP","build":"sha-b"}"#, &g), Ok(()));
        assert_eq!(
            judged(200, r#"{"state":"healthy","build":"sha-b"}"#, &g),
            Ok(())
        );
        assert_eq!(
            judged(200, r#"{"state":"DOWN","build":"sha-b"}"#, &g),
            Err(r#"state is "DOWN", want "UP" or "healthy""#.into())
        );
        assert_eq!(
            judged(200, r#"{"status":"ok","version":"sha-b"}"#, &g),
            Err("field state missing, field build missing".into())
        );
        // The issue's example: status and version only, no mode.
        let no_mode = Gate {
            compliance_mode: None,
            ..gate()
        };
        assert_eq!(
            judged(200, r#"{"status":"ok","version":"sha-b"}"#, &no_mode),
            Ok(())
        );
    }

    #[test]
    fn plain_2xx_counts_any_2xx_and_nothing_else() {
        let g = Gate {
            contract: Box::new(HealthContract {
                contract: ContractKind::Plain2xx,
                ..HealthContract::default()
            }),
            ..gate()
        };
        assert_eq!(judged(200, "OK", &g), Ok(()));
        assert_eq!(judged(204, "", &g), Ok(()));
        assert_eq!(judged(404, "not found", &g), Err("HTTP 404".into()));
        assert_eq!(judged(503, GOOD, &g), Err("HTTP 503".into()));
        assert_eq!(g.describe(), "a 2xx");
        assert_eq!(
            gate().describe(),
            "a 2xx with status=ok, version=sha-b, compliance_mode=hipaa"
        );
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

    /// A local server that answers every request with `body` (HTTP 200).
    fn serve(body: &'static str) -> String {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[test]
    fn a_failed_gate_names_the_missing_field() {
        let g = Gate {
            urls: vec![serve(r#"{"status":"ok","version":"sha-b"}"#)],
            ..gate()
        };
        let e = wait(&g).unwrap_err().to_string();
        assert!(
            e.contains("/health: field compliance_mode missing; body {"),
            "{e}"
        );
    }
}
