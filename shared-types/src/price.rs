//! The editable price table: USD per million tokens, per model id prefix.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::MicroUsd;

/// Prices per **million** tokens, in µUSD (3 USD/MTok = `MicroUsd(3_000_000)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrices {
    pub input: MicroUsd,
    pub cache_write_5m: MicroUsd,
    pub cache_write_1h: MicroUsd,
    pub cache_read: MicroUsd,
    pub output: MicroUsd,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceEntry {
    /// Model ids starting with this are priced by this entry (the longest prefix wins).
    pub model_prefix: String,
    pub label: String,
    pub prices: ModelPrices,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable {
    pub entries: Vec<PriceEntry>,
    /// Web search, per 1,000 requests.
    pub web_search_per_thousand: MicroUsd,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PriceError {
    #[error("no price for model {0:?}: add it to the price table")]
    UnknownModel(String),
    #[error("a price entry has an empty model prefix")]
    EmptyPrefix,
    #[error("model prefix {0:?} appears twice")]
    DuplicatePrefix(String),
    #[error("price of {0:?} is negative")]
    NegativePrice(String),
    #[error("the price table is empty")]
    Empty,
}

fn usd_per_mtok(input: &str, write_5m: &str, write_1h: &str, read: &str, output: &str) -> ModelPrices {
    let p = |s: &str| MicroUsd::parse_usd(s).expect("built-in prices are valid decimals");
    ModelPrices { input: p(input), cache_write_5m: p(write_5m), cache_write_1h: p(write_1h), cache_read: p(read), output: p(output) }
}

fn entry(prefix: &str, label: &str, prices: ModelPrices) -> PriceEntry {
    PriceEntry { model_prefix: prefix.to_string(), label: label.to_string(), prices }
}

impl Default for PriceTable {
    /// Published prices (docs/anthropic-admin-api.md); family prefixes price unknown versions like
    /// the newest of the family.
    fn default() -> Self {
        let opus_new = usd_per_mtok("5", "6.25", "10", "0.50", "25");
        let opus_4 = usd_per_mtok("15", "18.75", "30", "1.50", "75");
        let sonnet = usd_per_mtok("3", "3.75", "6", "0.30", "15");
        let haiku_45 = usd_per_mtok("1", "1.25", "2", "0.10", "5");
        let haiku_35 = usd_per_mtok("0.80", "1", "1.6", "0.08", "4");
        PriceTable {
            entries: vec![
                entry("claude-opus-4-5", "Opus 4.5", opus_new.clone()),
                entry("claude-opus-4-6", "Opus 4.6", opus_new.clone()),
                entry("claude-opus-4-1", "Opus 4.1", opus_4.clone()),
                entry("claude-opus-4-2025", "Opus 4", opus_4),
                entry("claude-opus", "Opus (family)", opus_new),
                entry("claude-sonnet-4", "Sonnet 4.x", sonnet.clone()),
                entry("claude-sonnet", "Sonnet (family)", sonnet),
                entry("claude-haiku-4-5", "Haiku 4.5", haiku_45.clone()),
                entry("claude-3-5-haiku", "Haiku 3.5", haiku_35),
                entry("claude-haiku", "Haiku (family)", haiku_45),
            ],
            web_search_per_thousand: MicroUsd::from_usd(10),
        }
    }
}

impl PriceTable {
    /// The entry with the longest prefix of `model`.
    pub fn lookup(&self, model: &str) -> Result<&PriceEntry, PriceError> {
        self.entries
            .iter()
            .filter(|e| !e.model_prefix.is_empty() && model.starts_with(&e.model_prefix))
            .max_by_key(|e| e.model_prefix.len())
            .ok_or_else(|| PriceError::UnknownModel(model.chars().take(100).collect()))
    }

    pub fn validate(&self) -> Result<(), PriceError> {
        if self.entries.is_empty() {
            return Err(PriceError::Empty);
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.entries {
            if e.model_prefix.trim().is_empty() {
                return Err(PriceError::EmptyPrefix);
            }
            if !seen.insert(e.model_prefix.as_str()) {
                return Err(PriceError::DuplicatePrefix(e.model_prefix.clone()));
            }
            let p = &e.prices;
            if [p.input, p.cache_write_5m, p.cache_write_1h, p.cache_read, p.output].iter().any(|m| m.0 < 0) {
                return Err(PriceError::NegativePrice(e.model_prefix.clone()));
            }
        }
        if self.web_search_per_thousand.0 < 0 {
            return Err(PriceError::NegativePrice("web search".to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_families_fall_back() {
        let table = PriceTable::default();
        assert_eq!(table.lookup("claude-opus-4-1-20250805").unwrap().label, "Opus 4.1");
        assert_eq!(table.lookup("claude-opus-4-5-20251101").unwrap().label, "Opus 4.5");
        assert_eq!(table.lookup("claude-opus-9").unwrap().label, "Opus (family)");
        assert_eq!(table.lookup("claude-sonnet-4-5-20250929").unwrap().prices.input, MicroUsd(3_000_000));
        assert_eq!(table.lookup("claude-3-5-haiku-20241022").unwrap().prices.cache_read, MicroUsd(80_000));
        assert_eq!(table.lookup("gpt-5"), Err(PriceError::UnknownModel("gpt-5".into())));
        table.validate().unwrap();
    }

    #[test]
    fn validation_refuses_bad_tables() {
        let mut table = PriceTable::default();
        table.entries.push(table.entries[0].clone());
        assert!(matches!(table.validate(), Err(PriceError::DuplicatePrefix(_))));
        let mut table = PriceTable::default();
        table.entries[0].prices.output = MicroUsd(-1);
        assert!(matches!(table.validate(), Err(PriceError::NegativePrice(_))));
        let mut table = PriceTable::default();
        table.entries[0].model_prefix = " ".into();
        assert_eq!(table.validate(), Err(PriceError::EmptyPrefix));
    }
}
