//! Reference models used by the demo, the tests and the benchmarks, defined
//! once so that every workload uses exactly the same network.

use tch::nn::{self, Module};
use tch::Tensor;

/// A multi-layer perceptron with ReLU activations: `fc1 … fcK`.
///
/// `Mlp::new(&vs.root(), &[64, 256, 256, 10])` is benchmark W1's network
/// (85,002 parameters).
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<nn::Linear>,
}

impl Mlp {
    /// Builds the layers `sizes[0] → sizes[1] → …`, named `fc1`, `fc2`, …
    /// (with biases). `sizes` needs at least two entries.
    pub fn new(p: &nn::Path, sizes: &[i64]) -> Mlp {
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| nn::linear(p / format!("fc{}", i + 1), w[0], w[1], Default::default()))
            .collect();
        Mlp { layers }
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let last = self.layers.len().saturating_sub(1);
        self.layers.iter().enumerate().fold(xs.shallow_clone(), |h, (i, l)| {
            let h = l.forward(&h);
            if i < last {
                h.relu()
            } else {
                h
            }
        })
    }
}

/// Layer sizes of benchmark W1's network.
pub const W1_SIZES: [i64; 4] = [64, 256, 256, 10];
