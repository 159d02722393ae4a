//! Structured output: answers parsed into a Rust type, with repair of invalid ones.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::agent::run::{OutputSpec, Run, RunModel};
use crate::agent::{Agent, AgentConfig, Limits, RunError, RunOptions, RunOutput, RunState};
use crate::error::Error;
use crate::hook::AgentHook;
use crate::marker::{BoxFuture, MaybeSend, boxed};
use crate::model::ChatModel;
use crate::request::ChatRequest;
use crate::schema::{SchemaValidator, schema_for};
use crate::tool::ToolSet;

/// The name of the schema, and of the tool used when the provider has no JSON-schema response format.
pub const OUTPUT_NAME: &str = "final_result";

/// A parsed structured answer and the run that produced it.
#[derive(Debug, Clone)]
pub struct Extracted<T> {
    /// The answer, parsed.
    pub value: T,
    /// The run: the answer's JSON text, the transcript, usage and steps.
    pub output: RunOutput,
}

impl Agent {
    /// Runs the agent and parses its final answer into `T`.
    ///
    /// The answer is constrained by `T`'s JSON Schema: through the provider's JSON-schema response
    /// format when [`ModelCapabilities::json_schema`](crate::ModelCapabilities) says it has one (and,
    /// for an agent with tools, `json_schema_with_tools` says it takes both in one request), otherwise
    /// through a forced call of a `final_result` tool. An answer that does not parse is sent
    /// back with the parse error, up to [`max_repairs`](crate::AgentBuilder::max_repairs) times, then the
    /// run fails with [`Error::InvalidOutput`].
    pub async fn extract<T>(&self, input: impl Into<String>) -> Result<Extracted<T>, RunError>
    where
        T: DeserializeOwned + JsonSchema,
    {
        self.resume_extract(RunState::new(input), RunOptions::default()).await
    }

    /// Runs the agent and returns its final answer as JSON that matches `schema`, a JSON Schema given
    /// at run time (from a Pydantic model, a Kotlin data class, a zod schema, …).
    ///
    /// Works as [`extract`](Self::extract) does, with the answer checked against `schema` by a JSON
    /// Schema validator. A `schema` that is not a JSON Schema ends the run with [`Error::Config`]
    /// before the model is called.
    ///
    /// ```
    /// use kai_core::Agent;
    /// use kai_core::testing::ScriptedModel;
    ///
    /// # futures::executor::block_on(async {
    /// let model = ScriptedModel::new().tool_call("final_result", serde_json::json!({"name": "Oslo", "population": 709000}));
    /// let agent = Agent::builder(model).build().unwrap();
    /// let schema = serde_json::json!({
    ///     "type": "object",
    ///     "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    ///     "required": ["name", "population"],
    /// });
    /// let city = agent.extract_json("Largest city of Norway?", schema).await.unwrap();
    /// assert_eq!(city.value["population"], 709000);
    /// # });
    /// ```
    pub async fn extract_json(
        &self,
        input: impl Into<String>,
        schema: serde_json::Value,
    ) -> Result<Extracted<serde_json::Value>, RunError> {
        self.resume_extract_json(RunState::new(input), schema, RunOptions::default())
            .await
    }

    /// [`extract`](Self::extract) from a given state, with options: resumes a structured-output run
    /// that stopped for an approval, a cancel or a crash (its pending `final_result` call is still
    /// understood), or starts one from `RunState::new(input)` with a cancellation token or deadline.
    pub async fn resume_extract<T>(&self, state: RunState, options: RunOptions) -> Result<Extracted<T>, RunError>
    where
        T: DeserializeOwned + JsonSchema,
    {
        extract_run(self.config(), self.run_model(), state, options, typed::<T>()).await
    }

    /// [`extract_json`](Self::extract_json) from a given state, with options; see
    /// [`resume_extract`](Self::resume_extract).
    pub async fn resume_extract_json(
        &self,
        state: RunState,
        schema: serde_json::Value,
        options: RunOptions,
    ) -> Result<Extracted<serde_json::Value>, RunError> {
        self.extract_json_target(state, runtime(schema, None), options).await
    }

    /// [`resume_extract_json`](Self::resume_extract_json) with a check of the caller's own: an answer
    /// that fits `schema` is also given to `check` (a Pydantic validator, a zod refinement, a business
    /// rule), and its `Err` goes back to the model for repair as a schema violation does, within the
    /// same [`max_repairs`](crate::AgentBuilder::max_repairs).
    ///
    /// ```
    /// use kai_core::testing::ScriptedModel;
    /// use kai_core::{Agent, RunState, RunOptions};
    ///
    /// # futures::executor::block_on(async {
    /// let model = ScriptedModel::new().json_schema_support(true).text(r#"{"year": 1850}"#).text(r#"{"year": 1950}"#);
    /// let agent = Agent::builder(model).build().unwrap();
    /// let schema = serde_json::json!({"type": "object", "properties": {"year": {"type": "integer"}}, "required": ["year"]});
    /// let after_1900 = |value: &serde_json::Value| match value["year"].as_i64() {
    ///     Some(year) if year > 1900 => Ok(()),
    ///     _ => Err("the year must be after 1900".to_owned()),
    /// };
    /// let state = RunState::new("A year after 1900?");
    /// let answer = agent.resume_extract_json_checked(state, schema, after_1900, RunOptions::default()).await.unwrap();
    /// assert_eq!(answer.value["year"], 1950);
    /// # });
    /// ```
    pub async fn resume_extract_json_checked(
        &self,
        state: RunState,
        schema: serde_json::Value,
        check: impl Fn(&serde_json::Value) -> Result<(), String> + Send + Sync + 'static,
        options: RunOptions,
    ) -> Result<Extracted<serde_json::Value>, RunError> {
        self.extract_json_target(state, runtime(schema, Some(Arc::new(check))), options)
            .await
    }

    async fn extract_json_target(
        &self,
        state: RunState,
        target: Result<Target, Error>,
        options: RunOptions,
    ) -> Result<Extracted<serde_json::Value>, RunError> {
        let target = match target {
            Ok(target) => target,
            Err(error) => {
                return Err(RunError {
                    error,
                    state: Box::new(state),
                });
            }
        };
        extract_run(self.config(), self.run_model(), state, options, target).await
    }
}

/// A caller's check of a structured answer that already fits its schema; see
/// [`Agent::resume_extract_json_checked`].
type OutputCheck = Arc<dyn Fn(&serde_json::Value) -> Result<(), String> + Send + Sync>;

/// Structured output straight from a model, without an agent.
pub trait ChatModelExt: ChatModel {
    /// Asks the model for an answer parsed into `T`, repairing invalid answers up to twice.
    ///
    /// The request's messages, temperature, max tokens and extras are used as they are; its tools are
    /// not offered (use [`Agent::extract`] for an answer that may use tools).
    ///
    /// ```
    /// use kai_core::testing::ScriptedModel;
    /// use kai_core::{ChatModelExt, ChatRequest, Message};
    ///
    /// #[derive(serde::Deserialize, schemars::JsonSchema, Debug, PartialEq)]
    /// struct City {
    ///     name: String,
    ///     population: u64,
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let model = ScriptedModel::new()
    ///     .json_schema_support(true)
    ///     .text(r#"{"name": "Oslo"}"#) // missing a field: sent back for repair
    ///     .text(r#"{"name": "Oslo", "population": 709000}"#);
    /// let request = ChatRequest::new(vec![Message::user("Largest city of Norway?")]);
    /// let city = model.extract::<City>(request).await.unwrap();
    /// assert_eq!(city.value, City { name: "Oslo".into(), population: 709000 });
    /// # });
    /// ```
    fn extract<T>(&self, request: ChatRequest) -> BoxFuture<'_, Result<Extracted<T>, RunError>>
    where
        Self: Sized,
        T: DeserializeOwned + JsonSchema + MaybeSend + 'static,
    {
        model_extract(self, request, Ok(typed::<T>()))
    }

    /// Asks the model for an answer that matches `schema`, a JSON Schema given at run time, repairing
    /// invalid answers up to twice; see [`Agent::extract_json`].
    fn extract_json(
        &self,
        request: ChatRequest,
        schema: serde_json::Value,
    ) -> BoxFuture<'_, Result<Extracted<serde_json::Value>, RunError>>
    where
        Self: Sized,
    {
        model_extract(self, request, runtime(schema, None))
    }
}

impl<M: ChatModel + ?Sized> ChatModelExt for M {}

/// The schema an answer must fit, and how it is checked.
struct Target {
    schema: serde_json::Value,
    validate: Validate,
}

/// A target of a Rust type, checked by deserializing into it.
fn typed<T: DeserializeOwned + JsonSchema>() -> Target {
    Target {
        schema: schema_for::<T>(),
        validate: Validate::Typed(validate::<T>),
    }
}

/// A target of a JSON Schema given at run time, checked by a validator and then by `check`.
fn runtime(schema: serde_json::Value, check: Option<OutputCheck>) -> Result<Target, Error> {
    let validator = SchemaValidator::new(&schema).map_err(|problem| Error::Config {
        message: format!("the output schema is not a valid JSON Schema: {problem}"),
    })?;
    Ok(Target {
        schema,
        validate: Validate::Schema {
            validator: Arc::new(validator),
            check,
        },
    })
}

fn model_extract<'a, T>(
    model: &'a dyn ChatModel,
    request: ChatRequest,
    target: Result<Target, Error>,
) -> BoxFuture<'a, Result<Extracted<T>, RunError>>
where
    T: DeserializeOwned + MaybeSend + 'static,
{
    let mut template = request;
    let messages = std::mem::take(&mut template.messages);
    template.tools.clear();
    template.tool_choice = None;
    template.response_format = None;
    let config = AgentConfig {
        name: std::sync::Arc::from("extract"),
        instructions: None,
        tools: ToolSet::new(),
        hooks: Vec::<std::sync::Arc<dyn AgentHook>>::new(),
        limits: Limits {
            max_steps: Limits::default().max_repairs + 1,
            ..Limits::default()
        },
        request_template: template,
        constrained_steps: false,
    };
    let state = RunState {
        messages,
        ..RunState::default()
    };
    boxed(async move {
        let target = target.map_err(|error| RunError {
            error,
            state: Box::new(state.clone()),
        })?;
        extract_run(&config, RunModel::Borrowed(model), state, RunOptions::default(), target).await
    })
}

async fn extract_run<T: DeserializeOwned>(
    config: &AgentConfig,
    model: RunModel<'_>,
    state: RunState,
    options: RunOptions,
    target: Target,
) -> Result<Extracted<T>, RunError> {
    if config.tools.get(OUTPUT_NAME).is_some() {
        return Err(RunError {
            error: Error::Config {
                message: format!("a tool is named {OUTPUT_NAME:?}, which structured output needs for itself"),
            },
            state: Box::new(state),
        });
    }
    let capabilities = model.capabilities();
    let native = capabilities.json_schema && (config.tools.is_empty() || capabilities.json_schema_with_tools);
    let output = OutputSpec {
        name: OUTPUT_NAME.to_owned(),
        schema: target.schema,
        via_tool: !native,
        validate: target.validate,
    };
    let run = Run::new(config, model, state, options, None, Some(output))
        .execute()
        .await?;
    match serde_json::from_str::<T>(&run.answer) {
        Ok(value) => Ok(Extracted { value, output: run }),
        // `validate` accepted this exact text, so this cannot fail; report it rather than panic.
        Err(error) => Err(RunError {
            error: Error::InvalidOutput {
                message: error.to_string(),
                attempts: 1,
            },
            state: Box::new(RunState {
                messages: run.messages,
                steps: run.steps,
                usage: run.usage,
                ..RunState::default()
            }),
        }),
    }
}

/// Checks an answer, returning the normalized JSON text or why it does not fit.
pub(crate) enum Validate {
    /// By deserializing into a Rust type.
    Typed(fn(&str) -> Result<String, String>),
    /// By a JSON Schema validator, then by the caller's check.
    Schema {
        validator: Arc<SchemaValidator>,
        check: Option<OutputCheck>,
    },
}

impl Validate {
    pub(crate) fn check(&self, text: &str) -> Result<String, String> {
        match self {
            Validate::Typed(validate) => validate(text),
            Validate::Schema { validator, check } => {
                let json = strip_code_fence(text);
                let value: serde_json::Value =
                    serde_json::from_str(json).map_err(|error| format!("the answer is not JSON: {error}"))?;
                let (value, text) = match validator.check(&value) {
                    Ok(()) => (value, json.to_owned()),
                    Err(problem) => {
                        // A provider's strict mode makes optional fields required and nullable, so an
                        // answer may hold `null` where the caller's schema wants the field left out.
                        let mut without_nulls = value;
                        drop_null_members(&mut without_nulls);
                        validator.check(&without_nulls).map_err(|_| problem)?;
                        let text = without_nulls.to_string();
                        (without_nulls, text)
                    }
                };
                match check {
                    Some(check) => check(&value).map(|()| text),
                    None => Ok(text),
                }
            }
        }
    }
}

/// Checks that `text` holds a `T`, returning its JSON text. Accepts the JSON wrapped in a Markdown code
/// fence, which small models add even when told not to.
fn validate<T: DeserializeOwned>(text: &str) -> Result<String, String> {
    let json = strip_code_fence(text);
    let error = match serde_json::from_str::<T>(json) {
        Ok(_) => return Ok(json.to_owned()),
        Err(error) => error.to_string(),
    };
    // As for a runtime schema: strict mode may have made a `#[serde(default)]` field nullable, and the
    // type wants it left out rather than `null`.
    let Ok(mut without_nulls) = serde_json::from_str::<serde_json::Value>(json) else {
        return Err(error);
    };
    drop_null_members(&mut without_nulls);
    match T::deserialize(&without_nulls) {
        Ok(_) => Ok(without_nulls.to_string()),
        Err(_) => Err(error),
    }
}

/// Removes every object member whose value is `null`, at any depth.
fn drop_null_members(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            object.retain(|_, member| !member.is_null());
            object.values_mut().for_each(drop_null_members);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_members),
        _ => {}
    }
}

fn strip_code_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(rest) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return trimmed;
    };
    // Drop the info string (`json`) on the opening line.
    match body.find('\n') {
        Some(newline) => body[newline + 1..].trim(),
        None => body.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_for_a_defaulted_field_is_read_as_left_out() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Report {
            title: String,
            #[serde(default)]
            pages: u32,
            note: Option<String>,
        }
        let text = r#"{"title": "t", "pages": null, "note": null}"#;
        assert_eq!(validate::<Report>(text).unwrap(), r#"{"title":"t"}"#);
        assert!(validate::<Report>(r#"{"title": null}"#).is_err());
    }

    #[test]
    fn code_fences_are_stripped() {
        assert_eq!(strip_code_fence("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_code_fence("  {\"a\":1} "), "{\"a\":1}");
        assert_eq!(strip_code_fence("```{\"a\":1}```"), "{\"a\":1}");
        assert_eq!(strip_code_fence("```json\n{\"a\":1}"), "```json\n{\"a\":1}");
    }
}
