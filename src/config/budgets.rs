//! The `budgets` section of `config.json` (`docs/budgets.md` §2): the price table, per provider and
//! model, in integer micro-units per million tokens, and the bounds used to size a call's worst case.
//! Read by serde into [`BudgetsConfig`], checked and turned into [`Budgets`] here.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::meter::price::Price;
use crate::store::MAX_TIME;
use crate::text::strict_json::unique_names;
use crate::upstream::builtins::valid_name;

/// Most models the price table may hold in all: each is a `model` label value in `/metrics`.
const MAX_PRICED_MODELS: usize = 1000;
/// Longest model name in the price table, in bytes.
const MAX_MODEL_NAME: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// Prices by provider name, then by model.
    #[serde(deserialize_with = "unique_names")]
    pub prices: BTreeMap<String, PriceTable>,
    /// Input tokens reserved for each image, audio or file part of a request.
    pub part_allowance: u64,
    /// Input tokens reserved on top of the body's bytes for prompts a provider adds itself.
    pub input_overhead: u64,
    /// Output ceiling written into a budgeted request that names none.
    pub default_max_output: u64,
    /// Fewest output tokens worth forwarding a budgeted call for; below, it is refused.
    pub min_output: u64,
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        BudgetsConfig {
            prices: BTreeMap::new(),
            part_allowance: 2000,
            input_overhead: 512,
            default_max_output: 4096,
            min_output: 16,
        }
    }
}

/// One provider's models and their prices.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct PriceTable(#[serde(deserialize_with = "unique_names")] pub BTreeMap<String, PriceEntry>);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    pub input: u64,
    pub output: u64,
    pub cached_input: Option<u64>,
    pub cache_write: Option<u64>,
}

/// The checked section.
#[derive(Debug, Clone)]
pub struct Budgets {
    prices: HashMap<String, HashMap<String, Price>>,
    pub part_allowance: u64,
    pub input_overhead: u64,
    pub default_max_output: u64,
    pub min_output: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        let raw = BudgetsConfig::default();
        Budgets {
            prices: HashMap::new(),
            part_allowance: raw.part_allowance,
            input_overhead: raw.input_overhead,
            default_max_output: raw.default_max_output,
            min_output: raw.min_output,
        }
    }
}

impl Budgets {
    /// The price of `model` at `provider`, if the table has one.
    pub fn price(&self, provider: &str, model: &str) -> Option<Price> {
        self.prices.get(provider)?.get(model).copied()
    }

    /// Whether `model` is in the table for `provider`: only those are `model` label values.
    pub fn is_priced(&self, provider: &str, model: &str) -> bool {
        self.price(provider, model).is_some()
    }
}

/// Check `raw`. Errors are `(field, problem)`.
pub(super) fn budgets(raw: &BudgetsConfig) -> Result<Budgets, (String, String)> {
    let bounded = |field: &str, v: u64, lo: u64| {
        if (lo..=MAX_TIME).contains(&v) {
            Ok(v)
        } else {
            Err((
                format!("budgets.{field}"),
                format!("expected a whole number of tokens from {lo} to 2^53-1"),
            ))
        }
    };
    let part_allowance = bounded("part_allowance", raw.part_allowance, 0)?;
    let input_overhead = bounded("input_overhead", raw.input_overhead, 0)?;
    let default_max_output = bounded("default_max_output", raw.default_max_output, 1)?;
    let min_output = bounded("min_output", raw.min_output, 1)?;
    if min_output > default_max_output {
        return Err((
            "budgets.min_output".into(),
            "expected at most budgets.default_max_output".into(),
        ));
    }
    let mut prices = HashMap::new();
    let mut count = 0;
    for (provider, table) in &raw.prices {
        if !valid_name(provider) {
            return Err((
                format!("budgets.prices.{provider}"),
                "expected a provider name (a-z 0-9 _ -, 1 to 32 characters)".into(),
            ));
        }
        let mut models = HashMap::new();
        for (model, p) in &table.0 {
            let field = format!("budgets.prices.{provider}.{model}");
            if model.is_empty()
                || model.len() > MAX_MODEL_NAME
                || model.chars().any(char::is_control)
            {
                return Err((
                    field,
                    "expected a model name of 1 to 256 characters without control characters"
                        .into(),
                ));
            }
            let price = Price {
                input: p.input,
                output: p.output,
                cached_input: p.cached_input.unwrap_or(p.input),
                cache_write: p.cache_write.unwrap_or(p.input),
            };
            for (name, v) in [
                ("input", price.input),
                ("output", price.output),
                ("cached_input", price.cached_input),
                ("cache_write", price.cache_write),
            ] {
                if v > MAX_TIME {
                    return Err((
                        format!("{field}.{name}"),
                        "expected micro-units per million tokens from 0 to 2^53-1".into(),
                    ));
                }
            }
            models.insert(model.clone(), price);
            count += 1;
        }
        prices.insert(provider.clone(), models);
    }
    if count > MAX_PRICED_MODELS {
        return Err((
            "budgets.prices".into(),
            format!("expected at most {MAX_PRICED_MODELS} models in all"),
        ));
    }
    Ok(Budgets {
        prices,
        part_allowance,
        input_overhead,
        default_max_output,
        min_output,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse_config;
    use std::path::Path;

    fn parse(text: &str) -> Result<crate::config::types::Config, String> {
        parse_config(text, Path::new("config.json")).map_err(|e| e.to_string())
    }

    #[test]
    fn prices_are_read_with_defaults_for_cache_prices() {
        let c = parse(
            r#"{"budgets": {"prices": {"openai": {"gpt-4o": {"input": 2500000, "output": 10000000}}}}}"#,
        )
        .unwrap();
        let p = c.budgets.price("openai", "gpt-4o").unwrap();
        assert_eq!(
            (p.input, p.output, p.cached_input, p.cache_write),
            (2_500_000, 10_000_000, 2_500_000, 2_500_000)
        );
        assert!(c.budgets.price("openai", "gpt-4").is_none());
        assert_eq!(c.budgets.default_max_output, 4096);
    }

    #[test]
    fn bad_tables_are_refused_naming_the_field() {
        for (text, field) in [
            (
                r#"{"budgets": {"prices": {"openai": {"m": {"input": 1.5, "output": 1}}}}}"#,
                "budgets",
            ),
            (
                r#"{"budgets": {"prices": {"openai": {"m": {"input": 1}}}}}"#,
                "budgets",
            ),
            (
                r#"{"budgets": {"prices": {"Open AI": {"m": {"input": 1, "output": 1}}}}}"#,
                "budgets.prices.Open AI",
            ),
            (
                r#"{"budgets": {"prices": {"openai": {"m": {"input": 9007199254740992, "output": 1}}}}}"#,
                "budgets.prices.openai.m.input",
            ),
            (r#"{"budgets": {"min_output": 0}}"#, "budgets.min_output"),
            (
                r#"{"budgets": {"min_output": 10, "default_max_output": 5}}"#,
                "budgets.min_output",
            ),
            (
                r#"{"budgets": {"prices": {"openai": {"m": {"input": 1, "output": 1}, "m": {"input": 1, "output": 1}}}}}"#,
                "budgets",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
