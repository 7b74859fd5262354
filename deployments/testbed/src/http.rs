//! Just enough HTTP/1.1 for the testbed: one request per connection
//! (`Connection: close`), a thread per connection, `Content-Length` bodies
//! only, and a tiny GET client for the `healthcheck` subcommand (the scratch
//! image has no curl for the compose healthcheck to call).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Connections accepted and not yet answered: on SIGTERM the service
/// finishes these before it exits, so a request in flight when its
/// container is stopped still gets its answer.
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

const MAX_HEAD: u64 = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target without its query string, not percent-decoded.
    pub path: String,
    /// What follows `?` in the target (empty without one), not decoded.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub enum ParseError {
    /// The client went away or timed out; nothing useful can be answered.
    Io,
    /// Answer with this status and message.
    Bad(u16, &'static str),
}

impl From<io::Error> for ParseError {
    fn from(_: io::Error) -> Self {
        ParseError::Io
    }
}

/// Reads one request: request line, headers, then a `Content-Length` body.
pub fn read_request(r: &mut impl BufRead) -> Result<Request, ParseError> {
    let mut head = r.by_ref().take(MAX_HEAD);
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if head.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
            return Err(if head.limit() == 0 {
                ParseError::Bad(431, "request head too large")
            } else {
                ParseError::Bad(400, "incomplete request head")
            });
        }
        let line =
            String::from_utf8(line).map_err(|_| ParseError::Bad(400, "non-UTF-8 request head"))?;
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue; // tolerate a stray CRLF before the request line
            }
            break;
        }
        lines.push(line);
    }

    let mut parts = lines[0].split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && t.starts_with('/') => (m, t, v),
        _ => return Err(ParseError::Bad(400, "malformed request line")),
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ParseError::Bad(505, "only HTTP/1.x is supported"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());

    let mut headers = Vec::new();
    for line in &lines[1..] {
        let (name, value) = line
            .split_once(':')
            .ok_or(ParseError::Bad(400, "malformed header"))?;
        if name.is_empty() || name.contains(' ') {
            return Err(ParseError::Bad(400, "malformed header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path,
        query,
        headers,
        body: Vec::new(),
    };

    if req.header("transfer-encoding").is_some() {
        return Err(ParseError::Bad(
            411,
            "chunked bodies are not supported; send Content-Length",
        ));
    }
    if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ParseError::Bad(400, "bad Content-Length"))?;
        if len > MAX_BODY {
            return Err(ParseError::Bad(413, "body too large"));
        }
        req.body = vec![0; len];
        r.read_exact(&mut req.body)?;
    }
    Ok(req)
}

pub struct Response {
    pub status: u16,
    /// Always JSON in this service.
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

pub fn write_response(w: &mut impl Write, resp: &Response) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len()
    );
    for (name, value) in &resp.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&resp.body);
    w.write_all(out.as_bytes())?;
    w.flush()
}

/// Accepts connections forever, one thread each.
pub fn serve<H>(listener: TcpListener, handler: H)
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let handler = std::sync::Arc::new(handler);
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let handler = std::sync::Arc::clone(&handler);
        // Counted from the accept, so the drain cannot miss a connection
        // whose request is still being read.
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            /// Uncounts the connection on every way out of the thread.
            struct Done;
            impl Drop for Done {
                fn drop(&mut self) {
                    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _done = Done;
            let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let Ok(read_half) = stream.try_clone() else {
                return;
            };
            let resp = match read_request(&mut BufReader::new(read_half)) {
                Ok(req) => handler(&req),
                Err(ParseError::Bad(status, msg)) => {
                    Response::json(status, crate::service::error_json(msg))
                }
                Err(ParseError::Io) => return,
            };
            let mut stream = stream;
            let _ = write_response(&mut stream, &resp);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// Splits `http://host:port/path` into its parts (port defaults to 80).
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| format!("{url:?}: bad port"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url:?}: missing host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// Splits a raw HTTP response into its status code and body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, &[u8]), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response has no header end")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "non-UTF-8 response head")?;
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split(' ');
    match (
        parts.next(),
        parts.next().and_then(|s| s.parse::<u16>().ok()),
    ) {
        (Some(v), Some(status)) if v.starts_with("HTTP/1.") => Ok((status, &raw[split + 4..])),
        _ => Err(format!("malformed status line {status_line:?}")),
    }
}

/// The compose healthcheck: GET `url`, succeed iff 200 and the JSON body
/// says `"status":"ok"` (the service formats its own JSON compactly).
pub fn healthcheck(url: &str, timeout: Duration) -> Result<(), String> {
    let (host, port, path) = parse_http_url(url)?;
    let addrs = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {host}: {e}"))?;
    let mut last_err = format!("{host}: no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(mut stream) => {
                stream
                    .set_read_timeout(Some(timeout))
                    .map_err(|e| e.to_string())?;
                stream
                    .set_write_timeout(Some(timeout))
                    .map_err(|e| e.to_string())?;
                let req = format!(
                    "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                );
                stream
                    .write_all(req.as_bytes())
                    .map_err(|e| format!("send: {e}"))?;
                let mut raw = Vec::new();
                stream
                    .take(64 * 1024)
                    .read_to_end(&mut raw)
                    .map_err(|e| format!("receive: {e}"))?;
                let (status, body) = parse_response(&raw)?;
                let body = String::from_utf8_lossy(body);
                return if status == 200 && body.contains("\"status\":\"ok\"") {
                    Ok(())
                } else {
                    Err(format!("unhealthy: HTTP {status} {}", body.trim()))
                };
            }
            Err(e) => last_err = format!("connect {addr}: {e}"),
        }
    }
    Err(last_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Request, ParseError> {
        read_request(&mut &raw[..])
    }

    fn bad_status(raw: &[u8]) -> u16 {
        match parse(raw) {
            Err(ParseError::Bad(status, _)) => status,
            other => panic!("expected a 4xx/5xx parse error, got {other:?}"),
        }
    }

    #[test]
    fn parses_post_with_body_and_query() {
        let raw = b"POST /api/jobs?x=1 HTTP/1.1\r\nHost: a\r\nauthorization: Bearer t\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        let req = parse(raw).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/api/jobs");
        assert_eq!(req.query, "x=1");
        assert_eq!(req.header("Authorization"), Some("Bearer t"));
        assert_eq!(req.body, b"hello");
    }

    #[test]
    fn parses_get_without_body_and_bare_lf() {
        let req = parse(b"GET /health HTTP/1.0\nHost: a\n\n").unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/health"));
        assert!(req.body.is_empty());
    }

    #[test]
    fn rejects_malformed_requests() {
        assert_eq!(bad_status(b"GET\r\n\r\n"), 400);
        assert_eq!(bad_status(b"GET health HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(bad_status(b"GET / HTTP/2\r\n\r\n"), 505);
        assert_eq!(bad_status(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"), 400);
        assert_eq!(bad_status(b"GET / HTTP/1.1\r\nHost: a\r\n"), 400);
        assert_eq!(
            bad_status(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            400
        );
        assert_eq!(
            bad_status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            bad_status(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            413
        );
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert_eq!(bad_status(huge.as_bytes()), 431);
    }

    #[test]
    fn short_body_is_an_io_error() {
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"),
            Err(ParseError::Io)
        ));
    }

    #[test]
    fn writes_response() {
        let mut resp = Response::json(401, "{}");
        resp.headers.push(("WWW-Authenticate", "Bearer".into()));
        let mut out = Vec::new();
        write_response(&mut out, &resp).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("WWW-Authenticate: Bearer\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn url_and_response_parsing() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/health").unwrap(),
            ("127.0.0.1".to_string(), 8080, "/health".to_string())
        );
        assert_eq!(
            parse_http_url("http://api").unwrap(),
            ("api".to_string(), 80, "/".to_string())
        );
        assert!(parse_http_url("https://x/").is_err());
        assert!(parse_http_url("http://x:port/").is_err());
        let (status, body) =
            parse_response(b"HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!((status, body), (503, &b"{\"x\":1}"[..]));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn healthcheck_against_a_local_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            serve(listener, |req| match req.path.as_str() {
                "/ok" => Response::json(200, r#"{"status":"ok"}"#),
                "/bad" => Response::json(503, r#"{"status":"failing"}"#),
                _ => Response::json(200, r#"{"status":"failing"}"#),
            })
        });
        let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
        let t = Duration::from_secs(3);
        assert_eq!(healthcheck(&url("/ok"), t), Ok(()));
        assert!(healthcheck(&url("/bad"), t).unwrap_err().contains("503"));
        assert!(healthcheck(&url("/other"), t).is_err());
    }
}
