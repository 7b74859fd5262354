//! A steady request stream, the measure of "zero failed requests": three
//! clients side by side against the same port, each on a thread of its own
//! until stopped, because a switch can break one kind of client and not
//! another:
//! - **new connection**: `GET /health` every 20 ms (50 per second), each on
//!   a fresh connection (HTTP/1.0, closed after), 1 s timeouts;
//! - **keep-alive**: `GET /health` every 20 ms on one HTTP/1.1 connection,
//!   reused for every request. Like a well-behaved client it opens a new
//!   connection, without counting a failure, when the server said
//!   `Connection: close` or had closed the idle connection before the
//!   request was sent. A request sent that gets no complete answer fails,
//!   and the next one reconnects;
//! - **slow request**: `GET /api/slow?ms=3000` back to back (the testbed
//!   answers it after 3 s, with its version), so one is always in flight at
//!   a switch; it must complete, within 3 s plus 2 s.
//!
//! Every failed request records its kind ([`Failure`]): refused, timeout,
//! reset, closed before a complete answer, or an HTTP status. Each answer
//! keeps the version that gave it, so a switch can be timed.
//!
//! The benchmarks, the demo and the end-to-end tests all count with it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Between requests: 50 per second.
pub const EVERY: Duration = Duration::from_millis(20);

/// How long the slow client's request takes on the server.
pub const SLOW_MS: u64 = 3000;

const TIMEOUT: Duration = Duration::from_secs(1);

/// The kinds of client, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Client {
    NewConnection,
    KeepAlive,
    Slow,
}

impl Client {
    pub const ALL: [Client; 3] = [Client::NewConnection, Client::KeepAlive, Client::Slow];
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Client::NewConnection => "new connection",
            Client::KeepAlive => "keep-alive",
            Client::Slow => "slow request",
        })
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// Nothing listened (`ECONNREFUSED`).
    Refused,
    /// No connection, or no complete answer, within the client's timeout.
    Timeout,
    /// The peer reset the connection (`ECONNRESET`).
    Reset,
    /// The connection was closed before a complete answer (EOF; Python's
    /// `RemoteDisconnected`).
    Closed,
    /// An answer with this status other than 200.
    Status(u16),
    /// A 200 whose body names no version.
    BadAnswer,
    /// Any other I/O error, by its kind.
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused => f.write_str("refused"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Reset => f.write_str("reset"),
            Failure::Closed => f.write_str("closed before an answer"),
            Failure::Status(s) => write!(f, "HTTP {s}"),
            Failure::BadAnswer => f.write_str("200 without a version"),
            Failure::Other(k) => write!(f, "{k}"),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        match e.kind() {
            ErrorKind::ConnectionRefused => Failure::Refused,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Failure::Timeout,
            ErrorKind::ConnectionReset => Failure::Reset,
            ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => {
                Failure::Closed
            }
            k => Failure::Other(format!("{k:?}").to_lowercase()),
        }
    }
}

/// One request: its client, when it was sent, how long it took, and the
/// version that answered or why it failed.
#[derive(Debug, Clone)]
pub struct Request {
    pub client: Client,
    pub at: Instant,
    pub took: Duration,
    pub outcome: Result<String, Failure>,
}

/// What the stream saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Every client's requests in the order they were sent: when, and which
    /// version answered (`None`: it failed).
    pub answers: Vec<(Instant, Option<String>)>,
    /// The same requests, with their client and the kind of each failure.
    pub requests: Vec<Request>,
    /// Connections the keep-alive client opened (1 when it never had to
    /// reconnect).
    pub keep_alive_connections: usize,
    /// How many switches the run went through, when the caller knows
    /// (reported with the counts).
    pub switches: Option<usize>,
}

/// One client kind's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub client: Client,
    pub sent: usize,
    pub failed: usize,
    /// Failed requests by kind ([`Failure`]'s text).
    pub kinds: BTreeMap<String, usize>,
    /// The longest request, answered or not: a stall shows here before
    /// it costs a timeout.
    pub longest: Duration,
    /// Keep-alive only: the connections it opened (1: never reconnected).
    pub connections: Option<usize>,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} requests, {} failed",
            self.client, self.sent, self.failed
        )?;
        if !self.kinds.is_empty() {
            let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            write!(f, " ({})", kinds.join(", "))?;
        }
        match self.connections {
            Some(1) => f.write_str(", 1 connection")?,
            Some(n) => write!(f, ", {n} connections")?,
            None => {}
        }
        write!(f, ", longest {:.2} s", self.longest.as_secs_f64())
    }
}

impl Seen {
    /// Requests sent, every client together.
    pub fn sent(&self) -> usize {
        self.answers.len()
    }
    /// Requests failed, every client together.
    pub fn failed(&self) -> usize {
        self.answers.iter().filter(|(_, v)| v.is_none()).count()
    }
    /// When `version` first answered, at or after `from`.
    pub fn first(&self, version: &str, from: Instant) -> Option<Instant> {
        self.answers
            .iter()
            .find(|(t, v)| *t >= from && v.as_deref() == Some(version))
            .map(|(t, _)| *t)
    }
    /// Did any request get an answer from `version`?
    pub fn saw(&self, version: &str) -> bool {
        self.answers
            .iter()
            .any(|(_, v)| v.as_deref() == Some(version))
    }
    /// One client kind's counts.
    pub fn tally(&self, client: Client) -> Tally {
        let mut t = Tally {
            client,
            sent: 0,
            failed: 0,
            kinds: BTreeMap::new(),
            longest: Duration::ZERO,
            connections: (client == Client::KeepAlive).then_some(self.keep_alive_connections),
        };
        for r in self.requests.iter().filter(|r| r.client == client) {
            t.sent += 1;
            t.longest = t.longest.max(r.took);
            if let Err(f) = &r.outcome {
                t.failed += 1;
                *t.kinds.entry(f.to_string()).or_default() += 1;
            }
        }
        t
    }
    /// Each client kind's counts, in [`Client::ALL`] order.
    pub fn tallies(&self) -> Vec<Tally> {
        Client::ALL.iter().map(|c| self.tally(*c)).collect()
    }
}

/// `new connection: 250 requests, 0 failed; keep-alive: 250 requests, 1
/// failed (1 closed before an answer); slow request: 3 requests, 0 failed;
/// 1 switch`: what a failed assertion says.
impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t: Vec<String> = self.tallies().iter().map(Tally::to_string).collect();
        f.write_str(&t.join("; "))?;
        match self.switches {
            Some(1) => f.write_str("; 1 switch"),
            Some(n) => write!(f, "; {n} switches"),
            None => Ok(()),
        }
    }
}

/// The running stream; [`Stream::stop`] ends it and returns what it saw.
pub struct Stream {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<JoinHandle<()>>,
}

impl Stream {
    /// Starts the three clients against `127.0.0.1:port`, and lets them run
    /// 200 ms first. The slow client sends the testbed's dev token
    /// (`deployments/testbed/api-token.dev`, what every testbed stack here
    /// mounts); without it its requests fail as HTTP 401.
    pub fn start(port: u16) -> Stream {
        let token = std::fs::read_to_string(
            crate::repo::workspace_root().join("deployments/testbed/api-token.dev"),
        )
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let threads = Client::ALL
            .into_iter()
            .map(|client| {
                let (s, out, token) = (stop.clone(), seen.clone(), token.clone());
                std::thread::spawn(move || run(client, port, &token, &s, &out))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        Stream {
            stop,
            seen,
            threads,
        }
    }

    /// Lets it run 200 ms more, stops it (a slow request in flight is
    /// waited for: it was sent during the run), and returns what it saw.
    pub fn stop(mut self) -> Seen {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()));
        seen.requests.sort_by_key(|r| r.at);
        seen.answers = seen
            .requests
            .iter()
            .map(|r| (r.at, r.outcome.as_ref().ok().cloned()))
            .collect();
        seen
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One client's loop, bounded whatever happens to the caller: ten minutes
/// at most.
fn run(client: Client, port: u16, token: &str, stop: &AtomicBool, out: &Mutex<Seen>) {
    let end = Instant::now() + Duration::from_secs(600);
    let mut kept: Option<TcpStream> = None;
    let mut connections = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let at = Instant::now();
        let outcome = match client {
            Client::NewConnection => connect(port).and_then(|mut c| {
                ask(
                    &mut c,
                    b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                )
                .map(|(v, _)| v)
            }),
            Client::KeepAlive => keep_alive(port, &mut kept, &mut connections),
            Client::Slow => connect(port).and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_millis(SLOW_MS + 2000)))?;
                let req = format!(
                    "GET /api/slow?ms={SLOW_MS} HTTP/1.0\r\nHost: 127.0.0.1\r\n\
                     Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
                );
                ask(&mut c, req.as_bytes()).map(|(v, _)| v)
            }),
        };
        let mut seen = out.lock().unwrap_or_else(|p| p.into_inner());
        seen.requests.push(Request {
            client,
            at,
            took: at.elapsed(),
            outcome,
        });
        if client == Client::KeepAlive {
            seen.keep_alive_connections = connections;
        }
        drop(seen);
        std::thread::sleep((at + EVERY).saturating_duration_since(Instant::now()));
    }
}

/// A connection to `127.0.0.1:port` with 1 s timeouts.
fn connect(port: u16) -> Result<TcpStream, Failure> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let c = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    c.set_read_timeout(Some(TIMEOUT))?;
    c.set_write_timeout(Some(TIMEOUT))?;
    c.set_nodelay(true)?;
    Ok(c)
}

/// One `GET /health` on the kept connection, opened first if there is none
/// or the server closed it while idle (what a well-behaved client checks
/// before reusing one). The connection is dropped after a failure or a
/// `Connection: close` answer, so the next request opens a new one.
fn keep_alive(
    port: u16,
    kept: &mut Option<TcpStream>,
    connections: &mut usize,
) -> Result<String, Failure> {
    if kept.as_ref().is_some_and(|c| !idle_and_open(c)) {
        *kept = None;
    }
    let c = match kept {
        Some(c) => c,
        None => {
            let c = connect(port)?;
            *connections += 1;
            kept.insert(c)
        }
    };
    match ask(c, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") {
        Ok((version, true)) => Ok(version),
        Ok((version, false)) => {
            *kept = None;
            Ok(version)
        }
        Err(f) => {
            *kept = None;
            Err(f)
        }
    }
}

/// Nothing to read and no EOF on a connection between requests.
fn idle_and_open(c: &TcpStream) -> bool {
    if c.set_nonblocking(true).is_err() {
        return false;
    }
    let open = matches!(c.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    c.set_nonblocking(false).is_ok() && open
}

/// Sends `request`, reads one answer (by `Content-Length`, else to EOF):
/// the version a 200 answer names, and whether the connection may be
/// reused.
fn ask(c: &mut TcpStream, request: &[u8]) -> Result<(String, bool), Failure> {
    c.write_all(request)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(Failure::Other("answer head too large".into()));
        }
        match c.read(&mut chunk)? {
            0 => return Err(Failure::Closed),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .strip_prefix("http/1.")
        .and_then(|h| h.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Failure::Other("malformed status line".into()))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    };
    let reuse = head.starts_with("http/1.1") && header("connection") != Some("close");
    let mut body = buf.split_off(head_end);
    match header("content-length").and_then(|n| n.parse::<usize>().ok()) {
        Some(len) => {
            while body.len() < len {
                match c.read(&mut chunk)? {
                    0 => return Err(Failure::Closed),
                    n => body.extend_from_slice(&chunk[..n]),
                }
            }
            body.truncate(len);
        }
        None => {
            c.take(64 * 1024).read_to_end(&mut body)?;
        }
    }
    if status != 200 {
        return Err(Failure::Status(status));
    }
    let body: serde_json::Value = serde_json::from_slice(&body).map_err(|_| Failure::BadAnswer)?;
    let version = body["version"].as_str().ok_or(Failure::BadAnswer)?;
    Ok((version.to_string(), reuse))
}

/// One `GET /health` on a fresh connection (HTTP/1.0, closed after), 1 s
/// timeouts: the `version` of a 200 answer, `None` for anything else.
pub fn health_version(port: u16) -> Option<String> {
    let mut c = connect(port).ok()?;
    ask(
        &mut c,
        b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .ok()
    .map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that answers each connection's requests with `answers` in
    /// turn (one per request, on the same connection while it lasts).
    fn server(answers: Vec<&'static [u8]>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                let answers = answers.clone();
                std::thread::spawn(move || {
                    for a in answers {
                        let mut buf = [0u8; 1024];
                        if c.read(&mut buf).unwrap_or(0) == 0 {
                            return;
                        }
                        if a.is_empty() {
                            return; // close without an answer
                        }
                        let _ = c.write_all(a);
                    }
                });
            }
        });
        port
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"version\":\"v1\"}\n";

    #[test]
    fn answers_and_failures_have_their_kind() {
        let port = server(vec![OK]);
        let mut c = connect(port).unwrap();
        assert_eq!(
            ask(&mut c, b"GET / HTTP/1.1\r\n\r\n"),
            Ok(("v1".into(), true))
        );
        let port = server(vec![
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
        ]);
        let mut c = connect(port).unwrap();
        assert_eq!(
            ask(&mut c, b"GET / HTTP/1.1\r\n\r\n"),
            Err(Failure::Status(502))
        );
        let port = server(vec![b""]);
        let mut c = connect(port).unwrap();
        assert_eq!(ask(&mut c, b"GET / HTTP/1.1\r\n\r\n"), Err(Failure::Closed));
        let port = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]);
        let mut c = connect(port).unwrap();
        assert_eq!(
            ask(&mut c, b"GET / HTTP/1.1\r\n\r\n"),
            Err(Failure::BadAnswer)
        );
        // A port nothing listens on.
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(connect(free).err(), Some(Failure::Refused));
    }

    #[test]
    fn keep_alive_reuses_its_connection_and_reconnects_after_a_failure() {
        // Two answers on a connection, then a close without an answer.
        let port = server(vec![OK, OK, b""]);
        let (mut kept, mut n) = (None, 0);
        assert_eq!(keep_alive(port, &mut kept, &mut n), Ok("v1".into()));
        assert_eq!(keep_alive(port, &mut kept, &mut n), Ok("v1".into()));
        assert_eq!(n, 1, "the connection was reused");
        assert_eq!(keep_alive(port, &mut kept, &mut n), Err(Failure::Closed));
        assert_eq!(keep_alive(port, &mut kept, &mut n), Ok("v1".into()));
        assert_eq!(n, 2, "a failure reconnects");
    }

    #[test]
    fn an_idle_connection_the_server_closed_is_replaced_without_a_failure() {
        // One answer, then the server closes the idle connection.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let _ = c.write_all(OK);
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        });
        let (mut kept, mut n) = (None, 0);
        assert_eq!(keep_alive(port, &mut kept, &mut n), Ok("v1".into()));
        // Until the server's FIN has arrived.
        let t = Instant::now();
        while kept.as_ref().is_some_and(idle_and_open) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the close never arrived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(keep_alive(port, &mut kept, &mut n), Ok("v1".into()));
        assert_eq!(n, 2);
    }

    #[test]
    fn the_summary_names_each_client_and_failure_kind() {
        let at = Instant::now();
        let r = |client, outcome| Request {
            client,
            at,
            took: Duration::from_millis(40),
            outcome,
        };
        let mut seen = Seen {
            requests: vec![
                r(Client::NewConnection, Ok("v1".into())),
                r(Client::KeepAlive, Err(Failure::Closed)),
                r(Client::KeepAlive, Err(Failure::Status(502))),
                r(Client::KeepAlive, Ok("v2".into())),
            ],
            switches: Some(2),
            keep_alive_connections: 2,
            ..Seen::default()
        };
        seen.answers = seen
            .requests
            .iter()
            .map(|r| (r.at, r.outcome.clone().ok()))
            .collect();
        assert_eq!((seen.sent(), seen.failed()), (4, 2));
        assert_eq!(
            seen.to_string(),
            "new connection: 1 requests, 0 failed, longest 0.04 s; keep-alive: 3 requests, \
             2 failed (1 HTTP 502, 1 closed before an answer), 2 connections, longest 0.04 s; slow request: \
             0 requests, 0 failed, longest 0.00 s; 2 switches"
        );
    }
}
