//! A forward proxy on loopback that tunnels `CONNECT host:port` requests,
//! as a company proxy named in `HTTPS_PROXY` does, and counts them, so a
//! test can prove a build's downloads went through it. Stopped on drop.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The running proxy.
pub struct ConnectProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    tunnels: AtomicUsize,
    stop: AtomicBool,
}

impl ConnectProxy {
    /// Listens on a free port of `127.0.0.1`.
    pub fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let address = listener.local_addr().expect("the listener's address");
        let shared = Arc::new(Shared {
            tunnels: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        let accept = std::thread::Builder::new()
            .name("connect-proxy".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accepting.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = accepting.clone();
                    let _ = std::thread::Builder::new()
                        .name("connect-tunnel".into())
                        .spawn(move || {
                            let _ = tunnel(stream, &shared);
                        });
                }
            })
            .expect("start the proxy thread");
        ConnectProxy {
            address,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port>`, an `HTTPS_PROXY` value.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// How many tunnels it opened so far.
    pub fn tunnels(&self) -> usize {
        self.shared.tunnels.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Answers one `CONNECT`, then copies bytes both ways until either side
/// closes. Anything else gets a 405.
fn tunnel(client: TcpStream, shared: &Shared) -> io::Result<()> {
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
    shared.tunnels.fetch_add(1, Ordering::SeqCst);
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
