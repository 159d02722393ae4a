//! The audit log: appends that survive, and every kind of tampering found and located.
//!
//! Attacks pinned here, by someone who can write the file but not sign: editing, dropping, reordering or
//! splicing entries (`edits_drops_and_reorders…`, `a_re_encoded_line…`); cutting lines from the end
//! (`lines_cut_from_the_end…`); rewriting the log past a kept head (`a_log_rewritten_past…`); hiding a
//! cut-short line (`a_line_cut_short…`, `opening_keeps_a_whole_last_entry…`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, tool_fn};
use kai_klp::audit::{AuditHook, AuditLog, Fault, verify};
use kai_klp::{Error, Identity};
use serde_json::json;

/// A path named `name` in a fresh directory, removed with its contents when the guard drops.
fn temp_path(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

fn secret() -> [u8; 32] {
    [42; 32]
}

fn log_with(name: &str, entries: usize) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let (dir, path) = temp_path(name);
    let log = AuditLog::open(&path, Identity::from_secret_bytes(&secret())).unwrap();
    for i in 0..entries {
        log.append("tool_call", json!({"tool": "add", "n": i})).unwrap();
    }
    let lines = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (dir, path, lines)
}

fn check(path: &PathBuf, lines: &[String]) -> Result<kai_klp::audit::Head, Error> {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    verify(path, &Identity::from_secret_bytes(&secret()).did(), None)
}

fn fault_of(result: Result<kai_klp::audit::Head, Error>) -> (usize, Fault) {
    match result {
        Err(Error::AuditInvalid { line, fault }) => (line, fault),
        other => panic!("expected an audit fault, got {other:?}"),
    }
}

#[test]
fn an_untouched_log_verifies_and_reopens_where_it_ended() {
    let (_dir, path, lines) = log_with("ok.log", 5);
    let head = check(&path, &lines).unwrap();
    assert_eq!(head.seq, 5);
    let log = AuditLog::open(&path, Identity::from_secret_bytes(&secret())).unwrap();
    assert_eq!(log.head(), head);
    assert_eq!(log.append("consent", json!({"decision": "allow"})).unwrap().seq, 6);
}

#[test]
fn edits_drops_and_reorders_are_located() {
    let (_dir, path, lines) = log_with("tamper.log", 6);

    let mut edited = lines.clone();
    edited[2] = edited[2].replace("\"n\":2", "\"n\":99");
    assert_eq!(fault_of(check(&path, &edited)), (3, Fault::Edited));

    let mut dropped = lines.clone();
    dropped.remove(3);
    assert_eq!(fault_of(check(&path, &dropped)), (4, Fault::Dropped));

    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    assert_eq!(fault_of(check(&path, &swapped)), (2, Fault::Reordered));

    let mut garbage = lines.clone();
    garbage[4] = "{not json".into();
    assert_eq!(fault_of(check(&path, &garbage)), (5, Fault::Malformed));

    // A genuine entry of another log by the same key, spliced in at the same position.
    let (_other_path_dir, other_path) = temp_path("other.log");
    let other_log = AuditLog::open(&other_path, Identity::from_secret_bytes(&secret())).unwrap();
    for i in 0..6 {
        other_log.append("tool_call", json!({"tool": "other", "n": i})).unwrap();
    }
    let other: Vec<String> = std::fs::read_to_string(&other_path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut spliced = lines.clone();
    spliced[3] = other[3].clone();
    assert_eq!(fault_of(check(&path, &spliced)), (4, Fault::ChainBroken));
}

#[test]
fn lines_cut_from_the_end_are_found_with_a_kept_head() {
    let (_dir, path, lines) = log_with("truncate.log", 4);
    let head = check(&path, &lines).unwrap();
    std::fs::write(&path, lines[..2].join("\n") + "\n").unwrap();
    let did = Identity::from_secret_bytes(&secret()).did();
    assert_eq!(fault_of(verify(&path, &did, Some(&head))), (3, Fault::Truncated));
    assert!(
        verify(&path, &did, None).is_ok(),
        "without the head, a shorter log is still a valid log"
    );
}

/// A last line without its newline is dropped on open, whether a crash left it or someone cut the file
/// mid-entry to make an acknowledged entry vanish: either way a signed `audit_recovered` entry says so.
#[test]
fn a_line_cut_short_is_dropped_on_open_and_the_drop_recorded() {
    let (_dir, path, lines) = log_with("crash.log", 3);
    let mut contents = lines.join("\n") + "\n";
    contents.push_str(&lines[2][..20]); // the start of a fourth line, never finished
    std::fs::write(&path, contents).unwrap();
    let log = AuditLog::open(&path, Identity::from_secret_bytes(&secret())).unwrap();
    assert_eq!(log.head().seq, 4);
    let text = std::fs::read_to_string(&path).unwrap();
    let recovered: serde_json::Value = serde_json::from_str(text.lines().nth(3).unwrap()).unwrap();
    assert_eq!(recovered["kind"], "audit_recovered");
    assert_eq!(recovered["data"]["dropped_bytes"], 20);
    assert_eq!(log.append("tool_call", json!({})).unwrap().seq, 5);
    assert!(verify(&path, &Identity::from_secret_bytes(&secret()).did(), None).is_ok());
}

/// A whole entry that lost only its final newline is kept, not dropped; and a log that fails its checks
/// is not changed by opening it.
#[test]
fn opening_keeps_a_whole_last_entry_and_leaves_a_bad_log_alone() {
    let (_dir, path, lines) = log_with("newline.log", 3);
    std::fs::write(&path, lines.join("\n")).unwrap();
    let log = AuditLog::open(&path, Identity::from_secret_bytes(&secret())).unwrap();
    assert_eq!(log.head().seq, 3, "the third entry stays, with no recovery entry");
    drop(log);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), lines.join("\n") + "\n");

    let mut tampered = lines.clone();
    tampered[1] = tampered[1].replacen("\"n\":1", "\"n\":9", 1);
    let contents = tampered.join("\n") + "\n" + &lines[2][..20];
    std::fs::write(&path, &contents).unwrap();
    assert!(AuditLog::open(&path, Identity::from_secret_bytes(&secret())).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), contents, "untouched");
}

/// Whoever holds the key (a compromised agent) truncates the log to before an embarrassing entry and
/// writes a new history past the kept head: the entry at the head's position is not the one it names.
#[test]
fn a_log_rewritten_past_a_kept_head_is_found() {
    let (_dir, path, lines) = log_with("rewrite.log", 4);
    let did = Identity::from_secret_bytes(&secret()).did();
    std::fs::write(&path, lines[..2].join("\n") + "\n").unwrap();
    let kept = verify(&path, &did, None).unwrap();
    assert_eq!(kept.seq, 2);
    std::fs::write(&path, lines[..1].join("\n") + "\n").unwrap();
    let log = AuditLog::open(&path, Identity::from_secret_bytes(&secret())).unwrap();
    for n in 0..3 {
        log.append("tool_call", json!({"tool": "harmless", "n": n})).unwrap();
    }
    assert_eq!(fault_of(verify(&path, &did, Some(&kept))), (2, Fault::Rewritten));
}

/// The signature covers the bytes stored, not what they parse to: a line re-encoded (whitespace, key
/// order) is an edit.
#[test]
fn a_re_encoded_line_is_an_edit() {
    let (_dir, path, lines) = log_with("reencoded.log", 2);
    let mut spaced = lines.clone();
    spaced[0] = spaced[0].replacen("{\"seq\":", "{ \"seq\": ", 1);
    assert_ne!(spaced[0], lines[0]);
    assert_eq!(fault_of(check(&path, &spaced)), (1, Fault::Edited));
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

#[test]
fn the_hook_records_model_and_tool_calls_without_raw_arguments() {
    let (_path_dir, path) = temp_path("hook.log");
    let log = Arc::new(AuditLog::open(&path, Identity::from_secret_bytes(&secret())).unwrap());
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 40, "b": 2}))
        .text("42");
    let agent = Agent::builder(model)
        .tool(tool_fn("add", "Adds.", |x: Add| async move { Ok(x.a + x.b) }))
        .hook(AuditHook::new(log.clone()))
        .build()
        .unwrap();
    futures::executor::block_on(agent.run("add")).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["model_call", "tool_call", "model_call"]);
    assert!(text.contains("arguments_sha256") && !text.contains("\"a\":40"));
    assert_eq!(
        verify(&path, &Identity::from_secret_bytes(&secret()).did(), Some(&log.head()))
            .unwrap()
            .seq,
        3
    );
}

#[test]
fn every_consent_decision_is_recorded_with_its_token_capability_and_reason() {
    use kai_klp::consent::{issue, token_id};
    use kai_klp::{Capability, Verifier};

    let (_path_dir, path) = temp_path("consent.log");
    let service = Identity::from_secret_bytes(&secret());
    let caller = Identity::generate();
    let log = Arc::new(AuditLog::open(&path, Identity::from_secret_bytes(&secret())).unwrap());
    let verifier = Verifier::new(service.did(), [service.did()]).with_audit(log.clone());
    let search = Capability::call_tool("search");
    let token = issue(
        &service,
        &caller.did(),
        std::slice::from_ref(&search),
        std::time::Duration::from_secs(60),
        &[],
    )
    .unwrap();
    // `caller` presents a token issued to it, not to the service: wrong audience for `admit` too.
    verifier.authorize(&token, &search).unwrap_err();
    let to_service = issue(
        &service,
        &service.did(),
        std::slice::from_ref(&search),
        std::time::Duration::from_secs(60),
        &[],
    )
    .unwrap();
    verifier.admit(&to_service).unwrap();
    verifier.authorize(&to_service, &search).unwrap();
    assert!(matches!(
        verifier.authorize(&to_service, &Capability::call_tool("delete")),
        Err(Error::NotGranted { .. })
    ));
    assert!(matches!(verifier.admit(&to_service), Err(Error::Replayed)));
    // A call's invocation, presented by `caller` over its session: the entry names that peer, also
    // when the token is someone else's.
    let invocation = kai_klp::consent::invoke(
        &caller,
        &service.did(),
        std::slice::from_ref(&search),
        std::time::Duration::from_secs(60),
        &[to_caller(&service, &caller, &search)],
        "req-1",
    )
    .unwrap();
    let stranger = Identity::generate().did();
    assert!(matches!(
        verifier.admit_invocation(&invocation, &stranger, "req-1", &search),
        Err(Error::WrongInvoker { .. })
    ));
    verifier
        .admit_invocation(&invocation, &caller.did(), "req-1", &search)
        .unwrap();

    let entries: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect();
    let decisions: Vec<(&str, bool, &str)> = entries
        .iter()
        .map(|e| {
            assert_eq!(e["kind"], "consent");
            let data = &e["data"];
            (
                data["action"].as_str().unwrap(),
                data["allowed"].as_bool().unwrap(),
                data["token"].as_str().unwrap(),
            )
        })
        .collect();
    let (wrong, right) = (token_id(&token), token_id(&to_service));
    assert_eq!(
        decisions,
        [
            ("authorize", false, wrong.as_str()),
            ("admit", true, right.as_str()),
            ("authorize", true, right.as_str()),
            ("authorize", false, right.as_str()),
            ("admit", false, right.as_str()),
            ("admit", false, token_id(&invocation).as_str()),
            ("admit", true, token_id(&invocation).as_str()),
        ]
    );
    assert_eq!(entries[5]["data"]["peer"], stranger.to_string());
    assert_eq!(entries[6]["data"]["peer"], caller.did().to_string());
    assert_eq!(
        entries[1]["data"]["peer"],
        serde_json::Value::Null,
        "admit binds no peer"
    );
    assert!(entries[3]["data"]["reason"].as_str().unwrap().contains("delete"));
    assert_eq!(
        entries[2]["data"]["capability"],
        json!({"with": "tool:search", "can": "tool/call"})
    );
    verify(&path, &service.did(), Some(&log.head())).unwrap();
}

/// A grant from `service` to `caller` for `capability`.
fn to_caller(service: &Identity, caller: &Identity, capability: &kai_klp::Capability) -> String {
    kai_klp::consent::issue(
        service,
        &caller.did(),
        std::slice::from_ref(capability),
        std::time::Duration::from_secs(60),
        &[],
    )
    .unwrap()
}
