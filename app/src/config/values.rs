//! Value types that check themselves while parsing, so their errors carry
//! the span of the value (and so a line) without a second pass.
//!
//! Sizes ("512MiB"), durations ("500ms"), retention ages ("30d"),
//! resolutions ("1920x1080") and bounded integers are written the way an
//! installer thinks of them. [`parse_size`] and [`parse_duration`] define the
//! spellings of a size and a duration; their typed errors say which part of
//! the text is wrong, in the words the configuration errors show.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// An integer in `MIN..=MAX`.
#[derive(Clone, Copy)]
pub(super) struct Count<const MIN: usize, const MAX: usize>(pub(super) usize);

impl<'de, const MIN: usize, const MAX: usize> Deserialize<'de> for Count<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if v < MIN as i64 || v > MAX as i64 {
            return Err(de::Error::custom(format!(
                "must be between {MIN} and {MAX}, got {v}"
            )));
        }
        Ok(Count(v as usize))
    }
}

/// A number with its span, range-checked by the caller.
pub(super) struct Ranged {
    pub(super) value: f64,
    pub(super) span: Range<usize>,
}

impl<'de> Deserialize<'de> for Ranged {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Num {
            F(f64),
            I(i64),
        }
        let s = Spanned::<Num>::deserialize(d)?;
        let span = s.span();
        let value = match s.into_inner() {
            Num::F(f) => f,
            Num::I(i) => i as f64,
        };
        Ok(Ranged { value, span })
    }
}

/// A byte count: an integer, or a string with a unit ("512MiB", "64KiB", "1GB").
#[derive(Clone, Copy)]
pub(super) struct ByteSize(pub(super) u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            I(i64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            de::Error::custom("expected a size: bytes as an integer or a string like \"512MiB\"")
        })? {
            Raw::I(i) if i >= 0 => Ok(ByteSize(i as u64)),
            Raw::I(i) => Err(de::Error::custom(format!(
                "size must not be negative, got {i}"
            ))),
            Raw::S(s) => parse_size(&s).map(ByteSize).map_err(de::Error::custom),
        }
    }
}

/// Parses "512MiB", "64 KiB", "1GB", "4096".
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let input = || s.to_owned();
    let n: u64 = num
        .parse()
        .map_err(|_| SizeError::NotASize { input: input() })?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(SizeError::UnknownUnit {
                unit: other.to_owned(),
                input: input(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| SizeError::TooLarge { input: input() })
}

/// Why [`parse_size`] refused its input; each kind keeps the input for the
/// message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// No whole number of bytes in front.
    NotASize {
        /// The text as given.
        input: String,
    },
    /// A unit other than B, KiB, MiB, GiB, KB, MB or GB.
    UnknownUnit {
        /// The unit as given.
        unit: String,
        /// The text as given.
        input: String,
    },
    /// More bytes than a `u64` holds.
    TooLarge {
        /// The text as given.
        input: String,
    },
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::NotASize { input } => {
                write!(f, "`{input}` is not a size such as \"512MiB\"")
            }
            SizeError::UnknownUnit { unit, input } => write!(
                f,
                "unknown size unit `{unit}` in `{input}`; use B, KiB, MiB, GiB, KB, MB or GB"
            ),
            SizeError::TooLarge { input } => write!(f, "size `{input}` is too large"),
        }
    }
}

impl std::error::Error for SizeError {}

/// A duration written with a unit: "500ms", "10s", "2m", "1h".
#[derive(Clone, Copy)]
pub(super) struct Seconds(pub(super) Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d).map_err(|_| {
            de::Error::custom("expected a duration string such as \"500ms\", \"10s\" or \"2m\"")
        })?;
        parse_duration(&s).map(Seconds).map_err(de::Error::custom)
    }
}

/// A retention age: a duration that may also be written in days ("30d"),
/// from one minute to ten years.
#[derive(Clone, Copy)]
pub(super) struct Age(pub(super) Duration);

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)
            .map_err(|_| de::Error::custom("expected an age such as \"30d\" or \"12h\""))?;
        let bad =
            || format!("`{s}` is not an age such as \"30d\" or \"12h\" (units ms, s, m, h, d)");
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| de::Error::custom(bad()))?;
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(de::Error::custom(bad())),
        };
        let age = Duration::from_millis(n.saturating_mul(unit_ms));
        if !(Duration::from_secs(60)..=Duration::from_secs(3650 * 86_400)).contains(&age) {
            return Err(de::Error::custom(format!(
                "age `{s}` must be between 1m and 3650d"
            )));
        }
        Ok(Age(age))
    }
}

/// Parses "500ms", "10s", "2m", "1h" (whole numbers).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let input = || s.to_owned();
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::NotADuration { input: input() })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "" => return Err(DurationError::NoUnit { input: input() }),
        other => {
            return Err(DurationError::UnknownUnit {
                unit: other.to_owned(),
                input: input(),
            })
        }
    };
    if d > Duration::from_secs(86_400) {
        return Err(DurationError::TooLong { input: input() });
    }
    Ok(d)
}

/// Why [`parse_duration`] refused its input; each kind keeps the input for
/// the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// No whole number in front.
    NotADuration {
        /// The text as given.
        input: String,
    },
    /// A bare number: the unit is never guessed.
    NoUnit {
        /// The text as given.
        input: String,
    },
    /// A unit other than ms, s, m or h.
    UnknownUnit {
        /// The unit as given.
        unit: String,
        /// The text as given.
        input: String,
    },
    /// Longer than a day.
    TooLong {
        /// The text as given.
        input: String,
    },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::NotADuration { input } => write!(
                f,
                "`{input}` is not a duration such as \"500ms\" or \"10s\""
            ),
            DurationError::NoUnit { input } => {
                write!(f, "duration `{input}` needs a unit: ms, s, m or h")
            }
            DurationError::UnknownUnit { unit, input } => write!(
                f,
                "unknown duration unit `{unit}` in `{input}`; use ms, s, m or h"
            ),
            DurationError::TooLong { input } => {
                write!(f, "duration `{input}` is longer than a day")
            }
        }
    }
}

impl std::error::Error for DurationError {}

/// "WIDTHxHEIGHT", each 16..=8192 and even.
#[derive(Clone, Copy)]
pub(super) struct Resolution(pub(super) u32, pub(super) u32);

impl<'de> Deserialize<'de> for Resolution {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)
            .map_err(|_| de::Error::custom("expected a resolution string such as \"1920x1080\""))?;
        let bad = || {
            de::Error::custom(format!(
                "`{s}` is not a resolution such as \"1920x1080\" (16..8192, even)"
            ))
        };
        let (w, h) = s.split_once('x').ok_or_else(bad)?;
        let (w, h): (u32, u32) = (
            w.trim().parse().map_err(|_| bad())?,
            h.trim().parse().map_err(|_| bad())?,
        );
        let ok = |v: u32| (16..=8192).contains(&v) && v.is_multiple_of(2);
        if !ok(w) || !ok(h) {
            return Err(bad());
        }
        Ok(Resolution(w, h))
    }
}

/// A byte count as the configuration would write it, in the largest unit
/// that divides it ("4MiB"), for messages.
pub(super) fn show_size(b: u64) -> String {
    if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
        format!("{}GiB", b >> 30)
    } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{}MiB", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{}KiB", b >> 10)
    } else {
        format!("{b}B")
    }
}
