//! Every task and flag, with the doc comments that `--help` shows.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod usage;
pub use usage::usage_error;

/// Operations for the FetchML stack: build, deploy, promote, roll back, and
/// prove that security modes and backups hold. Every task that changes
/// anything can be previewed with --dry-run.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    max_term_width = 100
)]
pub struct Xtask {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub task: Task,
}

/// Flags every task accepts.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Print the plan (secrets redacted) and change nothing: no container, lock, file or registry write.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Output format for data on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The deployment config.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "deployments/deploy.toml"
    )]
    pub config: PathBuf,
    /// Root of per-environment state (audit log, lock, and ROOT/sink for a configured audit sink); overrides the config.
    #[arg(long, global = true, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// Echo every command run, with its output.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON document.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Task {
    /// Build the images of the build matrix, tagged sha-<12 hex of HEAD>.
    Build(Build),
    /// Deploy a tag to staging behind the health gate; roll back automatically on failure.
    DeployStaging(Deploy),
    /// Promote a tag that passed staging to production, behind the promotion gate.
    DeployProd(DeployProd),
    /// Put the app services of an environment back on an earlier image (image-only).
    Rollback(Rollback),
    /// Check each security mode's config (static) and running behaviour (dynamic).
    SecurityModesTest(SecurityModes),
    /// Prove a PostgreSQL backup restores with its audit hash chain byte-exact.
    BackupSmoke(BackupSmoke),
    /// The version an environment runs now, the previous good one, and the audit head.
    Status(EnvArg),
    /// The deployments of an environment, derived from its audit chain.
    History(History),
    /// Print an environment's app logs: the serving set's, or the standby's, or a named set's. Read-only.
    Logs(Logs),
    /// Look at an environment's deploy lock, or hold it for a maintenance window.
    Lock(Lock),
    /// Verify, show or repair the hash-chained audit log.
    Audit(Audit),
    /// Install (where missing) and start (where stopped) the local engines.
    Setup(Setup),
    /// Run the whole lifecycle against the testbed stack on the local engine.
    Demo(Demo),
    /// Run setup, then every test in the workspace.
    Test(Test),
    /// Lint the repository: fmt, clippy, actionlint and shellcheck.
    Lint,
    /// Run the benchmarks and rewrite the tables in docs/benchmarks.md.
    Bench(Bench),
}

#[derive(Debug, Args)]
pub struct Build {
    /// Build only this image of the matrix (repeatable).
    #[arg(long = "image", value_name = "NAME")]
    pub images: Vec<String>,
    /// Push each image to the configured registry and print its digest.
    #[arg(long)]
    pub push: bool,
    /// Build from a tree with uncommitted changes; the tag then ends in -dirty.
    #[arg(long)]
    pub allow_dirty: bool,
    /// Build this tag instead of HEAD's (testbed and rehearsals).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Pass BROKEN=1 to the image build: a version whose health never turns ok (rollback rehearsals).
    #[arg(long, hide = true)]
    pub broken: bool,
}

#[derive(Debug, Args)]
pub struct Deploy {
    /// The image tag to deploy; defaults to HEAD's sha-<12 hex>.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Wait up to SECS for the environment's lock instead of failing at once.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub lock_wait: u64,
    /// Why this deploy happens; recorded verbatim in the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Append even to an audit chain that does not verify; for deploy-prod,
    /// also deploy past an unmet promotion gate (missing staging deploy or
    /// evidence). Needs --reason; the plan marks the gate OVERRIDDEN and the
    /// record says what was overridden.
    #[arg(long, requires = "reason")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DeployProd {
    #[command(flatten)]
    pub deploy: Deploy,
    /// Confirm a production deploy outside CI.
    #[arg(long)]
    pub yes: bool,
    /// On a failed health gate, leave the new version running and print the rollback command.
    #[arg(long)]
    pub no_auto_rollback: bool,
}

#[derive(Debug, Args)]
pub struct Rollback {
    /// The environment to roll back (from the config).
    pub env: String,
    /// Roll back to this tag, or to `@N`: the version the audit record at line
    /// N put in place (see `audit show`). It must have been deployed
    /// successfully and must not be the one running, unless --force.
    #[arg(long, value_name = "TAG|@N")]
    pub to: Option<String>,
    /// Why; recorded verbatim in the audit log.
    #[arg(long, value_name = "TEXT", default_value = "manual")]
    pub reason: String,
    /// Proceed past a broken audit chain, an unknown --to tag, or a --to tag
    /// that already runs (recorded).
    #[arg(long)]
    pub force: bool,
    /// Wait up to SECS for the environment's lock instead of failing at once.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub lock_wait: u64,
}

#[derive(Debug, Args)]
pub struct SecurityModes {
    /// Run only this mode.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Only the static config checks; needs no running Docker.
    #[arg(long)]
    pub static_only: bool,
    /// The image tag to boot and to record the result for; defaults to HEAD's.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// The environment whose audit log records the result.
    #[arg(long, value_name = "ENV", default_value = "staging")]
    pub env: String,
    /// The policy file.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "deployments/security-modes.toml"
    )]
    pub policy: PathBuf,
    /// Check this compose file as it is, every profile (repeatable): static only, no deploy config.
    #[arg(long = "compose", value_name = "FILE", conflicts_with = "tag")]
    pub compose: Vec<PathBuf>,
    /// With --compose: a service the modes' app rules apply to (repeatable; default none).
    #[arg(long = "app-service", value_name = "NAME", requires = "compose")]
    pub app_services: Vec<String>,
    /// Also write the report as SARIF 2.1.0 to FILE, for code-scanning tools.
    #[arg(long, value_name = "FILE")]
    pub sarif: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupSmoke {
    /// Rows of synthetic audit workload.
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub rows: u32,
    /// Use this existing server (else PG* variables, else a throwaway embedded cluster).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Restore this existing custom-format dump into a scratch database and verify its chain.
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,
    /// The canonical form of the chain.
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    pub profile: Profile,
    /// Prove the restored chain still holds this checkpoint (a JSON file with
    /// profile, rows and head; a manifest will do). Default with --dump: the
    /// environment's last recorded checkpoint.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Allow touching objects that this run did not create.
    #[arg(long)]
    pub destructive: bool,
    /// The image tag to record a passing result for (promotion evidence).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// The environment whose audit log records the result.
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// The project's own unambiguous, sequence-ordered chain.
    Default,
    /// Chains written by certctl's audit migration 000047.
    Certctl,
}

#[derive(Debug, Args)]
pub struct EnvArg {
    /// The environment (from the config).
    pub env: String,
}

#[derive(Debug, Args)]
pub struct History {
    /// The environment (from the config).
    pub env: String,
    /// Only the newest N deployments.
    #[arg(short = 'n', value_name = "N")]
    pub n: Option<usize>,
    /// Only deployments since WHEN: an RFC 3339 time (2024-01-15T14:30:00Z) or an age (90m, 2h, 3d, 1w).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct Logs {
    /// The environment (from the config).
    pub env: String,
    /// Only this app service (default: every app service).
    pub service: Option<String>,
    /// Which set (blue/green): serving, standby (the set without traffic), or blue, green, amber.
    #[arg(long, value_name = "SET", default_value = "serving")]
    pub set: String,
    /// Keep printing new lines until Ctrl-C or SIGTERM (exit 130 or 143; nothing is left running).
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines since WHEN: an RFC 3339 time (2024-01-15T14:30:00Z) or an age (30s, 90m, 2h, 3d, 1w).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only the last N lines of each container (each service on Swarm).
    #[arg(short = 'n', long = "tail", value_name = "N")]
    pub tail: Option<u32>,
}

#[derive(Debug, Args)]
pub struct Lock {
    #[command(subcommand)]
    pub cmd: LockCmd,
}

#[derive(Debug, Subcommand)]
pub enum LockCmd {
    /// Whether a deploy or rollback holds the lock now, and any maintenance hold. Read-only.
    Status {
        /// The environment (from the config).
        env: String,
    },
    /// Hold the lock until `lock release`: deploys and rollbacks are refused (exit 5) meanwhile. Recorded.
    Acquire {
        /// The environment (from the config).
        env: String,
        /// Why it is held; every refused deploy and rollback shows it.
        #[arg(short = 'm', long, value_name = "TEXT")]
        message: String,
        /// Wait up to SECS for a running deploy or rollback to finish instead of failing at once.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        lock_wait: u64,
    },
    /// End a maintenance hold. Recorded.
    Release {
        /// The environment (from the config).
        env: String,
        /// Recorded with the release (default: "released").
        #[arg(short = 'm', long, value_name = "TEXT")]
        message: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct Audit {
    #[command(subcommand)]
    pub cmd: AuditCmd,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Walk the chain; print count and head, or the first bad line and its kind.
    Verify {
        /// Only this environment (default: every environment).
        #[arg(value_name = "ENV")]
        env: Option<String>,
        /// The old spelling of ENV, kept for scripts.
        #[arg(long = "env", value_name = "ENV", hide = true, conflicts_with = "env")]
        env_flag: Option<String>,
        /// Fail unless the head equals HEX (catches truncation of the newest records).
        #[arg(long, value_name = "HEX")]
        expect_head: Option<String>,
    },
    /// Print records with their line numbers in the line form: ts | action | outcome | from | to | actor | reason.
    Show {
        /// Only this environment (default: every environment).
        #[arg(value_name = "ENV")]
        env: Option<String>,
        /// The old spelling of ENV, kept for scripts.
        #[arg(long = "env", value_name = "ENV", hide = true, conflicts_with = "env")]
        env_flag: Option<String>,
        /// Only the newest N records.
        #[arg(short = 'n', value_name = "N")]
        n: Option<usize>,
        /// Show long reasons whole (by default they are shortened to 200 characters).
        #[arg(long)]
        full: bool,
    },
    /// Truncate a torn last line (left by a crash mid-write) and record a repair event.
    Repair {
        /// The environment whose log to repair.
        #[arg(value_name = "ENV", required_unless_present = "env_flag")]
        env: Option<String>,
        /// The old spelling of ENV, kept for scripts.
        #[arg(long = "env", value_name = "ENV", hide = true, conflicts_with = "env")]
        env_flag: Option<String>,
        /// Why; recorded in the repair event.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub struct Setup {
    /// Only report what is missing or stopped; install and start nothing.
    #[arg(long)]
    pub check: bool,
    /// Swarm nodes on this machine: 2 adds a second engine in a network
    /// namespace, joined to this engine's swarm as a worker (docs/swarm.md);
    /// 1 removes what 2 created.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
    pub swarm_nodes: Option<u8>,
}

#[derive(Debug, Args)]
pub struct Demo {
    /// Keep the demo stacks running afterwards (with swarm, the swarm too).
    #[arg(long)]
    pub keep: bool,
    /// The engine to run the testbed on: compose projects
    /// (deployments/testbed/deploy.toml) or swarm stacks on a single-node
    /// swarm (deployments/testbed/deploy.swarm.toml).
    #[arg(long, value_name = "ENGINE", default_value = "compose", value_parser = ["compose", "swarm"])]
    pub engine: String,
}

#[derive(Debug, Args)]
pub struct Test {
    /// Extra arguments for cargo test.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Bench {
    /// Smaller inputs, for a quick look (tables are not rewritten).
    #[arg(long)]
    pub quick: bool,
    /// Run only this benchmark (repeatable); only its section is rewritten.
    #[arg(long = "only", value_name = "NAME", value_parser = ["audit", "backup", "deploy", "zero-downtime"])]
    pub only: Vec<String>,
}
