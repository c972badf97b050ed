//! Atomic file replacement: write a temp file next to the target, flush it
//! to disk, then rename it over the target. Rename within one directory is
//! atomic on POSIX file systems, so readers see either the old file or the
//! whole new one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ReportError;

/// Distinguishes temp files of concurrent writes from one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write `bytes` to `path` atomically, creating missing parent directories.
/// An existing file is replaced; on failure it is left as it was and the
/// temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io_err = |p: &Path, source| ReportError::Io {
        path: p.to_path_buf(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        io_err(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_new(&temp, bytes)
        .map_err(|e| io_err(&temp, e))
        .and_then(|()| fs::rename(&temp, path).map_err(|e| io_err(path, e)));
    if result.is_err() {
        // Best effort: the temp file may not exist if creating it failed.
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_new(temp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f: File = OpenOptions::new().write(true).create_new(true).open(temp)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_rejects_paths_without_a_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"1").unwrap();
        write_atomic(&p, b"22").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"22");
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }
}
