//! Configuration, read once from the environment at start-up.
//!
//! Invalid settings stop the process with a clear message rather than being
//! guessed at: a security-mode test must never pass because a typo silently
//! fell back to a laxer mode. Secrets are only ever read from a file named
//! by `API_TOKEN_FILE`, never taken from an argument or an env var value.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Dev,
    Standard,
    Hipaa,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "dev" => Some(Mode::Dev),
            "standard" => Some(Mode::Standard),
            "hipaa" => Some(Mode::Hipaa),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Dev => "dev",
            Mode::Standard => "standard",
            Mode::Hipaa => "hipaa",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

/// The effective configuration. `Debug` is written by hand to redact the token.
pub struct Config {
    pub role: Role,
    /// `APP_VERSION`, baked into the image at build time ("unknown" if unset).
    pub version: String,
    /// `COMPLIANCE_MODE`; unset or empty means `standard`.
    pub mode: Mode,
    /// `PORT`, default 8080.
    pub port: u16,
    /// `REDIS_ADDR` as host:port, default `redis:6379`.
    pub redis_addr: String,
    /// `API_TOKEN_FILE`, the path the token was read from.
    pub token_file: Option<PathBuf>,
    /// The bearer token (file content, trimmed). Never read in dev mode.
    pub token: Option<String>,
    /// `AUDIT_SINK_DIR`; its writability gates health in hipaa mode.
    pub audit_sink_dir: Option<PathBuf>,
    /// `TESTBED_BROKEN=1`: the deliberately broken build.
    pub broken: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("role", &self.role)
            .field("version", &self.version)
            .field("mode", &self.mode)
            .field("port", &self.port)
            .field("redis_addr", &self.redis_addr)
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("audit_sink_dir", &self.audit_sink_dir)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Config {
    pub fn from_env(role: Role) -> Result<Config, String> {
        Config::from_sources(
            role,
            |k| std::env::var(k).ok(),
            |p| std::fs::read_to_string(p),
        )
    }

    /// The parsing rules, with the environment and file system injected so
    /// they can be unit-tested.
    pub fn from_sources(
        role: Role,
        env: impl Fn(&str) -> Option<String>,
        read_file: impl Fn(&Path) -> io::Result<String>,
    ) -> Result<Config, String> {
        // An empty value is treated like an unset one throughout.
        let var = |k: &str| env(k).filter(|v| !v.is_empty());

        let mode = match var("COMPLIANCE_MODE") {
            None => Mode::Standard,
            Some(m) => Mode::parse(&m).ok_or_else(|| {
                format!("COMPLIANCE_MODE={m:?} is not one of dev, standard, hipaa")
            })?,
        };
        let port = match var("PORT") {
            None => 8080,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("PORT={p:?} is not a TCP port number")),
            },
        };
        let redis_addr = var("REDIS_ADDR").unwrap_or_else(|| "redis:6379".to_string());
        if !redis_addr.contains(':') {
            return Err(format!("REDIS_ADDR={redis_addr:?} must be host:port"));
        }
        let token_file = var("API_TOKEN_FILE").map(PathBuf::from);
        // Outside dev mode a configured token file must yield a usable token:
        // an unreadable or empty file is a deployment mistake, and starting
        // anyway would only hide it behind 401s. Without any token file every
        // /api request is refused (see `service::authorized`).
        let token = match (&token_file, mode) {
            (Some(path), Mode::Standard | Mode::Hipaa) => {
                let raw = read_file(path)
                    .map_err(|e| format!("cannot read API_TOKEN_FILE {}: {e}", path.display()))?;
                let token = raw.trim().to_string();
                if token.is_empty() {
                    return Err(format!("API_TOKEN_FILE {} is empty", path.display()));
                }
                Some(token)
            }
            _ => None,
        };
        Ok(Config {
            role,
            version: var("APP_VERSION").unwrap_or_else(|| "unknown".to_string()),
            mode,
            port,
            redis_addr,
            token_file,
            token,
            audit_sink_dir: var("AUDIT_SINK_DIR").map(PathBuf::from),
            broken: env("TESTBED_BROKEN").as_deref() == Some("1"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)], file: Option<&str>) -> Result<Config, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = file.map(str::to_string);
        Config::from_sources(
            Role::Api,
            |k| vars.get(k).cloned(),
            |_| {
                file.clone()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "missing"))
            },
        )
    }

    #[test]
    fn defaults() {
        let c = load(&[], None).unwrap();
        assert_eq!(c.mode, Mode::Standard);
        assert_eq!(c.port, 8080);
        assert_eq!(c.redis_addr, "redis:6379");
        assert_eq!(c.version, "unknown");
        assert!(c.token.is_none() && c.audit_sink_dir.is_none() && !c.broken);
    }

    #[test]
    fn unknown_mode_refuses_to_start() {
        let err = load(&[("COMPLIANCE_MODE", "HIPAA")], None).unwrap_err();
        assert!(err.contains("COMPLIANCE_MODE"), "{err}");
        assert!(load(&[("COMPLIANCE_MODE", "prod")], None).is_err());
    }

    #[test]
    fn bad_port_refuses_to_start() {
        assert!(load(&[("PORT", "0")], None).is_err());
        assert!(load(&[("PORT", "http")], None).is_err());
        assert_eq!(load(&[("PORT", "9000")], None).unwrap().port, 9000);
    }

    #[test]
    fn token_is_trimmed_file_content() {
        let c = load(&[("API_TOKEN_FILE", "/t")], Some("  s3cret\n")).unwrap();
        assert_eq!(c.token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn unusable_token_file_refuses_outside_dev() {
        assert!(load(&[("API_TOKEN_FILE", "/t")], None).is_err());
        assert!(load(&[("API_TOKEN_FILE", "/t")], Some(" \n")).is_err());
        let hipaa = [("API_TOKEN_FILE", "/t"), ("COMPLIANCE_MODE", "hipaa")];
        assert!(load(&hipaa, None).is_err());
        // dev mode never reads the token.
        let dev = load(
            &[("API_TOKEN_FILE", "/t"), ("COMPLIANCE_MODE", "dev")],
            None,
        )
        .unwrap();
        assert!(dev.token.is_none());
    }

    #[test]
    fn debug_output_redacts_token() {
        let c = load(&[("API_TOKEN_FILE", "/t")], Some("s3cret")).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn broken_only_when_exactly_one() {
        assert!(load(&[("TESTBED_BROKEN", "1")], None).unwrap().broken);
        assert!(!load(&[("TESTBED_BROKEN", "0")], None).unwrap().broken);
        assert!(!load(&[("TESTBED_BROKEN", "yes")], None).unwrap().broken);
    }
}
