//! Configuration: formats, overrides, errors naming the path, secrets, hostile files, hot reload.
#![cfg(all(feature = "config", not(target_arch = "wasm32")))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use futures::StreamExt as _;
use kai_core::config::{ConfigEvent, ConfigFormat, ConfigWatcher, KaiConfig, SecretRef, StoreKind};
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Error, ToolSet, tool_fn};

const YAML: &str = r#"
agents:
  max_concurrent: 2
  timeout_ms: 60000
  definitions:
    support:
      provider: local
      instructions: You answer support questions.
      tools: [lookup]
      max_steps: 4
providers:
  local:
    kind: llamacpp
    model: qwen2.5-0.5b
    base_url: http://127.0.0.1:8080/v1
    rate_limit: {requests_per_minute: 60}
  openai:
    kind: openai
    model: gpt-4o-mini
    api_key: {env: OPENAI_API_KEY}
memory:
  store: embedded
  path: data/memory
  dimensions: 384
  embedding: {provider: local, model: bge-small}
monitoring:
  log_format: json
"#;

const JSON: &str = r#"{
  "agents": {"max_concurrent": 2, "timeout_ms": 60000, "definitions": {"support": {
    "provider": "local", "instructions": "You answer support questions.", "tools": ["lookup"], "max_steps": 4}}},
  "providers": {
    "local": {"kind": "llamacpp", "model": "qwen2.5-0.5b", "base_url": "http://127.0.0.1:8080/v1",
              "rate_limit": {"requests_per_minute": 60}},
    "openai": {"kind": "openai", "model": "gpt-4o-mini", "api_key": {"env": "OPENAI_API_KEY"}}},
  "memory": {"store": "embedded", "path": "data/memory", "dimensions": 384,
             "embedding": {"provider": "local", "model": "bge-small"}},
  "monitoring": {"log_format": "json"}
}"#;

const TOML: &str = r#"
[agents]
max_concurrent = 2
timeout_ms = 60000

[agents.definitions.support]
provider = "local"
instructions = "You answer support questions."
tools = ["lookup"]
max_steps = 4

[providers.local]
kind = "llamacpp"
model = "qwen2.5-0.5b"
base_url = "http://127.0.0.1:8080/v1"
rate_limit = { requests_per_minute = 60 }

[providers.openai]
kind = "openai"
model = "gpt-4o-mini"
api_key = { env = "OPENAI_API_KEY" }

[memory]
store = "embedded"
path = "data/memory"
dimensions = 384
embedding = { provider = "local", model = "bge-small" }

[monitoring]
log_format = "json"
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn invalid(result: Result<KaiConfig, Error>) -> (String, String) {
    match result {
        Err(Error::InvalidConfig { path, message }) => (path, message),
        other => panic!("not an invalid configuration: {other:?}"),
    }
}

#[test]
fn yaml_json_and_toml_say_the_same() {
    let yaml = KaiConfig::parse(YAML, ConfigFormat::Yaml, []).unwrap();
    assert_eq!(KaiConfig::parse(JSON, ConfigFormat::Json, []).unwrap(), yaml);
    assert_eq!(KaiConfig::parse(TOML, ConfigFormat::Toml, []).unwrap(), yaml);
    assert_eq!(yaml.agents.max_concurrent, 2);
    assert_eq!(yaml.agents.max_steps, 10, "an unset field keeps its default");
    assert_eq!(
        yaml.providers["openai"].api_key,
        Some(SecretRef::Env("OPENAI_API_KEY".into()))
    );
    assert_eq!(yaml.memory.as_ref().unwrap().store, StoreKind::Embedded);
    // An empty file is the default configuration.
    assert_eq!(
        KaiConfig::parse("", ConfigFormat::Yaml, []).unwrap(),
        KaiConfig::default()
    );
}

#[test]
fn kai_variables_override_the_file() {
    let config = KaiConfig::parse(
        YAML,
        ConfigFormat::Yaml,
        env(&[
            ("KAI_AGENTS__TIMEOUT_MS", "5000"),
            ("KAI_PROVIDERS__LOCAL__MODEL", "123"),
            ("KAI_PROVIDERS__LOCAL__RATE_LIMIT__TOKENS_PER_MINUTE", "9000"),
            ("KAI_MONITORING__LOG_LEVEL", "kai_core=debug,info"),
            ("KAI_AGENTS__DEFINITIONS__SUPPORT__TOOLS", r#"["lookup", "search"]"#),
            ("OTHER_VARIABLE", "ignored"),
            ("KAI_CACHE", "/var/cache/kai"),
            ("KAI_SOMETHING__ELSE", "not a section"),
        ]),
    )
    .unwrap();
    assert_eq!(config.agents.timeout_ms, Some(5000));
    // It replaces a string, so it stays one.
    assert_eq!(config.providers["local"].model, "123");
    assert_eq!(
        config.providers["local"].rate_limit.unwrap().tokens_per_minute,
        Some(9000)
    );
    assert_eq!(
        config.providers["local"].rate_limit.unwrap().requests_per_minute,
        Some(60)
    );
    assert_eq!(config.monitoring.log_level, "kai_core=debug,info");
    assert_eq!(config.agents.definitions["support"].tools, ["lookup", "search"]);

    let (path, message) = invalid(KaiConfig::parse(
        YAML,
        ConfigFormat::Yaml,
        env(&[("KAI_AGENTS__TIMEOUT_MS", "soon")]),
    ));
    assert_eq!(path, "agents.timeout_ms");
    assert!(message.contains("set by KAI_AGENTS__TIMEOUT_MS"), "{message}");
    let (path, _) = invalid(KaiConfig::parse(
        YAML,
        ConfigFormat::Yaml,
        env(&[("KAI_AGENTS____X", "1")]),
    ));
    assert_eq!(path, "KAI_AGENTS____X");
    let (path, message) = invalid(KaiConfig::parse(
        YAML,
        ConfigFormat::Yaml,
        env(&[("KAI_AGENTS__TIMEOUT", "1")]),
    ));
    assert_eq!(path, "agents.timeout");
    assert!(
        message.contains("unknown field") && message.contains("set by KAI_AGENTS__TIMEOUT"),
        "{message}"
    );
    // Names match case-insensitively; a provider made by a variable alone misses a field, said so.
    let capitals = "providers:\n  OpenAI: {kind: openai, model: gpt-4o}\n";
    let config = KaiConfig::parse(
        capitals,
        ConfigFormat::Yaml,
        env(&[("KAI_PROVIDERS__OPENAI__MODEL", "gpt-4.1")]),
    )
    .unwrap();
    assert_eq!(config.providers.len(), 1);
    assert_eq!(config.providers["OpenAI"].model, "gpt-4.1");
    let (path, message) = invalid(KaiConfig::parse(
        "",
        ConfigFormat::Yaml,
        env(&[("KAI_PROVIDERS__NEW__MODEL", "m")]),
    ));
    assert_eq!(path, "providers.new");
    assert!(
        message.contains("missing field `kind`") && message.contains("KAI_PROVIDERS__NEW__MODEL"),
        "{message}"
    );
    let (path, message) = invalid(KaiConfig::parse(
        "",
        ConfigFormat::Yaml,
        env(&[("KAI_AGENTS__MAX_STEPS", "0")]),
    ));
    assert_eq!(path, "agents.max_steps");
    assert!(message.contains("set by KAI_AGENTS__MAX_STEPS"), "{message}");
    // A section with every line under it commented out is an empty section.
    let config = KaiConfig::parse(
        "monitoring:\n  # log_level: debug\n",
        ConfigFormat::Yaml,
        env(&[("KAI_MONITORING__LOG_LEVEL", "warn")]),
    )
    .unwrap();
    assert_eq!(config.monitoring.log_level, "warn");
}

#[test]
fn errors_name_the_path() {
    let cases = [
        (
            "agents:\n  timeout_ms: soon\n",
            "agents.timeout_ms",
            "invalid type: string \"soon\", expected u64",
        ),
        (
            "agents:\n  timeoutms: 5\n",
            "agents.timeoutms",
            "unknown field `timeoutms`",
        ),
        (
            "providers:\n  local: {kind: x, model: n, timeout_ms: -1}\n",
            "providers.local.timeout_ms",
            "invalid value",
        ),
        ("agents: {max_steps: 1, max_steps: 2}\n", "", "duplicate"),
        (
            "providers:\n  local: {kind: x}\n",
            "providers.local",
            "missing field `model`",
        ),
        ("agents:\n  max_concurrent: 0\n", "agents.max_concurrent", "at least 1"),
        (
            "agents:\n  definitions:\n    a: {provider: nowhere}\n",
            "agents.definitions.a.provider",
            "no provider is named \"nowhere\"",
        ),
        (
            "memory: {store: embedded, dimensions: 8}\n",
            "memory.path",
            "needs a directory",
        ),
        (
            "memory: {store: postgres, dimensions: 0, url: {env: DB}}\n",
            "memory.dimensions",
            "1 to 65536",
        ),
        (
            "providers:\n  p: {kind: openai, model: m, base_url: ftp://x}\n",
            "providers.p.base_url",
            "http",
        ),
        ("agents: [1, 2\n", "", ""),
    ];
    for (text, expected_path, expected_message) in cases {
        let (path, message) = invalid(KaiConfig::parse(text, ConfigFormat::Yaml, []));
        assert_eq!(path, expected_path, "{text}: {message}");
        assert!(message.contains(expected_message), "{text}: {message}");
    }
    let shown = KaiConfig::parse("agents:\n  timeout_ms: soon\n", ConfigFormat::Yaml, [])
        .unwrap_err()
        .to_string();
    assert!(shown.starts_with("agents.timeout_ms: invalid type"), "{shown}");
}

#[test]
fn secrets_written_in_the_configuration_are_refused_and_not_repeated() {
    for text in [
        "providers:\n  o: {kind: openai, model: m, api_key: sk-live-abcdef}\n",
        "providers:\n  o: {kind: openai, model: m, api_key: {value: sk-live-abcdef}}\n",
        "memory: {store: postgres, dimensions: 8, url: 'postgres://u:sk-live-abcdef@db/x'}\n",
    ] {
        let error = KaiConfig::parse(text, ConfigFormat::Yaml, []).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(shown.contains("referenced"), "{shown}");
    }
    // Nor in JSON or TOML, where a syntax error on the secret's line does not quote the line.
    let json = r#"{"providers": {"o": {"kind": "openai", "model": "m", "api_key": "sk-live-abcdef"}}}"#;
    let toml_typed = "[providers.o]\nkind = \"openai\"\nmodel = \"m\"\napi_key = \"sk-live-abcdef\"\n";
    let toml_broken = "[providers.o]\nkind = \"openai\"\napi_key = sk-live-abcdef\n";
    for (text, format) in [
        (json, ConfigFormat::Json),
        (toml_typed, ConfigFormat::Toml),
        (toml_broken, ConfigFormat::Toml),
    ] {
        let error = KaiConfig::parse(text, format, []).unwrap_err();
        assert!(!format!("{error} {error:?}").contains("sk-live"), "{format:?}: {error}");
    }
    let (_, message) = invalid(KaiConfig::parse(toml_broken, ConfigFormat::Toml, []));
    assert!(message.contains("line 3"), "{message}");
    // Nor in a base URL, which is not repeated either; keys go over https, or to this machine only.
    for (url, with_key) in [
        ("https://user:sk-live-abcdef@models.example/v1", false),
        ("https://models.example/v1?api-key=sk-live-abcdef", false),
        ("http://models.example/v1", true),
    ] {
        let key = if with_key { ", api_key: {env: KEY}" } else { "" };
        let text = format!("providers:\n  o: {{kind: openai, model: m, base_url: '{url}'{key}}}\n");
        let (path, message) = invalid(KaiConfig::parse(&text, ConfigFormat::Yaml, []));
        assert_eq!(path, "providers.o.base_url");
        assert!(
            !message.contains("sk-live") && !message.contains("models.example"),
            "{message}"
        );
    }
    let loopback =
        "providers:\n  o: {kind: openai, model: m, base_url: 'http://127.0.0.1:8080/v1', api_key: {env: KEY}}\n";
    KaiConfig::parse(loopback, ConfigFormat::Yaml, []).unwrap();
    // Nor through an override.
    let error = KaiConfig::parse(
        "providers:\n  o: {kind: openai, model: m}\n",
        ConfigFormat::Yaml,
        env(&[("KAI_PROVIDERS__O__API_KEY", "sk-live-abcdef")]),
    )
    .unwrap_err();
    assert!(!format!("{error:?}").contains("sk-live"), "{error:?}");
}

#[test]
fn hostile_files_are_refused_without_blowing_up() {
    // A billion laughs: nine levels of nine aliases.
    let mut bomb = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for level in 1..9u8 {
        let (name, previous) = ((b'a' + level) as char, (b'a' + level - 1) as char);
        let refs = vec![format!("*{previous}"); 9].join(",");
        bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    assert!(KaiConfig::parse(&bomb, ConfigFormat::Yaml, []).is_err());
    // Deep nesting inside a section that takes a list: refused by the parsers' depth limits, without
    // a stack overflow.
    let depth = 100_000;
    let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let deep_yaml = format!("agents:\n  definitions:\n    a: {{provider: p, tools: {nested}}}\n");
    let deep_json = format!(r#"{{"agents": {{"definitions": {{"a": {{"provider": "p", "tools": {nested}}}}}}}}}"#);
    let deep_toml = format!("[agents.definitions.a]\nprovider = \"p\"\ntools = {nested}\n");
    for (text, format) in [
        (deep_yaml, ConfigFormat::Yaml),
        (deep_json, ConfigFormat::Json),
        (deep_toml, ConfigFormat::Toml),
    ] {
        let (path, message) = invalid(KaiConfig::parse(&text, format, []));
        assert_eq!(path, "", "{format:?}: {message}");
    }
    let directory = tempfile::tempdir().unwrap();
    let big = directory.path().join("kai.yaml");
    std::fs::File::create(&big).unwrap().set_len(2 << 20).unwrap();
    assert!(matches!(KaiConfig::load(&big), Err(Error::Config { .. })));
    let ini = directory.path().join("kai.ini");
    std::fs::write(&ini, "agents:\n  max_steps: 3\n").unwrap();
    assert!(matches!(KaiConfig::load(&ini), Err(Error::Config { message }) if message.contains(".toml")));
    let latin1 = directory.path().join("latin1.yaml");
    std::fs::write(&latin1, b"monitoring: {log_level: caf\xe9}\n").unwrap();
    assert!(matches!(KaiConfig::load(&latin1), Err(Error::Config { message }) if message.contains("UTF-8")));
    let fifo = directory.path().join("fifo.yaml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    assert!(matches!(KaiConfig::load(&fifo), Err(Error::Config { .. })));
    // Duplicate keys are refused in every format (serde_json alone keeps the last).
    for (text, format) in [
        ("agents: {max_steps: 1, max_steps: 2}\n", ConfigFormat::Yaml),
        (r#"{"agents": {"max_steps": 1, "max_steps": 2}}"#, ConfigFormat::Json),
        ("[agents]\nmax_steps = 1\nmax_steps = 2\n", ConfigFormat::Toml),
    ] {
        let (_, message) = invalid(KaiConfig::parse(text, format, []));
        assert!(message.to_lowercase().contains("duplicate"), "{format:?}: {message}");
    }
}

#[tokio::test]
async fn an_agent_is_built_from_its_definition() {
    let config = KaiConfig::parse(YAML, ConfigFormat::Yaml, []).unwrap();
    let definition = &config.agents.definitions["support"];
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Query {
        topic: String,
    }
    let mut tools = ToolSet::new();
    tools
        .add(tool_fn("lookup", "Looks up.", |q: Query| async move {
            Ok(format!("about {}", q.topic))
        }))
        .unwrap();
    tools
        .add(tool_fn("delete", "Deletes.", |_: Query| async move { Ok("gone") }))
        .unwrap();
    let model = ScriptedModel::new().text("Hello.");
    let agent = definition
        .apply(Agent::builder(model.clone()), &config.agents, &tools)
        .unwrap()
        .build()
        .unwrap();
    agent.run("hi").await.unwrap();
    let request = &model.requests()[0];
    let offered: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(offered, ["lookup"]);
    assert_eq!(request.messages[0].text(), "You answer support questions.");
    // A tool the program does not offer is a configuration error.
    let mut wants_more = definition.clone();
    wants_more.tools.push("search".into());
    assert!(matches!(
        wants_more.apply(Agent::builder(ScriptedModel::new()), &config.agents, &tools),
        Err(Error::Config { .. })
    ));
}

async fn next_event(events: &mut futures::channel::mpsc::UnboundedReceiver<ConfigEvent>) -> ConfigEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no configuration event within 10 s")
        .expect("the watcher stopped")
}

#[tokio::test]
async fn edits_are_reloaded_and_invalid_ones_keep_the_previous_configuration() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("kai.yaml");
    std::fs::write(&path, "agents:\n  max_steps: 3\n").unwrap();
    let watcher = ConfigWatcher::watch(&path).unwrap();
    assert_eq!(watcher.current().agents.max_steps, 3);
    let mut events = watcher.subscribe();

    // An edit in place.
    std::fs::write(&path, "agents:\n  max_steps: 5\n").unwrap();
    let ConfigEvent::Reloaded { config } = next_event(&mut events).await else {
        panic!("not reloaded");
    };
    assert_eq!(config.agents.max_steps, 5);
    assert_eq!(watcher.current().agents.max_steps, 5);

    // An invalid edit: reported, and the previous configuration stays.
    std::fs::write(&path, "agents:\n  max_steps: many\n").unwrap();
    let ConfigEvent::Rejected { error } = next_event(&mut events).await else {
        panic!("not rejected");
    };
    assert!(
        matches!(&error, Error::InvalidConfig { path, .. } if path == "agents.max_steps"),
        "{error:?}"
    );
    assert_eq!(watcher.current().agents.max_steps, 5);
    // Told once: reading the file does not set off another reload (a watcher that heard its own
    // reads would reject the same file every 100 ms).
    assert!(
        tokio::time::timeout(Duration::from_millis(600), events.next())
            .await
            .is_err(),
        "the same rejection again"
    );

    // An editor's save: a new file renamed over the old one.
    let temporary = directory.path().join(".kai.yaml.swp");
    std::fs::write(&temporary, "agents:\n  max_steps: 7\n").unwrap();
    std::fs::rename(&temporary, &path).unwrap();
    let ConfigEvent::Reloaded { config } = next_event(&mut events).await else {
        panic!("not reloaded after a rename");
    };
    assert_eq!(config.agents.max_steps, 7);

    // Other files in the directory, and a write of the same text, change nothing.
    std::fs::write(directory.path().join("other.yaml"), "x").unwrap();
    std::fs::write(&path, "agents:\n  max_steps: 7\n").unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), events.next())
            .await
            .is_err(),
        "an event without a change"
    );
    // An invalid file cannot be watched to begin with.
    std::fs::write(directory.path().join("bad.yaml"), "agents: {max_steps: x}").unwrap();
    assert!(ConfigWatcher::watch(directory.path().join("bad.yaml")).is_err());
}

#[tokio::test]
async fn plans_run_as_many_subtasks_at_once_as_configured() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use kai_core::plan::{Plan, PlanExecutor, PlanState, Subtask};

    let config = KaiConfig::parse("agents: {max_concurrent: 2}", ConfigFormat::Yaml, []).unwrap();
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let work = {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        kai_core::dynamic_tool("work", "Works.", serde_json::json!({"type": "object"}), move |_, _| {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            async move {
                most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(serde_json::json!("done"))
            }
        })
        .unwrap()
    };
    let work: Arc<dyn kai_core::Tool> = Arc::new(work);
    let worker = |i: usize| {
        let model = ScriptedModel::new()
            .tool_call("work", serde_json::json!({}))
            .text(format!("r{i}"));
        Agent::builder(model).shared_tool(Arc::clone(&work)).build().unwrap()
    };
    let mut builder = PlanExecutor::builder(worker(0)).configured(&config.agents);
    let mut subtasks = vec![Subtask::new("s0", "Work.")];
    for i in 1..5 {
        builder = builder.worker(format!("w{i}"), "works", worker(i));
        subtasks.push(Subtask::new(format!("s{i}"), "Work.").on(format!("w{i}")));
    }
    let output = builder
        .build()
        .unwrap()
        .resume(PlanState::with_plan("g", Plan::new(subtasks)))
        .await
        .unwrap();
    assert_eq!(output.results.len(), 5);
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[test]
fn relative_paths_are_taken_from_the_configuration_files_directory_and_links_are_followed() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("kai.yaml"),
        "memory: {store: embedded, path: memory, dimensions: 8}\nproviders:\n  o: {kind: openai, model: m, api_key: {file: secrets/key}}\n",
    )
    .unwrap();
    // As Kubernetes mounts a ConfigMap: the file is a link into a directory of its own.
    let link = directory.path().join("kai.yaml");
    std::os::unix::fs::symlink(data.join("kai.yaml"), &link).unwrap();
    let config = KaiConfig::load(&link).unwrap();
    assert_eq!(config.memory.unwrap().path.unwrap(), directory.path().join("memory"));
    assert_eq!(
        config.providers["o"].api_key,
        Some(SecretRef::File(directory.path().join("secrets/key")))
    );
}
