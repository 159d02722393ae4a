//! The MCP client against servers no one here wrote: the reference server
//! `@modelcontextprotocol/server-everything` (TypeScript SDK, under Node) and a server written with the
//! official Python SDK (`mcp` on PyPI, `tests/mcp/python_server.py`), both installed by
//! `scripts/setup/mcp-peers.sh` (or found through `KAI_MCP_NODE_MODULES` and `KAI_MCP_PYTHON`). Also
//! servers that hang, crash, print garbage or never start.
#![cfg(all(feature = "mcp", not(target_arch = "wasm32")))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kai_core::mcp::{McpChange, McpClient, McpOptions};
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, CancellationToken, Error, Role, Tool, ToolContext, ToolError, ToolProgress};
use peers::peer;
use serde_json::json;

#[path = "mcp/peers.rs"]
mod peers;

fn manifest_dir() -> String {
    // At run time: a build cache shared by clones keeps the builder's path.
    std::env::var("CARGO_MANIFEST_DIR").unwrap()
}

fn everything() -> Command {
    static DIR: OnceLock<String> = OnceLock::new();
    let dir = DIR.get_or_init(|| peer("KAI_MCP_NODE_MODULES", "node"));
    let mut command = Command::new("node");
    command
        .arg(format!("{dir}/@modelcontextprotocol/server-everything/dist/index.js"))
        .arg("stdio");
    command
}

fn python_peer() -> Command {
    static PYTHON: OnceLock<String> = OnceLock::new();
    let python = PYTHON.get_or_init(|| peer("KAI_MCP_PYTHON", "python"));
    let mut command = Command::new(python);
    command.arg(format!("{}/tests/mcp/python_server.py", manifest_dir()));
    command
}

/// The Python SDK's server started by a shell, between `before` and `after`.
fn python_peer_in_shell(before: &str, after: &str) -> Command {
    let server = python_peer();
    let program = server.get_program().to_string_lossy().into_owned();
    let script = server.get_args().next().unwrap().to_string_lossy().into_owned();
    shell(&format!("{before} '{program}' '{script}'{after}"))
}

fn shell(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    command
}

async fn call(client: &McpClient, name: &str, arguments: serde_json::Value) -> Result<serde_json::Value, ToolError> {
    let tools = client.tools().await.unwrap();
    let tool = tools.iter().find(|tool| tool.remote_name() == name).unwrap();
    tool.call(arguments, ToolContext::new("call")).await
}

/// The reference server predates the 2026-07-28 revision: the client falls back to the
/// `initialize` handshake of 2025-11-25, and its tools run in an agent.
#[tokio::test]
async fn the_reference_servers_tools_run_in_an_agent() {
    let client = McpClient::stdio(everything()).await.unwrap();
    assert_eq!(client.protocol_version().as_deref(), Some("2025-11-25"));
    assert_eq!(client.server_name(), "mcp-servers/everything");
    let tools = client.tool_set().await.unwrap();
    for name in [
        "echo",
        "get-sum",
        "get-structured-content",
        "trigger-long-running-operation",
    ] {
        assert!(tools.get(name).is_some(), "{name} missing from {tools:?}");
    }
    let definition = &tools.get("get-sum").unwrap().definition();
    assert_eq!(definition.parameters["type"], "object");
    assert!(definition.parameters["properties"]["a"].is_object());

    let model = ScriptedModel::new()
        .tool_calls([
            ("get-sum", json!({"a": 17, "b": 25})),
            ("echo", json!({"message": "hello"})),
        ])
        .text("17 + 25 = 42");
    let agent = Agent::builder(model).tools(&tools).build().unwrap();
    let output = agent.run("What is 17 + 25?").await.unwrap();
    assert_eq!(output.answer, "17 + 25 = 42");
    let results: Vec<_> = output.messages.iter().flat_map(|m| m.tool_results()).collect();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| !r.is_error), "{results:?}");
    assert!(results[0].content.contains("42"), "{}", results[0].content);
    assert!(results[1].content.contains("hello"), "{}", results[1].content);

    // Structured content comes through as JSON, not as text.
    let weather = call(&client, "get-structured-content", json!({"location": "New York"}))
        .await
        .unwrap();
    assert!(weather["temperature"].is_number(), "{weather}");
    // Arguments the server's schema refuses are the model's to fix.
    let refused = call(&client, "get-sum", json!({"a": "x"})).await.unwrap_err();
    assert!(
        matches!(refused, ToolError::Failed { .. } | ToolError::InvalidArguments { .. }),
        "{refused:?}"
    );
    client.close().await;
    let closed = call_after_close(&tools).await;
    assert!(
        matches!(closed, ToolError::Failed { ref message } if message.contains("closed") || message.contains("send")),
        "{closed:?}"
    );
}

async fn call_after_close(tools: &kai_core::ToolSet) -> ToolError {
    tools
        .get("echo")
        .unwrap()
        .call(json!({"message": "late"}), ToolContext::new("late"))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn the_reference_servers_resources_and_prompts_are_read() {
    let client = McpClient::stdio(everything()).await.unwrap();
    let resources = client.resources().await.unwrap();
    assert!(!resources.is_empty());
    let first = &resources[0];
    let contents = client.read_resource(&first.uri).await.unwrap();
    assert_eq!(contents[0].uri, first.uri);
    assert!(contents[0].text.is_some() || contents[0].blob.is_some(), "{contents:?}");

    let prompts = client.prompts().await.unwrap();
    let simple = prompts
        .iter()
        .find(|p| p.arguments.is_empty())
        .expect("a prompt without arguments");
    let messages = client.prompt(&simple.name, serde_json::Map::new()).await.unwrap();
    assert!(!messages.is_empty());
    assert_eq!(messages[0].role, Role::User);
    assert!(!messages[0].text().is_empty());

    let missing = client.read_resource("nowhere://nothing").await.unwrap_err();
    // A server's error that echoes a huge request is cut before it reaches anyone.
    let huge = format!("nowhere://{}", "x".repeat(100_000));
    let echoed = client.read_resource(&huge).await.unwrap_err().to_string();
    assert!(echoed.len() < 5_000, "{} bytes", echoed.len());
    assert!(
        matches!(missing, Error::Server { .. } | Error::InvalidRequest { .. }),
        "{missing:?}"
    );
    // A listing longer than the cap is refused, not collected.
    let capped = McpClient::stdio_with(everything(), McpOptions::new().with_max_items(5))
        .await
        .unwrap();
    assert!(matches!(capped.tools().await, Err(Error::MalformedResponse { .. })));
}

/// A server written with the official Python SDK speaks the current revision; its tools, errors,
/// resources and prompts come through.
#[tokio::test]
async fn a_python_sdk_server_speaks_the_current_revision() {
    let client = McpClient::stdio_with(python_peer(), McpOptions::new().with_tool_prefix("py"))
        .await
        .unwrap();
    assert_eq!(client.protocol_version().as_deref(), Some("2026-07-28"));
    assert_eq!(client.server_name(), "python-peer");
    let tools = client.tool_set().await.unwrap();
    let names: Vec<&str> = tools.names().collect();
    assert!(
        names.contains(&"py_multiply") && names.contains(&"py_shout"),
        "{names:?}"
    );

    let product = tools
        .get("py_multiply")
        .unwrap()
        .call(json!({"a": 6, "b": 7}), ToolContext::new("m"))
        .await
        .unwrap();
    assert_eq!(product, json!({"result": 42}));
    let failed = tools
        .get("py_fail")
        .unwrap()
        .call(json!({"reason": "testing"}), ToolContext::new("f"))
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, ToolError::Failed { message } if message.contains("failed on purpose: testing")),
        "{failed:?}"
    );
    let not_an_object = tools
        .get("py_shout")
        .unwrap()
        .call(json!(["loud"]), ToolContext::new("s"))
        .await
        .unwrap_err();
    assert!(matches!(not_an_object, ToolError::InvalidArguments { .. }));

    let resources = client.resources().await.unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].uri, "notes://today");
    assert_eq!(resources[0].mime_type.as_deref(), Some("text/plain"));
    let contents = client.read_resource("notes://today").await.unwrap();
    assert_eq!(contents[0].text.as_deref(), Some("Buy milk."));

    let prompts = client.prompts().await.unwrap();
    assert_eq!(prompts[0].name, "review");
    assert!(prompts[0].arguments[0].required);
    let mut arguments = serde_json::Map::new();
    arguments.insert("language".into(), json!("Rust"));
    let messages = client.prompt("review", arguments).await.unwrap();
    assert_eq!(messages[0].text(), "Review this Rust code.");
}

/// Calls `tool` with a listener on its progress; returns its output and what was heard.
async fn with_progress(tool: &dyn Tool, arguments: serde_json::Value) -> (serde_json::Value, Vec<ToolProgress>) {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&heard);
    let context =
        ToolContext::new("progress").with_progress_listener(move |progress| sink.lock().unwrap().push(progress));
    let output = tool.call(arguments, context).await.unwrap();
    let heard = heard.lock().unwrap().clone();
    (output, heard)
}

/// A server's progress reports reach whoever watches the call: the reference server's under
/// 2025-11-25, the Python SDK's under 2026-07-28.
#[tokio::test]
async fn servers_report_progress_to_the_caller() {
    let client = McpClient::stdio(everything()).await.unwrap();
    let tools = client.tool_set().await.unwrap();
    let operation = tools.get("trigger-long-running-operation").unwrap();
    let (_, heard) = with_progress(operation.as_ref(), json!({"duration": 1, "steps": 4})).await;
    assert!(heard.len() >= 3, "{heard:?}");
    assert!(heard.iter().all(|report| report.total == Some(4.0)), "{heard:?}");
    assert!(
        heard.windows(2).all(|pair| pair[0].progress < pair[1].progress),
        "{heard:?}"
    );
    // Unwatched, the call's reports go nowhere and it answers the same.
    let output = operation
        .call(json!({"duration": 0.2, "steps": 2}), ToolContext::new("quiet"))
        .await
        .unwrap();
    assert!(output.to_string().contains("completed"), "{output}");

    let client = McpClient::stdio(python_peer()).await.unwrap();
    assert_eq!(client.protocol_version().as_deref(), Some("2026-07-28"));
    let tools = client.tool_set().await.unwrap();
    let (output, heard) = with_progress(tools.get("count").unwrap().as_ref(), json!({"steps": 3})).await;
    assert_eq!(output, json!({"result": "counted"}));
    let messages: Vec<_> = heard.iter().map(|report| report.message.as_deref().unwrap()).collect();
    assert_eq!(messages, ["step 1", "step 2", "step 3"], "{heard:?}");
    assert_eq!(heard[2], ToolProgress::new(3.0).with_total(3.0).with_message("step 3"));
}

/// A server announces that its lists changed: the Python SDK's server over a `subscriptions/listen`
/// stream (2026-07-28), the reference server on its own (2025-11-25); the new lists are listed.
#[tokio::test]
async fn changed_lists_are_announced() {
    let client = McpClient::stdio(python_peer()).await.unwrap();
    let mut changes = client.changes().await.unwrap();
    assert!(
        client
            .tools()
            .await
            .unwrap()
            .iter()
            .all(|tool| tool.remote_name() != "late")
    );
    assert_eq!(
        call(&client, "add_tool", json!({})).await.unwrap(),
        json!({"result": "added"})
    );
    let announced = tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .unwrap();
    assert_eq!(announced, Some(McpChange::Tools));
    assert_eq!(
        call(&client, "late", json!({})).await.unwrap(),
        json!({"result": "late"})
    );
    // A second listener shares the stream.
    let mut again = client.changes().await.unwrap();
    client.close().await;
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), again.next())
            .await
            .unwrap(),
        None
    );

    let client = McpClient::stdio(everything()).await.unwrap();
    let mut changes = client.changes().await.unwrap();
    let before = client.resources().await.unwrap().len();
    // A gzipped copy of a data: URI (no network), kept as a resource of the session.
    let arguments =
        json!({"name": "hello.txt.gz", "data": "data:text/plain;base64,aGVsbG8=", "outputType": "resourceLink"});
    call(&client, "gzip-file-as-resource", arguments).await.unwrap();
    // The server also announces its tools once after connecting, which may come first.
    let resources_announced = async {
        while let Some(change) = changes.next().await {
            if change == McpChange::Resources {
                return true;
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), resources_announced)
            .await
            .unwrap()
    );
    assert_eq!(client.resources().await.unwrap().len(), before + 1);
}

/// A tool that never answers times out (the server is told to stop), a cancelled call ends at
/// once, and the connection serves the next call either way.
#[tokio::test]
async fn hanging_calls_time_out_and_cancelled_calls_end() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("cancelled");
    let mut server = python_peer();
    server.env("KAI_MCP_CANCEL_MARKER", &marker);
    // The server writes a line to the marker each time one of its calls is cancelled.
    let cancellations_seen = |count: usize| {
        let marker = marker.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let lines = std::fs::read_to_string(&marker).unwrap_or_default().lines().count();
                if lines >= count {
                    return lines;
                }
                assert!(
                    Instant::now() < deadline,
                    "the server saw {lines} cancellations, not {count}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let options = McpOptions::new().with_request_timeout(Duration::from_millis(1_500));
    let client = McpClient::stdio_with(server, options).await.unwrap();
    let started = Instant::now();
    let timed_out = call(&client, "hang", json!({})).await.unwrap_err();
    assert_eq!(
        timed_out,
        ToolError::Timeout {
            after: Duration::from_millis(1_500)
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(cancellations_seen(1).await, 1);

    let tools = client.tools().await.unwrap();
    let hang = tools.iter().find(|tool| tool.remote_name() == "hang").unwrap();
    let cancel = CancellationToken::new();
    let context = ToolContext::new("c").with_cancel(cancel.clone());
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    assert_eq!(hang.call(json!({}), context).await.unwrap_err(), ToolError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(1));
    canceller.await.unwrap();
    assert_eq!(cancellations_seen(2).await, 2);

    assert_eq!(
        call(&client, "shout", json!({"text": "still here"})).await.unwrap(),
        json!({"result": "STILL HERE"})
    );
}

/// Garbage in the protocol stream is skipped; a server that dies mid-call fails that call, and the
/// agent that made it goes on to answer.
#[tokio::test]
async fn garbage_and_a_crash_fail_calls_not_the_agent() {
    let options = McpOptions::new().with_request_timeout(Duration::from_secs(10));
    let client = McpClient::stdio_with(python_peer(), options).await.unwrap();
    let garbled = call(&client, "garble", json!({})).await;
    assert_eq!(garbled.unwrap(), json!({"result": "garbled"}));
    assert_eq!(
        call(&client, "multiply", json!({"a": 2, "b": 3})).await.unwrap(),
        json!({"result": 6})
    );

    let tools = client.tool_set().await.unwrap();
    let model = ScriptedModel::new()
        .tool_call("crash", json!({}))
        .tool_call("multiply", json!({"a": 2, "b": 3}))
        .text("The server went away.");
    let agent = Agent::builder(model).tools(&tools).build().unwrap();
    let output = agent.run("Crash it.").await.unwrap();
    assert_eq!(output.answer, "The server went away.");
    let results: Vec<_> = output.messages.iter().flat_map(|m| m.tool_results()).collect();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.is_error), "{results:?}");
    assert!(results[0].content.contains("python-peer"), "{}", results[0].content);
}

/// Programs that are not MCP servers fail to connect with a typed error, in bounded time.
#[tokio::test]
async fn programs_that_are_not_servers_fail_to_connect() {
    let missing = McpClient::stdio(Command::new("/nonexistent/mcp-server"))
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::Transport { .. }), "{missing:?}");

    let quits = McpClient::stdio(shell("exit 0")).await.unwrap_err();
    assert!(
        matches!(quits, Error::Transport { .. } | Error::Server { .. }),
        "{quits:?}"
    );

    let options = McpOptions::new().with_startup_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let chatter = McpClient::stdio_with(
        shell("while true; do echo 'not json'; sleep 0.1; done"),
        options.clone(),
    )
    .await
    .unwrap_err();
    assert!(matches!(chatter, Error::Timeout), "{chatter:?}");
    let silent = McpClient::stdio_with(shell("sleep 60"), options).await.unwrap_err();
    assert!(matches!(silent, Error::Timeout), "{silent:?}");
    assert!(started.elapsed() < Duration::from_secs(8));

    // A line longer than the transport's bound (16 MiB) is dropped, not buffered without end: the
    // server that follows it is spoken to.
    let huge_line = "head -c 40000000 /dev/zero | tr '\\0' 'x'; echo; exec";
    let client = McpClient::stdio(python_peer_in_shell(huge_line, "")).await.unwrap();
    assert_eq!(
        call(&client, "multiply", json!({"a": 3, "b": 4})).await.unwrap(),
        json!({"result": 12})
    );
}

/// Closing the connection stops the server's whole process group, not only the process started
/// (here a shell whose child is the server).
#[tokio::test]
async fn closing_stops_the_servers_whole_process_group() {
    let client = McpClient::stdio(python_peer_in_shell("", "; sleep 600")).await.unwrap();
    let pid = call(&client, "pid", json!({})).await.unwrap()["result"]
        .as_i64()
        .unwrap();
    let alive = |pid: i64| std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(pid));
    client.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the server (pid {pid}) outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the reference server over Streamable HTTP on `port` and waits until it listens.
async fn everything_over_http(port: u16) -> tokio::process::Child {
    let mut command = tokio::process::Command::from(everything());
    // The last argument picks the transport.
    let mut args: Vec<_> = command.as_std().get_args().map(|a| a.to_owned()).collect();
    args.pop();
    let program = command.as_std().get_program().to_owned();
    command = tokio::process::Command::new(program);
    command
        .args(args)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "server-everything did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

/// Over Streamable HTTP the reference server keeps a session (2025-11-25); its tools run. When it
/// restarts and forgets the session, the client starts a new one.
#[tokio::test]
async fn the_reference_server_over_http_and_its_forgotten_session() {
    let port = free_port();
    let mut server = everything_over_http(port).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let client = McpClient::http(&url).await.unwrap();
    assert_eq!(client.protocol_version().as_deref(), Some("2025-11-25"));
    assert_eq!(
        call(&client, "get-sum", json!({"a": 2, "b": 3})).await.unwrap(),
        json!("The sum of 2 and 3 is 5.")
    );

    server.kill().await.unwrap();
    server.wait().await.unwrap();
    let _restarted = everything_over_http(port).await;
    let tools = client.tools().await;
    assert!(tools.is_ok(), "{tools:?}");
    assert_eq!(
        call(&client, "get-sum", json!({"a": 4, "b": 5})).await.unwrap(),
        json!("The sum of 4 and 5 is 9.")
    );
}
