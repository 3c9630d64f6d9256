//! Exact money: integer micro-USD. Never f64.

use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An amount of US dollars in millionths (1 USD = 1,000,000 µUSD; 1 cent = 10,000 µUSD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MicroUsd(pub i64);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("not a decimal amount: {0:?}")]
    NotDecimal(String),
    #[error("amount {0:?} has more than 6 decimal places")]
    TooPrecise(String),
    #[error("amount {0:?} is too large")]
    Overflow(String),
}

const MICRO_PER_USD: i64 = 1_000_000;
const MICRO_PER_CENT: i128 = 10_000;

/// Splits a plain decimal (optional leading '-', digits, optional '.' and digits) into sign,
/// integer digits and fraction digits.
fn split_decimal(s: &str) -> Result<(bool, &str, &str), MoneyError> {
    let bad = || MoneyError::NotDecimal(s.chars().take(40).collect());
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if unsigned.ends_with('.') && frac.is_empty() && int.is_empty() {
        return Err(bad());
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if int.is_empty() && !unsigned.starts_with('.') {
        return Err(bad());
    }
    Ok((negative, int, frac))
}

fn digits_to_i128(digits: &str, original: &str) -> Result<i128, MoneyError> {
    if digits.is_empty() {
        return Ok(0);
    }
    if digits.len() > 30 {
        return Err(MoneyError::Overflow(original.chars().take(40).collect()));
    }
    digits
        .parse::<i128>()
        .map_err(|_| MoneyError::NotDecimal(original.chars().take(40).collect()))
}

impl MicroUsd {
    pub const ZERO: MicroUsd = MicroUsd(0);

    pub fn from_usd(usd: i64) -> MicroUsd {
        MicroUsd(usd.saturating_mul(MICRO_PER_USD))
    }

    /// Parses an exact USD decimal: "5", "5.25", "0.000001". At most 6 decimal places.
    pub fn parse_usd(s: &str) -> Result<MicroUsd, MoneyError> {
        let (negative, int, frac) = split_decimal(s)?;
        if frac.len() > 6 {
            return Err(MoneyError::TooPrecise(s.chars().take(40).collect()));
        }
        let whole = digits_to_i128(int, s)?;
        let mut frac_padded = frac.to_string();
        while frac_padded.len() < 6 {
            frac_padded.push('0');
        }
        let fraction = digits_to_i128(&frac_padded, s)?;
        let value = whole * MICRO_PER_USD as i128 + fraction;
        let value = if negative { -value } else { value };
        i64::try_from(value)
            .map(MicroUsd)
            .map_err(|_| MoneyError::Overflow(s.chars().take(40).collect()))
    }

    /// Parses an Admin API cost amount: a decimal string in **cents** ("123.45" = USD 1.2345).
    /// Digits beyond the µUSD (more than 4 decimal places of a cent) are rounded half to even.
    pub fn parse_cents(s: &str) -> Result<MicroUsd, MoneyError> {
        let (negative, int, frac) = split_decimal(s)?;
        let whole_cents = digits_to_i128(int, s)?;
        // µUSD = cents × 10,000: the first 4 fraction digits are whole µUSD.
        let (kept, rest) = if frac.len() > 4 { frac.split_at(4) } else { (frac, "") };
        let mut kept_padded = kept.to_string();
        while kept_padded.len() < 4 {
            kept_padded.push('0');
        }
        let mut micro = whole_cents
            .checked_mul(MICRO_PER_CENT)
            .ok_or_else(|| MoneyError::Overflow(s.chars().take(40).collect()))?
            + digits_to_i128(&kept_padded, s)?;
        if !rest.is_empty() {
            let first = rest.as_bytes()[0] - b'0';
            let beyond_half = rest.bytes().skip(1).any(|b| b != b'0');
            let round_up = first > 5 || (first == 5 && (beyond_half || micro % 2 == 1));
            if round_up {
                micro += 1;
            }
        }
        let micro = if negative { -micro } else { micro };
        i64::try_from(micro)
            .map(MicroUsd)
            .map_err(|_| MoneyError::Overflow(s.chars().take(40).collect()))
    }

    pub fn checked_add(self, other: MicroUsd) -> Option<MicroUsd> {
        self.0.checked_add(other.0).map(MicroUsd)
    }

    pub fn checked_sub(self, other: MicroUsd) -> Option<MicroUsd> {
        self.0.checked_sub(other.0).map(MicroUsd)
    }

    pub fn saturating_sub(self, other: MicroUsd) -> MicroUsd {
        MicroUsd(self.0.saturating_sub(other.0))
    }

    /// Exact USD with 6 decimals: "1.234500", "-0.000001".
    pub fn format_usd(&self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = (self.0 as i128).abs();
        format!("{sign}{}.{:06}", abs / MICRO_PER_USD as i128, abs % MICRO_PER_USD as i128)
    }
}

impl std::fmt::Display for MicroUsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.format_usd())
    }
}

impl Add for MicroUsd {
    type Output = MicroUsd;
    fn add(self, other: MicroUsd) -> MicroUsd {
        MicroUsd(self.0.saturating_add(other.0))
    }
}

impl Sub for MicroUsd {
    type Output = MicroUsd;
    fn sub(self, other: MicroUsd) -> MicroUsd {
        MicroUsd(self.0.saturating_sub(other.0))
    }
}

impl AddAssign for MicroUsd {
    fn add_assign(&mut self, other: MicroUsd) {
        *self = *self + other;
    }
}

impl Sum for MicroUsd {
    fn sum<I: Iterator<Item = MicroUsd>>(iter: I) -> MicroUsd {
        iter.fold(MicroUsd::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a MicroUsd> for MicroUsd {
    fn sum<I: Iterator<Item = &'a MicroUsd>>(iter: I) -> MicroUsd {
        iter.copied().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_parsing_is_exact() {
        assert_eq!(MicroUsd::parse_usd("5"), Ok(MicroUsd(5_000_000)));
        assert_eq!(MicroUsd::parse_usd("5.25"), Ok(MicroUsd(5_250_000)));
        assert_eq!(MicroUsd::parse_usd("0.000001"), Ok(MicroUsd(1)));
        assert_eq!(MicroUsd::parse_usd(".5"), Ok(MicroUsd(500_000)));
        assert_eq!(MicroUsd::parse_usd("-1.5"), Ok(MicroUsd(-1_500_000)));
        for bad in ["", "-", ".", "1.2.3", "1e5", " 1", "NaN", "+1", "1,5", "abc"] {
            assert!(MicroUsd::parse_usd(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(MicroUsd::parse_usd("0.0000001"), Err(MoneyError::TooPrecise(_))));
        assert!(matches!(MicroUsd::parse_usd("99999999999999999999"), Err(MoneyError::Overflow(_))));
    }

    #[test]
    fn cents_parsing_is_exact_and_rounds_half_even() {
        assert_eq!(MicroUsd::parse_cents("123.45"), Ok(MicroUsd(1_234_500)));
        assert_eq!(MicroUsd::parse_cents("0.0001"), Ok(MicroUsd(1)));
        assert_eq!(MicroUsd::parse_cents("100"), Ok(MicroUsd(1_000_000)));
        assert_eq!(MicroUsd::parse_cents("0.00005"), Ok(MicroUsd(0)));
        assert_eq!(MicroUsd::parse_cents("0.00015"), Ok(MicroUsd(2)));
        assert_eq!(MicroUsd::parse_cents("0.000051"), Ok(MicroUsd(1)));
        assert_eq!(MicroUsd::parse_cents("0.00004999"), Ok(MicroUsd(0)));
        assert!(MicroUsd::parse_cents("12,3").is_err());
        assert!(MicroUsd::parse_cents("1e3").is_err());
    }

    #[test]
    fn formatting_and_sums() {
        assert_eq!(MicroUsd(1_234_500).format_usd(), "1.234500");
        assert_eq!(MicroUsd(-1).format_usd(), "-0.000001");
        let total: MicroUsd = [MicroUsd(1), MicroUsd(2)].iter().sum();
        assert_eq!(total, MicroUsd(3));
    }
}
