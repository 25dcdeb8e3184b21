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
        self.layers
            .iter()
            .enumerate()
            .fold(xs.shallow_clone(), |h, (i, l)| {
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

/// A CIFAR-style ResNet basic block: conv3×3, BN, ReLU, conv3×3, BN, plus a
/// shortcut (identity, or conv1×1 + BN when the shape changes), ReLU.
/// `skip: false` drops the shortcut (the paper's "no skip connections").
#[derive(Debug)]
pub struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
    skip: bool,
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

impl BasicBlock {
    /// A block from `cin` to `cout` channels with the given stride.
    pub fn new(p: &nn::Path, cin: i64, cout: i64, stride: i64, skip: bool) -> BasicBlock {
        let shortcut = (skip && (stride != 1 || cin != cout)).then(|| {
            (
                conv(p / "shortcut" / "0", cin, cout, 1, stride),
                bn(p / "shortcut" / "1", cout),
            )
        });
        BasicBlock {
            conv1: conv(p / "conv1", cin, cout, 3, stride),
            bn1: bn(p / "bn1", cout),
            conv2: conv(p / "conv2", cout, cout, 3, 1),
            bn2: bn(p / "bn2", cout),
            shortcut,
            skip,
        }
    }
}

impl nn::ModuleT for BasicBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let h = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let h = h.apply(&self.conv2).apply_t(&self.bn2, train);
        let h = if !self.skip {
            h
        } else if let Some((c, b)) = &self.shortcut {
            h + xs.apply(c).apply_t(b, train)
        } else {
            h + xs
        };
        h.relu()
    }
}

/// The shape of a [`CifarResNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Blocks per stage `n`: depth 6n + 2.
    pub blocks: usize,
    /// Multiplier of the 16/32/64 channels.
    pub width: i64,
    /// Shortcut connections (`false`: the paper's "no skip connections").
    pub skip: bool,
    /// Channels of the input images (3 for CIFAR, 1 for the digits and MNIST).
    pub in_channels: i64,
    /// Number of outputs.
    pub classes: i64,
}

impl Default for ResNetConfig {
    /// ResNet-20 for CIFAR-10 (benchmark W2).
    fn default() -> Self {
        ResNetConfig {
            blocks: 3,
            width: 1,
            skip: true,
            in_channels: 3,
            classes: 10,
        }
    }
}

/// CIFAR ResNet (He et al. 2016, §4.2) with `n` blocks per stage: depth
/// 6n + 2 (n = 3 is ResNet-20, benchmark W2: 272,474 parameters). `width`
/// multiplies the 16/32/64 channels; `skip: false` removes shortcuts.
#[derive(Debug)]
pub struct CifarResNet {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    blocks: Vec<BasicBlock>,
    fc: nn::Linear,
}

impl CifarResNet {
    /// Builds the network for 3-channel images and `classes` outputs.
    pub fn new(p: &nn::Path, n: usize, width: i64, skip: bool, classes: i64) -> CifarResNet {
        Self::from_config(
            p,
            &ResNetConfig {
                blocks: n,
                width,
                skip,
                in_channels: 3,
                classes,
            },
        )
    }

    /// Builds the network `cfg` describes (e.g. `in_channels: 1` for the
    /// digits and MNIST).
    pub fn from_config(p: &nn::Path, cfg: &ResNetConfig) -> CifarResNet {
        let c = [16 * cfg.width, 32 * cfg.width, 64 * cfg.width];
        let mut blocks = Vec::new();
        let mut cin = c[0];
        for (stage, &cout) in c.iter().enumerate() {
            for b in 0..cfg.blocks {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let path = p / format!("layer{}", stage + 1) / b.to_string();
                blocks.push(BasicBlock::new(&path, cin, cout, stride, cfg.skip));
                cin = cout;
            }
        }
        CifarResNet {
            conv: conv(p / "conv1", cfg.in_channels, c[0], 3, 1),
            bn: bn(p / "bn1", c[0]),
            blocks,
            fc: nn::linear(p / "fc", c[2], cfg.classes, Default::default()),
        }
    }

    /// ResNet-20 for 10 classes (benchmark W2).
    pub fn resnet20(p: &nn::Path) -> CifarResNet {
        CifarResNet::from_config(p, &ResNetConfig::default())
    }
}

impl nn::ModuleT for CifarResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut h = xs.apply(&self.conv).apply_t(&self.bn, train).relu();
        for b in &self.blocks {
            h = b.forward_t(&h, train);
        }
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}
