//! What tests check about files written to disk: no plaintext, private modes.

use std::path::{Path, PathBuf};

/// Every file below `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Asserts that no file in `files` holds `marker` or any 6-byte window of it (so that no
/// fragment leaks either), and that there was something to scan.
pub fn assert_no_plaintext(files: &[PathBuf], marker: &str) {
    let mut scanned = 0;
    for path in files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        scanned += bytes.len();
        for w in marker.as_bytes().windows(6.min(marker.len())) {
            assert!(
                !bytes.windows(w.len()).any(|b| b == w),
                "{} holds {:?} in clear",
                path.display(),
                String::from_utf8_lossy(w)
            );
        }
    }
    assert!(scanned > 0, "nothing was scanned");
}

/// Asserts that the spool directory, its tenant directory and `file` are private: 0700, 0700
/// and 0600 (on Unix).
pub fn assert_private_spool(spool: &Path, tenant: &str, file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(spool), 0o700, "{}", spool.display());
        assert_eq!(mode(&spool.join(tenant)), 0o700, "{tenant}");
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    #[cfg(not(unix))]
    let _ = (spool, tenant, file);
}
