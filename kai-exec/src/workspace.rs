//! The workspace: a directory the file tools cannot leave.
//!
//! Every path is resolved by the kernel with `openat2` under `RESOLVE_BENEATH`, with symbolic links
//! and mount crossings refused, so neither `..`, an absolute path, a symlink (even one swapped in while
//! the call runs) nor a bind mount leads outside. A file with more than one hard link is refused: it
//! may be a file from elsewhere linked in. Writes go to a new file that is renamed over the old one.

use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::error::{Error, PathRefusal, Result};
use crate::path::RelativePath;

/// How every path is resolved: beneath the workspace, through no link, across no mount.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Size bounds of the file operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLimits {
    /// The largest file `read` returns, in bytes.
    pub max_read: u64,
    /// The largest `write`, in bytes.
    pub max_write: u64,
    /// The most entries `list` returns; past it the listing says it was cut.
    pub max_entries: usize,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            max_read: 1 << 20,
            max_write: 16 << 20,
            max_entries: 1000,
        }
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed).
    Symlink,
    /// Anything else: a FIFO, a socket, a device.
    Other,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The file name.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Its size in bytes (of the link itself for a symlink).
    pub size: u64,
}

/// A directory listing, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The entries, without `.` and `..`.
    pub entries: Vec<Entry>,
    /// True when the directory had more entries than [`FileLimits::max_entries`].
    pub truncated: bool,
}

/// A directory the file operations are confined to.
#[derive(Debug)]
pub struct Workspace {
    root: OwnedFd,
    path: PathBuf,
    /// Who files made here are given to, when this process runs as root; see [`Workspace::owner`].
    owner: Option<(u32, u32)>,
    limits: FileLimits,
}

impl Workspace {
    /// Opens the directory `path` as a workspace.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let canonical = std::fs::canonicalize(path).map_err(|error| Error::io(format!("opening {path:?}"), error))?;
        let root = rustix::fs::open(
            &canonical,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|error| Error::io(format!("opening {canonical:?}"), error))?;
        // A kernel without openat2 (before 5.6) cannot confine paths; say so now, not on first use.
        match rustix::fs::openat2(&root, ".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), RESOLVE) {
            Err(Errno::NOSYS) => {
                return Err(Error::Unavailable {
                    reason: "the kernel has no openat2 (Linux 5.6 or later is needed)".into(),
                });
            }
            Err(error) => return Err(Error::io(format!("opening {canonical:?}"), error)),
            Ok(_) => {}
        }
        let stat = rustix::fs::fstat(&root).map_err(|error| Error::io(format!("reading {canonical:?}"), error))?;
        let owner = (rustix::process::geteuid().is_root() && stat.st_uid != 0 && stat.st_gid != 0)
            .then_some((stat.st_uid, stat.st_gid));
        Ok(Workspace {
            root,
            path: canonical,
            owner,
            limits: FileLimits::default(),
        })
    }

    /// Replaces the size bounds.
    pub fn with_limits(mut self, limits: FileLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The size bounds.
    pub fn limits(&self) -> FileLimits {
        self.limits
    }

    /// The workspace directory, canonical.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The workspace directory, opened when the workspace was: what the sandbox binds, whatever the
    /// path names by then.
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// When this process runs as root and the workspace belongs to another user and group (neither
    /// root's): their uid and gid. Files and directories made here are given to them, and sandboxed
    /// commands run as them.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// Reads a regular file of at most [`FileLimits::max_read`] bytes.
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        let relative = RelativePath::parse(path)?;
        let (parent, name) = relative.split_last(path)?;
        let directory = self.open_directory(parent, path, false)?;
        let file = open_beneath(
            directory.as_fd(),
            name,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            path,
        )?;
        let stat = rustix::fs::fstat(&file).map_err(|error| Error::io(format!("reading {path:?}"), error))?;
        check_regular(&stat, path)?;
        let limit = self.limits.max_read;
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > limit {
            return Err(Error::TooLarge {
                path: path.to_owned(),
                size,
                limit,
            });
        }
        let mut contents = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        std::fs::File::from(file)
            .take(limit + 1)
            .read_to_end(&mut contents)
            .map_err(|error| Error::io(format!("reading {path:?}"), error))?;
        // The file grew after the size was checked.
        if contents.len() as u64 > limit {
            return Err(Error::TooLarge {
                path: path.to_owned(),
                size: contents.len() as u64,
                limit,
            });
        }
        Ok(contents)
    }

    /// Writes `contents` to a regular file, making missing parent directories. A reader sees the old
    /// contents or the new, never a part: the bytes go to a new file renamed over the old one.
    pub fn write(&self, path: &str, contents: &[u8]) -> Result<()> {
        let limit = self.limits.max_write;
        if contents.len() as u64 > limit {
            return Err(Error::TooLarge {
                path: path.to_owned(),
                size: contents.len() as u64,
                limit,
            });
        }
        let relative = RelativePath::parse(path)?;
        let (parent, name) = relative.split_last(path)?;
        let directory = self.open_directory(parent, path, true)?;
        let mode = match rustix::fs::statat(&directory, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                check_regular(&stat, path)?;
                Mode::from_raw_mode(stat.st_mode) & Mode::from_bits_truncate(0o777)
            }
            Err(Errno::NOENT) => Mode::from_bits_truncate(0o644),
            Err(error) => return Err(Error::io(format!("writing {path:?}"), error)),
        };
        let (temporary_name, temporary) = self.create_temporary(directory.as_fd(), mode, path)?;
        let written = (|| {
            let mut file = std::fs::File::from(temporary);
            file.write_all(contents)?;
            file.sync_all()?;
            rustix::fs::renameat(&directory, &temporary_name, &directory, name)?;
            Ok::<_, std::io::Error>(())
        })();
        written.map_err(|error| {
            let _ = rustix::fs::unlinkat(&directory, &temporary_name, AtFlags::empty());
            Error::io(format!("writing {path:?}"), error)
        })
    }

    /// Lists a directory (`"."` for the workspace itself).
    pub fn list(&self, path: &str) -> Result<Listing> {
        let relative = RelativePath::parse(path)?;
        let directory = self.open_directory(relative.components(), path, false)?;
        // Reading entries needs a descriptor opened for reading, not the path-only one.
        let directory = open_beneath(
            directory.as_fd(),
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            path,
        )?;
        let entries =
            rustix::fs::Dir::read_from(&directory).map_err(|error| Error::io(format!("listing {path:?}"), error))?;
        let mut listing = Listing {
            entries: Vec::new(),
            truncated: false,
        };
        for entry in entries {
            let entry = entry.map_err(|error| Error::io(format!("listing {path:?}"), error))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            if listing.entries.len() == self.limits.max_entries {
                listing.truncated = true;
                break;
            }
            // An entry removed since the directory was read is left out.
            let Ok(stat) = rustix::fs::statat(&directory, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let kind = match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => EntryKind::File,
                FileType::Directory => EntryKind::Directory,
                FileType::Symlink => EntryKind::Symlink,
                _ => EntryKind::Other,
            };
            listing.entries.push(Entry {
                name: name.to_string_lossy().into_owned(),
                kind,
                size: u64::try_from(stat.st_size).unwrap_or(0),
            });
        }
        listing.entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listing)
    }

    /// Removes a file, a symbolic link (not what it points to) or an empty directory.
    pub fn remove(&self, path: &str) -> Result<()> {
        let relative = RelativePath::parse(path)?;
        let (parent, name) = relative.split_last(path)?;
        let directory = self.open_directory(parent, path, false)?;
        let stat = rustix::fs::statat(&directory, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|error| map_errno(error, path, "removing"))?;
        let flags = if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(&directory, name, flags).map_err(|error| map_errno(error, path, "removing"))
    }

    /// Opens the directory made of `components`, one at a time and each beneath the last, making the
    /// missing ones when `create` is set.
    fn open_directory(&self, components: &[String], path: &str, create: bool) -> Result<OwnedFd> {
        // No O_NOFOLLOW: with it a final symlink would open as itself and fail as no directory;
        // RESOLVE_NO_SYMLINKS refuses it as a symlink.
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut directory = open_beneath(self.root.as_fd(), ".", flags, path)?;
        for component in components {
            if create {
                match rustix::fs::mkdirat(&directory, component.as_str(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) => {
                        directory = self.give_to_owner(directory.as_fd(), component, path)?;
                        continue;
                    }
                    Err(Errno::EXIST) => {}
                    Err(error) => return Err(map_errno(error, path, "making a directory of")),
                }
            }
            directory = open_beneath(directory.as_fd(), component, flags, path)?;
        }
        Ok(directory)
    }

    /// Makes a new, empty file beside the target, under a name no one can guess (a command could
    /// otherwise take the names first).
    fn create_temporary(&self, directory: BorrowedFd<'_>, mode: Mode, path: &str) -> Result<(String, OwnedFd)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut attempts = 0;
        loop {
            let mut hasher = std::hash::RandomState::new().build_hasher();
            hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            let name = format!(".kai-write-{:016x}", hasher.finish());
            attempts += 1;
            match rustix::fs::openat2(directory, name.as_str(), flags, mode, RESOLVE) {
                Ok(file) => {
                    self.give_fd_to_owner(&file)
                        .map_err(|error| Error::io(format!("writing {path:?}"), error))?;
                    return Ok((name, file));
                }
                Err(Errno::EXIST) if attempts < 8 => continue,
                Err(error) => return Err(map_errno(error, path, "writing")),
            }
        }
    }

    /// Opens the directory `name` just made in `directory` and gives it to the workspace's owner (see
    /// [`Workspace::owner`]). The owner is given the directory opened, not whatever the name holds by
    /// then: a command may have swapped it for a link to a file of root's.
    fn give_to_owner(&self, directory: BorrowedFd<'_>, name: &str, path: &str) -> Result<OwnedFd> {
        let made = open_beneath(
            directory,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            path,
        )?;
        self.give_fd_to_owner(&made)
            .map_err(|error| Error::io(format!("making a directory of {path:?}"), error))?;
        Ok(made)
    }

    /// Gives the file or directory open as `fd` to the workspace's owner, when there is one to give
    /// it to (see [`Workspace::owner`]).
    fn give_fd_to_owner(&self, fd: &OwnedFd) -> rustix::io::Result<()> {
        match self.owner {
            Some((uid, gid)) => rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            ),
            None => Ok(()),
        }
    }
}

/// Opens `name` beneath `directory` as [`RESOLVE`] allows.
fn open_beneath(directory: BorrowedFd<'_>, name: &str, flags: OFlags, path: &str) -> Result<OwnedFd> {
    rustix::fs::openat2(directory, name, flags, Mode::empty(), RESOLVE)
        .map_err(|error| map_errno(error, path, "opening"))
}

/// Refuses anything but a regular file with one link.
fn check_regular(stat: &rustix::fs::Stat, path: &str) -> Result<()> {
    let refuse = |reason| Error::refused(path, reason);
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile if stat.st_nlink > 1 => Err(refuse(PathRefusal::HardLink)),
        FileType::RegularFile => Ok(()),
        FileType::Symlink => Err(refuse(PathRefusal::Symlink)),
        _ => Err(refuse(PathRefusal::NotAFile)),
    }
}

/// The typed error for what resolving or touching `path` returned.
fn map_errno(error: Errno, path: &str, operation: &str) -> Error {
    let refuse = |reason| Error::refused(path, reason);
    match error {
        Errno::NOENT => Error::NotFound { path: path.to_owned() },
        Errno::LOOP => refuse(PathRefusal::Symlink),
        Errno::XDEV => refuse(PathRefusal::MountPoint),
        Errno::NOTDIR => refuse(PathRefusal::NotADirectory),
        // A socket cannot be opened as a file.
        Errno::ISDIR | Errno::NXIO => refuse(PathRefusal::NotAFile),
        Errno::NAMETOOLONG => refuse(PathRefusal::TooLong),
        error => Error::io(format!("{operation} {path:?}"), error),
    }
}
