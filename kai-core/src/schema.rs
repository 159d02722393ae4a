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

/// A compiled JSON Schema that checks tool arguments and structured answers.
pub(crate) struct SchemaValidator {
    validator: jsonschema::Validator,
}

impl SchemaValidator {
    /// The most problems one check reports, and the longest description of each.
    const MAX_PROBLEMS: usize = 8;
    const MAX_PROBLEM_CHARS: usize = 300;

    /// Compiles `schema`; `Err` says why it is not a usable JSON Schema. References are resolved only
    /// within the schema itself: nothing is fetched.
    pub(crate) fn new(schema: &serde_json::Value) -> Result<Self, String> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map_err(|error| bounded(&error.to_string()))?;
        Ok(Self { validator })
    }

    /// `Ok` when `instance` fits, otherwise every place where it does not (the first few of them).
    pub(crate) fn check(&self, instance: &serde_json::Value) -> Result<(), String> {
        // The common case, valid arguments, without collecting anything.
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        let mut problems = Vec::new();
        let mut more = 0usize;
        for error in self.validator.iter_errors(instance) {
            if problems.len() == Self::MAX_PROBLEMS {
                more += 1;
                continue;
            }
            let path = error.instance_path().to_string();
            let place = if path.is_empty() {
                "the value".to_owned()
            } else {
                format!("at {path}")
            };
            problems.push(format!("{place}: {}", bounded(&error.to_string())));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let mut message = problems.join("; ");
        if more > 0 {
            message.push_str(&format!("; and {more} more"));
        }
        Err(message)
    }
}

fn bounded(text: &str) -> String {
    if text.chars().count() <= SchemaValidator::MAX_PROBLEM_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(SchemaValidator::MAX_PROBLEM_CHARS).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validator_names_each_misfit_and_bounds_the_list() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 0}, "s": {"type": "string"}},
            "required": ["n"],
            "additionalProperties": false,
        });
        let validator = SchemaValidator::new(&schema).unwrap();
        assert!(validator.check(&serde_json::json!({"n": 3})).is_ok());
        let problem = validator.check(&serde_json::json!({"n": -1, "s": 2})).unwrap_err();
        assert!(problem.contains("/n") && problem.contains("/s"), "{problem}");
        let many: serde_json::Map<String, serde_json::Value> = (0..50)
            .map(|i| (format!("extra{i}"), serde_json::Value::Null))
            .collect();
        let mut instance = serde_json::Value::Object(many);
        instance["n"] = serde_json::json!(1);
        let problem = validator.check(&instance).unwrap_err();
        assert!(problem.len() < 4000, "{}", problem.len());
    }

    #[test]
    fn a_schema_that_is_not_one_is_refused_without_fetching_anything() {
        assert!(SchemaValidator::new(&serde_json::json!({"type": "no-such-type"})).is_err());
        let remote = serde_json::json!({"$ref": "https://example.invalid/schema.json"});
        assert!(SchemaValidator::new(&remote).is_err());
    }
}
