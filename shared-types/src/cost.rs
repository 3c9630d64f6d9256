//! Cost math (SPEC §6, §7): tokens × prices → exact µUSD, cumulative series, and the derived
//! figures the dashboard shows (cost per node, burn rate, budget runway, drift).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pool::NodeId;
use crate::price::{EffectivePrice, ModelPrices, PriceTable};
use crate::{MicroUsd, Timestamp};

/// Where a cost figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// Usage report tokens × the price table (hourly, per key).
    UsageEstimate,
    /// Cost report of a workspace holding only this key (daily, authoritative).
    CostReport,
    /// The analytics per-key cost endpoint.
    Analytics,
}

impl std::fmt::Display for CostSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CostSource::UsageEstimate => "usage_estimate",
            CostSource::CostReport => "cost_report",
            CostSource::Analytics => "analytics",
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    pub uncached_input: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
    pub output: u64,
    pub web_search_requests: u64,
}

impl TokenCounts {
    pub fn add(&mut self, other: &TokenCounts) {
        self.uncached_input = self.uncached_input.saturating_add(other.uncached_input);
        self.cache_write_5m = self.cache_write_5m.saturating_add(other.cache_write_5m);
        self.cache_write_1h = self.cache_write_1h.saturating_add(other.cache_write_1h);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.output = self.output.saturating_add(other.output);
        self.web_search_requests = self.web_search_requests.saturating_add(other.web_search_requests);
    }
}

/// Divides with rounding half to even (for non-negative numerators and positive divisors).
fn div_round_half_even(numerator: i128, divisor: i128) -> i128 {
    let q = numerator / divisor;
    let r = numerator % divisor;
    match (2 * r).cmp(&divisor) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal if q % 2 == 1 => q + 1,
        _ => q,
    }
}

/// Σ tokens × price-per-million / 1,000,000 (+ web search per thousand), computed in i128 and
/// rounded half to even to the µUSD once per call.
pub fn price_tokens(tokens: &TokenCounts, prices: &ModelPrices, web_search_per_thousand: MicroUsd) -> MicroUsd {
    let per_million: i128 = [
        (tokens.uncached_input, prices.input),
        (tokens.cache_write_5m, prices.cache_write_5m),
        (tokens.cache_write_1h, prices.cache_write_1h),
        (tokens.cache_read, prices.cache_read),
        (tokens.output, prices.output),
    ]
    .iter()
    .map(|(n, p)| *n as i128 * p.0 as i128)
    .sum();
    // Bring web search (per thousand) to the same per-million scale.
    let total = per_million + tokens.web_search_requests as i128 * web_search_per_thousand.0 as i128 * 1_000;
    let micro = div_round_half_even(total, 1_000_000);
    MicroUsd(micro.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// Tokens of one model at one service tier and context window (each priced at its own rate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsage {
    pub model: String,
    /// `standard`, `batch`, `priority`, ...; None when the Admin API did not say.
    #[serde(default)]
    pub service_tier: Option<String>,
    /// `0-200k`, `200k-1M`, ...; None when the Admin API did not say.
    #[serde(default)]
    pub context_window: Option<String>,
    pub tokens: TokenCounts,
}

/// Prices one usage row at its model's, tier's and context window's rates. Every row gets a
/// price: a model nothing matches is priced at the highest known rates (`matched` says so).
pub fn price_usage(usage: &ModelUsage, table: &PriceTable) -> (MicroUsd, EffectivePrice) {
    let price = table.price_for(&usage.model, usage.service_tier.as_deref(), usage.context_window.as_deref());
    (price_tokens(&usage.tokens, &price.prices, price.web_search_per_thousand), price)
}

/// One bucket's cost, or a running total at that bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostPoint {
    pub at: Timestamp,
    pub amount: MicroUsd,
}

/// Estimated cost per hour bucket, per key and for the whole pool, kept in memory so that cost
/// series are answered without scanning the samples table. `set` replaces a bucket (an upsert).
#[derive(Clone, Debug, Default)]
pub struct HourlyCosts {
    per_key: std::collections::HashMap<crate::KeyId, BTreeMap<i64, MicroUsd>>,
    total: BTreeMap<i64, MicroUsd>,
    /// Changes whenever a key's hours change (see [`HourlyCosts::version`]).
    versions: std::collections::HashMap<crate::KeyId, u64>,
}

impl HourlyCosts {
    /// Sets the cost of `key` in the bucket starting at `bucket_start` (unix seconds).
    pub fn set(&mut self, key: crate::KeyId, bucket_start: i64, amount: MicroUsd) {
        let old = self.per_key.entry(key).or_default().insert(bucket_start, amount).unwrap_or(MicroUsd::ZERO);
        let total = self.total.entry(bucket_start).or_default();
        *total = MicroUsd(total.0 - old.0 + amount.0);
        self.versions.insert(key, crate::pool::issue_log::next_version());
    }

    /// The index of whole series (each key's buckets), as [`HourlyCosts::set`] of every bucket
    /// would build it, built in bulk: at start, a year of hours for a hundred keys.
    pub fn from_series(series: impl IntoIterator<Item = (crate::KeyId, Vec<(i64, MicroUsd)>)>) -> HourlyCosts {
        let mut costs = HourlyCosts::default();
        for (key, points) in series {
            if points.is_empty() {
                continue;
            }
            if costs.per_key.contains_key(&key) {
                // A key given twice: its later buckets replace, as upserts.
                for (bucket, amount) in points {
                    costs.set(key, bucket, amount);
                }
                continue;
            }
            // The last of equal buckets wins, as with `set`.
            costs.per_key.insert(key, points.into_iter().collect());
            costs.versions.insert(key, crate::pool::issue_log::next_version());
        }
        let mut buckets: Vec<(i64, MicroUsd)> = costs.per_key.values().flat_map(|m| m.iter().map(|(t, a)| (*t, *a))).collect();
        buckets.sort_unstable_by_key(|(t, _)| *t);
        let mut total: Vec<(i64, MicroUsd)> = Vec::with_capacity(buckets.len());
        for (bucket, amount) in buckets {
            match total.last_mut() {
                Some((t, sum)) if *t == bucket => *sum += amount,
                _ => total.push((bucket, amount)),
            }
        }
        costs.total = total.into_iter().collect();
        costs
    }

    /// A number that changes whenever `key`'s hourly costs change, never repeated by another
    /// `HourlyCosts` (a rebuilt index cannot be mistaken for the old); 0 for a key without cost.
    pub fn version(&self, key: crate::KeyId) -> u64 {
        self.versions.get(&key).copied().unwrap_or(0)
    }

    /// Cost of one key, or of the pool when `key` is None, in the buckets starting in [from, to).
    pub fn sum_between(&self, key: Option<crate::KeyId>, from: i64, to: i64) -> MicroUsd {
        let map = match key {
            Some(k) => match self.per_key.get(&k) {
                Some(m) => m,
                None => return MicroUsd::ZERO,
            },
            None => &self.total,
        };
        if from >= to {
            return MicroUsd::ZERO;
        }
        map.range(from..to).map(|(_, amount)| *amount).sum()
    }

    /// Hourly points of one key, or of the pool when `key` is None, oldest first.
    pub fn points(&self, key: Option<crate::KeyId>) -> Vec<CostPoint> {
        let map = match key {
            Some(k) => match self.per_key.get(&k) {
                Some(m) => m,
                None => return vec![],
            },
            None => &self.total,
        };
        map.iter()
            .filter_map(|(t, amount)| chrono::DateTime::from_timestamp(*t, 0).map(|at| CostPoint { at, amount: *amount }))
            .collect()
    }

    pub fn spent(&self, key: crate::KeyId) -> MicroUsd {
        self.per_key.get(&key).map(|m| m.values().copied().sum()).unwrap_or(MicroUsd::ZERO)
    }
}

/// Running sum over time.
pub fn cumulative(points: &[CostPoint]) -> Vec<CostPoint> {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| p.at);
    let mut total = MicroUsd::ZERO;
    sorted
        .into_iter()
        .map(|p| {
            total += p.amount;
            CostPoint { at: p.at, amount: total }
        })
        .collect()
}

/// The points of a cumulative series within [from, to], led by a point at `from` carrying the total
/// reached before it when there is earlier history: a range with no cost of its own then shows the
/// level cost had reached, not zero.
pub fn cumulative_in_range(cumulative: &[CostPoint], from: i64, to: i64) -> Vec<CostPoint> {
    let start = cumulative.partition_point(|p| p.at.timestamp() < from);
    let end = cumulative.partition_point(|p| p.at.timestamp() <= to);
    let mut out = Vec::with_capacity(end.saturating_sub(start) + 1);
    let starts_at_from = cumulative.get(start).is_some_and(|p| p.at.timestamp() == from);
    if let (Some(before), false) = (start.checked_sub(1).and_then(|i| cumulative.get(i)), starts_at_from) {
        if let Some(at) = chrono::DateTime::from_timestamp(from, 0) {
            out.push(CostPoint { at, amount: before.amount });
        }
    }
    out.extend_from_slice(&cumulative[start..end.max(start)]);
    out
}

/// Thins a cumulative (monotone) series to about `max_points`: splits the time span into equal
/// slots and keeps the last point of each, plus the first point. Values are kept exact.
pub fn downsample_cumulative(points: &[CostPoint], max_points: usize) -> Vec<CostPoint> {
    let max_points = max_points.max(2);
    if points.len() <= max_points {
        return points.to_vec();
    }
    let first = points[0].at.timestamp();
    let last = points[points.len() - 1].at.timestamp();
    let span = (last - first).max(1) as i128;
    let slots = (max_points - 1) as i128;
    let mut out = vec![points[0]];
    let mut current_slot = -1i128;
    for (i, p) in points.iter().enumerate().skip(1) {
        let slot = ((p.at.timestamp() - first) as i128 * slots / span).min(slots - 1);
        let is_last = i == points.len() - 1;
        let next_slot = points
            .get(i + 1)
            .map(|n| ((n.at.timestamp() - first) as i128 * slots / span).min(slots - 1));
        // Keep the last point of each slot.
        if is_last || next_slot != Some(slot) {
            if slot != current_slot || is_last {
                out.push(*p);
                current_slot = slot;
            }
        }
    }
    out
}

/// When a node held a key: from its issue time until the key retired (`None`: still held).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub node: NodeId,
    pub from: Timestamp,
    pub until: Option<Timestamp>,
}

/// Each hour's cost of a key split evenly among the nodes holding it during that hour (a node holds
/// an hour when its holding overlaps it); a node's share is the sum over its hours. Duplicate nodes
/// count once, from their earliest start to their latest end. Ties in rounding go by name.
pub fn cost_per_node(hourly: &[CostPoint], holdings: &[Holding]) -> BTreeMap<NodeId, MicroUsd> {
    let mut merged: BTreeMap<&NodeId, (Timestamp, Option<Timestamp>)> = BTreeMap::new();
    for h in holdings {
        merged
            .entry(&h.node)
            .and_modify(|(from, until)| {
                *from = (*from).min(h.from);
                *until = match (*until, h.until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            })
            .or_insert((h.from, h.until));
    }
    let spans: Vec<(Timestamp, Option<Timestamp>)> = merged.values().copied().collect();
    merged.into_keys().cloned().zip(split_cost(hourly, &spans)).collect()
}

/// The shares of holders given as spans `(from, until)` (until None: still holding), in the same
/// order. Shares are exact fractions summed in fixed point, then rounded down; the micro-dollars the
/// rounding leaves over go one each to the largest fractions (ties: earlier in `spans`), so shares
/// sum exactly to the cost of the hours anyone held. `hourly` is sorted by time, as
/// `HourlyCosts::points` returns it. O((hours + holders) log): each span covers a contiguous run of
/// hours, so prefix sums over hours replace a per-hour pass over the holders.
pub fn split_cost(hourly: &[CostPoint], spans: &[(Timestamp, Option<Timestamp>)]) -> Vec<MicroUsd> {
    // Fixed point: 1e12 parts per µUSD keeps the rounding error of all hours far below one µUSD.
    const SCALE: i128 = 1_000_000_000_000;
    let starts: Vec<i64> = hourly.iter().map(|p| p.at.timestamp()).collect();
    // Hour index range [first, last) of a span: hours with start + 3600 > from and start < until.
    let ranges: Vec<(usize, usize)> = spans
        .iter()
        .map(|(from, until)| {
            let first = starts.partition_point(|&s| s + 3600 <= from.timestamp());
            let last = until.map_or(starts.len(), |u| starts.partition_point(|&s| s < u.timestamp()));
            (first, last.max(first))
        })
        .collect();
    let mut holders = vec![0i64; starts.len() + 1];
    for &(first, last) in &ranges {
        holders[first] += 1;
        holders[last] -= 1;
    }
    // prefix[i]: scaled share one holder earns over hours [0, i); `shared`: the µUSD split at all.
    let mut prefix = vec![0i128; starts.len() + 1];
    let (mut count, mut shared) = (0i64, 0i64);
    for (i, point) in hourly.iter().enumerate() {
        count += holders[i];
        let share = if count > 0 && point.amount.0 > 0 {
            shared += point.amount.0;
            point.amount.0 as i128 * SCALE / count as i128
        } else {
            0
        };
        prefix[i + 1] = prefix[i] + share;
    }
    let exact: Vec<i128> = ranges.iter().map(|&(first, last)| prefix[last] - prefix[first]).collect();
    let mut shares: Vec<MicroUsd> = exact.iter().map(|scaled| MicroUsd((scaled / SCALE) as i64)).collect();
    let handed_out: i64 = shares.iter().map(|m| m.0).sum();
    // Fractions below one µUSD in SCALE parts (fit an i64), computed once rather than per comparison.
    let fractions: Vec<i64> = exact.iter().map(|scaled| (scaled % SCALE) as i64).collect();
    let left_over = ((shared - handed_out).max(0) as usize).min(shares.len());
    if left_over == 0 {
        return shares;
    }
    // The `left_over` largest fractions (ties: earlier first) take one µUSD each: a selection, as
    // their order among themselves does not matter.
    let mut by_fraction: Vec<usize> = (0..exact.len()).collect();
    by_fraction.select_nth_unstable_by(left_over - 1, |&a, &b| fractions[b].cmp(&fractions[a]).then(a.cmp(&b)));
    for &i in &by_fraction[..left_over] {
        shares[i].0 += 1;
    }
    shares
}

/// Cost of the hour buckets starting in [from, to) (unix seconds).
pub fn spent_between(hourly: &[CostPoint], from: i64, to: i64) -> MicroUsd {
    hourly.iter().filter(|p| (from..to).contains(&p.at.timestamp())).map(|p| p.amount).sum()
}

/// Cost over the last 24 hours ÷ 24 (per hour).
pub fn burn_rate_per_hour(hourly: &[CostPoint], now: Timestamp) -> MicroUsd {
    let since = now - chrono::TimeDelta::hours(24);
    let day: MicroUsd = hourly.iter().filter(|p| p.at > since && p.at <= now).map(|p| p.amount).sum();
    MicroUsd(day.0 / 24)
}

/// [`burn_rate_per_hour`] of one key (or the pool) read from the hourly index by range.
pub fn burn_rate_in(hourly: &HourlyCosts, key: Option<crate::KeyId>, now: Timestamp) -> MicroUsd {
    // Buckets starting after now − 24 h and at most now, as whole seconds.
    let since = (now - chrono::TimeDelta::hours(24)).timestamp();
    let day = hourly.sum_between(key, since + 1, now.timestamp() + 1);
    MicroUsd(day.0 / 24)
}

/// Seconds until the budget is spent at `burn_per_hour`; None when nothing burns.
pub fn budget_runs_out_in_secs(budget: MicroUsd, spent: MicroUsd, burn_per_hour: MicroUsd) -> Option<u64> {
    if burn_per_hour.0 <= 0 {
        return None;
    }
    if spent >= budget {
        return Some(0);
    }
    let left = (budget.0 - spent.0) as i128;
    Some((left * 3600 / burn_per_hour.0 as i128) as u64)
}

/// Drift above which the status page warns (5%).
pub const DRIFT_WARNING_BASIS_POINTS: i64 = 500;

/// (estimate − authoritative) ÷ authoritative, in basis points; None when authoritative is zero.
pub fn drift_basis_points(estimate: MicroUsd, authoritative: MicroUsd) -> Option<i64> {
    if authoritative.0 == 0 {
        return None;
    }
    Some(((estimate.0 as i128 - authoritative.0 as i128) * 10_000 / authoritative.0 as i128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::PriceMatch;

    fn t(hours: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 - 1_800_000_000 % 3600 + hours * 3600, 0).unwrap()
    }

    #[test]
    fn a_range_starts_at_the_level_reached_before_it() {
        let hourly = vec![CostPoint { at: t(0), amount: MicroUsd(5) }, CostPoint { at: t(1), amount: MicroUsd(7) }];
        let cumulative = cumulative(&hourly);
        // A quiet range after all cost: one point at its start, at the total.
        let quiet = cumulative_in_range(&cumulative, t(5).timestamp(), t(9).timestamp());
        assert_eq!(quiet, vec![CostPoint { at: t(5), amount: MicroUsd(12) }]);
        // A range starting between points: the carried level, then the points inside.
        let mid = cumulative_in_range(&cumulative, t(0).timestamp() + 60, t(9).timestamp());
        assert_eq!(mid.iter().map(|p| p.amount.0).collect::<Vec<_>>(), vec![5, 12]);
        // Before any history, or starting exactly on a point: nothing carried.
        assert!(cumulative_in_range(&cumulative, t(-9).timestamp(), t(-5).timestamp()).is_empty());
        assert_eq!(cumulative_in_range(&cumulative, t(0).timestamp(), t(0).timestamp()).len(), 1);
        assert_eq!(cumulative_in_range(&cumulative, i64::MIN, i64::MAX), cumulative);
    }

    #[test]
    fn pricing_is_exact() {
        let table = PriceTable::default();
        let sonnet = &table.lookup("claude-sonnet-4-5").unwrap().prices;
        let tokens = TokenCounts { uncached_input: 1_200, output: 340, ..Default::default() };
        // 1200 × 3 + 340 × 15 = 3600 + 5100 = 8700 µUSD
        assert_eq!(price_tokens(&tokens, sonnet, table.web_search_per_thousand), MicroUsd(8_700));
        let reads = TokenCounts { cache_read: 5, ..Default::default() };
        // 5 × 0.30 = 1.5 µUSD → 2 (half to even)
        assert_eq!(price_tokens(&reads, sonnet, MicroUsd::ZERO), MicroUsd(2));
        let reads = TokenCounts { cache_read: 15, ..Default::default() };
        // 4.5 → 4
        assert_eq!(price_tokens(&reads, sonnet, MicroUsd::ZERO), MicroUsd(4));
        let search = TokenCounts { web_search_requests: 3, ..Default::default() };
        assert_eq!(price_tokens(&search, sonnet, table.web_search_per_thousand), MicroUsd(30_000));
        let huge = TokenCounts { output: u64::MAX, ..Default::default() };
        assert_eq!(price_tokens(&huge, sonnet, MicroUsd::ZERO), MicroUsd(i64::MAX));
    }

    #[test]
    fn every_row_is_priced_and_unknown_models_at_the_highest_rates() {
        let row = |model: &str, tier: Option<&str>, window: Option<&str>| ModelUsage {
            model: model.into(),
            service_tier: tier.map(str::to_string),
            context_window: window.map(str::to_string),
            tokens: TokenCounts { uncached_input: 1_000_000, output: 100_000, ..Default::default() },
        };
        let table = PriceTable::default();
        // Haiku 4.5: 1 M input × 1 + 0.1 M output × 5 = 1.5 USD.
        assert_eq!(price_usage(&row("claude-haiku-4-5-20251001", None, None), &table).0, MicroUsd(1_500_000));
        // Sonnet 3.7, batch: (3 + 0.1 × 15) / 2 = 2.25 USD.
        assert_eq!(price_usage(&row("claude-3-7-sonnet-20250219", Some("batch"), None), &table).0, MicroUsd(2_250_000));
        // Sonnet 4.5, long context: 1 × 6 + 0.1 × 22.5 = 8.25 USD.
        assert_eq!(price_usage(&row("claude-sonnet-4-5-20250929", None, Some("200k-1M")), &table).0, MicroUsd(8_250_000));
        let (amount, price) = price_usage(&row("mystery", None, None), &table);
        assert_eq!(price.matched, PriceMatch::Fallback);
        // The highest known rates: Opus 4 / Opus 3 at 15 input and 75 output: 15 + 7.5 = 22.5 USD.
        assert_eq!(amount, MicroUsd(22_500_000));
    }

    #[test]
    fn cumulative_and_downsampling_keep_exact_values() {
        let hourly: Vec<CostPoint> = (0..1000).map(|h| CostPoint { at: t(h), amount: MicroUsd(h + 1) }).collect();
        let cum = cumulative(&hourly);
        assert_eq!(cum.last().unwrap().amount, MicroUsd(1000 * 1001 / 2));
        let thin = downsample_cumulative(&cum, 100);
        assert!(thin.len() <= 101 && thin.len() >= 50, "{}", thin.len());
        assert_eq!(thin.first(), cum.first());
        assert_eq!(thin.last(), cum.last());
        assert!(thin.iter().all(|p| cum.contains(p)));
        assert!(thin.windows(2).all(|w| w[0].at < w[1].at));
        assert_eq!(downsample_cumulative(&cum[..10], 100), cum[..10].to_vec());
    }

    #[test]
    fn hourly_costs_upsert_replaces_and_totals_agree() {
        let mut h = HourlyCosts::default();
        let (k1, k2) = (crate::KeyId(1), crate::KeyId(2));
        h.set(k1, 0, MicroUsd(10));
        h.set(k2, 0, MicroUsd(5));
        h.set(k1, 3600, MicroUsd(7));
        h.set(k1, 0, MicroUsd(12));
        assert_eq!(h.spent(k1), MicroUsd(19));
        let total: Vec<i64> = h.points(None).iter().map(|p| p.amount.0).collect();
        assert_eq!(total, vec![17, 7]);
        assert_eq!(h.points(Some(crate::KeyId(9))), vec![]);
    }

    #[test]
    fn cost_per_node_shares_sum_exactly() {
        let hourly = vec![CostPoint { at: t(0), amount: MicroUsd(10) }, CostPoint { at: t(1), amount: MicroUsd(7) }];
        let holdings = vec![
            Holding { node: "a.os".into(), from: t(0), until: None },
            Holding { node: "b.os".into(), from: t(0) + chrono::TimeDelta::minutes(30), until: None },
            Holding { node: "c.os".into(), from: t(1) + chrono::TimeDelta::minutes(10), until: Some(t(1) + chrono::TimeDelta::minutes(20)) },
        ];
        let shares = cost_per_node(&hourly, &holdings);
        assert_eq!(shares["a.os"], MicroUsd(5 + 3));
        assert_eq!(shares["b.os"], MicroUsd(5 + 2));
        assert_eq!(shares["c.os"], MicroUsd(2));
        assert_eq!(shares.values().copied().sum::<MicroUsd>(), MicroUsd(17));
    }

    proptest::proptest! {
        /// Against the plain per-hour definition: shares sum exactly, and each is within one µUSD
        /// of the node's exact fractional share.
        #[test]
        fn cost_per_node_matches_the_definition(
            amounts in proptest::collection::vec(0i64..5_000_000, 1..40),
            spans in proptest::collection::vec((0i64..50 * 60, proptest::option::of(0i64..50 * 60)), 1..25),
        ) {
            let hourly: Vec<CostPoint> = amounts.iter().enumerate().map(|(h, a)| CostPoint { at: t(h as i64), amount: MicroUsd(*a) }).collect();
            let minutes = |m: i64| t(0) + chrono::TimeDelta::minutes(m);
            let holdings: Vec<Holding> = spans
                .iter()
                .enumerate()
                .map(|(i, (from, len))| Holding { node: format!("n{i:02}.os"), from: minutes(*from), until: len.map(|l| minutes(from + l + 1)) })
                .collect();
            let shares = cost_per_node(&hourly, &holdings);
            let holds = |h: &Holding, p: &CostPoint| {
                let (hs, he) = (p.at.timestamp(), p.at.timestamp() + 3600);
                h.from.timestamp() < he && h.until.map_or(true, |u| u.timestamp() > hs)
            };
            let mut total = 0i64;
            let mut exact = vec![0f64; holdings.len()];
            for p in &hourly {
                let n = holdings.iter().filter(|h| holds(h, p)).count();
                if n == 0 || p.amount.0 <= 0 {
                    continue;
                }
                total += p.amount.0;
                for (i, h) in holdings.iter().enumerate() {
                    if holds(h, p) {
                        exact[i] += p.amount.0 as f64 / n as f64;
                    }
                }
            }
            proptest::prop_assert_eq!(shares.values().map(|m| m.0).sum::<i64>(), total);
            for (i, h) in holdings.iter().enumerate() {
                let got = shares[&h.node].0 as f64;
                proptest::prop_assert!((got - exact[i]).abs() < 1.0 + 1e-6, "{} got {} exact {}", h.node, got, exact[i]);
            }
        }
    }

    proptest::proptest! {
        /// Built in bulk or bucket by bucket, the index is the same.
        #[test]
        fn bulk_built_hourly_costs_equal_upserts(
            series in proptest::collection::vec((1u64..5, proptest::collection::vec((0i64..50, 0i64..1_000), 0..30)), 0..8),
        ) {
            let mut one_by_one = HourlyCosts::default();
            for (key, points) in &series {
                for (h, amount) in points {
                    one_by_one.set(crate::KeyId(*key), t(*h).timestamp(), MicroUsd(*amount));
                }
            }
            let bulk = HourlyCosts::from_series(series.iter().map(|(key, points)| {
                (crate::KeyId(*key), points.iter().map(|(h, a)| (t(*h).timestamp(), MicroUsd(*a))).collect())
            }));
            proptest::prop_assert_eq!(bulk.points(None), one_by_one.points(None));
            for key in 1..5 {
                let key = crate::KeyId(key);
                proptest::prop_assert_eq!(bulk.points(Some(key)), one_by_one.points(Some(key)));
                proptest::prop_assert_eq!(bulk.version(key) == 0, one_by_one.version(key) == 0);
            }
        }

        /// The ranged sums of the hourly index agree with the sums over its points.
        #[test]
        fn ranged_sums_agree_with_the_points(
            hours in proptest::collection::vec((0i64..100, 0i64..1_000), 0..40),
            now_secs in 0i64..110 * 3600,
            from in 0i64..110,
            len in 0i64..110,
        ) {
            let mut hourly = HourlyCosts::default();
            for (h, amount) in &hours {
                hourly.set(crate::KeyId(1), t(*h).timestamp(), MicroUsd(*amount));
            }
            let points = hourly.points(Some(crate::KeyId(1)));
            let now = t(0) + chrono::TimeDelta::seconds(now_secs) + chrono::TimeDelta::milliseconds(now_secs % 1000);
            proptest::prop_assert_eq!(burn_rate_in(&hourly, Some(crate::KeyId(1)), now), burn_rate_per_hour(&points, now));
            proptest::prop_assert_eq!(burn_rate_in(&hourly, None, now), burn_rate_per_hour(&hourly.points(None), now));
            let (from, to) = (t(from).timestamp(), t(from + len).timestamp());
            proptest::prop_assert_eq!(hourly.sum_between(Some(crate::KeyId(1)), from, to), spent_between(&points, from, to));
        }
    }

    #[test]
    fn burn_rate_runway_and_drift() {
        let hourly: Vec<CostPoint> = (0..48).map(|h| CostPoint { at: t(h), amount: MicroUsd(240) }).collect();
        assert_eq!(burn_rate_per_hour(&hourly, t(47)), MicroUsd(240));
        assert_eq!(budget_runs_out_in_secs(MicroUsd(1_000), MicroUsd(520), MicroUsd(240)), Some(7_200));
        assert_eq!(budget_runs_out_in_secs(MicroUsd(1_000), MicroUsd(0), MicroUsd(0)), None);
        assert_eq!(budget_runs_out_in_secs(MicroUsd(1_000), MicroUsd(1_000), MicroUsd(1)), Some(0));
        assert_eq!(drift_basis_points(MicroUsd(105), MicroUsd(100)), Some(500));
        assert_eq!(drift_basis_points(MicroUsd(95), MicroUsd(100)), Some(-500));
        assert_eq!(drift_basis_points(MicroUsd(1), MicroUsd(0)), None);
    }
}
