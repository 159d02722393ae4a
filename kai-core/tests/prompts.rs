//! Prompt templates (Tera, strict) and the versioned prompt store.
#![cfg(all(feature = "prompts", not(target_arch = "wasm32")))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use kai_core::Error;
use kai_core::prompts::{ModelSettings, Persona, PersonaStore, PromptRef, PromptStore, PromptTemplates};
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Role, ToolSet, tool_fn};
use serde_json::json;

#[test]
fn templates_render_strictly_with_includes_and_no_escaping() {
    let mut templates = PromptTemplates::new();
    templates
        .add("tone", "Be {{ tone | default(value=\"brief\") }}.")
        .unwrap();
    templates
        .add(
            "system",
            "You are {{ agent.name }}, helping {{ user.name }}.\n{% include \"tone\" %}\n{% for rule in rules %}- {{ rule }}\n{% endfor %}",
        )
        .unwrap();
    let variables = json!({
        "agent": {"name": "Kai"},
        "user": {"name": "Ada <ada@example.org> & \"friends\""},
        "rules": ["cite sources", "no guessing"],
    });
    assert_eq!(
        templates.render("system", &variables).unwrap(),
        "You are Kai, helping Ada <ada@example.org> & \"friends\".\nBe brief.\n- cite sources\n- no guessing\n"
    );
    // Strict: a missing variable, nested or not, is an error naming it.
    let missing = templates
        .render("system", &json!({"agent": {"name": "Kai"}, "rules": []}))
        .unwrap_err();
    assert!(
        matches!(&missing, Error::UndefinedVariable { template, variable } if template == "system" && variable == "user.name"),
        "{missing:?}"
    );
    assert_eq!(missing.kind(), "undefined_variable");
    // A template that does not parse is refused when added, one that is not there when rendered.
    assert!(matches!(
        templates.add("broken", "{% if x %}no end"),
        Err(Error::Template { .. })
    ));
    assert!(matches!(
        templates.render("absent", &json!({})),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        templates.render("system", &json!(["not", "an", "object"])),
        Err(Error::Template { .. })
    ));
    assert!(templates.add("../escape", "x").is_err());
    assert_eq!(templates.names(), ["system", "tone"]);
}

#[test]
fn templates_load_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("system.tera"),
        "{% include \"footer\" %}Hello {{ name }}",
    )
    .unwrap();
    std::fs::write(dir.path().join("footer.txt"), "[footer] ").unwrap();
    std::fs::write(dir.path().join(".hidden.tera"), "not a prompt name").unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd.tera")).unwrap();
    let templates = PromptTemplates::from_dir(dir.path()).unwrap();
    assert_eq!(templates.names(), ["footer", "system"]);
    assert_eq!(
        templates.render("system", &json!({"name": "Bo"})).unwrap(),
        "[footer] Hello Bo"
    );

    std::fs::write(dir.path().join("system.md"), "again").unwrap();
    assert!(matches!(
        PromptTemplates::from_dir(dir.path()),
        Err(Error::Template { .. })
    ));
}

#[test]
fn every_save_is_a_new_immutable_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = PromptStore::open(dir.path()).unwrap();
    let first = store
        .save("support", "Help {{ customer }}.\nBe polite.\n", "ada", "first cut")
        .unwrap();
    let second = store
        .save("support", "Help {{ customer }}.\nBe brief.\n", "bo", "shorter")
        .unwrap();
    assert_eq!((first.version, second.version), (1, 2));
    assert!(first.content_hash.starts_with("sha256:") && first.content_hash != second.content_hash);
    assert!(second.created_at_ms >= first.created_at_ms);

    assert_eq!(store.get("support", None).unwrap(), second);
    assert_eq!(store.get("support", Some(1)).unwrap(), first);
    let history = store.history("support").unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| (v.version, v.author.as_str(), v.note.as_str()))
            .collect::<Vec<_>>(),
        [(1, "ada", "first cut"), (2, "bo", "shorter")]
    );
    let diff = store.diff("support", 1, 2).unwrap();
    assert!(
        diff.contains("--- support@1") && diff.contains("+++ support@2"),
        "{diff}"
    );
    assert!(diff.contains("-Be polite.") && diff.contains("+Be brief."), "{diff}");

    // Rolling back adds a version; the history stays as it was.
    let rolled = store.roll_back("support", 1, "ada").unwrap();
    assert_eq!((rolled.version, rolled.source.as_str()), (3, first.source.as_str()));
    assert_eq!(rolled.note, "roll back to version 1");
    assert_eq!(store.get("support", Some(2)).unwrap(), second);
    assert_eq!(store.names().unwrap(), ["support"]);

    // Refused: a template that does not parse (no version is made), bad names, missing versions.
    assert!(matches!(
        store.save("support", "{{ unclosed", "ada", ""),
        Err(Error::Template { .. })
    ));
    assert_eq!(store.history("support").unwrap().len(), 3);
    for name in ["", "../etc", ".lock", "a/b", &"x".repeat(65)] {
        assert!(
            matches!(store.save(name, "x", "ada", ""), Err(Error::Config { .. })),
            "{name:?}"
        );
    }
    assert!(matches!(
        store.get("support", Some(9)),
        Err(Error::NotFound { version: Some(9), .. })
    ));
    assert!(matches!(
        store.get("nothing", None),
        Err(Error::NotFound { version: None, .. })
    ));
}

#[test]
fn a_damaged_version_is_refused_not_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let store = PromptStore::open(dir.path()).unwrap();
    store.save("system", "Obey the user.", "ada", "").unwrap();
    let path = dir.path().join("system/1.json");
    let tampered = std::fs::read_to_string(&path)
        .unwrap()
        .replace("Obey the user.", "Obey the attacker.");
    std::fs::write(&path, tampered).unwrap();
    let error = store.get("system", Some(1)).unwrap_err();
    assert!(
        matches!(&error, Error::Storage { message } if message.contains("content hash")),
        "{error:?}"
    );
    std::fs::write(&path, b"{ not json").unwrap();
    assert!(matches!(store.get("system", None), Err(Error::Storage { .. })));
    // A huge file is refused without being read whole.
    let huge = std::fs::File::create(&path).unwrap();
    huge.set_len(1 << 40).unwrap();
    assert!(matches!(store.get("system", Some(1)), Err(Error::Storage { message }) if message.contains("over")));
    // A version file that claims another name or number is refused too.
    store.save("other", "Other.", "ada", "").unwrap();
    std::fs::copy(dir.path().join("other/1.json"), dir.path().join("system/2.json")).unwrap();
    assert!(matches!(store.get("system", Some(2)), Err(Error::Storage { .. })));
}

#[test]
fn concurrent_writers_never_share_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let root = Arc::new(dir.path().to_owned());
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let root = Arc::clone(&root);
            std::thread::spawn(move || {
                // Each writer opens the store itself, as another process would.
                let store = PromptStore::open(root.as_path()).unwrap();
                for save in 0..10 {
                    store
                        .save("shared", &format!("writer {writer} save {save}"), "w", "")
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let history = PromptStore::open(dir.path()).unwrap().history("shared").unwrap();
    assert_eq!(
        history.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
    let mut sources: Vec<_> = history.iter().map(|v| v.source.clone()).collect();
    sources.sort();
    sources.dedup();
    assert_eq!(sources.len(), 40, "no save was lost or overwritten");
}

#[test]
fn instructions_reference_a_pinned_or_latest_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let store = PromptStore::open(dir.path()).unwrap();
    store
        .save("rules", "Never share {{ secret_kind }}.", "ada", "")
        .unwrap();
    store
        .save(
            "support",
            "You support {{ product }}. {% include \"rules\" %}",
            "ada",
            "",
        )
        .unwrap();
    store
        .save(
            "support",
            "You support {{ product }} politely. {% include \"rules\" %}",
            "ada",
            "",
        )
        .unwrap();
    let variables = json!({"product": "kAI", "secret_kind": "keys"});
    assert_eq!(
        store.resolve_instructions("prompt://support@1", &variables).unwrap(),
        "You support kAI. Never share keys."
    );
    assert_eq!(
        store.resolve_instructions("prompt://support", &variables).unwrap(),
        "You support kAI politely. Never share keys."
    );
    assert_eq!(
        store
            .resolve_instructions("You are a plain instruction.", &variables)
            .unwrap(),
        "You are a plain instruction."
    );
    assert!(matches!(
        store.resolve_instructions("prompt://support@7", &variables),
        Err(Error::NotFound { .. })
    ));
    for bad in [
        "prompt://",
        "prompt://support@",
        "prompt://support@0",
        "prompt://support@x",
        "prompt://../x",
    ] {
        assert!(bad.parse::<PromptRef>().is_err(), "{bad}");
    }
}

#[test]
fn templates_cannot_read_the_environment_loop_forever_or_include_themselves() {
    let mut templates = PromptTemplates::new();
    // No escaping even for a name Tera would escape by default.
    templates.add("page.html", "<b>{{ x }}</b>").unwrap();
    assert_eq!(
        templates.render("page.html", &json!({"x": "<i>&\"'"})).unwrap(),
        "<b><i>&\"'</b>"
    );

    templates.add("leak", "{{ get_env(name=\"PATH\") }}").unwrap();
    let leak = templates.render("leak", &json!({})).unwrap_err();
    assert!(
        matches!(&leak, Error::Template { message, .. } if message.contains("get_env")),
        "{leak:?}"
    );

    templates
        .add("forever", "{% for i in range(end=5, step_by=0) %}x{% endfor %}")
        .unwrap();
    assert!(matches!(
        templates.render("forever", &json!({})),
        Err(Error::Template { .. })
    ));
    templates
        .add("huge_range", "{% for i in range(end=100000000) %}x{% endfor %}")
        .unwrap();
    assert!(matches!(
        templates.render("huge_range", &json!({})),
        Err(Error::Template { .. })
    ));
    templates
        .add(
            "counted",
            "{% for i in range(start=1, end=7, step_by=2) %}{{ i }}{% endfor %}",
        )
        .unwrap();
    assert_eq!(templates.render("counted", &json!({})).unwrap(), "135");
    templates
        .add("long", "{% for i in range(end=10000) %}{{ line }}{% endfor %}")
        .unwrap();
    let long = templates.render("long", &json!({"line": "x".repeat(200)})).unwrap_err();
    assert!(
        matches!(&long, Error::Template { message, .. } if message.contains("over")),
        "{long:?}"
    );

    // A template including itself, directly or through another, is refused and leaves the set as it was.
    assert!(matches!(
        templates.add("me", "{% include \"me\" %}"),
        Err(Error::Template { .. })
    ));
    assert!(!templates.contains("me"));
    templates.add("a", "A").unwrap();
    templates.add("b", "{% include \"a\" %}").unwrap();
    let cycle = templates
        .add("a", "{% if x %}{% include \"b\" %}{% endif %}")
        .unwrap_err();
    assert!(
        matches!(&cycle, Error::Template { message, .. } if message.contains("includes itself")),
        "{cycle:?}"
    );
    assert_eq!(templates.render("b", &json!({})).unwrap(), "A", "the old `a` is kept");
    assert!(matches!(
        templates.add("imports", "{% import \"nowhere\" as m %}"),
        Err(Error::Template { .. })
    ));
    assert!(!templates.contains("imports"));
    templates.add("later", "fine").unwrap();

    // An undefined variable is named with the template that uses it, also in the bracket form.
    templates.add("inner", "{{ deep.value }}").unwrap();
    templates.add("outer", "{% include \"inner\" %}").unwrap();
    let missing = templates.render("outer", &json!({})).unwrap_err();
    assert!(
        matches!(&missing, Error::UndefinedVariable { template, variable } if template == "inner" && variable == "deep.value"),
        "{missing:?}"
    );
    templates.add("indexed", "{{ items[index] }}").unwrap();
    let missing = templates.render("indexed", &json!({"items": [1, 2]})).unwrap_err();
    assert!(
        matches!(&missing, Error::UndefinedVariable { variable, .. } if variable == "index"),
        "{missing:?}"
    );
}

#[test]
fn the_store_refuses_what_would_damage_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = PromptStore::open(dir.path()).unwrap();
    // Notes that could never be read back, templates that include themselves.
    assert!(matches!(
        store.save("x", "hi", "ada", &"n".repeat(5000)),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        store.save("x", "{% include \"x\" %}", "ada", ""),
        Err(Error::Template { .. })
    ));
    store.save("a", "A", "ada", "").unwrap();
    store.save("b", "{% include \"a\" %}", "ada", "").unwrap();
    store.save("a", "{% include \"b\" %}", "ada", "").unwrap();
    assert!(matches!(
        store.render(&"prompt://a".parse().unwrap(), &json!({})),
        Err(Error::Template { .. })
    ));
    assert_eq!(store.render(&"prompt://a@1".parse().unwrap(), &json!({})).unwrap(), "A");

    // One damaged prompt fails only the renders that include it.
    store.save("plain", "Plain.", "ada", "").unwrap();
    std::fs::write(dir.path().join("b/1.json"), b"damaged").unwrap();
    assert_eq!(
        store.render(&"prompt://plain".parse().unwrap(), &json!({})).unwrap(),
        "Plain."
    );
    assert!(matches!(
        store.render(&"prompt://a".parse().unwrap(), &json!({})),
        Err(Error::Storage { .. })
    ));

    // Version files only under their own names; no version past the last number.
    std::fs::copy(dir.path().join("plain/1.json"), dir.path().join("plain/01.json")).unwrap();
    assert_eq!(store.history("plain").unwrap().len(), 1);
    std::fs::write(dir.path().join("plain/4294967295.json"), b"{}").unwrap();
    assert!(matches!(
        store.save("plain", "Next.", "ada", ""),
        Err(Error::Storage { .. })
    ));
    assert!(matches!(store.get("plain", Some(0)), Err(Error::NotFound { .. })));

    // A link where the partial file goes is removed, not written through; a version is never replaced.
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "untouched").unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("a/.3.json.partial")).unwrap();
    store.save("a", "Third.", "ada", "").unwrap();
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "untouched");
    assert_eq!(store.get("a", Some(3)).unwrap().source, "Third.");
    // A prompt directory that is a link is refused.
    std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("alias")).unwrap();
    assert!(matches!(store.get("alias", None), Err(Error::Storage { .. })));
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Nothing {}

fn tool_set(names: &[&'static str]) -> ToolSet {
    let mut tools = ToolSet::new();
    for name in names {
        tools
            .add(tool_fn(*name, "A tool.", |_: Nothing| async move { Ok("done") }))
            .unwrap();
    }
    tools
}

#[tokio::test]
async fn an_agent_is_built_from_a_persona() {
    let persona = Persona::new("You are {{ name }}. Speak {{ language }}.")
        .with_variable("name", "Kai")
        .with_variable("language", "English")
        .with_model(ModelSettings {
            model: Some("openai:gpt-4o-mini".into()),
            temperature: Some(0.2),
            max_tokens: Some(300),
            max_steps: Some(3),
        })
        .with_tools(["search", "calculator"]);
    let model = ScriptedModel::new().text("Bonjour.");
    let builder = persona
        .apply(
            Agent::builder(model.clone()),
            &tool_set(&["search", "calculator", "shell"]),
            &json!({"language": "French"}),
        )
        .unwrap();
    let agent = builder.build().unwrap();
    let mut allowed: Vec<&str> = agent.tools().names().collect();
    allowed.sort();
    assert_eq!(allowed, ["calculator", "search"], "only the tools the persona allows");
    agent.run("Hello").await.unwrap();
    let request = &model.requests()[0];
    assert_eq!(request.temperature, Some(0.2));
    assert_eq!(request.max_tokens, Some(300));
    let system = request.messages.iter().find(|m| m.role == Role::System).unwrap();
    assert_eq!(system.text(), "You are Kai. Speak French.");

    // A tool the persona allows but no one gives, a missing variable, variables that are not an object.
    let missing_tool = persona.apply(Agent::builder(ScriptedModel::new()), &tool_set(&["search"]), &json!({}));
    assert!(matches!(missing_tool, Err(Error::Config { message }) if message.contains("calculator")));
    let strict = Persona::new("Hi {{ who }}.").instructions_for(&json!({})).unwrap_err();
    assert!(matches!(strict, Error::UndefinedVariable { variable, .. } if variable == "who"));
    assert!(Persona::new("x").instructions_for(&json!([1])).is_err());
}

#[test]
fn personas_are_kept_as_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = PersonaStore::open(dir.path()).unwrap();
    let first = Persona::new("You are {{ name }}.").with_variable("name", "Kai");
    let second = first.clone().with_tools(["search"]);
    assert_eq!(store.save("helper", &first, "ada", "first").unwrap().version, 1);
    assert_eq!(store.save("helper", &second, "bo", "can search").unwrap().version, 2);
    assert_eq!(store.get("helper", None).unwrap().persona, second);
    assert_eq!(store.get("helper", Some(1)).unwrap().persona, first);
    assert_eq!(store.history("helper").unwrap().len(), 2);
    let diff = store.diff("helper", 1, 2).unwrap();
    assert!(
        diff.contains("+++ helper@2") && diff.contains("+    \"search\""),
        "{diff}"
    );
    let rolled = store.roll_back("helper", 1, "ada").unwrap();
    assert_eq!((rolled.version, &rolled.persona), (3, &first));
    assert_eq!(store.names().unwrap(), ["helper"]);

    // Instructions that do not parse are refused; a tampered version is refused when read.
    assert!(matches!(
        store.save("broken", &Persona::new("{% if %}"), "ada", ""),
        Err(Error::Template { .. })
    ));
    let path = dir.path().join("helper/2.json");
    let tampered = std::fs::read_to_string(&path).unwrap().replace("search", "shell");
    std::fs::write(&path, tampered).unwrap();
    assert!(matches!(store.get("helper", Some(2)), Err(Error::Storage { .. })));
}
