//! The execution worker of kAI: shell and file tools an agent can use on a machine safely.
//!
//! - [`Workspace`]: file operations confined to one directory by the kernel (`openat2` with
//!   `RESOLVE_BENEATH`), refusing symlinks, hard links and mount crossings.
//! - [`Sandbox`]: commands from an allow-list, as argument vectors (never a shell string), under
//!   bubblewrap with every namespace unshared (no network, no other processes), no capabilities, a
//!   seccomp filter, a scrubbed environment and limits on time, CPU, memory, processes and output.
//! - [`tools`]: both as kai [`Tool`](kai_core::Tool)s; every refusal reaches the model as a tool error.
//!
//! Linux only. `docs/sandbox.md` says what the sandbox guarantees and what it does not.

#[cfg(target_os = "linux")]
mod error;
#[cfg(target_os = "linux")]
mod limits;
#[cfg(target_os = "linux")]
mod output;
#[cfg(target_os = "linux")]
mod path;
#[cfg(target_os = "linux")]
mod policy;
#[cfg(target_os = "linux")]
mod sandbox;
#[cfg(target_os = "linux")]
mod seccomp;
#[cfg(target_os = "linux")]
pub mod tools;
#[cfg(target_os = "linux")]
mod workspace;

#[cfg(target_os = "linux")]
pub use error::{Error, PathRefusal, Result};
#[cfg(target_os = "linux")]
pub use limits::Limits;
#[cfg(target_os = "linux")]
pub use output::{CommandOutput, KillReason};
#[cfg(target_os = "linux")]
pub use path::MAX_PATH;
#[cfg(target_os = "linux")]
pub use policy::{CommandPolicy, MAX_COMMAND_LINE};
#[cfg(target_os = "linux")]
pub use sandbox::{SANDBOX_WORKSPACE, Sandbox};
#[cfg(target_os = "linux")]
pub use workspace::{Entry, EntryKind, FileLimits, Listing, Workspace};
