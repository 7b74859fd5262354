//! Is this process running in CI? Asked by deploy-prod's confirmation (CI
//! confirms for the operator) and by the progress lines (CI folds them).
//!
//! Only a variable set to a true value counts: `CI=true` or `CI=1`
//! (case-insensitive), or one of the CI systems' own flags below set to
//! `true`. `CI=false`, `CI=` or `CI=0` is not CI; the README lists these.

/// The variables that say "CI" when set to `true` (or `1`).
pub const VARS: [&str; 8] = [
    "CI",
    "GITHUB_ACTIONS",
    "FORGEJO_ACTIONS",
    "GITEA_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "TF_BUILD",
];

/// The first of [`VARS`] set to a true value, if any.
pub fn detected_by() -> Option<&'static str> {
    detected_from(|v| std::env::var(v).ok())
}

/// Running in CI (see the module doc).
pub fn detected() -> bool {
    detected_by().is_some()
}

/// [`detected_by`] from a variable look-up (unit-tested without the process's environment).
pub fn detected_from(var: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
    VARS.into_iter().find(|name| {
        var(name).is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("true") || v == "1"
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Option<&'static str> {
        detected_from(|v| {
            pairs
                .iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        })
    }

    #[test]
    fn only_true_values_count() {
        assert_eq!(with(&[("CI", "true")]), Some("CI"));
        assert_eq!(with(&[("CI", "TRUE")]), Some("CI"));
        assert_eq!(with(&[("CI", "1")]), Some("CI"));
        for no in ["false", "", "0", "no", "yes-ish"] {
            assert_eq!(with(&[("CI", no)]), None, "CI={no:?}");
        }
        assert_eq!(with(&[("GITHUB_ACTIONS", "true")]), Some("GITHUB_ACTIONS"));
        assert_eq!(with(&[("GITLAB_CI", "false")]), None);
        assert_eq!(with(&[("TF_BUILD", "True")]), Some("TF_BUILD"));
        assert_eq!(with(&[]), None);
    }
}
