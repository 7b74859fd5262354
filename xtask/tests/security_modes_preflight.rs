//! `security-modes-test` for a tag whose image was never built: a missing
//! input, so preflight stops with exit 2 and one line naming the build
//! command, before any render, boot or probe (it used to be a failed boot
//! and every probe of every mode, exit 6). Needs the engines (`cargo xtask
//! setup`, which the test runs): the daemon answers that the image is
//! neither in the local store nor in the local registry.

mod common;

use std::process::Output;

use common::{exit_code, root, text, xtask_bin};

/// A release-shaped tag no build ever produced.
fn unbuilt_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "sha-{:012x}",
        (nanos ^ u128::from(std::process::id())) & 0xffff_ffff_ffff
    )
}

fn run(state: &std::path::Path, args: &[&str]) -> Output {
    xtask_bin()
        .args(["--config", "deployments/testbed/deploy.toml", "--state-dir"])
        .arg(state)
        .arg("security-modes-test")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// Exit 2, one error line naming the image and the build command, no report.
fn one_preflight_line(o: &Output, tag: &str) {
    assert_eq!(exit_code(o), 2, "{}", text(o));
    let err = common::stderr(o);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    let want = format!(
        "error: preflight failed: the image for tag {tag} was never built (not in the local store, \
         not in its registry): 127.0.0.1:5000/fetchml/testbed:{tag}; build it with \
         `cargo xtask --config deployments/testbed/deploy.toml build --push --tag {tag}`"
    );
    assert_eq!(errors[0], want);
    let out = common::stdout(o);
    assert!(
        !out.contains("FAIL") && !out.contains("MODE"),
        "no rule ran, so no report: {out}"
    );
    assert!(
        !err.lines()
            .any(|l| l.starts_with("render ") || l.starts_with("boot ")),
        "nothing rendered or booted after the preflight: {err}"
    );
}

#[test]
fn a_tag_never_built_is_one_preflight_line_naming_the_build_command() {
    common::engines();
    let state = tempfile::tempdir().unwrap();
    let tag = unbuilt_tag();
    let o = run(state.path(), &["--mode", "hipaa", "--tag", &tag]);
    one_preflight_line(&o, &tag);
}

#[test]
fn a_full_run_stops_at_the_same_line() {
    common::engines();
    let state = tempfile::tempdir().unwrap();
    let tag = unbuilt_tag();
    let o = run(state.path(), &["--tag", &tag]);
    one_preflight_line(&o, &tag);
}

#[test]
fn static_only_needs_no_image() {
    // The static checks judge files: a tag without an image is fine there.
    common::engines();
    let state = tempfile::tempdir().unwrap();
    let tag = unbuilt_tag();
    let o = run(state.path(), &["--static-only", "--tag", &tag]);
    assert_eq!(exit_code(&o), 0, "{}", text(&o));
}
