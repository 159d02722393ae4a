//! JSON Schemas generated from Rust types.

use std::collections::HashMap;

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
        let expanded = expanded_size(schema)?;
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

/// How many schema parts validation may visit: every object and array of the schema, with each
/// `$ref` counted as the size of its target. A reference back into a schema being counted (recursion,
/// which validation follows only as deep as the value) counts one.
///
/// Only what this count can follow is accepted: a `$ref` must be a JSON pointer into this document
/// (`#` or `#/...`, percent-encoded or not) that resolves, `$dynamicRef` and `$recursiveRef` are
/// refused, and so is an `$id` (or draft 4's `id`) below the root (it would make `#/...` mean another
/// document). An anchor or a relative reference would otherwise be a path around the bound. Values
/// that are data, not schemas (`const`, `enum`, `default`, `examples`), are not read as keywords.
fn expanded_size(schema: &serde_json::Value) -> Result<u64, String> {
    let mut counter = SizeCounter {
        root: schema,
        memo: HashMap::new(),
        open: HashMap::new(),
        episodes: 0,
        path: Vec::new(),
        back_edges: HashMap::new(),
    };
    counter.size_of(schema, 0)
}

/// Counts a schema's parts with its references followed, and refuses recursion that would make
/// validation exponential: two references back into a schema being expanded that apply to the same
/// value (both reached through the same steps into the value, as `allOf: [{$ref: "#"}, {$ref: "#"}]`
/// under one property) make every level of the value cost twice the level below.
struct SizeCounter<'a> {
    root: &'a serde_json::Value,
    /// Sizes of reference targets whose expansion met no reference back into an open target.
    memo: HashMap<String, u64>,
    /// Targets being expanded: the expansion's number and where in `path` it started.
    open: HashMap<String, (u64, usize)>,
    episodes: u64,
    /// The steps into the value taken since the root: `p/<name>`, `items`, ...
    path: Vec<String>,
    /// References back into an open target, by target, expansion and steps since it opened.
    back_edges: HashMap<(String, u64, String), u32>,
}

impl SizeCounter<'_> {
    fn size_of(&mut self, node: &serde_json::Value, depth: usize) -> Result<u64, String> {
        // serde_json's own depth limit keeps parsed schemas shallow; stop well past it, counted as too big.
        if depth > 512 {
            return Ok(MAX_EXPANDED_NODES + 1);
        }
        let children: u64 = match node {
            serde_json::Value::Object(object) => {
                let is_root = std::ptr::eq(node, self.root);
                let mut total = 0u64;
                for (key, value) in object {
                    let part = match (key.as_str(), value) {
                        // Data, not schemas.
                        ("const" | "enum" | "default" | "examples", _) => 1,
                        ("$ref", serde_json::Value::String(reference)) => self.reference_size(reference, depth)?,
                        ("$dynamicRef" | "$recursiveRef", serde_json::Value::String(_)) => {
                            return Err(format!("{key} is not supported; use a local \"$ref\": \"#/...\""));
                        }
                        ("$id" | "id", serde_json::Value::String(_)) if !is_root => {
                            return Err(format!("an \"{key}\" is only supported at the schema's root"));
                        }
                        // Maps of named subschemas: each applies to a member of the value (or, for
                        // definitions, only through references).
                        (
                            "properties" | "patternProperties" | "dependentSchemas" | "$defs" | "definitions",
                            serde_json::Value::Object(members),
                        ) => {
                            let mut sum = 0u64;
                            for (name, member) in members {
                                let step = match key.as_str() {
                                    "properties" => Some(format!("p/{name}")),
                                    "patternProperties" => Some("pattern".to_owned()),
                                    "dependentSchemas" => None,
                                    _ => Some(format!("defs/{name}")),
                                };
                                sum = sum.saturating_add(self.size_in(step, member, depth)?);
                                if sum > MAX_EXPANDED_NODES {
                                    break;
                                }
                            }
                            sum.saturating_add(1)
                        }
                        ("items" | "additionalItems" | "contains" | "unevaluatedItems" | "prefixItems", _) => {
                            self.size_in(Some("items".to_owned()), value, depth)?
                        }
                        ("additionalProperties" | "unevaluatedProperties", _) => {
                            self.size_in(Some("additional".to_owned()), value, depth)?
                        }
                        ("propertyNames", _) => self.size_in(Some("names".to_owned()), value, depth)?,
                        _ => self.size_of(value, depth + 1)?,
                    };
                    total = total.saturating_add(part);
                    if total > MAX_EXPANDED_NODES {
                        break;
                    }
                }
                total
            }
            serde_json::Value::Array(items) => {
                let mut total = 0u64;
                for item in items {
                    total = total.saturating_add(self.size_of(item, depth + 1)?);
                    if total > MAX_EXPANDED_NODES {
                        break;
                    }
                }
                total
            }
            _ => 0,
        };
        Ok(children.saturating_add(1))
    }

    /// The size of `node`, reached by one more step into the value (or none).
    fn size_in(&mut self, step: Option<String>, node: &serde_json::Value, depth: usize) -> Result<u64, String> {
        let stepped = step.is_some();
        if let Some(step) = step {
            self.path.push(step);
        }
        let size = self.size_of(node, depth + 1);
        if stepped {
            self.path.pop();
        }
        size
    }

    fn reference_size(&mut self, reference: &str, depth: usize) -> Result<u64, String> {
        let unresolved = || {
            format!(
                "the reference {:?} is not a JSON pointer into this schema",
                bounded(reference)
            )
        };
        let pointer = reference
            .strip_prefix('#')
            .filter(|pointer| pointer.is_empty() || pointer.starts_with('/'))
            .ok_or_else(unresolved)?;
        let pointer = percent_encoding::percent_decode_str(pointer)
            .decode_utf8()
            .map_err(|_| unresolved())?
            .into_owned();
        if let Some(&(episode, start)) = self.open.get(&pointer) {
            // Recursion: validation follows it only as deep as the value goes, unless two such
            // references apply to the same value.
            let steps = self.path.get(start..).unwrap_or_default().join("/");
            let seen = self.back_edges.entry((pointer.clone(), episode, steps)).or_insert(0);
            *seen += 1;
            if *seen > 1 {
                return Err(format!(
                    "the schema applies its recursive reference {:?} twice to the same value; validation would \
                     take time exponential in the value's depth",
                    bounded(reference)
                ));
            }
            return Ok(1);
        }
        if let Some(&size) = self.memo.get(&pointer) {
            return Ok(size);
        }
        let target = self.root.pointer(&pointer).ok_or_else(unresolved)?;
        self.episodes += 1;
        self.open.insert(pointer.clone(), (self.episodes, self.path.len()));
        let back_edges_before = self.back_edges.len();
        let size = self.size_of(target, depth + 1);
        self.open.remove(&pointer);
        let size = size?;
        // A part that refers back into an open target has a size that depends on where it is used.
        if self.back_edges.len() == back_edges_before {
            self.memo.insert(pointer, size);
        }
        Ok(size)
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
    fn references_the_size_bound_cannot_follow_are_refused() {
        // The same 2^40 fan-out written with anchors, percent-encoded pointers, dynamic references and
        // nested ids: each is refused (or, percent-encoded, counted) instead of slipping past the bound.
        let fan_out = |reference: &dyn Fn(usize) -> serde_json::Value, extra: &dyn Fn(usize) -> serde_json::Value| {
            let mut defs = serde_json::Map::new();
            for level in 0..40 {
                let mut node = serde_json::json!({"anyOf": [reference(level + 1), reference(level + 1)]});
                if let (Some(object), serde_json::Value::Object(more)) = (node.as_object_mut(), extra(level)) {
                    object.extend(more);
                }
                defs.insert(format!("d{level}"), node);
            }
            let mut last = serde_json::json!({"type": "string"});
            if let (Some(object), serde_json::Value::Object(more)) = (last.as_object_mut(), extra(40)) {
                object.extend(more);
            }
            defs.insert("d40".into(), last);
            serde_json::json!({"$defs": defs, "$ref": "#/$defs/d0"})
        };
        let none = |_: usize| serde_json::json!({});
        let anchored = fan_out(
            &|l| serde_json::json!({"$ref": format!("#d{l}")}),
            &|l| serde_json::json!({"$anchor": format!("d{l}")}),
        );
        let error = SchemaValidator::new(&anchored).err().unwrap();
        assert!(error.contains("not a JSON pointer"), "{error}");
        let encoded = fan_out(&|l| serde_json::json!({"$ref": format!("#/%24defs/d{l}")}), &none);
        let error = SchemaValidator::new(&encoded).err().unwrap();
        assert!(error.contains("too large"), "{error}");
        let dynamic = fan_out(&|l| serde_json::json!({"$dynamicRef": format!("#/$defs/d{l}")}), &none);
        assert!(SchemaValidator::new(&dynamic).err().unwrap().contains("$dynamicRef"));
        let with_ids = fan_out(
            &|l| serde_json::json!({"$ref": format!("d{l}.json")}),
            &|l| serde_json::json!({"$id": format!("d{l}.json")}),
        );
        assert!(SchemaValidator::new(&with_ids).is_err());
        // A property that happens to be called "$id" or "$ref" is not a keyword.
        let named = serde_json::json!({"type": "object", "properties": {"$id": {"type": "string"}, "$ref": {"type": "string"}}});
        assert!(SchemaValidator::new(&named).is_ok());
        let dangling = serde_json::json!({"$ref": "#/$defs/missing"});
        assert!(SchemaValidator::new(&dangling).is_err());
        // Draft 4 names a resource with `id`: refused below the root like `$id`.
        let draft4 = serde_json::json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "definitions": {"inner": {"id": "http://e/", "definitions": {}}},
        });
        assert!(SchemaValidator::new(&draft4).is_err());
        // The root's own id, a reference back to the root, and ids in data are all fine.
        let rooted = serde_json::json!({
            "$id": "urn:tree",
            "type": "object",
            "properties": {"child": {"$ref": "#"}, "kind": {"const": {"$id": "x", "$ref": "y"}, "examples": [{"id": "z"}]}},
        });
        assert!(
            SchemaValidator::new(&rooted).is_ok(),
            "{:?}",
            SchemaValidator::new(&rooted).err()
        );
    }

    #[test]
    fn recursion_that_applies_twice_to_one_value_is_refused() {
        // Each level of {"a": ...} is checked against the root twice: 2^depth work for a deep value.
        let twice = serde_json::json!({"type": ["object", "integer"], "properties": {"a": {"allOf": [{"$ref": "#"}, {"$ref": "#"}]}}});
        let error = SchemaValidator::new(&twice).err().unwrap();
        assert!(error.contains("twice to the same value"), "{error}");
        // The same through an intermediate definition, which must not be remembered as small.
        let hidden = serde_json::json!({
            "$defs": {"x": {"$ref": "#"}},
            "properties": {"a": {"anyOf": [{"$ref": "#/$defs/x"}, {"$ref": "#/$defs/x"}]}},
        });
        assert!(SchemaValidator::new(&hidden).is_err());
        // Recursion into different parts of the value is linear: a JSON value, a tree.
        let json_value = serde_json::json!({"anyOf": [
            {"type": ["string", "number", "boolean", "null"]},
            {"type": "array", "items": {"$ref": "#"}},
            {"type": "object", "additionalProperties": {"$ref": "#"}},
        ]});
        assert!(SchemaValidator::new(&json_value).is_ok());
        let tree = serde_json::json!({
            "$defs": {"node": {"type": "object", "properties": {
                "left": {"$ref": "#/$defs/node"}, "right": {"$ref": "#/$defs/node"}, "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}}
            }}, "tag": {"type": "string"}},
            "$ref": "#/$defs/node",
        });
        assert!(
            SchemaValidator::new(&tree).is_ok(),
            "{:?}",
            SchemaValidator::new(&tree).err()
        );
    }

    #[test]
    fn a_schema_that_is_not_one_is_refused_without_fetching_anything() {
        assert!(SchemaValidator::new(&serde_json::json!({"type": "no-such-type"})).is_err());
        let remote = serde_json::json!({"$ref": "https://example.invalid/schema.json"});
        assert!(SchemaValidator::new(&remote).is_err());
    }
}
