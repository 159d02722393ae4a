//! Crash-safe file writes: a reader sees the old file or the new one, never a mix.
//!
//! New files are readable by their owner only (they hold vaults, private documents and their
//! embeddings); a file that is replaced keeps the permissions it had, so a user's `chmod` survives.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// Writes `bytes` to `path` atomically, replacing any file there: a temporary file in the same
/// directory is written and fsynced, renamed over `path`, and the directory is fsynced so the rename
/// itself survives a crash.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write(path, bytes, false)
}

/// Like [`write_atomic`], but fails with [`Error::AlreadyExists`] if a file is at `path`, also when
/// another process creates one at the same moment (the new file is hard-linked into place, which
/// never replaces).
pub(crate) fn create_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write(path, bytes, true)
}

fn write(path: &Path, bytes: &[u8], create_only: bool) -> Result<(), Error> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale_temporaries(directory, &name);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let temporary = directory.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
    let result = (|| {
        let mut file = private_file(&temporary).map_err(|e| Error::io(&temporary, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&temporary, e))?;
        file.sync_all().map_err(|e| Error::io(&temporary, e))?;
        if create_only {
            std::fs::hard_link(&temporary, path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                    path: path.display().to_string(),
                },
                _ => Error::io(path, e),
            })?;
            std::fs::remove_file(&temporary).map_err(|e| Error::io(&temporary, e))?;
        } else {
            if let Ok(existing) = std::fs::metadata(path) {
                file.set_permissions(existing.permissions())
                    .map_err(|e| Error::io(&temporary, e))?;
            }
            std::fs::rename(&temporary, path).map_err(|e| Error::io(path, e))?;
        }
        sync_directory(directory)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Removes the temporary files (`.<name>.<pid>.<n>.tmp`) that writers of `name` left behind when
/// they died part-way: those of a process that no longer exists, untouched for a minute. Linux only,
/// where `/proc` says which processes exist; elsewhere they stay.
fn remove_stale_temporaries(directory: &Path, name: &str) {
    #[cfg(target_os = "linux")]
    {
        let prefix = format!(".{name}.");
        let Ok(entries) = std::fs::read_dir(directory) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            let Some(rest) = file.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".tmp")) else {
                continue;
            };
            let Some((pid, unique)) = rest.split_once('.') else {
                continue;
            };
            let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), unique.parse::<u64>()) else {
                continue;
            };
            let dead = pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists();
            let idle = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age.as_secs() >= 60));
            if dead && idle {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (directory, name);
}

/// A new file only its owner can read and write (where the system has such permissions).
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(unix)]
fn sync_directory(directory: &Path) -> Result<(), Error> {
    std::fs::File::open(directory)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(directory, e))
}

#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(directory: &Path) -> Vec<String> {
        std::fs::read_dir(directory)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn files_are_replaced_whole_or_refused_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        create_atomic(&path, b"first").unwrap();
        assert!(matches!(
            create_atomic(&path, b"second"),
            Err(Error::AlreadyExists { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"third").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"third");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn temporaries_of_dead_writers_are_removed_once_idle_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |name: &str, age_seconds: u64| {
            let file = std::fs::File::create(dir.path().join(name)).unwrap();
            let then = std::time::SystemTime::now() - std::time::Duration::from_secs(age_seconds);
            file.set_modified(then).unwrap();
        };
        // 4,000,000 is above Linux's largest process id, so no such process exists.
        let ours = format!(".data.{}.7.tmp", std::process::id());
        let names = [
            (".data.4000000.0.tmp", 3_600),
            (".data.4000000.1.tmp", 0),
            (ours.as_str(), 3_600),
            (".data.x.4000000.2.tmp", 3_600),
            (".other.4000000.3.tmp", 3_600),
        ];
        for (name, age) in names {
            touch(name, age);
        }
        write_atomic(&dir.path().join("data"), b"x").unwrap();
        let mut left = leftovers(dir.path());
        left.sort();
        let mut expected = vec![
            ".data.4000000.1.tmp",
            ours.as_str(),
            ".data.x.4000000.2.tmp",
            ".other.4000000.3.tmp",
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_private_and_replaced_files_keep_their_permissions() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let (private, shared) = (dir.path().join("private"), dir.path().join("shared"));
        write_atomic(&private, b"x").unwrap();
        create_atomic(&shared, b"x").unwrap();
        assert_eq!((mode(&private), mode(&shared)), (0o600, 0o600));
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&shared, b"y").unwrap();
        assert_eq!(mode(&shared), 0o640);
    }
}
