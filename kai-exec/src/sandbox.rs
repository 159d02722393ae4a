//! Commands run under bubblewrap: in their own user, PID, network, IPC, UTS and mount namespaces,
//! seeing `/usr` read-only, the workspace read-write at `/workspace` and nothing else of the host,
//! with no capabilities, a scrubbed environment, a seccomp filter and resource limits.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kai_core::CancellationToken;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::output::{BoundedOutput, CommandOutput, KillReason, read_bounded};
use crate::policy::CommandPolicy;
use crate::workspace::Workspace;

/// Where the workspace appears inside the sandbox.
pub const SANDBOX_WORKSPACE: &str = "/workspace";

/// Where programs are looked up, in order; all of them are inside what the sandbox sees of the host.
const PROGRAM_DIRECTORIES: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// The host's top-level directories a program may need besides `/usr`; each is a symlink into `/usr`
/// on a merged-`/usr` system (and recreated as one) or bound read-only.
const HOST_DIRECTORIES: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// How long the sandbox waits for a killed command's output pipes to close.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// Runs commands of a [`CommandPolicy`] in a [`Workspace`], confined.
///
/// Nothing runs unconfined: without bubblewrap (Debian's `bubblewrap` package) or user namespaces,
/// [`Sandbox::new`] or [`Sandbox::probe`] says so with [`Error::Unavailable`].
#[derive(Debug)]
pub struct Sandbox {
    workspace: Arc<Workspace>,
    policy: CommandPolicy,
    programs: BTreeMap<String, PathBuf>,
    prlimit: PathBuf,
    bubblewrap: PathBuf,
    seccomp: Vec<u8>,
    limits: Limits,
    /// Permits for [`Limits::concurrent_commands`].
    running: Arc<tokio::sync::Semaphore>,
    environment: Vec<(String, String)>,
}

impl Sandbox {
    /// A sandbox for `workspace` that runs the programs `policy` allows, each found in
    /// `/usr/local/bin`, `/usr/bin`, `/bin`, `/usr/sbin` or `/sbin` and resolving to a file under
    /// `/usr`, `/bin` or `/sbin`.
    pub fn new(workspace: impl Into<Arc<Workspace>>, policy: CommandPolicy) -> Result<Self> {
        let workspace = workspace.into();
        if rustix::process::geteuid().is_root() && workspace.owner().is_none() {
            return Err(Error::RootOwnedWorkspace {
                path: workspace.path().to_owned(),
            });
        }
        // Looked up under /usr only, never in a PATH that may name the workspace.
        let bubblewrap = find_program("bwrap").ok_or_else(|| Error::Unavailable {
            reason: "bubblewrap (`bwrap`) is not installed; on Debian: apt install bubblewrap".into(),
        })?;
        let programs = policy
            .programs()
            .map(|name| {
                let path = find_program(name).ok_or_else(|| Error::ProgramNotFound { program: name.into() })?;
                Ok((name.to_owned(), path))
            })
            .collect::<Result<_>>()?;
        let prlimit = find_program("prlimit").ok_or_else(|| Error::Unavailable {
            reason: "`prlimit` (util-linux) is not installed under /usr".into(),
        })?;
        Ok(Sandbox {
            workspace,
            policy,
            programs,
            prlimit,
            bubblewrap,
            seccomp: crate::seccomp::filter_program()?,
            limits: Limits::default(),
            running: concurrency(Limits::default()),
            environment: Vec::new(),
        })
    }

    /// Replaces the resource limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self.running = concurrency(limits);
        self
    }

    /// Gives commands an environment variable. Nothing of this process's environment reaches them:
    /// they see `PATH`, `HOME` and `TMPDIR` (both `/tmp`), `LANG`, `PWD` and what is added here.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.environment.push((name.into(), value.into()));
        self
    }

    /// The workspace.
    pub fn workspace(&self) -> &Arc<Workspace> {
        &self.workspace
    }

    /// The resource limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The command policy.
    pub fn policy(&self) -> &CommandPolicy {
        &self.policy
    }

    /// Runs `prlimit` alone in the sandbox, to learn now rather than on first use that this machine can
    /// build one (user namespaces may be disabled, or bubblewrap lack `--bind-fd`).
    pub async fn probe(&self) -> Result<()> {
        let output = self.spawn(&self.prlimit, &[], &CancellationToken::new()).await?;
        if output.success() {
            return Ok(());
        }
        Err(Error::Unavailable {
            reason: format!("bubblewrap failed: {}", output.stderr.trim()),
        })
    }

    /// Runs `argv` (a program the policy allows and its arguments) in the workspace, until it ends,
    /// breaks a limit or `cancel` fires. A program that fails is not an error: its exit code and output
    /// are in the result.
    pub async fn run(&self, argv: &[String], cancel: &CancellationToken) -> Result<CommandOutput> {
        let (program, arguments) = self.policy.check(argv)?;
        // Every program of the policy was found when the sandbox was made.
        let Some(path) = self.programs.get(program) else {
            return Err(Error::ProgramNotFound {
                program: program.clone(),
            });
        };
        self.spawn(path, arguments, cancel).await
    }

    /// Runs `program` under `prlimit`, under bubblewrap.
    async fn spawn(&self, program: &Path, arguments: &[String], cancel: &CancellationToken) -> Result<CommandOutput> {
        let _permit = tokio::select! {
            permit = self.running.acquire() => permit.map_err(|error| Error::io("waiting for a turn", std::io::Error::other(error)))?,
            () = cancel.cancelled() => return Ok(CommandOutput::cancelled_before_start()),
        };
        let started = Instant::now();
        let mut command = tokio::process::Command::new(&self.bubblewrap);
        command.args(self.bubblewrap_arguments());
        // The workspace is bound from the descriptor opened with it, not by its path, which may name
        // another directory by now.
        let workspace = self.workspace.root().as_raw_fd();
        command
            .arg("--bind-fd")
            .arg(workspace.to_string())
            .arg(SANDBOX_WORKSPACE)
            .args(["--remount-ro", "/", "--chdir", SANDBOX_WORKSPACE]);
        // The filter goes to bubblewrap in a memory file it reads at setup; see `inherit_only`.
        let filter = crate::seccomp::memory_file(&self.seccomp)?;
        command.arg("--seccomp").arg(filter.as_raw_fd().to_string());
        inherit_only(&mut command, [workspace, filter.as_raw_fd()]);
        command
            .arg("--")
            .arg(&self.prlimit)
            .args(self.limit_arguments())
            .arg("--")
            .arg(program)
            .args(arguments);
        if let Some((uid, gid)) = self.workspace.owner() {
            command.uid(uid).gid(gid);
        }
        command
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|error| Error::io(format!("starting {:?}", self.bubblewrap), error))?;
        drop(filter);

        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::io(
                "starting the command",
                std::io::Error::other("no output pipes"),
            ));
        };
        let mut out = BoundedOutput::default();
        let mut err = BoundedOutput::default();
        let overflow = CancellationToken::new();
        let killed = {
            let limit = self.limits.output_bytes;
            let reading = async {
                tokio::join!(
                    read_bounded(stdout, &mut out, limit, &overflow),
                    read_bounded(stderr, &mut err, limit, &overflow),
                );
            };
            tokio::pin!(reading);
            let wall_time = Duration::from_millis(self.limits.wall_time_ms);
            let mut drained = false;
            let killed = tokio::select! {
                () = &mut reading => {
                    drained = true;
                    None
                }
                () = overflow.cancelled() => Some(KillReason::OutputLimit),
                () = tokio::time::sleep(wall_time) => Some(KillReason::Timeout),
                () = cancel.cancelled() => Some(KillReason::Cancelled),
            };
            let killed = killed.or(overflow.is_cancelled().then_some(KillReason::OutputLimit));
            if killed.is_some() {
                // Killing bubblewrap kills the sandbox's first process (`--die-with-parent`), and with it
                // every process in its PID namespace.
                let _ = child.start_kill();
                if !drained {
                    let _ = tokio::time::timeout(DRAIN_AFTER_KILL, &mut reading).await;
                }
            }
            killed
        };
        let status = child
            .wait()
            .await
            .map_err(|error| Error::io("waiting for the command", error))?;
        Ok(CommandOutput {
            exit_code: if killed.is_some() { None } else { status.code() },
            signal: if killed.is_some() { None } else { status.signal() },
            stdout: String::from_utf8_lossy(&out.bytes).into_owned(),
            stderr: String::from_utf8_lossy(&err.bytes).into_owned(),
            stdout_truncated: out.truncated,
            stderr_truncated: err.truncated,
            killed,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Namespaces, the file system the command sees, and its environment.
    fn bubblewrap_arguments(&self) -> Vec<String> {
        let mut arguments: Vec<String> = [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        .map(String::from)
        .into();
        for name in HOST_DIRECTORIES {
            let host = format!("/{name}");
            match std::fs::symlink_metadata(&host) {
                Ok(metadata) if metadata.is_symlink() => {
                    if let Ok(target) = std::fs::read_link(&host) {
                        arguments.extend(["--symlink".into(), target.to_string_lossy().into_owned(), host]);
                    }
                }
                Ok(metadata) if metadata.is_dir() => arguments.extend(["--ro-bind".into(), host.clone(), host]),
                _ => {}
            }
        }
        let tmp_bytes = self.limits.tmp_bytes.to_string();

        arguments.extend(
            [
                "--ro-bind-try",
                "/etc/ld.so.cache",
                "/etc/ld.so.cache",
                // Debian's alternatives (`awk`, `vi`, ...) are links through here into /usr.
                "--ro-bind-try",
                "/etc/alternatives",
                "/etc/alternatives",
                "--proc",
                "/proc",
                // /dev and the root are memory file systems: left writable, files there would use
                // memory no limit counts. Only /tmp and /dev/shm take writes, each bounded.
                "--dev",
                "/dev",
                "--size",
                &tmp_bytes,
                "--tmpfs",
                "/dev/shm",
                "--remount-ro",
                "/dev",
                "--size",
                &tmp_bytes,
                "--tmpfs",
                "/tmp",
                "--clearenv",
                "--setenv",
                "PATH",
                "/usr/local/bin:/usr/bin:/bin",
                // Not the workspace: a program would read configuration the model wrote there
                // (`.gitconfig` can name a program to run).
                "--setenv",
                "HOME",
                "/tmp",
                "--setenv",
                "TMPDIR",
                "/tmp",
                "--setenv",
                "LANG",
                "C.UTF-8",
            ]
            .map(String::from),
        );
        for (name, value) in &self.environment {
            arguments.extend(["--setenv".into(), name.clone(), value.clone()]);
        }
        arguments
    }

    /// `prlimit` options: the limits are set inside the sandbox's user namespace, where the process
    /// count is the sandbox's own, not every process of the user.
    fn limit_arguments(&self) -> Vec<String> {
        let limits = &self.limits;
        vec![
            format!("--nproc={0}:{0}", limits.processes),
            format!("--as={0}:{0}", limits.memory_bytes),
            format!("--cpu={}:{}", limits.cpu_seconds, limits.cpu_seconds.saturating_add(1)),
            format!("--fsize={0}:{0}", limits.file_bytes),
            format!("--nofile={0}:{0}", limits.open_files),
            "--core=0:0".into(),
        ]
    }
}

/// Permits for `limits.concurrent_commands` commands at once (at least one).
fn concurrency(limits: Limits) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(
        limits.concurrent_commands.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ))
}

/// Finds `name` in [`PROGRAM_DIRECTORIES`]. What it resolves to must be a file under what the sandbox
/// sees of the host; the path returned is the link itself, not its target, since a program may act by
/// the name it is started with (`rbash` is `bash` restricted, `xzcat` is `xz` decompressing).
fn find_program(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    PROGRAM_DIRECTORIES
        .iter()
        .map(|directory| Path::new(directory).join(name))
        .find(|path| {
            std::fs::canonicalize(path).is_ok_and(|target| {
                target.is_file() && ["/usr/", "/bin/", "/sbin/"].iter().any(|root| target.starts_with(root))
            })
        })
}

/// Makes `command`'s child keep, past its `exec`, the descriptors `keep` (close-on-exec here, so no
/// other child of this process inherits them) and standard input, output and error, and nothing
/// else: a descriptor this process left inheritable (an embedding program's, a library's) would
/// otherwise reach the sandbox, and one on a host directory is a way out of it.
fn inherit_only<const N: usize>(command: &mut tokio::process::Command, keep: [RawFd; N]) {
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe calls
    // are allowed: close_range, getrlimit and fcntl are system calls without allocation or locks. It
    // changes only the child's descriptor flags; the descriptors in `keep` stay open in the parent
    // until the child has started.
    unsafe {
        command.pre_exec(move || {
            let marked = libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            if marked != 0 {
                // Kernels before 5.11: mark each descriptor the process may have.
                let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                    .maximum
                    .unwrap_or(1 << 20)
                    .min(1 << 20);
                for fd in 3..limit as RawFd {
                    let _ = rustix::io::fcntl_setfd(BorrowedFd::borrow_raw(fd), rustix::io::FdFlags::CLOEXEC);
                }
            }
            for fd in keep {
                rustix::io::fcntl_setfd(BorrowedFd::borrow_raw(fd), rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
}
