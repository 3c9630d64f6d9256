//! The editable price table: USD per million tokens, per model id prefix, plus the batch and
//! long-context rates (SPEC §6: every usage row is priced).

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

impl ModelPrices {
    fn all(&self) -> [MicroUsd; 5] {
        [self.input, self.cache_write_5m, self.cache_write_1h, self.cache_read, self.output]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceEntry {
    /// Model ids starting with this are priced by this entry (the longest prefix wins).
    pub model_prefix: String,
    pub label: String,
    pub prices: ModelPrices,
}

/// Rate multipliers by usage row fields, in percent of the standard rate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateRules {
    /// `service_tier: "batch"`: every token kind.
    #[serde(default = "default_batch_percent")]
    pub batch_percent: u32,
    /// `context_window: "200k-1M"`: input, both cache writes and cache read.
    #[serde(default = "default_long_context_input_percent")]
    pub long_context_input_percent: u32,
    /// `context_window: "200k-1M"`: output.
    #[serde(default = "default_long_context_output_percent")]
    pub long_context_output_percent: u32,
}

fn default_batch_percent() -> u32 {
    50
}
fn default_long_context_input_percent() -> u32 {
    200
}
fn default_long_context_output_percent() -> u32 {
    150
}

impl Default for RateRules {
    /// The published rates (docs/anthropic-admin-api.md).
    fn default() -> Self {
        RateRules {
            batch_percent: default_batch_percent(),
            long_context_input_percent: default_long_context_input_percent(),
            long_context_output_percent: default_long_context_output_percent(),
        }
    }
}

/// Saved as a positional array (rmp_serde): new fields go at the END with a serde default, so a
/// table saved by an older release still loads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable {
    pub entries: Vec<PriceEntry>,
    /// Web search, per 1,000 requests.
    pub web_search_per_thousand: MicroUsd,
    #[serde(default)]
    pub rates: RateRules,
}

/// How a model id found its price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum PriceMatch {
    /// The entry with the longest prefix of the model id.
    Prefix { prefix: String },
    /// No prefix matched; the entry with the same family and generation (either naming scheme).
    FamilyGeneration { prefix: String },
    /// Nothing matched: the highest known rate of each token kind. Flag it to the operator.
    Fallback,
}

/// The rates one usage row is priced with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectivePrice {
    /// Per MTok, after the service tier and context window rates.
    pub prices: ModelPrices,
    pub web_search_per_thousand: MicroUsd,
    pub matched: PriceMatch,
    /// The entry's label, or [`FALLBACK_LABEL`].
    pub label: String,
    /// Set when a tier or window was priced at standard rates for want of a better rule.
    pub note: Option<String>,
}

pub const FALLBACK_LABEL: &str = "unknown model (priced at the highest known rates)";
pub const PRIORITY_NOTE: &str = "priority tier priced at standard rates (billed under a commitment)";
/// The `context_window` value of long-context usage.
pub const LONG_CONTEXT_WINDOW: &str = "200k-1M";
/// No price (per MTok, or per 1,000 web searches) may exceed this: USD 10,000.
pub const MAX_PRICE: MicroUsd = MicroUsd(10_000 * 1_000_000);
pub const MAX_PREFIX_CHARS: usize = 100;
pub const MAX_LABEL_CHARS: usize = 80;
pub const MAX_RATE_PERCENT: u32 = 1_000;

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
    #[error("price of {0:?} is above USD 10,000")]
    PriceTooHigh(String),
    #[error("model prefix {0:?} is longer than 100 characters")]
    PrefixTooLong(String),
    #[error("model prefix {0:?} contains whitespace or control characters")]
    PrefixHasSpaceOrControl(String),
    #[error("the label of {0:?} is longer than 80 characters")]
    LabelTooLong(String),
    #[error("rate {name} is {percent}%: expected 1 to 1000")]
    RateOutOfRange { name: &'static str, percent: u32 },
}

fn usd_per_mtok(input: &str, write_5m: &str, write_1h: &str, read: &str, output: &str) -> ModelPrices {
    let p = |s: &str| MicroUsd::parse_usd(s).expect("built-in prices are valid decimals");
    ModelPrices { input: p(input), cache_write_5m: p(write_5m), cache_write_1h: p(write_1h), cache_read: p(read), output: p(output) }
}

fn entry(prefix: &str, label: &str, prices: ModelPrices) -> PriceEntry {
    PriceEntry { model_prefix: prefix.to_string(), label: label.to_string(), prices }
}

fn opus_45_prices() -> ModelPrices {
    usd_per_mtok("5", "6.25", "10", "0.50", "25")
}
fn opus_4_prices() -> ModelPrices {
    usd_per_mtok("15", "18.75", "30", "1.50", "75")
}
fn sonnet_prices() -> ModelPrices {
    usd_per_mtok("3", "3.75", "6", "0.30", "15")
}
fn haiku_45_prices() -> ModelPrices {
    usd_per_mtok("1", "1.25", "2", "0.10", "5")
}

impl Default for PriceTable {
    /// Published prices (docs/anthropic-admin-api.md), both naming schemes. No bare family prefix:
    /// an unknown generation must reach the fallback and be flagged.
    fn default() -> Self {
        let haiku_35 = usd_per_mtok("0.80", "1", "1.6", "0.08", "4");
        let haiku_3 = usd_per_mtok("0.25", "0.30", "0.50", "0.03", "1.25");
        PriceTable {
            entries: vec![
                entry("claude-opus-4-6", "Opus 4.6", opus_45_prices()),
                entry("claude-opus-4-5", "Opus 4.5", opus_45_prices()),
                entry("claude-opus-4-1", "Opus 4.1", opus_4_prices()),
                entry("claude-opus-4-2025", "Opus 4", opus_4_prices()),
                entry("claude-sonnet-4", "Sonnet 4.x", sonnet_prices()),
                entry("claude-haiku-4-5", "Haiku 4.5", haiku_45_prices()),
                entry("claude-3-7-sonnet", "Sonnet 3.7", sonnet_prices()),
                entry("claude-3-5-sonnet", "Sonnet 3.5", sonnet_prices()),
                entry("claude-3-5-haiku", "Haiku 3.5", haiku_35),
                entry("claude-3-opus", "Opus 3", opus_4_prices()),
                entry("claude-3-haiku", "Haiku 3", haiku_3),
            ],
            web_search_per_thousand: MicroUsd::from_usd(10),
            rates: RateRules::default(),
        }
    }
}

/// Family and generation read from a model id or prefix, in either naming scheme:
/// `claude-<family>-<major>[-<minor>]...` (4.x) or `claude-<major>[-<minor>]-<family>...` (3.x).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Generation {
    family: String,
    major: u16,
    minor: Option<u16>,
}

/// A version number is 1–2 digits; longer digit runs are dates (`20250514`, or `2025` in a prefix).
fn version_number(token: &str) -> Option<u16> {
    if !(1..=2).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

fn family_word(token: &str) -> Option<&str> {
    (!token.is_empty() && token.bytes().all(|b| b.is_ascii_lowercase())).then_some(token)
}

impl Generation {
    fn parse(model: &str) -> Option<Generation> {
        let lower = model.to_ascii_lowercase();
        // Any separator: also reads `claude-3.5-sonnet` and `anthropic.claude-...@date` forms.
        let tokens: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| !t.is_empty()).collect();
        let start = tokens.iter().position(|t| *t == "claude")? + 1;
        let token = |i: usize| tokens.get(start + i).copied().unwrap_or("");
        if let Some(family) = family_word(token(0)) {
            let major = version_number(token(1))?;
            return Some(Generation { family: family.to_string(), major, minor: version_number(token(2)) });
        }
        let major = version_number(token(0))?;
        let (minor, family) = match version_number(token(1)) {
            Some(minor) => (Some(minor), family_word(token(2))?),
            None => (None, family_word(token(1))?),
        };
        Some(Generation { family: family.to_string(), major, minor })
    }
}

/// `value × Π(percent / 100)` in µUSD, exact in i128; rounded half to even only when inexact.
/// Prices are per MTok, so the rounding error is at most 0.5 µUSD per MTok (< 1e-6 µUSD per token).
fn apply_percents(value: MicroUsd, percents: &[u32]) -> MicroUsd {
    let mut numerator = value.0 as i128;
    let mut divisor = 1i128;
    for p in percents {
        numerator = numerator.saturating_mul(*p as i128);
        divisor *= 100;
    }
    let magnitude = numerator.unsigned_abs() as i128;
    let (q, r) = (magnitude / divisor, magnitude % divisor);
    let rounded = match (2 * r).cmp(&divisor) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal if q % 2 == 1 => q + 1,
        _ => q,
    };
    let signed = if numerator < 0 { -rounded } else { rounded };
    MicroUsd(signed.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

impl PriceTable {
    /// Finds the entry pricing `model`: longest prefix, then family and generation (exact
    /// family + major + minor first, then family + major of an entry without minor). Ties go to
    /// the longer prefix, then to the earlier entry.
    pub fn match_model(&self, model: &str) -> (Option<&PriceEntry>, PriceMatch) {
        let longest_first = |best: Option<&PriceEntry>, e: &PriceEntry| -> bool {
            best.is_none_or(|b| e.model_prefix.len() > b.model_prefix.len())
        };
        let mut best: Option<&PriceEntry> = None;
        for e in &self.entries {
            if !e.model_prefix.is_empty() && model.starts_with(&e.model_prefix) && longest_first(best, e) {
                best = Some(e);
            }
        }
        if let Some(e) = best {
            return (Some(e), PriceMatch::Prefix { prefix: e.model_prefix.clone() });
        }
        let Some(wanted) = Generation::parse(model) else {
            return (None, PriceMatch::Fallback);
        };
        let parsed: Vec<(&PriceEntry, Generation)> =
            self.entries.iter().filter_map(|e| Generation::parse(&e.model_prefix).map(|g| (e, g))).collect();
        let exact = |g: &Generation| *g == wanted;
        let same_major = |g: &Generation| g.family == wanted.family && g.major == wanted.major && g.minor.is_none();
        for accept in [&exact as &dyn Fn(&Generation) -> bool, &same_major] {
            let mut best: Option<&PriceEntry> = None;
            for (e, g) in &parsed {
                if accept(g) && longest_first(best, e) {
                    best = Some(e);
                }
            }
            if let Some(e) = best {
                return (Some(e), PriceMatch::FamilyGeneration { prefix: e.model_prefix.clone() });
            }
        }
        (None, PriceMatch::Fallback)
    }

    /// The entry pricing `model` by prefix or by family and generation; `UnknownModel` when only
    /// the fallback would price it.
    pub fn lookup(&self, model: &str) -> Result<&PriceEntry, PriceError> {
        self.match_model(model).0.ok_or_else(|| PriceError::UnknownModel(model.chars().take(100).collect()))
    }

    /// For each token kind, the highest rate of any entry: what an unknown model is priced at.
    /// An empty table (which `validate` refuses) falls back to the built-in table's rates.
    pub fn highest_rates(&self) -> ModelPrices {
        if self.entries.is_empty() {
            return PriceTable::default().highest_rates();
        }
        let max = |kind: fn(&ModelPrices) -> MicroUsd| self.entries.iter().map(|e| kind(&e.prices)).max().unwrap_or_default();
        ModelPrices {
            input: max(|p| p.input),
            cache_write_5m: max(|p| p.cache_write_5m),
            cache_write_1h: max(|p| p.cache_write_1h),
            cache_read: max(|p| p.cache_read),
            output: max(|p| p.output),
        }
    }

    /// The per-MTok rates for one usage row: model match, then the service tier (`batch` halves
    /// every token rate) and context window (`200k-1M`: input and cache ×2, output ×1.5); both may
    /// apply. Web search keeps its per-request rate. Unknown tiers and windows get standard rates
    /// and a note.
    pub fn price_for(&self, model: &str, service_tier: Option<&str>, context_window: Option<&str>) -> EffectivePrice {
        let (entry, matched) = self.match_model(model);
        let (base, label) = match entry {
            Some(e) => (e.prices.clone(), e.label.clone()),
            None => (self.highest_rates(), FALLBACK_LABEL.to_string()),
        };
        // Out-of-range rates only reach here from an unvalidated table: keep prices positive.
        let percent = |p: u32| p.clamp(1, MAX_RATE_PERCENT);
        let mut notes: Vec<String> = vec![];
        let mut token_percents: Vec<u32> = vec![];
        match service_tier.map(str::trim).filter(|t| !t.is_empty()) {
            None => {}
            Some(t) if t.eq_ignore_ascii_case("standard") => {}
            Some(t) if t.eq_ignore_ascii_case("batch") => token_percents.push(percent(self.rates.batch_percent)),
            Some(t) if t.eq_ignore_ascii_case("priority") => notes.push(PRIORITY_NOTE.to_string()),
            Some(t) => notes.push(format!("service tier {:?} is unknown: priced at standard rates", short(t))),
        }
        let mut input_percents = token_percents.clone();
        let mut output_percents = token_percents;
        match context_window.map(str::trim).filter(|w| !w.is_empty()) {
            None => {}
            Some(w) if w.eq_ignore_ascii_case("0-200k") => {}
            Some(w) if w.eq_ignore_ascii_case(LONG_CONTEXT_WINDOW) => {
                input_percents.push(percent(self.rates.long_context_input_percent));
                output_percents.push(percent(self.rates.long_context_output_percent));
            }
            Some(w) => notes.push(format!("context window {:?} is unknown: priced at standard rates", short(w))),
        }
        let prices = ModelPrices {
            input: apply_percents(base.input, &input_percents),
            cache_write_5m: apply_percents(base.cache_write_5m, &input_percents),
            cache_write_1h: apply_percents(base.cache_write_1h, &input_percents),
            cache_read: apply_percents(base.cache_read, &input_percents),
            output: apply_percents(base.output, &output_percents),
        };
        EffectivePrice {
            prices,
            web_search_per_thousand: self.web_search_per_thousand,
            matched,
            label,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        }
    }

    /// Adds every default entry whose prefix the table lacks (used once when upgrading a saved
    /// table from an older release); returns the prefixes added.
    pub fn add_missing_defaults(&mut self) -> Vec<String> {
        let mut added = vec![];
        for d in PriceTable::default().entries {
            if !self.entries.iter().any(|e| e.model_prefix == d.model_prefix) {
                added.push(d.model_prefix.clone());
                self.entries.push(d);
            }
        }
        added
    }

    /// Removes the bare family entries the previous release shipped (`claude-opus`, `claude-sonnet`,
    /// `claude-haiku`) when they are exactly as shipped (same label and prices): they would price an
    /// unknown generation silently instead of flagging it. Edited ones stay. Call after
    /// `add_missing_defaults`; returns the prefixes removed.
    pub fn remove_legacy_family_defaults(&mut self) -> Vec<String> {
        let legacy = [
            entry("claude-opus", "Opus (family)", opus_45_prices()),
            entry("claude-sonnet", "Sonnet (family)", sonnet_prices()),
            entry("claude-haiku", "Haiku (family)", haiku_45_prices()),
        ];
        let mut removed = vec![];
        self.entries.retain(|e| {
            let shipped = legacy.contains(e);
            if shipped {
                removed.push(e.model_prefix.clone());
            }
            !shipped
        });
        removed
    }

    pub fn validate(&self) -> Result<(), PriceError> {
        if self.entries.is_empty() {
            return Err(PriceError::Empty);
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.entries {
            let prefix = &e.model_prefix;
            if prefix.trim().is_empty() {
                return Err(PriceError::EmptyPrefix);
            }
            if prefix.chars().count() > MAX_PREFIX_CHARS {
                return Err(PriceError::PrefixTooLong(prefix.chars().take(MAX_PREFIX_CHARS).collect()));
            }
            if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(PriceError::PrefixHasSpaceOrControl(prefix.clone()));
            }
            if !seen.insert(prefix.as_str()) {
                return Err(PriceError::DuplicatePrefix(prefix.clone()));
            }
            if e.label.chars().count() > MAX_LABEL_CHARS {
                return Err(PriceError::LabelTooLong(prefix.clone()));
            }
            let prices = e.prices.all();
            if prices.iter().any(|m| m.0 < 0) {
                return Err(PriceError::NegativePrice(prefix.clone()));
            }
            if prices.iter().any(|m| *m > MAX_PRICE) {
                return Err(PriceError::PriceTooHigh(prefix.clone()));
            }
        }
        if self.web_search_per_thousand.0 < 0 {
            return Err(PriceError::NegativePrice("web search".to_string()));
        }
        if self.web_search_per_thousand > MAX_PRICE {
            return Err(PriceError::PriceTooHigh("web search".to_string()));
        }
        let r = &self.rates;
        for (name, percent) in [
            ("batch_percent", r.batch_percent),
            ("long_context_input_percent", r.long_context_input_percent),
            ("long_context_output_percent", r.long_context_output_percent),
        ] {
            if !(1..=MAX_RATE_PERCENT).contains(&percent) {
                return Err(PriceError::RateOutOfRange { name, percent });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{price_tokens, TokenCounts};

    fn matched_label(table: &PriceTable, model: &str) -> (String, PriceMatch) {
        let p = table.price_for(model, None, None);
        (p.label, p.matched)
    }

    #[test]
    fn every_documented_example_matches() {
        let table = PriceTable::default();
        let prefix = |p: &str| PriceMatch::Prefix { prefix: p.into() };
        let family = |p: &str| PriceMatch::FamilyGeneration { prefix: p.into() };
        let cases = [
            ("claude-3-7-sonnet-20250219", "Sonnet 3.7", prefix("claude-3-7-sonnet")),
            ("claude-sonnet-3-7", "Sonnet 3.7", family("claude-3-7-sonnet")),
            ("claude-opus-4-1-20250805", "Opus 4.1", prefix("claude-opus-4-1")),
            ("claude-opus-4-20250514", "Opus 4", prefix("claude-opus-4-2025")),
            ("claude-opus-4-5-20251101", "Opus 4.5", prefix("claude-opus-4-5")),
            ("claude-opus-4-6", "Opus 4.6", prefix("claude-opus-4-6")),
            ("claude-sonnet-4-5-20250929", "Sonnet 4.x", prefix("claude-sonnet-4")),
            ("claude-4-sonnet-x", "Sonnet 4.x", family("claude-sonnet-4")),
            ("claude-haiku-3-5", "Haiku 3.5", family("claude-3-5-haiku")),
            ("claude-3-5-haiku-20241022", "Haiku 3.5", prefix("claude-3-5-haiku")),
            ("claude-3-haiku-20240307", "Haiku 3", prefix("claude-3-haiku")),
            ("claude-haiku-4-5-20251001", "Haiku 4.5", prefix("claude-haiku-4-5")),
            ("claude-3-5-sonnet-20241022", "Sonnet 3.5", prefix("claude-3-5-sonnet")),
            ("claude-3-opus-20240229", "Opus 3", prefix("claude-3-opus")),
            // Opus 4.x without a known minor: the Opus 4 entry has no minor.
            ("claude-opus-4-7", "Opus 4", family("claude-opus-4-2025")),
            ("claude-opus-5-20270101", FALLBACK_LABEL, PriceMatch::Fallback),
            ("claude-haiku-4", FALLBACK_LABEL, PriceMatch::Fallback),
            ("claude-2-1", FALLBACK_LABEL, PriceMatch::Fallback),
            ("gpt-5", FALLBACK_LABEL, PriceMatch::Fallback),
            ("", FALLBACK_LABEL, PriceMatch::Fallback),
        ];
        for (model, label, how) in cases {
            assert_eq!(matched_label(&table, model), (label.to_string(), how), "{model}");
        }
        assert_eq!(table.lookup("claude-3-haiku-20240307").unwrap().prices.output, MicroUsd(1_250_000));
        assert_eq!(table.lookup("claude-sonnet-3-7").unwrap().label, "Sonnet 3.7");
        assert_eq!(table.lookup("claude-opus-9"), Err(PriceError::UnknownModel("claude-opus-9".into())));
        assert_eq!(table.lookup("gpt-5"), Err(PriceError::UnknownModel("gpt-5".into())));
        table.validate().unwrap();
    }

    #[test]
    fn generations_parse_in_both_schemes() {
        let g = |f: &str, major: u16, minor: Option<u16>| Some(Generation { family: f.into(), major, minor });
        assert_eq!(Generation::parse("claude-opus-4-2025"), g("opus", 4, None));
        assert_eq!(Generation::parse("claude-opus-4-20250514"), g("opus", 4, None));
        assert_eq!(Generation::parse("claude-3-5-haiku-20241022"), g("haiku", 3, Some(5)));
        assert_eq!(Generation::parse("claude-3-haiku"), g("haiku", 3, None));
        assert_eq!(Generation::parse("claude-3.5-sonnet"), g("sonnet", 3, Some(5)));
        assert_eq!(Generation::parse("anthropic.claude-3-5-sonnet-20241022-v2:0"), g("sonnet", 3, Some(5)));
        assert_eq!(Generation::parse("claude-sonnet-4-5@20250929"), g("sonnet", 4, Some(5)));
        assert_eq!(Generation::parse("claude-opus"), None);
        assert_eq!(Generation::parse("claude-3-5"), None);
        assert_eq!(Generation::parse("claude-20250514-opus"), None);
    }

    #[test]
    fn fallback_is_the_highest_rate_of_each_kind() {
        let table = PriceTable::default();
        // Opus 4 / 4.1 / 3 are the most expensive of every kind.
        assert_eq!(table.highest_rates(), opus_4_prices());
        let p = table.price_for("gpt-5", None, None);
        assert_eq!(p.prices, opus_4_prices());
        let mut mixed = PriceTable::default();
        mixed.entries = vec![
            entry("a", "A", usd_per_mtok("1", "9", "1", "1", "1")),
            entry("b", "B", usd_per_mtok("2", "1", "1", "1", "7")),
        ];
        assert_eq!(mixed.highest_rates(), usd_per_mtok("2", "9", "1", "1", "7"));
        mixed.entries.clear();
        assert_eq!(mixed.highest_rates(), opus_4_prices());
    }

    /// One usage row's cost with the default table.
    fn row_cost(model: &str, tier: Option<&str>, window: Option<&str>, tokens: TokenCounts) -> i64 {
        let p = PriceTable::default().price_for(model, tier, window);
        price_tokens(&tokens, &p.prices, p.web_search_per_thousand).0
    }

    #[test]
    fn rows_of_each_kind_cost_exactly() {
        let t = TokenCounts::default();
        // Batch Sonnet 3.7: 1M input × 3/2 = 1.5 USD; 100k output × 15/2 = 0.75 USD → 2.25 USD.
        let row = TokenCounts { uncached_input: 1_000_000, output: 100_000, ..t };
        assert_eq!(row_cost("claude-3-7-sonnet-20250219", Some("batch"), None, row), 2_250_000);
        // Long context Sonnet 4.5: 1M input × 6 + 1M output × 22.5 = 28.5 USD.
        let row = TokenCounts { uncached_input: 1_000_000, output: 1_000_000, ..t };
        assert_eq!(row_cost("claude-sonnet-4-5-20250929", Some("standard"), Some("200k-1M"), row), 28_500_000);
        // Batch + long context Sonnet 4.5, 1M of each kind: input 3×½×2 = 3, 5m write 3.75×½×2 = 3.75,
        // 1h write 6×½×2 = 6, read 0.30×½×2 = 0.30, output 15×½×1.5 = 11.25 → 24.30 USD.
        let all = TokenCounts {
            uncached_input: 1_000_000,
            cache_write_5m: 1_000_000,
            cache_write_1h: 1_000_000,
            cache_read: 1_000_000,
            output: 1_000_000,
            web_search_requests: 0,
        };
        assert_eq!(row_cost("claude-sonnet-4-5-20250929", Some("batch"), Some("200k-1M"), all), 24_300_000);
        // Haiku 3 cache reads: 2M × 0.03 = 0.06 USD; batch: 2M × 0.015 = 0.03 USD.
        let reads = TokenCounts { cache_read: 2_000_000, ..t };
        assert_eq!(row_cost("claude-3-haiku-20240307", None, Some("0-200k"), reads), 60_000);
        assert_eq!(row_cost("claude-3-haiku-20240307", Some("batch"), None, reads), 30_000);
        // Opus 3, 100k 5-minute cache writes × 18.75 = 1.875 USD.
        let writes = TokenCounts { cache_write_5m: 100_000, ..t };
        assert_eq!(row_cost("claude-3-opus-20240229", None, None, writes), 1_875_000);
        // Haiku 3.5 1h cache writes (other scheme): 500k × 1.6 = 0.80 USD.
        let writes = TokenCounts { cache_write_1h: 500_000, ..t };
        assert_eq!(row_cost("claude-haiku-3-5", None, None, writes), 800_000);
        // Unknown model: 1,000 input × 15 + 1,000 output × 75 = 90,000 µUSD.
        let row = TokenCounts { uncached_input: 1_000, output: 1_000, ..t };
        assert_eq!(row_cost("gpt-5", None, None, row), 90_000);
        // Web search stays USD 10 per 1,000 in batch: 3 × 10,000 µUSD.
        let search = TokenCounts { web_search_requests: 3, ..t };
        assert_eq!(row_cost("claude-sonnet-4-5", Some("batch"), Some("200k-1M"), search), 30_000);
        // Priority: standard rates. 1,000 output × 25 (Opus 4.5) = 25,000 µUSD.
        let row = TokenCounts { output: 1_000, ..t };
        assert_eq!(row_cost("claude-opus-4-5-20251101", Some("priority"), None, row), 25_000);
    }

    #[test]
    fn effective_rates_and_notes() {
        let table = PriceTable::default();
        let p = table.price_for("claude-sonnet-4-5", Some("batch"), Some("200k-1M"));
        assert_eq!(p.prices, usd_per_mtok("3", "3.75", "6", "0.30", "11.25"));
        assert_eq!(p.note, None);
        assert_eq!(p.web_search_per_thousand, MicroUsd::from_usd(10));
        let p = table.price_for("claude-3-haiku", Some("batch"), None);
        assert_eq!(p.prices, usd_per_mtok("0.125", "0.15", "0.25", "0.015", "0.625"));
        let p = table.price_for("claude-sonnet-4-5", Some("priority"), None);
        assert_eq!((p.prices, p.note.as_deref()), (sonnet_prices(), Some(PRIORITY_NOTE)));
        let p = table.price_for("claude-sonnet-4-5", Some("flex"), Some("1M-2M"));
        assert_eq!(p.prices, sonnet_prices());
        let note = p.note.unwrap();
        assert!(note.contains("\"flex\"") && note.contains("\"1M-2M\""), "{note}");
        let p = table.price_for("claude-sonnet-4-5", Some(""), Some("0-200k"));
        assert_eq!((p.prices, p.note), (sonnet_prices(), None));
    }

    #[test]
    fn inexact_rates_round_half_to_even() {
        // 1 × 50% = 0.5 → 0; 3 × 50% = 1.5 → 2; 5 × 50% = 2.5 → 2; 1 × 150% = 1.5 → 2.
        assert_eq!(apply_percents(MicroUsd(1), &[50]), MicroUsd(0));
        assert_eq!(apply_percents(MicroUsd(3), &[50]), MicroUsd(2));
        assert_eq!(apply_percents(MicroUsd(5), &[50]), MicroUsd(2));
        assert_eq!(apply_percents(MicroUsd(1), &[150]), MicroUsd(2));
        // 7 × 50% × 150% = 5.25 → 5 (one rounding, not two).
        assert_eq!(apply_percents(MicroUsd(7), &[50, 150]), MicroUsd(5));
        assert_eq!(apply_percents(MicroUsd(-3), &[50]), MicroUsd(-2));
        assert_eq!(apply_percents(MicroUsd(i64::MAX), &[1_000, 1_000]), MicroUsd(i64::MAX));
    }

    #[test]
    fn upgrading_an_old_table() {
        let mut old = PriceTable::default();
        old.entries = vec![
            entry("claude-opus-4-5", "Opus 4.5 (mine)", opus_45_prices()),
            entry("claude-opus", "Opus (family)", opus_45_prices()),
            entry("claude-sonnet", "Sonnet (family)", usd_per_mtok("4", "3.75", "6", "0.30", "15")),
            entry("claude-haiku", "Haiku (family)", haiku_45_prices()),
        ];
        let added = old.add_missing_defaults();
        assert_eq!(added.len(), PriceTable::default().entries.len() - 1);
        assert!(!added.contains(&"claude-opus-4-5".to_string()));
        assert_eq!(old.lookup("claude-opus-4-5").unwrap().label, "Opus 4.5 (mine)");
        assert!(old.add_missing_defaults().is_empty());
        // The edited Sonnet family entry stays.
        assert_eq!(old.remove_legacy_family_defaults(), vec!["claude-opus".to_string(), "claude-haiku".to_string()]);
        assert_eq!(old.price_for("claude-opus-5", None, None).matched, PriceMatch::Fallback);
        old.validate().unwrap();
    }

    #[test]
    fn validation_refuses_bad_tables() {
        let bad = |edit: &dyn Fn(&mut PriceTable)| {
            let mut table = PriceTable::default();
            edit(&mut table);
            table.validate().unwrap_err()
        };
        assert!(matches!(bad(&|t| t.entries.push(t.entries[0].clone())), PriceError::DuplicatePrefix(_)));
        assert!(matches!(bad(&|t| t.entries[0].prices.output = MicroUsd(-1)), PriceError::NegativePrice(_)));
        assert_eq!(bad(&|t| t.entries[0].model_prefix = " ".into()), PriceError::EmptyPrefix);
        assert_eq!(bad(&|t| t.entries.clear()), PriceError::Empty);
        let too_high = MicroUsd(MAX_PRICE.0 + 1);
        assert!(matches!(bad(&|t| t.entries[1].prices.cache_read = too_high), PriceError::PriceTooHigh(_)));
        assert!(matches!(bad(&|t| t.web_search_per_thousand = too_high), PriceError::PriceTooHigh(_)));
        assert!(matches!(bad(&|t| t.entries[0].model_prefix = "c".repeat(101)), PriceError::PrefixTooLong(_)));
        assert!(matches!(bad(&|t| t.entries[0].model_prefix = "claude x".into()), PriceError::PrefixHasSpaceOrControl(_)));
        assert!(matches!(bad(&|t| t.entries[0].model_prefix = "claude\u{7}".into()), PriceError::PrefixHasSpaceOrControl(_)));
        assert!(matches!(bad(&|t| t.entries[0].label = "l".repeat(81)), PriceError::LabelTooLong(_)));
        assert!(matches!(bad(&|t| t.rates.batch_percent = 0), PriceError::RateOutOfRange { name: "batch_percent", .. }));
        assert!(matches!(bad(&|t| t.rates.long_context_output_percent = 1_001), PriceError::RateOutOfRange { .. }));
        let mut edge = PriceTable::default();
        edge.entries[0].model_prefix = "c".repeat(100);
        edge.entries[0].label = "l".repeat(80);
        edge.entries[0].prices.output = MAX_PRICE;
        edge.rates.batch_percent = 1_000;
        edge.validate().unwrap();
    }

    #[test]
    fn a_table_saved_without_rates_still_loads() {
        #[derive(Serialize)]
        struct OldPriceTable {
            entries: Vec<PriceEntry>,
            web_search_per_thousand: MicroUsd,
        }
        let old = OldPriceTable { entries: PriceTable::default().entries, web_search_per_thousand: MicroUsd(7) };
        let bytes = rmp_serde::to_vec(&old).unwrap();
        let table: PriceTable = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(table.rates, RateRules { batch_percent: 50, long_context_input_percent: 200, long_context_output_percent: 150 });
        assert_eq!((table.entries, table.web_search_per_thousand), (old.entries.clone(), MicroUsd(7)));
        let json = serde_json::to_value(&old).unwrap();
        assert_eq!(serde_json::from_value::<PriceTable>(json).unwrap().rates, RateRules::default());
        // A partial rates object keeps the other defaults.
        let partial: RateRules = serde_json::from_str(r#"{"batch_percent": 40}"#).unwrap();
        assert_eq!(partial, RateRules { batch_percent: 40, ..RateRules::default() });
        let table = PriceTable::default();
        assert_eq!(rmp_serde::from_slice::<PriceTable>(&rmp_serde::to_vec(&table).unwrap()).unwrap(), table);
        let how = serde_json::to_value(PriceMatch::Prefix { prefix: "claude-3-haiku".into() }).unwrap();
        assert_eq!(how, serde_json::json!({"by": "prefix", "prefix": "claude-3-haiku"}));
        assert_eq!(serde_json::to_value(PriceMatch::Fallback).unwrap(), serde_json::json!({"by": "fallback"}));
    }

    proptest::proptest! {
        #[test]
        fn claude_like_ids_are_never_priced_at_zero(
            id in "claude-[a-z0-9]{0,8}(-[a-z0-9]{0,8}){0,4}",
            tier in proptest::option::of("standard|batch|priority|[a-z]{0,6}"),
            window in proptest::option::of("0-200k|200k-1M|[a-z0-9-]{0,6}"),
        ) {
            let table = PriceTable::default();
            let p = table.price_for(&id, tier.as_deref(), window.as_deref());
            proptest::prop_assert!(p.prices.all().iter().all(|m| m.0 > 0), "{id}: {:?}", p.prices);
            if p.matched == PriceMatch::Fallback {
                proptest::prop_assert!(table.lookup(&id).is_err());
                proptest::prop_assert_eq!(p.label, FALLBACK_LABEL);
            }
        }

        #[test]
        fn the_fallback_is_at_least_every_entry(
            prices in proptest::collection::vec(proptest::collection::vec(0i64..=MAX_PRICE.0, 5), 1..8),
        ) {
            let mut table = PriceTable::default();
            table.entries = prices
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let m = |k: usize| MicroUsd(p[k]);
                    let prices = ModelPrices { input: m(0), cache_write_5m: m(1), cache_write_1h: m(2), cache_read: m(3), output: m(4) };
                    entry(&format!("claude-x{i}"), "x", prices)
                })
                .collect();
            let fallback = table.price_for("gpt-5", None, None).prices.all();
            proptest::prop_assert_eq!(fallback, table.highest_rates().all());
            for e in &table.entries {
                for (top, price) in fallback.iter().zip(e.prices.all()) {
                    proptest::prop_assert!(*top >= price);
                }
            }
        }
    }
}
