//! The dynamic steps of one mode: boot the boot stack as a fresh compose
//! project on free loopback ports, probe it, and tear it down.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{compose, BootSpec, Inside, Kind, Spec};
use crate::tasks::security_modes::policy::{Mode, Policy, Stack};
use crate::tasks::security_modes::proc::{Command, Effect};

/// `docker inspect` of a container's addresses, one per network.
const ADDRESS_FORMAT: &str = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}";

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
    let ports = crate::repo::free_ports(boot.ports.len() + boot.free_ports.len())?;
    let (probed, unprobed) = ports.split_at(boot.ports.len());
    for ((svc, var), port) in boot.ports.iter().zip(probed) {
        up = up.env(var, port.to_string());
        bases.insert(svc.clone(), format!("http://127.0.0.1:{port}"));
    }
    for (var, port) in boot.free_ports.iter().zip(unprobed) {
        up = up.env(var, port.to_string());
    }
    let down = up
        .clone()
        .args(["down", "-v", "--remove-orphans", "--timeout", "2"]);
    let logs = Command {
        effect: Effect::ReadOnly,
        ..up.clone()
    }
    .args(["logs", "--no-color", "--tail", "20"]);
    // Compose v2 names a service's first container <project>-<service>-1.
    let inside: Vec<Inside> = boot
        .container_ports
        .iter()
        .map(|(svc, port)| Inside {
            service: svc.clone(),
            port: *port,
            inspect: Command::new("docker", Effect::ReadOnly)
                .args(["inspect", "--format", ADDRESS_FORMAT])
                .arg(format!("{project}-{svc}-1")),
        })
        .collect();
    let up = up.args(["up", "-d", "--no-build"]);
    let mut at: Vec<String> = bases
        .iter()
        .map(|(s, b)| format!("{s} on {}", b.trim_start_matches("http://")))
        .collect();
    at.extend(inside.iter().map(|i| {
        format!(
            "{} on port {} of its container's address, from `{}`",
            i.service,
            i.port,
            i.inspect.display()
        )
    }));
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
            inside,
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
