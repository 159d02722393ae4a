//! # kai-macros
//!
//! Procedural macros for kAI. Use them through `kai-core`, which re-exports them.
//!
//! - [`macro@async_trait`]: `async fn` in kAI's object-safe traits, with futures that are `Send` on
//!   native targets and not on `wasm32` (where JS values are not `Send`).
//! - [`macro@tool_args`]: a tool's argument struct, deserializable and with a JSON Schema, without the
//!   user depending on serde and schemars.
//! - [`macro@tool`]: an `async fn` as a tool, its doc comment the description and its parameters the
//!   arguments.

mod tool;

use proc_macro::TokenStream;

/// Writes an async trait, or an implementation of one, with `async fn`.
///
/// It expands to `async_trait::async_trait` on native targets, whose futures are `Send`, and to
/// `async_trait::async_trait(?Send)` on `wasm32`, so one annotation serves both. kAI's own traits
/// (`ChatModel`, `Tool`, `AgentHook`, `MemoryStore`, …) are written with it, and implementations of
/// them use it too:
///
/// ```ignore
/// #[kai_core::async_trait]
/// impl kai_core::ChatModel for MyModel {
///     fn name(&self) -> &str {
///         "mine"
///     }
///     async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
///         Ok(ChatResponse::new(Message::assistant("hello")))
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn async_trait(attribute: TokenStream, item: TokenStream) -> TokenStream {
    prefixed(
        attribute,
        item,
        concat!(
            "#[cfg_attr(target_arch = \"wasm32\", ::kai_core::__private::async_trait(?Send))]",
            "#[cfg_attr(not(target_arch = \"wasm32\"), ::kai_core::__private::async_trait)]",
        ),
        "kai_core::async_trait takes no arguments: it is `?Send` on wasm32 and `Send` elsewhere",
    )
}

/// Makes a struct (or enum) usable as a tool's arguments: derives serde's `Deserialize` and schemars'
/// `JsonSchema` through the copies `kai-core` re-exports, so the crate using it needs neither serde
/// nor schemars in its own `Cargo.toml`. Doc comments become the schema's descriptions, and serde's
/// field attributes (`#[serde(default)]`, `#[serde(rename = "...")]`) work as usual.
///
/// ```ignore
/// #[kai_core::tool_args]
/// struct City {
///     /// The city's name, in English.
///     name: String,
/// }
/// ```
#[proc_macro_attribute]
pub fn tool_args(attribute: TokenStream, item: TokenStream) -> TokenStream {
    prefixed(
        attribute,
        item,
        concat!(
            "#[derive(::kai_core::__private::serde::Deserialize, ::kai_core::__private::schemars::JsonSchema)]",
            "#[serde(crate = \"::kai_core::__private::serde\")]",
            "#[schemars(crate = \"::kai_core::__private::schemars\")]",
        ),
        "kai_core::tool_args takes no arguments",
    )
}

/// `item` with the attributes in `prefix` put before it, or a compile error saying `no_arguments` when
/// the attribute was given arguments.
fn prefixed(attribute: TokenStream, item: TokenStream, prefix: &str, no_arguments: &str) -> TokenStream {
    let prefix = if attribute.is_empty() {
        prefix.to_owned()
    } else {
        format!("::core::compile_error!({no_arguments:?});")
    };
    match prefix.parse::<TokenStream>() {
        Ok(prefix) => prefix.into_iter().chain(item).collect(),
        // The prefix is a constant that always parses; hand the item back unchanged if it ever does not.
        Err(_) => item,
    }
}

/// Makes an `async fn` a tool: the function's doc comment is the description the model reads, its
/// parameters (with their doc comments) are the arguments' JSON Schema, and its name is the tool's name.
/// The function becomes a constructor: `add()` returns the tool.
///
/// The function returns `Result<T, ToolError>` with `T` serializable. A parameter of type `ToolContext`
/// receives the call's context (its id and cancellation token) instead of an argument.
///
/// ```ignore
/// use kai_core::{ToolError, tool};
///
/// /// Adds two numbers.
/// #[tool]
/// async fn add(
///     /// The first number.
///     a: f64,
///     /// The second number.
///     b: f64,
/// ) -> Result<f64, ToolError> {
///     Ok(a + b)
/// }
///
/// let agent = kai_core::Agent::builder(model).tool(add()).build()?;
/// ```
#[proc_macro_attribute]
pub fn tool(attribute: TokenStream, item: TokenStream) -> TokenStream {
    let function = syn::parse_macro_input!(item as syn::ItemFn);
    match tool::expand(attribute.into(), function) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}
