//! Files a run writes: one run per file (`flock` through the standard library's
//! `File::try_lock`), a claim that removes a file it created when the run is refused, and
//! the helpers of a durable rename (the same-file test, the directory fsync).
//!
//! The rule these serve: a run that is refused (a lock, a header, a damaged file) refuses
//! before it changes a byte of any file, and leaves no new file behind. So a run first
//! *claims* every file it will write ([`Claimed::open`]: opened without truncation, locked),
//! checks everything that can refuse it, and only then changes them ([`Claimed::keep`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// Why a file could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another ratefetch run (or anything else holding an exclusive `flock`) has it.
    #[error("in use by another ratefetch run")]
    Busy,
    /// It cannot be opened or locked.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Takes the exclusive lock on `file` without waiting: `Busy` when another holds it. The
/// lock lasts as long as the open file (every clone of it) does.
pub fn try_lock(file: &File) -> Result<(), ClaimError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(ClaimError::Busy),
        Err(TryLockError::Error(e)) => Err(ClaimError::Io(e)),
    }
}

/// A file opened for writing and locked, not yet changed. Dropped before `keep`, it removes
/// the file if it was created by the claim, so that a refused run leaves nothing behind.
#[derive(Debug)]
pub struct Claimed {
    file: Option<File>,
    path: PathBuf,
    created: bool,
}

impl Claimed {
    /// Opens `path` read-write without truncating it (creating it when missing) and locks
    /// it. The lock is on the file `path` names once it is held: a file another run
    /// replaced meanwhile (by a rename) is opened again.
    pub fn open(path: &Path) -> Result<Claimed, ClaimError> {
        loop {
            let (file, created) = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(file) => (file, true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match OpenOptions::new().read(true).write(true).open(path) {
                        Ok(file) => (file, false),
                        // Removed between the two opens (a refused run's claim): again.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            // Not yet ours to remove: until the lock is held, another run may have opened
            // the file this one created, and locked it first.
            let mut claim = Claimed {
                file: Some(file),
                path: path.to_path_buf(),
                created: false,
            };
            // A device or a pipe (`-o /dev/null`, a FIFO) is not a file a run owns: any
            // number of runs may write to it, and there is nothing to keep whole.
            if !claim.regular()? {
                return Ok(claim);
            }
            try_lock(claim.file())?;
            if same_file(claim.file(), path) {
                claim.created = created;
                return Ok(claim);
            }
            // Replaced or removed while we locked it: this claim is on a stale file (and
            // must not remove what is at `path` now). Again.
        }
    }

    /// Whether it is a regular file (else a device or a pipe: not locked, and not to be
    /// truncated).
    pub fn regular(&self) -> io::Result<bool> {
        Ok(self.file().metadata()?.is_file())
    }

    /// The open, locked file (positioned at its start).
    pub fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("a claim holds its file until kept")
    }

    /// The path it was claimed at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the claim created the file (it was not there before).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn created(&self) -> bool {
        self.created
    }

    /// The run goes on: the file is its own to change, and stays when the run ends.
    pub fn keep(mut self) -> File {
        self.file.take().expect("a claim is kept once")
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if self.created && self.file.is_some() {
            // Still locked by us and never written: nobody else can have used it.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether the open `file` is the one `path` names now.
pub fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => same_meta(&a, &b, None),
        _ => false,
    }
}

/// Whether two paths name the same file (both must exist).
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => same_meta(&x, &y, Some((a, b))),
        _ => false,
    }
}

#[cfg(unix)]
fn same_meta(a: &std::fs::Metadata, b: &std::fs::Metadata, _: Option<(&Path, &Path)>) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_meta(a: &std::fs::Metadata, b: &std::fs::Metadata, paths: Option<(&Path, &Path)>) -> bool {
    match paths {
        Some((x, y)) => match (std::fs::canonicalize(x), std::fs::canonicalize(y)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
        // Without inode numbers an open file cannot be told from another of the same size
        // and time; this is the best guess there is.
        None => a.len() == b.len() && a.modified().ok() == b.modified().ok(),
    }
}

/// Makes a rename to `path` durable by syncing its directory (best effort: not every
/// platform can open a directory).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    if cfg!(not(unix)) {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_on_a_file_is_refused_as_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let first = Claimed::open(&path).unwrap();
        assert!(first.created());
        assert!(matches!(Claimed::open(&path), Err(ClaimError::Busy)));
        let kept = first.keep();
        assert!(matches!(Claimed::open(&path), Err(ClaimError::Busy)));
        drop(kept);
        let again = Claimed::open(&path).unwrap();
        assert!(!again.created(), "it was there already");
    }

    #[test]
    fn a_claim_dropped_before_keep_removes_only_a_file_it_created() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.csv");
        drop(Claimed::open(&new).unwrap());
        assert!(!new.exists(), "a refused run leaves no new file");
        let old = dir.path().join("old.csv");
        std::fs::write(&old, b"kept as it was").unwrap();
        drop(Claimed::open(&old).unwrap());
        assert_eq!(std::fs::read(&old).unwrap(), b"kept as it was");
        let kept = Claimed::open(&new).unwrap().keep();
        drop(kept);
        assert!(new.exists(), "a kept claim stays");
    }

    #[test]
    #[cfg(unix)]
    fn a_device_is_claimed_by_any_number_of_runs_and_kept() {
        let null = Path::new("/dev/null");
        let a = Claimed::open(null).unwrap();
        let b = Claimed::open(null).unwrap();
        assert!(!a.regular().unwrap() && !a.created());
        drop((a, b));
        assert!(null.exists());
    }

    #[test]
    fn same_path_sees_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let b = dir.path().join("b");
        std::fs::hard_link(&a, &b).unwrap();
        assert!(same_path(&a, &b));
        assert!(!same_path(&a, &dir.path().join("missing")));
        assert!(same_file(&File::open(&a).unwrap(), &b));
    }
}
