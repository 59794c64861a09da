//! Kubernetes quantities (`100m`, `1.5`, `1Gi`, `1e3`, `512Mi`, `1k`) parsed exactly and
//! converted to integers: millicores for `cpu`, base units (bytes, counts) for everything else.

use std::fmt;

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    /// The rejected text.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl QuantityError {
    /// Stable short label for metrics.
    pub fn category(&self) -> &'static str {
        "invalid_quantity"
    }
}

/// A parsed quantity: `mantissa × 10^exp10 × 2^exp2`, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    exp10: i32,
    exp2: u32,
}

impl Quantity {
    /// Parses the Kubernetes quantity grammar: sign, digits with optional fraction, then either a
    /// binary suffix (Ki…Ei), a decimal suffix (n, u, m, k, M, G, T, P, E) or an exponent (`e3`).
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let err = |reason| QuantityError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        if number.is_empty() || number == "." {
            return Err(err("no digits"));
        }
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => {
                if f.contains('.') {
                    return Err(err("more than one decimal point"));
                }
                (i, f)
            }
            None => (number, ""),
        };
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return Err(err("too many significant digits"));
        }
        let mut mantissa: i128 = 0;
        for b in digits.bytes() {
            mantissa = mantissa * 10 + i128::from(b - b'0');
        }
        let frac_len = i32::try_from(frac_part.len()).map_err(|_| err("fraction too long"))?;
        let mut exp10 = -frac_len;
        let mut exp2 = 0u32;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            other => {
                let exponent = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .ok_or_else(|| err("unknown suffix"))?;
                let e: i32 = exponent.parse().map_err(|_| err("bad exponent"))?;
                if !(-30..=30).contains(&e) {
                    return Err(err("exponent out of range"));
                }
                exp10 += e;
            }
        }
        if negative {
            mantissa = -mantissa;
        }
        Ok(Quantity {
            mantissa,
            exp10,
            exp2,
        })
    }

    /// The value × 10^`scale`, rounded up (towards +∞) and saturated to `i64`.
    pub fn scaled_ceil(&self, scale: i32) -> i64 {
        let mut num: i128 = self.mantissa;
        let mut den: i128 = 1;
        let e = self.exp10 + scale;
        for _ in 0..e.max(0) {
            num = num.saturating_mul(10);
        }
        for _ in 0..(-e).max(0) {
            den = den.saturating_mul(10);
        }
        num = num.saturating_mul(1i128 << self.exp2.min(64));
        let q = num.div_euclid(den);
        let r = num.rem_euclid(den);
        let v = if r > 0 { q + 1 } else { q };
        i64::try_from(v).unwrap_or(if v > 0 { i64::MAX } else { i64::MIN })
    }

    /// Value in thousandths, rounded up (how `cpu` is stored).
    pub fn milli(&self) -> i64 {
        self.scaled_ceil(3)
    }

    /// Value in base units, rounded up (how every other resource is stored).
    pub fn value(&self) -> i64 {
        self.scaled_ceil(0)
    }
}

/// Parses `text` for resource `name` into the crate's integer unit (millicores for `cpu`).
pub fn parse_resource(name: &str, text: &str) -> Result<i64, QuantityError> {
    let q = Quantity::parse(text)?;
    Ok(if name == crate::resources::CPU {
        q.milli()
    } else {
        q.value()
    })
}

/// Formats an integer amount of resource `name` the way Kubernetes would print it
/// (`1500m`, `2`, `512Mi`, `7Gi`).
pub fn format_resource(name: &str, amount: i64) -> String {
    FormattedAmount { name, amount }.to_string()
}

struct FormattedAmount<'a> {
    name: &'a str,
    amount: i64,
}

impl fmt::Display for FormattedAmount<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.amount;
        if self.name == crate::resources::CPU {
            return if v % 1000 == 0 {
                write!(f, "{}", v / 1000)
            } else {
                write!(f, "{v}m")
            };
        }
        if v != 0 && v.unsigned_abs() >= 1024 {
            for (shift, suffix) in [
                (60, "Ei"),
                (50, "Pi"),
                (40, "Ti"),
                (30, "Gi"),
                (20, "Mi"),
                (10, "Ki"),
            ] {
                let unit = 1i64 << shift;
                if v % unit == 0 {
                    return write!(f, "{}{suffix}", v / unit);
                }
            }
        }
        write!(f, "{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_quantity_grammar() {
        let cases: &[(&str, &str, i64)] = &[
            ("cpu", "100m", 100),
            ("cpu", "1.5", 1500),
            ("cpu", "2", 2000),
            ("cpu", "0.1", 100),
            ("cpu", "1e3", 1_000_000),
            ("cpu", "1k", 1_000_000),
            ("cpu", "250m", 250),
            ("cpu", "0.0001", 1),
            ("memory", "1Gi", 1 << 30),
            ("memory", "512Mi", 512 << 20),
            ("memory", "1k", 1000),
            ("memory", "1M", 1_000_000),
            ("memory", "1.5Gi", 3 << 29),
            ("memory", "100", 100),
            ("memory", "1e3", 1000),
            ("memory", "1E3", 1000),
            ("memory", "1G", 1_000_000_000),
            ("memory", "1Ki", 1024),
            ("memory", "+5", 5),
            ("memory", "-5", -5),
            ("memory", "10n", 1),
            ("pods", "110", 110),
            ("nvidia.com/gpu", "1", 1),
        ];
        for (name, text, want) in cases {
            assert_eq!(parse_resource(name, text), Ok(*want), "{name} {text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "1Qi", "1e", ".", "1ee3", "--1"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_like_kubernetes() {
        assert_eq!(format_resource("cpu", 1500), "1500m");
        assert_eq!(format_resource("cpu", 2000), "2");
        assert_eq!(format_resource("memory", 512 << 20), "512Mi");
        assert_eq!(format_resource("memory", 7 << 30), "7Gi");
        assert_eq!(format_resource("memory", 1000), "1000");
        assert_eq!(format_resource("pods", 29), "29");
    }
}
