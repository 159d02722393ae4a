//! Metadata filters: evaluated in memory here, translated to SQL by database-backed stores.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// A condition on a document's top-level metadata keys.
///
/// ```
/// use kai_memory::store::Filter;
/// use serde_json::json;
///
/// let filter = Filter::and([Filter::eq("lang", json!("en")), Filter::gt("year", 2020.0)]);
/// let metadata = json!({"lang": "en", "year": 2024}).as_object().unwrap().clone();
/// assert!(filter.matches(&metadata));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Filter {
    /// The key holds exactly this value.
    Eq {
        /// The key.
        key: String,
        /// The value.
        value: Value,
    },
    /// The key holds one of these values.
    In {
        /// The key.
        key: String,
        /// The values.
        values: Vec<Value>,
    },
    /// The key holds a number greater than this.
    Gt {
        /// The key.
        key: String,
        /// The bound.
        value: f64,
    },
    /// The key holds a number less than this.
    Lt {
        /// The key.
        key: String,
        /// The bound.
        value: f64,
    },
    /// The key is present.
    Exists {
        /// The key.
        key: String,
    },
    /// Every filter holds.
    And {
        /// The filters.
        filters: Vec<Filter>,
    },
    /// At least one filter holds.
    Or {
        /// The filters.
        filters: Vec<Filter>,
    },
    /// The filter does not hold.
    Not {
        /// The filter.
        filter: Box<Filter>,
    },
}

impl Filter {
    /// `key == value`.
    pub fn eq(key: impl Into<String>, value: Value) -> Self {
        Filter::Eq { key: key.into(), value }
    }

    /// `key > value` (numbers only).
    pub fn gt(key: impl Into<String>, value: f64) -> Self {
        Filter::Gt { key: key.into(), value }
    }

    /// `key < value` (numbers only).
    pub fn lt(key: impl Into<String>, value: f64) -> Self {
        Filter::Lt { key: key.into(), value }
    }

    /// All of these.
    pub fn and(filters: impl IntoIterator<Item = Filter>) -> Self {
        Filter::And {
            filters: filters.into_iter().collect(),
        }
    }

    /// Any of these.
    pub fn or(filters: impl IntoIterator<Item = Filter>) -> Self {
        Filter::Or {
            filters: filters.into_iter().collect(),
        }
    }

    /// A filter from JSON as other languages write it: the tagged form (`{"op": "eq", "key": ..., "value":
    /// ...}`), or a plain object of keys and the values they must equal. An object with an `op` key is
    /// read as the tagged form (filter on a metadata key named `op` with the tagged form).
    ///
    /// ```
    /// use kai_memory::store::Filter;
    /// use serde_json::json;
    ///
    /// let short = Filter::from_json(json!({"lang": "en"})).unwrap();
    /// assert_eq!(short, Filter::and([Filter::eq("lang", json!("en"))]));
    /// let tagged = Filter::from_json(json!({"op": "gt", "key": "year", "value": 2020})).unwrap();
    /// assert_eq!(tagged, Filter::gt("year", 2020.0));
    /// ```
    pub fn from_json(value: Value) -> Result<Filter, Error> {
        match value {
            Value::Object(map) if !map.contains_key("op") => {
                Ok(Filter::and(map.into_iter().map(|(key, value)| Filter::eq(key, value))))
            }
            value => {
                serde_json::from_value(value).map_err(|error| Error::InvalidConfig(format!("not a filter: {error}")))
            }
        }
    }

    /// Whether `metadata` satisfies the filter.
    pub fn matches(&self, metadata: &serde_json::Map<String, Value>) -> bool {
        match self {
            Filter::Eq { key, value } => metadata.get(key).is_some_and(|v| same_json(v, value)),
            Filter::In { key, values } => metadata
                .get(key)
                .is_some_and(|v| values.iter().any(|value| same_json(v, value))),
            Filter::Gt { key, value } => metadata.get(key).and_then(Value::as_f64).is_some_and(|v| v > *value),
            Filter::Lt { key, value } => metadata.get(key).and_then(Value::as_f64).is_some_and(|v| v < *value),
            Filter::Exists { key } => metadata.contains_key(key),
            Filter::And { filters } => filters.iter().all(|f| f.matches(metadata)),
            Filter::Or { filters } => filters.iter().any(|f| f.matches(metadata)),
            Filter::Not { filter } => !filter.matches(metadata),
        }
    }
}

/// Whether two JSON values are equal as PostgreSQL's `jsonb` compares them (so that a database store's
/// SQL and [`Filter::matches`] select the same documents): numbers by value (`1` equals `1.0`), objects
/// by their members whatever their order, arrays element by element, at any depth.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => same_number(a, b),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(key, a)| b.get(key).is_some_and(|b| same_json(a, b)))
        }
        _ => a == b,
    }
}

/// Whether two JSON numbers have the same value: integers exactly, an integer and a float when the
/// float is that integer, floats as floats.
fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    let integer = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => a == b,
        (Some(i), None) => b.as_f64().is_some_and(|f| float_is_integer(f, i)),
        (None, Some(i)) => a.as_f64().is_some_and(|f| float_is_integer(f, i)),
        (None, None) => a.as_f64() == b.as_f64(),
    }
}

/// Whether `float` is exactly the integer `integer`.
fn float_is_integer(float: f64, integer: i128) -> bool {
    float.fract() == 0.0 && float.abs() < 2f64.powi(127) && float as i128 == integer
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// As PostgreSQL's jsonb compares: `1 = 1.0`, at any depth, but not `1 = 1.5` or `"1" = 1`.
    #[test]
    fn equality_is_by_value_as_jsonb_has_it() {
        let metadata = json!({"n": 1, "f": 2.0, "big": u64::MAX, "nested": {"a": [1, {"b": 2.0}]}})
            .as_object()
            .unwrap()
            .clone();
        assert!(Filter::eq("n", json!(1.0)).matches(&metadata));
        assert!(Filter::eq("f", json!(2)).matches(&metadata));
        assert!(!Filter::eq("n", json!(1.5)).matches(&metadata));
        assert!(!Filter::eq("n", json!("1")).matches(&metadata));
        assert!(Filter::eq("big", json!(u64::MAX)).matches(&metadata));
        assert!(!Filter::eq("big", json!(u64::MAX - 1)).matches(&metadata));
        assert!(Filter::eq("nested", json!({"a": [1.0, {"b": 2}]})).matches(&metadata));
        assert!(!Filter::eq("nested", json!({"a": [1.0]})).matches(&metadata));
        let one_of = Filter::In {
            key: "n".into(),
            values: vec![json!(3), json!(1.0)],
        };
        assert!(one_of.matches(&metadata));
    }

    #[test]
    fn filters_evaluate_and_round_trip() {
        let metadata = json!({"lang": "en", "year": 2024, "tags": "x"})
            .as_object()
            .unwrap()
            .clone();
        let filter = Filter::and([
            Filter::In {
                key: "lang".into(),
                values: vec![json!("en"), json!("de")],
            },
            Filter::or([Filter::lt("year", 2000.0), Filter::gt("year", 2020.0)]),
            Filter::Not {
                filter: Box::new(Filter::Exists { key: "draft".into() }),
            },
        ]);
        assert!(filter.matches(&metadata));
        assert!(!Filter::gt("lang", 1.0).matches(&metadata), "strings are not numbers");
        let back: Filter = serde_json::from_str(&serde_json::to_string(&filter).unwrap()).unwrap();
        assert_eq!(back, filter);
    }
}
