//! Announced limits: what a server says in response headers about the allowance left. A leaf.
//!
//! Three header families are read (names case-insensitive):
//!
//! 1. The IETF fields of draft-ietf-httpapi-ratelimit-headers (-08 and later), structured-field
//!    Lists (RFC 9651) of policy names with parameters:
//!    `RateLimit-Policy: "burst";q=100;w=60, "daily";q=1000;w=86400` (q: quota, the limit;
//!    w: window in seconds) and `RateLimit: "burst";r=40;t=12` (r: remaining; t: seconds until
//!    the reset). Each `RateLimit` item takes its `limit` from the policy of the same name, and
//!    names the bucket. An item without `r` is unusable; one without `t` uses its policy's `w`
//!    as a conservative reset, or is unusable when there is none. Several field lines make one
//!    list; an item that does not parse is skipped, the others are kept.
//! 2. The older draft's trio `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (a
//!    limit like `100, 100;w=60` gives its first integer).
//! 3. The de-facto `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, with
//!    `X-RateLimit-Reset-After` (Discord; seconds to go) taking precedence over
//!    `X-RateLimit-Reset`, and the bucket named by `X-RateLimit-Resource` (GitHub) or
//!    `X-RateLimit-Bucket` (Discord).
//!
//! A reset (in either trio) above 10^9 is an epoch time in seconds (GitHub, X), measured
//! against the response's `Date` (the server's clock) when it parses, else against the local
//! receive time; a smaller one is seconds to go (Reddit, the drafts). Seconds may be
//! fractional (`1470173023.123`); a reset in the past is zero.
//!
//! Malformed fields are ignored, as the IETF draft says: a family whose remaining or reset is
//! missing, negative or not a number gives nothing; an unreadable limit is only left out.
//! Of all the limits a response announces, [`parse`] returns the most restrictive.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, DATE};

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
    /// Time from the response to the reset (when the allowance is whole again).
    pub reset: Duration,
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

// ---------------------------------------------------------------------------------------
// The IETF fields.

/// Every usable item of the `RateLimit` field, with its policy's quota as the limit.
fn ietf(headers: &HeaderMap, now: SystemTime) -> Vec<Announced> {
    let policies = list_field(headers, "ratelimit-policy");
    list_field(headers, "ratelimit")
        .iter()
        .filter_map(|item| ietf_item(item, &policies, now))
        .collect()
}

/// One `RateLimit` item, read against the policies of the same response.
fn ietf_item(item: &Member, policies: &[Member], now: SystemTime) -> Option<Announced> {
    // The last policy of a name wins, as the last of a duplicated dictionary key would.
    let policy = policies.iter().rev().find(|p| p.name == item.name);
    let remaining = item.non_negative("r")?;
    let reset = match item.non_negative("t") {
        Some(t) => t,
        // Without `t` the reset is unknown; a full window from now is never too early.
        None => policy?.non_negative("w")?,
    };
    Some(Announced {
        bucket: Some(item.name.clone()),
        limit: policy.and_then(|p| p.non_negative("q")),
        remaining,
        reset: Duration::from_secs(reset),
        heard: now,
    })
}

/// The members of a structured-field List spread over every line of field `name`; members
/// that do not parse (and lines that are not visible ASCII) are left out.
fn list_field(headers: &HeaderMap, name: &str) -> Vec<Member> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(split_members)
        .filter_map(parse_member)
        .collect()
}

/// One List member: an Item whose bare value is a String or a Token (a policy name), with its
/// parameters.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    name: String,
    /// Parameters in order; a key given twice keeps its last value (RFC 9651 §4.2.3.2).
    params: Vec<(String, Value)>,
}

impl Member {
    /// Parameter `key` when it is a non-negative Integer; any other value counts as absent.
    fn non_negative(&self, key: &str) -> Option<u64> {
        match self.params.iter().find(|(k, _)| k == key)? {
            (_, Value::Integer(n)) => u64::try_from(*n).ok(),
            _ => None,
        }
    }
}

/// A parameter value. Only Integers carry meaning here; the other types are parsed so that an
/// item using them (e.g. `pk=:Ym9i:` of draft -09) is kept, not skipped.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Integer(i64),
    Other,
}

/// Splits a List into its members at the commas outside Strings (no other bare item can
/// hold a comma), so that one bad member does not take the rest with it.
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

/// Parses one member (surrounding whitespace allowed); `None` if any part of it is malformed.
/// An empty member (`a, , b` or an empty line) is malformed too.
fn parse_member(text: &str) -> Option<Member> {
    let mut cursor = Cursor::new(text.trim_matches(is_ows));
    let name = match cursor.peek()? {
        b'"' => cursor.string()?,
        b if is_token_start(b) => cursor.token(),
        _ => return None,
    };
    let mut params: Vec<(String, Value)> = Vec::new();
    loop {
        cursor.skip_ows();
        match cursor.bump() {
            None => return Some(Member { name, params }),
            Some(b';') => {}
            Some(_) => return None,
        }
        cursor.skip_ows();
        let key = cursor.key()?;
        let value = if cursor.eat(b'=') {
            cursor.value()?
        } else {
            Value::Other // a Boolean true
        };
        match params.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => params.push((key, value)),
        }
    }
}

/// A read position in one member's text.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    /// Consumes `b` if it comes next.
    fn eat(&mut self, b: u8) -> bool {
        let next = self.peek() == Some(b);
        if next {
            self.at += 1;
        }
        next
    }

    /// Consumes bytes while `keep` holds; returns how many.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> usize {
        let start = self.at;
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
        self.at - start
    }

    fn skip_ows(&mut self) {
        self.take_while(|b| is_ows(b as char));
    }

    /// The text from `start` to here; the cursor only stops on ASCII bytes, so this is whole
    /// characters.
    fn since(&self, start: usize) -> String {
        String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned()
    }

    /// A String (RFC 9651 §4.2.5), at its opening quote: printable ASCII, `\"` and `\\`.
    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = String::new();
        loop {
            match self.bump()? {
                b'"' => return Some(out),
                b'\\' => match self.bump()? {
                    c @ (b'"' | b'\\') => out.push(c as char),
                    _ => return None,
                },
                c @ 0x20..=0x7e => out.push(c as char),
                _ => return None,
            }
        }
    }

    /// A Token (RFC 9651 §4.2.6), at a byte that may start one.
    fn token(&mut self) -> String {
        let start = self.at;
        self.take_while(|b| is_tchar(b) || b == b':' || b == b'/');
        self.since(start)
    }

    /// A parameter key (RFC 9651 §4.2.3.3): lower-case letter or `*`, then `a-z 0-9 _ - . *`.
    fn key(&mut self) -> Option<String> {
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        {
            return None;
        }
        let start = self.at;
        self.take_while(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
        });
        Some(self.since(start))
    }

    /// A bare item as a parameter value: Integer, Decimal, String, Token, Byte Sequence or
    /// Boolean.
    fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string().map(|_| Value::Other),
            b':' => self.byte_sequence(),
            b'?' => {
                self.at += 1;
                matches!(self.bump()?, b'0' | b'1').then_some(Value::Other)
            }
            b if is_token_start(b) => {
                self.token();
                Some(Value::Other)
            }
            _ => None,
        }
    }

    /// An Integer (at most 15 digits) or a Decimal (at most 12 digits, a dot, 1 to 3 digits),
    /// RFC 9651 §4.2.4.
    fn number(&mut self) -> Option<Value> {
        let negative = self.eat(b'-');
        let start = self.at;
        let whole = self.take_while(|b| b.is_ascii_digit());
        if whole == 0 {
            return None;
        }
        let digits = self.since(start);
        if self.eat(b'.') {
            let fraction = self.take_while(|b| b.is_ascii_digit());
            return (whole <= 12 && (1..=3).contains(&fraction)).then_some(Value::Other);
        }
        if whole > 15 {
            return None;
        }
        let n: i64 = digits.parse().ok()?;
        Some(Value::Integer(if negative { -n } else { n }))
    }

    /// A Byte Sequence (RFC 9651 §4.2.7): base64 between colons.
    fn byte_sequence(&mut self) -> Option<Value> {
        self.eat(b':');
        self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        self.eat(b':').then_some(Value::Other)
    }
}

/// Optional whitespace of RFC 9110: space or horizontal tab.
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_token_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'*'
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------------------
// The two trios.

/// The older draft's `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`.
fn older_draft(headers: &HeaderMap, now: SystemTime) -> Option<Announced> {
    let remaining = count(field(headers, "ratelimit-remaining")?)?;
    let reset = reset_in(field(headers, "ratelimit-reset")?, headers, now)?;
    Some(Announced {
        bucket: None,
        limit: field(headers, "ratelimit-limit").and_then(first_count),
        remaining,
        reset,
        heard: now,
    })
}

/// The de-facto `X-RateLimit-*` fields of GitHub, X, Reddit and Discord.
fn x_ratelimit(headers: &HeaderMap, now: SystemTime) -> Option<Announced> {
    let remaining = count(field(headers, "x-ratelimit-remaining")?)?;
    // Reset-After wins when it is usable; an unusable one falls back to Reset.
    let reset = field(headers, "x-ratelimit-reset-after")
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

/// Seconds, whole or decimal (`12`, `1.234`), non-negative.
fn seconds(text: &str) -> Option<Duration> {
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
    Some(Duration::new(secs, nanos))
}

/// Above this, a reset is an epoch time rather than seconds to go (10^9 s is 31 years).
const EPOCH_THRESHOLD: Duration = Duration::from_secs(1_000_000_000);

/// The time to a reset given as seconds to go or, above 10^9, as epoch seconds, measured
/// against the response's `Date` if it parses, else `now`; zero if it has passed.
fn reset_in(text: &str, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = seconds(text)?;
    if value <= EPOCH_THRESHOLD {
        return Some(value);
    }
    let at = UNIX_EPOCH.checked_add(value)?;
    let base = field(headers, DATE.as_str())
        .and_then(|date| httpdate::parse_http_date(date).ok())
        .unwrap_or(now);
    Some(at.duration_since(base).unwrap_or(Duration::ZERO))
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
            heard: now(),
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
        assert_eq!(got, Some(announced(Some("burst"), Some(100), 40, secs(12))));
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
        assert_eq!(got, Some(announced(Some("burst"), Some(100), 0, secs(5))));
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
            Some(announced(Some("daily"), Some(1000), 7, secs(3600)))
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
            Some(announced(Some("daily"), Some(1000), 2, secs(600)))
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
            "\"a\";t=5",                      // no r
            "\"a\";r=-1;t=5",                 // negative r
            "\"a\";r=1.5;t=5",                // r not an Integer
            "\"a\";r=1;t=-5",                 // negative t, no policy
            "\"a\";r=1",                      // no t, no policy
            "\"a\";r=1;t=2.5",                // t not an Integer, no policy
            "limit=10, remaining=1, reset=7", // draft -07's dictionary form
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
        assert_eq!(got, Some(announced(Some("burst"), Some(100), 0, secs(60))));
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
        assert_eq!(got, Some(announced(Some("p"), Some(10), 4, secs(9))));
        let token = parsed(&[("RateLimit", "burst;r=1;t=2")]);
        assert_eq!(token, Some(announced(Some("burst"), None, 1, secs(2))));
    }

    #[test]
    fn ietf_string_names_keep_escapes_and_commas() {
        let got = parsed(&[
            ("RateLimit-Policy", r#""a,\"b\\";q=3;w=1"#),
            ("RateLimit", r#""a,\"b\\";r=1;t=1"#),
        ]);
        assert_eq!(got, Some(announced(Some(r#"a,"b\"#), Some(3), 1, secs(1))));
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
        assert_eq!(got, Some(announced(Some("a"), Some(3), 1, secs(1))));
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
        assert_eq!(got, Some(announced(Some("core"), Some(5000), 0, secs(60))));
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
        assert_eq!(got, Some(announced(None, Some(5), 1, 1250)));
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
        assert_eq!(got, Some(announced(Some("abcd1234"), Some(5), 0, 1234)));
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
    fn decimal_seconds_are_read_to_the_nanosecond() {
        assert_eq!(seconds("1.234"), Some(Duration::from_millis(1234)));
        assert_eq!(seconds("0.000000001"), Some(Duration::from_nanos(1)));
        assert_eq!(seconds("2.1234567899"), Some(Duration::new(2, 123_456_789)));
        assert_eq!(seconds("7"), Some(Duration::from_secs(7)));
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
}
