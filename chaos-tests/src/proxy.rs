//! A fault-injecting TCP proxy on 127.0.0.1, for runs without network namespaces: each agent
//! dials the nodes through proxies of its own, so it can be cut off from every node and healed.
//! While cut, a proxy closes every connection it carries and refuses new ones. (Node-to-node
//! links cannot be proxied: Raft members dial the addresses replicated in the membership.)

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Connections a proxy carries at once at most; more are refused.
pub const CONNECTIONS_MAX: usize = 256;

/// One proxy in front of one upstream address; stops accepting when dropped.
pub struct Proxy {
    pub addr: String,
    cut: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub fn start(upstream: String) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let proxy = Proxy {
            addr,
            cut: Arc::new(AtomicBool::new(false)),
            closed: Arc::new(AtomicBool::new(false)),
            connections: Arc::new(Mutex::new(Vec::new())),
        };
        let (cut, closed, connections) = (
            proxy.cut.clone(),
            proxy.closed.clone(),
            proxy.connections.clone(),
        );
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                if closed.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(inbound) = inbound else { continue };
                let mut open = connections.lock().unwrap_or_else(|e| e.into_inner());
                open.retain(|s| s.peer_addr().is_ok());
                if cut.load(Ordering::SeqCst) || open.len() >= CONNECTIONS_MAX {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(&upstream) else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                let clones = (inbound.try_clone(), outbound.try_clone());
                let (Ok(inbound2), Ok(outbound2)) = clones else {
                    continue;
                };
                if let (Ok(a), Ok(b)) = (inbound.try_clone(), outbound.try_clone()) {
                    open.push(a);
                    open.push(b);
                }
                drop(open);
                std::thread::spawn(move || pump(inbound, outbound2));
                std::thread::spawn(move || pump(outbound, inbound2));
            }
        });
        Ok(proxy)
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        for stream in open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.closed.store(true, Ordering::SeqCst);
        // Wake the accepting thread so that it sees `closed` and ends.
        let _ = TcpStream::connect(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_proxy_closes_connections_and_a_healed_one_forwards_again() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream_addr = upstream.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in upstream.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buffer = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buffer) {
                        if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(upstream_addr).unwrap();
        let echo = |stream: &mut TcpStream| -> bool {
            let mut buffer = [0u8; 4];
            stream.write_all(b"ping").is_ok()
                && stream.read_exact(&mut buffer).is_ok()
                && &buffer == b"ping"
        };
        let mut client = TcpStream::connect(&proxy.addr).unwrap();
        assert!(echo(&mut client));
        proxy.cut();
        assert!(!echo(&mut client), "the carried connection is closed");
        let mut refused = TcpStream::connect(&proxy.addr).unwrap();
        assert!(!echo(&mut refused), "new connections are closed at once");
        proxy.heal();
        let mut again = TcpStream::connect(&proxy.addr).unwrap();
        assert!(echo(&mut again));
    }
}
