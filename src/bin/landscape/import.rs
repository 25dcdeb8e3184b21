//! `landscape import`: checkpoints saved by another program (one safetensors
//! file per epoch) as a run directory.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use tch_landscape::import::{is_torch_save_file, Import, CONVERT_PYTHON, MAX_CHECKPOINTS};
use tch_landscape::Role;

use crate::term::{escape, escaped};

/// Import checkpoints saved by another program (PyTorch's state dicts as
/// safetensors, one file per epoch) as a run directory, so that `pca`,
/// `report`, `info`, `export` ... work on them.
///
/// Every checkpoint must hold the tensors of the first (names, shapes,
/// dtypes). `*running_mean`, `*running_var` and `*num_batches_tracked` are
/// buffers, the other tensors trainable; integer tensors are listed as not
/// recorded. Every file is checked (header, then values: NaN/∞ is an error)
/// before anything is written.
#[derive(Debug, clap::Args)]
#[command(after_help = after_help())]
pub struct Args {
    /// Checkpoint files (safetensors). Without --epochs or --epoch-pattern
    /// their order is the epoch order: the first is θ₀ (epoch 0), then
    /// epochs 1, 2, ...
    #[arg(required = true, value_name = "CKPT")]
    checkpoints: Vec<PathBuf>,
    /// The run directory to write.
    #[arg(long, value_name = "RUN")]
    out: PathBuf,
    /// Epoch of each checkpoint, in the order given: numbers and ranges,
    /// comma-separated (e.g. 0,5,10 or 1-20). The checkpoints are imported in
    /// epoch order.
    #[arg(long, value_name = "LIST", conflicts_with = "epoch_pattern")]
    epochs: Option<String>,
    /// Epoch of each checkpoint from its file name: the name with {} where
    /// the epoch's digits are and * for any other text (e.g.
    /// 'model_{}.safetensors'). The checkpoints are sorted by it.
    #[arg(long, value_name = "PATTERN")]
    epoch_pattern: Option<String>,
    /// Replace a run already in RUN (only once every checkpoint was checked).
    #[arg(long)]
    overwrite: bool,
}

fn after_help() -> String {
    let python = CONVERT_PYTHON
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    [
        "Examples:",
        "  landscape import ckpt/model_*.safetensors --epoch-pattern 'model_{}.safetensors' --out runs/resnet56",
        "  landscape pca runs/resnet56 && landscape report runs/resnet56",
        "",
        "PyTorch's own files (torch.save: .pt, .pth, the reference code's .t7) are Python pickles that",
        "libtorch cannot read; convert them to safetensors first (pip install safetensors), e.g.",
        "  python3 - ckpt/model_*.t7 <<'EOF'",
        &python,
        "  EOF",
        "which writes ckpt/model_0.safetensors beside ckpt/model_0.t7, and so on.",
    ]
    .join("\n")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut builder = Import::builder(&args.out)
        .checkpoints(&args.checkpoints)
        .overwrite(args.overwrite);
    if let Some(list) = &args.epochs {
        builder = builder.epochs(parse_epochs(list, args.checkpoints.len())?);
    }
    if let Some(pattern) = &args.epoch_pattern {
        builder = builder.epoch_pattern(pattern)?;
    }
    let import = builder.build()?;
    let s = match import.run() {
        Ok(s) => s,
        Err(e) => {
            hint_torch_save(&import);
            return Err(e)
                .with_context(|| format!("nothing was imported into {}", args.out.display()));
        }
    };
    let epochs = match (s.checkpoints.first(), s.checkpoints.last()) {
        (Some(a), Some(b)) if s.checkpoints.len() > 1 => {
            format!("epochs {} to {}", a.epoch, b.epoch)
        }
        (Some(a), _) => format!("epoch {}", a.epoch),
        _ => String::new(),
    };
    outln!(
        "imported {} checkpoints into {} (run {}): {} snapshots, {epochs}",
        s.checkpoints.len(),
        escaped(s.dir.display()),
        escape(&s.run_id),
        s.checkpoints.len()
    )?;
    let count = |r: Role| s.tensors.iter().filter(|t| t.role == r).count();
    let skipped: Vec<String> = s
        .not_recorded
        .iter()
        .map(|t| format!("{} ({})", escape(&t.name), escape(&t.dtype)))
        .collect();
    outln!(
        "tensors: {} recorded ({} weights, {} biases, {} buffers){}",
        s.tensors.len(),
        count(Role::Weight),
        count(Role::Bias),
        count(Role::Buffer),
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; not recorded: {}", skipped.join(", "))
        }
    )?;
    outln!(
        "parameters: {} per snapshot, {} trainable",
        s.parameters,
        s.trainable_parameters
    )?;
    outln!(
        "read {} of checkpoints: checked in {:.2} s, imported in {:.2} s ({} of values written)",
        size(s.bytes_read),
        s.check_seconds,
        s.write_seconds,
        size(s.bytes_written)
    )?;
    outln!("  snapshot      epoch  checkpoint")?;
    for (i, c) in s.checkpoints.iter().enumerate() {
        outln!("  {i:>8} {:>10}  {}", c.epoch, escaped(c.path.display()))?;
    }
    let run = escaped(s.dir.display());
    outln!("next: landscape pca {run}; landscape report {run}")?;
    Ok(())
}

/// `bytes` in kB, MB or GB.
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.2} GB", b / 1e9),
    }
}

/// The epochs of `--epochs`: numbers and inclusive ranges A-B, comma-separated,
/// as many as there are checkpoints (`n`).
fn parse_epochs(list: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    let mut epochs = Vec::new();
    for item in list.split(',').map(str::trim) {
        let number = |s: &str| {
            s.trim().parse::<u64>().with_context(|| {
                format!(
                    "invalid --epochs: '{}' is not an epoch number (0, 1, 2, ...) or a range A-B",
                    escape(item)
                )
            })
        };
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let a = number(item)?;
                (a, a)
            }
        };
        if b < a {
            bail!(
                "invalid --epochs: the range '{}' ends before it starts",
                escape(item)
            );
        }
        // Checked before expanding: '0-18446744073709551615' allocates nothing.
        let len = (b - a).saturating_add(1);
        if len > (n.min(MAX_CHECKPOINTS) - epochs.len().min(n)) as u64 {
            bail!(
                "invalid --epochs: '{}' gives more epochs than the {n} checkpoints",
                escape(list)
            );
        }
        epochs.extend(a..=b);
    }
    Ok(epochs)
}

/// Says how to convert the checkpoints that `torch.save` wrote.
fn hint_torch_save(import: &Import) {
    let torch: Vec<_> = import
        .checkpoints()
        .iter()
        .filter(|c| is_torch_save_file(&c.path))
        .collect();
    let Some(first) = torch.first() else {
        return;
    };
    let others = match torch.len() {
        1 => String::new(),
        2 => " and 1 other checkpoint".to_string(),
        n => format!(" and {} other checkpoints", n - 1),
    };
    let python: String = CONVERT_PYTHON
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    // Not eprintln!, which panics when stderr is closed.
    let _ = write!(
        std::io::stderr(),
        "hint: {}{others} were written by PyTorch's torch.save, which libtorch cannot read; convert them to safetensors (pip install safetensors):\n  python3 - FILES... <<'EOF'\n{python}  EOF\n",
        escaped(first.path.display())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_lists_and_ranges() {
        assert_eq!(parse_epochs("0,5,10", 3).unwrap(), [0, 5, 10]);
        assert_eq!(parse_epochs("1-3, 7", 4).unwrap(), [1, 2, 3, 7]);
        assert!(parse_epochs("1-3", 2).is_err());
        assert!(parse_epochs("0-18446744073709551615", 5).is_err());
        assert!(parse_epochs("3-1", 3).is_err());
        assert!(parse_epochs("a", 1)
            .unwrap_err()
            .to_string()
            .contains("'a'"));
    }
}
