//! Substituters against small servers of the tests' own: retries,
//! `Retry-After`, final refusals.

use super::*;

#[test]
fn parses_file_and_http_urls() {
    let file = Substituter::parse("file:///tmp/cache/?compression=xz").unwrap();
    assert_eq!(file.url(), "file:///tmp/cache/?compression=xz");
    assert!(matches!(&file.transport, Transport::File(p) if p == Path::new("/tmp/cache/")));
    let http = Substituter::parse("https://user@cache.example:8443/prefix/").unwrap();
    assert_eq!(http.url(), "https://***@cache.example:8443/prefix");
    assert_eq!(
        http.url_of("x.narinfo"),
        "https://***@cache.example:8443/prefix/x.narinfo"
    );
    assert!(
        matches!(&http.transport, Transport::Http(base) if base == "https://user@cache.example:8443/prefix")
    );
}

#[test]
fn refuses_unknown_schemes_and_relative_files() {
    for url in [
        "ftp://x",
        "file://relative/dir",
        "http://",
        "s3://bucket",
        "/nix/cache",
    ] {
        let err = Substituter::parse(url).err().expect(url).to_string();
        assert!(err.contains(url), "{err}");
    }
}

#[test]
fn only_plain_relative_locations_are_opened() {
    assert!(is_plain_relative("nar/abc.nar.xz"));
    for hostile in ["../secret", "nar/../../x", "/etc/passwd", "", "nar/./x/.."] {
        assert!(!is_plain_relative(hostile), "{hostile}");
    }
}

#[test]
fn file_cache_refuses_locations_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "x").unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let sub = Substituter::parse(&format!("file://{}", cache.display())).unwrap();
    let options = FetchOptions::default();
    let err = sub
        .open("../secret", &agent(&options), &options)
        .err()
        .unwrap();
    assert!(err.to_string().contains("outside the cache"), "{err}");
    assert!(sub
        .open("missing.narinfo", &agent(&options), &options)
        .unwrap()
        .is_none());
}

/// Answers one request per entry of `answers` (a status line, maybe
/// with headers after it), in order, each with the body `ok`.
fn serve(answers: &'static [&'static str]) -> Substituter {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for answer in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {answer}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    Substituter::parse(&url).unwrap()
}

fn quick() -> FetchOptions {
    FetchOptions {
        backoff: Duration::from_millis(1),
        ..FetchOptions::default()
    }
}

#[test]
fn throttling_is_retried_after_the_wait_the_server_asks_for() {
    let sub = serve(&["429 Too Many Requests\r\nRetry-After: 0", "200 OK"]);
    let options = quick();
    let mut body = String::new();
    sub.open("x.narinfo", &agent(&options), &options)
        .unwrap()
        .expect("found after the retry")
        .read_to_string(&mut body)
        .unwrap();
    assert_eq!(body, "ok");
}

#[test]
fn a_server_asking_for_a_long_wait_is_not_asked_again() {
    let sub = serve(&["503 Service Unavailable\r\nRetry-After: 3600"]);
    let options = quick();
    let err = sub
        .open("x.narinfo", &agent(&options), &options)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("answered 503 and asked to wait 3600s")
            && err.contains("gave up after 1 attempts"),
        "{err}"
    );
}

#[test]
fn refusals_are_final() {
    let sub = serve(&["403 Forbidden"]);
    let options = quick();
    let err = sub
        .open("x.narinfo", &agent(&options), &options)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("answered 403") && err.contains("netrc"),
        "{err}"
    );
}

#[test]
fn store_dir_other_than_nix_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nix-cache-info"),
        "StoreDir: /gnu/store\nWantMassQuery: 1\n",
    )
    .unwrap();
    let sub = Substituter::parse(&format!("file://{}", dir.path().display())).unwrap();
    let options = FetchOptions::default();
    let err = sub.check_store_dir(&agent(&options), &options).unwrap_err();
    assert!(
        matches!(&err, StoreError::WrongStoreDir { found, .. } if found == "/gnu/store"),
        "{err}"
    );
}
