use std::time::Duration;

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Conversation, Role, ToolChoice};
use serde_json::json;

use crate::support::{Sleeper, adder, shout, tool_results, usage};

#[tokio::test]
async fn multi_step_tool_use_sums_usage_and_keeps_the_transcript() {
    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 2, "b": 3}))
        .usage(usage(10, 5))
        .tool_call("shout", json!({"word": "five"}))
        .usage(usage(20, 4))
        .text("FIVE")
        .usage(usage(30, 1));
    let agent = Agent::builder(model.clone())
        .instructions("Be brief.")
        .tool(adder())
        .tool(shout())
        .temperature(0.0)
        .max_tokens(64)
        .build()
        .unwrap();

    let output = agent.run("add 2 and 3, then shout it").await.unwrap();

    assert_eq!(output.answer, "FIVE");
    assert_eq!(output.steps, 3);
    assert_eq!(output.usage, usage(60, 10));
    let roles: Vec<Role> = output.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::Tool,
            Role::Assistant
        ]
    );
    let results = tool_results(&output.messages);
    assert_eq!(results[0].content, "5");
    assert_eq!(results[1].content, "FIVE");
    assert!(results.iter().all(|r| !r.is_error));

    // What the model was sent: instructions first, the growing transcript, tools and options each time.
    let requests = model.requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(request.messages[0].role, Role::System);
        assert_eq!(request.messages[0].text(), "Be brief.");
        assert_eq!(request.tools.len(), 2);
        assert_eq!(request.temperature, Some(0.0));
        assert_eq!(request.max_tokens, Some(64));
        assert_eq!(request.tool_choice, None::<ToolChoice>);
    }
    assert_eq!(requests[0].messages.len(), 2);
    assert_eq!(requests[2].messages.len(), 6);
    assert_eq!(requests[1].messages[3].tool_results().next().unwrap().content, "5");
}

#[tokio::test]
async fn parallel_tool_calls_honour_the_concurrency_limit() {
    let sleeper = Sleeper::new();
    let calls: Vec<_> = (0..6).map(|i| ("nap", json!({"millis": 40 + i}))).collect();
    let model = ScriptedModel::new().tool_calls(calls).text("rested");
    let agent = Agent::builder(model)
        .tool(sleeper.tool())
        .max_parallel_tools(2)
        .build()
        .unwrap();

    let output = agent.run("nap six times").await.unwrap();

    assert_eq!(sleeper.peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Results come back in the order the model asked for them, whatever order they finished in.
    let results = tool_results(&output.messages);
    let contents: Vec<_> = results.iter().map(|r| r.content.as_str()).collect();
    assert_eq!(
        contents,
        [
            "slept 40 ms",
            "slept 41 ms",
            "slept 42 ms",
            "slept 43 ms",
            "slept 44 ms",
            "slept 45 ms"
        ]
    );
    let call_ids: Vec<_> = output.messages[1].tool_calls().map(|c| c.id.clone()).collect();
    let result_ids: Vec<_> = results.iter().map(|r| r.call_id.clone()).collect();
    assert_eq!(call_ids, result_ids);
}

#[tokio::test]
async fn parallel_calls_really_overlap_when_allowed() {
    let sleeper = Sleeper::new();
    let calls: Vec<_> = (0..4).map(|_| ("nap", json!({"millis": 100}))).collect();
    let model = ScriptedModel::new().tool_calls(calls).text("ok");
    let agent = Agent::builder(model)
        .tool(sleeper.tool())
        .max_parallel_tools(8)
        .build()
        .unwrap();
    agent.run("go").await.unwrap();
    assert_eq!(sleeper.peak.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn one_at_a_time_when_the_limit_is_one() {
    let sleeper = Sleeper::new();
    let calls: Vec<_> = (0..3).map(|_| ("nap", json!({"millis": 5}))).collect();
    let model = ScriptedModel::new().tool_calls(calls).text("ok");
    let agent = Agent::builder(model)
        .tool(sleeper.tool())
        .max_parallel_tools(1)
        .tool_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    agent.run("go").await.unwrap();
    assert_eq!(sleeper.peak.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn conversation_keeps_history_between_runs() {
    let model = ScriptedModel::new()
        .text("Nice to meet you, Ada.")
        .usage(usage(5, 5))
        .text("Your name is Ada.")
        .usage(usage(9, 4));
    let agent = Agent::builder(model.clone()).build().unwrap();
    let mut chat = Conversation::new(agent);

    chat.send("My name is Ada.").await.unwrap();
    let second = chat.send("What is my name?").await.unwrap();

    assert_eq!(second.answer, "Your name is Ada.");
    assert_eq!(chat.history().len(), 4);
    assert_eq!(chat.usage(), usage(14, 9));
    let second_request = &model.requests()[1];
    let texts: Vec<_> = second_request.messages.iter().map(|m| m.text()).collect();
    assert_eq!(texts, ["My name is Ada.", "Nice to meet you, Ada.", "What is my name?"]);

    // History survives serialization, as a stored session would.
    let stored = serde_json::to_string(chat.history()).unwrap();
    let agent = Agent::builder(ScriptedModel::new().text("Still Ada.")).build().unwrap();
    let mut restored = Conversation::with_history(agent, serde_json::from_str(&stored).unwrap());
    restored.send("And now?").await.unwrap();
    assert_eq!(restored.history().len(), 6);
}

#[tokio::test]
async fn a_failed_turn_leaves_the_conversation_history_alone() {
    let model = ScriptedModel::new().text("hello").fail(kai_core::Error::Server {
        status: Some(500),
        message: "down".into(),
    });
    let mut chat = Conversation::new(Agent::builder(model).build().unwrap());
    chat.send("hi").await.unwrap();
    let error = chat.send("again").await.unwrap_err();
    assert_eq!(chat.history().len(), 2);
    assert_eq!(error.messages().len(), 3);
}

#[test]
fn builder_rejects_bad_configuration() {
    let model = ScriptedModel::new();
    let duplicate = Agent::builder(model.clone()).tool(adder()).tool(adder()).build();
    assert!(matches!(duplicate, Err(kai_core::Error::Config { .. })));
    let zero = Agent::builder(model.clone()).max_steps(0).build();
    assert!(matches!(zero, Err(kai_core::Error::Config { .. })));
    let zero = Agent::builder(model).max_parallel_tools(0).build();
    assert!(matches!(zero, Err(kai_core::Error::Config { .. })));
}
