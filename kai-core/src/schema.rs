//! JSON Schemas generated from Rust types.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;

/// The JSON Schema of `T`, in the form model APIs accept: every subschema inlined (several providers
/// reject `$ref`), without the `$schema` and `title` keys.
///
/// ```
/// #[derive(schemars::JsonSchema)]
/// struct Args {
///     /// The city.
///     city: String,
/// }
///
/// let schema = kai_core::schema_for::<Args>();
/// assert_eq!(schema["type"], "object");
/// assert_eq!(schema["properties"]["city"]["description"], "The city.");
/// assert!(schema.get("$schema").is_none());
/// ```
pub fn schema_for<T: JsonSchema + ?Sized>() -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
    }
    schema
}
