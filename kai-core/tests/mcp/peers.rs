//! Where the MCP implementations the tests run against are: installed by
//! `scripts/setup/mcp-peers.sh`, or named by an environment variable.

use std::process::Command;

/// What `scripts/setup/mcp-peers.sh <which>` prints (`node`: the node_modules directory, `python`:
/// the interpreter), or the variable `env` when it is set.
pub(crate) fn peer(env: &str, which: &str) -> String {
    if let Ok(path) = std::env::var(env) {
        return path;
    }
    // At run time: a build cache shared by clones keeps the builder's path.
    let script = format!(
        "{}/../scripts/setup/mcp-peers.sh",
        std::env::var("CARGO_MANIFEST_DIR").unwrap()
    );
    let output = Command::new("bash").arg(&script).arg(which).output().unwrap();
    assert!(
        output.status.success(),
        "the MCP peers did not install: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
