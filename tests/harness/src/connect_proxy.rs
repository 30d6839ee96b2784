//! A forward proxy on loopback that tunnels `CONNECT host:port` requests,
//! as a company proxy named in `HTTPS_PROXY` does, and counts them, so a
//! test can prove a build's downloads went through it. Stopped on drop.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::loopback::Server;

/// The running proxy.
pub struct ConnectProxy {
    server: Server,
    tunnels: Arc<AtomicUsize>,
}

impl ConnectProxy {
    /// Listens on a free port of `127.0.0.1`.
    pub fn start() -> ConnectProxy {
        let tunnels = Arc::new(AtomicUsize::new(0));
        let counting = tunnels.clone();
        let server = Server::start("127.0.0.1", "connect-proxy", move |stream| {
            let _ = tunnel(stream, &counting);
        });
        ConnectProxy { server, tunnels }
    }

    /// `http://127.0.0.1:<port>`, an `HTTPS_PROXY` value.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.address())
    }

    /// How many tunnels it opened so far.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

/// Answers one `CONNECT`, then copies bytes both ways until either side
/// closes. Anything else gets a 405.
fn tunnel(client: TcpStream, tunnels: &AtomicUsize) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut client = client;
    let mut words = line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        return client.shutdown(Shutdown::Both);
    };
    let upstream = match TcpStream::connect(target) {
        Ok(upstream) => upstream,
        Err(_) => {
            client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")?;
            return client.shutdown(Shutdown::Both);
        }
    };
    tunnels.fetch_add(1, Ordering::SeqCst);
    client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    client.set_read_timeout(None)?;
    let mut to_upstream = upstream.try_clone()?;
    let mut from_upstream = upstream;
    let mut to_client = client.try_clone()?;
    // Bytes the client sent after the request head are in the reader.
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut reader, &mut to_upstream);
        let _ = to_upstream.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut from_upstream, &mut to_client);
    let _ = to_client.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}
