//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the test `child` of this test binary in a new process, with `variable` set to `path`; the
/// child prints `ack <n>` after each write it completes. Once it has acknowledged `writes` of them
/// and `delay` has passed, the child is killed with SIGKILL (wherever it is: children that spend most
/// of their time writing are caught inside a write), and the number of the last write acknowledged
/// before the kill is returned.
pub(crate) fn kill_during_writes(child: &str, variable: &str, path: &Path, writes: usize, delay: Duration) -> usize {
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(variable, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(process.stdout.take().unwrap()).lines();
    let ack = |line: std::io::Result<String>| {
        let line = line.unwrap();
        line.strip_prefix("ack ").map(|n| n.trim().parse::<usize>().unwrap())
    };
    let mut acknowledged = None;
    for line in lines.by_ref() {
        acknowledged = ack(line).or(acknowledged);
        if acknowledged.is_some_and(|n| n >= writes) {
            break;
        }
    }
    std::thread::sleep(delay);
    process.kill().unwrap(); // SIGKILL on Unix
    process.wait().unwrap();
    // What the child printed before it died was acknowledged before the kill.
    for line in lines {
        acknowledged = ack(line).or(acknowledged);
    }
    acknowledged.expect("the child acknowledged writes")
}
