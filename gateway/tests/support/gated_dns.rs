//! A DNS server on loopback for one name whose answers wait behind a gate: a query that comes
//! while the gate is shut is answered when the test opens it. It counts the queries it gets,
//! so a test can wait for "the gateway has asked" instead of sleeping. Its answers are
//! `support/dns.rs`'s, which a test using this one declares as `mod dns`.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::watch;

// The including test declares `support/dns.rs` as `mod dns` beside this one.
use super::dns::answer;

/// The server; dropping it stops it.
pub struct GatedDns {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    open: watch::Sender<bool>,
}

impl GatedDns {
    /// Serves `name` (fully qualified, with the trailing dot) as `ips`, with the gate shut.
    pub async fn start(name: &'static str, ips: Vec<Ipv4Addr>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let (open, mut gate) = watch::channel(false);
        let counted = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut pending: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
            loop {
                tokio::select! {
                    received = socket.recv_from(&mut buf) => {
                        let Ok((n, peer)) = received else { return };
                        counted.fetch_add(1, Ordering::SeqCst);
                        pending.push((buf[..n].to_vec(), peer));
                    }
                    changed = gate.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
                if *gate.borrow() {
                    for (query, peer) in pending.drain(..) {
                        if let Some(reply) = answer(name, &ips, &query) {
                            let _ = socket.send_to(&reply, peer).await;
                        }
                    }
                }
            }
        });
        Self {
            addr,
            queries,
            open,
        }
    }

    /// Queries received so far (answered or waiting).
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Opens the gate: waiting queries are answered, later ones at once.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}
