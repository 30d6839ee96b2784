use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

use super::*;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One tar entry, written with raw headers so hostile names get through.
enum Item<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Special(&'a str, EntryType),
    /// A GNU long-name record of this size, then a file.
    LongName(usize),
    /// A pax record naming the next entry, then a file.
    PaxName(String),
}

fn header(name: &[u8], kind: EntryType, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(1);
    header.set_cksum();
    header
}

fn tar(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        match item {
            Item::File(name, data) => {
                let header = header(name.as_bytes(), EntryType::Regular, data.len() as u64);
                builder.append(&header, *data).unwrap();
            }
            Item::Dir(name) => {
                let mut header = header(name.as_bytes(), EntryType::Directory, 0);
                header.set_mode(0o755);
                header.set_cksum();
                builder.append(&header, &[][..]).unwrap();
            }
            Item::Symlink(name, target) | Item::HardLink(name, target) => {
                let kind = match item {
                    Item::Symlink(..) => EntryType::Symlink,
                    _ => EntryType::Link,
                };
                let mut header = header(name.as_bytes(), kind, 0);
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                header.set_cksum();
                builder.append(&header, &[][..]).unwrap();
            }
            Item::Special(name, kind) => {
                builder
                    .append(&header(name.as_bytes(), *kind, 0), &[][..])
                    .unwrap();
            }
            Item::LongName(size) => {
                let name = vec![b'a'; *size];
                let long = header(b"././@LongLink", EntryType::GNULongName, *size as u64);
                builder.append(&long, &name[..]).unwrap();
                builder
                    .append(&header(b"x", EntryType::Regular, 1), &b"x"[..])
                    .unwrap();
            }
            Item::PaxName(name) => {
                let mut record = Vec::new();
                let body = format!(" path={name}\n");
                // A pax record's length counts its own digits.
                let mut length = body.len() + 1;
                while (length.to_string().len() + body.len()) != length {
                    length += 1;
                }
                record.extend_from_slice(format!("{length}{body}").as_bytes());
                let pax = header(b"pax", EntryType::XHeader, record.len() as u64);
                builder.append(&pax, &record[..]).unwrap();
                builder
                    .append(&header(b"short", EntryType::Regular, 1), &b"x"[..])
                    .unwrap();
            }
        }
    }
    gzip(&builder.into_inner().unwrap())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A GitHub-like nixpkgs archive: one top folder.
fn nixpkgs_archive() -> Vec<u8> {
    tar(&[
        Item::Dir("nixpkgs-x/"),
        Item::File("nixpkgs-x/default.nix", b"{ ... }: { }"),
        Item::Dir("nixpkgs-x/lib/"),
        Item::File("nixpkgs-x/lib/a.nix", b"1"),
        Item::Symlink("nixpkgs-x/lib/b.nix", "a.nix"),
        Item::HardLink("nixpkgs-x/c.nix", "nixpkgs-x/lib/a.nix"),
    ])
}

fn quick() -> FetchOptions {
    FetchOptions {
        retries: 2,
        backoff: Duration::from_millis(1),
        read_timeout: Duration::from_secs(5),
        ..FetchOptions::default()
    }
}

/// A kiln cache and a `file://` mirror holding `archive` for [`COMMIT`].
struct Setup {
    cache: tempfile::TempDir,
    mirror: tempfile::TempDir,
}

impl Setup {
    fn new(archive: &[u8]) -> Setup {
        let setup = Setup {
            cache: tempfile::tempdir().unwrap(),
            mirror: tempfile::tempdir().unwrap(),
        };
        fs::write(setup.archive_file(), archive).unwrap();
        setup
    }

    fn archive_file(&self) -> PathBuf {
        self.mirror.path().join(format!("{COMMIT}.tar.gz"))
    }

    fn archives(&self) -> Archives {
        self.archives_from(&format!("file://{}", self.mirror.path().display()))
    }

    fn archives_from(&self, base: &str) -> Archives {
        Archives::open(self.cache.path())
            .with_base(base)
            .with_options(quick())
    }

    fn url(&self) -> String {
        self.archives().nixpkgs_url(COMMIT).unwrap()
    }

    /// Names in the cache's `nixpkgs/` besides `urls/`, and files in
    /// `urls/`.
    fn cached(&self) -> (Vec<String>, usize) {
        let dir = self.cache.path().join("nixpkgs");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|name| name != "urls")
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let urls = fs::read_dir(dir.join("urls")).map_or(0, |entries| entries.count());
        (names, urls)
    }
}

/// A one-answer-per-request HTTP server on loopback, counting requests.
struct Server {
    base: String,
    requests: Arc<AtomicUsize>,
}

/// What the server answers: status, body, and a `Content-Length` that may
/// claim more than the body.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: Vec<u8>,
    claimed: usize,
}

impl Server {
    fn start(answer: Answer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let answer = Arc::new(Mutex::new(answer));
        // Serves until the test process ends; each test has its own port.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = answer.lock().unwrap().clone();
                let head = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.status, answer.claimed
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&answer.body);
            }
        });
        Server { base, requests }
    }

    fn ok(body: Vec<u8>) -> Server {
        Server::start(Answer {
            status: 200,
            claimed: body.len(),
            body,
        })
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn hex(bytes: &[u8]) -> String {
    hex_sha256(bytes)
}

#[test]
fn an_archive_is_unpacked_once_with_its_top_folder_stripped() {
    let archive = nixpkgs_archive();
    let setup = Setup::new(&archive);
    let unpacked = setup.archives().nixpkgs(COMMIT, None).unwrap();
    assert_eq!(unpacked.sha256, hex(&archive));
    assert_eq!(
        unpacked.dir,
        setup
            .cache
            .path()
            .join("nixpkgs")
            .join(&unpacked.sha256)
            .join("source")
    );
    assert_eq!(
        fs::read(unpacked.dir.join("default.nix")).unwrap(),
        b"{ ... }: { }"
    );
    assert_eq!(
        fs::read_link(unpacked.dir.join("lib/b.nix")).unwrap(),
        Path::new("a.nix")
    );
    assert_eq!(fs::read(unpacked.dir.join("c.nix")).unwrap(), b"1");
    assert_eq!(setup.cached(), (vec![unpacked.sha256.clone()], 1));

    // The mirror is gone: the URL's record and the intact copy answer.
    fs::remove_file(setup.archive_file()).unwrap();
    assert_eq!(setup.archives().nixpkgs(COMMIT, None).unwrap(), unpacked);
    // So does the lock's sha256, whatever the URL.
    let elsewhere = setup.archives_from("file:///nonexistent");
    let pinned = elsewhere.nixpkgs(COMMIT, Some(&unpacked.sha256)).unwrap();
    assert_eq!(pinned, unpacked);
}

#[test]
fn a_second_http_fetch_downloads_nothing() {
    let archive = nixpkgs_archive();
    let server = Server::ok(archive.clone());
    let setup = Setup::new(b"");
    let first = setup
        .archives_from(&server.base)
        .nixpkgs(COMMIT, None)
        .unwrap();
    let second = setup
        .archives_from(&server.base)
        .nixpkgs(COMMIT, None)
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(first.sha256, hex(&archive));
    assert_eq!(server.requests(), 1);
}

#[test]
fn a_404_is_final_and_says_what_to_check() {
    let server = Server::start(Answer {
        status: 404,
        body: Vec::new(),
        claimed: 0,
    });
    let setup = Setup::new(b"");
    let err = setup
        .archives_from(&server.base)
        .nixpkgs(COMMIT, None)
        .unwrap_err()
        .to_string();
    let url = format!("{}/{COMMIT}.tar.gz", server.base);
    assert!(err.contains(&url), "{err}");
    assert!(
        err.contains("nixpkgsArchive") && err.contains(NIXPKGS_URL_ENV),
        "{err}"
    );
    assert_eq!(server.requests(), 1);
    fs::remove_file(setup.archive_file()).unwrap();
    let err = setup.archives().nixpkgs(COMMIT, None).unwrap_err();
    assert!(matches!(err, ArchiveError::NotFound { .. }), "{err}");
    assert_eq!(setup.cached(), (vec![], 0));
}

#[test]
fn a_truncated_body_is_retried_then_refused_leaving_nothing() {
    let archive = nixpkgs_archive();
    let server = Server::start(Answer {
        status: 200,
        body: archive[..archive.len() / 2].to_vec(),
        claimed: archive.len(),
    });
    let setup = Setup::new(&archive[..archive.len() / 2]);
    let err = setup
        .archives_from(&server.base)
        .nixpkgs(COMMIT, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&server.base) && err.contains("gave up"),
        "{err}"
    );
    assert_eq!(server.requests(), 3, "the first try and two retries");
    // From a file the cut is in the gzip stream itself.
    let err = setup
        .archives()
        .nixpkgs(COMMIT, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&setup.url()) && err.contains("not a complete .tar.gz"),
        "{err}"
    );
    assert_eq!(setup.cached(), (vec![], 0));
}

#[test]
fn hostile_archives_are_refused_naming_the_url_and_leave_nothing() {
    use Item::*;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"<html>rate limited</html>".to_vec(),
            "not a complete .tar.gz",
        ),
        (
            gzip(b"not a tar at all, but long enough to fill a block"),
            "not a complete .tar.gz",
        ),
        (tar(&[File("top/../../escape", b"x")]), "climbs out"),
        (tar(&[File("/etc/evil", b"x")]), "absolute name"),
        (tar(&[Symlink("top/l", "../../etc")]), "points outside"),
        (tar(&[Symlink("top/l", "/etc")]), "points outside"),
        // Inside the archive, but not inside the top folder that is kept.
        (
            tar(&[Dir("top/"), Symlink("top/l", "../top")]),
            "points outside",
        ),
        (
            tar(&[Symlink("top/l", "sub"), File("top/l/x", b"x")]),
            "goes through the symlink",
        ),
        (
            tar(&[
                Dir("top/a/"),
                Symlink("top/a/b", ".."),
                Symlink("top/c", "a/b/../.."),
            ]),
            "leads outside",
        ),
        (tar(&[HardLink("top/h", "../outside")]), "climbs out"),
        (
            tar(&[HardLink("top/h", "top/missing")]),
            "not a file unpacked before it",
        ),
        (tar(&[Special("top/null", EntryType::Char)]), "device file"),
        (tar(&[Special("top/sda", EntryType::Block)]), "device file"),
        (tar(&[Special("top/pipe", EntryType::Fifo)]), "device file"),
        (tar(&[LongName(1 << 20)]), "pax record of"),
        (
            tar(&[PaxName("n".repeat(5000))]),
            "entry name of 5000 bytes",
        ),
        (
            tar(&[File("top/x", b"1"), File("top/x", b"2")]),
            "appears twice",
        ),
        (tar(&[]), "no files"),
    ];
    for (archive, expected) in cases {
        let setup = Setup::new(&archive);
        let err = setup
            .archives()
            .nixpkgs(COMMIT, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&setup.url()) && err.contains(expected),
            "{expected}: {err}"
        );
        assert_eq!(setup.cached(), (vec![], 0), "{expected}: left in the cache");
    }
}

#[test]
fn a_download_that_differs_from_the_lock_names_both_hashes() {
    let archive = nixpkgs_archive();
    let setup = Setup::new(&archive);
    let locked = "0".repeat(64);
    let err = setup
        .archives()
        .nixpkgs(COMMIT, Some(&locked))
        .unwrap_err()
        .to_string();
    for part in [setup.url(), locked, hex(&archive)] {
        assert!(err.contains(&part), "{part}: {err}");
    }
    assert!(err.contains("kiln lock"), "{err}");
    assert_eq!(setup.cached(), (vec![], 0), "the bytes are not used");
}

#[test]
fn a_corrupted_cached_archive_is_detected_and_fetched_again() {
    let server = Server::ok(nixpkgs_archive());
    let setup = Setup::new(b"");
    let archives = setup.archives_from(&server.base);
    let unpacked = archives.nixpkgs(COMMIT, None).unwrap();
    let file = unpacked.dir.join("lib/a.nix");

    fs::write(&file, "tampered").unwrap();
    assert_eq!(archives.nixpkgs(COMMIT, None).unwrap(), unpacked);
    assert_eq!(fs::read(&file).unwrap(), b"1");
    assert_eq!(server.requests(), 2);

    fs::remove_file(unpacked.dir.join("default.nix")).unwrap();
    archives.nixpkgs(COMMIT, None).unwrap();
    assert!(unpacked.dir.join("default.nix").is_file());
    assert_eq!(server.requests(), 3);

    let entry = unpacked.dir.parent().unwrap();
    fs::remove_file(entry.join("complete.json")).unwrap();
    archives.nixpkgs(COMMIT, None).unwrap();
    assert!(entry.join("complete.json").is_file());
    assert_eq!(server.requests(), 4);
    assert_eq!(
        setup.cached(),
        (vec![unpacked.sha256], 1),
        "nothing left aside"
    );
}

#[test]
fn concurrent_fetches_share_one_copy() {
    let archive = nixpkgs_archive();
    let setup = Setup::new(&archive);
    let results: Vec<Unpacked> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| setup.archives().nixpkgs(COMMIT, None).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|r| *r == results[0]));
    assert_eq!(setup.cached(), (vec![hex(&archive)], 1));
    assert!(results[0].dir.join("default.nix").is_file());
}

#[test]
fn an_overlay_record_expires_but_a_commit_record_does_not() {
    let server = Server::ok(tar(&[Item::File(
        "overlay/default.nix",
        b"self: super: { }",
    )]));
    let setup = Setup::new(b"");
    let url = format!("{}/overlay.tar.gz", server.base);
    let archives = setup.archives();
    archives.overlay(&url, None).unwrap();
    archives.overlay(&url, None).unwrap();
    assert_eq!(server.requests(), 1);
    let record = setup
        .cache
        .path()
        .join("nixpkgs/urls")
        .join(format!("{}.json", hex(url.as_bytes())));
    let mut stored: UrlRecord = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    stored.fetched = 0;
    fs::write(&record, serde_json::to_vec(&stored).unwrap()).unwrap();
    archives.overlay(&url, None).unwrap();
    assert_eq!(server.requests(), 2, "an hour-old overlay is asked again");

    let commit = Server::ok(nixpkgs_archive());
    let archives = setup.archives_from(&commit.base);
    archives.nixpkgs(COMMIT, None).unwrap();
    let url = archives.nixpkgs_url(COMMIT).unwrap();
    let record = record.with_file_name(format!("{}.json", hex(url.as_bytes())));
    let mut stored: UrlRecord = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    stored.fetched = 0;
    fs::write(&record, serde_json::to_vec(&stored).unwrap()).unwrap();
    archives.nixpkgs(COMMIT, None).unwrap();
    assert_eq!(commit.requests(), 1);
}

#[test]
fn commits_that_cannot_be_part_of_a_url_are_refused() {
    let archives = Archives::open(Path::new("/nonexistent")).with_base("https://mirror/");
    assert_eq!(
        archives.nixpkgs_url("abc").unwrap(),
        "https://mirror/abc.tar.gz"
    );
    for bad in ["", "..", "a/b", "a?b", "x\"; y", "a b"] {
        let err = archives.nixpkgs_url(bad).unwrap_err().to_string();
        assert!(err.contains("nixpkgsArchive"), "{bad}: {err}");
    }
}

#[test]
fn overlay_urls_come_from_the_first_matching_mirror() {
    let mut archives = Archives::open(Path::new("/nonexistent"));
    archives.mirrors = vec![
        (
            "https://github.com/".into(),
            "http://127.0.0.1:1/gh/".into(),
        ),
        ("https://github.com/x/".into(), "http://unused/".into()),
    ];
    assert_eq!(
        archives.mirrored("https://github.com/x/o/archive/main.tar.gz"),
        "http://127.0.0.1:1/gh/x/o/archive/main.tar.gz"
    );
    assert_eq!(
        archives.mirrored("https://example.org/o.tar.gz"),
        "https://example.org/o.tar.gz"
    );
}
