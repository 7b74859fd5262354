//! The second node as a remote host: a real `sshd` in its network
//! namespace, on [`SSH_PORT`] of [`NODE_ADDR`], with host keys of its own
//! and key authentication only, so `DOCKER_HOST=ssh://root@10.77.0.2:2222`
//! and the tool's own SSH connections (tunnels, the remote lock and chain)
//! can be rehearsed on one machine.
//!
//! The keys live in [`SSH_DIR`] (mode 0700). The client side is an
//! `ssh_config` drop-in ([`CLIENT_CONFIG`]) for that one address, so every
//! `ssh` the machine runs, docker's own SSH transport included, finds the
//! key and the pinned host key, as a developer's `~/.ssh/config` would for
//! a real host. The authorized key carries `environment="DOCKER_HOST=..."`
//! (sshd allows only that variable), so `docker system dial-stdio` on the
//! far side reaches the second engine, not the machine's.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{netns_path, DATA_DIR, NODE_ADDR, NODE_HOST, RUN_DIR};
use crate::cmd::{Command, Effect};
use crate::progress::wait_for;

/// sshd's port in the namespace (fixed, below the ephemeral range).
pub const SSH_PORT: u16 = 2222;
/// Keys, authorized keys, known hosts and sshd's config.
pub const SSH_DIR: &str = "/var/lib/fetchml-xtask/node2/ssh";
/// The client-side drop-in every `ssh` on the machine reads.
pub const CLIENT_CONFIG: &str = "/etc/ssh/ssh_config.d/fetchml-node2.conf";

/// The `host` an environment on the second node declares.
pub fn ssh_url() -> String {
    format!("ssh://root@{NODE_ADDR}:{SSH_PORT}")
}

fn p(name: &str) -> PathBuf {
    Path::new(SSH_DIR).join(name)
}

/// The files [`make_keys`] writes, all present.
pub fn keys_present() -> bool {
    [
        "host_ed25519",
        "id_ed25519",
        "authorized_keys",
        "known_hosts",
        "sshd_config",
    ]
    .iter()
    .all(|f| p(f).exists())
        && Path::new(CLIENT_CONFIG).exists()
}

/// Does sshd answer on the node's address with an SSH banner?
pub fn sshd_answers() -> bool {
    let addr = std::net::SocketAddr::from((
        NODE_ADDR
            .parse::<std::net::Ipv4Addr>()
            .expect("NODE_ADDR is an IPv4 address"),
        SSH_PORT,
    ));
    let t = Duration::from_secs(2);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, t) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(t));
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-2.0")
}

fn sshd_config() -> String {
    format!(
        "# written by `cargo xtask setup --swarm-nodes 2`\n\
         Port {SSH_PORT}\n\
         ListenAddress {NODE_ADDR}\n\
         HostKey {host}\n\
         PidFile {RUN_DIR}/sshd.pid\n\
         AuthorizedKeysFile {auth}\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         PermitUserEnvironment DOCKER_HOST\n\
         AllowTcpForwarding yes\n\
         AllowStreamLocalForwarding yes\n\
         StreamLocalBindUnlink yes\n\
         MaxSessions 64\n\
         MaxStartups 64:30:128\n\
         LogLevel ERROR\n",
        host = p("host_ed25519").display(),
        auth = p("authorized_keys").display(),
    )
}

fn client_config() -> String {
    format!(
        "# written by `cargo xtask setup --swarm-nodes 2`: the rehearsal host in\n\
         # network namespace fmlnode2; removed by `setup --swarm-nodes 1`\n\
         Host {NODE_ADDR}\n\
         \x20 IdentityFile {id}\n\
         \x20 IdentitiesOnly yes\n\
         \x20 UserKnownHostsFile {known}\n\
         \x20 StrictHostKeyChecking yes\n\
         \x20 BatchMode yes\n\
         \x20 ConnectTimeout 5\n\
         \x20 ServerAliveInterval 2\n\
         \x20 ServerAliveCountMax 3\n",
        id = p("id_ed25519").display(),
        known = p("known_hosts").display(),
    )
}

fn keygen(file: &Path, comment: &str) -> Result<()> {
    if file.exists() {
        return Ok(());
    }
    let c = Command::new("ssh-keygen", Effect::Mutating)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(file.display().to_string())
        .timeout(20);
    crate::cmd::run(&c, false).map(|_| ())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn read_pub(name: &str) -> Result<String> {
    let f = p(name);
    Ok(std::fs::read_to_string(&f)
        .with_context(|| format!("reading {}", f.display()))?
        .trim()
        .to_string())
}

/// Generates the host key and the client key pair (once), and writes the
/// authorized key, the pinned host key and both configs.
pub fn make_keys() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(SSH_DIR).with_context(|| format!("creating {SSH_DIR}"))?;
    // sshd's StrictModes wants the key directories private.
    for d in [DATA_DIR, SSH_DIR] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {d} private"))?;
    }
    keygen(&p("host_ed25519"), "fetchml-node2-host")?;
    keygen(&p("id_ed25519"), "fetchml-xtask")?;
    let client = read_pub("id_ed25519.pub")?;
    write(
        &p("authorized_keys"),
        &format!("environment=\"DOCKER_HOST={NODE_HOST}\" {client}\n"),
        0o600,
    )?;
    let host = read_pub("host_ed25519.pub")?;
    let mut words = host.split_whitespace();
    let (kind, key) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    write(
        &p("known_hosts"),
        &format!("[{NODE_ADDR}]:{SSH_PORT} {kind} {key}\n"),
        0o644,
    )?;
    write(&p("sshd_config"), &sshd_config(), 0o644)?;
    let dir = Path::new(CLIENT_CONFIG).parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write(Path::new(CLIENT_CONFIG), &client_config(), 0o644)
}

/// Starts sshd in the namespace and waits for its banner, then for
/// `docker info` over docker's own SSH transport.
pub fn start_sshd() -> Result<()> {
    if !Path::new("/usr/sbin/sshd").exists() {
        bail!("/usr/sbin/sshd is missing: run `cargo xtask setup` (it installs openssh-server)");
    }
    // Privilege separation wants this directory; a fresh machine lacks it.
    std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
    let pid = Path::new(RUN_DIR).join("sshd.pid");
    let _ = std::fs::remove_file(&pid);
    let netns = format!("--net={}", netns_path().display());
    let c = Command::new("nsenter", Effect::Mutating)
        .args([netns.as_str(), "/usr/sbin/sshd", "-D", "-e", "-f"])
        .arg(p("sshd_config").display().to_string());
    crate::cmd::spawn_detached(&c, &Path::new(DATA_DIR).join("sshd.log"))?;
    wait_for(
        "sshd in the namespace",
        Duration::from_secs(20),
        sshd_answers,
    )
    .with_context(|| format!("see {DATA_DIR}/sshd.log"))?;
    let info = Command::new("docker", Effect::ReadOnly)
        .args(["-H", &ssh_url(), "info", "--format", "{{.Name}}"])
        .timeout(30);
    crate::cmd::run(&info, false)
        .context("the second engine does not answer over SSH (docker -H ssh://...)")?;
    Ok(())
}

/// Removes the client drop-in (the keys stay with the node's logs).
pub fn remove_client_config() -> Result<()> {
    match std::fs::remove_file(CLIENT_CONFIG) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {CLIENT_CONFIG}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_takes_keys_only_and_passes_just_docker_host() {
        let c = sshd_config();
        assert!(c.contains("PasswordAuthentication no"), "{c}");
        assert!(c.contains("KbdInteractiveAuthentication no"), "{c}");
        assert!(c.contains("PermitUserEnvironment DOCKER_HOST\n"), "{c}");
        assert!(c.contains(&format!("ListenAddress {NODE_ADDR}")), "{c}");
        let k = client_config();
        assert!(k.contains("StrictHostKeyChecking yes"), "{k}");
        assert!(k.contains("BatchMode yes"), "{k}");
        assert_eq!(ssh_url(), "ssh://root@10.77.0.2:2222");
    }
}
