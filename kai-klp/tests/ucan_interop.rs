//! UCAN interop, both ways, with an implementation no one here wrote: `@ucans/ucans` 0.12 (the UCAN
//! working group's TypeScript library, UCAN 0.8.1) under Node, installed by
//! `scripts/setup/ucan-js.sh` (or found through `KAI_UCAN_NODE_MODULES`).
//!
//! Its tokens — a delegation chain, a direct grant with a nonce and facts, a link that escalates — are
//! verified here; ours — a chain whose capability carries a caveat, a chain that starts in its tokens
//! and continues in ours, and an escalating link — are verified there with `ucans.verify`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kai_klp::consent::{self, ARGUMENTS_CAVEAT};
use kai_klp::{Capability, Did, Error, Identity, Verifier};
use serde_json::{Value, json};

const HOUR: Duration = Duration::from_secs(3600);

fn manifest_dir() -> String {
    // At run time: a build cache shared by clones keeps the builder's path.
    std::env::var("CARGO_MANIFEST_DIR").unwrap()
}

fn node_modules() -> String {
    if let Ok(dir) = std::env::var("KAI_UCAN_NODE_MODULES") {
        return dir;
    }
    let script = format!("{}/../scripts/setup/ucan-js.sh", manifest_dir());
    let output = Command::new("bash").arg(&script).output().unwrap();
    assert!(
        output.status.success(),
        "@ucans/ucans did not install: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The token with `from` replaced by `to` in its payload (still valid JSON), under its old signature.
fn tamper(token: &str, from: &str, to: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert!(payload.contains(from));
    let forged = URL_SAFE_NO_PAD.encode(payload.replace(from, to));
    format!("{}.{forged}.{}", parts[0], parts[2])
}

#[test]
fn tokens_verify_both_ways_with_ucans_js() {
    let agent = Identity::generate();
    let deputy = Identity::generate();
    let mut peer = Command::new("node")
        .arg(format!("{}/tests/ucan/peer.cjs", manifest_dir()))
        .arg(agent.did().to_string())
        .env("NODE_PATH", node_modules())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut to_peer = peer.stdin.take().unwrap();
    let mut from_peer = BufReader::new(peer.stdout.take().unwrap());
    let peer = Arc::new(Mutex::new(peer));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (peer, done) = (Arc::clone(&peer), Arc::clone(&done));
        std::thread::spawn(move || {
            for _ in 0..600 {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = peer.lock().unwrap().kill();
        })
    };
    let mut read = || -> Value {
        let mut line = String::new();
        from_peer.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("the peer said {line:?}: {e}"))
    };

    // Theirs, verified here.
    let theirs = read();
    let their_root: Did = theirs["root"].as_str().unwrap().parse().unwrap();
    let holder: Did = theirs["holder"].as_str().unwrap().parse().unwrap();
    let token = |name: &str| theirs[name].as_str().unwrap().to_owned();
    let verifier = Verifier::new(agent.did(), [their_root]);
    let claims = verifier
        .authorize(&token("chain"), &Capability::call_tool("add"))
        .unwrap();
    assert_eq!(claims.prf.len(), 1);
    assert!(matches!(
        verifier.authorize(&token("chain"), &Capability::call_tool("sub")),
        Err(Error::NotGranted { .. })
    ));
    // Abilities and schemes compare without regard to case; their nonce guards against replay.
    let direct = verifier.admit(&token("direct")).unwrap();
    assert_eq!(direct.fct, vec![json!({"ticket": "T-1"}).as_object().unwrap().clone()]);
    assert!(direct.nnc.is_some());
    assert!(direct.grant(&Capability::call_tool("add")).is_ok());
    assert!(matches!(verifier.admit(&token("direct")), Err(Error::Replayed)));
    assert!(matches!(
        verifier.authorize(&token("escalating"), &Capability::call_tool("delete")),
        Err(Error::Escalation { .. })
    ));
    assert!(matches!(
        verifier.authorize(
            &tamper(&token("chain"), "tool:add", "tool:rmf"),
            &Capability::call_tool("rmf")
        ),
        Err(Error::BadSignature)
    ));
    assert!(matches!(
        Verifier::new(agent.did(), [deputy.did()]).authorize(&token("chain"), &Capability::call_tool("add")),
        Err(Error::UntrustedRoot { .. })
    ));

    // Ours, verified there.
    let in_notes = Capability::call_tool("read").with_caveat(ARGUMENTS_CAVEAT, json!({"dir": "notes"}));
    let to_deputy = consent::issue(&agent, &deputy.did(), std::slice::from_ref(&in_notes), HOUR, &[]).unwrap();
    let ours = consent::issue(
        &deputy,
        &holder,
        &[in_notes],
        HOUR / 2,
        std::slice::from_ref(&to_deputy),
    )
    .unwrap();
    let mixed = consent::issue(
        &agent,
        &holder,
        &[Capability::call_tool("add")],
        HOUR / 12,
        &[token("chain")],
    )
    .unwrap();
    let escalating = consent::issue(
        &deputy,
        &holder,
        &[Capability::call_tool("write")],
        HOUR / 2,
        &[to_deputy],
    )
    .unwrap();
    // The chain that starts in their tokens and goes on in ours verifies here too.
    Verifier::new(holder, [their_root])
        .authorize(&mixed, &Capability::call_tool("add"))
        .unwrap();
    let ask = |token: &str, resource: &str, root: &Did| json!({"token": token, "resource": resource, "ability": "tool/call", "root": root.to_string()});
    let request = json!({"tokens": {
        "ours": ask(&ours, "tool:read", &agent.did()),
        "mixed": ask(&mixed, "tool:add", &their_root),
        "escalating": ask(&escalating, "tool:write", &agent.did()),
        "tampered": ask(&tamper(&ours, "notes", "/etc/"), "tool:read", &agent.did()),
    }});
    writeln!(to_peer, "{request}").unwrap();
    let verdicts = read();
    assert_eq!(verdicts["ours"], json!({"ok": true}), "{verdicts}");
    assert_eq!(verdicts["mixed"], json!({"ok": true}), "{verdicts}");
    assert_eq!(verdicts["escalating"]["ok"], false, "{verdicts}");
    assert_eq!(verdicts["tampered"]["ok"], false, "{verdicts}");
    assert!(
        verdicts["tampered"]["errors"].to_string().contains("Signature invalid"),
        "{verdicts}"
    );

    drop(to_peer);
    let status = peer.lock().unwrap().wait().unwrap();
    done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    assert!(status.success(), "the peer failed: {status}");
}
