//! The backup benchmark (filled in by its issue).

use anyhow::Result;

use super::Section;

pub fn run(_quick: bool) -> Result<Section> {
    anyhow::bail!("the backup benchmark is not written yet")
}
