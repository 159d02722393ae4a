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
        let expanded = expanded_size(schema);
        if expanded > MAX_EXPANDED_NODES {
            return Err(format!(
                "the schema is too large: with its references followed it has more than {MAX_EXPANDED_NODES} parts"
            ));
        }
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

/// The most parts a schema may have with its local `$ref`s followed. Validation can visit every part
/// for one value, so this bounds the work a hostile schema (references fanning out level after level,
/// 2^40 paths in 80 references) can ask for.
const MAX_EXPANDED_NODES: u64 = 100_000;

/// How many schema parts validation may visit: every object and array of the schema, with each local
/// `$ref` (`#/...`) counted as the size of its target. A reference back into a schema being counted
/// (recursion, which validation follows only as deep as the value) counts one.
fn expanded_size(schema: &serde_json::Value) -> u64 {
    let mut memo = std::collections::HashMap::new();
    let mut open = std::collections::HashSet::new();
    size_of(schema, schema, &mut memo, &mut open, 0)
}

fn size_of(
    root: &serde_json::Value,
    node: &serde_json::Value,
    memo: &mut std::collections::HashMap<String, u64>,
    open: &mut std::collections::HashSet<String>,
    depth: usize,
) -> u64 {
    // serde_json's own depth limit keeps parsed schemas shallow; stop well past it, counted as too big.
    if depth > 512 {
        return MAX_EXPANDED_NODES + 1;
    }
    let children: u64 = match node {
        serde_json::Value::Object(object) => {
            let mut total = 0u64;
            for (key, value) in object {
                let part = match (key.as_str(), value.as_str()) {
                    ("$ref", Some(pointer)) if pointer.starts_with('#') => {
                        reference_size(root, pointer, memo, open, depth)
                    }
                    _ => size_of(root, value, memo, open, depth + 1),
                };
                total = total.saturating_add(part);
                if total > MAX_EXPANDED_NODES {
                    break;
                }
            }
            total
        }
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| size_of(root, item, memo, open, depth + 1))
            .fold(0u64, u64::saturating_add),
        _ => 0,
    };
    children.saturating_add(1)
}

fn reference_size(
    root: &serde_json::Value,
    pointer: &str,
    memo: &mut std::collections::HashMap<String, u64>,
    open: &mut std::collections::HashSet<String>,
    depth: usize,
) -> u64 {
    if let Some(&size) = memo.get(pointer) {
        return size;
    }
    if !open.insert(pointer.to_owned()) {
        return 1;
    }
    let target = root.pointer(pointer.trim_start_matches('#'));
    let size = target.map_or(1, |target| size_of(root, target, memo, open, depth + 1));
    open.remove(pointer);
    memo.insert(pointer.to_owned(), size);
    size
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
    fn a_schema_whose_references_fan_out_exponentially_is_refused() {
        // d0 -> d1 twice -> d2 twice ... : 2^40 paths in 80 references.
        let mut defs = serde_json::Map::new();
        for level in 0..40 {
            let next = format!("#/$defs/d{}", level + 1);
            defs.insert(
                format!("d{level}"),
                serde_json::json!({"anyOf": [{"$ref": next}, {"$ref": next}]}),
            );
        }
        defs.insert("d40".into(), serde_json::json!({"type": "string"}));
        let schema = serde_json::json!({"$defs": defs, "$ref": "#/$defs/d0"});
        let error = SchemaValidator::new(&schema).err().unwrap();
        assert!(error.contains("too large"), "{error}");
        // A recursive schema is fine: validation follows it only as deep as the value goes.
        let tree = serde_json::json!({
            "$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
            "$ref": "#/$defs/node"
        });
        assert!(SchemaValidator::new(&tree).is_ok());
    }

    #[test]
    fn a_schema_that_is_not_one_is_refused_without_fetching_anything() {
        assert!(SchemaValidator::new(&serde_json::json!({"type": "no-such-type"})).is_err());
        let remote = serde_json::json!({"$ref": "https://example.invalid/schema.json"});
        assert!(SchemaValidator::new(&remote).is_err());
    }
}
