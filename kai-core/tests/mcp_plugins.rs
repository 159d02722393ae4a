//! Plugins: MCP servers declared in a configuration file (here servers written with the official
//! Python SDK, `tests/mcp/python_server.py`), supervised, restarted and reloaded.
#![cfg(all(feature = "mcp", not(target_arch = "wasm32")))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kai_core::mcp::{McpOptions, PluginHost, PluginState, PluginStatus};
use kai_core::{Error, ToolContext};
use serde_json::{Value, json};

#[path = "mcp/peers.rs"]
mod peers;

/// A configuration declaring the Python SDK's test server under each of `names`, and `extra`.
fn config(names: &[&str], extra: Value) -> String {
    let python = peers::peer("KAI_MCP_PYTHON", "python");
    let script = format!("{}/tests/mcp/python_server.py", env!("CARGO_MANIFEST_DIR"));
    let mut servers = serde_json::Map::new();
    for name in names {
        servers.insert((*name).to_owned(), json!({"command": python, "args": [script]}));
    }
    if let Value::Object(extra) = extra {
        servers.extend(extra);
    }
    json!({ "mcpServers": servers }).to_string()
}

/// Waits up to 20 s for the host's status to satisfy `condition`.
async fn until(host: &PluginHost, what: &str, condition: impl Fn(&[PluginStatus]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition(&host.status()) {
        assert!(Instant::now() < deadline, "never {what}: {:?}", host.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(host: &PluginHost, tool: &str, arguments: Value) -> Result<Value, kai_core::ToolError> {
    let tools = host.tool_set();
    let tool = Arc::clone(tools.get(tool).unwrap_or_else(|| panic!("no tool {tool} in {tools:?}")));
    tool.call(arguments, ToolContext::new("plugin")).await
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_start_restart_and_reload_without_disturbing_calls_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.json");
    // One plugin that works and one whose program does not exist.
    write(
        &path,
        &config(&["py"], json!({"broken": {"command": "/nonexistent/mcp-server"}})),
    );
    let host = PluginHost::start(&path, McpOptions::new(), Duration::from_millis(100))
        .await
        .unwrap();
    let status = host.status();
    assert_eq!(status.len(), 2);
    let broken = status.iter().find(|s| s.name == "broken").unwrap();
    assert_eq!(broken.state, PluginState::Restarting);
    assert!(
        broken.last_error.as_deref().unwrap().contains("could not start"),
        "{broken:?}"
    );
    let py = status.iter().find(|s| s.name == "py").unwrap();
    assert_eq!(py.state, PluginState::Running);
    assert!(py.tools > 5);
    assert_eq!(
        call(&host, "py_multiply", json!({"a": 6, "b": 7})).await.unwrap(),
        json!({"result": 42})
    );

    // A plugin that dies is started again after a backoff, and its tools come back.
    assert!(call(&host, "py_crash", json!({})).await.is_err());
    until(&host, "restarted", |status| {
        status
            .iter()
            .any(|s| s.name == "py" && s.restarts == 1 && s.state == PluginState::Running)
    })
    .await;
    assert_eq!(
        call(&host, "py_multiply", json!({"a": 2, "b": 2})).await.unwrap(),
        json!({"result": 4})
    );

    // The file changes while a call runs: `py` is unloaded, `other` loaded, and the call finishes;
    // then, its tools dropped, `py`'s process ends.
    let py_pid = call(&host, "py_pid", json!({})).await.unwrap()["result"]
        .as_i64()
        .unwrap();
    let tools = host.tool_set();
    let slow = Arc::clone(tools.get("py_slow").unwrap());
    let in_flight = tokio::spawn(async move { slow.call(json!({}), ToolContext::new("slow")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(&path, &config(&["other"], json!({})));
    until(&host, "reloaded", |status| {
        status.len() == 1 && status[0].name == "other" && status[0].state == PluginState::Running
    })
    .await;
    assert_eq!(in_flight.await.unwrap().unwrap(), json!({"result": "done"}));
    drop(tools);
    ends(py_pid).await;
    let names: Vec<String> = host.tool_set().names().map(str::to_owned).collect();
    assert!(names.iter().all(|name| name.starts_with("other_")), "{names:?}");
    assert_eq!(
        call(&host, "other_shout", json!({"text": "hi"})).await.unwrap(),
        json!({"result": "HI"})
    );

    // A file that does not parse is refused, and the plugins keep running as they are.
    write(&path, "{ \"mcpServers\": ");
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.config_error().is_none() {
        assert!(Instant::now() < deadline, "the broken file was not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(host.status()[0].state, PluginState::Running);
    assert_eq!(
        call(&host, "other_multiply", json!({"a": 1, "b": 1})).await.unwrap(),
        json!({"result": 1})
    );
    write(&path, &config(&["other"], json!({})));
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.config_error().is_some() {
        assert!(Instant::now() < deadline, "the mended file was not taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Dropping the host stops its plugins.
    let other_pid = call(&host, "other_pid", json!({})).await.unwrap()["result"]
        .as_i64()
        .unwrap();
    drop(host);
    ends(other_pid).await;
}

/// A plugin that hangs with its connection open stops answering pings, and is started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_stops_answering_is_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.json");
    write(&path, &config(&["py"], json!({})));
    // Checked every 100 ms: pinged every second.
    let host = PluginHost::start(&path, McpOptions::new(), Duration::from_millis(100))
        .await
        .unwrap();
    let frozen = call(&host, "py_pid", json!({})).await.unwrap()["result"]
        .as_i64()
        .unwrap();
    let tools = host.tool_set();
    let freeze = Arc::clone(tools.get("py_freeze").unwrap());
    let hung = tokio::spawn(async move { freeze.call(json!({}), ToolContext::new("freeze")).await });
    until(&host, "restarted", |status| {
        status[0].restarts == 1 && status[0].state == PluginState::Running
    })
    .await;
    assert!(host.status()[0].last_error.as_deref().unwrap().contains("pings"));
    assert_eq!(
        call(&host, "py_multiply", json!({"a": 3, "b": 3})).await.unwrap(),
        json!({"result": 9})
    );
    // The frozen process goes once the last call on it is dropped.
    hung.abort();
    drop(tools);
    ends(frozen).await;
}

/// Waits up to 10 s for the process `pid` to end.
async fn ends(pid: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "process {pid} outlived its plugin");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Secrets in a plugin's entry (a URL's user, password and query, a bearer token) stay out of what
/// the host says about it; the host's own token and environment do not reach plugins.
#[tokio::test]
async fn secrets_stay_out_of_status_and_away_from_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.json");
    let unreachable =
        json!({"remote": {"url": "http://user:hunter2@127.0.0.1:9/mcp?key=sekrit", "bearerToken": "tok-123"}});
    write(&path, &config(&["py"], unreachable));
    let options = McpOptions::new()
        .with_bearer_token("host-token")
        .with_startup_timeout(Duration::from_secs(5));
    let host = PluginHost::start(&path, options, Duration::from_millis(100))
        .await
        .unwrap();
    let printed = format!("{host:?} {:?}", host.status());
    for secret in ["hunter2", "sekrit", "tok-123", "host-token"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    let remote = host.status().into_iter().find(|s| s.name == "remote").unwrap();
    assert_eq!(remote.state, PluginState::Restarting);
    // The plugin's environment is PATH, HOME and the like, not the host's whole environment.
    let environment = call(&host, "py_environment", json!({})).await.unwrap()["result"].clone();
    let keys: Vec<&str> = environment
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap())
        .collect();
    assert!(keys.contains(&"PATH"), "{keys:?}");
    assert!(!keys.contains(&"CARGO_MANIFEST_DIR"), "{keys:?}");
}

#[tokio::test]
async fn configurations_that_cannot_be_taken_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.json");
    let start = |path: std::path::PathBuf| async move {
        PluginHost::start(path, McpOptions::new(), Duration::from_secs(1)).await
    };
    assert!(matches!(
        start(dir.path().join("missing.json")).await,
        Err(Error::Config { .. })
    ));
    write(&path, "[1, 2, 3]");
    assert!(matches!(start(path.clone()).await, Err(Error::Config { .. })));
    for name in ["has space", "gh_enterprise"] {
        write(&path, &config(&[name], json!({})));
        let refused = start(path.clone()).await.unwrap_err();
        assert!(refused.to_string().contains(name), "{refused}");
    }
    // A directory, or anything else that is not a regular file, is not read.
    assert!(matches!(
        start(dir.path().to_path_buf()).await,
        Err(Error::Config { .. })
    ));
    // Over a mebibyte is not read.
    write(&path, &" ".repeat((1 << 20) + 1));
    let refused = start(path.clone()).await.unwrap_err();
    assert!(refused.to_string().contains("bytes"), "{refused}");
}
