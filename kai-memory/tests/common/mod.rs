//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each test binary uses some of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Whether `work` was still under way when another task on the same one-thread executor ran: true when
/// it does its blocking part on a thread of its own, false when it blocks the thread awaiting it.
pub(crate) fn leaves_the_executor_free(work: impl Future<Output = ()>) -> bool {
    let working = AtomicBool::new(true);
    let ticked = AtomicBool::new(false);
    futures::executor::block_on(async {
        let work = async {
            work.await;
            working.store(false, Ordering::SeqCst);
        };
        let ticker = async {
            // Yield once so the work is polled first, then see whether it is still under way.
            futures::future::poll_fn(|cx| {
                if !ticked.swap(true, Ordering::SeqCst) {
                    cx.waker().wake_by_ref();
                    return std::task::Poll::Pending;
                }
                std::task::Poll::Ready(())
            })
            .await;
            working.load(Ordering::SeqCst)
        };
        futures::join!(work, ticker).1
    })
}
