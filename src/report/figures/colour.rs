//! The heat maps' colour scale: Viridis over a finite range. Non-finite
//! values get no colour (they are left blank), so a NaN or infinite loss
//! can neither panic the colour map nor stretch the scale.

use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use super::finite_range;

/// Viridis over `[lo, hi]`, with `lo < hi`, both finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ColourScale {
    lo: f64,
    hi: f64,
}

impl Default for ColourScale {
    fn default() -> Self {
        ColourScale { lo: 0.0, hi: 1.0 }
    }
}

impl ColourScale {
    /// The scale over `[lo, hi]`; an empty range is widened to a unit
    /// interval, reversed bounds are swapped, non-finite ones give `[0, 1]`.
    pub(crate) fn new(lo: f64, hi: f64) -> ColourScale {
        ColourScale::of([lo, hi].into_iter())
    }

    /// The scale over the finite values of `values` (`[0, 1]` when none is).
    pub(crate) fn of(values: impl Iterator<Item = f64>) -> ColourScale {
        match finite_range(values) {
            Some((lo, hi)) => ColourScale { lo, hi },
            None => ColourScale::default(),
        }
    }

    /// The value at fraction `t` of the range.
    pub(crate) fn at(&self, t: f64) -> f64 {
        self.lo + (self.hi - self.lo) * t
    }

    /// The colour of `v` (clamped into the range); `None` when `v` is not finite.
    pub(crate) fn colour(&self, v: f64) -> Option<RGBColor> {
        v.is_finite()
            .then(|| ViridisRGB::get_color_normalized(v.clamp(self.lo, self.hi), self.lo, self.hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ColourScale {
        fn range(&self) -> (f64, f64) {
            (self.at(0.0), self.at(1.0))
        }
    }

    #[test]
    fn degenerate_ranges_become_usable() {
        assert_eq!(ColourScale::new(2.0, 2.0).range(), (1.5, 2.5));
        assert_eq!(ColourScale::new(3.0, 1.0).range(), (1.0, 3.0));
        assert_eq!(
            ColourScale::new(f64::INFINITY, f64::NEG_INFINITY).range(),
            (0.0, 1.0)
        );
        let s = ColourScale::of([f64::NAN, 1.0, f64::INFINITY, 5.0].into_iter());
        assert_eq!(s.range(), (1.0, 5.0));
        assert_eq!(s.at(0.5), 3.0);
    }

    #[test]
    fn non_finite_values_have_no_colour_and_others_are_clamped() {
        let s = ColourScale::new(0.0, 1.0);
        assert_eq!(s.colour(f64::NAN), None);
        assert_eq!(s.colour(f64::INFINITY), None);
        assert_eq!(s.colour(-5.0), s.colour(0.0));
        assert_eq!(s.colour(7.0), s.colour(1.0));
        assert_ne!(s.colour(0.0), s.colour(1.0));
    }
}
