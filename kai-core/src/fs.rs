//! Crash-safe files for the crates that persist state (vaults, indexes, stores, replay caches): a
//! reader sees the old file or the new one, never a mix, and a second writer is refused.
//!
//! New files are readable by their owner only (they hold keys, private documents and their
//! embeddings); a file that is replaced keeps the permissions it had, so a user's `chmod` survives.
//! Errors are `std::io::Error`s whose kind says what happened ([`ErrorKind::AlreadyExists`],
//! [`ErrorKind::WouldBlock`] for a file another writer holds), for each crate to map onto its own.

use std::io::{Error, ErrorKind, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically, replacing any file there: a temporary file in the same
/// directory is written and fsynced, renamed over `path`, and the directory is fsynced so the rename
/// itself survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write(path, bytes, false)
}

/// Like [`write_atomic`], but fails with [`ErrorKind::AlreadyExists`] if a file is at `path`, also when
/// another process creates one at the same moment (the new file is hard-linked into place, which
/// never replaces).
pub fn create_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write(path, bytes, true)
}

/// How long [`FileLock::acquire`] waits for a lock that another holder may be about to release.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// An exclusive lock on `<path>.lock`, held until dropped, so that a second writer of `path` (another
/// process, or another handle in this one) fails with [`ErrorKind::WouldBlock`] instead of silently
/// overwriting what the first one saves. The lock file stays behind: removing it would race with a
/// writer taking it.
///
/// A lock just released can still be held for a moment by a process this one is starting (a child
/// holds copies of the parent's files between its fork and its exec), so taking it is retried for up
/// to [`LOCK_PATIENCE`] before another writer is assumed.
#[derive(Debug)]
pub struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// Takes the lock for `path`, or fails if another writer holds it (after [`LOCK_PATIENCE`]).
    pub fn acquire(path: &Path) -> Result<Self, Error> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = Path::new(&name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)?;
        let started = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_PATIENCE => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::new(
                        ErrorKind::WouldBlock,
                        format!("{} is open in another writer", path.display()),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

/// Reads the file at `path` whole, refusing anything but a regular file ([`ErrorKind::InvalidInput`]:
/// a FIFO would block the read, a device might never end) and a file over `max` bytes
/// ([`ErrorKind::FileTooLarge`]) without reading more than `max + 1` bytes of it.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    read_regular(path, max, false)
}

/// Like [`read_limited`], but a symbolic link is followed to the regular file it names (files an
/// operator provides, such as configuration mounted by Kubernetes, are often links).
pub fn read_limited_following(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    read_regular(path, max, true)
}

fn read_regular(path: &Path, max: u64, follow_links: bool) -> Result<Vec<u8>, Error> {
    let not_regular = || {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        )
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Checked on the open file, not before opening it, so nothing can be swapped in between: a FIFO
    // opens without waiting for a writer, and a symbolic link does not open at all.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NONBLOCK | if follow_links { 0 } else { libc::O_NOFOLLOW },
    );
    #[cfg(not(unix))]
    if !follow_links && !std::fs::symlink_metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = match options.open(path) {
        Ok(file) => file,
        #[cfg(unix)]
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => return Err(not_regular()),
        Err(error) => return Err(error),
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(not_regular());
    }
    if metadata.len() > max {
        return Err(Error::new(
            ErrorKind::FileTooLarge,
            format!("{} is over {max} bytes", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, max.saturating_add(1)), &mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(Error::new(
            ErrorKind::FileTooLarge,
            format!("{} is over {max} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// Runs blocking file work on a helper thread of its own, so that an async runtime's threads are not
/// held up while it waits on the disk; works under any executor.
pub(crate) async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    let (sender, receiver) = futures::channel::oneshot::channel();
    std::thread::Builder::new().name("kai-fs".into()).spawn(move || {
        let _ = sender.send(work());
    })?;
    receiver
        .await
        .map_err(|_| Error::other("the file helper thread stopped before it finished"))
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
    let (temporary, mut file) = temporary_file(directory, &name)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        if create_only {
            let exists = || Error::new(ErrorKind::AlreadyExists, format!("{} exists", path.display()));
            match std::fs::hard_link(&temporary, path) {
                Ok(()) => std::fs::remove_file(&temporary)?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(exists()),
                // A file system without hard links (FAT, some network shares): check, then rename.
                Err(_) if path.exists() => return Err(exists()),
                Err(_) => std::fs::rename(&temporary, path)?,
            }
        } else {
            if let Ok(existing) = std::fs::metadata(path) {
                file.set_permissions(existing.permissions())?;
            }
            std::fs::rename(&temporary, path)?;
        }
        sync_directory(directory)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Removes the temporary files (`.<name>.<pid>.<n>.tmp`) that writers of `name` left behind when
/// they died part-way: those of a process that no longer exists, untouched for an hour (a process in
/// another PID namespace sharing the directory looks dead from here, but is not an hour into one
/// write). Linux only, where `/proc` says which processes exist; elsewhere they stay.
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
                .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age.as_secs() >= 3_600));
            if dead && idle {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (directory, name);
}

/// Numbers this process's temporary files.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A new temporary file beside `name` in `directory`, `.<name>.<pid>.<n>.tmp`, that only its owner can
/// read and write (where the system has such permissions). A name already taken, say by a file a
/// crashed process with the same id left, is skipped rather than reused.
fn temporary_file(directory: &Path, name: &str) -> Result<(std::path::PathBuf, std::fs::File), Error> {
    let mut attempts = 0;
    loop {
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = directory.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Not `AlreadyExists`: that kind says the file asked for exists.
                if attempts == 64 {
                    return Err(Error::other(format!("no free temporary name beside {name}")));
                }
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Syncs a directory, so that an entry just made in it survives a power loss.
#[cfg(unix)]
pub(crate) fn sync_directory(directory: &Path) -> Result<(), Error> {
    std::fs::File::open(directory).and_then(|d| d.sync_all())
}

/// Syncs a directory, so that an entry just made in it survives a power loss.
#[cfg(not(unix))]
pub(crate) fn sync_directory(_directory: &Path) -> Result<(), Error> {
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
        assert_eq!(
            create_atomic(&path, b"second").unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"third").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"third");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn limited_reads_refuse_big_and_irregular_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        write_atomic(&path, b"12345").unwrap();
        assert_eq!(read_limited(&path, 5).unwrap(), b"12345");
        assert_eq!(read_limited(&path, 4).unwrap_err().kind(), ErrorKind::FileTooLarge);
        assert_eq!(read_limited(dir.path(), 4).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(
            read_limited(&dir.path().join("missing"), 4).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(read_limited(&path, u64::MAX).unwrap(), b"12345");
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&path, &link).unwrap();
            assert_eq!(read_limited(&link, 10).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(read_limited_following(&link, 10).unwrap(), b"12345");
            // A FIFO is refused at once, not waited on for a writer.
            let fifo = dir.path().join("fifo");
            let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
            assert!(status.success());
            assert_eq!(read_limited(&fifo, 10).unwrap_err().kind(), ErrorKind::InvalidInput);
            let to_fifo = dir.path().join("to-fifo");
            std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
            assert_eq!(
                read_limited_following(&to_fifo, 10).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }

    #[test]
    fn a_second_writer_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let first = FileLock::acquire(&path).unwrap();
        assert_eq!(FileLock::acquire(&path).unwrap_err().kind(), ErrorKind::WouldBlock);
        drop(first);
        FileLock::acquire(&path).unwrap();
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
        // Process ids stay below 4,194,304 (Linux's PID_MAX_LIMIT), so no process 4999999 exists.
        let ours = format!(".data.{}.7.tmp", std::process::id());
        let names = [
            (".data.4999999.0.tmp", 7_200),
            (".data.4999999.1.tmp", 600),
            (ours.as_str(), 7_200),
            (".data.x.4999999.2.tmp", 7_200),
            (".other.4999999.3.tmp", 7_200),
        ];
        for (name, age) in names {
            touch(name, age);
        }
        write_atomic(&dir.path().join("data"), b"x").unwrap();
        let mut left = leftovers(dir.path());
        left.sort();
        let mut expected = vec![
            ".data.4999999.1.tmp",
            ours.as_str(),
            ".data.x.4999999.2.tmp",
            ".other.4999999.3.tmp",
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn a_temporary_name_left_by_an_earlier_process_with_our_id_is_skipped_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let next = NEXT.load(Ordering::Relaxed);
        let taken: Vec<_> = (next..next + 8)
            .map(|n| dir.path().join(format!(".data.{}.{n}.tmp", std::process::id())))
            .collect();
        for path in &taken {
            std::fs::write(path, b"left by a crash").unwrap();
        }
        write_atomic(&dir.path().join("data"), b"new").unwrap();
        assert_eq!(std::fs::read(dir.path().join("data")).unwrap(), b"new");
        assert!(
            taken
                .iter()
                .all(|path| std::fs::read(path).unwrap() == b"left by a crash")
        );
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
