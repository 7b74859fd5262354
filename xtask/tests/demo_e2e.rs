//! The demo stopped by a signal still takes its stacks down: a mutating
//! task leaves nothing of its own running after SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn running(project: &str) -> Vec<String> {
    let o = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_signal_mid_demo_still_takes_its_stacks_down() {
    images();
    let project = "fetchml-testbed-staging";
    let mut child = xtask_bin()
        .arg("demo")
        .current_dir(root())
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the demo's staging stack is up (its first deploy).
    let start = Instant::now();
    while running(project).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(240) && child.try_wait().unwrap().is_none(),
            "the demo never started {project}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", text(&o));
    assert!(
        running(project).is_empty(),
        "{project} is still up: {}",
        text(&o)
    );
}
