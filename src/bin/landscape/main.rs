//! `landscape`: the command-line interface of tch-landscape, a thin shell over
//! the library. One file per subcommand.

/// `println!` that returns the write error instead of panicking, so a closed
/// pipe (`landscape pca RUN | head`) ends the program quietly (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

mod animate;
mod compare;
mod connect;
mod curvature;
mod demo;
mod export;
mod import;
mod info;
mod interpolate;
mod merge;
mod model;
mod pca;
mod report;
mod surface;
mod term;
mod verify;
mod vtk;
mod watch;

use std::io::Write as _;

use clap::{Parser, Subcommand};

/// Record and analyse the loss landscape of tch training runs.
#[derive(Debug, Parser)]
#[command(name = "landscape", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(demo::Args),
    Info(info::Args),
    Import(import::Args),
    Export(export::Args),
    Surface(surface::Args),
    Interpolate(interpolate::Args),
    Connect(connect::Args),
    Animate(animate::Args),
    Curvature(curvature::Args),
    Merge(merge::Args),
    Pca(pca::Args),
    Report(report::Args),
    Compare(compare::Args),
    Vtk(vtk::Args),
    Verify(verify::Args),
    Watch(watch::Args),
}

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Info(a) => info::run(a),
        Command::Import(a) => import::run(a),
        Command::Export(a) => export::run(a),
        Command::Surface(a) => surface::run(a),
        Command::Interpolate(a) => interpolate::run(a),
        Command::Connect(a) => connect::run(a),
        Command::Animate(a) => animate::run(a),
        Command::Curvature(a) => curvature::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Pca(a) => pca::run(a),
        Command::Report(a) => report::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Vtk(a) => vtk::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Watch(a) => watch::run(a),
    };
    if let Err(e) = result {
        if is_broken_pipe(&e) {
            // The reader of stdout went away (`landscape info RUN | head`):
            // nothing is left to say to it, which is a normal end.
            std::process::exit(0);
        }
        // Names in errors come from files that may be hostile: no raw
        // control characters reach the terminal.
        // Not eprintln!, which panics when stderr is closed too.
        let _ = writeln!(std::io::stderr(), "error: {}", term::escape(&message(&e)));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, each said once: the library's
/// errors already include their source's text ("reading F: No such file"),
/// so a cause whose text is already there is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// True when `e` comes from writing to a closed pipe (Rust ignores SIGPIPE,
/// so such writes fail with `BrokenPipe`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
