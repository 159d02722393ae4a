//! kAI's MCP server against a client no one here wrote: the official Python SDK's (`mcp` on PyPI,
//! `tests/mcp/python_client.py`, installed by `scripts/setup/mcp-peers.sh` or found through
//! `KAI_MCP_PYTHON`); and against kAI's own client, in process.
//!
//! This test has no harness: started with `KAI_MCP_SERVE=1` it is the server, on its stdin and
//! stdout, which the Python client starts; otherwise it runs the checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kai_core::mcp::{
    McpClient, McpOptions, McpPrompt, McpResource, McpResourceContents, McpResourceTemplate, McpServer,
};
use kai_core::testing::ScriptedModel;
use kai_core::{
    Agent, AgentEvent, CancellationToken, ContentPart, ImageSource, Message, Role, ToolContext, ToolError,
    ToolProgress, ToolSet, tool_fn,
};
use serde_json::{Value, json};

#[path = "mcp/peers.rs"]
mod peers;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Name {
    name: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Nothing {}

/// The tools served; `on_cancel` runs when the `slow` tool sees its call cancelled.
fn tools(on_cancel: Arc<dyn Fn() + Send + Sync>) -> ToolSet {
    let mut tools = ToolSet::new();
    tools
        .add(tool_fn("add", "Adds two integers.", |args: Add| async move {
            Ok(args.a + args.b)
        }))
        .unwrap();
    tools
        .add(tool_fn("describe", "Describes a name.", |args: Name| async move {
            Ok(json!({"name": args.name, "length": args.name.len()}))
        }))
        .unwrap();
    tools
        .add(tool_fn("fail", "Always fails.", |_: Nothing| async move {
            Err::<String, _>(ToolError::failed("cannot do that"))
        }))
        .unwrap();
    tools
        .add(tool_fn(
            "slow",
            "Answers after 30 s unless cancelled.",
            move |_: Nothing, context: ToolContext| {
                // Like a tool that hands its work elsewhere, it learns of the cancellation through
                // the token (the call's future itself is dropped).
                let on_cancel = Arc::clone(&on_cancel);
                tokio::spawn(async move {
                    context.cancel.cancelled().await;
                    on_cancel();
                });
                async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok("done".to_owned())
                }
            },
        ))
        .unwrap();
    tools
        .add(tool_fn(
            "count",
            "Counts to three, reporting each step.",
            |_: Nothing, context: ToolContext| async move {
                for step in 1..=3 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    context.report_progress(
                        ToolProgress::new(f64::from(step))
                            .with_total(3.0)
                            .with_message(format!("step {step}")),
                    );
                }
                Ok("counted".to_owned())
            },
        ))
        .unwrap();
    let inner = Agent::builder(ScriptedModel::new().text("Hello from the inner agent.").repeat())
        .build()
        .unwrap();
    tools
        .add(inner.into_tool("assistant", "An agent that answers anything."))
        .unwrap();
    tools
}

/// A one-pixel PNG.
const PIXEL: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0xe9, 0xfa, 0xdc, 0xd8, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The test tools with a resource, a template of resources and a prompt.
fn server(on_cancel: Arc<dyn Fn() + Send + Sync>) -> McpServer {
    McpServer::new(tools(on_cancel))
        .with_name("kai-test-server", "1.0")
        .with_resource(
            McpResource::new("notes://today", "today").with_mime_type("text/plain"),
            McpResourceContents::text("notes://today", "text/plain", "Buy milk."),
        )
        .with_resource(
            McpResource::new("images://pixel", "pixel").with_mime_type("image/png"),
            McpResourceContents::bytes("images://pixel", "image/png", PIXEL),
        )
        .with_resource_template(
            McpResourceTemplate::new("notes://day/{day}", "a day's note").with_mime_type("text/plain"),
            |uri, variables| async move {
                Ok(vec![McpResourceContents::text(
                    uri,
                    "text/plain",
                    format!("Nothing on {}.", variables["day"]),
                )])
            },
        )
        .unwrap()
        .with_prompt(
            McpPrompt::new("review", "Asks for a code review.").with_argument("language", "The code's language.", true),
            |arguments| async move {
                let language = arguments["language"].as_str().unwrap_or("any").to_owned();
                let picture = ContentPart::Image {
                    source: ImageSource::Bytes {
                        media_type: "image/png".to_owned(),
                        data: PIXEL.to_vec(),
                    },
                };
                Ok(vec![
                    Message::user(format!("Review this {language} code.")),
                    Message::new(Role::Assistant, vec![picture]),
                ])
            },
        )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os("KAI_MCP_SERVE").is_some() {
        let marker = PathBuf::from(std::env::var_os("KAI_MCP_CANCEL_MARKER").unwrap());
        let on_cancel = Arc::new(move || std::fs::write(&marker, b"cancelled").unwrap());
        runtime.block_on(server(on_cancel).serve_stdio()).unwrap();
        return;
    }
    runtime.block_on(our_client_uses_our_server_in_process());
    println!("test our_client_uses_our_server_in_process ... ok");
    runtime.block_on(the_python_sdks_client_uses_our_server());
    println!("test the_python_sdks_client_uses_our_server ... ok");
    runtime.block_on(the_python_sdks_client_uses_our_server_over_http());
    println!("test the_python_sdks_client_uses_our_server_over_http ... ok");
    runtime.block_on(our_client_uses_our_server_over_http());
    println!("test our_client_uses_our_server_over_http ... ok");
}

/// Runs the Python client against `server` (this binary's path, or a URL) and checks its report.
async fn run_python_client(server: &std::ffi::OsStr, marker: &std::path::Path) {
    let output = tokio::process::Command::new(peers::peer("KAI_MCP_PYTHON", "python"))
        .arg(format!("{}/tests/mcp/python_client.py", env!("CARGO_MANIFEST_DIR")))
        .arg(server)
        .env("KAI_MCP_CANCEL_MARKER", marker)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["protocol"], "2026-07-28", "{report}");
    let tools = &report["tools"];
    assert_eq!(tools.as_object().unwrap().len(), 6, "{tools}");
    // A tool's progress reaches the client's callback, in order, before the result.
    assert_eq!(
        report["count"],
        json!({"text": "counted", "progress": [[1.0, 3.0, "step 1"], [2.0, 3.0, "step 2"], [3.0, 3.0, "step 3"]]}),
        "{report}"
    );
    assert_eq!(tools["add"]["description"], "Adds two integers.");
    assert_eq!(tools["add"]["schema"]["properties"]["a"]["type"], "integer");
    assert_eq!(
        report["add"],
        json!({"text": "42", "structured": null, "is_error": false})
    );
    assert_eq!(report["describe"]["structured"], json!({"name": "kai", "length": 3}));
    assert_eq!(report["bad_arguments"]["is_error"], true);
    assert!(
        report["bad_arguments"]["text"]
            .as_str()
            .unwrap()
            .contains("invalid arguments"),
        "{report}"
    );
    assert_eq!(report["fail"], json!({"text": "cannot do that", "is_error": true}));
    assert!(
        report["unknown"].as_str().unwrap().contains("no tool is named"),
        "{report}"
    );
    assert_eq!(
        report["assistant"],
        json!({"text": "Hello from the inner agent.", "is_error": false})
    );
    assert_eq!(report["resources"], json!(["notes://today", "images://pixel"]));
    assert_eq!(report["today"], "Buy milk.");
    assert_eq!(report["friday"], "Nothing on friday.");
    assert_eq!(report["prompts"], json!(["review"]));
    assert_eq!(report["prompt"], json!([["user", "text"], ["assistant", "image"]]));
    assert_eq!(report["prompt_text"], "Review this Go code.");
    assert_ne!(report["slow"], "answered");
    assert!(report["slow_seconds"].as_f64().unwrap() < 5.0, "{report}");
    assert_eq!(report["slow_cancelled_on_server"], true, "{report}");
}

async fn the_python_sdks_client_uses_our_server() {
    let dir = tempfile::tempdir().unwrap();
    run_python_client(
        std::env::current_exe().unwrap().as_os_str(),
        &dir.path().join("cancelled"),
    )
    .await;
}

/// Serves the test tools over HTTP on a loopback port; returns its URL and the token that stops it.
async fn serve_http(server: McpServer) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", listener.local_addr().unwrap().port());
    let shutdown = CancellationToken::new();
    tokio::spawn(server.serve_http(listener, shutdown.clone()));
    (url, shutdown)
}

async fn the_python_sdks_client_uses_our_server_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("cancelled");
    let written = marker.clone();
    let on_cancel = Arc::new(move || std::fs::write(&written, b"cancelled").unwrap());
    let (url, shutdown) = serve_http(server(on_cancel)).await;
    run_python_client(std::ffi::OsStr::new(&url), &marker).await;
    shutdown.cancel();
}

async fn our_client_uses_our_server_over_http() {
    let (url, shutdown) = serve_http(McpServer::new(tools(Arc::new(|| {})))).await;
    let client = McpClient::http(&url).await.unwrap();
    assert_eq!(client.protocol_version().as_deref(), Some("2026-07-28"));
    let served = client.tool_set().await.unwrap();
    let sum = served
        .get("add")
        .unwrap()
        .call(json!({"a": 20, "b": 22}), ToolContext::new("h"))
        .await
        .unwrap();
    assert_eq!(sum, json!("42"));
    // A served tool's progress reaches a streamed run as events (over HTTP, the answer becomes an
    // event stream when progress comes before it).
    let model = ScriptedModel::new().tool_call("count", json!({})).text("done");
    let agent = Agent::builder(model).tools(&served).build().unwrap();
    let events: Vec<AgentEvent> = futures::StreamExt::collect::<Vec<_>>(agent.stream("Count."))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let reports: Vec<&ToolProgress> = events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::ToolProgress { progress, .. } => Some(progress),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 3, "{events:?}");
    assert_eq!(reports[2].message.as_deref(), Some("step 3"));
    assert_eq!(reports[2].total, Some(3.0));

    // Requests addressed to a name the server does not answer to, or sent from a web page of
    // another origin, are refused (DNS rebinding); by default only loopback names and origins.
    assert_eq!(status_at(&url, "localhost", None).await, 200);
    assert_eq!(status_at(&url, "127.0.0.1", Some("http://localhost:3000")).await, 200);
    assert_eq!(status_at(&url, "mcp.example.org", None).await, 403);
    assert_eq!(
        status_at(&url, "localhost", Some("https://attacker.example")).await,
        403
    );
    shutdown.cancel();
    let (url, shutdown) = serve_http(
        McpServer::new(tools(Arc::new(|| {})))
            .with_allowed_hosts(["mcp.example.org"])
            .with_allowed_origins(["https://app.example.org"]),
    )
    .await;
    assert_eq!(
        status_at(&url, "mcp.example.org", Some("https://app.example.org")).await,
        200
    );
    assert_eq!(status_at(&url, "localhost", None).await, 403);
    let options = McpOptions::new().with_startup_timeout(Duration::from_secs(15));
    let refused = McpClient::http_with(&url, options).await.unwrap_err();
    assert!(
        refused.to_string().contains("403") || refused.to_string().contains("Forbidden"),
        "{refused}"
    );
    shutdown.cancel();
}

/// The HTTP status the server at `url` answers an `initialize` with, sent with this `Host` and
/// `Origin`.
async fn status_at(url: &str, host: &str, origin: Option<&str>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("http://").trim_end_matches("/mcp");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}
    }})
    .to_string();
    let origin = origin.map(|origin| format!("Origin: {origin}\r\n")).unwrap_or_default();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

async fn our_client_uses_our_server_in_process() {
    let cancelled = CancellationToken::new();
    let seen = cancelled.clone();
    let (client_side, server_side) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_side);
    let server = server(Arc::new(move || seen.cancel())).with_max_concurrent_calls(1);
    let serving = tokio::spawn(server.serve(server_read, server_write));
    let (client_read, client_write) = tokio::io::split(client_side);
    let options = McpOptions::new().with_request_timeout(Duration::from_millis(500));
    let client = McpClient::connect(client_read, client_write, "in-process", options)
        .await
        .unwrap();
    assert_eq!(client.protocol_version().as_deref(), Some("2026-07-28"));
    assert_eq!(client.server_name(), "kai-test-server");

    // Resources, a template of resources, and a prompt with an image.
    let resources = client.resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris, ["notes://today", "images://pixel"]);
    let today = client.read_resource("notes://today").await.unwrap();
    assert_eq!(today[0].text.as_deref(), Some("Buy milk."));
    let pixel = client.read_resource("images://pixel").await.unwrap();
    assert_eq!(pixel[0].mime_type.as_deref(), Some("image/png"));
    assert!(pixel[0].blob.as_deref().unwrap().starts_with("iVBOR"));
    let templates = client.resource_templates().await.unwrap();
    assert_eq!(templates[0].uri_template, "notes://day/{day}");
    let monday = client.read_resource("notes://day/monday").await.unwrap();
    assert_eq!(monday[0].uri, "notes://day/monday");
    assert_eq!(monday[0].text.as_deref(), Some("Nothing on monday."));
    for missing in ["notes://nowhere", "notes://day/", "notes://day/a/b"] {
        let error = client.read_resource(missing).await.unwrap_err();
        assert!(
            matches!(
                error,
                kai_core::Error::InvalidRequest { .. } | kai_core::Error::Server { .. }
            ),
            "{missing}: {error:?}"
        );
    }
    let prompts = client.prompts().await.unwrap();
    assert_eq!(prompts[0].name, "review");
    assert!(prompts[0].arguments[0].required);
    let mut arguments = serde_json::Map::new();
    arguments.insert("language".into(), json!("Rust"));
    let messages = client.prompt("review", arguments).await.unwrap();
    assert_eq!(messages[0].role, Role::User);
    assert_eq!(messages[0].text(), "Review this Rust code.");
    assert_eq!(messages[1].role, Role::Assistant);
    assert!(matches!(
        &messages[1].content[0],
        ContentPart::Image { source: ImageSource::Bytes { media_type, data } } if media_type == "image/png" && data == PIXEL
    ));
    let unfilled = client.prompt("review", serde_json::Map::new()).await.unwrap_err();
    assert!(unfilled.to_string().contains("language"), "{unfilled}");
    // Arguments are strings, and only those the prompt declares.
    let mut arguments = serde_json::Map::new();
    arguments.insert("language".into(), json!({"nested": [1, 2, 3]}));
    let not_text = client.prompt("review", arguments).await.unwrap_err();
    assert!(not_text.to_string().contains("not a string"), "{not_text}");
    let mut arguments = serde_json::Map::new();
    arguments.insert("language".into(), json!("Rust"));
    arguments.insert("extra".into(), json!("x"));
    let unknown = client.prompt("review", arguments).await.unwrap_err();
    assert!(unknown.to_string().contains("extra"), "{unknown}");
    // A URI longer than templates are matched against finds nothing, and is not echoed whole.
    let long = format!("notes://day/{}", "x".repeat(10_000));
    let missing = client.read_resource(&long).await.unwrap_err();
    assert!(missing.to_string().len() < 1_000, "{}", missing.to_string().len());

    let tools = client.tool_set().await.unwrap();
    let call = |name: &str, arguments: Value| {
        let tool = Arc::clone(tools.get(name).unwrap());
        async move { tool.call(arguments, ToolContext::new("c")).await }
    };
    assert_eq!(call("add", json!({"a": 1, "b": 2})).await.unwrap(), json!("3"));
    assert_eq!(
        call("describe", json!({"name": "ab"})).await.unwrap(),
        json!({"name": "ab", "length": 2})
    );
    assert_eq!(
        call("fail", json!({})).await.unwrap_err(),
        ToolError::failed("cannot do that")
    );
    // One call at a time: while `slow` runs, another call is refused, not queued.
    let slow = tokio::spawn(call("slow", json!({})));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = call("add", json!({"a": 1, "b": 2})).await.unwrap_err();
    assert!(
        matches!(&refused, ToolError::Failed { message } if message.contains("as many tool calls")),
        "{refused:?}"
    );
    assert_eq!(
        slow.await.unwrap().unwrap_err(),
        ToolError::Timeout {
            after: Duration::from_millis(500)
        }
    );
    tokio::time::timeout(Duration::from_secs(5), cancelled.cancelled())
        .await
        .expect("the server's tool saw the timed-out call cancelled");
    // The cancelled call no longer counts.
    assert_eq!(call("add", json!({"a": 2, "b": 2})).await.unwrap(), json!("4"));
    client.close().await;
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
