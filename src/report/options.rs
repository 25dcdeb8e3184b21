//! Settings shared by the run report and the comparison page.

use std::path::PathBuf;

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

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            log_scale: false,
            levels: 12,
            out: None,
        }
    }
}
