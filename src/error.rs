//! The crate's one error type.
//!
//! Every variant that concerns a file names the path; every variant that
//! concerns a tensor names the tensor. Messages say what was expected and what
//! was found, so a user can act on them without reading the source.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tch-landscape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on a file or directory.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("creating", "reading", "renaming", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Arrow could not encode or decode a file.
    #[error("arrow error in {path}: {source}")]
    Arrow {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: arrow::error::ArrowError,
    },

    /// Parquet could not encode a file.
    #[error("parquet error in {path}: {source}")]
    Parquet {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A JSON document (manifest, metadata) could not be read or written.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// libtorch reported an error.
    #[error("libtorch error while {context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: tch::TchError,
    },

    /// The directory does not exist or holds no run manifest.
    #[error("{path} is not a tch-landscape run directory: {reason}")]
    NotARun {
        /// The directory given.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },

    /// The run was written by a newer (or unknown) on-disk schema.
    #[error("{path} has schema version {found}, this build of tch-landscape reads versions up to {supported}; upgrade tch-landscape")]
    SchemaVersion {
        /// The manifest concerned.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// A file exists but its content is not what the format requires.
    #[error("{path} is corrupt or truncated: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What was expected and what was found.
        reason: String,
    },

    /// A tensor's shape differs from the one recorded at the start of the run.
    #[error("tensor '{tensor}' changed shape: recorded as {expected:?} at train start, now {found:?}{context}")]
    ShapeChanged {
        /// The tensor's name.
        tensor: String,
        /// The shape in the manifest.
        expected: Vec<i64>,
        /// The shape found now.
        found: Vec<i64>,
        /// Where it was found (e.g. " at epoch 3").
        context: String,
    },

    /// The set of variables of the VarStore changed after the recorder was built.
    #[error("the VarStore's variables changed after the recorder was built: added {added:?}, removed {removed:?}; build the recorder after the model is fully constructed")]
    VariablesChanged {
        /// Names present now but not at build time.
        added: Vec<String>,
        /// Names present at build time but not now.
        removed: Vec<String>,
    },

    /// Another process holds the directory's lock (one writer per
    /// directory).
    #[error("{path} is in use by {} (lock file {lock}); wait for it to finish, stop it, or use a different directory", match pid { Some(p) => format!("pid {p}"), None => "another process".to_string() })]
    Locked {
        /// The locked directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The process holding it, when its lock file says.
        pid: Option<u32>,
    },

    /// The output directory already holds a run.
    #[error("{path} already holds a recorded run; choose a new directory, or overwrite it (`.overwrite(true)` on the builder, `--overwrite` on the command line)")]
    AlreadyExists {
        /// The run directory.
        path: PathBuf,
    },

    /// A tensor was not found in a run, a direction set or a model.
    #[error("unknown tensor '{tensor}' in {place}")]
    UnknownTensor {
        /// The name asked for.
        tensor: String,
        /// Where it was looked up.
        place: String,
    },

    /// A snapshot index that the run does not have.
    #[error("snapshot {index} is not in run {path} (it has {count} snapshots)")]
    NoSuchSnapshot {
        /// The run directory.
        path: PathBuf,
        /// The index asked for.
        index: usize,
        /// How many snapshots the run has.
        count: usize,
    },

    /// An option or argument with a value outside what is accepted.
    #[error("invalid {option}: {reason}")]
    InvalidArgument {
        /// The option or argument's name.
        option: String,
        /// What was expected and what was given.
        reason: String,
    },

    /// The recorder's background writer stopped.
    #[error("the recorder's writer thread {0}")]
    Writer(String),

    /// An iterative method (Lanczos) stopped before reaching its tolerance.
    #[error("{method}: {iterations} iterations did not converge to tol {tol} ({detail}); raise max_iter or tol")]
    NotConverged {
        /// The method, e.g. "Lanczos".
        method: &'static str,
        /// Iterations run.
        iterations: usize,
        /// The largest residual of the values asked for.
        residual: f64,
        /// The tolerance asked for.
        tol: f64,
        /// The current estimates and their residuals.
        detail: String,
    },

    /// Shards (or MPI ranks) that do not belong to one computation.
    #[error("{path}: {reason}")]
    ShardMismatch {
        /// The shard directory (or rank) that differs.
        path: PathBuf,
        /// What differs, or what is missing or repeated.
        reason: String,
    },

    /// A result directory whose computation has not finished.
    #[error("{what} in {path} is incomplete: {done} of its {total} points are done; run it again (it resumes)")]
    Incomplete {
        /// The directory.
        path: PathBuf,
        /// What is incomplete, e.g. "shard 1/2".
        what: String,
        /// Points done.
        done: usize,
        /// Points wanted.
        total: usize,
    },

    /// A worker thread (or MPI rank) panicked or failed; its work is lost.
    #[error("{worker} panicked{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    WorkerPanicked {
        /// Which worker, e.g. "replica thread 1" or "the snapshot reader thread".
        worker: String,
        /// The panic message, when it was a string.
        message: Option<String>,
    },

    /// An MPI job failed: a rank reported an error, or sent a message that
    /// does not belong to the protocol.
    #[error("MPI: {reason}")]
    Mpi {
        /// What failed, naming the rank.
        reason: String,
    },

    /// A recorded tensor holds a value that is not finite (NaN, ±∞, or a
    /// float64 beyond the float32 range of an analysis that streams float32).
    #[error("{path}: tensor '{tensor}' holds a value that is not finite in float32 ({value}) at element {index}; the analyses need finite values (training may have diverged by this snapshot; `landscape verify` or `Run::verify` lists every affected snapshot and tensor)")]
    NonFinite {
        /// The snapshot file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The element (row-major flat index inside the tensor).
        index: u64,
        /// The stored value.
        value: f64,
    },

    /// A data file (dataset) could not be parsed.
    #[error("cannot read data file {path}: {reason}")]
    Data {
        /// The file concerned.
        path: PathBuf,
        /// What was expected and what was found.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the operation and the path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps an Arrow error with the path of the file.
    pub fn arrow(path: impl Into<PathBuf>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            path: path.into(),
            source,
        }
    }

    /// Wraps a libtorch error with what was being done.
    pub fn torch(context: impl Into<String>, source: tch::TchError) -> Self {
        Error::Torch {
            context: context.into(),
            source,
        }
    }

    /// An invalid-argument error.
    pub fn invalid(option: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            option: option.into(),
            reason: reason.into(),
        }
    }

    /// A [`Error::WorkerPanicked`] from a joined thread's panic payload.
    pub fn worker_panicked(
        worker: impl Into<String>,
        payload: &(dyn std::any::Any + Send),
    ) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        Error::WorkerPanicked {
            worker: worker.into(),
            message,
        }
    }

    /// A corrupt-file error.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
