//! How the smoke reaches a server: libpq parameters (from a
//! `postgres://` URL, the `PG*` variables, or the embedded cluster), and
//! the `psql`, `pg_dump` and `pg_restore` command lines built from them.
//! Secrets travel in `PGPASSWORD`, never in argv.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::plan::{Command, Effect};

/// How to reach the server: libpq parameters. What is `None` comes from
/// the environment (`PG*`), exactly as libpq would take it.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    pub host: Option<String>,
    pub port: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Other libpq settings as their environment variables (PGSSLMODE=...).
    pub env: Vec<(String, String)>,
    /// Where CREATE/DROP DATABASE are issued; never modified.
    pub maintenance_db: String,
}

impl Conn {
    /// A client command against database `db`. The date style is pinned, so
    /// exports parse the same way whatever the server's default.
    pub fn cmd(&self, program: &str, db: &str, effect: Effect) -> Command {
        let mut c = Command::new(program, effect);
        if let Some(h) = &self.host {
            c = c.args(["-h", h.as_str()]);
        }
        if let Some(p) = &self.port {
            c = c.args(["-p", p.as_str()]);
        }
        if let Some(u) = &self.user {
            c = c.args(["-U", u.as_str()]);
        }
        c = c.arg("-d").arg(db);
        for (k, v) in &self.env {
            c = c.env(k, v.as_str());
        }
        c = c.env("PGCLIENTENCODING", "UTF8").env("PGDATESTYLE", "ISO");
        if let Some(p) = &self.password {
            c = c.secret_env("PGPASSWORD", p.as_str());
        }
        c
    }

    /// `psql` running `sql` (one or more statements, each its own -c) in `db`.
    pub fn psql(&self, psql: &str, db: &str, effect: Effect, sql: &[&str]) -> Command {
        let mut c =
            self.cmd(psql, db, effect)
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        for s in sql {
            c = c.arg("-c").arg(*s);
        }
        c
    }

    /// `psql -f file...` in `db`, all files in one transaction.
    pub fn psql_files(&self, psql: &str, db: &str, files: &[PathBuf]) -> Command {
        let mut c = self.cmd(psql, db, Effect::Mutating).args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
        ]);
        for f in files {
            c = c.arg("-f").arg(f.display().to_string());
        }
        c
    }
}

/// Parses a `postgres://` URL into libpq parameters, so that nothing of it
/// (the password least of all) lands in argv.
pub fn parse_url(url: &str) -> Result<Conn> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .context("--database-url must start with postgres:// or postgresql://")?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut c = Conn {
        maintenance_db: "postgres".into(),
        ..Conn::default()
    };
    if let Some(u) = userinfo {
        let (user, pass) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        c.user = Some(decode(user)?).filter(|s| !s.is_empty());
        c.password = pass.map(decode).transpose()?;
    }
    if hostport.contains(',') {
        bail!("--database-url: several hosts are not supported; name one");
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .context("--database-url: unterminated [ipv6] host")?;
        (h.to_string(), p.strip_prefix(':').map(str::to_string))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (decode(h)?, Some(p.to_string())),
            None => (decode(hostport)?, None),
        }
    };
    c.host = Some(host).filter(|h| !h.is_empty());
    c.port = port.filter(|p| !p.is_empty());
    if let Some(p) = &c.port {
        p.parse::<u16>()
            .with_context(|| format!("--database-url: port {p:?} is not a number"))?;
    }
    if !db.is_empty() {
        c.maintenance_db = decode(db)?;
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v)?;
        let var = match k {
            "host" => {
                c.host = Some(v);
                continue;
            }
            "port" => {
                c.port = Some(v);
                continue;
            }
            "user" => {
                c.user = Some(v);
                continue;
            }
            "password" => {
                c.password = Some(v);
                continue;
            }
            "dbname" => {
                c.maintenance_db = v;
                continue;
            }
            "sslmode" => "PGSSLMODE",
            "sslrootcert" => "PGSSLROOTCERT",
            "sslcert" => "PGSSLCERT",
            "sslkey" => "PGSSLKEY",
            "sslcrl" => "PGSSLCRL",
            "channel_binding" => "PGCHANNELBINDING",
            "connect_timeout" => "PGCONNECT_TIMEOUT",
            "application_name" => "PGAPPNAME",
            "target_session_attrs" => "PGTARGETSESSIONATTRS",
            "gssencmode" => "PGGSSENCMODE",
            other => bail!("--database-url: unsupported parameter `{other}`"),
        };
        c.env.push((var.into(), v));
    }
    db_name(&c.maintenance_db).context("--database-url: the database name")?;
    Ok(c)
}

fn decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .context("--database-url: a % escape is cut short")?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .with_context(|| format!("--database-url: bad escape %{hex}"))?,
            );
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("--database-url: not UTF-8 after decoding")
}

/// A database name given to `-d`: a value with `=` or a URL prefix would be
/// read by libpq as a connection string.
pub fn db_name(n: &str) -> Result<()> {
    if n.is_empty() || n.contains('=') || n.contains("://") || n.len() > 63 {
        bail!("{n:?} is not a database name this task will pass to -d");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_parameters_and_the_password_stays_out_of_argv() {
        let c = parse_url(
            "postgres://smoke%40x:p%3Ass@db.example:6543/ops?sslmode=require&application_name=bs",
        )
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("smoke@x"));
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert_eq!(
            (c.host.as_deref(), c.port.as_deref()),
            (Some("db.example"), Some("6543"))
        );
        assert_eq!(c.maintenance_db, "ops");
        assert!(c.env.contains(&("PGSSLMODE".into(), "require".into())));
        let cmd = c.psql(
            "psql",
            "xtask_bsmoke_1_src",
            Effect::ReadOnly,
            &["SELECT 1"],
        );
        assert!(
            !cmd.args.iter().any(|a| a.contains("p:ss")),
            "{:?}",
            cmd.args
        );
        assert!(
            cmd.display().contains("PGPASSWORD='***'"),
            "{}",
            cmd.display()
        );

        let c = parse_url("postgresql://[::1]:5432").unwrap();
        assert_eq!(
            (c.host.as_deref(), c.maintenance_db.as_str()),
            (Some("::1"), "postgres")
        );
        assert!(parse_url("mysql://x").is_err());
        assert!(parse_url("postgres://h/db?weird=1").is_err());
        assert!(parse_url("postgres://h:abc/db").is_err());
        assert!(parse_url("postgres://h/host=evil").is_err());
    }
}
