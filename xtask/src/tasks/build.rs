//! `build`: build the images of the build matrix in `deploy.toml`, tagged
//! `sha-<12 hex of HEAD>`, and with `--push` push them and print digests.
//!
//! Needs: docker with a reachable daemon; cargo for images that carry a
//! workspace binary (built static, so images can be `FROM scratch`).
//! Never touches: running stacks, volumes, other tags.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::config::Image;
use crate::ctx::Ctx;
use crate::engine::docker::{image_digest, LOOK_UP_SECS};
use crate::exec::{Actions, Applied};
use crate::flags::{Build, Format};
use crate::plan::{Command, Effect, Plan, Step};
use crate::preflight::Tool;
use crate::repo::workspace_root;
use crate::validate;

/// The target triple static binaries are built for (the only one installed).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

pub fn run(ctx: &Ctx, args: Build) -> Result<()> {
    let cfg = ctx.config()?;
    let tag = tag(&args)?;
    let images: Vec<&Image> = if args.images.is_empty() {
        cfg.images.iter().collect()
    } else {
        args.images
            .iter()
            .map(|n| {
                cfg.images.iter().find(|i| &i.name == n).ok_or_else(|| {
                    let names: Vec<&str> = cfg.images.iter().map(|i| i.name.as_str()).collect();
                    anyhow::anyhow!("unknown image `{n}`: the matrix has {}", names.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    if images.is_empty() {
        bail!("the config declares no [[image]] to build");
    }
    let mut plan = Plan::new("build", None);
    plan.fact("tag", tag.clone(), "git HEAD");
    ctx.preflight(&mut plan, &[Tool::Docker, Tool::Cargo], true)?;
    let mut refs = Vec::new();
    for img in images {
        let dockerfile = cfg.resolve(&img.dockerfile);
        let mut context = match &img.context {
            Some(c) => cfg.resolve(c),
            None => dockerfile.parent().map(PathBuf::from).unwrap_or_default(),
        };
        if let Some(pkg) = &img.cargo_package {
            plan.step(Step::run(
                format!("build {pkg} as a static binary"),
                Command::new("cargo", Effect::Mutating)
                    .args([
                        "build",
                        "--release",
                        "--locked",
                        "-p",
                        pkg.as_str(),
                        "--target",
                        TRIPLE,
                    ])
                    .env("RUSTFLAGS", "-C target-feature=+crt-static")
                    .cwd(workspace_root())
                    .timeout(1800),
            ));
            // The binary and nothing else forms the context, so the image holds only it.
            context = target_dir().join("xtask-image-context").join(&img.name);
            plan.step(Step::CopyFile {
                from: target_dir().join(TRIPLE).join("release").join(pkg),
                to: context.join(pkg),
            });
        }
        let reference = format!("{}:{tag}", img.repository);
        let mut build = Command::new("docker", Effect::Mutating)
            .args(["build", "-q", "-f"])
            .arg(dockerfile.display().to_string())
            .args(["-t", reference.as_str(), "--build-arg"])
            .arg(format!("VERSION={tag}"));
        if args.broken {
            build = build.args(["--build-arg", "BROKEN=1"]);
        }
        for (k, v) in &img.build_args {
            build = build.arg("--build-arg").arg(format!("{k}={v}"));
        }
        let build = build
            .arg(context.display().to_string())
            .env("DOCKER_BUILDKIT", "0");
        plan.step(Step::run(format!("build image {}", img.name), build));
        if args.push {
            plan.step(Step::run(
                format!("push {reference}"),
                Command::new("docker", Effect::Mutating).args([
                    "push",
                    "--quiet",
                    reference.as_str(),
                ]),
            ));
        }
        refs.push((img.name.clone(), reference));
    }
    ctx.finish(
        &plan,
        &mut Report {
            ctx,
            refs: &refs,
            pushed: args.push,
        },
    )
}

/// After a build that ran: each image's reference, and its digest when pushed.
struct Report<'a> {
    ctx: &'a Ctx,
    refs: &'a [(String, String)],
    pushed: bool,
}

impl Actions for Report<'_> {
    fn run(&mut self, id: &str) -> Result<()> {
        bail!("build has no action {id}")
    }
    fn report(&mut self, result: std::result::Result<&Applied, &anyhow::Error>) {
        if result.is_ok() {
            report(self.ctx, self.refs, self.pushed);
        }
    }
}

fn report(ctx: &Ctx, refs: &[(String, String)], pushed: bool) {
    let rows: Vec<serde_json::Value> = refs
        .iter()
        .map(|(name, r)| {
            // What the registry's tag points to now is the digest every
            // deploy will resolve; the local store's is the fallback.
            let digest = pushed
                .then(|| {
                    r.rsplit_once(':')
                        .and_then(|(repo, tag)| {
                            crate::engine::registry::digest(repo, tag, LOOK_UP_SECS).ok()
                        })
                        .or_else(|| image_digest(r))
                })
                .flatten();
            serde_json::json!({"image": name, "reference": r, "digest": digest})
        })
        .collect();
    match ctx.global.format {
        Format::Json => crate::out::merge(serde_json::json!({ "images": rows })),
        Format::Text => {
            for r in rows {
                println!(
                    "{} {} {}",
                    r["image"].as_str().unwrap_or(""),
                    r["reference"].as_str().unwrap_or(""),
                    r["digest"].as_str().unwrap_or("-")
                );
            }
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `--tag`, else HEAD's; a dirty tree is refused unless `--allow-dirty`, which marks the tag.
fn tag(args: &Build) -> Result<String> {
    if let Some(t) = &args.tag {
        validate::tag(t)?;
        return Ok(t.clone());
    }
    let base = crate::repo::head_tag()?;
    let status = crate::cmd::probe(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
        Some(&workspace_root()),
    )
    .unwrap_or_default();
    if status.trim().is_empty() {
        return Ok(base);
    }
    if !args.allow_dirty {
        bail!("the working tree has uncommitted changes: commit them, or pass --allow-dirty (the tag then ends in -dirty)");
    }
    Ok(format!("{base}-dirty"))
}
