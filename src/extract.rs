//! Extract: what users asked for out of a body. Today the HTML `<title>`.

/// Longest title kept, in characters; longer ones are cut and end with `…`.
pub const MAX_TITLE_CHARS: usize = 1024;

/// True for content types whose bodies may hold a `<title>`.
pub fn is_html(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml")
}

/// The text of the first `<title>` element: entities decoded, whitespace collapsed, invalid
/// UTF-8 replaced, at most `MAX_TITLE_CHARS` characters. `None` when there is no title or it
/// is blank.
///
/// ```
/// assert_eq!(ratefetch::extract::title(b"<html><TITLE>\n A &amp; B\n</title>").as_deref(), Some("A & B"));
/// ```
pub fn title(html: &[u8]) -> Option<String> {
    let open = find_tag(html, b"<title")?;
    let after_open = open + memchr::memchr(b'>', &html[open..])? + 1;
    let rest = &html[after_open..];
    let end = find_tag(rest, b"</title").unwrap_or(rest.len());
    // Decode only a bounded prefix: a megabyte title costs no more than a short one.
    let raw = &rest[..end.min(MAX_TITLE_CHARS * 8)];
    let text = String::from_utf8_lossy(raw);
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn html_content_types() {
        assert!(is_html("text/html; charset=utf-8"));
        assert!(is_html("TEXT/HTML"));
        assert!(is_html("application/xhtml+xml"));
        assert!(!is_html("application/json"));
        assert!(!is_html("text/plain"));
    }
}
