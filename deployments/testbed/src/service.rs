//! The service contract: routes, the auth rule per compliance mode, the
//! health report, and the worker loop.
//!
//! Health is honest on purpose: it is "ok" only when Redis really answers
//! PING, the build is not the deliberately broken one, and (in hipaa mode)
//! the audit sink really accepts a write. That is what lets the deploy tests
//! tell a working rollout from one that must be rolled back.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, Mode, Role};
use crate::http::{Request, Response};
use crate::resp::Client;

pub const QUEUE: &str = "fetchml:queue";
pub const DONE: &str = "fetchml:done";
pub const HEARTBEAT: &str = "fetchml:worker:heartbeat";

const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Escapes `s` for use inside a JSON string literal.
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A JSON string literal, or `null`.
fn json_str(s: Option<&str>) -> String {
    s.map_or("null".to_string(), |s| format!("\"{}\"", json_escape(s)))
}

pub fn error_json(msg: &str) -> String {
    format!("{{\"error\":{}}}", json_str(Some(msg)))
}

fn error(status: u16, msg: &str) -> Response {
    Response::json(status, error_json(msg))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The auth rule for `/api/...`: open in dev mode; otherwise the request must
/// carry `Authorization: Bearer <token>` matching the configured token, and
/// with no token configured nothing is allowed.
pub fn authorized(mode: Mode, token: Option<&str>, authorization: Option<&str>) -> bool {
    if mode == Mode::Dev {
        return true;
    }
    let (Some(expected), Some(header)) = (token, authorization) else {
        return false;
    };
    let Some((scheme, given)) = header.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && !expected.is_empty()
        && constant_time_eq(given.trim(), expected)
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Routes one request.
pub fn handle(cfg: &Config, req: &Request) -> Response {
    let path = req.path.as_str();
    let resp = if path == "/health" {
        if req.method == "GET" {
            health(cfg)
        } else {
            error(405, "method not allowed")
        }
    } else if cfg.role == Role::Api && (path == "/api" || path.starts_with("/api/")) {
        if !authorized(cfg.mode, cfg.token.as_deref(), req.header("authorization")) {
            let mut resp = error(401, "unauthorized");
            resp.headers
                .push(("WWW-Authenticate", "Bearer".to_string()));
            resp
        } else {
            api(cfg, req)
        }
    } else if cfg.mode == Mode::Dev && path == "/debug/config" && req.method == "GET" {
        Response::json(200, debug_config(cfg))
    } else {
        error(404, "not found")
    };
    if path != "/health" || resp.status != 200 {
        eprintln!(
            "testbed {}: {} {} -> {}",
            cfg.role.as_str(),
            req.method,
            path,
            resp.status
        );
    }
    resp
}

/// The longest `/api/slow` wait, so a request cannot hold a thread for long.
pub const SLOW_MAX_MS: u64 = 10_000;

/// `GET /api/slow?ms=N`: answers after N ms (at most [`SLOW_MAX_MS`]) with
/// the version, so the request stream can keep a long request in flight
/// across a switch and see that it completes. Behind the `/api` auth rule:
/// an open endpoint that holds a thread on demand would let anyone tie the
/// service up.
fn slow(cfg: &Config, req: &Request) -> Response {
    if req.method != "GET" {
        return error(405, "method not allowed");
    }
    let ms = req
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("ms="))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms <= SLOW_MAX_MS);
    let Some(ms) = ms else {
        return error(400, "slow needs ms=N, N at most 10000");
    };
    std::thread::sleep(Duration::from_millis(ms));
    Response::json(
        200,
        format!(
            "{{\"version\":{},\"slept_ms\":{ms}}}",
            json_str(Some(&cfg.version))
        ),
    )
}

fn api(cfg: &Config, req: &Request) -> Response {
    if req.path == "/api/slow" {
        return slow(cfg, req);
    }
    if req.path != "/api/jobs" && req.path != "/api/jobs/done" {
        return error(404, "not found");
    }
    let result = Client::connect(&cfg.redis_addr, REDIS_TIMEOUT).and_then(|mut redis| {
        match req.method.as_str() {
            // Every finished job's result, newest first: what a deploy's
            // job accounting counts (each job exactly once).
            "GET" if req.path == "/api/jobs/done" => {
                let done = redis.lrange_all(DONE)?;
                let items: Vec<String> = done
                    .iter()
                    .map(|d| String::from_utf8_lossy(d).into_owned())
                    .collect();
                Ok(Some((200, format!("[{}]", items.join(",")))))
            }
            _ if req.path == "/api/jobs/done" => Ok(None),
            "POST" => redis
                .lpush(QUEUE, &req.body)
                .map(|n| Some((202, format!("{{\"queued\":{n}}}")))),
            "GET" => {
                let queued = redis.llen(QUEUE)?;
                let done = redis.llen(DONE)?;
                Ok(Some((
                    200,
                    format!("{{\"queued\":{queued},\"done\":{done}}}"),
                )))
            }
            _ => Ok(None),
        }
    });
    match result {
        Ok(Some((status, body))) => Response::json(status, body),
        Ok(None) => error(405, "method not allowed"),
        Err(e) => {
            eprintln!("testbed {}: redis error: {e}", cfg.role.as_str());
            error(503, "redis unavailable")
        }
    }
}

/// The effective configuration (dev mode only). The token itself is never
/// included, only whether one is configured.
fn debug_config(cfg: &Config) -> String {
    let token_file = cfg.token_file.as_ref().map(|p| p.display().to_string());
    let audit = cfg.audit_sink_dir.as_ref().map(|p| p.display().to_string());
    format!(
        "{{\"version\":{},\"compliance_mode\":\"{}\",\"role\":\"{}\",\"port\":{},\"redis_addr\":{},\
         \"api_token_file\":{},\"api_token_configured\":{},\"audit_sink_dir\":{},\"broken\":{}}}",
        json_str(Some(&cfg.version)),
        cfg.mode.as_str(),
        cfg.role.as_str(),
        cfg.port,
        json_str(Some(&cfg.redis_addr)),
        json_str(token_file.as_deref()),
        cfg.token.is_some(),
        json_str(audit.as_deref()),
        cfg.broken,
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Ok,
    Unwritable,
    None,
}

/// Probes the audit sink by creating, writing and removing a file in it.
fn probe_audit_sink(cfg: &Config) -> Sink {
    let Some(dir) = &cfg.audit_sink_dir else {
        return Sink::None;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe = dir.join(format!(".testbed-probe-{}-{nanos}", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe"));
    let removed = std::fs::remove_file(&probe);
    if written.is_ok() && removed.is_ok() {
        Sink::Ok
    } else {
        Sink::Unwritable
    }
}

fn health(cfg: &Config) -> Response {
    let redis_ok = Client::connect(&cfg.redis_addr, REDIS_TIMEOUT)
        .and_then(|mut c| c.ping())
        .is_ok();
    let (status, body) = health_report(cfg, redis_ok, probe_audit_sink(cfg));
    Response::json(status, body)
}

/// Formats the health report (fields in contract order) and its HTTP status.
pub fn health_report(cfg: &Config, redis_ok: bool, sink: Sink) -> (u16, String) {
    let sink_ok = cfg.mode != Mode::Hipaa || sink == Sink::Ok;
    let ok = redis_ok && !cfg.broken && sink_ok;
    let body = format!(
        "{{\"status\":\"{}\",\"version\":{},\"compliance_mode\":\"{}\",\"role\":\"{}\",\"redis\":\"{}\",\"audit_sink\":\"{}\"}}",
        if ok { "ok" } else { "failing" },
        json_str(Some(&cfg.version)),
        cfg.mode.as_str(),
        cfg.role.as_str(),
        if redis_ok { "ok" } else { "down" },
        match sink {
            Sink::Ok => "ok",
            Sink::Unwritable => "unwritable",
            Sink::None => "none",
        },
    );
    (if ok { 200 } else { 503 }, body)
}

/// The worker role: a heartbeat about once a second, and jobs moved from
/// `fetchml:queue` to `fetchml:done`. Redis errors drop the connection and
/// retry; they never end the process. Returns once `stop` is set.
///
/// Delivery is at most once: a job popped just before Redis goes away is
/// lost, which is acceptable for a testbed.
pub fn run_worker(cfg: &Config, stop: &AtomicBool) {
    let mut conn: Option<Client> = None;
    let mut last_beat: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let client = match conn.as_mut() {
            Some(c) => c,
            // BRPOP blocks for up to 1 s, so reads need a longer timeout.
            None => {
                match Client::connect(&cfg.redis_addr, REDIS_TIMEOUT + Duration::from_secs(1)) {
                    Ok(c) => {
                        eprintln!("testbed worker: connected to redis at {}", cfg.redis_addr);
                        conn.insert(c)
                    }
                    Err(e) => {
                        eprintln!(
                            "testbed worker: redis at {} unavailable: {e}; retrying",
                            cfg.redis_addr
                        );
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            }
        };
        if let Err(e) = worker_step(cfg, client, &mut last_beat) {
            eprintln!("testbed worker: redis error: {e}; reconnecting");
            conn = None;
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn worker_step(
    cfg: &Config,
    redis: &mut Client,
    last_beat: &mut Option<Instant>,
) -> io::Result<()> {
    if last_beat.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        // "<unix seconds> <version>"
        redis.set(
            HEARTBEAT,
            format!("{} {}", unix_now(), cfg.version).as_bytes(),
        )?;
        *last_beat = Some(Instant::now());
    }
    if let Some(job) = redis.brpop(QUEUE, 1)? {
        let result = format!(
            "{{\"job\":{},\"worker_version\":{},\"finished_at\":{}}}",
            json_str(Some(&String::from_utf8_lossy(&job))),
            json_str(Some(&cfg.version)),
            unix_now()
        );
        redis.lpush(DONE, result.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mode: Mode, role: Role) -> Config {
        Config {
            role,
            version: "v1.2.3".into(),
            mode,
            port: 8080,
            // Nothing listens on port 1: Redis is "down" for handler tests.
            redis_addr: "127.0.0.1:1".into(),
            token_file: Some("/run/secrets/api_token".into()),
            token: (mode != Mode::Dev).then(|| "s3cret".to_string()),
            audit_sink_dir: None,
            broken: false,
        }
    }

    fn req(method: &str, path: &str, auth: Option<&str>) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: auth
                .map(|a| ("Authorization".to_string(), a.to_string()))
                .into_iter()
                .collect(),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn escapes_json() {
        assert_eq!(json_escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(json_escape("l1\nl2\t\r\u{1}é"), "l1\\nl2\\t\\r\\u0001é");
    }

    #[test]
    fn auth_rule_per_mode() {
        let t = Some("s3cret");
        assert!(authorized(Mode::Dev, None, None));
        assert!(authorized(Mode::Dev, t, Some("Bearer wrong")));
        for mode in [Mode::Standard, Mode::Hipaa] {
            assert!(authorized(mode, t, Some("Bearer s3cret")));
            assert!(authorized(mode, t, Some("bearer s3cret ")));
            assert!(!authorized(mode, t, None));
            assert!(!authorized(mode, t, Some("Bearer wrong")));
            assert!(!authorized(mode, t, Some("Bearer s3cre")));
            assert!(!authorized(mode, t, Some("Basic s3cret")));
            assert!(!authorized(mode, t, Some("s3cret")));
            assert!(!authorized(mode, None, Some("Bearer s3cret")));
            assert!(!authorized(mode, Some(""), Some("Bearer ")));
        }
    }

    #[test]
    fn health_report_format_and_gating() {
        let mut c = cfg(Mode::Standard, Role::Api);
        let (status, body) = health_report(&c, true, Sink::None);
        assert_eq!(status, 200);
        assert_eq!(
            body,
            r#"{"status":"ok","version":"v1.2.3","compliance_mode":"standard","role":"api","redis":"ok","audit_sink":"none"}"#
        );
        assert_eq!(health_report(&c, false, Sink::None).0, 503);
        assert!(health_report(&c, false, Sink::None)
            .1
            .contains(r#""status":"failing""#));
        assert!(health_report(&c, false, Sink::None)
            .1
            .contains(r#""redis":"down""#));

        c.mode = Mode::Hipaa;
        assert_eq!(health_report(&c, true, Sink::None).0, 503);
        assert_eq!(health_report(&c, true, Sink::Unwritable).0, 503);
        assert_eq!(health_report(&c, true, Sink::Ok).0, 200);

        c.broken = true;
        let (status, body) = health_report(&c, true, Sink::Ok);
        assert_eq!(status, 503);
        assert!(body.starts_with(r#"{"status":"failing","#));

        let mut w = cfg(Mode::Dev, Role::Worker);
        w.version = "v\"1".into();
        let (_, body) = health_report(&w, true, Sink::Unwritable);
        assert_eq!(
            body,
            r#"{"status":"ok","version":"v\"1","compliance_mode":"dev","role":"worker","redis":"ok","audit_sink":"unwritable"}"#
        );
    }

    #[test]
    fn audit_sink_probe() {
        let mut c = cfg(Mode::Hipaa, Role::Api);
        assert_eq!(probe_audit_sink(&c), Sink::None);
        let dir = std::env::temp_dir().join(format!("testbed-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        c.audit_sink_dir = Some(dir.clone());
        assert_eq!(probe_audit_sink(&c), Sink::Ok);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "probe file left behind"
        );
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(probe_audit_sink(&c), Sink::Unwritable);
    }

    #[test]
    fn routes_and_modes() {
        let std_api = cfg(Mode::Standard, Role::Api);
        assert_eq!(handle(&std_api, &req("GET", "/api/jobs", None)).status, 401);
        assert_eq!(
            handle(&std_api, &req("GET", "/api/nope", Some("Bearer wrong"))).status,
            401
        );
        // Authorized, but Redis is down in tests.
        assert_eq!(
            handle(&std_api, &req("POST", "/api/jobs", Some("Bearer s3cret"))).status,
            503
        );
        assert_eq!(
            handle(&std_api, &req("GET", "/api/nope", Some("Bearer s3cret"))).status,
            404
        );
        assert_eq!(
            handle(&std_api, &req("GET", "/debug/config", None)).status,
            404
        );
        assert_eq!(handle(&std_api, &req("GET", "/nope", None)).status, 404);
        assert_eq!(handle(&std_api, &req("POST", "/health", None)).status, 405);
        assert_eq!(handle(&std_api, &req("GET", "/health", None)).status, 503);

        let mut no_token = cfg(Mode::Hipaa, Role::Api);
        no_token.token = None;
        assert_eq!(
            handle(&no_token, &req("GET", "/api/jobs", Some("Bearer "))).status,
            401
        );

        let dev = cfg(Mode::Dev, Role::Api);
        assert_eq!(handle(&dev, &req("GET", "/api/jobs", None)).status, 503);
        let debug = handle(&dev, &req("GET", "/debug/config", None));
        assert_eq!(debug.status, 200);
        assert!(
            debug.body.contains(r#""compliance_mode":"dev""#),
            "{}",
            debug.body
        );
        assert!(debug
            .body
            .contains(r#""api_token_file":"/run/secrets/api_token""#));

        let mut dev_with_token = cfg(Mode::Dev, Role::Api);
        dev_with_token.token = Some("s3cret".into());
        assert!(!handle(&dev_with_token, &req("GET", "/debug/config", None))
            .body
            .contains("s3cret"));

        let worker = cfg(Mode::Dev, Role::Worker);
        assert_eq!(handle(&worker, &req("GET", "/api/jobs", None)).status, 404);
    }

    #[test]
    fn slow_answers_late_with_the_version_behind_the_auth_rule() {
        let api = cfg(Mode::Standard, Role::Api);
        let slow = |q: &str, auth: Option<&str>| {
            let mut r = req("GET", "/api/slow", auth);
            r.query = q.into();
            let t = Instant::now();
            (handle(&api, &r), t.elapsed())
        };
        assert_eq!(slow("ms=50", None).0.status, 401);
        let (resp, took) = slow("x=1&ms=50", Some("Bearer s3cret"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, r#"{"version":"v1.2.3","slept_ms":50}"#);
        assert!(took >= Duration::from_millis(50), "{took:?}");
        for bad in ["", "ms=", "ms=x", "ms=10001"] {
            assert_eq!(slow(bad, Some("Bearer s3cret")).0.status, 400, "{bad}");
        }
        let mut post = req("POST", "/api/slow", Some("Bearer s3cret"));
        post.query = "ms=1".into();
        assert_eq!(handle(&api, &post).status, 405);
    }
}
