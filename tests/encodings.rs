//! Pages in the encoding they were written in: titles and extracted text are decoded as a
//! browser decodes them (byte order mark, Content-Type charset, `<meta>` in the first
//! kilobyte, else a guess from the bytes), and saved bodies keep the bytes as served.

mod support;

use encoding_rs::{Encoding, SHIFT_JIS, WINDOWS_1251, WINDOWS_1252};
use support::binary::ratefetch_bin;
use support::report::{read_csv, Row};
use support::server::Server;

/// Every byte as `%XX`: the server's `/raw` route sends back exactly these bytes.
fn pct(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// The URL of a page that is `page` written in `encoding`, served with `content_type`.
fn page(
    server: &Server,
    content_type: Option<&str>,
    encoding: &'static Encoding,
    page: &str,
) -> String {
    let (bytes, _, unmappable) = encoding.encode(page);
    assert!(!unmappable, "{page} is not all {}", encoding.name());
    let kind = content_type.map_or(String::new(), |t| format!("&type={}", pct(t.as_bytes())));
    server.url(&format!("/raw?body={}{kind}", pct(&bytes)))
}

#[test]
fn titles_and_extracted_text_are_decoded_from_the_declared_or_guessed_encoding() {
    let server = Server::start_on([127, 0, 0, 113]);
    let dir = tempfile::tempdir().unwrap();
    let russian =
        "<html><head><title>Привет, мир</title></head><body><h1>Заголовок</h1></body></html>";
    let said_nothing =
        "<html><head><title>Новости дня</title></head><body><h1>Сегодня в городе</h1>\
        <p>Жители города собрались на площади, чтобы обсудить новый парк и строительство \
        моста через реку. Мэр сказал, что работы начнутся весной.</p></body></html>";
    let urls = [
        page(&server, Some("text/html; charset=windows-1251"), WINDOWS_1251, russian),
        page(
            &server,
            Some("text/html; charset=Shift_JIS"),
            SHIFT_JIS,
            "<title>こんにちは、世界</title><h1>日本語のページ</h1>",
        ),
        page(
            &server,
            Some("text/html"),
            WINDOWS_1252,
            "<html><head><meta charset=\"windows-1252\"><title>Café crème à la française</title></head>\
             <body><h1>Déjà vu</h1></body></html>",
        ),
        page(
            &server,
            Some("text/html"),
            WINDOWS_1251,
            "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1251\">\
             <title>Только мета</title></head><body><h1>Кодировка в meta</h1></body></html>",
        ),
        page(&server, Some("text/html"), WINDOWS_1251, said_nothing),
        page(&server, Some("text/html; charset=utf-8"), encoding_rs::UTF_8, "<title>Grüße</title><h1>UTF-8</h1>"),
    ];
    let input = dir.path().join("urls.txt");
    std::fs::write(&input, urls.join("\n")).unwrap();
    let report = dir.path().join("report.csv");
    let bodies = dir.path().join("bodies");
    let out = ratefetch_bin()
        .args([
            "-r",
            "unlimited",
            "-q",
            "--extract",
            "h1=css:h1",
            "--save-bodies",
        ])
        .arg(&bodies)
        .arg("-o")
        .arg(&report)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = read_csv(&report);
    rows.sort_by_key(Row::index);
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.get("title"), r.get("h1"))).collect();
    assert_eq!(
        got,
        [
            ("Привет, мир", "Заголовок"),
            ("こんにちは、世界", "日本語のページ"),
            ("Café crème à la française", "Déjà vu"),
            ("Только мета", "Кодировка в meta"),
            ("Новости дня", "Сегодня в городе"),
            ("Grüße", "UTF-8"),
        ],
        "header charset, Shift_JIS, meta charset, meta http-equiv, a guess, UTF-8"
    );
    // Saved bodies are the bytes as served, not a re-encoding.
    let saved = std::fs::read(bodies.join("1.html")).unwrap();
    assert_eq!(saved, WINDOWS_1251.encode(russian).0.as_ref());
    assert_eq!(rows[0].get("bytes"), saved.len().to_string());
}
