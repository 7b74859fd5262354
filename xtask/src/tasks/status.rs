//! `status <env>` and `history <env>`: what runs, what ran before and what
//! a rollback would go back to, derived only from the environment's audit
//! chain (the one source of truth; there is no second deployment log).
//!
//! In text, every line of `status` fits [`WIDTH`] columns (a long reason
//! is shortened with `…`; `audit show --full` and `--format json` have it
//! whole). `status` also shows a running deploy and a maintenance hold,
//! when there is one (`cargo xtask lock status` shows both always).
//! `history -n N --since WHEN` narrows the list to the newest N deployments
//! at or after WHEN.
//!
//! Needs: the config and the state directory; `status` also asks the
//! engine what runs (`docker ps` / `docker service ls`, read-only) and
//! shows any drift from the chain, exiting 7 when there is some. Without a
//! reachable engine it shows the chain alone and says so. It then checks
//! what serves, live ([`live`]): the serving version's health with the
//! gate's contract, and on blue/green the standby sets and the proxy; a
//! serving version that fails or a proxy that is down is exit 8, which
//! goes before drift's 7.
//! Never touches: anything; both are read-only. A chain that does not
//! verify is not summarised: they exit 6 and point at `audit show`.

use anyhow::Result;
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::{at_or_after, fit, fitted, line_form, since, History, Log, Record, Tip};
use crate::config::Config;
use crate::ctx::Ctx;
use crate::engine::{ComposeCli, Target};
use crate::exit::{fail, Code};
use crate::flags::{self, Format};
use crate::lock::{self, Running};
use crate::rollout::{default_target, Now};

mod live;

/// The widest line `status` prints in text.
pub const WIDTH: usize = 100;

/// The verified chain of `env` as history, or exit 6.
fn load(ctx: &Ctx, cfg: &Config, env: &str) -> Result<(Log, Tip, History, Vec<String>)> {
    let log = ctx.log(cfg, env)?;
    let c = log.check()?;
    let tip = match &c.local {
        Ok(t) => *t,
        Err(b) => {
            return Err(fail(
                Code::Verify,
                format!(
                    "{env}: {}: {b}: history is derived from the chain and this one does not verify; look with `cargo xtask audit show {env}`",
                    log.path.display()
                ),
            ))
        }
    };
    let problems = c.problems(&log);
    let h = History::new(log.records()?);
    Ok((log, tip, h, problems))
}

fn done(env: &str, problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(fail(
            Code::Verify,
            format!("{env}: {}", problems.join("; ")),
        ))
    }
}

/// What the engine runs for `env`, reconciled with the chain; `Err` when
/// the engine could not be asked (status then shows the chain alone).
/// With it, the environment's target, when the config makes one.
fn engine_now(
    cfg: &Config,
    env: &str,
    h: &History,
) -> (Option<Target>, std::result::Result<Now, String>) {
    let e = match cfg.env(env) {
        Ok(e) => e,
        Err(e) => return (None, Err(format!("{e:#}"))),
    };
    // The look-up is `docker ps` / `docker service ls`: the compose CLI's
    // flavour does not matter to it.
    let target = match Target::untagged(cfg, env, e, ComposeCli::V2Plugin) {
        Ok(t) => t,
        Err(e) => return (None, Err(format!("{e:#}"))),
    };
    let (now, asked) = Now::of(&target, h);
    let now = asked.map(|()| now).map_err(|e| format!("{e:#}"));
    (Some(target), now)
}

pub fn status(ctx: &Ctx, env: &str) -> Result<()> {
    let cfg = ctx.config()?;
    cfg.env(env)?;
    crate::out::set("env", env);
    // What the engine and the health endpoints say now, asked where the
    // environment lives.
    ctx.locate(&cfg, env, &mut crate::plan::Plan::new("status", Some(env)))?;
    ctx.reach(env)?;
    let (log, tip, h, problems) = load(ctx, &cfg, env)?;
    let (set_target, now) = engine_now(&cfg, env, &h);
    let drift = now.as_ref().ok().and_then(Now::drift);
    let target = match &now {
        Ok(n) => default_target(&h, n),
        Err(_) => h.previous_good().map(str::to_string),
    };
    let serving = now.as_ref().ok().and_then(Now::running).or(h.current());
    let live = live::check(
        cfg.env(env)?,
        set_target.as_ref(),
        now.as_ref().ok(),
        serving,
        target.as_deref(),
    );
    // The standby a rollback would switch to, else any standby (the
    // version `--to` can name when the history has no earlier one).
    let standby = live
        .standby
        .iter()
        .find(|s| s.rollback_target)
        .or(live.standby.first());
    crate::out::set("audit_head", tip.head_hex());
    let last = h.records.last();
    let sink = log.sink.as_ref().map(|p| p.display().to_string());
    let lock = log.path.with_file_name(lock::LOCK_FILE);
    let (running, hold) = (lock::running(&lock), lock::read_hold(&lock));
    match ctx.global.format {
        Format::Json => crate::out::merge(json!({
            "env": env,
            "current": h.current(),
            "current_digest": h.current_ref().and_then(|r| r.digest.as_deref()),
            "rollback_target": target,
            "rollback_target_digest": target.as_deref().and_then(|t| h.digest_of(t)),
            "engine": match &now {
                Ok(n) => json!({"services": n.engine.services, "tag": n.running()}),
                Err(e) => json!({"error": e}),
            },
            "drift": drift,
            "last_event": last,
            "records": tip.count,
            "head": tip.head_hex(),
            "sink": sink,
            "running": running,
            "maintenance": hold.as_ref().ok().cloned().flatten(),
            "problems": problems,
            "health": live.serving,
            "standby": live.standby,
            "proxy": live.proxy,
            "failed_check": live.failed,
            "live_ms": live.took_ms,
        })),
        Format::Text => {
            let sink = match (&sink, problems.first()) {
                (None, _) => "none configured".to_string(),
                (Some(p), None) => format!("{p} (matches)"),
                (Some(p), Some(_)) => format!("{p} (DOES NOT MATCH, see below)"),
            };
            let mut lines = status_lines(env, &h, last, &sink, tip, (&running, &hold));
            let engine = match &now {
                Ok(n) => format!("running now: {} (the engine)", n.describe()),
                Err(e) => format!("running now: unknown ({e})"),
            };
            let mut extra = vec![engine];
            if let Some(d) = &drift {
                extra.push(format!("DRIFT: {d}"));
            }
            extra.extend(live_lines(&live));
            if target.as_deref() != h.previous_good() {
                // What runs is not what the chain says: the target follows what runs.
                lines[2] = format!(
                    "rollback target: {} (relative to what runs)",
                    target.as_deref().map_or("none".into(), |t| version(&h, t))
                );
            }
            match standby {
                Some(s) if s.rollback_target => {
                    lines[2].push_str(&format!(": the {} standby, a switch", s.slot.name()))
                }
                Some(s) if target.is_none() => {
                    lines[2] = format!(
                    "rollback target: none in the history; `--to {}` switches to the {} standby",
                    s.version,
                    s.slot.name()
                )
                }
                _ => {}
            }
            lines.splice(3..3, extra.into_iter().map(|l| fit(&l, WIDTH)));
            for l in lines {
                println!("{l}");
            }
        }
    }
    done(env, problems)?;
    // What `rollback ENV` does, or what to give it when it has nothing.
    let advice = match (&target, standby) {
        (Some(t), _) => format!("`cargo xtask rollback {env}` puts back {t}"),
        (None, Some(s)) => format!(
            "there is no earlier good version; `cargo xtask rollback {env} --to {}` switches to the {} standby",
            s.version,
            s.slot.name()
        ),
        (None, None) => format!(
            "there is no earlier good version; `cargo xtask rollback {env} --to TAG` puts back the version you name"
        ),
    };
    if let Some(f) = &live.failed {
        crate::out::set("outcome", "unhealthy");
        let also = drift
            .as_ref()
            .map(|d| format!(" (and {d})"))
            .unwrap_or_default();
        return Err(fail(Code::Unhealthy, format!("{env}: {f}{also}; {advice}")));
    }
    match drift {
        Some(d) => {
            crate::out::set("outcome", "drift");
            Err(fail(Code::Drift, format!("{env}: {d}; {advice}")))
        }
        None => Ok(()),
    }
}

/// The live checks in text: the serving version's health, the proxy, and
/// each standby set with its version in full.
fn live_lines(live: &live::Live) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = &live.serving {
        out.push(match s.probes.iter().find(|p| !p.ok) {
            None => format!(
                "health: ok ({}{} at {} URL(s))",
                s.version,
                s.compliance_mode
                    .as_deref()
                    .map_or(String::new(), |m| format!(" in {m} mode")),
                s.probes.len()
            ),
            Some(p) => format!("health: FAILING: {}: {}", p.url, p.detail),
        });
    }
    if let Some(p) = &live.proxy {
        let state = if p.up { "up" } else { "DOWN" };
        out.push(format!("proxy: {state}: {}", p.detail));
    }
    for s in &live.standby {
        out.push(format!("standby: {}", s.describe()));
    }
    out
}

/// `tag@sha256:<12 hex>`, with the digest `tag` last ran with here (each
/// service's, where they differ).
fn version(h: &History, tag: &str) -> String {
    match h.ref_of(tag) {
        Some(r) => crate::audit::shown(r),
        None => tag.to_string(),
    }
}

/// The text of `status`, every line at most [`WIDTH`] columns. The lock
/// lines appear only while something holds the lock.
fn status_lines(
    env: &str,
    h: &History,
    last: Option<&Record>,
    sink: &str,
    tip: Tip,
    (running, hold): (&Running, &Result<Option<lock::Hold>>),
) -> Vec<String> {
    let mut out = vec![
        format!("env: {env}"),
        format!(
            "current: {}",
            h.current_ref()
                .map_or("none (nothing deployed yet)".into(), crate::audit::shown)
        ),
        format!(
            "rollback target: {}",
            h.previous_good()
                .map_or("none (nothing to roll back to)".into(), |t| version(h, t))
        ),
    ];
    let (event, shortened) = match last {
        None => (vec!["last event: none".to_string()], false),
        Some(r) => fitted("last event: ", r, WIDTH),
    };
    // Split over lines, the event's reason has a line of its own; so does
    // the tool's error (one line shows both).
    let split = event.len() > 1;
    out.extend(event);
    let mut shortened = shortened;
    if let Some(e) = last.and_then(|r| r.error.as_deref()).filter(|_| split) {
        let l = format!("  error={}", crate::audit::escape_value(e));
        shortened |= fit(&l, WIDTH) != l;
        out.push(l);
    }
    if shortened {
        out.push(format!(
            "  (shortened: `cargo xtask audit show {env} -n 1 --full` shows it whole)"
        ));
    }
    let (run, held) = lock::describe(env, running, hold);
    if !matches!(running, Running::Free) {
        out.push(run);
    }
    if !matches!(hold, Ok(None)) {
        out.extend(held);
    }
    out.push(format!("sink: {sink}"));
    out.push(format!("records: {}", tip.count));
    out.push(format!("audit head: {}", tip.head_hex()));
    out.into_iter().map(|l| fit(&l, WIDTH)).collect()
}

pub fn history(ctx: &Ctx, args: &flags::History) -> Result<()> {
    let env = args.env.as_str();
    let since = args
        .since
        .as_deref()
        .map(|w| since(w, OffsetDateTime::now_utc()))
        .transpose()?;
    let cfg = ctx.config()?;
    cfg.env(env)?;
    crate::out::set("env", env);
    let (_, tip, h, problems) = load(ctx, &cfg, env)?;
    crate::out::set("audit_head", tip.head_hex());
    let mut shown: Vec<&Record> = h
        .attempts()
        .filter(|r| since.is_none_or(|t| at_or_after(r, t)))
        .collect();
    if let Some(n) = args.n {
        shown.drain(..shown.len().saturating_sub(n));
    }
    match ctx.global.format {
        Format::Json => crate::out::merge(json!({
            "env": env,
            "deployments": shown,
            "current": h.current(),
            "rollback_target": h.previous_good(),
        })),
        Format::Text => {
            for r in &shown {
                println!("#{} {}", r.seq, line_form(r));
            }
            if shown.is_empty() {
                let narrowed = if args.n.is_some() || since.is_some() {
                    " (in the range asked for)"
                } else {
                    ""
                };
                eprintln!("no deployments recorded for {env}{narrowed}");
            }
            println!("current: {}", h.current().unwrap_or("none"));
            println!("rollback target: {}", h.previous_good().unwrap_or("none"));
        }
    }
    done(env, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{columns, ImageRef};

    fn rec(ts: &str, reason: &str) -> Record {
        let tag = |t: &str| Some(ImageRef::new(t, None));
        Record {
            seq: 1,
            ts: ts.into(),
            env: "staging".into(),
            action: "security-modes-test".into(),
            outcome: "failure".into(),
            from: tag("sha-aaaaaaaaaaaa"),
            to: tag("sha-bbbbbbbbbbbb"),
            git_sha: None,
            actor: "e2e-test (USER)".into(),
            host: "h".into(),
            reason: reason.into(),
            error: None,
            set: None,
            duration_ms: 1,
            prev: String::new(),
        }
    }

    fn lines(reason: &str, hold: Result<Option<lock::Hold>>) -> Vec<String> {
        let r = rec("2024-01-15T14:30:00.123456Z", reason);
        let h = History::new(vec![r.clone()]);
        let sink = format!("/very/long/{}/sink (matches)", "deep/".repeat(30));
        status_lines(
            "staging",
            &h,
            Some(&r),
            &sink,
            Tip::EMPTY,
            (&Running::Free, &hold),
        )
    }

    #[test]
    fn every_status_line_fits_100_columns_and_says_where_the_whole_reason_is() {
        let long = "rule FAIL: tls required but plaintext accepted; ".repeat(100)
            + "界".repeat(50).as_str();
        let out = lines(&long, Ok(None));
        for l in &out {
            assert!(
                l.chars().map(columns).sum::<usize>() <= WIDTH,
                "{} columns: {l}",
                l.len()
            );
        }
        let event = out
            .iter()
            .position(|l| l.starts_with("last event: "))
            .unwrap();
        assert_eq!(
            out[event],
            "last event: 2024-01-15T14:30:00Z | security-modes-test | failure"
        );
        assert!(
            out[event + 1].contains("to=sha-bbbbbbbbbbbb | actor=e2e-test (USER)"),
            "{out:?}"
        );
        let reason = &out[event + 2];
        assert!(
            reason.starts_with("  reason=rule FAIL: tls") && reason.ends_with('…'),
            "{reason}"
        );
        assert!(
            out.iter()
                .any(|l| l.contains("audit show staging -n 1 --full")),
            "{out:?}"
        );
        assert!(out
            .iter()
            .any(|l| l.starts_with("sink: /very/long/") && l.ends_with('…')));
        // A short reason is shown whole, with no hint and no lock lines.
        let out = lines("ok", Ok(None));
        assert!(out.iter().any(|l| l == "  reason=ok"), "{out:?}");
        assert!(!out
            .iter()
            .any(|l| l.contains("--full") || l.starts_with("maintenance")));
    }

    #[test]
    fn a_split_last_event_shows_the_tools_error_on_a_line_of_its_own() {
        let mut r = rec("2024-01-15T14:30:00.123456Z", &"a long reason ".repeat(10));
        r.error = Some("health gate failed after 8s".into());
        let h = History::new(vec![r.clone()]);
        let hold = Ok(None);
        let out = status_lines(
            "staging",
            &h,
            Some(&r),
            "x",
            Tip::EMPTY,
            (&Running::Free, &hold),
        );
        assert!(
            out.iter()
                .any(|l| l == "  error=health gate failed after 8s"),
            "{out:?}"
        );
    }

    #[test]
    fn a_maintenance_hold_is_shown() {
        let hold = lock::Hold {
            message: "db migration".into(),
            actor: "alice (USER)".into(),
            host: "ops-1".into(),
            since: "2024-01-15T14:30:00.123456Z".into(),
        };
        let out = lines("ok", Ok(Some(hold)));
        let m = out
            .iter()
            .find(|l| l.starts_with("maintenance: HELD"))
            .unwrap();
        assert!(
            m.contains("alice (USER) on ops-1 since 2024-01-15T14:30:00Z: \"db migration\""),
            "{m}"
        );
        assert!(m.chars().count() <= WIDTH);
    }
}
