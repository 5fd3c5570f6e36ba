//! Announced limits: what a server says in response headers about the allowance left. A leaf.
//!
//! Every form the IETF drafts (draft-ietf-httpapi-ratelimit-headers) went through is read,
//! and the de-facto `X-RateLimit-*` family (names case-insensitive):
//!
//! 1. Draft-8 and later: structured-field Lists (RFC 9651) of named policies,
//!    `RateLimit-Policy: "burst";q=100;w=60, "daily";q=1000;w=86400` (q: quota, the limit;
//!    w: window in seconds) and `RateLimit: "burst";r=40;t=12` (r: remaining; t: seconds until
//!    the reset). Each `RateLimit` item takes its limit and window from the policy of the same
//!    name, and names the bucket. An item without `r` is unusable; one without `t` uses its
//!    policy's `w` as a conservative reset, or is unusable when there is none.
//! 2. Draft-7: `RateLimit` as a Dictionary, `RateLimit: limit=20, remaining=19, reset=3`, with
//!    `RateLimit-Policy: 20;w=3` (a List of quotas, each an Integer with its window `w`).
//! 3. Draft-6 and earlier: the trio `RateLimit-Limit`, `RateLimit-Remaining`,
//!    `RateLimit-Reset` (a limit like `100, 100;w=60` gives its first integer), with the same
//!    `RateLimit-Policy` as draft-7.
//! 4. The de-facto `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, with
//!    `X-RateLimit-Reset-After` (Discord; seconds to go) taking precedence over
//!    `X-RateLimit-Reset`, and the bucket named by `X-RateLimit-Resource` (GitHub) or
//!    `X-RateLimit-Bucket` (Discord).
//!
//! Structured fields are parsed with `sfv`. Several field lines make one value; when the whole
//! value does not parse, each List member is parsed alone and only the bad ones are skipped.
//! Unknown parameters (draft-9's `pk`) are harmless.
//!
//! **Resets are bounds.** A reset (in either trio) above 10^9 is an epoch time in seconds
//! (GitHub, X, express-rate-limit's legacy form), measured against the response's `Date` (the
//! server's clock) when it parses, else against the local receive time; a smaller one is
//! seconds to go. Servers round a reset up to whole seconds (never announcing it early), so a
//! value bounds the true reset to an interval: `reset` is its upper end and `resolution` how
//! far below it the truth may lie (a second for whole seconds, two more for an epoch read
//! against a `Date`, which is itself rounded down and cached by some servers). `limits::allowance` intersects the
//! intervals of every response in a window.
//!
//! Malformed fields are ignored, as the IETF draft says: a family whose remaining or reset is
//! missing, negative or not a number gives nothing; an unreadable limit is only left out.
//! Of all the limits a response announces, [`parse`] returns the most restrictive.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, DATE};
use sfv::{BareItem, Dictionary, Item, List, ListEntry, Parser};

/// What one response says about the client's remaining allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The bucket the limit belongs to, when the server names one (IETF policy name,
    /// `x-ratelimit-resource`, `X-RateLimit-Bucket`); `None`: the host is the bucket.
    pub bucket: Option<String>,
    /// Requests allowed per window, when stated.
    pub limit: Option<u64>,
    /// Requests left before the reset.
    pub remaining: u64,
    /// Time from the response to the reset (when the allowance is whole again), as
    /// announced: the latest the reset may be.
    pub reset: Duration,
    /// How much earlier than `reset` the true reset may be: the resolution of the value.
    pub resolution: Duration,
    /// The window the server states (`w` of `RateLimit-Policy`), when it does.
    pub window: Option<Duration>,
    /// When the response was received (local wall clock): the reset falls at `heard +
    /// reset`, and `audit` judges the requests sent after it.
    pub heard: SystemTime,
}

/// Reads the announced limit of a response. `now` is the local time the response was
/// received. Returns the most restrictive one when several are announced (smallest remaining;
/// on a tie the later reset). `None` when no usable fields are present (malformed fields are
/// ignored, as the IETF draft says).
pub fn parse(headers: &HeaderMap, now: SystemTime) -> Option<Announced> {
    // Most responses announce nothing: one pass over the names rather than a lookup (and
    // a list) per field.
    let announces = headers.keys().any(|name| {
        let name = name.as_str();
        name.starts_with("ratelimit") || name.starts_with("x-ratelimit")
    });
    if !announces {
        return None;
    }
    let mut found = ietf(headers, now);
    found.extend(older_draft(headers, now));
    found.extend(x_ratelimit(headers, now));
    // A reset beyond a day is not a reset anyone publishes (an epoch in milliseconds read as
    // seconds, garbage): malformed, ignored, rather than a pause of centuries.
    found.retain(|a| a.reset <= MAX_RESET);
    most_restrictive(found)
}

/// The longest reset believed: a day and a little (daily quotas reset within a day).
pub const MAX_RESET: Duration = Duration::from_secs(25 * 3600);

/// Whether a refusal is explained by the announced limit: a 429 with any announced limit of
/// remaining 0, or a 403 with remaining 0 (GitHub's style: 403 with `x-ratelimit-remaining:
/// 0`). Such a refusal is retried after the reset without spending an attempt.
pub fn explains_refusal(status: u16, announced: Option<&Announced>) -> bool {
    // `parse` keeps the smallest remaining, so "any limit at 0" is "the one kept is at 0".
    matches!(status, 403 | 429) && announced.is_some_and(|a| a.remaining == 0)
}

/// The smallest remaining; on a tie the later reset; on a full tie the first found.
fn most_restrictive(found: Vec<Announced>) -> Option<Announced> {
    found
        .into_iter()
        .min_by(|a, b| (a.remaining, b.reset).cmp(&(b.remaining, a.reset)))
}

/// A whole second: the resolution of a whole-second value.
const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// The IETF fields.

/// Every usable item of the `RateLimit` field: draft-8's named items, each with its policy's
/// quota and window, or else draft-7's Dictionary.
fn ietf(headers: &HeaderMap, now: SystemTime) -> Vec<Announced> {
    let Some(value) = joined(headers, "ratelimit") else {
        return Vec::new();
    };
    let policies = list_items(headers, "ratelimit-policy");
    let named: Vec<Announced> = members(&value)
        .iter()
        .filter_map(|item| named_item(item, &policies, now))
        .collect();
    if !named.is_empty() {
        return named;
    }
    draft7(&value, &policies, now).into_iter().collect()
}

/// One draft-8 `RateLimit` item, read against the policies of the same response.
fn named_item(item: &Item, policies: &[Item], now: SystemTime) -> Option<Announced> {
    let name = name_of(item)?;
    // The last policy of a name wins, as the last of a duplicated dictionary key would.
    let policy = policies.iter().rev().find(|p| name_of(p) == Some(name));
    let remaining = param(item, "r")?;
    let window = policy.and_then(|p| param(p, "w"));
    let reset = match param(item, "t") {
        Some(t) => t,
        // Without `t` the reset is unknown; a full window from now is never too early.
        None => window?,
    };
    Some(Announced {
        bucket: Some(name.to_owned()),
        limit: policy.and_then(|p| param(p, "q")),
        remaining,
        reset: Duration::from_secs(reset),
        resolution: SECOND,
        window: window.map(Duration::from_secs),
        heard: now,
    })
}

/// Draft-7's `RateLimit: limit=20, remaining=19, reset=3`, with the window of the policy
/// whose quota is its limit.
fn draft7(value: &str, policies: &[Item], now: SystemTime) -> Option<Announced> {
    let dict: Dictionary = Parser::new(value).parse().ok()?;
    let entry = |key: &str| match dict.iter().find(|(k, _)| k.as_str() == key)? {
        (_, ListEntry::Item(item)) => non_negative(&item.bare_item),
        _ => None,
    };
    let limit = entry("limit");
    Some(Announced {
        bucket: None,
        limit,
        remaining: entry("remaining")?,
        reset: Duration::from_secs(entry("reset")?),
        resolution: SECOND,
        window: quota_window(policies, limit).map(Duration::from_secs),
        heard: now,
    })
}

/// The window of the unnamed quota policy (`RateLimit-Policy: 20;w=3`, draft-6 and -7) whose
/// quota is `limit`, or of the only one when the limit is not known.
fn quota_window(policies: &[Item], limit: Option<u64>) -> Option<u64> {
    let mut quotas = policies
        .iter()
        .filter_map(|p| Some((non_negative(&p.bare_item)?, param(p, "w")?)));
    match limit {
        Some(limit) => quotas.find(|(q, _)| *q == limit).map(|(_, w)| w),
        None => {
            let first = quotas.next()?;
            quotas.next().is_none().then_some(first.1)
        }
    }
}

/// The lines of field `name` joined into one value (RFC 9110 §5.3); `None` when absent or
/// not visible ASCII.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut lines = headers.get_all(name).iter();
    let mut value = lines.next()?.to_str().ok()?.to_owned();
    for line in lines {
        value.push_str(", ");
        value.push_str(line.to_str().ok()?);
    }
    Some(value)
}

/// The items of List field `name` (see [`members`]).
fn list_items(headers: &HeaderMap, name: &str) -> Vec<Item> {
    joined(headers, name).map_or_else(Vec::new, |v| members(&v))
}

/// The Items of a structured-field List. When the whole List does not parse, each member is
/// parsed alone, so that one bad member does not take the rest with it. Inner lists are left
/// out (no rate-limit field has them).
fn members(list: &str) -> Vec<Item> {
    match Parser::new(list).parse::<List>() {
        Ok(list) => list
            .into_iter()
            .filter_map(|entry| match entry {
                ListEntry::Item(item) => Some(item),
                ListEntry::InnerList(_) => None,
            })
            .collect(),
        Err(_) => split_members(list)
            .into_iter()
            .filter_map(|m| Parser::new(&tidy(m)).parse::<Item>().ok())
            .collect(),
    }
}

/// One member with the whitespace that RFC 9651 does not allow, but servers send, taken
/// out: around it, and before a `;` (outside Strings).
fn tidy(member: &str) -> String {
    let mut out = String::with_capacity(member.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in member.trim_matches(is_ows).chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ';' if !in_string => {
                let kept = out.trim_end_matches(is_ows).len();
                out.truncate(kept);
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Splits a List into its members at the commas outside Strings (no other bare item can
/// hold a comma).
fn split_members(list: &str) -> Vec<&str> {
    let mut members = Vec::new();
    let (mut start, mut in_string, mut escaped) = (0, false, false);
    for (i, b) in list.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b',' if !in_string => {
                members.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    members.push(&list[start..]);
    members
}

/// The policy name of an item: its String or Token.
fn name_of(item: &Item) -> Option<&str> {
    match &item.bare_item {
        BareItem::String(s) => Some(s.as_str()),
        BareItem::Token(t) => Some(t.as_str()),
        _ => None,
    }
}

/// Parameter `key` of an item when it is a non-negative Integer; any other value counts as
/// absent. (`sfv` keeps the last value of a key given twice, as RFC 9651 says.)
fn param(item: &Item, key: &str) -> Option<u64> {
    let (_, value) = item.params.iter().find(|(k, _)| k.as_str() == key)?;
    non_negative(value)
}

fn non_negative(value: &BareItem) -> Option<u64> {
    u64::try_from(i64::from(value.as_integer()?)).ok()
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

// ---------------------------------------------------------------------------------------
// The two trios.

/// The older draft's `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`, with the
/// window of `RateLimit-Policy` (draft-6).
fn older_draft(headers: &HeaderMap, now: SystemTime) -> Option<Announced> {
    let remaining = count(field(headers, "ratelimit-remaining")?)?;
    let (reset, resolution) = reset_in(field(headers, "ratelimit-reset")?, headers, now)?;
    let limit = field(headers, "ratelimit-limit").and_then(first_count);
    let policies = list_items(headers, "ratelimit-policy");
    Some(Announced {
        bucket: None,
        limit,
        remaining,
        reset,
        resolution,
        window: quota_window(&policies, limit).map(Duration::from_secs),
        heard: now,
    })
}

/// The de-facto `X-RateLimit-*` fields of GitHub, X, Reddit and Discord.
fn x_ratelimit(headers: &HeaderMap, now: SystemTime) -> Option<Announced> {
    let remaining = count(field(headers, "x-ratelimit-remaining")?)?;
    // Reset-After wins when it is usable; an unusable one falls back to Reset.
    let (reset, resolution) = field(headers, "x-ratelimit-reset-after")
        .and_then(seconds)
        .or_else(|| reset_in(field(headers, "x-ratelimit-reset")?, headers, now))?;
    let bucket = field(headers, "x-ratelimit-resource")
        .or_else(|| field(headers, "x-ratelimit-bucket"))
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    Some(Announced {
        bucket,
        limit: field(headers, "x-ratelimit-limit").and_then(first_count),
        remaining,
        reset,
        resolution,
        window: None,
        heard: now,
    })
}

/// The first line of field `name`, trimmed, when it is visible ASCII.
fn field<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)?
        .to_str()
        .ok()
        .map(|v| v.trim_matches(is_ows))
}

/// A count of requests: a non-negative integer.
fn count(text: &str) -> Option<u64> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None; // also refuses the `+` that `u64::from_str` would take
    }
    text.parse().ok()
}

/// The first integer of a limit such as `100, 100;w=60` (the older draft) or `5000`.
fn first_count(text: &str) -> Option<u64> {
    let first = text.split([',', ';']).next()?;
    count(first.trim_matches(is_ows))
}

/// Seconds, whole or decimal (`12`, `1.234`), non-negative, with their resolution (a second,
/// a millisecond for `1.234`).
fn seconds(text: &str) -> Option<(Duration, Duration)> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.ends_with('.') {
        return None;
    }
    let secs = count(whole)?;
    // Nanoseconds from the first nine digits of the fraction; the rest is below resolution.
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let digits = u32::try_from(fraction.len().min(9)).unwrap_or(9);
    let resolution = Duration::from_nanos(10u64.pow(9 - digits));
    Some((Duration::new(secs, nanos), resolution))
}

/// Above this, a reset is an epoch time rather than seconds to go (10^9 s is 31 years).
const EPOCH_THRESHOLD: Duration = Duration::from_secs(1_000_000_000);

/// The time to a reset given as seconds to go or, above 10^9, as epoch seconds, measured
/// against the response's `Date` if it parses, else `now`; zero if it has passed. With its
/// resolution: the value's, and two seconds more for a `Date` (whole seconds, rounded down,
/// and cached for a second by some servers).
fn reset_in(text: &str, headers: &HeaderMap, now: SystemTime) -> Option<(Duration, Duration)> {
    let (value, resolution) = seconds(text)?;
    if value <= EPOCH_THRESHOLD {
        return Some((value, resolution));
    }
    let at = UNIX_EPOCH.checked_add(value)?;
    let (base, resolution) =
        match field(headers, DATE.as_str()).and_then(|date| httpdate::parse_http_date(date).ok()) {
            // A Date is whole seconds rounded down, and some servers cache it for a second
            // (uvicorn): two seconds more.
            Some(date) => (date, resolution + 2 * SECOND),
            None => (now, resolution),
        };
    Some((
        at.duration_since(base).unwrap_or(Duration::ZERO),
        resolution,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_beyond_a_day_is_ignored() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        // An epoch in milliseconds, read as seconds: tens of thousands of years away.
        h.insert("x-ratelimit-reset", "1764684000000".parse().unwrap());
        assert_eq!(parse(&h, SystemTime::now()), None);
        h.insert("x-ratelimit-reset", "100000".parse().unwrap());
        assert_eq!(parse(&h, SystemTime::now()), None);
        h.insert("x-ratelimit-reset", "3600".parse().unwrap());
        assert_eq!(parse(&h, SystemTime::now()).unwrap().remaining, 0);
    }
    use reqwest::header::{HeaderName, HeaderValue};

    /// A map of `(name, value)` lines; a name given twice makes two lines.
    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
                HeaderValue::from_str(value).expect("test header value"),
            );
        }
        map
    }

    /// A fixed receive time: 2024-01-01T00:00:00Z.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_704_067_200)
    }

    fn parsed(lines: &[(&str, &str)]) -> Option<Announced> {
        parse(&headers(lines), now())
    }

    fn announced(
        bucket: Option<&str>,
        limit: Option<u64>,
        remaining: u64,
        reset_ms: u64,
    ) -> Announced {
        Announced {
            bucket: bucket.map(str::to_owned),
            limit,
            remaining,
            reset: Duration::from_millis(reset_ms),
            resolution: SECOND,
            window: None,
            heard: now(),
        }
    }

    impl Announced {
        /// With the window the policy states, in seconds.
        fn within(mut self, w: u64) -> Announced {
            self.window = Some(Duration::from_secs(w));
            self
        }

        /// With a resolution of `ms`.
        fn resolved(mut self, ms: u64) -> Announced {
            self.resolution = Duration::from_millis(ms);
            self
        }
    }

    fn secs(n: u64) -> u64 {
        n * 1000
    }

    // --- no fields -------------------------------------------------------------------

    #[test]
    fn no_rate_limit_fields_announce_nothing() {
        assert_eq!(parsed(&[]), None);
        assert_eq!(
            parsed(&[("content-type", "text/plain"), ("retry-after", "5")]),
            None
        );
    }

    // --- IETF ------------------------------------------------------------------------

    #[test]
    fn ietf_item_takes_its_limit_from_the_policy_of_its_name() {
        let got = parsed(&[
            ("RateLimit-Policy", "\"burst\";q=100;w=60"),
            ("RateLimit", "\"burst\";r=40;t=12"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("burst"), Some(100), 40, secs(12)).within(60))
        );
    }

    #[test]
    fn ietf_item_without_a_policy_has_no_limit() {
        let got = parsed(&[("RateLimit", "\"default\";r=3;t=7")]);
        assert_eq!(got, Some(announced(Some("default"), None, 3, secs(7))));
    }

    #[test]
    fn ietf_item_is_matched_by_name_not_position() {
        let got = parsed(&[
            (
                "RateLimit-Policy",
                "\"daily\";q=1000;w=86400, \"burst\";q=100;w=60",
            ),
            ("RateLimit", "\"burst\";r=0;t=5"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("burst"), Some(100), 0, secs(5)).within(60))
        );
    }

    #[test]
    fn ietf_several_policies_give_the_smallest_remaining() {
        let got = parsed(&[
            (
                "RateLimit-Policy",
                "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400",
            ),
            ("RateLimit", "\"burst\";r=40;t=12, \"daily\";r=7;t=3600"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("daily"), Some(1000), 7, secs(3600)).within(86400))
        );
    }

    #[test]
    fn ietf_tie_on_remaining_gives_the_later_reset() {
        let got = parsed(&[("RateLimit", "\"a\";r=0;t=5, \"b\";r=0;t=50, \"c\";r=0;t=10")]);
        assert_eq!(got, Some(announced(Some("b"), None, 0, secs(50))));
    }

    #[test]
    fn ietf_lines_of_one_field_make_one_list() {
        let got = parsed(&[
            ("RateLimit-Policy", "\"burst\";q=100;w=60"),
            ("RateLimit-Policy", "\"daily\";q=1000;w=86400"),
            ("RateLimit", "\"burst\";r=40;t=12"),
            ("RateLimit", "\"daily\";r=2;t=600"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("daily"), Some(1000), 2, secs(600)).within(86400))
        );
    }

    #[test]
    fn ietf_malformed_items_are_skipped_and_good_ones_kept() {
        let cases = [
            // An unclosed String swallows the rest of its line, so it can only come last.
            "\"good\";r=9;t=4, \"unclosed;r=0;t=1",
            "\"bad\";R=0;t=1, \"good\";r=9;t=4",
            "\"bad\";r=0;t=1 junk, \"good\";r=9;t=4",
            "1;r=0;t=1, \"good\";r=9;t=4",
            "\"bad\";r=;t=1, \"good\";r=9;t=4",
            "\"bad\";r=0;t=1234567890123456, \"good\";r=9;t=4",
            "\"bad\";r=0;t=\"1\", \"good\";r=9;t=4",
            "(\"inner\" \"list\");r=0;t=1, \"good\";r=9;t=4",
            ", \"good\";r=9;t=4",
            "\"bad\";r=0;t=1;, \"good\";r=9;t=4",
        ];
        for case in cases {
            assert_eq!(
                parsed(&[("RateLimit", case)]),
                Some(announced(Some("good"), None, 9, secs(4))),
                "{case}"
            );
        }
    }

    #[test]
    fn ietf_unusable_values_make_the_item_unusable() {
        let cases = [
            "\"a\";t=5",                       // no r
            "\"a\";r=-1;t=5",                  // negative r
            "\"a\";r=1.5;t=5",                 // r not an Integer
            "\"a\";r=1;t=-5",                  // negative t, no policy
            "\"a\";r=1",                       // no t, no policy
            "\"a\";r=1;t=2.5",                 // t not an Integer, no policy
            "limit=10, reset=7",               // draft-7 without remaining
            "limit=10, remaining=1",           // draft-7 without reset
            "limit=10, remaining=-1, reset=7", // draft-7 with a negative remaining
        ];
        for case in cases {
            assert_eq!(parsed(&[("RateLimit", case)]), None, "{case}");
        }
    }

    #[test]
    fn ietf_item_without_t_resets_after_its_policy_window() {
        let got = parsed(&[
            ("RateLimit-Policy", "\"burst\";q=100;w=60"),
            ("RateLimit", "\"burst\";r=0"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("burst"), Some(100), 0, secs(60)).within(60))
        );
    }

    #[test]
    fn ietf_tolerates_whitespace_tokens_and_other_parameter_types() {
        let got = parsed(&[
            (
                "RateLimit-Policy",
                "  \"p\" ; q=10 ; w=60;qu=\"requests\";pk=:Ym9i:;x=?1;y=1.25;z=tok/en , \"q\";q=5",
            ),
            ("RateLimit", "\t\"p\";r=4 ;t=9;pk=:Ym9i:;flag"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("p"), Some(10), 4, secs(9)).within(60))
        );
        let token = parsed(&[("RateLimit", "burst;r=1;t=2")]);
        assert_eq!(token, Some(announced(Some("burst"), None, 1, secs(2))));
    }

    #[test]
    fn ietf_string_names_keep_escapes_and_commas() {
        let got = parsed(&[
            ("RateLimit-Policy", r#""a,\"b\\";q=3;w=1"#),
            ("RateLimit", r#""a,\"b\\";r=1;t=1"#),
        ]);
        assert_eq!(
            got,
            Some(announced(Some(r#"a,"b\"#), Some(3), 1, secs(1)).within(1))
        );
    }

    #[test]
    fn ietf_repeated_parameter_keeps_its_last_value() {
        let got = parsed(&[("RateLimit", "\"a\";r=9;t=1;r=2")]);
        assert_eq!(got, Some(announced(Some("a"), None, 2, secs(1))));
    }

    #[test]
    fn ietf_field_names_are_case_insensitive() {
        let got = parsed(&[
            ("ratelimit-policy", "\"a\";q=3;w=1"),
            ("RATELIMIT", "\"a\";r=1;t=1"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("a"), Some(3), 1, secs(1)).within(1))
        );
    }

    // --- older draft trio ------------------------------------------------------------

    #[test]
    fn older_draft_trio_is_read() {
        let got = parsed(&[
            ("RateLimit-Limit", "100"),
            ("RateLimit-Remaining", "40"),
            ("RateLimit-Reset", "12"),
        ]);
        assert_eq!(got, Some(announced(None, Some(100), 40, secs(12))));
    }

    #[test]
    fn older_draft_limit_gives_its_first_integer() {
        let got = parsed(&[
            ("RateLimit-Limit", "100, 100;w=60"),
            ("RateLimit-Remaining", "0"),
            ("RateLimit-Reset", "30"),
        ]);
        assert_eq!(got, Some(announced(None, Some(100), 0, secs(30))));
        let windowed = parsed(&[
            ("RateLimit-Limit", "10;w=1"),
            ("RateLimit-Remaining", "1"),
            ("RateLimit-Reset", "1"),
        ]);
        assert_eq!(windowed, Some(announced(None, Some(10), 1, secs(1))));
    }

    #[test]
    fn older_draft_needs_remaining_and_reset() {
        assert_eq!(
            parsed(&[("RateLimit-Limit", "10"), ("RateLimit-Remaining", "1")]),
            None
        );
        assert_eq!(
            parsed(&[("RateLimit-Limit", "10"), ("RateLimit-Reset", "1")]),
            None
        );
    }

    #[test]
    fn older_draft_unreadable_limit_is_only_left_out() {
        let got = parsed(&[
            ("RateLimit-Limit", "lots"),
            ("RateLimit-Remaining", "2"),
            ("RateLimit-Reset", "3"),
        ]);
        assert_eq!(got, Some(announced(None, None, 2, secs(3))));
    }

    // --- X-RateLimit -----------------------------------------------------------------

    #[test]
    fn x_ratelimit_seconds_to_go_like_reddit() {
        let got = parsed(&[
            ("X-Ratelimit-Used", "5"),
            ("X-Ratelimit-Remaining", "95"),
            ("X-Ratelimit-Reset", "412"),
        ]);
        assert_eq!(got, Some(announced(None, None, 95, secs(412))));
    }

    #[test]
    fn x_ratelimit_epoch_is_measured_against_the_date_header() {
        // Date is 10 s behind the local clock; the reset is 60 s after Date.
        let got = parsed(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1704067250"),
            ("x-ratelimit-resource", "core"),
            ("date", "Sun, 31 Dec 2023 23:59:50 GMT"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("core"), Some(5000), 0, secs(60)).resolved(3000))
        );
    }

    #[test]
    fn x_ratelimit_epoch_without_date_is_measured_against_now() {
        let got = parsed(&[
            ("x-ratelimit-remaining", "3"),
            ("x-ratelimit-reset", "1704067250"),
        ]);
        assert_eq!(got, Some(announced(None, None, 3, secs(50))));
    }

    #[test]
    fn x_ratelimit_epoch_with_a_bad_date_is_measured_against_now() {
        let got = parsed(&[
            ("x-ratelimit-remaining", "3"),
            ("x-ratelimit-reset", "1704067250"),
            ("date", "yesterday"),
        ]);
        assert_eq!(got, Some(announced(None, None, 3, secs(50))));
    }

    #[test]
    fn x_ratelimit_epoch_in_the_past_is_zero() {
        let got = parsed(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1704067100"),
        ]);
        assert_eq!(got, Some(announced(None, None, 0, 0)));
    }

    #[test]
    fn x_ratelimit_fractional_epoch_like_discord() {
        let got = parsed(&[
            ("X-RateLimit-Limit", "5"),
            ("X-RateLimit-Remaining", "1"),
            ("X-RateLimit-Reset", "1704067201.250"),
        ]);
        assert_eq!(got, Some(announced(None, Some(5), 1, 1250).resolved(1)));
    }

    #[test]
    fn x_ratelimit_reset_after_wins_over_reset() {
        let got = parsed(&[
            ("X-RateLimit-Limit", "5"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1704067300"),
            ("X-RateLimit-Reset-After", "1.234"),
            ("X-RateLimit-Bucket", "abcd1234"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("abcd1234"), Some(5), 0, 1234).resolved(1))
        );
    }

    #[test]
    fn x_ratelimit_bad_reset_after_falls_back_to_reset() {
        let got = parsed(&[
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "8"),
            ("X-RateLimit-Reset-After", "soon"),
        ]);
        assert_eq!(got, Some(announced(None, None, 0, secs(8))));
    }

    #[test]
    fn x_ratelimit_resource_names_the_bucket_before_bucket() {
        let got = parsed(&[
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset", "2"),
            ("x-ratelimit-resource", "search"),
            ("x-ratelimit-bucket", "other"),
        ]);
        assert_eq!(got, Some(announced(Some("search"), None, 1, secs(2))));
    }

    #[test]
    fn x_ratelimit_remaining_without_reset_is_nothing() {
        assert_eq!(
            parsed(&[("x-ratelimit-limit", "60"), ("x-ratelimit-remaining", "59")]),
            None
        );
    }

    #[test]
    fn negative_or_garbage_numbers_ignore_the_source() {
        let cases: [&[(&str, &str)]; 8] = [
            &[("x-ratelimit-remaining", "-1"), ("x-ratelimit-reset", "5")],
            &[("x-ratelimit-remaining", "+1"), ("x-ratelimit-reset", "5")],
            &[("x-ratelimit-remaining", "1.0"), ("x-ratelimit-reset", "5")],
            &[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", "-5")],
            &[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", "5s")],
            &[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", "5.")],
            &[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", ".5")],
            &[
                ("ratelimit-remaining", "99999999999999999999"),
                ("ratelimit-reset", "5"),
            ],
        ];
        for case in cases {
            assert_eq!(parsed(case), None, "{case:?}");
        }
    }

    #[test]
    fn a_bad_source_does_not_hide_a_good_one() {
        let got = parsed(&[
            ("x-ratelimit-remaining", "garbage"),
            ("x-ratelimit-reset", "5"),
            ("RateLimit", "\"a\";r=4;t=6"),
        ]);
        assert_eq!(got, Some(announced(Some("a"), None, 4, secs(6))));
    }

    #[test]
    fn the_most_restrictive_family_wins() {
        let got = parsed(&[
            ("RateLimit", "\"a\";r=4;t=6"),
            ("RateLimit-Remaining", "2"),
            ("RateLimit-Reset", "3"),
            ("X-RateLimit-Remaining", "2"),
            ("X-RateLimit-Reset", "9"),
        ]);
        assert_eq!(got, Some(announced(None, None, 2, secs(9))));
    }

    #[test]
    fn decimal_seconds_are_read_to_the_nanosecond_with_their_resolution() {
        let ms = Duration::from_millis;
        assert_eq!(seconds("1.234"), Some((ms(1234), ms(1))));
        let ns = Duration::from_nanos(1);
        assert_eq!(seconds("0.000000001"), Some((ns, ns)));
        assert_eq!(
            seconds("2.1234567899"),
            Some((Duration::new(2, 123_456_789), ns))
        );
        assert_eq!(seconds("7"), Some((Duration::from_secs(7), SECOND)));
        assert_eq!(seconds("1.2.3"), None);
        assert_eq!(seconds(""), None);
    }

    #[test]
    fn huge_epochs_do_not_panic() {
        let got = parsed(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "18446744073709551615.999"),
        ]);
        // Far in the future on every platform that can represent it, else unusable.
        assert!(got.is_none_or(|a| a.reset > Duration::from_secs(1_000_000_000)));
    }

    #[test]
    fn arbitrary_values_never_panic() {
        const ALPHABET: &[u8] = b"\"\\;,=:?*-.0123456789 \tarqtwpkx()";
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..5000 {
            let text: String = (0..rng.usize(0..40))
                .map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char)
                .collect();
            let t = text.as_str();
            let map = headers(&[
                ("ratelimit-policy", t),
                ("ratelimit", t),
                ("ratelimit-remaining", t),
                ("ratelimit-reset", t),
                ("x-ratelimit-remaining", t),
                ("x-ratelimit-reset", t),
                ("x-ratelimit-reset-after", t),
            ]);
            if let Some(a) = parse(&map, now()) {
                assert!(!text.is_empty(), "announced {a:?} from nothing");
            }
        }
    }

    // --- explains_refusal ------------------------------------------------------------

    #[test]
    fn refusals_explained_by_the_announced_limit() {
        let spent = announced(None, Some(60), 0, secs(5));
        let left = announced(None, Some(60), 5, secs(5));
        assert!(explains_refusal(429, Some(&spent)));
        assert!(explains_refusal(403, Some(&spent)));
        assert!(!explains_refusal(403, Some(&left)));
        assert!(!explains_refusal(429, Some(&left)));
        assert!(!explains_refusal(500, Some(&spent)));
        assert!(!explains_refusal(200, Some(&spent)));
        assert!(!explains_refusal(429, None));
        assert!(!explains_refusal(403, None));
    }

    #[test]
    fn a_github_refusal_is_explained_end_to_end() {
        let got = parsed(&[
            ("x-ratelimit-limit", "60"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1704067230"),
        ]);
        assert!(explains_refusal(403, got.as_ref()));
    }

    // --- the forms express-rate-limit sends -------------------------------------------

    #[test]
    fn draft7_dictionary_takes_its_window_from_the_policy_of_its_limit() {
        let got = parsed(&[
            ("RateLimit-Policy", "20;w=3"),
            ("RateLimit", "limit=20, remaining=19, reset=3"),
        ]);
        assert_eq!(got, Some(announced(None, Some(20), 19, secs(3)).within(3)));
        // Without a policy of its limit, no window.
        let got = parsed(&[
            ("RateLimit-Policy", "100;w=60"),
            ("RateLimit", "limit=20, remaining=0, reset=2"),
        ]);
        assert_eq!(got, Some(announced(None, Some(20), 0, secs(2))));
    }

    #[test]
    fn draft6_trio_takes_its_window_from_the_policy() {
        let got = parsed(&[
            ("RateLimit-Policy", "20;w=3"),
            ("RateLimit-Limit", "20"),
            ("RateLimit-Remaining", "5"),
            ("RateLimit-Reset", "2"),
        ]);
        assert_eq!(got, Some(announced(None, Some(20), 5, secs(2)).within(3)));
    }

    #[test]
    fn draft8_named_policy_with_a_partition_key() {
        let got = parsed(&[
            (
                "RateLimit-Policy",
                "\"20-in-3sec\";q=20;w=3;pk=:ZmE2ZDk2MGM5ZmQ0:",
            ),
            ("RateLimit", "\"20-in-3sec\";r=7;t=2"),
        ]);
        assert_eq!(
            got,
            Some(announced(Some("20-in-3sec"), Some(20), 7, secs(2)).within(3))
        );
    }

    #[test]
    fn whitespace_servers_send_before_a_semicolon_is_tolerated() {
        let got = parsed(&[("RateLimit", "\"a\" ;r=1 ; t=2, \"b\";r=5;t=3")]);
        assert_eq!(got, Some(announced(Some("a"), None, 1, secs(2))));
    }
}
