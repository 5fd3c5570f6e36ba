//! Extract: what users asked for out of a response: the HTML `<title>`, and the
//! `--extract NAME=KIND:EXPR` rules (CSS selectors, regexes, JSON pointers, headers), each
//! compiled once, before any request, and applied to a body parsed once per job.

use std::fmt;

use encoding_rs::{Encoding, UTF_8};
use reqwest::header::{HeaderMap, HeaderName};

/// Longest title kept, in characters; longer ones are cut and end with `…`.
pub const MAX_TITLE_CHARS: usize = 1024;

/// True for content types whose bodies may hold a `<title>`.
pub fn is_html(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml")
}

/// The text of the first `<title>` element of a page in `encoding` (see
/// [`crate::encoding::sniff`]): entities decoded, whitespace collapsed, bytes that are not
/// of the encoding replaced, at most `MAX_TITLE_CHARS` characters. `None` when there is no
/// title or it is blank.
///
/// ```
/// use encoding_rs::{UTF_8, WINDOWS_1251};
/// use ratefetch::extract::title;
/// assert_eq!(title(b"<html><TITLE>\n A &amp; B\n</title>", UTF_8).as_deref(), Some("A & B"));
/// assert_eq!(title(b"<title>\xcf\xf0\xe8\xe2\xe5\xf2</title>", WINDOWS_1251).as_deref(), Some("Привет"));
/// ```
pub fn title(html: &[u8], encoding: &'static Encoding) -> Option<String> {
    if encoding.is_ascii_compatible() {
        // Tags are ASCII bytes in the page as served: only the title's bytes are decoded.
        title_in(html, encoding)
    } else {
        // UTF-16 and ISO-2022-JP: decode the head of the page, then look.
        let head = &html[..html.len().min(DECODED_HEAD)];
        let (text, _) = encoding.decode_with_bom_removal(head);
        title_in(text.as_bytes(), UTF_8)
    }
}

/// How much of a page in an encoding that is not ASCII-compatible is decoded to find a title.
const DECODED_HEAD: usize = 64 << 10;

fn title_in(html: &[u8], encoding: &'static Encoding) -> Option<String> {
    let open = find_tag(html, b"<title")?;
    let after_open = open + memchr::memchr(b'>', &html[open..])? + 1;
    let rest = &html[after_open..];
    let end = find_tag(rest, b"</title").unwrap_or(rest.len());
    // Decode only a bounded prefix: a megabyte title costs no more than a short one.
    let raw = &rest[..end.min(MAX_TITLE_CHARS * 8)];
    let text = encoding.decode_without_bom_handling(raw).0;
    let decoded = html_escape::decode_html_entities(&text);
    let mut out = String::with_capacity(decoded.len().min(MAX_TITLE_CHARS));
    let mut chars = 0;
    for word in decoded.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars == MAX_TITLE_CHARS {
                out.push('…');
                return Some(out);
            }
            out.push(c);
            chars += 1;
        }
    }
    if end > raw.len() && !out.is_empty() {
        out.push('…');
    }
    (!out.is_empty()).then_some(out)
}

/// Position of `tag` (lowercase, starting with `<`) matched case-insensitively and followed
/// by `>`, whitespace or `/`, so `<titles>` is not `<title`.
fn find_tag(hay: &[u8], tag: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = memchr::memchr(b'<', &hay[from..]) {
        let at = from + pos;
        let candidate = &hay[at..];
        if candidate.len() >= tag.len()
            && candidate[..tag.len()].eq_ignore_ascii_case(tag)
            && candidate
                .get(tag.len())
                .is_none_or(|b| *b == b'>' || *b == b'/' || b.is_ascii_whitespace())
        {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// What `--extract-all` puts between matches.
pub const ALL_SEPARATOR: &str = " | ";

/// The accepted `--extract` forms, quoted in usage errors.
pub const EXTRACT_FORMS: &str =
    "expected NAME=css:SELECTOR[@ATTR], NAME=regex:RE, NAME=json:/POINTER or NAME=header:NAME";

/// One `--extract NAME=KIND:EXPR` rule, compiled.
#[derive(Clone)]
pub struct Extractor {
    /// The column name.
    pub name: String,
    /// Where the value comes from.
    pub rule: Rule,
}

/// How a value is found.
#[derive(Clone)]
pub enum Rule {
    /// Trimmed, whitespace-collapsed text of the matching elements, or an attribute of them.
    Css {
        /// The compiled selector.
        selector: scraper::Selector,
        /// The selector as given.
        source: String,
        /// The attribute to read (`@ATTR`) instead of the text.
        attr: Option<String>,
    },
    /// The first capture group of each match, else the whole match.
    Regex(regex::Regex),
    /// An RFC 6901 JSON pointer: strings unquoted, other values as compact JSON.
    Json(String),
    /// A response header's value.
    Header(HeaderName),
}

impl fmt::Debug for Extractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match &self.rule {
            Rule::Css { source, attr, .. } => match attr {
                Some(a) => format!("css:{source}@{a}"),
                None => format!("css:{source}"),
            },
            Rule::Regex(re) => format!("regex:{re}"),
            Rule::Json(p) => format!("json:{p}"),
            Rule::Header(h) => format!("header:{h}"),
        };
        write!(f, "{}={rule}", self.name)
    }
}

impl Extractor {
    /// Parses `NAME=KIND:EXPR`; a bad selector, regex or pointer is an error that says why.
    ///
    /// ```
    /// use ratefetch::extract::Extractor;
    /// assert!(Extractor::parse("price=css:.price").is_ok());
    /// assert!(Extractor::parse("link=css:a.next@href").is_ok());
    /// assert!(Extractor::parse("id=regex:id=(\\d+)").is_ok());
    /// assert!(Extractor::parse("name=json:/user/name").is_ok());
    /// assert!(Extractor::parse("etag=header:ETag").is_ok());
    /// assert!(Extractor::parse("bad=css:::nope").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Extractor, String> {
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| EXTRACT_FORMS.to_string())?;
        let name = name.trim();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(format!(
                "{EXTRACT_FORMS} (a column name without spaces or commas)"
            ));
        }
        let (kind, expr) = rest
            .split_once(':')
            .ok_or_else(|| EXTRACT_FORMS.to_string())?;
        let rule = match kind.trim() {
            "css" => css_rule(expr)?,
            "regex" => Rule::Regex(
                regex::Regex::new(expr).map_err(|e| format!("bad regex for {name}: {e}"))?,
            ),
            "json" => {
                if !(expr.is_empty() || expr.starts_with('/')) {
                    return Err(format!(
                        "bad JSON pointer for {name}: {expr:?} (RFC 6901 pointers start with /)"
                    ));
                }
                Rule::Json(expr.to_string())
            }
            "header" => Rule::Header(
                HeaderName::from_bytes(expr.trim().as_bytes())
                    .map_err(|_| format!("bad header name for {name}: {expr:?}"))?,
            ),
            other => return Err(format!("{EXTRACT_FORMS} (unknown kind {other:?})")),
        };
        Ok(Extractor {
            name: name.to_string(),
            rule,
        })
    }

    /// Whether this rule reads the body (a header rule does not).
    pub fn needs_body(&self) -> bool {
        !matches!(self.rule, Rule::Header(_))
    }
}

/// `SELECTOR` or `SELECTOR@ATTR`: the part after the last `@` is an attribute when it is a
/// plain attribute name and what precedes it is a valid selector on its own.
fn css_rule(expr: &str) -> Result<Rule, String> {
    let parse = |sel: &str| {
        scraper::Selector::parse(sel.trim()).map_err(|e| format!("bad CSS selector {sel:?}: {e}"))
    };
    if let Some((sel, attr)) = expr.rsplit_once('@') {
        let plain = !attr.is_empty()
            && attr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'));
        if plain {
            if let Ok(selector) = parse(sel) {
                return Ok(Rule::Css {
                    selector,
                    source: sel.trim().to_string(),
                    attr: Some(attr.to_string()),
                });
            }
        }
    }
    Ok(Rule::Css {
        selector: parse(expr)?,
        source: expr.trim().to_string(),
        attr: None,
    })
}

/// Applies every extractor to one response, parsing the body at most once as HTML and at
/// most once as JSON. CSS and regex rules see the body decoded from `encoding` (see
/// [`crate::encoding::sniff`]); JSON is read as the bytes are (RFC 8259: UTF-8). One value
/// per extractor, in order; empty when nothing matched.
pub fn apply(
    extractors: &[Extractor],
    all: bool,
    headers: &HeaderMap,
    body: &[u8],
    encoding: &'static Encoding,
) -> Vec<String> {
    let decoded = std::cell::OnceCell::new();
    let text = || -> &str { decoded.get_or_init(|| encoding.decode_with_bom_removal(body).0) };
    let mut html: Option<scraper::Html> = None;
    let mut json: Option<Option<serde_json::Value>> = None;
    extractors
        .iter()
        .map(|x| {
            let mut found: Vec<String> = Vec::new();
            match &x.rule {
                Rule::Css { selector, attr, .. } => {
                    let doc = html.get_or_insert_with(|| scraper::Html::parse_document(text()));
                    for el in doc.select(selector) {
                        let value = match attr {
                            Some(a) => el.value().attr(a).map(|v| v.trim().to_string()),
                            None => Some(collapse(&el.text().collect::<String>())),
                        };
                        if let Some(v) = value {
                            found.push(v);
                            if !all {
                                break;
                            }
                        }
                    }
                }
                Rule::Regex(re) => {
                    let text = text();
                    for caps in re.captures_iter(text) {
                        // Empty matches (a pattern like `x*` matches between every byte)
                        // carry nothing and would make huge cells.
                        match caps.get(1).or_else(|| caps.get(0)) {
                            Some(m) if !m.as_str().is_empty() => found.push(m.as_str().to_string()),
                            _ => continue,
                        }
                        if !all {
                            break;
                        }
                    }
                }
                Rule::Json(pointer) => {
                    let doc = json.get_or_insert_with(|| serde_json::from_slice(body).ok());
                    if let Some(v) = doc.as_ref().and_then(|d| d.pointer(pointer)) {
                        found.push(match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        });
                    }
                }
                Rule::Header(name) => {
                    for v in headers.get_all(name) {
                        found.push(String::from_utf8_lossy(v.as_bytes()).trim().to_string());
                        if !all {
                            break;
                        }
                    }
                }
            }
            found.join(ALL_SEPARATOR)
        })
        .collect()
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{SHIFT_JIS, UTF_16LE, WINDOWS_1251, WINDOWS_1252};

    fn title(html: &[u8]) -> Option<String> {
        super::title(html, UTF_8)
    }

    fn apply(xs: &[Extractor], all: bool, headers: &HeaderMap, body: &[u8]) -> Vec<String> {
        super::apply(xs, all, headers, body, UTF_8)
    }

    #[test]
    fn titles_and_text_are_decoded_from_the_page_encoding() {
        let page = "<html><title>Привет, мир</title><h1>Заголовок</h1></html>";
        let cp1251 = WINDOWS_1251.encode(page).0;
        assert_eq!(
            super::title(&cp1251, WINDOWS_1251).as_deref(),
            Some("Привет, мир")
        );
        let xs = rules(&["h=css:h1", "r=regex:<h1>(.*)</h1>"]);
        assert_eq!(
            super::apply(&xs, false, &HeaderMap::new(), &cp1251, WINDOWS_1251),
            ["Заголовок", "Заголовок"]
        );
        let sjis = SHIFT_JIS.encode("<title>こんにちは 世界</title>").0;
        assert_eq!(
            super::title(&sjis, SHIFT_JIS).as_deref(),
            Some("こんにちは 世界")
        );
        let latin = WINDOWS_1252
            .encode("<title>Café &amp; crème brûlée</title>")
            .0;
        assert_eq!(
            super::title(&latin, WINDOWS_1252).as_deref(),
            Some("Café & crème brûlée")
        );
        // UTF-16 is not ASCII-compatible: decoded first, the byte order mark dropped.
        let mut utf16 = vec![0xff, 0xfe];
        for unit in "<title>Grüße</title>".encode_utf16() {
            utf16.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(super::title(&utf16, UTF_16LE).as_deref(), Some("Grüße"));
    }

    #[test]
    fn plain_title() {
        assert_eq!(
            title(b"<html><head><title>Hello</title></head>").as_deref(),
            Some("Hello")
        );
    }

    #[test]
    fn case_attributes_entities_and_whitespace() {
        let html = b"<TITLE lang=en>\r\n  Caf&eacute;   &amp;\tBar &#x2014; x </Title>";
        assert_eq!(title(html).as_deref(), Some("Caf\u{e9} & Bar \u{2014} x"));
    }

    #[test]
    fn no_title_or_blank_title_is_none() {
        assert_eq!(title(b"<html><body>hi</body></html>"), None);
        assert_eq!(title(b"<title>   </title>"), None);
        assert_eq!(title(b"<titles>no</titles>"), None);
    }

    #[test]
    fn unclosed_title_takes_the_rest() {
        assert_eq!(title(b"<title>half").as_deref(), Some("half"));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(
            title(b"<title>a\xffb</title>").as_deref(),
            Some("a\u{fffd}b")
        );
    }

    #[test]
    fn megabyte_title_is_cut() {
        let mut html = b"<title>".to_vec();
        html.extend(std::iter::repeat_n(b'x', 4 << 20));
        html.extend_from_slice(b"</title>");
        let t = title(&html).unwrap();
        assert_eq!(t.chars().count(), MAX_TITLE_CHARS + 1);
        assert!(t.ends_with('…'));
    }

    fn rules(specs: &[&str]) -> Vec<Extractor> {
        specs.iter().map(|s| Extractor::parse(s).unwrap()).collect()
    }

    const PAGE: &[u8] = br#"<html><head><title>Shop</title></head><body>
        <h1> Blue   widget </h1>
        <span class="price">$3.50</span><span class="price">$4.00</span>
        <a class="next" href="/page/2">next</a>
        <p>sku: AB-123, sku: CD-456</p></body></html>"#;

    #[test]
    fn css_text_attribute_and_all() {
        let xs = rules(&[
            "h=css:h1",
            "p=css:.price",
            "next=css:a.next@href",
            "none=css:.missing",
        ]);
        let got = apply(&xs, false, &HeaderMap::new(), PAGE);
        assert_eq!(got, ["Blue widget", "$3.50", "/page/2", ""]);
        let got = apply(&xs, true, &HeaderMap::new(), PAGE);
        assert_eq!(got[1], "$3.50 | $4.00");
    }

    #[test]
    fn regex_first_group_else_whole_match() {
        let xs = rules(&["sku=regex:sku: ([A-Z]+-\\d+)", "whole=regex:[A-Z]{2}-\\d+"]);
        assert_eq!(
            apply(&xs, false, &HeaderMap::new(), PAGE),
            ["AB-123", "AB-123"]
        );
        assert_eq!(
            apply(&xs, true, &HeaderMap::new(), PAGE)[0],
            "AB-123 | CD-456"
        );
    }

    #[test]
    fn json_pointer_strings_unquoted_others_compact() {
        let body = br#"{"user":{"name":"Ada","tags":["a","b"],"age":36},"ok":true}"#;
        let xs = rules(&[
            "n=json:/user/name",
            "t=json:/user/tags",
            "a=json:/user/age",
            "x=json:/nope",
        ]);
        assert_eq!(
            apply(&xs, false, &HeaderMap::new(), body),
            ["Ada", r#"["a","b"]"#, "36", ""]
        );
        // Not JSON: empty, not an error.
        assert_eq!(apply(&xs[..1], false, &HeaderMap::new(), b"<html>"), [""]);
    }

    #[test]
    fn header_values() {
        let mut h = HeaderMap::new();
        h.append("x-id", "1".parse().unwrap());
        h.append("x-id", "2".parse().unwrap());
        let xs = rules(&["id=header:X-Id"]);
        assert_eq!(apply(&xs, false, &h, b""), ["1"]);
        assert_eq!(apply(&xs, true, &h, b""), ["1 | 2"]);
        assert!(!xs[0].needs_body());
    }

    #[test]
    fn bad_rules_say_why() {
        for (spec, why) in [
            ("nokind", "expected NAME="),
            ("x=xpath://a", "unknown kind"),
            ("x=css:a[", "bad CSS selector"),
            ("x=regex:(", "bad regex"),
            ("x=json:user", "JSON pointer"),
            ("x=header:bad header", "bad header name"),
            ("=css:a", "column name"),
        ] {
            let err = Extractor::parse(spec).err().unwrap_or_default();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn html_content_types() {
        assert!(is_html("text/html; charset=utf-8"));
        assert!(is_html("TEXT/HTML"));
        assert!(is_html("application/xhtml+xml"));
        assert!(!is_html("application/json"));
        assert!(!is_html("text/plain"));
    }
}
