//! Settings shared by the run report and the comparison page.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The most contour levels a figure may ask for.
pub const MAX_LEVELS: usize = 100;

/// Report settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Plot 2-D losses on a log10 scale.
    pub log_scale: bool,
    /// Number of contour levels.
    pub levels: usize,
    /// Output directory (default `RUN_DIR/report`; the comparison page
    /// takes its directory as an argument and ignores this).
    pub out: Option<PathBuf>,
}

impl ReportOptions {
    /// Checks the settings: 1 to [`MAX_LEVELS`] contour levels.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_LEVELS).contains(&self.levels) {
            return Err(Error::invalid(
                "levels",
                format!(
                    "expected 1 to {MAX_LEVELS} contour levels, got {}",
                    self.levels
                ),
            ));
        }
        Ok(())
    }
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            log_scale: false,
            levels: 12,
            out: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_bounded() {
        let mut o = ReportOptions::default();
        o.validate().unwrap();
        for bad in [0, MAX_LEVELS + 1, usize::MAX] {
            o.levels = bad;
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains("levels"), "{e}");
        }
    }
}
