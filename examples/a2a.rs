//! Two processes talking A2A: this program serves a kAI agent over A2A, then starts itself again as
//! a second process whose agent calls the first over A2A, as a tool.
//!
//! Run: `cargo run -p kai-examples --example a2a` (both processes run on the scripted model, on
//! loopback).

use std::time::Duration;

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, CancellationToken, tool_fn};
use kai_klp::a2a::{A2aClient, A2aServer, agent_card};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Order {
    /// The order's number.
    number: u32,
}

/// The first process: an order-status agent served over A2A until the caller is done.
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let model = ScriptedModel::new()
        .tool_call("order_status", serde_json::json!({"number": 7}))
        .text("Order 7 shipped yesterday and arrives on Friday.")
        .repeat();
    let agent = Agent::builder(model)
        .name("orders")
        .tool(tool_fn(
            "order_status",
            "Looks an order up.",
            |order: Order| async move { Ok(format!("order {} shipped; due Friday", order.number)) },
        ))
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let card = agent_card(&agent, &format!("{url}/"), "Knows where every order is.");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(A2aServer::new(agent, card).serve(listener, shutdown.clone()));
    println!("[orders] serving A2A at {url}");

    let caller = tokio::process::Command::new(std::env::current_exe()?)
        .env("KAI_A2A_AGENT", &url)
        .status()
        .await?;
    shutdown.cancel();
    server.await??;
    if !caller.success() {
        return Err(format!("the calling process failed: {caller}").into());
    }
    Ok(())
}

/// The second process: a support agent whose tool is the orders agent, reached over A2A.
async fn call(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let orders = A2aClient::connect(url).await?;
    println!(
        "[support] found {:?}: {}",
        orders.card().name,
        orders.card().description
    );
    let model = ScriptedModel::new()
        .tool_call("ask_orders", serde_json::json!({"message": "Where is order 7?"}))
        .text("Good news: order 7 arrives on Friday.");
    let support = Agent::builder(model)
        .name("support")
        .tool(orders.tool("ask_orders"))
        .build()?;
    let output = tokio::time::timeout(Duration::from_secs(30), support.run("Where is my order 7?")).await??;
    let mut answered = false;
    for message in &output.messages {
        for part in &message.content {
            if let kai_core::ContentPart::ToolResult(result) = part {
                println!("[support] the orders agent answered: {}", result.content);
                if result.is_error || !result.content.contains("arrives on Friday") {
                    return Err("the orders agent's answer did not come back".into());
                }
                answered = true;
            }
        }
    }
    if !answered {
        return Err("the support agent never called the orders agent".into());
    }
    println!("[support] {}", output.answer);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var("KAI_A2A_AGENT") {
        Ok(url) => call(&url).await,
        Err(_) => serve().await,
    }
}
