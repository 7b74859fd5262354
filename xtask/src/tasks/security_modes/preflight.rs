//! The plan's first step: the tools (docker, compose v2), the daemon for a
//! dynamic run, and the images the boot needs for the tag under test.
//!
//! A tag whose image was never built is a missing input, not a security
//! failure: it stops here with exit 2 and one line naming the build command,
//! instead of a failed boot and every probe of every mode marked failed.
//! An image counts as available when it is in the local store or its
//! registry has its manifest (`docker manifest inspect --insecure`, read-only), the two
//! places `up` would take it from.

use std::collections::BTreeSet;

use anyhow::Result;

use super::policy::{substitute, Stack};
use super::proc::{self, Command, Effect};
use crate::engine::ComposeCli;
use crate::exit::{fail, Code};
use crate::preflight::Tool;

/// The images a boot needs for the tag under test: listed by compose, each
/// present locally or in its registry, else preflight names `build`.
#[derive(Clone)]
pub(super) struct ImageCheck {
    pub tag: String,
    /// `config --images`, one per booted mode.
    pub list: Vec<Command>,
    /// The boot table's build command for the tag.
    pub build: Option<String>,
}

impl ImageCheck {
    /// The check for `stack` (the boot stack) on `tag`; none when no mode boots.
    pub fn new(stack: &Stack, tag: &str, list: Vec<Command>) -> Option<Box<ImageCheck>> {
        if list.is_empty() {
            return None;
        }
        let build = stack
            .boot
            .as_ref()
            .and_then(|b| b.build.as_ref())
            .map(|b| substitute(b, "", tag));
        Some(Box::new(ImageCheck {
            tag: tag.to_string(),
            list,
            build,
        }))
    }
}

/// Exit 2 naming everything missing, or `Ok`.
pub(super) fn check(daemon: bool, images: Option<&ImageCheck>, verbose: bool) -> Result<()> {
    let report = crate::preflight::check(&[Tool::Docker, Tool::Compose], daemon);
    let mut problems = report.problems;
    if problems.is_empty() && report.compose == ComposeCli::V1Standalone {
        problems.push(
            "docker compose v2 is needed (v1 cannot render config as JSON): run `cargo xtask setup`"
                .into(),
        );
    }
    if problems.is_empty() {
        if let Some(images) = images.filter(|_| daemon) {
            problems.extend(missing_images(images, verbose));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let hint = if daemon && problems.iter().any(|p| p.contains("daemon")) {
        " (--static-only needs docker and the compose plugin, but no daemon)"
    } else {
        ""
    };
    Err(fail(
        Code::Preflight,
        format!("preflight failed: {}{hint}", problems.join("; ")),
    ))
}

/// Is `image` in the local store or in its registry?
fn available(image: &str) -> bool {
    let local = Command::new("docker", Effect::ReadOnly)
        .args(["image", "inspect", "--format", "{{.Id}}", image]);
    // `--insecure` lets the CLI fall back to plain HTTP, as the daemon does
    // for a loopback registry (the testbed's 127.0.0.1:5000).
    let remote =
        Command::new("docker", Effect::ReadOnly).args(["manifest", "inspect", "--insecure", image]);
    proc::succeeds(&local) || proc::succeeds(&remote)
}

/// One problem line for the images of the tag, one for any other image.
fn missing_images(check: &ImageCheck, verbose: bool) -> Vec<String> {
    let mut wanted = BTreeSet::new();
    for c in &check.list {
        // A stack compose cannot render fails its render row with compose's
        // own message; preflight only judges the images it could list.
        if let Ok(out) = proc::run(c, verbose) {
            wanted.extend(
                out.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
    }
    let missing: Vec<String> = wanted.into_iter().filter(|i| !available(i)).collect();
    let suffix = format!(":{}", check.tag);
    let (tagged, other): (Vec<String>, Vec<String>) =
        missing.into_iter().partition(|i| i.ends_with(&suffix));
    let mut out = Vec::new();
    if !tagged.is_empty() {
        let how = match &check.build {
            Some(b) => format!("build it with `{b}`"),
            None => format!("build and push the images for {} first", check.tag),
        };
        out.push(format!(
            "the image for tag {} was never built (not in the local store, \
             not in its registry): {}; {how}",
            check.tag,
            tagged.join(", ")
        ));
    }
    if !other.is_empty() {
        out.push(format!(
            "image {} is not in the local store nor in its registry: \
             `cargo xtask setup` builds the local engine images",
            other.join(", ")
        ));
    }
    out
}
