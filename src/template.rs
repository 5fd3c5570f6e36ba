//! `--url-template`: one request per row of an input that holds ids, not URLs.
//! `https://api.example.com/items/{id}?lang={lang}` takes each `{name}` from the CSV
//! column of that name, and `{}` from each line of a text input; every value is
//! percent-encoded so that it stays one path segment or one query value, whatever it holds
//! (`/`, `&`, `?`, spaces, non-ASCII). `{{` and `}}` are literal braces. A leaf module.

use std::fmt::Write as _;

/// A parsed template: literal text and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `{name}`, or `{}` (`None`): the line of a text input.
    Field(Option<String>),
}

/// A template whose names are the columns at these positions of a CSV header.
#[derive(Debug, Clone)]
pub struct Bound {
    parts: Vec<BoundPart>,
}

#[derive(Debug, Clone)]
enum BoundPart {
    Literal(String),
    Column { at: usize, name: String },
}

impl Template {
    /// Parses `--url-template`: braces must pair (`{{`/`}}` for literal ones), names are
    /// column names (no braces inside), and the text must start like an http(s) URL.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(format!(
                                "a {{ without its }} in {text:?} (write {{{{ for a literal brace)"
                            ))
                            }
                            Some(c) => name.push(c),
                        }
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    let name = name.trim();
                    parts.push(Part::Field((!name.is_empty()).then(|| name.to_string())));
                }
                '}' => {
                    return Err(format!(
                        "a }} without its {{ in {text:?} (write }}}} for a literal brace)"
                    ))
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let start = match parts.first() {
            Some(Part::Literal(s)) => s.to_ascii_lowercase(),
            _ => String::new(),
        };
        if !(start.starts_with("http://") || start.starts_with("https://")) {
            return Err(format!(
                "expected an http(s) URL with {{name}} or {{}} placeholders, e.g. \
                 'https://api.example.com/items/{{id}}'; got {text:?}"
            ));
        }
        if !parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err(format!(
                "no placeholder in {text:?}: {{name}} takes a CSV column, {{}} a text line"
            ));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The template as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The column names it takes, in order (repeats included); `{}` is not one.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(Some(name)) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether it holds a `{}` (a text input's line).
    pub fn takes_line(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(None)))
    }

    /// Binds the names to the columns of a CSV `header` (case-insensitive). `Err` is the
    /// first name that is not a column, or `{}`'s `""`.
    pub fn bind(&self, header: &[String]) -> Result<Bound, String> {
        let parts = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => Ok(BoundPart::Literal(s.clone())),
                Part::Field(None) => Err(String::new()),
                Part::Field(Some(name)) => header
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case(name))
                    .map(|at| BoundPart::Column {
                        at,
                        name: name.clone(),
                    })
                    .ok_or_else(|| name.clone()),
            })
            .collect::<Result<_, _>>()?;
        Ok(Bound { parts })
    }

    /// The URL for one line of a text input (every `{}` is the line, trimmed); `Err` says
    /// why there is none (an empty line is skipped before this).
    pub fn fill_line(&self, line: &str) -> String {
        let mut url = String::with_capacity(self.text.len() + line.len());
        for part in &self.parts {
            match part {
                Part::Literal(s) => url.push_str(s),
                Part::Field(_) => encode(&mut url, line.as_bytes()),
            }
        }
        url
    }
}

impl Bound {
    /// The URL for one CSV row, `cell(i)` giving its cells; `Err` names the placeholder
    /// whose cell is empty (or missing in a short row).
    pub fn fill<'a>(&self, cell: impl Fn(usize) -> Option<&'a [u8]>) -> Result<String, String> {
        let mut url = String::new();
        for part in &self.parts {
            match part {
                BoundPart::Literal(s) => url.push_str(s),
                BoundPart::Column { at, name } => match cell(*at).map(<[u8]>::trim_ascii) {
                    Some(value) if !value.is_empty() => encode(&mut url, value),
                    _ => return Err(format!("empty cell for {{{name}}} of --url-template")),
                },
            }
        }
        Ok(url)
    }
}

/// Appends `value` percent-encoded, every byte but RFC 3986's unreserved ones
/// (`A-Z a-z 0-9 - . _ ~`): safe as a path segment and as a query value alike.
fn encode(url: &mut String, value: &[u8]) {
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            url.push(b as char);
        } else {
            let _ = write!(url, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_bound_to_columns_and_values_encoded_as_one_segment_or_value() {
        let t = Template::parse("https://api.test/items/{id}?lang={lang}&q={ID}").unwrap();
        assert_eq!(t.names().collect::<Vec<_>>(), ["id", "lang", "ID"]);
        let b = t.bind(&header(&["Lang", "id"])).unwrap();
        let cells: [&[u8]; 2] = [b"en&x=1", b" a/b c\xc3\xa9 "];
        assert_eq!(
            b.fill(|i| cells.get(i).copied()).unwrap(),
            "https://api.test/items/a%2Fb%20c%C3%A9?lang=en%26x%3D1&q=a%2Fb%20c%C3%A9"
        );
        let empty: [&[u8]; 2] = [b"en", b"  "];
        assert_eq!(
            b.fill(|i| empty.get(i).copied()).unwrap_err(),
            "empty cell for {id} of --url-template"
        );
        assert!(b
            .fill(|i| empty.get(i).copied().filter(|_| i == 0))
            .is_err());
        assert_eq!(t.bind(&header(&["id"])).unwrap_err(), "lang");
    }

    #[test]
    fn a_text_line_fills_every_empty_placeholder_and_braces_can_be_literal() {
        let t = Template::parse("https://x.test/{}/{{raw}}?again={}").unwrap();
        assert!(t.takes_line());
        assert_eq!(
            t.fill_line("42 a"),
            "https://x.test/42%20a/{raw}?again=42%20a"
        );
        assert_eq!(t.bind(&header(&["id"])).unwrap_err(), "");
    }

    #[test]
    fn bad_templates_say_why() {
        for (bad, why) in [
            ("https://x.test/{id", "without its }"),
            ("https://x.test/id}", "without its {"),
            ("ftp://x.test/{id}", "http(s) URL"),
            ("{base}/x", "http(s) URL"),
            ("https://x.test/plain", "no placeholder"),
        ] {
            let err = Template::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
