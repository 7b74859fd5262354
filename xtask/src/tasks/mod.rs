//! One module per task. Each opens with what it does, what it needs, and
//! what it never touches.

pub mod audit;
pub mod backup_smoke;
pub mod bench;
pub mod build;
pub mod demo;
pub mod deploy;
pub mod lint;
pub mod lock;
pub mod logs;
pub mod rollback;
pub mod security_modes;
pub mod setup;
pub mod status;
pub mod test;

#[cfg(test)]
mod scope;
