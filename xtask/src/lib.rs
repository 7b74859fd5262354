//! The FetchML operations task-runner, as a library so that tests and
//! benchmarks reach the same code the `cargo xtask` binary runs.

pub mod audit;
pub mod bench;
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
