//! A fault-injecting HTTP/1.1 proxy on loopback, put between kiln and a
//! real server (docker-registry, the nginx binary cache). Each request is
//! passed on unchanged unless a rule the test injected matches it; then the
//! proxy answers or breaks the exchange the way a bad network or an
//! overloaded server would: 429 with `Retry-After`, 5xx, a connection
//! reset mid-body, a body cut short, a stalled response, a wrong
//! `Content-Length`, a redirect to another host.
//!
//! One request per client connection: the proxy asks both sides to close
//! (`Connection: close`), so a fault never leaks into the next exchange.
//! Stopped on drop.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::loopback::Server;

/// What the proxy does to a matching exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answers `code` itself, with `Retry-After: <seconds>` when given.
    Status {
        /// The status code, e.g. 429 or 503.
        code: u16,
        /// The `Retry-After` header's value in seconds.
        retry_after: Option<u32>,
    },
    /// Sends the server's head and half its body, then resets the
    /// connection (TCP RST).
    ResetMidBody,
    /// Sends the server's head and half its body, then closes cleanly:
    /// the body is shorter than its `Content-Length`.
    CutShort,
    /// Sends the server's head and half its body, then nothing for this
    /// long, then closes.
    Stall(Duration),
    /// Passes the body on whole under a `Content-Length` this many bytes
    /// off (negative: shorter than the body), then closes.
    WrongLength(i64),
    /// Answers `307` to the same path and query on `base`
    /// (`http://host:port`), never forwarding the request.
    Redirect(String),
    /// Reads half of the request's body, then resets the connection
    /// without an answer (an upload that breaks midway).
    ResetMidRequest,
}

/// A request the proxy saw, and what it did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path and query as sent.
    pub path: String,
    /// Whether the request carried an `Authorization` header.
    pub authorization: bool,
    /// The fault applied, `None` when passed on unchanged.
    pub fault: Option<Fault>,
}

/// An injected rule: the next `times` requests whose method is `method`
/// (any when `None`) and whose path contains `path` get `fault`.
struct Rule {
    method: Option<String>,
    path: String,
    fault: Fault,
    times: usize,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    server: Server,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
}

impl FaultProxy {
    /// Proxies to `upstream` (`host:port`, plain HTTP), listening on a free
    /// port of `127.0.0.1`.
    pub fn start(upstream: &str) -> FaultProxy {
        FaultProxy::start_on("127.0.0.1", upstream)
    }

    /// As [`start`](Self::start), listening on `ip` (another loopback
    /// address such as `127.0.0.2` is "another host" to a client).
    pub fn start_on(ip: &str, upstream: &str) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let serving = shared.clone();
        let server = Server::start(ip, "fault-proxy", move |stream| {
            let _ = exchange(stream, &serving);
        });
        FaultProxy { server, shared }
    }

    /// `host:port` of the proxy, what a registry reference names.
    pub fn host(&self) -> String {
        self.server.address().to_string()
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.address())
    }

    /// Applies `fault` to the next `times` requests with this method (any
    /// when `None`) whose path contains `path`. Rules are tried in the
    /// order injected.
    pub fn inject(&self, method: Option<&str>, path: &str, fault: Fault, times: usize) {
        lock(&self.shared.rules).push(Rule {
            method: method.map(str::to_string),
            path: path.to_string(),
            fault,
            times,
        });
    }

    /// Drops every rule not yet used up: later requests pass unchanged.
    pub fn heal(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request so far, in the order read.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// The requests so far that got a fault.
    pub fn faulted(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|seen| seen.fault.is_some())
            .collect()
    }
}

impl Shared {
    /// The fault for this request, using up one of its rule's times.
    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let index = rules.iter().position(|rule| {
            rule.times > 0
                && rule.method.as_deref().is_none_or(|m| m == method)
                && path.contains(&rule.path)
        })?;
        rules[index].times -= 1;
        let fault = rules[index].fault.clone();
        if rules[index].times == 0 {
            rules.remove(index);
        }
        Some(fault)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Holders only push, remove or replace whole values.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A message head: the first line and the headers, as read.
struct Head {
    line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    /// Reads a head up to its empty line; `None` at a clean end of stream.
    fn read(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if headers.len() > 200 {
                return Err(io::Error::other("too many headers"));
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        Ok(Some(Head {
            line: line.trim_end().to_string(),
            headers,
        }))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: String) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value));
    }

    fn content_length(&self) -> Option<u64> {
        self.get("content-length")?.parse().ok()
    }

    fn is_chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut text = format!("{}\r\n", self.line);
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        out.write_all(text.as_bytes())
    }
}

/// One request from `client`: passed on to the upstream, or faulted.
fn exchange(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(mut request) = Head::read(&mut reader)? else {
        return Ok(());
    };
    let mut words = request.line.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or_default().to_string();
    let fault = shared.take_fault(&method, &path);
    lock(&shared.seen).push(Seen {
        method: method.clone(),
        path: path.clone(),
        authorization: request.get("authorization").is_some(),
        fault: fault.clone(),
    });
    let mut client = client;
    let body = read_body(&mut reader, &request, fault == Some(Fault::ResetMidRequest))?;
    match &fault {
        Some(Fault::ResetMidRequest) => return reset(&client),
        Some(Fault::Status { code, retry_after }) => {
            let mut text =
                format!("HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n");
            if let Some(seconds) = retry_after {
                text.push_str(&format!("Retry-After: {seconds}\r\n"));
            }
            text.push_str("\r\n");
            client.write_all(text.as_bytes())?;
            return client.shutdown(Shutdown::Both);
        }
        Some(Fault::Redirect(base)) => {
            let text = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{path}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            client.write_all(text.as_bytes())?;
            return client.shutdown(Shutdown::Both);
        }
        _ => {}
    }
    let mut upstream = TcpStream::connect(&shared.upstream)?;
    upstream.set_read_timeout(Some(Duration::from_secs(60)))?;
    // The Host header stays the proxy's: the registry builds its upload
    // `Location`s from it, and those must come back through the proxy.
    request.set("Connection", "close".into());
    if request.is_chunked() {
        // The body was read whole; it goes on with a plain length.
        request
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("transfer-encoding"));
        request.set("Content-Length", body.len().to_string());
    }
    request.write(&mut upstream)?;
    upstream.write_all(&body)?;
    upstream.flush()?;
    let mut answer = BufReader::new(upstream);
    let Some(mut response) = Head::read(&mut answer)? else {
        return reset(&client);
    };
    response.set("Connection", "close".into());
    let length = response.content_length();
    let half = length.map_or(1, |n| n / 2);
    let has_body = method != "HEAD";
    match fault {
        Some(Fault::ResetMidBody) if has_body => {
            response.write(&mut client)?;
            copy_at_most(&mut answer, &mut client, half)?;
            reset(&client)
        }
        Some(Fault::CutShort) if has_body => {
            response.write(&mut client)?;
            copy_at_most(&mut answer, &mut client, half)?;
            client.shutdown(Shutdown::Both)
        }
        Some(Fault::Stall(pause)) if has_body => {
            response.write(&mut client)?;
            copy_at_most(&mut answer, &mut client, half)?;
            client.flush()?;
            std::thread::sleep(pause);
            client.shutdown(Shutdown::Both)
        }
        Some(Fault::WrongLength(delta)) => {
            if let Some(length) = length {
                let wrong = (length as i64 + delta).max(0);
                response.set("Content-Length", wrong.to_string());
            }
            response.write(&mut client)?;
            if has_body {
                io::copy(&mut answer, &mut client)?;
            }
            client.shutdown(Shutdown::Both)
        }
        _ => {
            response.write(&mut client)?;
            if has_body {
                io::copy(&mut answer, &mut client)?;
            }
            client.shutdown(Shutdown::Both)
        }
    }
}

/// The request's body: by `Content-Length`, or de-chunked; only its first
/// half when `half` (the rest is never read).
fn read_body(reader: &mut impl BufRead, head: &Head, half: bool) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.is_chunked() {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = size.trim().split(';').next().unwrap_or_default();
            let size = u64::from_str_radix(size, 16).map_err(io::Error::other)?;
            if size == 0 {
                // Trailers end with an empty line.
                let mut line = String::new();
                while reader.read_line(&mut line)? > 2 {
                    line.clear();
                }
                return Ok(body);
            }
            reader.by_ref().take(size).read_to_end(&mut body)?;
            let mut end = String::new();
            reader.read_line(&mut end)?;
            if half {
                return Ok(body);
            }
        }
    }
    let length = head.content_length().unwrap_or(0);
    let wanted = if half { length / 2 } else { length };
    reader.by_ref().take(wanted).read_to_end(&mut body)?;
    Ok(body)
}

fn copy_at_most(from: &mut impl Read, to: &mut impl Write, limit: u64) -> io::Result<u64> {
    io::copy(&mut from.by_ref().take(limit), to)
}

/// Closes with a TCP RST rather than a FIN: linger on, timeout zero.
fn reset(stream: &TcpStream) -> io::Result<()> {
    let linger = nix::sys::socket::sockopt::Linger;
    let value = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(stream, linger, &value).map_err(io::Error::from)?;
    Ok(())
}
