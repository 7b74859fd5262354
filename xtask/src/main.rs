//! `cargo xtask`: parse flags, build one context, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser as _;
use xtask::exit::code_of;
use xtask::flags::{AuditCmd, Task, Xtask};
use xtask::{tasks, Ctx};

fn main() -> ExitCode {
    let flags = match Xtask::try_parse() {
        Ok(f) => f,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Bad input is exit 1, like every other bad input; the first
            // line says what is wrong (clap's own exit code 2 would read as
            // "preflight failed").
            let msg = e.render().to_string();
            let first = msg.lines().next().unwrap_or("error: invalid arguments");
            eprintln!("{first} (see cargo xtask --help)");
            return ExitCode::from(1);
        }
    };
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
        Task::Lock(a) => tasks::lock::run(&ctx, a.cmd),
        Task::Audit(a) => match a.cmd {
            AuditCmd::Verify { env, expect_head } => tasks::audit::verify(&ctx, env, expect_head),
            AuditCmd::Show { env, n, full } => tasks::audit::show(&ctx, env, n, full),
            AuditCmd::Repair { env, reason } => tasks::audit::repair(&ctx, &env, &reason),
        },
        Task::Setup(a) => tasks::setup::run(&ctx, a),
        Task::Demo(a) => tasks::demo::run(&ctx, a),
        Task::Test(a) => tasks::test::run(&ctx, a),
        Task::Lint => tasks::lint::run(&ctx),
        Task::Bench(a) => tasks::bench::run(&ctx, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = code_of(&e);
            let msg = format!("{e:#}").replace('\n', " ");
            if std::env::var_os("GITHUB_ACTIONS").is_some() {
                eprintln!("::error::{msg}");
            } else {
                eprintln!("error: {msg}");
            }
            let head = xtask::exec::LAST_HEAD
                .lock()
                .ok()
                .and_then(|mut h| h.take());
            if let Some(h) = head {
                println!("audit head: {h}");
            }
            ExitCode::from(code as u8)
        }
    }
}
