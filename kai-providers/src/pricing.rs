//! Estimating what calls cost, from a price table you supply (prices change; none are built in).

use std::collections::BTreeMap;

use kai_core::Usage;
use serde::{Deserialize, Serialize};

/// Prices in a currency of your choice per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Per million input tokens that were not cached.
    pub input_per_million: f64,
    /// Per million output tokens.
    pub output_per_million: f64,
    /// Per million cached input tokens; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_million: Option<f64>,
}

/// Prices by model name. A model without its own entry uses the longest entry that prefixes its name,
/// so `gpt-4o-mini` also prices `gpt-4o-mini-2024-07-18`.
///
/// ```
/// use kai_core::Usage;
/// use kai_providers::pricing::{Price, PriceTable};
///
/// let mut prices = PriceTable::default();
/// prices.insert("gpt-4o-mini", Price { input_per_million: 0.15, output_per_million: 0.60, cached_input_per_million: Some(0.075) });
/// let usage = Usage { input_tokens: 1_000_000, output_tokens: 500_000, cached_input_tokens: 200_000 };
/// let cost = prices.cost("gpt-4o-mini-2024-07-18", &usage).unwrap();
/// assert!((cost - (0.8 * 0.15 + 0.2 * 0.075 + 0.5 * 0.60)).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
}

impl PriceTable {
    /// Sets the price of a model (or of every model whose name starts with `model`).
    pub fn insert(&mut self, model: impl Into<String>, price: Price) {
        self.prices.insert(model.into(), price);
    }

    /// The price that applies to `model`.
    pub fn price_for(&self, model: &str) -> Option<&Price> {
        self.prices.get(model).or_else(|| {
            self.prices
                .iter()
                .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, price)| price)
        })
    }

    /// The estimated cost of `usage` on `model`, or `None` when the table has no price for it.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        let price = self.price_for(model)?;
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        let cached_price = price.cached_input_per_million.unwrap_or(price.input_per_million);
        let per_token = 1e-6;
        Some(
            uncached as f64 * price.input_per_million * per_token
                + cached as f64 * cached_price * per_token
                + usage.output_tokens as f64 * price.output_per_million * per_token,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_and_unknown_models_have_no_price() {
        let mut table: PriceTable = serde_json::from_str(
            r#"{"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0},
                "gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6}}"#,
        )
        .unwrap();
        assert_eq!(
            table.price_for("gpt-4o-mini-2024-07-18").unwrap().input_per_million,
            0.15
        );
        assert_eq!(table.price_for("gpt-4o-2024-08-06").unwrap().input_per_million, 2.5);
        assert!(table.cost("claude-x", &Usage::default()).is_none());
        table.insert(
            "claude-x",
            Price {
                input_per_million: 3.0,
                output_per_million: 15.0,
                cached_input_per_million: None,
            },
        );
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 0,
            cached_input_tokens: 50,
        };
        assert!(
            (table.cost("claude-x", &usage).unwrap() - 30e-6).abs() < 1e-12,
            "cached never exceeds input"
        );
    }
}
