//! Agent calls over KLP: one agent uses another, on the other side of an encrypted session, as a tool,
//! under a delegated consent token; a revoked grant or a tool outside the grant is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::executor::block_on;
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, tool_fn};
use kai_klp::calls::{RemoteAgentTool, invoke_capability, serve};
use kai_klp::consent::{issue, token_id};
use kai_klp::session::{accept, connect, memory_pair};
use kai_klp::{Capability, Identity, Verifier};
use serde_json::json;

fn copy(identity: &Identity) -> Identity {
    Identity::from_secret_bytes(&identity.secret_bytes())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

/// Bob serves a calculator agent; Alice's agent calls it as the tool `ask_bob`. Returns the tool
/// results Alice's model received.
fn call_bob(bob_script: ScriptedModel, revoke_grant: bool, deleted: Arc<AtomicBool>) -> Vec<kai_core::ToolResult> {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let verifier = Arc::new(Verifier::new(bob.did(), [bob.did()]));
    let granted = [invoke_capability(&bob.did()), Capability::call_tool("add")];
    let grant = issue(&bob, &alice.did(), &granted, Duration::from_secs(3600), &[]).unwrap();
    if revoke_grant {
        verifier.revoke(token_id(&grant));
    }

    let bob_agent = Agent::builder(bob_script)
        .tool(tool_fn("add", "Adds.", |x: Add| async move { Ok(x.a + x.b) }))
        .tool(tool_fn("delete", "Deletes.", move |_: Add| {
            let deleted = Arc::clone(&deleted);
            async move {
                deleted.store(true, Ordering::SeqCst);
                Ok("deleted")
            }
        }))
        .build()
        .unwrap();

    let (a, b) = memory_pair();
    let bob_did = bob.did();
    let (client_session, server_session) =
        block_on(async { futures::join!(connect(copy(&alice), Some(&bob_did), a), accept(copy(&bob), b)) });
    let mut server_session = server_session.unwrap();
    let remote = RemoteAgentTool::new(
        client_session.unwrap(),
        copy(&alice),
        grant,
        granted.to_vec(),
        "ask_bob",
        "Asks Bob's calculator.",
    );
    let alice_model = ScriptedModel::new()
        .tool_call("ask_bob", json!({"input": "What is 20 + 22?"}))
        .text("Bob says 42.");
    let alice_agent = Agent::builder(alice_model).tool(remote).build().unwrap();

    block_on(async {
        let server = serve(&bob_agent, &bob, &mut server_session, &verifier);
        let client = async move {
            let output = alice_agent.run("Ask Bob what 20 + 22 is.").await.unwrap();
            drop(alice_agent); // closes the session, which ends the server loop
            output
        };
        let (served, output) = futures::join!(server, client);
        served.unwrap();
        output.messages.iter().flat_map(|m| m.tool_results().cloned()).collect()
    })
}

#[test]
fn a_remote_agent_answers_through_an_encrypted_session_under_consent() {
    let bob_script = ScriptedModel::new()
        .tool_call("add", json!({"a": 20, "b": 22}))
        .text("42");
    let results = call_bob(bob_script, false, Arc::default());
    assert_eq!(results.len(), 1);
    assert!(!results[0].is_error, "{results:?}");
    assert_eq!(results[0].content, "42");
}

#[test]
fn tools_outside_the_grant_are_refused_on_the_remote_side() {
    let bob_script = ScriptedModel::new()
        .tool_call("delete", json!({"a": 1, "b": 2}))
        .text("I was not allowed to delete.");
    let deleted = Arc::new(AtomicBool::new(false));
    let results = call_bob(bob_script, false, Arc::clone(&deleted));
    assert!(!deleted.load(Ordering::SeqCst), "the ungranted tool never ran");
    assert_eq!(results[0].content, "I was not allowed to delete.");
}

#[test]
fn a_revoked_grant_is_refused() {
    let bob_script = ScriptedModel::new().text("should not run");
    let results = call_bob(bob_script, true, Arc::default());
    assert!(results[0].is_error);
    assert!(results[0].content.contains("revoked"), "{}", results[0].content);
}

/// The caller learns why a call was refused as a typed error, not as prose for its model: here the
/// grant lacks `invoke` on the agent.
#[test]
fn a_refusal_reaches_the_caller_as_a_typed_error() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let verifier = Arc::new(Verifier::new(bob.did(), [bob.did()]));
    let only_add = [Capability::call_tool("add")];
    let grant = issue(&bob, &alice.did(), &only_add, Duration::from_secs(3600), &[]).unwrap();
    let agent = Agent::builder(ScriptedModel::new().text("never")).build().unwrap();
    let (a, b) = memory_pair();
    let bob_did = bob.did();
    let (client, server) =
        block_on(async { futures::join!(connect(alice.clone(), Some(&bob_did), a), accept(bob.clone(), b)) });
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    let result = block_on(async {
        let serving = serve(&agent, &bob, &mut server, &verifier);
        let calling = async move {
            let result = kai_klp::calls::call(&mut client, &alice, &grant, &only_add, "hello").await;
            drop(client);
            result
        };
        let (served, result) = futures::join!(serving, calling);
        served.unwrap();
        result
    });
    match result {
        Err(kai_klp::Error::Refused { kind, message }) => {
            assert_eq!(kind, "not_granted");
            assert!(message.contains("invoke"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// A remote agent that takes the request and never answers: the call gives up after its limit with a
/// typed error, instead of holding the caller for ever.
#[test]
fn a_call_that_gets_no_answer_times_out() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let granted = [invoke_capability(&bob.did())];
    let grant = issue(&bob, &alice.did(), &granted, Duration::from_secs(3600), &[]).unwrap();
    let (a, b) = memory_pair();
    let bob_did = bob.did();
    let error = block_on(async {
        let (client, server) = futures::join!(connect(copy(&alice), Some(&bob_did), a), accept(copy(&bob), b));
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        let silent = async move {
            let request = server.recv().await.unwrap();
            assert_eq!(request.kind, kai_klp::sealed::MessageKind::CallRequest);
            server
        };
        let calling = kai_klp::calls::call_within(
            Duration::from_millis(200),
            &mut client,
            &alice,
            &grant,
            &granted,
            "hello?",
        );
        let (_server, result) = futures::join!(silent, calling);
        result.unwrap_err()
    });
    assert!(
        matches!(error, kai_klp::Error::CallTimedOut { millis: 200 }),
        "{error:?}"
    );
}
