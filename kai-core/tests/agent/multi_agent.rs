use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Role, Tool};
use serde_json::json;

use crate::support::{adder, tool_results};

#[tokio::test]
async fn an_agent_delegates_to_another_agent_as_a_tool() {
    let math_model = ScriptedModel::new()
        .tool_call("add", json!({"a": 20, "b": 22}))
        .text("42");
    let math = Agent::builder(math_model.clone())
        .name("math")
        .instructions("You do arithmetic.")
        .tool(adder())
        .build()
        .unwrap();
    let math_tool = math.into_tool("ask_math", "Delegates arithmetic to the math agent.");
    assert_eq!(math_tool.definition().parameters["required"][0], "input");

    let lead_model = ScriptedModel::new()
        .tool_call("ask_math", json!({"input": "What is 20 + 22?"}))
        .text("The answer is 42.");
    let lead = Agent::builder(lead_model.clone()).tool(math_tool).build().unwrap();

    let output = lead.run("20 + 22?").await.unwrap();

    assert_eq!(output.answer, "The answer is 42.");
    assert_eq!(tool_results(&output.messages)[0].content, "42");
    let sub_request = &math_model.requests()[0];
    assert_eq!(sub_request.messages[0].role, Role::System);
    assert_eq!(sub_request.messages[1].text(), "What is 20 + 22?");
}

#[tokio::test]
async fn the_delegate_keeps_its_own_limits() {
    let looping = ScriptedModel::new().tool_call("add", json!({"a": 1, "b": 1})).repeat();
    let sub = Agent::builder(looping)
        .name("looper")
        .tool(adder())
        .max_steps(2)
        .build()
        .unwrap();
    let lead_model = ScriptedModel::new()
        .tool_call("delegate", json!({"input": "loop"}))
        .text("the helper failed");
    let lead = Agent::builder(lead_model)
        .tool(sub.into_tool("delegate", "Delegates."))
        .build()
        .unwrap();
    let output = lead.run("go").await.unwrap();
    let result = &tool_results(&output.messages)[0];
    assert!(result.is_error);
    assert!(result.content.contains("the looper agent failed"), "{}", result.content);
    assert!(result.content.contains("2 steps"), "{}", result.content);
}
