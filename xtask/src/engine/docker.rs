//! Read-only look-ups against the Docker daemon: images, and whether the
//! daemon and the compose CLI answer. Each one is bounded like every command.

use crate::cmd::{output, Command, Effect};
use crate::engine::ComposeCli;

/// How long a look-up against the daemon may take before it counts as "no answer".
pub const LOOK_UP_SECS: u64 = 30;

fn docker(args: &[&str]) -> Command {
    Command::new("docker", Effect::ReadOnly)
        .args(args.iter().copied())
        .timeout(LOOK_UP_SECS)
}

/// Is `image` (repo:tag) in the local image store?
pub fn image_present(image: &str) -> bool {
    output(&docker(&["image", "inspect", "--format", "{{.Id}}", image])).is_ok_and(|o| o.success)
}

/// `image` as this host's store has it (read-only): its image ID and the
/// registry digest it was pushed or pulled with under its own repository,
/// if any. `None` when the host lacks it.
pub fn local_image(image: &str) -> Option<(String, Option<String>)> {
    let o = output(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}{{range .RepoDigests}} {{.}}{{end}}",
        image,
    ]))
    .ok()
    .filter(|o| o.success)?;
    let mut words = o.stdout.split_whitespace();
    let id = words.next()?.to_string();
    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
    let digest = words
        .filter_map(|w| w.split_once('@'))
        .find(|(r, _)| *r == repo)
        .map(|(_, d)| d.to_string());
    Some((id, digest))
}

/// Does the registry hold `image`'s manifest (read-only)? `Err` says why
/// not, in one line: compose's pull of it would fail the same way.
pub fn manifest(image: &str) -> std::result::Result<(), String> {
    // The daemon pulls from a loopback registry over plain HTTP; the
    // manifest look-up must be told to do the same (else it answers "no
    // such manifest" for one that is there).
    let host = image.split('/').next().unwrap_or_default();
    let loopback = image.contains('/')
        && (host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]"));
    let args: &[&str] = match loopback {
        true => &["manifest", "inspect", "--insecure", image],
        false => &["manifest", "inspect", image],
    };
    let o = output(&docker(args)).map_err(|e| format!("{e:#}"))?;
    if o.success {
        return Ok(());
    }
    let why = o
        .stderr
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    Err(match why.is_empty() {
        true => "the registry did not answer".into(),
        false => why,
    })
}

/// The registry digest of a local image (`repo@sha256:...`), where it has one.
pub fn image_digest(image: &str) -> Option<String> {
    let out = output(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{range .RepoDigests}}{{println .}}{{end}}",
        image,
    ]))
    .ok()?;
    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
    out.stdout
        .lines()
        .find(|l| l.starts_with(repo))
        .and_then(|l| l.split_once('@'))
        .map(|(_, d)| d.to_string())
}

/// Which compose CLI is present: the v2 plugin wins; v1 is a detected fallback.
pub fn detect_compose() -> Option<ComposeCli> {
    let is_v2 = |c: &Command| {
        output(c)
            .is_ok_and(|o| o.success && (o.stdout.starts_with('2') || o.stdout.starts_with("v2")))
    };
    // The plugin binary asked directly answers in a third of the time
    // `docker compose` takes (the CLI first scans every plugin); the CLI
    // is still asked when no plugin is found where it looks.
    let v2 = which::which("docker").is_ok()
        && (compose_plugin().is_some_and(|p| {
            is_v2(
                &Command::new(&p, Effect::ReadOnly)
                    .args(["version", "--short"])
                    .timeout(LOOK_UP_SECS),
            )
        }) || is_v2(&docker(&["compose", "version", "--short"])));
    if v2 {
        return Some(ComposeCli::V2Plugin);
    }
    let v1 = which::which("docker-compose").is_ok()
        && output(
            &Command::new("docker-compose", Effect::ReadOnly)
                .args(["version", "--short"])
                .timeout(LOOK_UP_SECS),
        )
        .is_ok_and(|o| o.success && o.stdout.starts_with("1."));
    v1.then_some(ComposeCli::V1Standalone)
}

/// The compose plugin, where the docker CLI looks for it: the user's
/// `cli-plugins` first, then the system directories.
pub fn compose_plugin() -> Option<String> {
    let user = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))
        .map(|d| d.join("cli-plugins"));
    let system = [
        "/usr/local/lib/docker/cli-plugins",
        "/usr/local/libexec/docker/cli-plugins",
        "/usr/lib/docker/cli-plugins",
        "/usr/libexec/docker/cli-plugins",
    ]
    .map(std::path::PathBuf::from);
    user.into_iter()
        .chain(system)
        .map(|d| d.join("docker-compose"))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// Is the Docker daemon answering? `Err` is `docker version`'s error, in one
/// line; a daemon that does not answer within the limit is an error too.
pub fn daemon() -> std::result::Result<(), String> {
    let out = output(&docker(&["version", "--format", "{{.Server.Version}}"]).timeout(15))
        .map_err(|e| format!("{e:#}"))?;
    if out.success {
        return Ok(());
    }
    let line = out
        .stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("docker version failed")
        .trim()
        .to_string();
    Err(line)
}
