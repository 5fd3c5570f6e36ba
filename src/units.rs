//! Parsers for the value forms of the command line: RATE (`10/s`, `600/m`, `unlimited`),
//! DURATION (humantime: `250ms`, `30s`, `2m`), SIZE (`10MiB`, `512KB`, bytes) and QUOTA
//! (`5000/h`, `30/3s`: at most N requests in any window of that length).
//!
//! Each parser is a plain function usable as a clap `value_parser`; its error text is the
//! "expected …" half of a usage error, clap adds the flag name.

use std::fmt;
use std::time::Duration;

/// The accepted RATE forms, quoted in usage errors.
pub const RATE_FORMS: &str = "expected a rate like 10, 10/s, 600/m, 5000/h, 0.5/s or unlimited";
/// The accepted SIZE forms, quoted in usage errors.
pub const SIZE_FORMS: &str = "expected a size like 10MiB, 512KB, 1GB or a number of bytes";
/// The accepted QUOTA forms, quoted in usage errors.
pub const QUOTA_FORMS: &str =
    "expected a quota like 5000/h, 30/3s, 100/15m or 50000/d (at most N in any window)";
/// The accepted DURATION forms, quoted in usage errors.
pub const DURATION_FORMS: &str = "expected a duration like 250ms, 30s, 2m or 1h";

/// A request rate: either unlimited or one request per `period`.
///
/// ```
/// use ratefetch::units::{parse_rate, Rate};
/// use std::time::Duration;
/// assert_eq!(parse_rate("600/m").unwrap(), Rate::Every(Duration::from_millis(100)));
/// assert_eq!(parse_rate("10").unwrap().per_second(), Some(10.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No limit.
    Unlimited,
    /// One request per this period (the GCRA emission interval).
    Every(Duration),
}

impl Rate {
    /// Requests per second, `None` when unlimited.
    pub fn per_second(self) -> Option<f64> {
        match self {
            Rate::Unlimited => None,
            Rate::Every(p) => Some(1.0 / p.as_secs_f64()),
        }
    }

    /// The emission interval, `None` when unlimited.
    pub fn period(self) -> Option<Duration> {
        match self {
            Rate::Unlimited => None,
            Rate::Every(p) => Some(p),
        }
    }
}

impl fmt::Display for Rate {
    /// A rate's one text, used everywhere a rate is shown or stored (messages, the log's
    /// header, the audit, the plan, the spec stored with a Redis key): the first of per
    /// second, per minute, per hour (`10/s`, `0.5/s`, `5000/h`), to six significant digits,
    /// that reads back as exactly the same period; else its period in nanoseconds
    /// (`1/6666666ns`), which always does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Rate::Every(period) = *self else {
            return f.write_str("unlimited");
        };
        for (unit, name) in [(1.0, "s"), (60.0, "m"), (3600.0, "h")] {
            let n = unit / period.as_secs_f64();
            let magnitude = n.log10().floor() as i32 + 1;
            let decimals = usize::try_from(6 - magnitude).unwrap_or(0);
            let text = format!("{n:.decimals$}");
            let text = if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.')
            } else {
                &text
            };
            let text = format!("{text}/{name}");
            if parse_rate(&text) == Ok(*self) {
                return f.write_str(&text);
            }
        }
        write!(f, "1/{}ns", period.as_nanos())
    }
}

/// Parses RATE: `N` (per second), `N/s`, `N/m`, `N/h` (also `sec`, `min`, `hour` and plural
/// spellings), a decimal `N`, or `unlimited`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(Rate::Unlimited);
    }
    // A period in nanoseconds, as a rate with no exact short form is shown.
    if let Some(ns) = s
        .strip_prefix("1/")
        .and_then(|t| t.strip_suffix("ns"))
        .and_then(|n| n.parse::<u64>().ok())
    {
        return match ns {
            0 => Err(format!("{RATE_FORMS} (a period of 0ns)")),
            ns => Ok(Rate::Every(Duration::from_nanos(ns))),
        };
    }
    let (count, unit) = match s.split_once('/') {
        Some((n, u)) => (n.trim(), u.trim()),
        None => (s, "s"),
    };
    let unit_secs = match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3600.0,
        _ => return Err(RATE_FORMS.to_string()),
    };
    let n: f64 = count.parse().map_err(|_| RATE_FORMS.to_string())?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("{RATE_FORMS} (the count must be above 0)"));
    }
    let period = unit_secs / n;
    // Below one nanosecond the limiter cannot represent the rate; above ~a year it is a typo.
    if period < 1e-9 {
        return Err(format!("{RATE_FORMS} (too high; use 'unlimited')"));
    }
    if period > 366.0 * 86_400.0 {
        return Err(format!("{RATE_FORMS} (too low)"));
    }
    Ok(Rate::Every(Duration::from_secs_f64(period)))
}

/// A windowed quota: at most `limit` requests in any window of length `window` (a sliding
/// window over send times). Unlike a `Rate`, a quota may be spent in a burst.
///
/// ```
/// use ratefetch::units::{parse_quota, Quota};
/// use std::time::Duration;
/// let q = parse_quota("5000/h").unwrap();
/// assert_eq!(q, Quota { limit: 5000, window: Duration::from_secs(3600) });
/// assert_eq!(parse_quota("30/3s").unwrap().window, Duration::from_secs(3));
/// assert_eq!(q.to_string(), "5000/1h");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed in any one window.
    pub limit: u64,
    /// The window's length.
    pub window: Duration,
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.limit,
            humantime::format_duration(self.window)
        )
    }
}

/// One part of a list split between processes (`--shard K/N`): the lines whose index i has
/// (i − 1) mod N = K − 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part, from 1.
    pub k: u64,
    /// Into how many parts.
    pub n: u64,
}

impl Shard {
    /// Whether the line (or CSV row) with this index is this shard's.
    pub fn takes(self, index: u64) -> bool {
        index.saturating_sub(1) % self.n == self.k - 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// Parses SHARD: `K/N` with 1 ≤ K ≤ N.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let bad = || format!("expected K/N with 1 ≤ K ≤ N, like 2/4, got {s:?}");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let k: u64 = k.trim().parse().map_err(|_| bad())?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok(Shard { k, n })
}

/// Parses QUOTA: `N/WINDOW`, where WINDOW is a duration (`3s`, `15m`, `1h`, `1d`) or a bare
/// unit (`s`, `m`, `h`, `d`: one of each). N is a whole number above 0.
pub fn parse_quota(s: &str) -> Result<Quota, String> {
    let (count, window) = s.trim().split_once('/').ok_or(QUOTA_FORMS)?;
    let limit: u64 = count.trim().parse().map_err(|_| QUOTA_FORMS.to_string())?;
    if limit == 0 {
        return Err(format!("{QUOTA_FORMS} (the count must be above 0)"));
    }
    let window = window.trim();
    let window = match window.to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hr" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        _ => humantime::parse_duration(window).map_err(|_| QUOTA_FORMS.to_string())?,
    };
    if window.is_zero() {
        return Err(format!("{QUOTA_FORMS} (the window must be above 0)"));
    }
    if window > MAX_DURATION {
        return Err(format!("{QUOTA_FORMS} (a window of at most 365 days)"));
    }
    Ok(Quota { limit, window })
}

/// Parses DURATION in humantime form (`250ms`, `30s`, `2m`, `1h 30m`). A bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let d = humantime::parse_duration(s).map_err(|_| DURATION_FORMS.to_string())?;
    // Longer is surely a typo, and would overflow the clock arithmetic of deadlines.
    if d > MAX_DURATION {
        return Err(format!("{DURATION_FORMS} (at most 365 days)"));
    }
    Ok(d)
}

/// The longest DURATION accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses SIZE: a number of bytes, optionally with a unit. Decimal units (`KB`, `MB`, `GB`,
/// also `K`, `M`, `G`) are powers of 1000; binary units (`KiB`, `MiB`, `GiB`) powers of 1024.
/// Units are case-insensitive; `B` is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(SIZE_FORMS.to_string()),
    };
    if number.is_empty() {
        return Err(SIZE_FORMS.to_string());
    }
    if let Ok(n) = number.parse::<u64>() {
        return n
            .checked_mul(multiplier)
            .ok_or_else(|| format!("{SIZE_FORMS} (too large)"));
    }
    let n: f64 = number.parse().map_err(|_| SIZE_FORMS.to_string())?;
    let bytes = n * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{SIZE_FORMS} (too large)"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_display_as_given_not_as_their_period_in_nanoseconds() {
        for (given, shown) in [
            ("150/s", "150/s"),
            ("10", "10/s"),
            ("600/m", "10/s"),
            ("0.5", "0.5/s"),
            ("10/m", "10/m"),
            ("30/m", "0.5/s"),
            ("7/h", "7/h"),
            ("1000000", "1000000/s"),
            ("1/6666666ns", "1/6666666ns"),
        ] {
            let rate = parse_rate(given).unwrap();
            assert_eq!(rate.to_string(), shown, "{given}");
            assert_eq!(
                parse_rate(&rate.to_string()),
                Ok(rate),
                "{given} round-trips"
            );
        }
    }

    fn every_ms(ms: u64) -> Rate {
        Rate::Every(Duration::from_millis(ms))
    }

    #[test]
    fn rate_forms() {
        assert_eq!(parse_rate("10").unwrap(), every_ms(100));
        assert_eq!(parse_rate("10/s").unwrap(), every_ms(100));
        assert_eq!(parse_rate("600/m").unwrap(), every_ms(100));
        assert_eq!(parse_rate("600/min").unwrap(), every_ms(100));
        assert_eq!(parse_rate("5000/h").unwrap(), every_ms(720));
        assert_eq!(parse_rate("0.5/s").unwrap(), every_ms(2000));
        assert_eq!(parse_rate(" 2 / second ").unwrap(), every_ms(500));
        assert_eq!(parse_rate("unlimited").unwrap(), Rate::Unlimited);
        assert_eq!(parse_rate("Unlimited").unwrap(), Rate::Unlimited);
    }

    #[test]
    fn rate_rejects() {
        for bad in [
            "", "0", "-1", "ten", "10/d", "10/", "/s", "NaN", "inf", "1e12",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_rate("x").unwrap_err().contains("600/m"));
    }

    #[test]
    fn rate_per_second_round_trips() {
        for r in [0.5, 1.0, 10.0, 200.0, 1000.0, 123.0] {
            let got = parse_rate(&format!("{r}/s")).unwrap().per_second().unwrap();
            assert!((got - r).abs() / r < 1e-6, "{r} -> {got}");
        }
    }

    fn quota(limit: u64, secs: u64) -> Quota {
        Quota {
            limit,
            window: Duration::from_secs(secs),
        }
    }

    #[test]
    fn quota_forms() {
        assert_eq!(parse_quota("5000/h").unwrap(), quota(5000, 3600));
        assert_eq!(parse_quota("5000/1h").unwrap(), quota(5000, 3600));
        assert_eq!(parse_quota("30/3s").unwrap(), quota(30, 3));
        assert_eq!(parse_quota("100/15m").unwrap(), quota(100, 900));
        assert_eq!(parse_quota("50000/d").unwrap(), quota(50_000, 86_400));
        assert_eq!(parse_quota("50000/1d").unwrap(), quota(50_000, 86_400));
        assert_eq!(parse_quota(" 10 / s ").unwrap(), quota(10, 1));
        assert_eq!(
            parse_quota("5/250ms").unwrap().window,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn quota_rejects() {
        for bad in [
            "", "10", "0/s", "-1/s", "1.5/s", "10/", "/s", "10/0s", "10/soon", "10/400d", "x/h",
        ] {
            assert!(parse_quota(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_quota("10").unwrap_err().contains("5000/h"));
    }

    #[test]
    fn duration_forms() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("366d").is_err());
        assert!(parse_duration("300000000000y").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn size_forms() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("1048576").unwrap(), 1_048_576);
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("512KB").unwrap(), 512_000);
        assert_eq!(parse_size("512kib").unwrap(), 512 << 10);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1.5MiB").unwrap(), 1_572_864);
        assert_eq!(parse_size("100 B").unwrap(), 100);
        assert_eq!(parse_size("2k").unwrap(), 2000);
    }

    #[test]
    fn size_rejects() {
        for bad in [
            "",
            "MiB",
            "ten",
            "10XB",
            "-5",
            "99999999999999999999",
            "1e3",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_text() {
        // A cheap fuzz over short strings of the characters the grammars use.
        let alphabet: Vec<char> = "0123456789./smhKMGiBb unlted-e".chars().collect();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..8);
            let s: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let _ = parse_rate(&s);
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
            let _ = parse_quota(&s);
        }
    }

    #[test]
    fn shards_cover_a_list_exactly_once() {
        assert_eq!(parse_shard("2/4"), Ok(Shard { k: 2, n: 4 }));
        for bad in ["0/4", "5/4", "4", "a/b", "1/0", ""] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (1..=3).map(|k| Shard { k, n: 3 }).collect();
        for i in 1..=30 {
            let takers: Vec<u64> = shards.iter().filter(|s| s.takes(i)).map(|s| s.k).collect();
            assert_eq!(takers, [(i - 1) % 3 + 1], "line {i}");
        }
        assert!(Shard { k: 1, n: 1 }.takes(7));
    }
}
