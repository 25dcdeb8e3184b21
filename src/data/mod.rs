//! Real data sets usable offline: the UCI handwritten digits shipped with the
//! crate (used by the demo, the tests and benchmark W1), and 10,000 MNIST
//! digits (the experiments).

pub mod digits;
pub mod mnist;
