//! Writing key and certificate files with the right permissions, atomically.
//!
//! A file is written to a temporary sibling, synced, then renamed over the target, so a reader
//! never sees half a key; the directory is synced after the rename, so the new name survives a
//! crash once the write has returned. Private files are created with mode 0600 from the start
//! (never created wider and narrowed later).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a key or certificate file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The target exists and overwriting was not requested.
    #[error("{} already exists (refusing to overwrite it)", path.display())]
    Exists {
        /// The file that exists.
        path: PathBuf,
    },
    /// An I/O error on the given path.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Writes `data` to `path` with mode 0600. Fails with [`FileError::Exists`] if the file exists
/// and `overwrite` is false.
pub fn write_private_file(path: &Path, data: &[u8], overwrite: bool) -> Result<(), FileError> {
    write_file(path, data, overwrite, 0o600)
}

/// Writes `data` to `path` with mode 0644. Fails with [`FileError::Exists`] if the file exists
/// and `overwrite` is false.
pub fn write_public_file(path: &Path, data: &[u8], overwrite: bool) -> Result<(), FileError> {
    write_file(path, data, overwrite, 0o644)
}

fn write_file(path: &Path, data: &[u8], overwrite: bool, mode: u32) -> Result<(), FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    if !overwrite && path.exists() {
        return Err(FileError::Exists {
            path: path.to_owned(),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        file_name.as_deref().unwrap_or("file"),
        std::process::id()
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        if overwrite {
            fs::rename(&tmp, path)?;
        } else {
            // `hard_link` fails if the target appeared meanwhile, so a concurrent writer cannot
            // be clobbered.
            fs::hard_link(&tmp, path).and_then(|()| fs::remove_file(&tmp))?;
        }
        sync_parent_dir(path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(FileError::Exists {
                path: path.to_owned(),
            });
        }
        return Err(io(e));
    }
    Ok(())
}

/// Makes the creation, rename or removal of `path` durable by syncing its directory (on Unix;
/// elsewhere the rename is as durable as the platform makes it).
pub fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_not_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/key");
        write_private_file(&p, b"one", false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(
            write_private_file(&p, b"two", false),
            Err(FileError::Exists { .. })
        ));
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write_private_file(&p, b"three", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn the_directory_of_a_file_is_synced_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        fs::write(&file, b"k").unwrap();
        sync_parent_dir(&file).unwrap();
        // A bare file name is in the current directory.
        sync_parent_dir(Path::new("file-in-the-current-directory")).unwrap();
        assert!(sync_parent_dir(&dir.path().join("missing/key")).is_err());
    }
}
