//! `#[tool]` functions: description, schema and name from the function; `Ok(..)` needs no annotation;
//! a `ToolContext` parameter gets the call's context.

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Tool, ToolContext, ToolError, tool};
use serde_json::json;

use crate::support::tool_results;

/// Multiplies two numbers.
#[tool]
async fn multiply(
    /// The first factor.
    a: f64,
    /// The second factor.
    b: f64,
) -> Result<f64, ToolError> {
    Ok(a * b)
}

/// Says which call this is.
#[tool]
async fn whoami(
    /// A greeting to repeat.
    greeting: String,
    context: ToolContext,
) -> Result<String, ToolError> {
    if greeting.is_empty() {
        return Err(ToolError::invalid_arguments("say something"));
    }
    Ok(format!("{greeting} from {}", context.call_id))
}

/// Shouts a word, a number of times.
#[tool]
// Placed on the function that runs the body: on the constructor, which has no `word`, it would not compile.
#[tracing::instrument(skip(word))]
async fn shout(
    /// The word.
    mut word: String,
    /// How often.
    times: u32,
) -> Result<String, ToolError> {
    word.make_ascii_uppercase();
    Ok(vec![word; times as usize].join(" "))
}

#[tokio::test]
async fn mut_parameters_and_body_attributes_are_kept() {
    let result = shout()
        .call(json!({"word": "hey", "times": 2}), ToolContext::new("c"))
        .await
        .unwrap();
    assert_eq!(result, "HEY HEY");
}

#[test]
fn the_definition_comes_from_the_function() {
    let definition = multiply().definition();
    assert_eq!(definition.name, "multiply");
    assert_eq!(definition.description, "Multiplies two numbers.");
    let parameters = &definition.parameters;
    assert_eq!(parameters["properties"]["a"]["type"], "number");
    assert_eq!(parameters["properties"]["b"]["description"], "The second factor.");
    assert_eq!(parameters["required"], json!(["a", "b"]));
    // The context is not an argument the model sees.
    let whoami = whoami().definition();
    assert_eq!(whoami.parameters["required"], json!(["greeting"]));
    assert!(whoami.parameters["properties"].get("context").is_none());
}

#[tokio::test]
async fn tool_functions_run_inside_an_agent() {
    let model = ScriptedModel::new()
        .tool_calls([
            ("multiply", json!({"a": 6, "b": 7})),
            ("whoami", json!({"greeting": "hello"})),
        ])
        .tool_call("whoami", json!({"greeting": ""}))
        .text("42");
    let agent = Agent::builder(model).tool(multiply()).tool(whoami()).build().unwrap();
    let output = agent.run("6 * 7?").await.unwrap();
    let results = tool_results(&output.messages);
    let mut contents: Vec<&str> = results.iter().map(|r| r.content.as_str()).collect();
    contents.sort_unstable();
    assert_eq!(contents[..2], ["42.0", "hello from call_1_1"]);
    assert!(results[2].is_error && results[2].content.contains("say something"));
}
