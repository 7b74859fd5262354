//! The reverse proxy's runtime API (HAProxy 2.6): where each HTTP app
//! service's route sends traffic, and the switch.
//!
//! A route is the backend `fetchml-<service>` (deployments/testbed/haproxy.cfg):
//! a few `boot` servers that follow the compose service name through Docker's
//! DNS (before the first blue/green deploy), and a fixed number of server
//! slots, disabled until the switch points them at a set's containers
//! (`IP:port`). The runtime API changes a backend without a reload, so
//! kept-alive client connections stay open across a switch (Caddy's admin
//! API reloads its server and drops them; docs/architecture.md).
//!
//! The API is a unix socket, `admin.sock`, in a host directory that only the
//! proxy container mounts: no other container can reach it. The tool talks
//! to it directly (no process), and after each switch writes the proxy's
//! server state next to it, which a restarted proxy loads, so it routes
//! where it was last switched.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{remote, Effect};

/// The socket's file name in the admin directory.
pub const SOCKET: &str = "admin.sock";
/// The server-state file in the admin directory, loaded by a restarted proxy.
pub const STATE: &str = "server-state";
/// The name prefix of the servers that follow the service name (bootstrap).
const BOOT: &str = "boot";

/// The backend of `service`'s route in the proxy's config.
pub fn route_id(service: &str) -> String {
    format!("fetchml-{service}")
}

/// Marks an error where the proxy answered (it is misconfigured, not
/// starting): waiting longer will not help.
#[derive(Debug)]
pub struct Answered;
impl std::fmt::Display for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the proxy answered")
    }
}
impl std::error::Error for Answered {}

/// Did the proxy answer (as opposed to not being reachable)?
pub fn answered(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Answered>().is_some())
}

/// Marks an error where nothing listens on the socket: the proxy is down.
#[derive(Debug)]
pub struct Unreachable;
impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the proxy does not answer")
    }
}
impl std::error::Error for Unreachable {}

/// Is the proxy down (its socket missing or refusing)?
pub fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Unreachable>().is_some())
}

fn socket(admin: &str) -> PathBuf {
    Path::new(admin).join(SOCKET)
}

/// One conversation: `line` (commands separated by `;`), then the answer
/// until the proxy closes. The API answers in well under a millisecond; a
/// proxy that takes seconds is treated as down.
fn converse(admin: &str, line: &str) -> Result<String> {
    // The socket is on the environment's host: a forward of the operation's
    // SSH tunnel when that host is not this machine.
    let path = remote::reach_socket(&socket(admin)).map_err(|e| {
        anyhow::Error::new(Unreachable).context(format!(
            "the proxy's admin socket on the environment's host cannot be reached: {e:#}"
        ))
    })?;
    let limit = Some(Duration::from_secs(2));
    let talk = || -> std::io::Result<String> {
        let mut s = UnixStream::connect(&path)?;
        s.set_read_timeout(limit)?;
        s.set_write_timeout(limit)?;
        s.write_all(line.as_bytes())?;
        s.write_all(b"\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    talk().map_err(|e| {
        anyhow::Error::new(Unreachable).context(format!(
            "the proxy's admin socket {} does not answer: {e}; is the proxy running?",
            path.display()
        ))
    })
}

/// One server of a route, as `show stat` reports it.
#[derive(Debug, Clone, PartialEq)]
struct Server {
    name: String,
    addr: String,
    status: String,
    sessions: u64,
}

impl Server {
    fn boot(&self) -> bool {
        self.name.starts_with(BOOT)
    }
    /// Gets new requests: neither disabled, draining, nor without an
    /// address (`MAINT (resolution)`).
    fn active(&self) -> bool {
        !self.status.starts_with("MAINT") && self.status != "DRAIN"
    }
    /// Neither put in maintenance nor drained by a switch: a boot server
    /// whose name has no address yet gets requests once it has one.
    fn enabled(&self) -> bool {
        !matches!(self.status.as_str(), "MAINT" | "DRAIN")
    }
}

/// The servers of `service`'s route.
fn servers(admin: &str, service: &str) -> Result<Vec<Server>> {
    let id = route_id(service);
    // All of it: a frontend may share the backend's name, and a name in
    // the filter finds the frontend.
    let out = converse(admin, "show stat")?;
    parse_stat(&out, &id).ok_or_else(|| {
        anyhow::Error::new(Answered).context(format!(
            "the proxy has no backend `{id}` with servers for {service}; its config must name the route's backend so"
        ))
    })
}

/// `show stat` CSV: the servers of backend `id`, `None` when it has none.
fn parse_stat(out: &str, id: &str) -> Option<Vec<Server>> {
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n);
    let (px, sv, scur, status, addr) = (
        col("pxname")?,
        col("svname")?,
        col("scur")?,
        col("status")?,
        col("addr")?,
    );
    let v: Vec<Server> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > addr && f[px] == id && !matches!(f[sv], "FRONTEND" | "BACKEND"))
        .map(|f| Server {
            name: f[sv].into(),
            addr: f[addr].into(),
            status: f[status].into(),
            sessions: f[scur].parse().unwrap_or(0),
        })
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Where `service`'s route sends new requests now: the containers'
/// `IP:port`, or `service:port` while the bootstrap servers (the compose
/// service name) serve.
pub fn upstreams(admin: &str, service: &str) -> Result<Vec<String>> {
    let mut v: Vec<String> = servers(admin, service)?
        .into_iter()
        .filter(Server::active)
        .map(|s| match s.boot() {
            true => match s.addr.rsplit_once(':') {
                Some((_, port)) => format!("{service}:{port}"),
                None => service.to_string(),
            },
            false => s.addr,
        })
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// The requests in flight on `service`'s servers at `dials`.
pub fn sessions(admin: &str, service: &str, dials: &[String]) -> Result<u64> {
    Ok(servers(admin, service)?
        .iter()
        .filter(|s| dials.contains(&s.addr))
        .map(|s| s.sessions)
        .sum())
}

/// The runtime commands that point a route at `dials`: each dial gets the
/// slot that already has its address, else a disabled one, else a drained
/// one with nothing in flight; the new servers are enabled before every
/// other one goes to drain (no new requests; those in flight finish).
fn switch_commands(id: &str, servers: &[Server], dials: &[String]) -> Result<Vec<String>> {
    let mut chosen: Vec<(&Server, &String)> = Vec::new();
    let taken =
        |chosen: &[(&Server, &String)], s: &Server| chosen.iter().any(|(c, _)| c.name == s.name);
    for d in dials {
        let free = servers
            .iter()
            .filter(|s| !s.boot() && !taken(&chosen, s))
            .find(|s| &s.addr == d)
            .or_else(|| {
                servers
                    .iter()
                    .find(|s| !s.boot() && !taken(&chosen, s) && s.status == "MAINT")
            })
            .or_else(|| {
                servers.iter().find(|s| {
                    !s.boot()
                        && !taken(&chosen, s)
                        && s.status == "DRAIN"
                        && s.sessions == 0
                        && !dials.contains(&s.addr)
                })
            });
        match free {
            Some(s) => chosen.push((s, d)),
            None => bail!(
                "the proxy's backend {id} has no free server slot for {d} ({} slots, all serving or draining); give its server-template more",
                servers.iter().filter(|s| !s.boot()).count()
            ),
        }
    }
    let mut cmds = Vec::new();
    for (s, d) in &chosen {
        let (ip, port) = d
            .rsplit_once(':')
            .with_context(|| format!("upstream `{d}` is not IP:port"))?;
        if s.addr != **d {
            cmds.push(format!("set server {id}/{} addr {ip} port {port}", s.name));
        }
        cmds.push(format!("set server {id}/{} state ready", s.name));
    }
    for s in servers {
        if s.enabled() && !taken(&chosen, s) {
            cmds.push(format!("set server {id}/{} state drain", s.name));
        }
    }
    Ok(cmds)
}

/// Points `service`'s route at `dials` (`IP:port` of containers): one
/// conversation with the proxy, then its server state saved for a restart.
pub fn point(admin: &str, service: &str, dials: &[String]) -> Result<()> {
    if dials.is_empty() {
        bail!("no containers to send {service}'s traffic to");
    }
    let id = route_id(service);
    let cmds = switch_commands(&id, &servers(admin, service)?, dials)?;
    let out = converse(admin, &format!("{}; show servers state", cmds.join("; ")))?;
    // Each `set` answers nothing, or a line saying what changed; the state
    // dump starts with its version line.
    let (said, state) = match out.find("\n1\n# be_id") {
        Some(i) => (&out[..i], &out[i + 1..]),
        None => match out.strip_prefix("1\n# be_id") {
            Some(_) => ("", out.as_str()),
            None => (out.as_str(), ""),
        },
    };
    if let Some(bad) = said
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.contains("changed"))
    {
        bail!("the proxy refused the switch of {service}: {bad}");
    }
    if state.is_empty() {
        bail!("the proxy switched {service} but did not report its server state; a restarted proxy may route elsewhere: run the deploy again");
    }
    save_state(admin, state)
}

/// Writes the server state where the proxy's config loads it from
/// (atomically: a proxy starting meanwhile reads the old file or the new).
fn save_state(admin: &str, state: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = Path::new(admin);
    let script = r#"printf '%s' "$1" > "$2/$3.tmp" && chown --reference="$2" "$2/$3.tmp" && mv "$2/$3.tmp" "$2/$3""#;
    if let Some(c) = remote::on_host(
        Effect::Mutating,
        &["sh", "-c", script, "sh", state, admin, STATE],
        15,
    ) {
        return crate::cmd::run(&c, false)
            .map(drop)
            .with_context(|| format!("writing {admin}/{STATE} on the environment's host"));
    }
    let tmp = dir.join(format!("{STATE}.tmp"));
    let path = dir.join(STATE);
    std::fs::write(&tmp, state).with_context(|| format!("writing {}", tmp.display()))?;
    // The proxy reads it as the directory's owner.
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()))
        .with_context(|| format!("giving {} to the proxy's user", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// The user the proxy container runs as (`uid:gid`): the tool's own, so the
/// socket it creates (mode 600) is the tool's; as root, `nobody`, which
/// then owns the directory.
pub fn user() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(m) if m.uid() != 0 => (m.uid(), m.gid()),
        _ => (65534, 65534),
    }
}

/// Creates the admin directory (mode 0700, owned by the proxy's user)
/// before the proxy starts: docker would create a missing one as root.
pub fn prepare_dir(admin: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = user();
    let d = admin.display().to_string();
    let owner = format!("{uid}:{gid}");
    let script = r#"mkdir -p "$1" && chmod 700 "$1" && chown "$2" "$1""#;
    if let Some(c) = remote::on_host(
        Effect::Mutating,
        &["sh", "-c", script, "sh", &d, &owner],
        15,
    ) {
        return crate::cmd::run(&c, false)
            .map(drop)
            .with_context(|| format!("preparing {d} on the environment's host"));
    }
    std::fs::create_dir_all(admin).with_context(|| format!("creating {}", admin.display()))?;
    std::fs::set_permissions(admin, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", admin.display()))?;
    std::os::unix::fs::chown(admin, Some(uid), Some(gid))
        .with_context(|| format!("giving {} to the proxy's user {uid}", admin.display()))
}

/// The host in a dial (`host:port`): an IP, or a service name.
pub fn host_of(dial: &str) -> &str {
    dial.rsplit_once(':').map_or(dial, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,addr\n\
fetchml-api,boot1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN,1,172.18.0.4:8080\n\
fetchml-api,boot2,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT (resolution),1,\n\
fetchml-api,s1,0,0,2,0,,0,0,0,,0,,0,0,0,0,no check,1,172.18.0.5:8080\n\
fetchml-api,s2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN,1,172.18.0.6:8080\n\
fetchml-api,s3,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,127.0.0.1:8080\n";

    #[test]
    fn stat_is_read_and_upstreams_named() {
        let s = parse_stat(STAT, "fetchml-api").unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!((s[2].name.as_str(), s[2].sessions), ("s1", 2));
        let active: Vec<&str> = s
            .iter()
            .filter(|s| s.active())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(active, ["s1"]);
        assert!(parse_stat(STAT, "fetchml-other").is_none());
        assert_eq!(host_of("172.18.0.5:8080"), "172.18.0.5");
        assert_eq!(host_of("api"), "api");
        assert_eq!(route_id("api"), "fetchml-api");
    }

    #[test]
    fn switch_enables_before_it_drains_and_reuses_addresses() {
        let s = parse_stat(STAT, "fetchml-api").unwrap();
        let id = "fetchml-api";
        // Back to the drained set (a rollback): its slot, no address change.
        let c = switch_commands(id, &s, &["172.18.0.6:8080".into()]).unwrap();
        assert_eq!(
            c,
            [
                "set server fetchml-api/s2 state ready",
                "set server fetchml-api/boot2 state drain",
                "set server fetchml-api/s1 state drain",
            ]
        );
        // A new set: the disabled slot first, then a drained one with nothing in flight.
        let c = switch_commands(
            id,
            &s,
            &["172.18.0.7:8080".into(), "172.18.0.8:8080".into()],
        )
        .unwrap();
        assert_eq!(c[0], "set server fetchml-api/s3 addr 172.18.0.7 port 8080");
        assert_eq!(c[1], "set server fetchml-api/s3 state ready");
        assert_eq!(c[2], "set server fetchml-api/s2 addr 172.18.0.8 port 8080");
        // A slot with requests in flight is never taken.
        let e = switch_commands(
            id,
            &s,
            &[
                "10.0.0.1:1".into(),
                "10.0.0.2:1".into(),
                "10.0.0.3:1".into(),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("no free server slot"), "{e}");
    }
}
