//! JSON Schemas rewritten into the subset a provider's constrained decoding accepts.
//!
//! A schema generated from a Rust type (or given by a caller) uses keywords, formats and optional
//! properties that OpenAI's strict mode and Anthropic's output format refuse with a 400. Each
//! provider's wire module picks a [`Dialect`]; what the rewrite drops (a length or range limit, say) is
//! still checked by the agent's own validation after the answer arrives.

use serde_json::{Map, Value};

/// What a provider's structured-output decoding accepts.
pub(crate) struct Dialect {
    /// Every property is listed in `required`; properties that were optional become nullable.
    pub(crate) all_required: bool,
    /// The `format` values kept; any other is removed.
    pub(crate) formats: &'static [&'static str],
    /// Keywords removed wherever they appear in a schema, besides [`NOWHERE_SUPPORTED`].
    pub(crate) dropped: &'static [&'static str],
    /// `oneOf` is sent as `anyOf`.
    pub(crate) one_of_as_any_of: bool,
}

/// OpenAI's strict mode: closed objects, every property required, `anyOf` instead of `oneOf`, and only
/// the documented formats and keywords.
pub(crate) const OPENAI_STRICT: Dialect = Dialect {
    all_required: true,
    formats: &[
        "date-time",
        "time",
        "date",
        "duration",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "uuid",
    ],
    dropped: &["default", "minLength", "maxLength"],
    one_of_as_any_of: true,
};

/// Keywords neither provider's decoding takes.
const NOWHERE_SUPPORTED: &[&str] = &[
    "patternProperties",
    "unevaluatedProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "$schema",
    "title",
];

/// Anthropic's output format: closed objects, no numeric or length limits, few array limits, and only
/// the documented formats.
pub(crate) const ANTHROPIC: Dialect = Dialect {
    all_required: false,
    formats: &[
        "date-time",
        "time",
        "date",
        "duration",
        "email",
        "hostname",
        "uri",
        "ipv4",
        "ipv6",
        "uuid",
    ],
    dropped: &[
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "maxItems",
        "uniqueItems",
    ],
    one_of_as_any_of: true,
};

/// The deepest nesting rewritten; deeper parts are left as they are (the provider will say no).
const MAX_DEPTH: usize = 64;

/// `schema` rewritten for `dialect`.
pub(crate) fn rewrite(schema: &Value, dialect: &Dialect) -> Rewritten {
    let mut rewritten = Rewritten {
        schema: schema.clone(),
        has_maps: false,
    };
    rewrite_in_place(&mut rewritten.schema, dialect, 0, &mut rewritten.has_maps);
    rewritten
}

/// A schema rewritten for a dialect.
pub(crate) struct Rewritten {
    /// The rewritten schema.
    pub(crate) schema: Value,
    /// It has an object with keys of the caller's choosing (`additionalProperties` as a schema, a Rust
    /// `HashMap`), left open: closing it would make every answer an empty map. No provider's strict
    /// decoding takes such an object, so the caller sends the schema as a hint instead.
    pub(crate) has_maps: bool,
}

fn rewrite_in_place(schema: &mut Value, dialect: &Dialect, depth: usize, has_maps: &mut bool) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    // Keys of the caller's choosing: values under a schema (`additionalProperties`) or under patterns.
    let map_values = object
        .get("additionalProperties")
        .is_some_and(|extra| extra != &Value::Bool(false))
        || object
            .get("patternProperties")
            .is_some_and(|patterns| patterns != &Value::Object(Map::new()));
    for keyword in dialect.dropped.iter().chain(NOWHERE_SUPPORTED) {
        object.remove(*keyword);
    }
    if object
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|format| !dialect.formats.contains(&format))
    {
        object.remove("format");
    }
    if let Some(min_items) = object.get("minItems").and_then(Value::as_u64)
        && dialect.dropped.contains(&"maxItems")
        && min_items > 1
    {
        object.remove("minItems");
    }
    if dialect.one_of_as_any_of
        && let Some(one_of) = object.remove("oneOf")
    {
        object.insert("anyOf".into(), one_of);
    }
    if map_values {
        *has_maps = true;
    } else if is_object_schema(object) {
        close_object(object, dialect);
    }
    // Recurse into every place a subschema may stand.
    for keyword in ["properties", "$defs", "definitions"] {
        if let Some(Value::Object(children)) = object.get_mut(keyword) {
            for child in children.values_mut() {
                rewrite_in_place(child, dialect, depth + 1, has_maps);
            }
        }
    }
    for keyword in ["items", "additionalItems", "additionalProperties", "contains", "not"] {
        if let Some(child) = object.get_mut(keyword) {
            rewrite_in_place(child, dialect, depth + 1, has_maps);
        }
    }
    for keyword in ["anyOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(children)) = object.get_mut(keyword) {
            for child in children {
                rewrite_in_place(child, dialect, depth + 1, has_maps);
            }
        }
    }
}

fn is_object_schema(object: &Map<String, Value>) -> bool {
    let typed_object = match object.get("type") {
        Some(Value::String(kind)) => kind == "object",
        Some(Value::Array(kinds)) => kinds.iter().any(|kind| kind == "object"),
        _ => false,
    };
    typed_object || object.contains_key("properties")
}

/// Forbids unknown keys and, where the dialect wants it, requires every property, making the ones that
/// were optional nullable so the model can still leave them empty.
fn close_object(object: &mut Map<String, Value>, dialect: &Dialect) {
    object.insert("additionalProperties".into(), Value::Bool(false));
    if !dialect.all_required {
        return;
    }
    let required: Vec<String> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let Some(Value::Object(properties)) = object.get_mut("properties") else {
        object.insert("properties".into(), Value::Object(Map::new()));
        object.insert("required".into(), Value::Array(Vec::new()));
        return;
    };
    let mut all = Vec::with_capacity(properties.len());
    for (name, property) in properties.iter_mut() {
        if !required.contains(name) {
            make_nullable(property);
        }
        all.push(Value::String(name.clone()));
    }
    object.insert("required".into(), Value::Array(all));
}

fn make_nullable(schema: &mut Value) {
    let null = Value::String("null".into());
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    match object.get_mut("type") {
        Some(Value::String(kind)) if kind == "null" => return,
        Some(Value::String(kind)) => {
            let kind = Value::String(std::mem::take(kind));
            object.insert("type".into(), Value::Array(vec![kind, null.clone()]));
        }
        Some(Value::Array(kinds)) => {
            if !kinds.contains(&null) {
                kinds.push(null.clone());
            }
        }
        _ => {
            if let Some(Value::Array(options)) = object.get_mut("anyOf") {
                if !options.iter().any(|option| option.get("type") == Some(&null)) {
                    options.push(serde_json::json!({"type": "null"}));
                }
                return;
            }
            let inner = std::mem::take(object);
            object.insert(
                "anyOf".into(),
                Value::Array(vec![Value::Object(inner), serde_json::json!({"type": "null"})]),
            );
            return;
        }
    }
    if let Some(Value::Array(values)) = object.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_properties_become_required_and_nullable_in_strict_mode() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "string"},
                "b": {"type": ["integer", "null"], "format": "uint32", "minimum": 0},
                "c": {"enum": ["x", "y"], "type": "string"},
                "d": {"type": "object", "properties": {"e": {"type": "string", "minLength": 2}}},
            },
            "required": ["a"],
        });
        let strict = rewrite(&schema, &OPENAI_STRICT);
        assert!(!strict.has_maps);
        assert_eq!(
            strict.schema,
            json!({
                "type": "object",
                "properties": {
                    "a": {"type": "string"},
                    "b": {"type": ["integer", "null"], "minimum": 0},
                    "c": {"enum": ["x", "y", null], "type": ["string", "null"]},
                    "d": {
                        "type": ["object", "null"],
                        "properties": {"e": {"type": ["string", "null"]}},
                        "required": ["e"],
                        "additionalProperties": false,
                    },
                },
                "required": ["a", "b", "c", "d"],
                "additionalProperties": false,
            })
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_left_alone() {
        // serde_json refuses to parse JSON nested deeper than 128, so no schema read from text is deeper.
        let mut schema = json!({"type": "string", "minLength": 1});
        for _ in 0..120 {
            schema = json!({"type": "array", "items": schema, "maxItems": 3});
        }
        let rewritten = rewrite(&schema, &ANTHROPIC).schema;
        assert!(rewritten.get("maxItems").is_none());
        let mut innermost = &rewritten;
        while let Some(items) = innermost.get("items") {
            innermost = items;
        }
        assert_eq!(innermost["minLength"], 1, "below the depth limit nothing is rewritten");
    }

    #[test]
    fn a_map_is_left_open_and_reported() {
        // A `HashMap<String, u32>` field: closing it would make every answer an empty map.
        let schema = json!({
            "type": "object",
            "properties": {"counts": {"type": "object", "additionalProperties": {"type": "integer", "format": "uint32"}}},
            "required": ["counts"],
        });
        let rewritten = rewrite(&schema, &OPENAI_STRICT);
        assert!(rewritten.has_maps);
        assert_eq!(
            rewritten.schema["properties"]["counts"],
            json!({"type": "object", "additionalProperties": {"type": "integer"}})
        );
        assert_eq!(rewritten.schema["additionalProperties"], false);
        let patterned = json!({"type": "object", "patternProperties": {"^x-": {"type": "string"}}});
        let rewritten = rewrite(&patterned, &OPENAI_STRICT);
        assert!(rewritten.has_maps);
        assert!(rewritten.schema.get("additionalProperties").is_none(), "left open");
    }
}
