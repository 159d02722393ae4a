//! An agent calls another agent across an encrypted KLP session, over TCP and then over WebSocket.
//!
//! Bob serves a calculator agent. Alice holds a grant from Bob: `agent/invoke` on Bob's agent and `tool/call` on
//! its `add` tool. Her agent uses Bob's as a tool (`ask_bob`); each call sends a fresh one-minute
//! invocation, bound to that request and to Alice's side of the session. Then Alice tries to call
//! with a grant that lacks `agent/invoke`, and gets a typed refusal.
//!
//! Run: `cargo run -p kai-examples --example klp_call` (loopback only; the models are scripted, so the
//! example needs no model server).

use std::sync::Arc;
use std::time::Duration;

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, tool_fn};
use kai_klp::calls::{RemoteAgentTool, call, invoke_capability, serve};
use kai_klp::consent::issue;
use kai_klp::session::{FrameTransport, Session, TcpTransport, WebSocketTransport, accept, connect};
use kai_klp::{Capability, Error, Identity, Verifier};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

/// Bob's agent: its (scripted) model adds with the `add` tool, then answers.
fn bob_agent() -> Result<Agent, kai_core::Error> {
    let model = ScriptedModel::new()
        .repeat()
        .tool_call("add", json!({"a": 20, "b": 22}))
        .text("20 + 22 = 42");
    Agent::builder(model)
        .name("bob")
        .tool(tool_fn("add", "Adds two integers.", |args: Add| async move {
            Ok(args.a + args.b)
        }))
        .build()
}

/// Alice's agent, asking Bob through `session` under `grant`.
fn alice_agent<T: FrameTransport + Sync + 'static>(
    session: Session<T>,
    alice: &Identity,
    grant: String,
    bob: &Identity,
) -> Result<Agent, kai_core::Error> {
    let delegated = vec![invoke_capability(&bob.did()), Capability::call_tool("add")];
    let ask_bob = RemoteAgentTool::new(
        session,
        alice.clone(),
        grant,
        delegated,
        "ask_bob",
        "Asks Bob, who can add.",
    );
    let model = ScriptedModel::new()
        .tool_call("ask_bob", json!({"input": "What is 20 + 22?"}))
        .text("Bob says 20 + 22 = 42.");
    Agent::builder(model).name("alice").tool(ask_bob).build()
}

/// Serves Bob on every session accepted from `next`, until it returns `None`.
async fn serve_all<T, F, Fut>(bob: Identity, verifier: Arc<Verifier>, mut next: F)
where
    T: FrameTransport + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let Ok(agent) = bob_agent() else {
        return;
    };
    while let Some(transport) = next().await {
        let Ok(mut session) = accept(bob.clone(), transport).await else {
            continue;
        };
        if let Err(error) = serve(&agent, &bob, &mut session, &verifier).await {
            eprintln!("bob: session ended: {error}");
        }
    }
}

/// What Bob's agent answered, as Alice's agent received it from the `ask_bob` tool.
fn bobs_answer(output: &kai_core::RunOutput) -> Result<String, String> {
    let result = output
        .messages
        .iter()
        .flat_map(|message| message.tool_results())
        .next()
        .ok_or("Alice's agent never asked Bob")?;
    if result.is_error {
        return Err(format!("Bob's side failed: {}", result.content));
    }
    Ok(result.content.clone())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let verifier = Arc::new(Verifier::new(bob.did(), [bob.did()]));
    let granted = [invoke_capability(&bob.did()), Capability::call_tool("add")];
    let grant = issue(&bob, &alice.did(), &granted, Duration::from_secs(3600), &[])?;

    // Over TCP.
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let tcp_address = tcp.local_addr()?;
    let tcp = Arc::new(tcp);
    let listener = Arc::clone(&tcp);
    tokio::spawn(serve_all(bob.clone(), Arc::clone(&verifier), move || {
        let listener = Arc::clone(&listener);
        async move {
            listener
                .accept()
                .await
                .ok()
                .map(|(stream, _)| TcpTransport::new(stream))
        }
    }));
    let session = connect(
        alice.clone(),
        Some(&bob.did()),
        TcpTransport::new(TcpStream::connect(tcp_address).await?),
    )
    .await?;
    let output = alice_agent(session, &alice, grant.clone(), &bob)?
        .run("Ask Bob what 20 + 22 is.")
        .await?;
    println!("over TCP:       Bob answered {:?}", bobs_answer(&output)?);

    // Over WebSocket.
    let ws = TcpListener::bind("127.0.0.1:0").await?;
    let ws_url = format!("ws://{}", ws.local_addr()?);
    let ws = Arc::new(ws);
    let listener = Arc::clone(&ws);
    tokio::spawn(serve_all(bob.clone(), Arc::clone(&verifier), move || {
        let listener = Arc::clone(&listener);
        async move {
            let (stream, _) = listener.accept().await.ok()?;
            WebSocketTransport::accept(stream).await.ok()
        }
    }));
    let session = connect(
        alice.clone(),
        Some(&bob.did()),
        WebSocketTransport::connect(&ws_url).await?,
    )
    .await?;
    let output = alice_agent(session, &alice, grant, &bob)?
        .run("Ask Bob what 20 + 22 is.")
        .await?;
    println!("over WebSocket: Bob answered {:?}", bobs_answer(&output)?);

    // A grant without `invoke` on Bob's agent: refused, and the caller is told why.
    let add_only = issue(
        &bob,
        &alice.did(),
        &[Capability::call_tool("add")],
        Duration::from_secs(3600),
        &[],
    )?;
    let mut session = connect(
        alice.clone(),
        Some(&bob.did()),
        TcpTransport::new(TcpStream::connect(tcp_address).await?),
    )
    .await?;
    match call(
        &mut session,
        &alice,
        &add_only,
        &[Capability::call_tool("add")],
        "What is 1 + 1?",
    )
    .await
    {
        Err(Error::Refused { kind, .. }) => println!("without invoke: refused ({kind})"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    Ok(())
}
