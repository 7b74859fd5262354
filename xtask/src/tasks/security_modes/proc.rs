//! The one door this task uses to start processes: the project's executor
//! function and its command type, re-exported under task-local names so that
//! moving them (into `crate::cmd`) is a change to these lines only.
//!
//! Nothing in `security_modes` starts a process any other way.

pub(super) use crate::exec::run_command as run;
pub(super) use crate::plan::{Command, Effect};

/// Does `c` exit 0? Its output and error are dropped: for look-ups whose
/// only answer is yes or no (is this image present?).
pub(super) fn succeeds(c: &Command) -> bool {
    run(c, false).is_ok()
}
