//! The dynamic steps of one mode: boot the boot stack as a fresh compose
//! project on free loopback ports, probe it, and tear it down.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{compose, BootSpec, Kind, Spec};
use crate::tasks::security_modes::policy::{Mode, Policy, Stack};
use crate::tasks::security_modes::proc::{Command, Effect};

/// Boot, probe and teardown of `m` on the boot stack `sname`.
pub(super) fn specs(
    policy: &Policy,
    m: &Mode,
    sname: &str,
    stack: &Stack,
    tag: &str,
) -> Result<Vec<Spec>> {
    let mut out = Vec::new();
    let boot = stack
        .boot
        .as_ref()
        .context("the boot stack has no boot table")?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        & 0xffff;
    let project = format!("smt-{}-{}-{nonce:04x}", m.name, std::process::id());
    let mut up = compose(
        &project,
        stack,
        policy.resolve(&m.overlay),
        policy,
        Effect::Mutating,
    )
    .env(&stack.tag_var, tag);
    let mut bases = BTreeMap::new();
    let ports = crate::repo::free_ports(boot.ports.len())?;
    for ((svc, var), port) in boot.ports.iter().zip(ports) {
        up = up.env(var, port.to_string());
        bases.insert(svc.clone(), format!("http://127.0.0.1:{port}"));
    }
    let down = up
        .clone()
        .args(["down", "-v", "--remove-orphans", "--timeout", "2"]);
    let logs = Command {
        effect: Effect::ReadOnly,
        ..up.clone()
    }
    .args(["logs", "--no-color", "--tail", "20"]);
    let up = up.args(["up", "-d", "--no-build"]);
    let at: Vec<String> = bases
        .iter()
        .map(|(s, b)| format!("{s} on {}", b.trim_start_matches("http://")))
        .collect();
    let ready: Vec<String> = boot
        .ready
        .expect
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let what = format!(
        "boot {} on {sname} as compose project {project} ({}), then wait up to {}s for GET {} {}: {}",
        m.name,
        at.join(", "),
        boot.timeout_secs,
        boot.ready.path,
        ready.join(", "),
        up.display()
    );
    out.push(Spec::new(
        format!("boot/{}", m.name),
        what,
        Effect::Mutating,
        Kind::Boot(Box::new(BootSpec {
            mode: m.name.clone(),
            project: project.clone(),
            up,
            down: down.clone(),
            logs,
            bases,
        })),
    ));
    let what = format!(
        "probe {}: {}",
        m.name,
        m.probes
            .iter()
            .map(|p| match policy.probes.get(p) {
                Some(probe) => format!("{p} ({})", probe.describe()),
                None => p.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    );
    out.push(Spec::new(
        format!("probe/{}", m.name),
        what,
        Effect::ReadOnly,
        Kind::Probe {
            mode: m.name.clone(),
        },
    ));
    let what = format!(
        "tear down {project} (this run's own project, also after a failure): {}",
        down.display()
    );
    out.push(Spec::new(
        format!("teardown/{}", m.name),
        what,
        Effect::Mutating,
        Kind::Teardown {
            mode: m.name.clone(),
        },
    ));
    Ok(out)
}
