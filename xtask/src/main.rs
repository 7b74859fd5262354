//! `cargo xtask`: parse flags, build one context, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
use clap::Parser as _;
use xtask::exit::code_of;
use xtask::flags::{usage_error, AuditCmd, LockCmd, Task, Xtask};
use xtask::{tasks, Ctx};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let flags = match Xtask::try_parse_from(&argv) {
        Ok(f) => f,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == DisplayHelpOnMissingArgumentOrSubcommand => {
            // `audit` or `lock` alone: its help, as bad input.
            let _ = e.print();
            return ExitCode::from(1);
        }
        Err(e) => {
            // Bad input is exit 1, like every other bad input (clap's own
            // exit code 2 would read as "preflight failed"), in one line.
            let msg = usage_error(&e, &argv);
            error_line(&msg);
            let json = argv
                .windows(2)
                .any(|w| w[0] == "--format" && w[1] == "json")
                || argv.iter().any(|a| a == "--format=json");
            if json {
                xtask::out::begin(&typed_task(&argv), true);
                xtask::out::finish(1, Some(msg.trim_start_matches("error: ")));
            }
            return ExitCode::from(1);
        }
    };
    xtask::out::begin(
        task_name(&flags.task),
        flags.global.format == xtask::flags::Format::Json,
    );
    if let Err(e) = xtask::cmd::install_signal_handlers() {
        xtask::out::line(true, format_args!("error: {e:#}"));
        return ExitCode::from(1);
    }
    let ctx = Ctx {
        global: flags.global,
    };
    let result = match flags.task {
        Task::Build(a) => tasks::build::run(&ctx, a),
        Task::DeployStaging(a) => tasks::deploy::staging(&ctx, a),
        Task::DeployProd(a) => tasks::deploy::prod(&ctx, a),
        Task::Rollback(a) => tasks::rollback::run(&ctx, a),
        Task::SecurityModesTest(a) => tasks::security_modes::run(&ctx, a),
        Task::BackupSmoke(a) => tasks::backup_smoke::run(&ctx, a),
        Task::Status(a) => tasks::status::status(&ctx, &a.env),
        Task::History(a) => tasks::status::history(&ctx, &a),
        Task::Logs(a) => tasks::logs::run(&ctx, a),
        Task::Lock(a) => tasks::lock::run(&ctx, a.cmd),
        Task::Audit(a) => match a.cmd {
            AuditCmd::Verify {
                env,
                env_flag,
                expect_head,
            } => tasks::audit::verify(&ctx, env.or(env_flag), expect_head),
            AuditCmd::Show {
                env,
                env_flag,
                n,
                full,
            } => tasks::audit::show(&ctx, env.or(env_flag), n, full),
            AuditCmd::Repair {
                env,
                env_flag,
                reason,
            } => match env.or(env_flag) {
                Some(env) => tasks::audit::repair(&ctx, &env, &reason),
                None => Err(anyhow::anyhow!(
                    "audit repair needs ENV: cargo xtask audit repair ENV --reason TEXT"
                )),
            },
        },
        Task::Setup(a) => tasks::setup::run(&ctx, a),
        Task::Demo(a) => tasks::demo::run(&ctx, a),
        Task::Test(a) => tasks::test::run(&ctx, a),
        Task::Lint => tasks::lint::run(&ctx),
        Task::Bench(a) => tasks::bench::run(&ctx, a),
    };
    // The operation's SSH master connection, if a remote environment opened one.
    xtask::cmd::remote::close();
    match result {
        Ok(()) => {
            xtask::out::finish(0, None);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = code_of(&e);
            let msg = format!("{e:#}");
            error_line(&format!("error: {msg}"));
            let head = xtask::exec::LAST_HEAD
                .lock()
                .ok()
                .and_then(|mut h| h.take());
            if xtask::out::json() {
                if let Some(h) = head {
                    xtask::out::set("audit_head", h);
                }
                xtask::out::finish(code as i32, Some(&msg.replace('\n', " ")));
            } else if let Some(h) = head {
                xtask::out::line(false, format_args!("audit head: {h}"));
            }
            ExitCode::from(code as u8)
        }
    }
}

/// The task's name as typed: its command words joined by a space
/// (`deploy-staging`, `audit verify`, `lock status`).
fn task_name(t: &Task) -> &'static str {
    match t {
        Task::Build(_) => "build",
        Task::DeployStaging(_) => "deploy-staging",
        Task::DeployProd(_) => "deploy-prod",
        Task::Rollback(_) => "rollback",
        Task::SecurityModesTest(_) => "security-modes-test",
        Task::BackupSmoke(_) => "backup-smoke",
        Task::Status(_) => "status",
        Task::History(_) => "history",
        Task::Logs(_) => "logs",
        Task::Lock(a) => match a.cmd {
            LockCmd::Status { .. } => "lock status",
            LockCmd::Acquire { .. } => "lock acquire",
            LockCmd::Release { .. } => "lock release",
        },
        Task::Audit(a) => match a.cmd {
            AuditCmd::Verify { .. } => "audit verify",
            AuditCmd::Show { .. } => "audit show",
            AuditCmd::Repair { .. } => "audit repair",
        },
        Task::Setup(_) => "setup",
        Task::Demo(_) => "demo",
        Task::Test(_) => "test",
        Task::Lint => "lint",
        Task::Bench(_) => "bench",
    }
}

/// The task named in `argv` as [`task_name`] spells it (`audit verify`,
/// or `audit` when no known subcommand follows); empty when none is.
fn typed_task(argv: &[String]) -> String {
    let cmd = <Xtask as clap::CommandFactory>::command();
    let Some((i, task)) = argv
        .iter()
        .enumerate()
        .skip(1)
        .find_map(|(i, a)| cmd.find_subcommand(a).map(|t| (i, t)))
    else {
        return String::new();
    };
    match argv.get(i + 1).and_then(|a| task.find_subcommand(a)) {
        Some(sub) => format!("{} {}", task.get_name(), sub.get_name()),
        None => task.get_name().to_string(),
    }
}

/// Prints `error: ...` as one line (`::error::...` under GitHub-style CI).
/// Like every line the tool prints, a closed stderr drops it (`xtask::out::write`).
fn error_line(msg: &str) {
    let msg = xtask::cmd::redact::redact(&msg.replace('\n', " "));
    match msg.strip_prefix("error: ") {
        Some(m) if std::env::var_os("GITHUB_ACTIONS").is_some() => {
            xtask::out::line(true, format_args!("::error::{m}"))
        }
        _ => xtask::out::line(true, format_args!("{msg}")),
    }
}
