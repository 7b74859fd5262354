//! `audit verify|show|repair`: the hash-chained audit log of each environment.
//!
//! - `verify` walks each chain and compares it with its sink; it names the
//!   first bad line and its kind, and exits 6 on any problem. Read-only.
//! - `show` prints records with their line numbers in the familiar line
//!   form (or JSON), reasons shortened unless `--full`. Read-only; on a
//!   broken chain it still prints what is there, marks the first bad line
//!   `!` and every line after it `?` (unverified), then exits 6.
//! - `repair` is the only task that removes bytes: a torn last line (a
//!   crash mid-write), exactly those bytes, and it catches up a sink that
//!   is missing or behind. It records a `repair` event. Tampering is never
//!   "repaired": that is for a human with the sink and the CI logs.
//!
//! Needs: the config and the state directory; no engine.
//! Never touches: containers, images, the deploy lock (except that repair
//! holds it while it runs), and any record that verified.

use anyhow::{bail, Result};
use serde_json::json;

use crate::audit::{numbered, Kind, Log, SinkState, Tip};
use crate::config::Config;
use crate::ctx::Ctx;
use crate::exec::Actions;
use crate::exit::{fail, Code};
use crate::flags::Format;
use crate::plan::{Effect, Plan, RecordSpec, Step};
use crate::validate;

/// The environments a command covers: the one named (the JSON
/// document's `env`), else all of them.
fn envs(cfg: &Config, env: Option<&str>) -> Result<Vec<String>> {
    match env {
        Some(e) => {
            cfg.env(e)?;
            crate::out::set("env", e);
            Ok(vec![e.to_string()])
        }
        None => Ok(cfg.envs.keys().cloned().collect()),
    }
}

/// The JSON document's `audit_head`: the head of the one chain read, when
/// it verifies (several chains have theirs in `chains`).
fn one_head<E>(envs: &[String], local: &std::result::Result<Tip, E>) {
    if let (1, Ok(t)) = (envs.len(), local) {
        crate::out::set("audit_head", t.head_hex());
    }
}

/// `--expect-head`: 64 hex digits, either case.
fn expected_head(h: &str) -> Result<String> {
    let h = h.trim().to_ascii_lowercase();
    if h.len() != 64 || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        bail!("invalid --expect-head {h:?}: a head is 64 hex digits (the `audit head:` a task printed)");
    }
    Ok(h)
}

pub fn verify(ctx: &Ctx, env: Option<String>, expect_head: Option<String>) -> Result<()> {
    let cfg = ctx.config()?;
    let envs = envs(&cfg, env.as_deref())?;
    let expect = expect_head.as_deref().map(expected_head).transpose()?;
    if expect.is_some() && envs.len() != 1 {
        bail!("--expect-head is one chain's head: pass --env ENV with it");
    }
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for e in &envs {
        let log = ctx.log(&cfg, e)?;
        let c = log.check()?;
        one_head(&envs, &c.local);
        let mut problems = c.problems(&log);
        if let (Some(want), Ok(t)) = (&expect, &c.local) {
            let head = t.head_hex();
            if &head != want {
                let where_ = match log.line_of(want)? {
                    Some(k) => format!(
                        "it is line {k} of {}: {} record(s) were appended after it",
                        t.count,
                        t.count - k
                    ),
                    None => "it is no line of this log: the record it anchored was deleted or changed, or the chain was rewritten".into(),
                };
                problems.push(format!(
                    "head {head} ({} records) is not the expected {want}: {where_}",
                    t.count
                ));
            }
        }
        if ctx.global.format == Format::Text {
            if let Ok(t) = &c.local {
                println!("{e}: {} records, head {}", t.count, t.head_hex());
            }
            if let Some((p, s)) = &c.sink {
                // Always one line per sink, so scripts find its path
                // (scripts/check-audit-sink.sh): the path, then ": ", then
                // a summary without ": ".
                let summary = match s {
                    SinkState::Match { count } => format!("{count} records, matches the local log"),
                    _ => "does not match the local log (see the error)".to_string(),
                };
                println!("{e}: sink {}: {summary}", p.display());
            }
        }
        reports.push(json!({
            "env": e,
            "ok": problems.is_empty(),
            "path": log.path,
            "count": c.local.as_ref().ok().map(|t| t.count),
            "head": c.local.as_ref().ok().map(|t| t.head_hex()),
            "break": c.local.as_ref().err(),
            "sink": c.sink.as_ref().map(|(p, s)| json!({"path": p, "status": s})),
            "expected_head": expect,
            "problems": problems,
        }));
        failures.extend(problems.into_iter().map(|p| format!("{e}: {p}")));
    }
    if ctx.global.format == Format::Json {
        crate::out::merge(json!({ "chains": reports }));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(fail(Code::Verify, failures.join("; ")))
    }
}

/// Reasons longer than this are shortened by `show` unless `--full`.
pub const SHOW_REASON: usize = 200;

pub fn show(ctx: &Ctx, env: Option<String>, n: Option<usize>, full: bool) -> Result<()> {
    let cfg = ctx.config()?;
    let envs = envs(&cfg, env.as_deref())?;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    let mut cut = false;
    for e in &envs {
        let log = ctx.log(&cfg, e)?;
        let lines = log.lines()?;
        let c = log.check()?;
        one_head(&envs, &c.local);
        let skip = n.map_or(0, |n| lines.len().saturating_sub(n));
        match ctx.global.format {
            Format::Text => {
                if envs.len() > 1 {
                    println!("# {e}");
                }
                let max = if full { usize::MAX } else { SHOW_REASON };
                let (text, c) = numbered(&lines, c.local.as_ref().err(), skip, max);
                cut |= c;
                for l in text {
                    println!("{l}");
                }
            }
            Format::Json => {
                for (i, l) in lines.iter().enumerate().skip(skip) {
                    out.push(match l {
                        Ok(r) => serde_json::to_value(r)?,
                        Err(text) => json!({"env": e, "line": i + 1, "not_a_record": text}),
                    });
                }
            }
        }
        failures.extend(c.problems(&log).into_iter().map(|p| format!("{e}: {p}")));
    }
    if ctx.global.format == Format::Json {
        crate::out::merge(json!({ "records": out }));
    }
    if cut {
        eprintln!(
            "reasons longer than {SHOW_REASON} characters were shortened: --full shows them whole"
        );
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(fail(
            Code::Verify,
            format!(
                "the records above come from a log that does not verify: {}",
                failures.join("; ")
            ),
        ))
    }
}

/// Runs repair's two actions; each re-checks, under the log's lock, that
/// the file is still what planning saw.
struct Repair {
    log: Log,
    torn: Option<(u64, u64)>,
}

impl Actions for Repair {
    fn run(&mut self, id: &str) -> Result<()> {
        match (id, self.torn) {
            ("truncate-torn", Some((offset, len))) => {
                let n = self.log.truncate_torn(offset, len)?;
                eprintln!("truncated {n} torn bytes of {}", self.log.path.display());
                Ok(())
            }
            ("catch-up-sink", _) => {
                let n = self.log.catch_up_sink()?;
                eprintln!("copied {n} record(s) to the audit sink");
                Ok(())
            }
            _ => bail!("audit repair has no action `{id}`"),
        }
    }
}

pub fn repair(ctx: &Ctx, env: &str, reason: &str) -> Result<()> {
    validate::reason(reason)?;
    let cfg = ctx.config()?;
    let log = ctx.log(&cfg, env)?;
    let path = log.path.display().to_string();
    let c = log.check()?;
    let mut plan = Plan::new("audit repair", Some(env));
    let mut steps = Vec::new();
    let mut done = Vec::new();
    let mut torn = None;
    let local_count = match &c.local {
        Ok(t) => {
            plan.fact("audit chain", format!("{} records, head {}", t.count, t.head_hex()), &path);
            t.count
        }
        Err(b) if b.kind == Kind::Torn => {
            plan.fact("audit chain", b.to_string(), &path);
            steps.push(Step::action(
                "truncate-torn",
                format!(
                    "truncate the torn last line of {path}: the {} bytes from offset {} (line {}); nothing before it changes",
                    b.tail_len, b.offset, b.line
                ),
                Effect::Mutating,
            ));
            done.push(format!("truncated {} torn bytes of line {}", b.tail_len, b.line));
            torn = Some((b.offset, b.tail_len));
            b.line - 1
        }
        Err(b) => {
            return Err(fail(
                Code::Verify,
                format!(
                    "{env}: {path}: {b}: repair only truncates a torn last line and catches up a sink; a changed chain is evidence, not damage: \
                     compare with the sink and the heads in CI logs (`cargo xtask audit show {env}`)"
                ),
            ))
        }
    };
    match &c.sink {
        Some((p, s)) if s.repairable() => {
            plan.fact(
                "audit sink",
                s.describe(p, local_count),
                &p.display().to_string(),
            );
            let what = match s {
                SinkState::Behind { sink_count, torn_bytes } if *torn_bytes > 0 => format!(
                    "truncate the {torn_bytes} torn bytes of the sink {} and append the local records after line {sink_count}",
                    p.display()
                ),
                SinkState::Behind { sink_count, .. } => {
                    format!("append the local records after line {sink_count} to the sink {}", p.display())
                }
                _ => format!("create the sink {} with the {local_count} local records", p.display()),
            };
            steps.push(Step::action("catch-up-sink", what, Effect::Mutating));
            done.push("caught up the sink".to_string());
        }
        Some((p, s)) if !s.is_match() => {
            return Err(fail(
                Code::Verify,
                format!(
                    "{env}: {}; repair does not touch a sink that diverges",
                    s.describe(p, local_count)
                ),
            ));
        }
        _ => {}
    }
    if steps.is_empty() {
        let head = c.local.as_ref().map(|t| t.head_hex()).unwrap_or_default();
        eprintln!("nothing to repair: {env}'s chain verifies and its sink (if any) matches");
        match ctx.global.format {
            Format::Text => println!("audit head: {head}"),
            Format::Json => {
                crate::out::set("env", env);
                crate::out::set("outcome", "nothing to repair");
                crate::out::set("audit_head", head.clone());
            }
        }
        return Ok(());
    }
    plan.step(Step::Lock {
        env: env.into(),
        path: log.path.with_file_name("deploy.lock"),
        wait_secs: 0,
        task: "audit repair".into(),
        planned_head: None,
    });
    for s in steps {
        plan.step(s);
    }
    plan.record = Some(RecordSpec {
        env: env.into(),
        log: log.path.clone(),
        sink: log.sink.clone(),
        action: "repair".into(),
        from: None,
        to: None,
        reason: format!("{reason} ({})", done.join("; ")),
        from_digest: None,
        to_digest: None,
        from_digests: Default::default(),
        to_digests: Default::default(),
        to_local: Default::default(),
        repository: None,
        force: false,
        sets_of: None,
        notify: None,
    });
    let mut actions = Repair { log, torn };
    ctx.finish(&plan, &mut actions)
}
