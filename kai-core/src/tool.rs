//! Tools: functions a model can call.
//!
//! [`Tool`] is the object-safe trait the agent works with (`Arc<dyn Tool>`); it takes and returns JSON.
//! [`TypedTool`] and [`tool_fn`] are the typed conveniences on top: arguments are a
//! `#[derive(Deserialize, JsonSchema)]` struct whose schema is generated, never hand-written.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::marker::{BoxFuture, MaybeSend, MaybeSync, boxed};
use crate::request::ToolDefinition;
use crate::schema::schema_for;

/// Why a tool call failed. The agent sends the message back to the model, which can then recover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments did not parse or did not match the tool's schema.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The tool did not finish in time.
    #[error("the tool did not finish within {0:?}")]
    Timeout(Duration),
}

impl ToolError {
    /// A [`ToolError::Failed`] from anything displayable.
    pub fn failed(error: impl std::fmt::Display) -> Self {
        ToolError::Failed(error.to_string())
    }
}

/// What a tool learns about the call it is serving.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolContext {
    /// The model's id for this call.
    pub call_id: String,
    /// The agent step the call belongs to, counted from 1.
    pub step: u32,
}

/// A tool an agent can call. Object-safe: agents hold tools as `Arc<dyn Tool>`.
///
/// Most tools are easier to write with [`tool_fn`] or [`TypedTool`].
pub trait Tool: MaybeSend + MaybeSync {
    /// The name, description and argument schema the model sees.
    fn definition(&self) -> ToolDefinition;

    /// Runs the tool on arguments the model produced (already parsed as JSON, not yet validated).
    ///
    /// A string result is passed to the model as it is; any other value as JSON text.
    fn call(
        &self,
        arguments: serde_json::Value,
        context: ToolContext,
    ) -> BoxFuture<'_, Result<serde_json::Value, ToolError>>;
}

/// A tool with typed arguments and output. Every `TypedTool` is a [`Tool`].
///
/// ```
/// use kai_core::{ToolError, TypedTool};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Add {
///     a: f64,
///     b: f64,
/// }
///
/// struct Adder;
///
/// impl TypedTool for Adder {
///     type Args = Add;
///     type Output = f64;
///
///     fn name(&self) -> String {
///         "add".into()
///     }
///     fn description(&self) -> String {
///         "Adds two numbers.".into()
///     }
///     async fn call(&self, args: Add) -> Result<f64, ToolError> {
///         Ok(args.a + args.b)
///     }
/// }
/// ```
pub trait TypedTool: MaybeSend + MaybeSync {
    /// The arguments; their JSON Schema is what the model sees.
    type Args: DeserializeOwned + JsonSchema + MaybeSend;
    /// The result, serialized to JSON for the model.
    type Output: Serialize;

    /// The name the model calls it by.
    fn name(&self) -> String;

    /// What it does and when to use it.
    fn description(&self) -> String;

    /// Runs the tool.
    fn call(&self, args: Self::Args) -> impl Future<Output = Result<Self::Output, ToolError>> + MaybeSend;
}

impl<T: TypedTool> Tool for T {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: self.name(),
            description: self.description(),
            parameters: schema_for::<T::Args>(),
        }
    }

    fn call(
        &self,
        arguments: serde_json::Value,
        _context: ToolContext,
    ) -> BoxFuture<'_, Result<serde_json::Value, ToolError>> {
        boxed(async move {
            let args = parse_arguments::<T::Args>(arguments)?;
            let output = TypedTool::call(self, args).await?;
            to_json(&output)
        })
    }
}

/// Deserializes tool arguments, turning a mismatch into [`ToolError::InvalidArguments`] with serde's
/// explanation (which names the offending field).
pub fn parse_arguments<A: DeserializeOwned>(arguments: serde_json::Value) -> Result<A, ToolError> {
    serde_json::from_value(arguments).map_err(|error| ToolError::InvalidArguments(error.to_string()))
}

fn to_json<O: Serialize>(output: &O) -> Result<serde_json::Value, ToolError> {
    serde_json::to_value(output)
        .map_err(|error| ToolError::Failed(format!("could not serialize the tool's output: {error}")))
}

/// A tool made from an async function or closure; see [`tool_fn`].
pub struct FnTool<A, F> {
    definition: ToolDefinition,
    function: F,
    args: PhantomData<fn(A)>,
}

/// Makes a tool from an async closure taking a `#[derive(Deserialize, JsonSchema)]` argument struct.
///
/// ```
/// use kai_core::{Tool, ToolError, tool_fn};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Weather {
///     /// City name, in English.
///     city: String,
/// }
///
/// let weather = tool_fn("weather", "Current weather for a city.", |args: Weather| async move {
///     Ok::<_, ToolError>(format!("Sunny in {}", args.city))
/// });
/// assert_eq!(weather.definition().parameters["required"][0], "city");
/// ```
pub fn tool_fn<A, O, F, Fut>(name: impl Into<String>, description: impl Into<String>, function: F) -> FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + MaybeSend,
    O: Serialize,
    F: Fn(A) -> Fut + MaybeSend + MaybeSync,
    Fut: Future<Output = Result<O, ToolError>> + MaybeSend,
{
    FnTool {
        definition: ToolDefinition {
            name: name.into(),
            description: description.into(),
            parameters: schema_for::<A>(),
        },
        function,
        args: PhantomData,
    }
}

impl<A, O, F, Fut> Tool for FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + MaybeSend,
    O: Serialize,
    F: Fn(A) -> Fut + MaybeSend + MaybeSync,
    Fut: Future<Output = Result<O, ToolError>> + MaybeSend,
{
    fn definition(&self) -> ToolDefinition {
        self.definition.clone()
    }

    fn call(
        &self,
        arguments: serde_json::Value,
        _context: ToolContext,
    ) -> BoxFuture<'_, Result<serde_json::Value, ToolError>> {
        let parsed = parse_arguments::<A>(arguments);
        boxed(async move {
            let output = (self.function)(parsed?).await?;
            to_json(&output)
        })
    }
}

/// The tools an agent may call, by name.
///
/// Definitions are computed once, when a tool is added, so each agent step reuses them.
#[derive(Clone, Default)]
pub struct ToolSet {
    tools: Vec<Arc<dyn Tool>>,
    definitions: Vec<ToolDefinition>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.definitions.iter().map(|d| &d.name))
            .finish()
    }
}

impl ToolSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool.
    ///
    /// Fails with [`Error::Config`] when the name is already taken or is not 1–64 characters of
    /// `a-z A-Z 0-9 _ -` (the names every major provider accepts).
    pub fn add(&mut self, tool: impl Tool + 'static) -> Result<(), Error> {
        self.add_shared(Arc::new(tool))
    }

    /// Adds a tool that is already shared.
    pub fn add_shared(&mut self, tool: Arc<dyn Tool>) -> Result<(), Error> {
        let definition = tool.definition();
        let name = &definition.name;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::Config {
                message: format!("invalid tool name {name:?}: use 1-64 characters of a-z, A-Z, 0-9, '_' and '-'"),
            });
        }
        if self.by_name.contains_key(name) {
            return Err(Error::Config {
                message: format!("two tools are named {name:?}"),
            });
        }
        self.by_name.insert(name.clone(), self.tools.len());
        self.tools.push(tool);
        self.definitions.push(definition);
        Ok(())
    }

    /// The tool with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.by_name.get(name).map(|&index| &self.tools[index])
    }

    /// Every tool's definition, in the order they were added.
    pub fn definitions(&self) -> &[ToolDefinition] {
        &self.definitions
    }

    /// The tools' names, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.definitions.iter().map(|d| d.name.as_str())
    }

    /// The number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

const _: Option<&dyn Tool> = None;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    struct Add {
        a: i64,
        b: i64,
    }

    fn adder() -> impl Tool {
        tool_fn("add", "Adds.", |args: Add| async move {
            Ok::<_, ToolError>(args.a + args.b)
        })
    }

    #[tokio::test]
    async fn typed_closure_tool_parses_and_serializes() {
        let tool = adder();
        let out = tool
            .call(serde_json::json!({"a": 2, "b": 3}), ToolContext::default())
            .await
            .unwrap();
        assert_eq!(out, serde_json::json!(5));
    }

    #[tokio::test]
    async fn arguments_that_fail_the_schema_are_invalid_arguments() {
        let tool = adder();
        let err = tool
            .call(serde_json::json!({"a": "two", "b": 3}), ToolContext::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ToolError::InvalidArguments(ref m) if m.contains("invalid type")),
            "{err}"
        );
        let err = tool
            .call(serde_json::json!({"a": 1}), ToolContext::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ToolError::InvalidArguments(ref m) if m.contains("missing field `b`")),
            "{err}"
        );
    }

    #[test]
    fn schema_comes_from_the_type() {
        let def = adder().definition();
        assert_eq!(def.parameters["type"], "object");
        assert_eq!(def.parameters["properties"]["a"]["type"], "integer");
    }

    #[test]
    fn duplicate_and_invalid_names_are_rejected() {
        let mut set = ToolSet::new();
        set.add(adder()).unwrap();
        assert!(matches!(set.add(adder()), Err(Error::Config { .. })));
        let bad = tool_fn("no spaces", "x", |args: Add| async move { Ok::<_, ToolError>(args.a) });
        assert!(matches!(set.add(bad), Err(Error::Config { .. })));
        assert_eq!(set.names().collect::<Vec<_>>(), ["add"]);
    }
}
