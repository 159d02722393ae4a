//! Hostile commands in the sandbox: each escape attempt fails, each bomb is stopped, and the machine
//! and the process running the sandbox are unharmed.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, CancellationToken};
use kai_exec::{CommandOutput, CommandPolicy, Error, KillReason, Limits, Sandbox, Workspace};
use serde_json::json;

/// A sandbox on a fresh workspace. Running as root, the workspace goes to `nobody`: the sandbox runs
/// commands as the workspace's owner.
fn sandbox(policy: CommandPolicy) -> (tempfile::TempDir, Sandbox) {
    let directory = tempfile::tempdir().unwrap();
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(directory.path(), Some(65534), Some(65534)).unwrap();
    }
    let workspace = Workspace::open(directory.path()).unwrap();
    let sandbox = Sandbox::new(workspace, policy).unwrap();
    (directory, sandbox)
}

fn everyday() -> CommandPolicy {
    [
        "echo", "cat", "ls", "env", "sh", "rbash", "python3", "sleep", "yes", "ln", "unshare",
    ]
    .into_iter()
    .fold(CommandPolicy::new(), CommandPolicy::allow)
}

async fn run(sandbox: &Sandbox, argv: &[&str]) -> CommandOutput {
    let argv: Vec<String> = argv.iter().map(|argument| argument.to_string()).collect();
    sandbox.run(&argv, &CancellationToken::new()).await.unwrap()
}

/// Processes on the host whose command line holds `marker`.
fn host_processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(marker))
        .count()
}

#[tokio::test]
async fn a_command_runs_in_the_workspace_and_sees_little_else() {
    let (_directory, sandbox) = sandbox(everyday());
    sandbox.probe().await.unwrap();
    sandbox.workspace().write("notes.txt", b"hello from the host").unwrap();
    let output = run(&sandbox, &["cat", "notes.txt"]).await;
    assert!(output.success(), "{output:?}");
    assert_eq!(output.stdout, "hello from the host");

    // What a command writes, the host sees in the workspace.
    let output = run(&sandbox, &["sh", "-c", "echo made inside > made.txt; ls /"]).await;
    assert!(output.success(), "{output:?}");
    assert_eq!(sandbox.workspace().read("made.txt").unwrap(), b"made inside\n");
    let root: Vec<&str> = output.stdout.lines().collect();
    for hidden in ["home", "root", "var", "srv", "opt", "mnt"] {
        assert!(!root.contains(&hidden), "/{hidden} is visible: {root:?}");
    }
    let output = run(&sandbox, &["cat", "/etc/passwd", "/etc/shadow"]).await;
    assert!(!output.success());
    assert!(output.stdout.is_empty(), "{output:?}");
    // /usr is mounted read-only (a write there would fail for want of permission anyway, unless
    // running as root: the mount is what says the sandbox, not the user, refuses it).
    let output = run(&sandbox, &["cat", "/proc/self/mountinfo"]).await;
    let usr = output
        .stdout
        .lines()
        .find(|line| line.split(' ').nth(4) == Some("/usr"));
    assert!(
        usr.is_some_and(|line| line.split(' ').nth(5).unwrap().split(',').any(|option| option == "ro")),
        "{output:?}"
    );
    // A program runs by the name it was allowed as, not its link's target: rbash stays restricted.
    let output = run(&sandbox, &["rbash", "-c", "cd /tmp"]).await;
    assert!(!output.success() && output.stderr.contains("restricted"), "{output:?}");
}

#[tokio::test]
async fn commands_are_argument_vectors_never_shell_strings() {
    let (_directory, sandbox) = sandbox(CommandPolicy::new().allow("echo").allow_with("cat", ["--help"]));
    let hostile = [
        "$(id)",
        "`id`",
        "; rm -rf /",
        "&& touch pwned",
        "| cat /etc/passwd",
        "*",
        "~",
        "$HOME",
    ];
    let mut argv = vec!["echo"];
    argv.extend(hostile);
    let output = run(&sandbox, &argv).await;
    assert_eq!(output.stdout.trim_end(), hostile.join(" "), "no shell touched them");
    assert!(matches!(sandbox.workspace().read("pwned"), Err(Error::NotFound { .. })));

    let refused = |argv: &[&str]| {
        let argv: Vec<String> = argv.iter().map(|argument| argument.to_string()).collect();
        let sandbox = &sandbox;
        async move { sandbox.run(&argv, &CancellationToken::new()).await.unwrap_err() }
    };
    let error = refused(&["sh", "-c", "id"]).await;
    assert!(
        matches!(&error, Error::CommandNotAllowed { program, .. } if program == "sh"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("cat, echo"),
        "the model learns what it may run: {error}"
    );
    assert!(matches!(refused(&["echo hi"]).await, Error::CommandNotAllowed { .. }));
    assert!(matches!(
        refused(&["/usr/bin/id"]).await,
        Error::CommandNotAllowed { .. }
    ));
    assert!(matches!(
        refused(&["cat", "--help"]).await,
        Error::ArgumentRefused { .. }
    ));
    assert!(matches!(refused(&[]).await, Error::InvalidCommand { .. }));
    assert!(matches!(refused(&["echo", "a\0b"]).await, Error::InvalidCommand { .. }));
    assert!(matches!(
        Sandbox::new(
            Workspace::open(sandbox.workspace().path()).unwrap(),
            CommandPolicy::new().allow("no-such-program-anywhere")
        ),
        Err(Error::ProgramNotFound { .. })
    ));
}

#[tokio::test]
async fn links_lead_nowhere_outside() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "the secret").unwrap();
    // Readable by anyone, so only the sandbox keeps a command (running as another user when the
    // tests run as root) from it.
    std::fs::set_permissions(outside.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (_directory, sandbox) = sandbox(everyday());
    let workspace = sandbox.workspace().path();
    std::os::unix::fs::symlink(&secret, workspace.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), workspace.join("dir-link")).unwrap();

    for argv in [
        &["cat", "link"][..],
        &["cat", "dir-link/secret.txt"],
        &["cat", secret.to_str().unwrap()],
    ] {
        let output = run(&sandbox, argv).await;
        assert!(
            !output.success() && !output.stdout.contains("secret"),
            "{argv:?}: {output:?}"
        );
    }
    // Only /usr and the workspace are there to link, and /usr is another file system: no hard link
    // to a host file can be made from inside.
    let output = run(&sandbox, &["ln", "/usr/bin/prlimit", "prlimit-link"]).await;
    assert!(!output.success(), "{output:?}");
    let output = run(&sandbox, &["ln", "-s", secret.to_str().unwrap(), "new-link"]).await;
    assert!(output.success(), "a link may be made: {output:?}");
    assert!(matches!(
        sandbox.workspace().read("new-link"),
        Err(Error::PathRefused {
            reason: kai_exec::PathRefusal::Symlink,
            ..
        })
    ));
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "the secret");
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_process_limit() {
    let (_directory, sandbox) = sandbox(everyday());
    let limits = Limits {
        processes: 32,
        wall_time_ms: 30_000,
        ..Limits::default()
    };
    let sandbox = sandbox.with_limits(limits);
    // Fork 200 sleepers: forks past the limit fail.
    let script = "import os, time\nforked = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n        time.sleep(31337)\n        os._exit(0)\n    forked += 1\nprint(forked)";
    let output = run(&sandbox, &["python3", "-c", script]).await;
    let forked: usize = output.stdout.trim().parse().unwrap_or_else(|_| panic!("{output:?}"));
    assert!((8..32).contains(&forked), "{forked} processes forked");

    let sandbox = sandbox.with_limits(Limits {
        wall_time_ms: 3_000,
        ..limits
    });
    let started = Instant::now();
    // A bomb that keeps forking: its shell gives up when a fork fails, or the clock stops it.
    let output = run(
        &sandbox,
        &["sh", "-c", "bomb() { bomb | bomb & }; while :; do bomb; done"],
    )
    .await;
    assert!(
        output.killed == Some(KillReason::Timeout) || output.stderr.contains("Cannot fork"),
        "{output:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // Every process of the bomb is gone, and the machine still runs commands.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host_processes_with("31337"), 0);
    assert!(run(&sandbox, &["echo", "still here"]).await.success());
}

#[tokio::test]
async fn endless_output_is_cut_and_the_command_killed() {
    let (_directory, sandbox) = sandbox(everyday());
    let sandbox = sandbox.with_limits(Limits {
        output_bytes: 64 << 10,
        ..Limits::default()
    });
    let started = Instant::now();
    let output = run(&sandbox, &["yes", "spam"]).await;
    assert_eq!(output.killed, Some(KillReason::OutputLimit), "{:?}", output.killed);
    assert!(output.stdout_truncated);
    assert_eq!(output.stdout.len(), 64 << 10);
    assert!(output.stdout.starts_with("spam\nspam\n"));
    assert!(started.elapsed() < Duration::from_secs(10));
    // Endless standard error too.
    let output = run(&sandbox, &["sh", "-c", "yes err >&2"]).await;
    assert_eq!(output.killed, Some(KillReason::OutputLimit));
    assert!(output.stderr_truncated && !output.stdout_truncated);
}

#[tokio::test]
async fn memory_cpu_and_wall_time_are_bounded() {
    let (_directory, sandbox) = sandbox(everyday());
    let sandbox = sandbox.with_limits(Limits {
        memory_bytes: 256 << 20,
        cpu_seconds: 1,
        wall_time_ms: 60_000,
        ..Limits::default()
    });
    let output = run(
        &sandbox,
        &["python3", "-c", "b = bytearray(2 << 30); print('allocated')"],
    )
    .await;
    assert!(!output.success(), "{output:?}");
    assert!(output.stderr.contains("MemoryError"), "{output:?}");

    let started = Instant::now();
    let output = run(&sandbox, &["python3", "-c", "while True: pass"]).await;
    assert_eq!(
        output.killed, None,
        "the CPU limit, not the clock, stopped it: {output:?}"
    );
    // SIGXCPU (24) at the soft limit, or SIGKILL (9) at the hard one.
    assert!(matches!(output.exit_code, Some(152) | Some(137)), "{output:?}");
    assert!(started.elapsed() < Duration::from_secs(50), "{:?}", started.elapsed());

    // Memory file systems: / and /dev take no files, /tmp and /dev/shm only up to their size.
    let sandbox = sandbox.with_limits(Limits {
        tmp_bytes: 1 << 20,
        ..Limits::default()
    });
    for target in ["/planted", "/dev/planted", "/tmp/big", "/dev/shm/big"] {
        let output = run(
            &sandbox,
            &["sh", "-c", &format!("head -c 2000000 /dev/zero > {target}")],
        )
        .await;
        assert!(!output.success(), "{target}: {output:?}");
        let expected = if target.contains("big") {
            "No space left"
        } else {
            "Read-only file system"
        };
        assert!(output.stderr.contains(expected), "{target}: {output:?}");
    }

    // Past the wall-clock limit, the command and everything it started are killed.
    let sandbox = sandbox.with_limits(Limits {
        wall_time_ms: 500,
        ..Limits::default()
    });
    let started = Instant::now();
    let output = run(&sandbox, &["sh", "-c", "sleep 27182 & sleep 27182"]).await;
    assert_eq!(output.killed, Some(KillReason::Timeout));
    assert_eq!(output.exit_code, None);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host_processes_with("27182"), 0, "a process of the command survived");
}

#[tokio::test]
async fn there_is_no_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_directory, sandbox) = sandbox(everyday());
    let script = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('connected')\nexcept OSError as error:\n    print('refused', error)\ntry:\n    socket.getaddrinfo('example.com', 80)\n    print('resolved')\nexcept OSError as error:\n    print('unresolved', error)\n"
    );
    let output = run(&sandbox, &["python3", "-c", &script]).await;
    assert!(
        output.stdout.contains("refused") && output.stdout.contains("unresolved"),
        "{output:?}"
    );
    // vsock is in no network namespace: on a virtual machine it reaches the host. It cannot be opened.
    let script = "import socket\ntry:\n    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)\n    print('opened')\nexcept OSError as error:\n    print(error.strerror)";
    let vsock = run(&sandbox, &["python3", "-c", script]).await;
    assert_eq!(vsock.stdout, "Function not implemented\n", "{vsock:?}");
    assert!(
        !output.stdout.contains("connected") && !output.stdout.contains("resolved\n"),
        "{output:?}"
    );
    assert!(listener.accept().is_err(), "the host's listener saw a connection");
}

#[tokio::test]
async fn the_environment_is_scrubbed_and_other_processes_are_invisible() {
    let (_directory, sandbox) = sandbox(everyday());
    let sandbox = sandbox.with_env("GREETING", "hello");
    let output = run(&sandbox, &["env"]).await;
    let names: Vec<&str> = output
        .stdout
        .lines()
        .filter_map(|line| line.split('=').next())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["GREETING", "HOME", "LANG", "PATH", "PWD", "TMPDIR"],
        "{output:?}"
    );
    // This process has CARGO_* variables (and whatever secrets a host keeps in its environment): no
    // process the command can see holds them, and this process is not among them.
    assert!(std::env::vars().any(|(name, _)| name.starts_with("CARGO")));
    let host_pid = std::process::id().to_string();
    let output = run(
        &sandbox,
        &[
            "sh",
            "-c",
            &format!("cat /proc/*/environ | tr '\\0' '\\n'; cat /proc/{host_pid}/environ; ls /proc"),
        ],
    )
    .await;
    assert!(!output.stdout.contains("CARGO"), "{output:?}");
    let pids: Vec<&str> = output
        .stdout
        .lines()
        .filter(|line| line.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(pids.len() < 8, "{pids:?}");
}

#[tokio::test]
async fn the_seccomp_filter_and_namespaces_refuse_escape_hatches() {
    let (_directory, sandbox) = sandbox(everyday());
    // PTRACE_TRACEME succeeds anywhere a process may be traced; here ptrace does not exist.
    let script = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nresult = libc.ptrace(0, 0, 0, 0)\nprint(result, os.strerror(ctypes.get_errno()))";
    let output = run(&sandbox, &["python3", "-c", script]).await;
    assert!(output.stdout.starts_with("-1 Function not implemented"), "{output:?}");
    // No new namespaces: not a user namespace (where a process would be root again), not a network one;
    // neither by unshare nor by clone with a namespace flag.
    let script = "import ctypes, os, platform, signal\nlibc = ctypes.CDLL(None, use_errno=True)\nnumber = {'x86_64': 56, 'aarch64': 220}[platform.machine()]\nfor flag in (0x10000000, 0x40000000):\n    pid = libc.syscall(number, flag | signal.SIGCHLD, 0, 0, 0, 0)\n    if pid == 0:\n        os._exit(0)\n    print(pid, os.strerror(ctypes.get_errno()))\npid = libc.syscall(number, signal.SIGCHLD, 0, 0, 0, 0)\nif pid == 0:\n    os._exit(0)\nprint('plain clone', pid > 0)";
    let output = run(&sandbox, &["python3", "-c", script]).await;
    assert_eq!(
        output.stdout, "-1 Function not implemented\n-1 Function not implemented\nplain clone True\n",
        "{output:?}"
    );
    // No memory outside the address-space limit: memory files, System V shared memory.
    let script = "import ctypes, os\ntry:\n    os.memfd_create('x')\n    print('memfd')\nexcept OSError as error:\n    print(error.strerror)\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.shmget(0, 1 << 20, 0o1600), os.strerror(ctypes.get_errno()))\nprint(libc.semget(0, 32000, 0o1600), os.strerror(ctypes.get_errno()))\nprint(libc.msgget(0, 0o1600), os.strerror(ctypes.get_errno()))";
    let output = run(&sandbox, &["python3", "-c", script]).await;
    assert_eq!(
        output.stdout,
        "Function not implemented\n-1 Function not implemented\n-1 Function not implemented\n-1 Function not implemented\n",
        "{output:?}"
    );
    for argv in [
        &["unshare", "--user", "--map-root-user", "true"][..],
        &["unshare", "--net", "true"],
    ] {
        let output = run(&sandbox, argv).await;
        assert!(!output.success(), "{argv:?}: {output:?}");
    }
    let output = run(
        &sandbox,
        &["sh", "-c", "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"],
    )
    .await;
    assert!(output.stdout.contains("CapEff:\t0000000000000000"), "{output:?}");
    assert!(output.stdout.contains("Seccomp:\t2"), "{output:?}");
}

#[tokio::test]
async fn cancelling_kills_the_command_at_once() {
    let (_directory, sandbox) = sandbox(everyday());
    let cancel = CancellationToken::new();
    let cancel_soon = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel_soon.cancel();
    });
    let started = Instant::now();
    let argv = vec!["sleep".to_string(), "16180".to_string()];
    let output = sandbox.run(&argv, &cancel).await.unwrap();
    assert_eq!(output.killed, Some(KillReason::Cancelled));
    assert!(started.elapsed() < Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host_processes_with("16180"), 0);

    // Dropping the call kills it too.
    let argv = vec!["sleep".to_string(), "16181".to_string()];
    let _ = tokio::time::timeout(
        Duration::from_millis(300),
        sandbox.run(&argv, &CancellationToken::new()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(host_processes_with("16181"), 0);
}

#[tokio::test]
async fn an_agent_uses_the_tools_and_sees_each_refusal() {
    let (_directory, sandbox) = sandbox(CommandPolicy::new().allow("ls").allow("cat"));
    let tools = kai_exec::tools::all_tools(Arc::new(sandbox));
    let mut names: Vec<&str> = tools.names().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "list_directory",
            "read_file",
            "remove_path",
            "run_command",
            "write_file"
        ]
    );
    let model = ScriptedModel::new()
        .tool_call("write_file", json!({"path": "plan.md", "content": "step one"}))
        .tool_calls([
            ("run_command", json!({"command": ["cat", "plan.md"]})),
            ("run_command", json!({"command": ["rm", "-rf", "/"]})),
            ("read_file", json!({"path": "../../etc/passwd"})),
            ("list_directory", json!({})),
        ])
        .text("done");
    let agent = Agent::builder(model).tools(&tools).build().unwrap();
    let output = agent.run("Write a plan and show it.").await.unwrap();
    assert_eq!(output.answer, "done");
    // Results by call: the parallel calls of the second step may finish in any order.
    let results: std::collections::BTreeMap<String, _> = output
        .messages
        .iter()
        .flat_map(|message| message.tool_results())
        .map(|result| (result.call_id.clone(), result))
        .collect();
    assert_eq!(results.len(), 5);
    let result = |id: &str| results[id];
    assert!(
        !result("call_1_0").is_error && result("call_1_0").content.contains("wrote 8 bytes"),
        "{results:?}"
    );
    let ran: CommandOutput = serde_json::from_str(&result("call_2_0").content).unwrap();
    assert_eq!(ran.stdout, "step one");
    let refused = result("call_2_1");
    assert!(
        refused.is_error && refused.content.contains("\"rm\" is not allowed"),
        "{refused:?}"
    );
    let escaped = result("call_2_2");
    assert!(escaped.is_error && escaped.content.contains("`..`"), "{escaped:?}");
    let listed = result("call_2_3");
    assert!(!listed.is_error && listed.content.contains("plan.md"), "{listed:?}");
}

#[tokio::test]
async fn no_descriptor_of_the_host_reaches_a_command() {
    // A descriptor on a host directory, left inheritable as an embedding program might leave one.
    let etc = rustix::fs::open(
        "/etc",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let number = std::os::fd::AsRawFd::as_raw_fd(&etc);
    let (_directory, sandbox) = sandbox(everyday());
    let output = run(
        &sandbox,
        &[
            "sh",
            "-c",
            &format!("ls /proc/self/fd; cat /proc/self/fd/{number}/hostname /proc/self/fd/{number}/passwd"),
        ],
    )
    .await;
    let descriptors: Vec<&str> = output
        .stdout
        .lines()
        .filter(|line| line.chars().all(|c| c.is_ascii_digit()))
        .collect();
    // Standard input, output and error, and the one `ls` opened to list them.
    assert_eq!(descriptors, ["0", "1", "2", "3"], "{output:?}");
    assert!(!output.stdout.contains("root:"), "{output:?}");
    drop(etc);
}

#[tokio::test]
async fn commands_beyond_the_concurrency_limit_wait_their_turn() {
    let (_directory, sandbox) = sandbox(everyday());
    let sandbox = sandbox.with_limits(Limits {
        concurrent_commands: 1,
        ..Limits::default()
    });
    // Each takes a lock another running at the same time would find taken.
    let exclusive = ["sh", "-c", "mkdir lock && sleep 0.5 && rmdir lock"];
    let (first, second) = tokio::join!(run(&sandbox, &exclusive), run(&sandbox, &exclusive));
    assert!(first.success() && second.success(), "{first:?} {second:?}");
}

#[tokio::test]
async fn as_root_commands_never_run_as_root() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: the tests do not run as root");
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let workspace = Workspace::open(directory.path()).unwrap();
    assert!(matches!(
        Sandbox::new(workspace, everyday()),
        Err(Error::RootOwnedWorkspace { .. })
    ));
    // Owned by an unprivileged user: commands run as that user, and what the file tools make is theirs.
    let (_directory, sandbox) = sandbox(everyday());
    let output = run(&sandbox, &["sh", "-c", "echo made > by-command.txt"]).await;
    assert!(output.success(), "{output:?}");
    let metadata = std::fs::metadata(sandbox.workspace().path().join("by-command.txt")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&metadata), 65534);
    sandbox.workspace().write("deep/er/file.txt", b"x").unwrap();
    for made in ["deep", "deep/er", "deep/er/file.txt"] {
        let metadata = std::fs::metadata(sandbox.workspace().path().join(made)).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&metadata), 65534, "{made}");
    }
    let output = run(
        &sandbox,
        &["sh", "-c", "echo more >> deep/er/file.txt && cat deep/er/file.txt"],
    )
    .await;
    assert_eq!(output.stdout, "xmore\n", "{output:?}");
}
