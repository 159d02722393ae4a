//! What a sandboxed command may use.

use serde::{Deserialize, Serialize};

/// Resource bounds of one command. The defaults suit a model running build and text tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time, in milliseconds; past it every process of the command is killed.
    pub wall_time_ms: u64,
    /// CPU time per process, in seconds (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Address space per process, in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Processes and threads the command may have at once (`RLIMIT_NPROC`, counted in its own user
    /// namespace): a fork bomb stops here.
    pub processes: u64,
    /// Largest file a process may write, in bytes (`RLIMIT_FSIZE`).
    pub file_bytes: u64,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Size of the command's private `/tmp`, and of its `/dev/shm`, in bytes each: they are held in
    /// memory.
    pub tmp_bytes: u64,
    /// Bytes kept of standard output and, separately, of standard error; a command that writes more is
    /// killed and its output marked cut.
    pub output_bytes: usize,
    /// Commands of one [`Sandbox`](crate::Sandbox) running at once; more wait their turn. Every other
    /// limit is per command, so this bounds their sum.
    pub concurrent_commands: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_time_ms: 30_000,
            cpu_seconds: 20,
            memory_bytes: 1 << 30,
            processes: 64,
            file_bytes: 64 << 20,
            open_files: 256,
            tmp_bytes: 64 << 20,
            output_bytes: 256 << 10,
            concurrent_commands: 4,
        }
    }
}

#[cfg(feature = "config")]
impl Limits {
    /// These limits with a configuration's: `agents.memory_limit_mb` as each process's address space.
    pub fn configured(mut self, agents: &kai_core::config::AgentsConfig) -> Self {
        if let Some(megabytes) = agents.memory_limit_mb {
            self.memory_bytes = megabytes.saturating_mul(1 << 20);
        }
        self
    }
}

#[cfg(all(test, feature = "config"))]
mod tests {
    use super::*;

    #[test]
    fn the_configured_memory_limit_is_each_processs_address_space() {
        let agents = kai_core::config::AgentsConfig {
            memory_limit_mb: Some(256),
            ..Default::default()
        };
        assert_eq!(Limits::default().configured(&agents).memory_bytes, 256 << 20);
        let unset = kai_core::config::AgentsConfig::default();
        assert_eq!(Limits::default().configured(&unset), Limits::default());
    }
}
