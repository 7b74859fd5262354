//! A webhook receiver for the notification tests: a std `TcpListener` on a
//! loopback port that answers each POST with a fixed status (or not at
//! all) and keeps what it was sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the receiver answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Reads the request and never answers (a hung receiver).
    Never,
}

/// One request the receiver took.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: serde_json::Value,
}

pub struct Receiver {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    /// Starts answering on a free loopback port (a thread per connection).
    pub fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || serve(conn, answer, &seen));
            }
        });
        Receiver { port, requests }
    }

    /// The URL a webhook would carry, token and all.
    pub fn url(&self, token: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{token}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, answer: Answer, seen: &Mutex<Vec<Request>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = first.split_whitespace();
    seen.lock().unwrap().push(Request {
        method: parts.next().unwrap_or_default().to_string(),
        path: parts.next().unwrap_or_default().to_string(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    match answer {
        Answer::Status(code) => {
            let mut c = conn;
            let _ = write!(
                c,
                "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
        // Hold the connection open until the client gives up.
        Answer::Never => {
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
        }
    }
}

/// A loopback URL where nothing listens (the port was free a moment ago).
pub fn down_url(token: &str) -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/hooks/{token}")
}
