//! Pricing, written here independently of the app's price code: the fake's cost figures are the
//! other side the app's figures are checked against.
//!
//! Money is an integer count of femto-dollars (10^-15 USD). A price has at most 6 decimals of USD
//! per million tokens, i.e. a whole number of 10^-12 USD per token; the rate rules multiply by ½
//! (batch), 2 or 1.5 (long context), at worst ¾ together, so 1,000 femto-dollars per 10^-12 USD keep
//! every amount exact. Nothing here is ever a float.

use crate::scenario::{ContextWindow, Prices, ServiceTier};
use crate::usage::Tokens;

/// Femto-dollars (10^-15 USD).
pub type Femto = i128;

const FEMTO_PER_CENT: Femto = 10_000_000_000_000;
/// Web search: USD 10 per 1,000 requests = 1 cent each.
const WEB_SEARCH_FEMTO: Femto = FEMTO_PER_CENT;

/// "3.75" USD → 3,750,000 µUSD (at most 6 decimals).
pub fn micro_usd(s: &str) -> Option<i128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 6 || int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = format!("{frac:0<6}");
    Some(int.parse::<i128>().ok()? * 1_000_000 + frac.parse::<i128>().ok()?)
}

/// An exact amount as the Admin API writes it: a decimal string in cents, all significant digits
/// kept (up to 13 decimals), trailing zeros trimmed.
pub fn cents(amount: Femto) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let (whole, frac) = (amount.abs() / FEMTO_PER_CENT, amount.abs() % FEMTO_PER_CENT);
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let frac = format!("{frac:013}");
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

/// The five token kinds of the cost report's `token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenType {
    UncachedInput,
    Output,
    CacheRead,
    CacheWrite5m,
    CacheWrite1h,
}

impl TokenType {
    pub const ALL: [TokenType; 5] = [TokenType::UncachedInput, TokenType::Output, TokenType::CacheRead, TokenType::CacheWrite5m, TokenType::CacheWrite1h];

    pub fn wire_name(self) -> &'static str {
        match self {
            TokenType::UncachedInput => "uncached_input_tokens",
            TokenType::Output => "output_tokens",
            TokenType::CacheRead => "cache_read_input_tokens",
            TokenType::CacheWrite5m => "cache_creation.ephemeral_5m_input_tokens",
            TokenType::CacheWrite1h => "cache_creation.ephemeral_1h_input_tokens",
        }
    }

    fn label(self) -> &'static str {
        match self {
            TokenType::UncachedInput => "Input Tokens",
            TokenType::Output => "Output Tokens",
            TokenType::CacheRead => "Input Tokens, Cache Read",
            TokenType::CacheWrite5m => "Input Tokens, Cache Write (5 minutes)",
            TokenType::CacheWrite1h => "Input Tokens, Cache Write (1 hour)",
        }
    }

    fn count(self, t: &Tokens) -> u64 {
        match self {
            TokenType::UncachedInput => t.uncached_input,
            TokenType::Output => t.output,
            TokenType::CacheRead => t.cache_read,
            TokenType::CacheWrite5m => t.cache_write_5m,
            TokenType::CacheWrite1h => t.cache_write_1h,
        }
    }

    fn list_price(self, p: &Prices) -> &str {
        match self {
            TokenType::UncachedInput => &p.input,
            TokenType::Output => &p.output,
            TokenType::CacheRead => &p.cache_read,
            TokenType::CacheWrite5m => &p.cache_write_5m,
            TokenType::CacheWrite1h => &p.cache_write_1h,
        }
    }

    /// Long context (200k-1M): input and both cache rates ×2, output ×1.5, as (numerator, denominator).
    fn long_context_factor(self) -> (i128, i128) {
        match self {
            TokenType::Output => (3, 2),
            _ => (2, 1),
        }
    }
}

/// One line item of the cost report: a token kind, or web search requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CostItem {
    Tokens(TokenType),
    WebSearch,
}

/// Femto-dollars per token of `kind` at this tier and context window.
/// Priority usage is priced here at the standard rate: whether it counts is the caller's rule.
fn femto_per_token(prices: &Prices, kind: TokenType, tier: ServiceTier, window: ContextWindow) -> Femto {
    let micro_per_million = micro_usd(kind.list_price(prices)).expect("prices are checked when the scenario is read");
    let (mut num, mut den) = (1_000, 1); // 10^-12 USD per token × 1,000 = femto-dollars.
    if tier == ServiceTier::Batch {
        den *= 2;
    }
    if window == ContextWindow::From200kTo1M {
        let (n, d) = kind.long_context_factor();
        num *= n;
        den *= d;
    }
    debug_assert_eq!(micro_per_million * num % den, 0, "1,000 is divisible by every denominator used");
    micro_per_million * num / den
}

/// The priced line items of some usage of one model (items with no usage left out).
pub fn priced_items(prices: &Prices, tier: ServiceTier, window: ContextWindow, tokens: &Tokens) -> Vec<(CostItem, Femto)> {
    let mut items: Vec<(CostItem, Femto)> = TokenType::ALL
        .into_iter()
        .filter(|kind| kind.count(tokens) > 0)
        .map(|kind| (CostItem::Tokens(kind), kind.count(tokens) as Femto * femto_per_token(prices, kind, tier, window)))
        .collect();
    if tokens.web_search_requests > 0 {
        items.push((CostItem::WebSearch, tokens.web_search_requests as Femto * WEB_SEARCH_FEMTO));
    }
    items
}

/// "claude-sonnet-4-5-20250929" → "Claude Sonnet 4.5"; "claude-3-5-haiku-20241022" → "Claude Haiku 3.5";
/// anything not shaped like a Claude model id is shown as it is.
pub fn model_display_name(model: &str) -> String {
    let Some(rest) = model.strip_prefix("claude-") else { return model.to_string() };
    let parts: Vec<&str> = rest.split('-').filter(|p| !(p.len() == 8 && p.bytes().all(|b| b.is_ascii_digit())) && *p != "latest").collect();
    let family: Vec<String> = parts.iter().filter(|p| p.bytes().all(|b| b.is_ascii_alphabetic())).map(|p| capitalized(p)).collect();
    let version: Vec<&str> = parts.iter().copied().filter(|p| p.bytes().all(|b| b.is_ascii_digit())).collect();
    if family.is_empty() || family.len() + version.len() != parts.len() {
        return model.to_string();
    }
    let mut name = format!("Claude {}", family.join(" "));
    if !version.is_empty() {
        name = format!("{name} {}", version.join("."));
    }
    name
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// The human `description` of a cost line, e.g. "Claude Sonnet 4.5 Usage - Input Tokens".
pub fn description(model: &str, item: CostItem, tier: ServiceTier, window: ContextWindow) -> String {
    let what = match item {
        CostItem::Tokens(kind) => kind.label(),
        CostItem::WebSearch => return format!("{} Usage - Web Search", model_display_name(model)),
    };
    let mut text = format!("{} Usage - {what}", model_display_name(model));
    if tier == ServiceTier::Batch {
        text.push_str(" - Batch");
    }
    if window == ContextWindow::From200kTo1M {
        text.push_str(" - Long Context");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sonnet() -> Prices {
        Prices { input: "3".into(), cache_write_5m: "3.75".into(), cache_write_1h: "6".into(), cache_read: "0.30".into(), output: "15".into() }
    }

    fn tokens(uncached_input: u64, output: u64) -> Tokens {
        Tokens { uncached_input, output, ..Tokens::default() }
    }

    fn total(items: &[(CostItem, Femto)]) -> Femto {
        items.iter().map(|(_, f)| f).sum()
    }

    #[test]
    fn amounts_are_exact_decimal_cents() {
        assert_eq!(cents(0), "0");
        assert_eq!(cents(FEMTO_PER_CENT * 123), "123");
        // 1 token at USD 3 per million = 0.0003 cents.
        assert_eq!(cents(3_000_000 * 1_000), "0.0003");
        // 1 token at USD 0.000001 per million, batch long-context output: ×¾ of 10^-12 USD.
        assert_eq!(cents(750), "0.000000000075");
        assert_eq!(cents(-FEMTO_PER_CENT / 2), "-0.5");
    }

    #[test]
    fn standard_batch_and_long_context_rates() {
        let p = sonnet();
        let std = ServiceTier::Standard;
        let short = ContextWindow::UpTo200k;
        let long = ContextWindow::From200kTo1M;
        // 1M input + 1M output = USD 18 = 1800 cents.
        assert_eq!(cents(total(&priced_items(&p, std, short, &tokens(1_000_000, 1_000_000)))), "1800");
        assert_eq!(cents(total(&priced_items(&p, ServiceTier::Batch, short, &tokens(1_000_000, 1_000_000)))), "900");
        // Long context: input 6, output 22.50.
        assert_eq!(cents(total(&priced_items(&p, std, long, &tokens(1_000_000, 1_000_000)))), "2850");
        // Both: half of that.
        assert_eq!(cents(total(&priced_items(&p, ServiceTier::Batch, long, &tokens(1_000_000, 1_000_000)))), "1425");
        // Cache rates double in long context: 1M cache reads = 0.60 USD.
        let reads = Tokens { cache_read: 1_000_000, ..Tokens::default() };
        assert_eq!(cents(total(&priced_items(&p, std, long, &reads))), "60");
        // Odd token counts keep fractional cents exactly: 7 output tokens batch long = 7 × 11.25e-6 USD.
        assert_eq!(cents(total(&priced_items(&p, ServiceTier::Batch, long, &tokens(0, 7)))), "0.007875");
    }

    #[test]
    fn items_name_their_token_type_and_web_search_is_a_cent_each() {
        let t = Tokens { uncached_input: 10, cache_write_1h: 5, web_search_requests: 3, ..Tokens::default() };
        let items = priced_items(&sonnet(), ServiceTier::Standard, ContextWindow::UpTo200k, &t);
        let kinds: Vec<CostItem> = items.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, vec![CostItem::Tokens(TokenType::UncachedInput), CostItem::Tokens(TokenType::CacheWrite1h), CostItem::WebSearch]);
        assert_eq!(cents(items[2].1), "3");
    }

    #[test]
    fn descriptions_name_the_model_like_a_person_would() {
        assert_eq!(model_display_name("claude-sonnet-4-5-20250929"), "Claude Sonnet 4.5");
        assert_eq!(model_display_name("claude-3-5-haiku-20241022"), "Claude Haiku 3.5");
        assert_eq!(model_display_name("claude-3-opus-20240229"), "Claude Opus 3");
        assert_eq!(model_display_name("gpt-x"), "gpt-x");
        let d = description("claude-opus-4-1-20250805", CostItem::Tokens(TokenType::UncachedInput), ServiceTier::Batch, ContextWindow::UpTo200k);
        assert_eq!(d, "Claude Opus 4.1 Usage - Input Tokens - Batch");
        assert_eq!(description("claude-haiku-4-5", CostItem::WebSearch, ServiceTier::Standard, ContextWindow::UpTo200k), "Claude Haiku 4.5 Usage - Web Search");
    }
}
