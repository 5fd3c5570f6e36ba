//! Saved bodies (`--save-bodies DIR`): each body is written to a temporary file in DIR as
//! its chunks arrive and hashed on the way, so a large body never sits in memory; once the
//! row is final the file is renamed to `<index>.<ext>`. A body that is not final (a retry,
//! a timeout, a stop) is deleted with its temporary file, so DIR holds only whole bodies of
//! rows in the report, and a rerun overwrites them in one rename.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

/// Bytes gathered before each write to the file: fewer, larger writes on the blocking pool.
const WRITE_BUFFER: usize = 64 << 10;

/// Temporary files start with this, so that a run killed mid-body leaves names that are
/// plainly not bodies (`ls DIR/.partial-*`).
pub const PARTIAL_PREFIX: &str = ".partial-";

/// A body on its way to disk.
pub struct Saving {
    file: Option<BufWriter<tokio::fs::File>>,
    /// Deletes the file when dropped, unless it was renamed.
    temp: Option<tempfile::TempPath>,
    sha: Sha256,
    /// Why the body cannot be saved: the first failure (the hash goes on).
    failed: Option<String>,
}

impl Saving {
    /// A new temporary file in `dir`. A file that cannot be made is a failure kept for the
    /// row; the body is still read and hashed.
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
                let file = BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));
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
            temp,
            sha: Sha256::new(),
            failed,
        }
    }

    /// Hashes `chunk` and writes it.
    pub async fn write(&mut self, chunk: &[u8]) {
        self.sha.update(chunk);
        if let Some(file) = &mut self.file {
            if let Err(e) = file.write_all(chunk).await {
                self.fail(format!("cannot save the body: {e}"));
            }
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
        if let Some(mut file) = self.file.take() {
            if let Err(e) = file.flush().await {
                self.fail(format!("cannot save the body to {}: {e}", path.display()));
            }
        }
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
        for chunk in [&b"hello "[..], b"world"] {
            saving.write(chunk).await;
        }
        let path = dir.path().join("1.txt");
        let (sha, failed) = saving.finish(path.clone()).await;
        assert_eq!(failed, None);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        assert_eq!(sha, hex(&Sha256::digest(b"hello world")));

        let mut dropped = Saving::start(dir.path());
        dropped.write(b"half a body").await;
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
        saving.write(b"x").await;
        let (sha, failed) = saving.finish(missing.join("1.bin")).await;
        assert_eq!(sha, hex(&Sha256::digest(b"x")));
        assert!(failed.unwrap().contains("cannot save the body"));
    }
}
