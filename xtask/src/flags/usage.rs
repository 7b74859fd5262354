//! Usage errors as one line that names the argument and the fix.
//!
//! clap renders an error over several lines (message, context, tips,
//! usage); `main` prints errors as one line, so this joins clap's own
//! lines, keeps its context and suggestions, and points at the task's
//! `--help`.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory as _;

use super::Xtask;

/// A usage error as one line: clap's message with its context and
/// suggestions, the usage where an argument is missing, a hint where the
/// environment was given as a separate word (`deploy staging`), and the
/// task's own `--help` to read next.
pub fn usage_error(e: &clap::Error, argv: &[String]) -> String {
    let rendered = e.render().to_string();
    let mut line = String::new();
    for l in rendered.lines().map(str::trim) {
        if l.is_empty() || l.starts_with("Usage:") || l.starts_with("For more information") {
            continue;
        }
        if !line.is_empty() {
            let glue = line.ends_with(':') || l.starts_with('[');
            line.push_str(if glue { " " } else { "; " });
        }
        line.push_str(l);
    }
    if e.kind() == ErrorKind::InvalidSubcommand {
        if let Some(hint) = joined_task(e, argv) {
            line.push_str(&format!(
                "; did you mean `cargo xtask {hint}` (the environment is part of the task's name)"
            ));
        }
    }
    if e.kind() == ErrorKind::MissingRequiredArgument {
        if let Some(ContextValue::StyledStr(u)) = e.get(ContextKind::Usage) {
            let u = u.to_string();
            line.push_str(&format!(
                "; usage: {}",
                u.trim_start_matches("Usage:").trim()
            ));
        }
    }
    // An unknown task names no task: look no further than it.
    let known = match e.get(ContextKind::InvalidSubcommand) {
        Some(ContextValue::String(bad)) => argv.iter().position(|a| a == bad).unwrap_or(argv.len()),
        _ => argv.len(),
    };
    let path = task_path(&argv[..known]);
    let task = if path.is_empty() {
        String::new()
    } else {
        format!("{} ", path.join(" "))
    };
    format!("{line}; see `cargo xtask {task}--help`")
}

/// `deploy staging` meant `deploy-staging`: the unknown word joined to the
/// next one with `-`, where that names a task.
fn joined_task(e: &clap::Error, argv: &[String]) -> Option<String> {
    let Some(ContextValue::String(bad)) = e.get(ContextKind::InvalidSubcommand) else {
        return None;
    };
    let at = argv.iter().position(|a| a == bad)?;
    let joined = format!("{bad}-{}", argv.get(at + 1)?);
    let cmd = Xtask::command();
    cmd.find_subcommand(&joined)?;
    let rest: Vec<&str> = argv[at + 2..].iter().map(String::as_str).collect();
    Some(
        std::iter::once(joined.as_str())
            .chain(rest)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The task (and sub-task) named in `argv`, as far as they are known.
fn task_path(argv: &[String]) -> Vec<String> {
    let mut cmd = Xtask::command();
    let mut path = Vec::new();
    for a in argv.iter().skip(1) {
        let Some(sub) = cmd.find_subcommand(a).cloned() else {
            continue;
        };
        path.push(sub.get_name().to_string());
        if !sub.has_subcommands() {
            break;
        }
        cmd = sub;
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn err(args: &str) -> String {
        let argv: Vec<String> = std::iter::once("cargo xtask")
            .chain(args.split(' '))
            .map(String::from)
            .collect();
        let e = Xtask::try_parse_from(&argv).unwrap_err();
        usage_error(&e, &argv)
    }

    #[test]
    fn missing_arguments_are_named_with_the_usage_and_the_help_to_read() {
        assert_eq!(
            err("status"),
            "error: the following required arguments were not provided: <ENV>; \
             usage: cargo xtask status <ENV>; see `cargo xtask status --help`"
        );
        let e = err("deploy-staging --force");
        assert!(e.contains("not provided: --reason <TEXT>;"), "{e}");
        assert!(
            e.ends_with("see `cargo xtask deploy-staging --help`"),
            "{e}"
        );
        let e = err("lock acquire staging");
        assert!(
            e.contains("--message <TEXT>") && e.ends_with("`cargo xtask lock acquire --help`"),
            "{e}"
        );
    }

    #[test]
    fn suggestions_and_context_stay_on_one_line() {
        let e = err("deploy staging --tag v1");
        assert!(
            e.starts_with("error: unrecognized subcommand 'deploy'; tip: some similar"),
            "{e}"
        );
        assert!(
            e.contains("did you mean `cargo xtask deploy-staging --tag v1` (the"),
            "{e}"
        );
        assert!(e.ends_with("see `cargo xtask --help`"), "{e}");
        let e = err("--state-dir /tmp/x 2492 lock acquire staging");
        assert!(e.ends_with("see `cargo xtask --help`"), "{e}");
        let e = err("stat staging");
        assert!(
            e.contains("tip: a similar subcommand exists: 'status'") && !e.contains("did you mean"),
            "{e}"
        );
        let e = err("--format yaml status staging");
        assert!(
            e.contains("'yaml' for '--format <FORMAT>' [possible values: text, json]"),
            "{e}"
        );
        assert!(e.ends_with("`cargo xtask status --help`"), "{e}");
        let e = err("history staging -n x");
        assert!(
            e.contains("'-n <N>'") && e.ends_with("`cargo xtask history --help`"),
            "{e}"
        );
        for args in [
            "status",
            "deploy staging",
            "audit show --nn",
            "status staging --bogus",
        ] {
            assert!(!err(args).contains('\n'), "{args}");
        }
    }
}
