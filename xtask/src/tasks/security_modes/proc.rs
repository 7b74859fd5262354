//! The one door this task uses to start processes: the project's process
//! layer (`crate::cmd`) under task-local names, so that a change there is a
//! change to these lines only.
//!
//! Nothing in `security_modes` starts a process any other way.

pub(super) use crate::cmd::{explain, output, run, Command, Effect};

/// Does `c` exit 0? Its output and error are dropped: for look-ups whose
/// only answer is yes or no (is this image present?).
pub(super) fn succeeds(c: &Command) -> bool {
    run(c, false).is_ok()
}
