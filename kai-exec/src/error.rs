//! The one error type of the crate: every refusal is a variant the caller (and the model, through the
//! tools) can act on.

use std::path::PathBuf;

/// Why a workspace path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PathRefusal {
    /// The path is empty or names the workspace itself where a file is needed.
    Empty,
    /// The path is absolute; paths are relative to the workspace.
    Absolute,
    /// The path has a `..` component.
    ParentComponent,
    /// The path holds a NUL byte.
    Nul,
    /// The path is longer than the limit.
    TooLong,
    /// A component of the path is a symbolic link; links are never followed.
    Symlink,
    /// The file has more than one hard link, so it may be a file outside the workspace.
    HardLink,
    /// The path crosses into another file system mounted inside the workspace.
    MountPoint,
    /// The path names something other than a regular file (a directory, a FIFO, a device).
    NotAFile,
    /// The path names something other than a directory where a directory is needed.
    NotADirectory,
}

impl std::fmt::Display for PathRefusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            PathRefusal::Empty => "it is empty",
            PathRefusal::Absolute => "it is absolute (paths are relative to the workspace)",
            PathRefusal::ParentComponent => "it has a `..` component",
            PathRefusal::Nul => "it holds a NUL byte",
            PathRefusal::TooLong => "it is too long",
            PathRefusal::Symlink => "it goes through a symbolic link",
            PathRefusal::HardLink => "the file has more than one hard link",
            PathRefusal::MountPoint => "it crosses a mount point",
            PathRefusal::NotAFile => "it is not a regular file",
            PathRefusal::NotADirectory => "it is not a directory",
        })
    }
}

/// Everything that can go wrong in the execution worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A path given for the workspace was refused before anything was touched.
    #[error("the path {path:?} is refused: {reason}")]
    PathRefused {
        /// The path as given.
        path: String,
        /// Why.
        reason: PathRefusal,
    },
    /// The path does not exist in the workspace.
    #[error("{path:?} does not exist in the workspace")]
    NotFound {
        /// The path as given.
        path: String,
    },
    /// A file or a write is larger than the limit.
    #[error("{path:?} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The path as given.
        path: String,
        /// Its size, or the size of the write.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The program is not on the allow-list.
    #[error("the command {program:?} is not allowed; allowed commands: {allowed}")]
    CommandNotAllowed {
        /// The program as asked for.
        program: String,
        /// The allowed programs, comma-separated.
        allowed: String,
    },
    /// An argument is refused for this program by the policy.
    #[error("the argument {argument:?} is not allowed for {program}")]
    ArgumentRefused {
        /// The program.
        program: String,
        /// The argument.
        argument: String,
    },
    /// The command line is malformed: empty, a NUL byte in an argument, or too long.
    #[error("the command line is refused: {reason}")]
    InvalidCommand {
        /// Why.
        reason: String,
    },
    /// A program on the allow-list was not found where the sandbox sees the host's programs.
    #[error("the program {program:?} is not installed in /usr/local/bin, /usr/bin, /bin, /usr/sbin or /sbin")]
    ProgramNotFound {
        /// The program.
        program: String,
    },
    /// The sandbox cannot run on this machine (no bubblewrap, no user namespaces, a kernel without
    /// `openat2`); nothing runs unconfined instead.
    #[error("the sandbox is unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// Running as root, the workspace is owned by root's user or group. Commands run as the workspace's
    /// owner, because the kernel exempts root from the process limit that stops a fork bomb.
    #[error(
        "running as root, the workspace {path:?} must be owned by an unprivileged user and group, which commands then run as"
    )]
    RootOwnedWorkspace {
        /// The workspace directory.
        path: PathBuf,
    },
    /// An I/O error from the file system or the process.
    #[error("{operation} failed: {source}")]
    Io {
        /// What was being done.
        operation: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A [`PathRefused`](Error::PathRefused) for `path`.
    pub(crate) fn refused(path: &str, reason: PathRefusal) -> Self {
        Error::PathRefused {
            path: path.to_owned(),
            reason,
        }
    }

    pub(crate) fn io(operation: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Io {
            operation: operation.into(),
            source: source.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
