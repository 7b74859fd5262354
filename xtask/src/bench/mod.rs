//! Benchmarks behind `cargo xtask bench`. Each area measures its figure and
//! its baseline in the same run (these machines are noisy) and returns a
//! markdown section for docs/benchmarks.md.

pub mod audit;
pub mod backup;
mod bed;
pub mod deploy;
pub mod stream;
pub mod zero_downtime;

/// One section of docs/benchmarks.md.
pub struct Section {
    pub title: String,
    /// Markdown: method, then the table.
    pub body: String,
}
