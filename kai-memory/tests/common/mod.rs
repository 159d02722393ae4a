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

/// Deterministic pseudo-random numbers (xorshift64*), so failures reproduce.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next number, uniform in [-1, 1).
    pub(crate) fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// `n` vectors of `dims` components around `centres` random centres (components in [-1, 1)), each
/// component off its centre's by up to `spread`: clustered like real embeddings.
pub(crate) fn clustered_around(n: usize, dims: usize, seed: u64, centres: usize, spread: f32) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed);
    let centres: Vec<Vec<f32>> = (0..centres).map(|_| (0..dims).map(|_| rng.next()).collect()).collect();
    (0..n)
        .map(|i| {
            centres[i % centres.len()]
                .iter()
                .map(|c| c + spread * rng.next())
                .collect()
        })
        .collect()
}
