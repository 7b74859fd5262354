//! A tiny Redis client speaking RESP2 over a plain `TcpStream`: commands go
//! out as arrays of bulk strings, replies are decoded into [`Value`]. Only the
//! handful of commands the testbed needs get typed helpers.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Upper bounds so a confused peer cannot make us allocate without limit.
const MAX_BULK: usize = 64 * 1024 * 1024;
const MAX_ARRAY: usize = 1024 * 1024;
const MAX_DEPTH: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array (`*-1`), e.g. a BRPOP that timed out.
    Array(Option<Vec<Value>>),
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.by_ref().take(64 * 1024).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(if line.is_empty() {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by redis")
        } else {
            invalid("RESP line not terminated by CRLF")
        });
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| invalid("non-UTF-8 RESP line"))
}

/// Reads one reply.
pub fn decode(r: &mut impl BufRead) -> io::Result<Value> {
    decode_at(r, 0)
}

fn decode_at(r: &mut impl BufRead, depth: usize) -> io::Result<Value> {
    if depth > MAX_DEPTH {
        return Err(invalid("RESP reply nested too deeply"));
    }
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| invalid(format!("bad RESP number {s:?}")))
    };
    match kind {
        "+" => Ok(Value::Simple(rest.to_string())),
        "-" => Ok(Value::Error(rest.to_string())),
        ":" => Ok(Value::Integer(number(rest)?)),
        "$" => match number(rest)? {
            -1 => Ok(Value::Bulk(None)),
            n if n < 0 || n as usize > MAX_BULK => Err(invalid(format!("bad bulk length {n}"))),
            n => {
                let mut data = vec![0; n as usize + 2];
                r.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(invalid("bulk string not terminated by CRLF"));
                }
                data.truncate(n as usize);
                Ok(Value::Bulk(Some(data)))
            }
        },
        "*" => match number(rest)? {
            -1 => Ok(Value::Array(None)),
            n if n < 0 || n as usize > MAX_ARRAY => Err(invalid(format!("bad array length {n}"))),
            n => (0..n)
                .map(|_| decode_at(r, depth + 1))
                .collect::<io::Result<_>>()
                .map(|v| Value::Array(Some(v))),
        },
        _ => Err(invalid(format!("unknown RESP type in {line:?}"))),
    }
}

/// One connection to Redis. Any I/O or protocol error leaves the connection
/// in an unknown state: callers drop it and connect again.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects to `host:port`. `timeout` bounds the connect and every later
    /// read/write, so it must exceed any blocking command's own timeout.
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<Client> {
        let mut last_err = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
        for sock in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&sock, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    let _ = stream.set_nodelay(true);
                    return Ok(Client {
                        reader: BufReader::new(stream.try_clone()?),
                        writer: stream,
                    });
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// Sends one command and returns its reply; a Redis error reply becomes
    /// an `Err`.
    pub fn command(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        self.writer.write_all(&encode(args))?;
        match decode(&mut self.reader)? {
            Value::Error(e) => Err(io::Error::other(format!("redis: {e}"))),
            v => Ok(v),
        }
    }

    fn integer(&mut self, args: &[&[u8]]) -> io::Result<i64> {
        match self.command(args)? {
            Value::Integer(n) => Ok(n),
            other => Err(invalid(format!("expected an integer reply, got {other:?}"))),
        }
    }

    pub fn ping(&mut self) -> io::Result<()> {
        match self.command(&[b"PING"])? {
            Value::Simple(s) if s == "PONG" => Ok(()),
            other => Err(invalid(format!("unexpected PING reply {other:?}"))),
        }
    }

    pub fn set(&mut self, key: &str, value: &[u8]) -> io::Result<()> {
        self.command(&[b"SET", key.as_bytes(), value]).map(drop)
    }

    /// LPUSH one value; returns the list's new length.
    pub fn lpush(&mut self, key: &str, value: &[u8]) -> io::Result<i64> {
        self.integer(&[b"LPUSH", key.as_bytes(), value])
    }

    pub fn llen(&mut self, key: &str) -> io::Result<i64> {
        self.integer(&[b"LLEN", key.as_bytes()])
    }

    /// Every element of a list, head first (LRANGE key 0 -1).
    pub fn lrange_all(&mut self, key: &str) -> io::Result<Vec<Vec<u8>>> {
        match self.command(&[b"LRANGE", key.as_bytes(), b"0", b"-1"])? {
            Value::Array(Some(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Bulk(Some(b)) => Ok(b),
                    other => Err(invalid(format!("unexpected LRANGE element {other:?}"))),
                })
                .collect(),
            other => Err(invalid(format!("unexpected LRANGE reply {other:?}"))),
        }
    }

    /// BRPOP on one list; `None` when nothing arrived within `secs`.
    pub fn brpop(&mut self, key: &str, secs: u32) -> io::Result<Option<Vec<u8>>> {
        match self.command(&[b"BRPOP", key.as_bytes(), secs.to_string().as_bytes()])? {
            Value::Array(None) => Ok(None),
            Value::Array(Some(mut items)) if items.len() == 2 => match items.pop() {
                Some(Value::Bulk(Some(v))) => Ok(Some(v)),
                other => Err(invalid(format!("unexpected BRPOP element {other:?}"))),
            },
            other => Err(invalid(format!("unexpected BRPOP reply {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(raw: &[u8]) -> io::Result<Value> {
        decode(&mut &raw[..])
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(encode(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&[b"LPUSH", b"q", b"a\r\nb"]),
            b"*3\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$4\r\na\r\nb\r\n".to_vec()
        );
        assert_eq!(
            encode(&[b"SET", b"k", b""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn decodes_every_reply_type() {
        assert_eq!(dec(b"+PONG\r\n").unwrap(), Value::Simple("PONG".into()));
        assert_eq!(
            dec(b"-ERR nope\r\n").unwrap(),
            Value::Error("ERR nope".into())
        );
        assert_eq!(dec(b":-42\r\n").unwrap(), Value::Integer(-42));
        assert_eq!(
            dec(b"$3\r\na\nb\r\n").unwrap(),
            Value::Bulk(Some(b"a\nb".to_vec()))
        );
        assert_eq!(dec(b"$0\r\n\r\n").unwrap(), Value::Bulk(Some(Vec::new())));
        assert_eq!(dec(b"$-1\r\n").unwrap(), Value::Bulk(None));
        assert_eq!(dec(b"*-1\r\n").unwrap(), Value::Array(None));
        assert_eq!(
            dec(b"*2\r\n$13\r\nfetchml:queue\r\n$2\r\nj1\r\n").unwrap(),
            Value::Array(Some(vec![
                Value::Bulk(Some(b"fetchml:queue".to_vec())),
                Value::Bulk(Some(b"j1".to_vec()))
            ]))
        );
    }

    #[test]
    fn decodes_consecutive_replies_from_one_stream() {
        let mut r = &b":1\r\n+OK\r\n"[..];
        assert_eq!(decode(&mut r).unwrap(), Value::Integer(1));
        assert_eq!(decode(&mut r).unwrap(), Value::Simple("OK".into()));
        assert_eq!(
            decode(&mut r).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn rejects_malformed_replies() {
        assert!(dec(b"?x\r\n").is_err());
        assert!(dec(b":12a\r\n").is_err());
        assert!(dec(b"+OK\n").is_err());
        assert!(dec(b"$5\r\nab\r\n").is_err());
        assert!(dec(b"$2\r\nabcd").is_err());
        assert!(dec(b"$-5\r\n").is_err());
        assert!(dec(b"*1\r\n").is_err());
        assert!(dec(&b"*1\r\n".repeat(20)).is_err()); // too deep
    }
}
