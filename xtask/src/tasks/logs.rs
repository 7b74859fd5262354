//! `logs ENV [SERVICE]`: the app services' own log lines, of the set that
//! serves by default (blue/green), or of the standby or a named set.
//!
//! Read-only: no lock, no record. The set is found as `status` finds it:
//! the containers by their `fetchml.slot` label, the serving one by asking
//! the proxy where its routes point. On blue/green the lines come from
//! `docker logs` of each of the set's containers (prefixed with the
//! container's name); an in-place compose stack has one set, read with
//! `compose logs`; on Swarm, `docker service logs` of each service.
//! Every argument is checked before any command runs; `--dry-run` shows
//! the commands. `-f` has no time limit; a signal stops every stream's
//! process group, and the task ends with 128 + the signal.

use anyhow::{bail, Context, Result};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::audit::since;
use crate::cmd::{self, Command, Effect};
use crate::config::EngineKind;
use crate::engine::slots::{Container, Slot};
use crate::engine::Target;
use crate::exec::NoActions;
use crate::exit::{fail, Code};
use crate::flags::{Format, Logs};
use crate::plan::{Plan, Step};
use crate::preflight::Tool;
use crate::Ctx;

/// Which set's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Serving,
    Standby,
    Named(Slot),
}

fn which(s: &str) -> Result<Which> {
    Ok(match s {
        "serving" => Which::Serving,
        "standby" => Which::Standby,
        "blue" => Which::Named(Slot::Blue),
        "green" => Which::Named(Slot::Green),
        "amber" => Which::Named(Slot::Amber),
        _ => bail!("unknown set `{s}`: give serving, standby, blue, green or amber"),
    })
}

/// The options every log command gets, in docker's spelling.
fn options(follow: bool, since: Option<&str>, tail: Option<u32>) -> Vec<String> {
    let mut o = Vec::new();
    if follow {
        o.push("--follow".to_string());
    }
    if let Some(s) = since {
        o.extend(["--since".to_string(), s.to_string()]);
    }
    if let Some(n) = tail {
        o.extend(["--tail".to_string(), n.to_string()]);
    }
    o
}

pub fn run(ctx: &Ctx, a: Logs) -> Result<()> {
    // Bad input first, each in one line, before the config is even read.
    let set = which(&a.set)?;
    let since = a
        .since
        .as_deref()
        .map(|w| since(w, OffsetDateTime::now_utc()))
        .transpose()?
        .map(|t| t.format(&Rfc3339))
        .transpose()
        .context("formatting --since")?;
    if a.follow && ctx.global.format == Format::Json {
        bail!("--follow streams lines as they come, and --format json prints one document at the end: drop one of them");
    }
    let cfg = ctx.config()?;
    let env = cfg.env(&a.env)?;
    crate::out::set("env", a.env.as_str());
    let services: Vec<String> = match &a.service {
        Some(s) if env.app_services.contains(s) => vec![s.clone()],
        Some(s) => bail!(
            "unknown service `{s}` in `{}`: its app services are {}",
            a.env,
            env.app_services.join(", ")
        ),
        None => env.app_services.clone(),
    };
    let mut plan = Plan::new("logs", Some(&a.env));
    let cli = ctx.preflight(&mut plan, &[Tool::Docker, Tool::Compose], true)?;
    let target = Target::untagged(&cfg, &a.env, env, cli)?;
    let opts = options(a.follow, since.as_deref(), a.tail);
    if !target.blue_green() && set != Which::Serving {
        bail!(
            "`{}` runs one set (no blue/green on {}): there is no standby or named set; drop --set",
            a.env,
            match env.engine {
                EngineKind::Compose => "an in-place compose stack",
                EngineKind::Swarm => "swarm",
            }
        );
    }
    let (cmds, prefixes) = match env.engine {
        // Per container, found by the project's labels: on blue/green
        // `compose logs SERVICE` would mix the sets, and it would need
        // the tag variable and every `${NAME}` var only to read logs.
        EngineKind::Compose => {
            let containers = target.containers()?;
            let slot = match target.blue_green() {
                true => Some(find_set(&target, set, &containers, &services, &mut plan)?),
                false => None,
            };
            let mine: Vec<&Container> = containers
                .iter()
                .filter(|c| slot.is_none_or(|s| c.slot == s) && services.contains(&c.service))
                .collect();
            if mine.is_empty() {
                bail!(
                    "no {} container in `{}`: nothing is deployed there yet",
                    services.join(" or "),
                    a.env
                );
            }
            let cmds: Vec<Command> = mine
                .iter()
                .map(|c| {
                    Command::new("docker", Effect::ReadOnly)
                        .arg("logs")
                        .args(opts.clone())
                        .arg(c.name.clone())
                })
                .collect();
            (
                cmds,
                mine.iter().map(|c| format!("{} | ", c.name)).collect(),
            )
        }
        // Swarm prefixes each line with its task.
        EngineKind::Swarm => {
            let cmds: Vec<Command> = services
                .iter()
                .map(|s| {
                    Command::new("docker", Effect::ReadOnly)
                        .args(["service", "logs", "--no-task-ids"])
                        .args(opts.clone())
                        .arg(target.service_name(s))
                })
                .collect();
            let n = cmds.len();
            (cmds, vec![String::new(); n])
        }
    };
    // A follow runs until stopped; the rest keep the engine's look-up limit.
    let cmds: Vec<Command> = cmds
        .into_iter()
        .map(|c| match a.follow {
            true => c,
            false => c.timeout(target.limits().look_up_secs.max(60)),
        })
        .collect();
    for c in &cmds {
        plan.step(Step::run("print the log lines", c.clone()));
    }
    let follow = a.follow;
    let json = ctx.global.format == Format::Json;
    ctx.finish_with(&plan, &mut NoActions, |_, _| {
        let mut lines = Vec::new();
        let mut stdout = std::io::stdout();
        let streamed = cmd::lines(&cmds, !follow, |i, l| match json {
            true => {
                lines.push(
                    serde_json::json!({"source": prefixes[i].trim_end_matches(" | "), "line": l}),
                );
                true
            }
            // `logs -f | head`: a closed stdout ends the follow quietly.
            false => {
                use std::io::Write as _;
                writeln!(stdout, "{}{l}", prefixes[i])
                    .and_then(|()| stdout.flush())
                    .is_ok()
            }
        });
        if json {
            crate::out::merge(serde_json::json!({ "lines": lines }));
        }
        match streamed {
            Err(e) if e.downcast_ref::<cmd::Interrupted>().is_some() => Err(fail(
                Code::of_signal(),
                format!("{e}: the log streams were stopped"),
            )),
            other => other,
        }
    })
}

/// Blue/green: the slot `set` names, shown as a fact with its traffic.
fn find_set(
    target: &Target,
    set: Which,
    containers: &[Container],
    services: &[String],
    plan: &mut Plan,
) -> Result<Slot> {
    // A named set needs no proxy; serving and standby are relative to it.
    let asked = target.live_slot(containers);
    let live = match (set, &asked) {
        (Which::Named(_), Err(_)) => None,
        (_, Ok(l)) => *l,
        (_, Err(e)) => bail!(
            "the proxy cannot say which set serves ({e:#}): name one with --set blue|green|amber"
        ),
    };
    let slot = pick(set, live, containers, services)?;
    let traffic = match &asked {
        Ok(l) if *l == Some(slot) => "serving",
        Ok(_) => "no traffic",
        Err(_) => "traffic unknown: the proxy does not answer",
    };
    plan.fact(
        "set",
        format!("{} ({traffic})", slot.name()),
        "the containers' labels and the proxy's routes",
    );
    Ok(slot)
}

/// The set `which` names, among the sets `containers` hold.
fn pick(
    which: Which,
    live: Option<Slot>,
    containers: &[Container],
    services: &[String],
) -> Result<Slot> {
    let mut held: Vec<Slot> = containers
        .iter()
        .filter(|c| services.contains(&c.service))
        .map(|c| c.slot)
        .collect();
    held.sort();
    held.dedup();
    let names = |v: &[Slot]| v.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
    match which {
        Which::Serving => live.with_context(|| {
            format!(
                "no set serves: the proxy routes to no labelled set (sets: {}); name one with --set",
                if held.is_empty() { "none".to_string() } else { names(&held) }
            )
        }),
        Which::Named(s) if held.contains(&s) => Ok(s),
        Which::Named(s) => bail!(
            "no {} set: the sets are {}",
            s.name(),
            if held.is_empty() { "none".to_string() } else { names(&held) }
        ),
        Which::Standby => {
            let standby: Vec<Slot> = held.into_iter().filter(|s| Some(*s) != live).collect();
            match standby[..] {
                [one] => Ok(one),
                [] => bail!("no standby set: only the serving set has containers"),
                _ => bail!(
                    "several sets have no traffic ({}): name one with --set",
                    names(&standby)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, service: &str, slot: Slot) -> Container {
        Container {
            name: name.into(),
            service: service.into(),
            slot,
            tag: "t".into(),
            digest: None,
            running: true,
        }
    }

    #[test]
    fn the_standby_is_the_one_other_set_and_a_named_set_must_exist() {
        let svc = vec!["api".to_string()];
        let two = [c("a-1", "api", Slot::Blue), c("a-2", "api", Slot::Green)];
        let live = Some(Slot::Green);
        assert_eq!(pick(Which::Serving, live, &two, &svc).unwrap(), Slot::Green);
        assert_eq!(pick(Which::Standby, live, &two, &svc).unwrap(), Slot::Blue);
        assert_eq!(
            pick(Which::Named(Slot::Blue), None, &two, &svc).unwrap(),
            Slot::Blue
        );
        let e = pick(Which::Named(Slot::Amber), live, &two, &svc).unwrap_err();
        assert_eq!(e.to_string(), "no amber set: the sets are blue, green");
        let three = [two[0].clone(), two[1].clone(), c("a-3", "api", Slot::Amber)];
        let e = pick(Which::Standby, live, &three, &svc).unwrap_err();
        assert!(
            e.to_string()
                .contains("several sets have no traffic (blue, amber)"),
            "{e}"
        );
        let e = pick(Which::Standby, live, &two[1..], &svc).unwrap_err();
        assert!(e.to_string().starts_with("no standby set"), "{e}");
        let e = pick(Which::Serving, None, &two, &svc).unwrap_err();
        assert!(e.to_string().starts_with("no set serves"), "{e}");
        assert!(which("purple").is_err());
    }

    #[test]
    fn options_follow_docker_spelling() {
        assert_eq!(
            options(true, Some("2026-01-01T00:00:00Z"), Some(5)),
            ["--follow", "--since", "2026-01-01T00:00:00Z", "--tail", "5"]
        );
        assert!(options(false, None, None).is_empty());
    }
}
