//! What a command left: its status and its output, bounded.

use kai_core::CancellationToken;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why the sandbox killed a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KillReason {
    /// It ran past [`Limits::wall_time_ms`](crate::Limits::wall_time_ms).
    Timeout,
    /// It wrote more than [`Limits::output_bytes`](crate::Limits::output_bytes).
    OutputLimit,
    /// The caller cancelled it.
    Cancelled,
}

/// The result of a command that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// The exit code; a process ended by a signal has 128 plus the signal's number, as in a shell.
    /// `None` when the sandbox killed the command.
    pub exit_code: Option<i32>,
    /// Standard output (invalid UTF-8 replaced), at most [`Limits::output_bytes`](crate::Limits::output_bytes).
    pub stdout: String,
    /// Standard error, bounded the same way.
    pub stderr: String,
    /// True when standard output was cut at the limit.
    pub stdout_truncated: bool,
    /// True when standard error was cut at the limit.
    pub stderr_truncated: bool,
    /// Set when the sandbox killed the command.
    pub killed: Option<KillReason>,
    /// The signal that ended the sandbox from outside it (the machine's OOM killer, or the death of
    /// the thread that started it: see `docs/sandbox.md`), when neither the command nor a limit did.
    pub signal: Option<i32>,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
}

impl CommandOutput {
    /// The result of a command cancelled while it waited for its turn.
    pub(crate) fn cancelled_before_start() -> Self {
        CommandOutput {
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            killed: Some(KillReason::Cancelled),
            signal: None,
            duration_ms: 0,
        }
    }

    /// True when the command ran to the end and exited with 0.
    pub fn success(&self) -> bool {
        self.killed.is_none() && self.signal.is_none() && self.exit_code == Some(0)
    }
}

/// Output read from one stream, up to a bound.
#[derive(Debug, Default)]
pub(crate) struct BoundedOutput {
    pub(crate) bytes: Vec<u8>,
    pub(crate) truncated: bool,
}

/// Reads `stream` to its end into `output`, keeping at most `limit` bytes. Past the limit it cancels
/// `overflow`, so the command is killed, and stops reading.
pub(crate) async fn read_bounded(
    mut stream: impl AsyncRead + Unpin,
    output: &mut BoundedOutput,
    limit: usize,
    overflow: &CancellationToken,
) {
    let mut chunk = vec![0; 16 << 10];
    loop {
        let read = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let room = limit - output.bytes.len();
        output.bytes.extend_from_slice(&chunk[..read.min(room)]);
        if read > room {
            output.truncated = true;
            overflow.cancel();
            return;
        }
    }
}
