//! A loopback HTTP server for kiln's downloads: the fixture nixpkgs as a
//! GitHub-style `.tar.gz` archive, plus any bytes a test registers at a
//! path (an overlay archive, a "hostile fetch target"). It can be switched
//! to misbehave (404, truncated bodies) and records every request it saw,
//! so a test can also prove nothing reached it.
//!
//! It is a small HTTP/1.1 server on a std `TcpListener`: one thread
//! accepts, one thread per connection answers one request and closes the
//! connection (`Connection: close`), so no client can hold it with a kept-
//! alive connection. Stopped on drop.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flate2::{Compression, GzBuilder};

use crate::loopback::Server;
use crate::registry::Request;

/// How the server answers every request, archive or registered path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// 200 with the whole body (404 for a path it does not serve).
    #[default]
    Serve,
    /// 404 for everything.
    NotFound,
    /// 200 with `Content-Length` of the whole body (at least 1), but only
    /// its first half sent before the connection closes.
    Truncated,
}

/// The running server; stops when dropped.
pub struct ArchiveServer {
    server: Server,
    shared: Arc<Shared>,
}

/// What the accept thread and the test share.
struct Shared {
    /// The folder served as `/<commit>.tar.gz`, if any.
    nixpkgs: Option<PathBuf>,
    mode: Mutex<Mode>,
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    requests: Mutex<Vec<Request>>,
}

impl ArchiveServer {
    /// Serves `GET /<commit>.tar.gz`, for any commit name, as
    /// [`archive`]`(nixpkgs, commit)`: the folder under a single top folder
    /// `nixpkgs-<commit>/`, like GitHub's archive URLs.
    pub fn serve_nixpkgs(nixpkgs: &Path) -> ArchiveServer {
        ArchiveServer::start(Some(nixpkgs.to_path_buf()))
    }

    /// Serves only what [`put`](Self::put) registers.
    pub fn plain() -> ArchiveServer {
        ArchiveServer::start(None)
    }

    fn start(nixpkgs: Option<PathBuf>) -> ArchiveServer {
        let shared = Arc::new(Shared {
            nixpkgs,
            mode: Mutex::new(Mode::Serve),
            files: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(Vec::new()),
        });
        let answering = shared.clone();
        // Each connection is one request, then close, or the read timeout.
        let server = Server::start("127.0.0.1", "archive-server", move |stream| {
            let _ = answer(stream, &answering);
        });
        ArchiveServer { server, shared }
    }

    /// `http://127.0.0.1:<port>`, the base URL (`KILN_NIXPKGS_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.address())
    }

    /// `<url>/<commit>.tar.gz`.
    pub fn archive_url(&self, commit: &str) -> String {
        format!("{}/{commit}.tar.gz", self.url())
    }

    /// Answers every later request as `mode` says.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Serves `body` at `path` (`/overlay.tar.gz`, no query string); takes
    /// precedence over the archive route.
    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        assert!(path.starts_with('/'), "paths start with '/': {path}");
        lock(&self.shared.files).insert(path.to_string(), body.into());
    }

    /// Serves an empty overlay where the Node provider's plans fetch
    /// theirs (the fixture nixpkgs has the packages it would add), built in
    /// `work`; returns the `KILN_OVERLAY_MIRRORS` value that sends kiln
    /// here for it.
    pub fn stand_in_for_node_overlay(&self, work: &Path) -> String {
        let overlay = work.join("npm-overlay");
        fs::create_dir_all(&overlay).expect("create the overlay folder");
        fs::write(overlay.join("default.nix"), "self: super: { }\n").expect("write the overlay");
        self.put(
            "/railwayapp/nix-npm-overlay/archive/main.tar.gz",
            archive(&overlay, "main"),
        );
        format!("https://github.com/={}/", self.url())
    }

    /// Every request so far (method, path as sent, status answered), in
    /// the order they were read.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }
}

/// The bytes served at `/<commit>.tar.gz`: a gzip'd tar of `folder` under
/// `nixpkgs-<commit>/`. Deterministic (entries sorted, uid/gid 0, mtime 1,
/// gzip mtime 0, fixed level), so a test can compute the sha256 kiln must
/// record.
pub fn archive(folder: &Path, commit: &str) -> Vec<u8> {
    let top = PathBuf::from(format!("nixpkgs-{commit}"));
    let gzip = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(6));
    let mut builder = tar::Builder::new(gzip);
    append_dir(&mut builder, &top, 0o755).expect("append the top folder");
    append_tree(&mut builder, folder, &top)
        .unwrap_or_else(|e| panic!("archive {}: {e}", folder.display()));
    builder
        .into_inner()
        .and_then(|gzip| gzip.finish())
        .expect("finish the archive")
}

fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    folder: &Path,
    name: &Path,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(folder)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    for entry in entries {
        let path = folder.join(&entry);
        let name = name.join(&entry);
        let meta = fs::symlink_metadata(&path)?;
        let mut header = header(meta.permissions().mode() & 0o755);
        if meta.is_dir() {
            append_dir(builder, &name, 0o755)?;
            append_tree(builder, &path, &name)?;
        } else if meta.file_type().is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut header, &name, fs::read_link(&path)?)?;
        } else if meta.is_file() {
            let data = fs::read(&path)?;
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, &name, &data[..])?;
        } else {
            return Err(io::Error::other(format!(
                "{} is neither a file, a folder nor a link",
                path.display()
            )));
        }
    }
    Ok(())
}

/// A folder entry named with a trailing `/`, as `git archive` (and so
/// GitHub) writes them; the tar crate's path setters drop that slash, so the
/// name goes into the header as bytes.
fn append_dir<W: Write>(builder: &mut tar::Builder<W>, name: &Path, mode: u32) -> io::Result<()> {
    let mut header = header(mode);
    header.set_entry_type(tar::EntryType::Directory);
    let name = format!("{}/", name.display());
    let field = &mut header.as_old_mut().name;
    if name.len() > field.len() {
        return Err(io::Error::other(format!("folder name too long: {name}")));
    }
    field[..name.len()].copy_from_slice(name.as_bytes());
    header.set_cksum();
    builder.append(&header, io::empty())
}

/// A header with the fixed owner and time of a deterministic archive.
fn header(mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1);
    header.set_size(0);
    header
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A connection thread that panicked leaves the data intact: each
    // holder only pushes or replaces whole values.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads one request, records it, answers it and closes the connection.
fn answer(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some((method, path)) = read_request(&mut reader)? else {
        return Ok(());
    };
    let mode = *lock(&shared.mode);
    let body = match mode {
        Mode::NotFound => None,
        Mode::Serve | Mode::Truncated => shared.body(&path),
    };
    let status = if body.is_some() { 200 } else { 404 };
    lock(&shared.requests).push(Request {
        method: method.clone(),
        path,
        status,
    });
    let mut stream = stream;
    match body {
        None => {
            let text = b"not found\n";
            write_head(&mut stream, "404 Not Found", text.len())?;
            if method != "HEAD" {
                stream.write_all(text)?;
            }
        }
        Some(body) if mode == Mode::Truncated => {
            write_head(&mut stream, "200 OK", body.len().max(1))?;
            if method != "HEAD" {
                stream.write_all(&body[..body.len() / 2])?;
            }
        }
        Some(body) => {
            write_head(&mut stream, "200 OK", body.len())?;
            if method != "HEAD" {
                stream.write_all(&body)?;
            }
        }
    }
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}

impl Shared {
    /// What `path` serves in [`Mode::Serve`], if anything; a query string
    /// is ignored, as static file servers do.
    fn body(&self, path: &str) -> Option<Vec<u8>> {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        if let Some(bytes) = lock(&self.files).get(path) {
            return Some(bytes.clone());
        }
        let nixpkgs = self.nixpkgs.as_ref()?;
        let commit = path.strip_prefix('/')?.strip_suffix(".tar.gz")?;
        let plain_name = !commit.is_empty()
            && commit
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !commit.starts_with('.');
        plain_name.then(|| archive(nixpkgs, commit))
    }
}

/// The method and path of the request line; the headers are read and
/// ignored (no body is expected). `None` when the client sent nothing.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<(String, String)>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        return Ok(None);
    };
    let request = (method.to_string(), path.to_string());
    // Headers end with an empty line; a cap keeps a broken client from
    // growing memory without end.
    let mut header = String::new();
    let mut limited = reader.take(64 * 1024);
    loop {
        header.clear();
        if limited.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            return Ok(Some(request));
        }
    }
}

fn write_head(stream: &mut TcpStream, status: &str, length: usize) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {length}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::process::run;
    use crate::require;

    /// A small nixpkgs-like folder: a file, an executable, a subfolder.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("default.nix"), "{ ... }: { }\n").unwrap();
        fs::create_dir(dir.path().join("lib")).unwrap();
        fs::write(dir.path().join("lib/run.sh"), "echo run\n").unwrap();
        fs::set_permissions(
            dir.path().join("lib/run.sh"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        dir
    }

    /// `curl` of `url` into a file: its exit code and the HTTP status.
    fn curl(url: &str, out: &Path) -> (i32, String) {
        let output = Command::new("curl")
            .args([
                "--silent",
                "--max-time",
                "10",
                "--write-out",
                "%{http_code}",
            ])
            .arg("--output")
            .arg(out)
            .arg(url)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    #[test]
    fn archive_is_deterministic_and_names_the_commit() {
        let dir = tree();
        let first = archive(dir.path(), "abc123");
        assert_eq!(first, archive(dir.path(), "abc123"));
        assert_ne!(first, archive(dir.path(), "def456"));
    }

    #[test]
    fn serves_a_tar_gz_under_one_top_folder_and_logs_the_request() {
        if !require(&["curl", "tar"]) {
            return;
        }
        let dir = tree();
        let server = ArchiveServer::serve_nixpkgs(dir.path());
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("a.tar.gz");
        let (code, status) = curl(&server.archive_url("0123abcd"), &file);
        assert_eq!((code, status.as_str()), (0, "200"));
        assert_eq!(fs::read(&file).unwrap(), archive(dir.path(), "0123abcd"));

        let listing = run(Command::new("tar").arg("-tvzf").arg(&file));
        let names: Vec<&str> = listing
            .lines()
            .map(|l| l.split_whitespace().last().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "nixpkgs-0123abcd/",
                "nixpkgs-0123abcd/default.nix",
                "nixpkgs-0123abcd/lib/",
                "nixpkgs-0123abcd/lib/run.sh",
            ]
        );
        assert!(listing.contains("-rwxr-xr-x 0/0"), "{listing}");
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&file)
            .arg("-C")
            .arg(work.path()));
        assert_eq!(
            fs::read_to_string(work.path().join("nixpkgs-0123abcd/lib/run.sh")).unwrap(),
            "echo run\n"
        );
        assert_eq!(
            server.requests(),
            [Request {
                method: "GET".into(),
                path: "/0123abcd.tar.gz".into(),
                status: 200,
            }]
        );
    }

    #[test]
    fn answers_404_for_unknown_paths_and_in_not_found_mode() {
        if !require(&["curl"]) {
            return;
        }
        let dir = tree();
        let server = ArchiveServer::serve_nixpkgs(dir.path());
        let out = tempfile::NamedTempFile::new().unwrap();
        let (_, status) = curl(&format!("{}/other/file", server.url()), out.path());
        assert_eq!(status, "404");
        server.set_mode(Mode::NotFound);
        let (_, status) = curl(&server.archive_url("abc"), out.path());
        assert_eq!(status, "404");
        let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [404, 404]);
    }

    #[test]
    fn truncated_mode_sends_less_than_it_announces() {
        if !require(&["curl"]) {
            return;
        }
        let dir = tree();
        let server = ArchiveServer::serve_nixpkgs(dir.path());
        server.set_mode(Mode::Truncated);
        let out = tempfile::NamedTempFile::new().unwrap();
        let (code, status) = curl(&server.archive_url("abc"), out.path());
        // curl: 18, "partial file: transfer closed with bytes remaining".
        assert_eq!((code, status.as_str()), (18, "200"));
        let whole = archive(dir.path(), "abc");
        assert_eq!(fs::read(out.path()).unwrap(), whole[..whole.len() / 2]);
    }

    #[test]
    fn plain_server_serves_registered_bytes_and_sees_no_request_unless_asked() {
        let server = ArchiveServer::plain();
        server.put("/secret-sink", b"sink\n".to_vec());
        assert!(server.requests().is_empty());

        let response = raw_get(&server, "/secret-sink?leak=1");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("Content-Length: 5\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nsink\n"), "{response}");
        // A plain server has no archive route.
        let response = raw_get(&server, "/abc.tar.gz");
        assert!(response.starts_with("HTTP/1.1 404 "), "{response}");

        let seen: Vec<(String, String, u16)> = server
            .requests()
            .into_iter()
            .map(|r| (r.method, r.path, r.status))
            .collect();
        assert_eq!(
            seen,
            [
                ("GET".into(), "/secret-sink?leak=1".into(), 200),
                ("GET".into(), "/abc.tar.gz".into(), 404),
            ]
        );
    }

    /// The whole response to a raw `GET path`, as a minimal client sends it.
    fn raw_get(server: &ArchiveServer, path: &str) -> String {
        let mut stream = TcpStream::connect(server.url().trim_start_matches("http://")).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: kiln\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}
