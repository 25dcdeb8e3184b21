//! Crash-safe file primitives: write to a temporary name, fsync, rename.
//!
//! A reader never sees a half-written file under a final name: files are
//! written as `.NAME.tmp` beside their destination and renamed into place once
//! complete. Temporary names start with a dot and end in `.tmp`, and every
//! reader in this crate ignores them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// True for the temporary names produced by [`temp_path`].
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Writes `path` atomically: `fill` writes into a buffered temporary file,
/// which is flushed, optionally fsynced, and renamed over `path`; the parent
/// directory is fsynced too when `fsync` is set, so the rename is durable.
pub fn write_atomic<F>(path: &Path, fsync: bool, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let tmp = temp_path(path);
    // Never write through what is already there: a leftover (or planted)
    // temporary name is removed first, and the file is created exclusively,
    // which refuses a symlink instead of following it. The final rename
    // replaces a symlink at `path` itself, not the file it points to.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("removing", &tmp, e)),
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io("creating", &tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let result = fill(&mut w).and_then(|()| {
        let file = w
            .into_inner()
            .map_err(|e| Error::io("writing", &tmp, e.into_error()))?;
        if fsync {
            file.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
        }
        Ok(())
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))?;
    if fsync {
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Opens `path` for reading after checking that it is a regular file: a
/// FIFO, socket or device planted in a run directory would block or never
/// end, so it is refused before it is opened.
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("opening", path, e))?;
    if !meta.is_file() {
        return Err(Error::corrupt(
            path,
            format!("not a regular file ({:?})", meta.file_type()),
        ));
    }
    File::open(path).map_err(|e| Error::io("opening", path, e))
}

/// Writes `value` as pretty JSON to `path` atomically (see [`write_atomic`]).
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(
    path: &Path,
    value: &T,
    fsync: bool,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, fsync, |w| {
        w.write_all(&bytes)
            .map_err(|e| Error::io("writing", path, e))
    })
}

/// Reads the JSON document `path` (a regular file, see [`open_regular`]).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_regular(path)?, &mut bytes)
        .map_err(|e| Error::io("reading", path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Fsyncs a directory, making renames inside it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("opening", dir, e))?;
    d.sync_all().map_err(|e| Error::io("syncing", dir, e))
}

/// Removes leftover temporary files (from a killed writer) in `dir`.
pub fn remove_temp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        if is_temp_name(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path())
                .map_err(|e| Error::io("removing", entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// An exclusive advisory lock on a run directory, held while a recorder
/// writes to it. The operating system releases it when the process dies, so a
/// killed run never leaves a stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";

impl DirLock {
    /// Takes the lock of `dir`, failing at once with [`Error::Locked`] when
    /// another recorder holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("creating lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                    lock: path,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("locking", &path, e));
            }
        }
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temp_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        let r = write_atomic(&p, false, |_| {
            Err(Error::invalid("test", "fail on purpose"))
        });
        assert!(r.is_err());
        assert!(!p.exists());
        assert!(!temp_path(&p).exists());
        write_atomic(&p, true, |w| {
            w.write_all(b"abc").map_err(|e| Error::io("w", &p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"keep").unwrap();
        let p = dir.path().join("out.json");
        // A symlink at the temporary name and one at the final name.
        std::os::unix::fs::symlink(&victim, temp_path(&p)).unwrap();
        write_atomic(&p, false, |w| {
            w.write_all(b"new").map_err(|e| Error::io("w", &p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomic(&p, true, |w| {
            w.write_all(b"newer").map_err(|e| Error::io("w", &p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"newer");
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let l = DirLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(Error::Locked { .. })
        ));
        drop(l);
        DirLock::acquire(dir.path()).unwrap();
    }
}
