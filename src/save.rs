//! Saved bodies (`--save-bodies DIR`): each body is written to a temporary file in DIR as
//! its chunks arrive and hashed on the way, so a large body never sits in memory; once the
//! row is final the file is renamed to `<index>.<ext>`. A body that is not final (a retry,
//! a timeout, a stop) is deleted with its temporary file, so DIR holds only whole bodies of
//! rows in the report, and a rerun overwrites them in one rename.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Small chunks are gathered up to this before they are written: fewer writes on the
/// blocking pool. Larger chunks are written as they are, without a copy.
const GATHER: usize = 64 << 10;

/// Temporary files start with this, so that a run killed mid-body leaves names that are
/// plainly not bodies (`ls DIR/.partial-*`).
pub const PARTIAL_PREFIX: &str = ".partial-";

/// A body on its way to disk.
pub struct Saving {
    /// Out on a blocking thread while a write is under way; `None` after a failure.
    file: Option<std::fs::File>,
    /// Small chunks not written yet.
    gathered: Vec<u8>,
    /// Deletes the file when dropped, unless it was renamed.
    temp: Option<tempfile::TempPath>,
    sha: Sha256,
    /// Why the body cannot be saved: the first failure (the hash goes on).
    failed: Option<String>,
}

impl Saving {
    /// A new temporary file in `dir` (made on the runtime's thread: an open in a local
    /// directory, as the report's own writes are). A file that cannot be made is a failure
    /// kept for the row; the body is still read and hashed.
    pub fn start(dir: &Path) -> Saving {
        let mut builder = tempfile::Builder::new();
        builder.prefix(PARTIAL_PREFIX);
        #[cfg(unix)]
        {
            // Readable as any file the run writes (umask applies; tempfile's own is 0600).
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        let made = builder.tempfile_in(dir);
        let (file, temp, failed) = match made {
            Ok(named) => {
                let (file, temp) = named.into_parts();
                (Some(file), Some(temp), None)
            }
            Err(e) => (
                None,
                None,
                Some(format!("cannot save the body in {}: {e}", dir.display())),
            ),
        };
        Saving {
            file,
            gathered: Vec::new(),
            temp,
            sha: Sha256::new(),
            failed,
        }
    }

    /// Hashes `chunk` and writes it (a small one once enough are gathered).
    pub async fn write(&mut self, chunk: Bytes) {
        self.sha.update(&chunk);
        if self.file.is_none() {
            return;
        }
        if self.gathered.len() + chunk.len() < GATHER {
            self.gathered.extend_from_slice(&chunk);
            return;
        }
        if !self.gathered.is_empty() {
            let gathered = Bytes::from(std::mem::take(&mut self.gathered));
            self.write_out(gathered).await;
        }
        self.write_out(chunk).await;
    }

    /// Writes `bytes` to the file on a blocking thread (the file goes there and back).
    async fn write_out(&mut self, bytes: Bytes) {
        let Some(mut file) = self.file.take() else {
            return;
        };
        let (file, written) = tokio::task::spawn_blocking(move || {
            let written = file.write_all(&bytes);
            (file, written)
        })
        .await
        .expect("writing a file does not panic");
        match written {
            Ok(()) => self.file = Some(file),
            Err(e) => self.fail(format!("cannot save the body: {e}")),
        }
    }

    fn fail(&mut self, why: String) {
        self.file = None;
        self.temp = None;
        self.failed.get_or_insert(why);
    }

    /// Completes the file and renames it to `path`: the body's SHA-256 (lower-case hex),
    /// and why it could not be saved, if it could not.
    pub async fn finish(mut self, path: PathBuf) -> (String, Option<String>) {
        let sha = hex(&self.sha.finalize_reset());
        if !self.gathered.is_empty() {
            let gathered = Bytes::from(std::mem::take(&mut self.gathered));
            self.write_out(gathered).await;
        }
        // Closed before the rename.
        self.file = None;
        if let Some(temp) = self.temp.take() {
            let renamed = tokio::task::spawn_blocking(move || {
                temp.persist(&path)
                    .map_err(|e| format!("cannot save the body to {}: {}", path.display(), e.error))
            })
            .await
            .expect("renaming a file does not panic");
            if let Err(why) = renamed {
                self.failed.get_or_insert(why);
            }
        }
        (sha, self.failed)
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_finished_body_is_renamed_and_an_unfinished_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut saving = Saving::start(dir.path());
        saving.write(Bytes::from_static(b"hello ")).await;
        saving.write(Bytes::from(vec![b'w'; GATHER])).await;
        saving.write(Bytes::from_static(b"world")).await;
        let path = dir.path().join("1.txt");
        let (sha, failed) = saving.finish(path.clone()).await;
        assert_eq!(failed, None);
        let whole = [&b"hello "[..], &vec![b'w'; GATHER], b"world"].concat();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            whole,
            "small and large chunks in order"
        );
        assert_eq!(sha, hex(&Sha256::digest(&whole)));

        let mut dropped = Saving::start(dir.path());
        dropped.write(Bytes::from(vec![b'h'; 2 * GATHER])).await;
        drop(dropped);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["1.txt"], "the unfinished body's file is gone");
    }

    #[tokio::test]
    async fn a_directory_that_cannot_take_files_is_a_reason_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let mut saving = Saving::start(&missing);
        saving.write(Bytes::from_static(b"x")).await;
        let (sha, failed) = saving.finish(missing.join("1.bin")).await;
        assert_eq!(sha, hex(&Sha256::digest(b"x")));
        assert!(failed.unwrap().contains("cannot save the body"));
    }
}
