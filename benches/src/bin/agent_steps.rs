//! Runs the benchmark agent N times (first argument, default 1000), for instruction counting under
//! callgrind: `scripts/bench-instructions.sh` runs it with N and with 0 and divides the difference by
//! the number of steps.

use std::process::ExitCode;

fn main() -> ExitCode {
    let runs: u32 = match std::env::args().nth(1).map(|arg| arg.parse()) {
        None => 1000,
        Some(Ok(runs)) => runs,
        Some(Err(error)) => {
            eprintln!("usage: agent_steps [RUNS]: {error}");
            return ExitCode::FAILURE;
        }
    };
    let agent = kai_benches::agent();
    for _ in 0..runs {
        if let Err(error) = futures::executor::block_on(agent.run("What is 2 + 3?")) {
            eprintln!("run failed: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
