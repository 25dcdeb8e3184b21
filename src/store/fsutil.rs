//! Crash-safe file primitives: write to a temporary name, fsync, rename.
//!
//! A reader never sees a half-written file under a final name: files are
//! written under a fresh temporary name (`.NAME.PID.N.tmp`) beside their
//! destination and renamed into place once complete. Temporary names start
//! with a dot and end in `.tmp`, and every reader in this crate ignores them.
//! Output directories are created without following planted symbolic links
//! ([`create_dir_in`]) and locked by their one writer ([`DirLock`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// A fresh temporary name for writing `path`: `.NAME.PID.N.tmp` beside it,
/// unique within this process and across processes, so two writers never
/// share one and a name planted in advance is not the one used.
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// True for the temporary names produced by [`temp_path`].
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Writes `path` atomically: `fill` writes into a buffered temporary file,
/// which is flushed, optionally fsynced, and renamed over `path`; the parent
/// directory is fsynced too when `fsync` is set, so the rename is durable.
///
/// Never writes through what is already there: the temporary file is
/// created exclusively under a fresh name (a symlink planted there is
/// refused, not followed), and the rename replaces a symlink at `path`
/// itself, not the file it points to. On any error the temporary file is
/// removed and `path` is untouched.
pub fn write_atomic<F>(path: &Path, fsync: bool, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let tmp = temp_path(path);
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
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("renaming into place", path, e));
    }
    if fsync {
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Creates the directory `dir` inside `root` (or `root` itself), with the
/// missing directories between them, refusing to go through a symbolic link
/// or a non-directory below `root`.
///
/// `root` is a path the user chose (created if missing, and trusted as it
/// is); everything below it may come from someone else — a run directory
/// received from a colleague, say — where a planted `report -> /home/me`
/// would otherwise make the tool write outside the output.
pub fn create_dir_in(root: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(root).map_err(|_| {
        Error::invalid(
            "output directory",
            format!("{} is not inside {}", dir.display(), root.display()),
        )
    })?;
    std::fs::create_dir_all(root).map_err(|e| Error::io("creating", root, e))?;
    let mut at = root.to_path_buf();
    for part in rel.components() {
        match part {
            std::path::Component::Normal(p) => at.push(p),
            std::path::Component::CurDir => continue,
            _ => {
                return Err(Error::invalid(
                    "output directory",
                    format!("{} leaves {}", dir.display(), root.display()),
                ))
            }
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::invalid(
                    "output directory",
                    format!(
                        "{} is a symbolic link; refusing to write through it (remove it, or pass the directory it points to)",
                        at.display()
                    ),
                ))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::invalid(
                    "output directory",
                    format!("{} exists and is not a directory", at.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::create_dir(&at) {
                    Ok(()) => {}
                    // Created by someone else in between: check it again.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        if !std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
                            return Err(Error::invalid(
                                "output directory",
                                format!("{} appeared as a non-directory", at.display()),
                            ));
                        }
                    }
                    Err(e) => return Err(Error::io("creating", &at, e)),
                }
            }
            Err(e) => return Err(Error::io("inspecting", &at, e)),
        }
    }
    Ok(())
}

/// Creates the output directory `dir`: its parent is trusted as the user's
/// choice, `dir` itself must not be a symbolic link (see [`create_dir_in`]).
pub fn create_output_dir(dir: &Path) -> Result<()> {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => create_dir_in(parent, dir),
        _ => create_dir_in(Path::new("."), &Path::new(".").join(dir)),
    }
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

/// fsyncs the file at `path` (its data and metadata).
pub fn sync_file(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    f.sync_all().map_err(|e| Error::io("syncing", path, e))
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

/// An exclusive advisory lock on an output directory (a run, a surface, a
/// report ...), held while something writes into it, so one directory has
/// one writer, in this process or any other. The operating system releases
/// it when the process dies, so a killed writer never leaves a stale lock
/// behind. A directory held elsewhere gives [`Error::Locked`] with the
/// holder's pid.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE: &str = ".lock";

impl DirLock {
    /// Takes the lock of the existing directory `dir`, failing at once with
    /// [`Error::Locked`] when another writer holds it. The lock file is
    /// never followed through a symbolic link.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                    pid: read_pid(&path),
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

    /// Creates `dir` as an output directory (see [`create_output_dir`]) and
    /// takes its lock.
    pub fn create(dir: &Path) -> Result<DirLock> {
        create_output_dir(dir)?;
        DirLock::acquire(dir)
    }
}

/// Opens (creating) the lock file `path` for writing, refusing a symbolic
/// link or anything but a regular file there.
fn open_lock_file(path: &Path) -> Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).truncate(false).write(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = opts
        .open(path)
        .map_err(|e| Error::io("creating lock file", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("inspecting lock file", path, e))?;
    if !meta.is_file() {
        return Err(Error::corrupt(path, "lock file is not a regular file"));
    }
    Ok(file)
}

/// The pid written into the lock file `path` by its holder, if readable.
fn read_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(open_regular(path).ok()?, 32),
        &mut text,
    )
    .ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_leaves_no_temp_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, b"old").unwrap();
        // A writer failing half-way (as on a full disk) leaves the old file
        // and no temporary behind.
        let r = write_atomic(&p, false, |w| {
            w.write_all(&[7u8; 3 << 20])
                .map_err(|e| Error::io("w", &p, e))?;
            Err(Error::invalid("test", "fail on purpose"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), ["x.bin"]);
        write_atomic(&p, true, |w| {
            w.write_all(b"abc").map_err(|e| Error::io("w", &p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        assert_eq!(names_in(dir.path()), ["x.bin"]);
    }

    #[test]
    fn temporary_names_are_fresh_and_recognised() {
        let p = Path::new("/x/out.json");
        let (a, b) = (temp_path(p), temp_path(p));
        assert_ne!(a, b);
        for t in [a, b] {
            assert_eq!(t.parent(), p.parent());
            assert!(is_temp_name(&t.file_name().unwrap().to_string_lossy()));
        }
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"keep").unwrap();
        let p = dir.path().join("out.json");
        // Symlinks at the old fixed temporary name and at the final name.
        std::os::unix::fs::symlink(&victim, dir.path().join(".out.json.tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomic(&p, true, |w| {
            w.write_all(b"new").map_err(|e| Error::io("w", &p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }

    #[cfg(unix)]
    #[test]
    fn output_directories_refuse_planted_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        create_dir_in(&run, &run.join("surfaces/a/points")).unwrap();
        assert!(run.join("surfaces/a/points").is_dir());
        std::os::unix::fs::symlink(outside.path(), run.join("report")).unwrap();
        let e = create_dir_in(&run, &run.join("report")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = create_dir_in(&run, &run.join("report/figures")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = create_output_dir(&run.join("report")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::write(run.join("file"), b"").unwrap();
        assert!(create_dir_in(&run, &run.join("file/x")).is_err());
        assert!(create_dir_in(&run, &run.join("../x")).is_err());
        assert!(create_dir_in(&run, &root.path().join("elsewhere")).is_err());
        assert!(names_in(outside.path()).is_empty());
        // The root itself is the user's choice and may be a link.
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&run, &link).unwrap();
        create_dir_in(&link, &link.join("pca")).unwrap();
        assert!(run.join("pca").is_dir());
    }

    #[cfg(unix)]
    #[test]
    fn lock_file_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&victim, out.join(LOCK_FILE)).unwrap();
        assert!(DirLock::acquire(&out).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn lock_is_exclusive_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let l = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Locked { pid: Some(p), .. } if p == std::process::id()));
        assert!(
            e.to_string()
                .contains(&format!("in use by pid {}", std::process::id())),
            "{e}"
        );
        drop(l);
        let _l = DirLock::acquire(dir.path()).unwrap();
        // Another process (`flock -n`, where installed) is refused too.
        match std::process::Command::new("flock")
            .args(["-n", "-E", "3"])
            .arg(dir.path().join(LOCK_FILE))
            .arg("true")
            .status()
        {
            Ok(s) => assert_eq!(s.code(), Some(3)),
            Err(_) => eprintln!("flock(1) not available; cross-process check skipped"),
        }
    }
}
