//! The Redis server the tests use: `KAI_REDIS_URL`, or one `scripts/setup/redis.sh` starts (Debian's
//! redis-server on loopback), once per test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]

use std::process::Command;
use std::sync::OnceLock;

/// The server's URL.
pub(crate) fn url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("KAI_REDIS_URL") {
            return url;
        }
        // The package's directory at run time: a build cache shared by clones keeps the builder's path.
        let script = format!(
            "{}/../scripts/setup/redis.sh",
            std::env::var("CARGO_MANIFEST_DIR").unwrap()
        );
        let output = Command::new("bash").arg(&script).arg("start").output().unwrap();
        assert!(
            output.status.success(),
            "redis did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    })
}

/// A queue name no other test uses.
pub(crate) fn unique_name() -> String {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).unwrap();
    format!(
        "kai-test:{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}
