//! A steady request stream, the measure of "zero failed requests": one
//! `GET /health` every 20 ms (50 per second) on a new connection, with 1 s
//! timeouts, from a thread of its own until stopped. A request fails on a
//! refused or timed-out connection or a status other than 200. Each answer
//! keeps the version that gave it, so a switch can be timed.
//!
//! The benchmarks, the demo and the end-to-end tests all count with it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Between requests: 50 per second.
pub const EVERY: Duration = Duration::from_millis(20);

/// What the stream saw: when each request was sent, and which version
/// answered it (`None`: it failed).
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub answers: Vec<(Instant, Option<String>)>,
}

impl Seen {
    pub fn sent(&self) -> usize {
        self.answers.len()
    }
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
}

/// The running stream; [`Stream::stop`] ends it and returns what it saw.
pub struct Stream {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
}

impl Stream {
    /// Starts sending to `127.0.0.1:port`, and lets it run 200 ms first.
    pub fn start(port: u16) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (s, out) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            // Bounded whatever happens to the caller: ten minutes at most.
            let end = Instant::now() + Duration::from_secs(600);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                let t = Instant::now();
                let v = health_version(port);
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .answers
                    .push((t, v));
                std::thread::sleep((t + EVERY).saturating_duration_since(Instant::now()));
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        Stream {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Lets it run 200 ms more, stops it, and returns what it saw.
    pub fn stop(mut self) -> Seen {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One `GET /health` on a fresh connection (HTTP/1.0, closed after), 1 s
/// timeouts: the `version` of a 200 answer, `None` for anything else.
pub fn health_version(port: u16) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    c.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    c.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut resp = Vec::new();
    c.take(64 * 1024).read_to_end(&mut resp).ok()?;
    if !(resp.starts_with(b"HTTP/1.") && resp.get(9..12) == Some(b"200")) {
        return None;
    }
    let at = resp.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let body: serde_json::Value = serde_json::from_slice(&resp[at..]).ok()?;
    body["version"].as_str().map(str::to_string)
}
