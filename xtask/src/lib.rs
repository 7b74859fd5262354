//! The FetchML operations task-runner, as a library so that tests and
//! benchmarks reach the same code the `cargo xtask` binary runs.

// `println!` and friends panic when the reader is gone (`xtask ... | head -1`
// closes the pipe, EPIPE): a task would then stop halfway, unrecorded and
// still locked. These shadow them in every module of the crate (a
// `macro_rules!` defined here, before the modules, is in scope in all of
// them and wins over the prelude's): the same formatting, and a write that
// fails is dropped, so the task runs to its own end and exit code.
macro_rules! println {
    () => { $crate::out::line(false, format_args!("")) };
    ($($t:tt)*) => { $crate::out::line(false, format_args!($($t)*)) };
}
macro_rules! print {
    ($($t:tt)*) => { $crate::out::write(false, format_args!($($t)*)) };
}
macro_rules! eprintln {
    () => { $crate::out::line(true, format_args!("")) };
    ($($t:tt)*) => { $crate::out::line(true, format_args!($($t)*)) };
}
macro_rules! eprint {
    ($($t:tt)*) => { $crate::out::write(true, format_args!($($t)*)) };
}

pub mod audit;
pub mod bench;
pub mod ci;
pub mod cmd;
pub mod config;
pub mod ctx;
pub mod engine;
pub mod exec;
pub mod exit;
pub mod flags;
pub mod health;
pub mod lock;
pub mod nodes;
pub mod notify;
pub mod out;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod provision;
pub mod repo;
pub mod rollout;
pub mod secret;
pub mod tasks;
pub mod validate;

pub use ctx::Ctx;
pub use repo::{free_ports, head_tag, is_root, workspace_root};
