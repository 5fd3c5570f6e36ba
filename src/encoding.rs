//! Page encodings, found as browsers find them (the WHATWG encoding sniffing algorithm, in
//! the parts that matter for a title and extracted text): a byte order mark, then the
//! charset of the Content-Type, then for HTML a `<meta charset>` (or `http-equiv`) within
//! the first 1,024 bytes, then a guess from the bytes (chardetng, Firefox's detector) for
//! pages that say nothing; bytes that are valid UTF-8 are UTF-8 without a guess. A leaf
//! module: `fetch` picks the encoding, `extract` decodes with it. Saved bodies keep the
//! bytes as served.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252, X_USER_DEFINED};

/// How far into an HTML page a `<meta>` declaration is looked for (the WHATWG prescan's).
const PRESCAN: usize = 1024;

/// How much of a page the detector reads when nothing declares the encoding.
const GUESS: usize = 64 << 10;

/// The encoding of a response whose Content-Type is `content_type` and whose body starts
/// with `head`; `html` pages are prescanned for `<meta>`.
pub fn sniff(content_type: Option<&str>, head: &[u8], html: bool) -> &'static Encoding {
    if let Some((bom, _)) = Encoding::for_bom(head) {
        return bom;
    }
    if let Some(enc) = content_type.and_then(charset).and_then(Encoding::for_label) {
        return enc;
    }
    if html {
        if let Some(enc) = meta_charset(&head[..head.len().min(PRESCAN)]) {
            // A page cannot declare itself UTF-16 in ASCII; x-user-defined is 1252.
            return if enc == UTF_16LE || enc == UTF_16BE {
                UTF_8
            } else if enc == X_USER_DEFINED {
                WINDOWS_1252
            } else {
                enc
            };
        }
    }
    let head = &head[..head.len().min(GUESS)];
    match std::str::from_utf8(head) {
        Ok(_) => UTF_8,
        // Cut inside a character at the end of what was read: still UTF-8.
        Err(e) if e.error_len().is_none() => UTF_8,
        Err(_) => {
            let mut detector = chardetng::EncodingDetector::new();
            detector.feed(head, true);
            detector.guess(None, true)
        }
    }
}

/// The `charset` parameter of a Content-Type value.
fn charset(content_type: &str) -> Option<&[u8]> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("charset").then(|| {
            value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .as_bytes()
        })
    })
}

/// The encoding a `<meta charset=…>` or `<meta http-equiv="Content-Type"
/// content="…; charset=…">` in `head` declares, the first that names a known one.
fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    let mut from = 0;
    while let Some(at) = memchr::memchr(b'<', &head[from..]) {
        let open = from + at;
        let is_meta = head
            .get(open + 1..open + 5)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"meta"));
        if !is_meta {
            from = open + 1;
            continue;
        }
        let start = open + 5;
        let end = memchr::memchr(b'>', &head[start..]).map_or(head.len(), |e| start + e);
        let tag = &head[start..end];
        // `charset=` covers both forms: the attribute and the one inside `content`.
        if let Some(c) = find_ci(tag, b"charset") {
            let rest = tag[c + 7..].trim_ascii_start();
            if let Some(value) = rest.strip_prefix(b"=") {
                let value = value.trim_ascii_start();
                let value = value
                    .strip_prefix(b"\"")
                    .or_else(|| value.strip_prefix(b"'"))
                    .unwrap_or(value);
                let len = value
                    .iter()
                    .position(|b| {
                        matches!(b, b'"' | b'\'' | b';' | b'/' | b'>') || b.is_ascii_whitespace()
                    })
                    .unwrap_or(value.len());
                if let Some(enc) = Encoding::for_label(&value[..len]) {
                    return Some(enc);
                }
            }
        }
        from = end;
    }
    None
}

/// The position of `needle` (lowercase ASCII) in `hay`, case-insensitively.
fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{SHIFT_JIS, WINDOWS_1251};

    #[test]
    fn a_bom_wins_then_the_header_then_meta_then_a_guess() {
        let cp1251 = WINDOWS_1251
            .encode("<title>Привет, мир</title> и ещё немного текста")
            .0;
        assert_eq!(
            sniff(Some("text/html; charset=windows-1251"), &cp1251, true),
            WINDOWS_1251
        );
        assert_eq!(
            sniff(Some("text/html; charset=\"Shift_JIS\""), b"x", true),
            SHIFT_JIS
        );
        assert_eq!(
            sniff(Some("text/html; charset=utf-8"), b"\xff\xfe<\x00", true),
            UTF_16LE
        );
        let meta =
            b"<html><head><META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset=koi8-r'>";
        assert_eq!(sniff(Some("text/html"), meta, true).name(), "KOI8-R");
        assert_eq!(sniff(None, b"<meta charset=\"utf-16\">", true), UTF_8);
        assert_eq!(
            sniff(Some("text/html"), "<p>café</p>".as_bytes(), true),
            UTF_8
        );
        assert_eq!(
            sniff(Some("text/html"), &cp1251, true),
            WINDOWS_1251,
            "guessed"
        );
        // The header's label must be one encoding_rs knows.
        assert_eq!(
            sniff(Some("text/html; charset=nonsense"), b"plain", true),
            UTF_8
        );
    }

    #[test]
    fn meta_is_looked_for_only_in_html_and_only_in_the_first_kilobyte() {
        let late = format!("{}<meta charset=windows-1251>", " ".repeat(1100));
        assert_eq!(sniff(None, late.as_bytes(), true), UTF_8);
        assert_eq!(sniff(None, b"<meta charset=windows-1251>", false), UTF_8);
        assert_eq!(
            sniff(None, b"<meta charset=windows-1251>", true),
            WINDOWS_1251
        );
    }
}
