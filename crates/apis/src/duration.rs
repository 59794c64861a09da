//! Go-compatible durations as Karpenter's API carries them.
//!
//! Upstream stores durations as Go `time.Duration` strings (`"720h"`, `"1h30m"`, `"0s"`) and
//! `expireAfter` / `consolidateAfter` additionally accept `Never`. We keep the raw string the
//! user wrote so that a read-modify-write does not rewrite `720h` into `720h0m0s`, and parse it
//! once on deserialization so a malformed value fails at the boundary, naming itself.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The literal that disables a [`NillableDuration`].
pub const NEVER: &str = "Never";

/// Why a duration string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("invalid duration \"\": empty string")]
    Empty,
    /// The string is not Go duration syntax.
    #[error("invalid duration {0:?}")]
    Invalid(String),
    /// A number has no unit (only a bare `0` may omit it).
    #[error("missing unit in duration {0:?}")]
    MissingUnit(String),
    /// The unit is not one of ns, us, µs, ms, s, m, h.
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// Negative durations cannot be represented.
    #[error("negative duration {0:?} is not supported")]
    Negative(String),
    /// The value does not fit in 64-bit nanoseconds (Go's limit, about 292 years).
    #[error("duration {0:?} overflows")]
    Overflow(String),
}

impl DurationError {
    /// Stable short name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Invalid(_) => "invalid",
            Self::MissingUnit(_) => "missing_unit",
            Self::UnknownUnit { .. } => "unknown_unit",
            Self::Negative(_) => "negative",
            Self::Overflow(_) => "overflow",
        }
    }
}

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses Go `time.ParseDuration` syntax: an optional sign, then one or more decimal numbers
/// (with optional fraction) each followed by a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`),
/// e.g. `1h30m`, `720h`, `1.5s`, `0s`, or a bare `0`. Negative results are rejected because
/// nothing in Karpenter's API means a negative duration.
pub fn parse_go_duration(input: &str) -> Result<StdDuration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let (negative, body) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if body == "0" {
        return Ok(StdDuration::ZERO);
    }
    if body.is_empty() {
        return Err(DurationError::Invalid(input.to_string()));
    }
    let invalid = || DurationError::Invalid(input.to_string());
    let overflow = || DurationError::Overflow(input.to_string());
    let mut total_nanos: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_num
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, after_unit) = after_num.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let scale = NANOS_PER_UNIT
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| DurationError::UnknownUnit {
                unit: unit.to_string(),
                input: input.to_string(),
            })?;
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(overflow)?;
        if !frac_part.is_empty() {
            // Go truncates the fraction towards zero at nanosecond precision.
            let digits = frac_part.len().min(30);
            let frac: u128 = frac_part[..digits].parse().map_err(|_| invalid())?;
            let denom = 10u128.checked_pow(digits as u32).ok_or_else(overflow)?;
            nanos = nanos
                .checked_add(frac.checked_mul(scale).ok_or_else(overflow)? / denom)
                .ok_or_else(overflow)?;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
        rest = after_unit;
    }
    if total_nanos > i64::MAX as u128 {
        return Err(overflow());
    }
    if negative && total_nanos != 0 {
        return Err(DurationError::Negative(input.to_string()));
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| overflow())?;
    let sub = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| overflow())?;
    Ok(StdDuration::new(secs, sub))
}

/// Formats a duration the way Go's `time.Duration.String()` does (`720h0m0s`, `1m30s`,
/// `1.5s`, `300ms`, `0s`); this is what upstream writes when it creates a value itself.
pub fn format_go_duration(d: StdDuration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", format_fraction(nanos, scale));
    }
    let total_secs = nanos / 1_000_000_000;
    let sub_nanos = nanos % 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let secs_text = format_fraction(secs * 1_000_000_000 + sub_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs_text}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs_text}s")
    } else {
        format!("{secs_text}s")
    }
}

/// `value / scale` with the fractional part printed without trailing zeros.
fn format_fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.to_string().len() - 1;
    let frac_text = format!("{frac:0width$}");
    format!("{whole}.{}", frac_text.trim_end_matches('0'))
}

/// A Go `metav1.Duration` (e.g. `terminationGracePeriod`, budget `duration`): the raw string
/// is kept for round-tripping; the parsed value is available without re-parsing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Duration {
    raw: String,
    value: StdDuration,
}

impl Duration {
    /// Parses a Go duration string.
    pub fn parse(raw: &str) -> Result<Self, DurationError> {
        Ok(Self {
            raw: raw.to_string(),
            value: parse_go_duration(raw)?,
        })
    }

    /// A duration written in Go's canonical form.
    pub fn from_std(value: StdDuration) -> Self {
        Self {
            raw: format_go_duration(value),
            value,
        }
    }

    /// The parsed value.
    pub fn as_std(&self) -> StdDuration {
        self.value
    }

    /// The string as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duration({:?})", self.raw)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A duration that may be `Never` (`expireAfter`, `consolidateAfter`). `Never` means "disabled"
/// and parses to `None`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NillableDuration {
    raw: String,
    value: Option<StdDuration>,
}

impl NillableDuration {
    /// Parses a Go duration string or `Never`.
    pub fn parse(raw: &str) -> Result<Self, DurationError> {
        let value = if raw == NEVER {
            None
        } else {
            Some(parse_go_duration(raw)?)
        };
        Ok(Self {
            raw: raw.to_string(),
            value,
        })
    }

    /// A value whose raw text is known to parse to `value` (for compile-time defaults).
    pub(crate) fn from_trusted(raw: &str, value: Option<StdDuration>) -> Self {
        Self {
            raw: raw.to_string(),
            value,
        }
    }

    /// `Never`.
    pub fn never() -> Self {
        Self {
            raw: NEVER.to_string(),
            value: None,
        }
    }

    /// A set duration written in Go's canonical form.
    pub fn from_std(value: StdDuration) -> Self {
        Self {
            raw: format_go_duration(value),
            value: Some(value),
        }
    }

    /// The duration, or `None` for `Never`.
    pub fn as_duration(&self) -> Option<StdDuration> {
        self.value
    }

    /// Whether this is `Never`.
    pub fn is_never(&self) -> bool {
        self.value.is_none()
    }

    /// The string as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }
}

impl fmt::Debug for NillableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NillableDuration({:?})", self.raw)
    }
}

impl fmt::Display for NillableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for NillableDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for NillableDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for NillableDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> StdDuration {
        StdDuration::from_secs(s)
    }

    fn check_parse(input: &str, expected: Result<StdDuration, &str>) {
        let got = parse_go_duration(input);
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "input {input:?}"),
            (Err(err), Err(category)) => assert_eq!(err.category(), category, "input {input:?}"),
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_go_syntax() {
        let cases: &[(&str, Result<StdDuration, &str>)] = &[
            ("0", Ok(StdDuration::ZERO)),
            ("0s", Ok(StdDuration::ZERO)),
            ("-0s", Ok(StdDuration::ZERO)),
            ("30s", Ok(secs(30))),
            ("1m", Ok(secs(60))),
            ("1h30m", Ok(secs(5400))),
            ("720h", Ok(secs(720 * 3600))),
            ("720h0m0s", Ok(secs(720 * 3600))),
            ("1.5h", Ok(secs(5400))),
            (".5s", Ok(StdDuration::from_millis(500))),
            ("300ms", Ok(StdDuration::from_millis(300))),
            ("2us", Ok(StdDuration::from_micros(2))),
            ("2µs", Ok(StdDuration::from_micros(2))),
            ("7ns", Ok(StdDuration::from_nanos(7))),
            ("+5m", Ok(secs(300))),
            ("1h1h", Ok(secs(7200))),
            ("", Err("empty")),
            ("Never", Err("invalid")),
            ("10", Err("missing_unit")),
            ("5d", Err("unknown_unit")),
            ("h", Err("invalid")),
            (".s", Err("invalid")),
            ("-", Err("invalid")),
            ("-5m", Err("negative")),
            ("3000000h", Err("overflow")),
        ];
        for (input, expected) in cases {
            check_parse(input, *expected);
        }
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(StdDuration, &str)] = &[
            (StdDuration::ZERO, "0s"),
            (secs(30), "30s"),
            (secs(90), "1m30s"),
            (secs(720 * 3600), "720h0m0s"),
            (StdDuration::from_millis(1500), "1.5s"),
            (StdDuration::from_millis(300), "300ms"),
            (StdDuration::from_micros(2), "2µs"),
            (StdDuration::from_nanos(7), "7ns"),
            (secs(3601), "1h0m1s"),
        ];
        for (value, want) in cases {
            assert_eq!(format_go_duration(*value), *want);
            assert_eq!(parse_go_duration(want).ok(), Some(*value), "reparse {want}");
        }
    }

    #[test]
    fn nillable_keeps_raw_and_never() {
        let cases: &[(&str, Option<StdDuration>)] = &[
            ("Never", None),
            ("720h", Some(secs(720 * 3600))),
            ("0s", Some(StdDuration::ZERO)),
            ("1h30m", Some(secs(5400))),
        ];
        for (raw, want) in cases {
            let parsed: NillableDuration =
                serde_json::from_value(serde_json::Value::String(raw.to_string())).unwrap();
            assert_eq!(parsed.as_duration(), *want, "{raw}");
            assert_eq!(parsed.is_never(), want.is_none());
            assert_eq!(serde_json::to_value(&parsed).unwrap(), *raw);
        }
        let bad: Result<NillableDuration, _> = serde_json::from_str("\"never\"");
        assert!(bad.is_err());
        assert_eq!(NillableDuration::from_std(secs(60)).raw(), "1m0s");
        assert!(NillableDuration::never().is_never());
    }

    #[test]
    fn duration_rejects_never() {
        assert!(Duration::parse("Never").is_err());
        let d = Duration::parse("48h").unwrap();
        assert_eq!(d.as_std(), secs(48 * 3600));
        assert_eq!(serde_json::to_value(&d).unwrap(), "48h");
    }
}
