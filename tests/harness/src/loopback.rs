//! The accept loop the harness's own loopback servers share (the archive
//! server, the fault proxy, the CONNECT proxy): a listener on a free port,
//! one detached thread per connection, stopped on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A listening server; stops accepting when dropped. Connections already
/// taken end on their own (their handler returns or times out).
pub struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on a free port of `ip` and runs `handle` on its own thread,
    /// named `name`, for every connection.
    pub fn start(
        ip: &str,
        name: &str,
        handle: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind((ip, 0)).expect("bind a loopback port");
        let address = listener.local_addr().expect("the listener's address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = Arc::new(handle);
        let connection_name = format!("{name}-conn");
        let accept = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let handle = handle.clone();
                    let _ = std::thread::Builder::new()
                        .name(connection_name.clone())
                        .spawn(move || handle(stream));
                }
            })
            .expect("start the accept thread");
        Server {
            address,
            stop,
            accept: Some(accept),
        }
    }

    /// `ip:port` it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The accept thread blocks in accept(); a connection wakes it to
        // see the stop flag.
        let _ = TcpStream::connect(self.address);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}
