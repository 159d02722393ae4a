//! JSON Schemas rewritten into the subset a provider's constrained decoding accepts.
//!
//! A schema generated from a Rust type (or given by a caller) uses keywords, formats and optional
//! properties that OpenAI's strict mode and Anthropic's output format refuse with a 400. Each
//! provider's wire module picks a [`Dialect`]; what the rewrite drops (a length or range limit, say) is
//! still checked by the agent's own validation after the answer arrives.

use serde_json::{Map, Value};

/// What a provider's structured-output decoding accepts.
pub(crate) struct Dialect {
    /// Objects get `additionalProperties: false` (all but maps, which stay open).
    pub(crate) closed_objects: bool,
    /// Every property is listed in `required`; properties that were optional become nullable.
    pub(crate) all_required: bool,
    /// The `format` values kept; any other is removed.
    pub(crate) formats: &'static [&'static str],
    /// Keywords removed wherever they appear in a schema, besides [`NOWHERE_SUPPORTED`].
    pub(crate) dropped: &'static [&'static str],
    /// `oneOf` is sent as `anyOf`.
    pub(crate) one_of_as_any_of: bool,
    /// The only keywords kept, when the provider documents a closed list; `None` keeps all but the
    /// dropped ones.
    pub(crate) only: Option<&'static [&'static str]>,
    /// `const: v` is sent as `enum: [v]`, and enums keep only strings and numbers (a `null` among them
    /// becomes a `"null"` type).
    pub(crate) scalar_enums: bool,
    /// A `$ref` stands alone: keywords beside it move into an `anyOf` wrapper around the reference.
    pub(crate) lone_refs: bool,
}

/// OpenAI's strict mode: closed objects, every property required, `anyOf` instead of `oneOf`, and only
/// the documented formats and keywords.
pub(crate) const OPENAI_STRICT: Dialect = Dialect {
    closed_objects: true,
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
    only: None,
    scalar_enums: false,
    lone_refs: false,
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
    closed_objects: true,
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
    only: None,
    scalar_enums: false,
    lone_refs: false,
};

/// Gemini's `responseJsonSchema` and `parametersJsonSchema`: a closed list of keywords, enums of strings
/// and numbers only, and nothing but `$` keywords beside a `$ref`; objects stay as open as they were.
pub(crate) const GEMINI: Dialect = Dialect {
    closed_objects: false,
    all_required: false,
    formats: &["date-time", "date", "time"],
    dropped: &[],
    one_of_as_any_of: false,
    only: Some(&[
        "$id",
        "$defs",
        "definitions",
        "$ref",
        "$anchor",
        "type",
        "format",
        "description",
        "enum",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "properties",
        "additionalProperties",
        "required",
        "propertyOrdering",
    ]),
    scalar_enums: true,
    lone_refs: true,
};

/// Cohere's `response_format` schema: no `allOf`, `oneOf` or `not`, no numeric, length or item-count
/// limits, no patterns (its regexes refuse anchors and lookarounds), four formats. Cohere also wants at
/// least one required property on every object, which no rewrite can supply without changing the
/// schema's meaning; such a schema is sent as it is, for Cohere to refuse.
pub(crate) const COHERE: Dialect = Dialect {
    closed_objects: false,
    all_required: false,
    formats: &["date-time", "uuid", "date", "time"],
    dropped: &[
        "allOf",
        "not",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "uniqueItems",
        "pattern",
        "default",
        "examples",
    ],
    one_of_as_any_of: true,
    only: None,
    scalar_enums: false,
    lone_refs: false,
};

impl Dialect {
    /// Whether the provider takes `keyword` at all.
    fn accepts(&self, keyword: &str) -> bool {
        !self.dropped.contains(&keyword)
            && !NOWHERE_SUPPORTED.contains(&keyword)
            && self.only.is_none_or(|only| only.contains(&keyword))
    }
}

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
    if dialect.scalar_enums {
        scalar_enum(object);
    }
    if !dialect.accepts("allOf")
        && !object.contains_key("anyOf")
        && let Some(Value::Array(all_of)) = object.get("allOf")
        && all_of.len() == 1
        && let Some(all_of) = object.remove("allOf")
    {
        // One subschema that must hold is one of one subschemas: the form older generators give a
        // reference with a description.
        object.insert("anyOf".into(), all_of);
    }
    object.retain(|keyword, _| dialect.accepts(keyword));
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
    } else if dialect.closed_objects && is_object_schema(object) {
        close_object(object, dialect);
    }
    if dialect.lone_refs {
        lone_ref(object);
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
    for keyword in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(children)) = object.get_mut(keyword) {
            for child in children {
                rewrite_in_place(child, dialect, depth + 1, has_maps);
            }
        }
    }
}

/// `const` as a one-value `enum`, and an enum cut down to strings and numbers (one with nothing left
/// goes). A `null` the enum allowed becomes an `anyOf` branch of its own, so it stays allowed.
fn scalar_enum(object: &mut Map<String, Value>) {
    if let Some(value) = object.remove("const") {
        object.insert("enum".into(), Value::Array(vec![value]));
    }
    let Some(Value::Array(values)) = object.get_mut("enum") else {
        return;
    };
    let had_null = values.contains(&Value::Null);
    values.retain(|value| value.is_string() || value.is_number());
    if values.is_empty() {
        object.remove("enum");
        return;
    }
    if !had_null {
        return;
    }
    match object.get_mut("type") {
        Some(Value::Array(kinds)) => {
            kinds.retain(|kind| kind != "null");
            if let [kind] = kinds.as_mut_slice() {
                let kind = std::mem::take(kind);
                object.insert("type".into(), kind);
            }
        }
        Some(Value::String(kind)) if kind == "null" => {
            object.remove("type");
        }
        _ => {}
    }
    let values = std::mem::take(object);
    object.insert(
        "anyOf".into(),
        Value::Array(vec![Value::Object(values), serde_json::json!({"type": "null"})]),
    );
}

/// A `$ref` with other keywords beside it becomes `anyOf: [{"$ref": …}]` beside them. A reference
/// beside an `anyOf` has no such form (it would need `allOf`) and is left for the provider to judge.
fn lone_ref(object: &mut Map<String, Value>) {
    let crowded = object.keys().any(|keyword| !keyword.starts_with('$'));
    if !crowded || object.contains_key("anyOf") {
        return;
    }
    if let Some(reference) = object.remove("$ref") {
        object.insert("anyOf".into(), serde_json::json!([{ "$ref": reference }]));
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

    #[test]
    fn a_single_all_of_becomes_an_any_of_where_all_of_is_refused_and_a_crowded_reference_is_wrapped() {
        let schema = json!({
            "type": "object",
            "properties": {
                "one": {"allOf": [{"$ref": "#/$defs/A"}], "description": "One."},
                "two": {"allOf": [{"type": "string"}, {"maxLength": 3}]},
                "both": {"$ref": "#/$defs/A", "anyOf": [{"type": "string"}], "description": "Both."},
                "bare": {"$ref": "#/$defs/A", "$comment": "fine"}
            },
            "$defs": {"A": {"type": "string"}}
        });
        let gemini = rewrite(&schema, &GEMINI).schema;
        assert_eq!(
            gemini["properties"]["one"],
            json!({"anyOf": [{"$ref": "#/$defs/A"}], "description": "One."})
        );
        assert_eq!(
            gemini["properties"]["two"],
            json!({}),
            "several subschemas that must all hold are dropped"
        );
        assert_eq!(
            gemini["properties"]["both"],
            json!({"$ref": "#/$defs/A", "anyOf": [{"type": "string"}], "description": "Both."}),
            "no form without allOf: left for the provider to judge"
        );
        assert_eq!(
            gemini["properties"]["bare"],
            json!({"$ref": "#/$defs/A"}),
            "only `$` keywords beside it"
        );
        let cohere = rewrite(&schema, &COHERE).schema;
        assert_eq!(
            cohere["properties"]["one"],
            json!({"anyOf": [{"$ref": "#/$defs/A"}], "description": "One."})
        );
        let anthropic = rewrite(&schema, &ANTHROPIC).schema;
        assert_eq!(
            anthropic["properties"]["one"]["allOf"],
            json!([{"$ref": "#/$defs/A"}]),
            "kept where allowed"
        );
    }
}
