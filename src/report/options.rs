//! Settings shared by the run report and the comparison page.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The most contour levels a figure may ask for.
pub const MAX_LEVELS: usize = 100;

/// How contour levels are spaced between the smallest and the largest
/// plotted value (levels lie strictly inside that range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelSpacing {
    /// Equal steps.
    Linear,
    /// Level i of n at (i/(n+1))² of the range above the minimum: more lines
    /// in the basin around a minimizer.
    Quadratic,
    /// Level i of n at (1000^(i/(n+1)) − 1)/999 of the range above the
    /// minimum: equal steps in log10 of the height above the minimum, over
    /// three decades.
    Log,
}

impl std::str::FromStr for LevelSpacing {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(LevelSpacing::Linear),
            "quadratic" => Ok(LevelSpacing::Quadratic),
            "log" => Ok(LevelSpacing::Log),
            _ => Err(Error::invalid(
                "level-spacing",
                format!("expected linear, quadratic or log, got {s:?}"),
            )),
        }
    }
}

/// The colour scale of the curvature maps' |λmin/λmax|.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RatioScale {
    /// From the smallest to the largest value of each map.
    #[default]
    Data,
    /// Fixed 0 to 0.5, as in the paper (Li et al. 2018, Fig. 7), so maps
    /// can be compared by colour.
    Paper,
}

impl std::str::FromStr for RatioScale {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "data" => Ok(RatioScale::Data),
            "paper" => Ok(RatioScale::Paper),
            _ => Err(Error::invalid(
                "ratio-scale",
                format!("expected data or paper, got {s:?}"),
            )),
        }
    }
}

/// The PNG scales a report may ask for (pixel size 720 × 480 times the scale).
pub const SCALES: std::ops::RangeInclusive<u32> = 1..=3;

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
    /// PNG scale, 1 to 3: each PNG is (720 × 480) × scale pixels, with
    /// fonts and lines scaled alike (96 dpi × scale). SVGs do not change.
    pub scale: u32,
    /// Spacing of the contour levels; `None`: quadratic above the minimum,
    /// linear when `log_scale` (the captions say which).
    pub level_spacing: Option<LevelSpacing>,
    /// Colour scale of the curvature maps.
    pub ratio_scale: RatioScale,
}

impl ReportOptions {
    /// Checks the settings: 1 to [`MAX_LEVELS`] contour levels, a scale in
    /// [`SCALES`].
    pub fn validate(&self) -> Result<()> {
        if !SCALES.contains(&self.scale) {
            return Err(Error::invalid(
                "scale",
                format!(
                    "expected a PNG scale of 1, 2 or 3 (96, 192 or 288 dpi), got {}",
                    self.scale
                ),
            ));
        }
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
            scale: 1,
            level_spacing: None,
            ratio_scale: RatioScale::Data,
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

    #[test]
    fn scales_and_spellings_are_checked() {
        let mut o = ReportOptions::default();
        for bad in [0, 4] {
            o.scale = bad;
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains("scale") && e.contains("1, 2 or 3"), "{e}");
        }
        assert_eq!("log".parse::<LevelSpacing>().unwrap(), LevelSpacing::Log);
        let e = "cubic".parse::<LevelSpacing>().unwrap_err().to_string();
        assert!(
            e.contains("level-spacing") && e.contains("quadratic"),
            "{e}"
        );
        assert_eq!("paper".parse::<RatioScale>().unwrap(), RatioScale::Paper);
        assert!("fixed".parse::<RatioScale>().is_err());
    }
}
