//! A minimal authoritative DNS server on loopback for one name: A records from a shared list,
//! NXDOMAIN when the list is empty, nothing at all when it is `None` (a failing server).

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
use tokio::net::UdpSocket;

/// What the server answers for its name.
pub type Records = Arc<Mutex<Option<Vec<Ipv4Addr>>>>;

/// Serves `name` (fully qualified, with the trailing dot) from `records`.
pub async fn dns_server(name: &'static str, records: Records) -> SocketAddr {
    counted_dns_server(name, records).await.0
}

/// [`dns_server`], with a count of the queries it has received (answered or not).
pub async fn counted_dns_server(
    name: &'static str,
    records: Records,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = queries.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let current = records.lock().unwrap().clone();
            let Some(ips) = current else { continue };
            let Some(bytes) = answer(name, &ips, &buf[..n]) else {
                continue;
            };
            let _ = socket.send_to(&bytes, peer).await;
        }
    });
    (addr, queries)
}

/// The reply to `query`: the A records `ips` of `name` for an A query of it (NXDOMAIN when
/// there are none), an empty answer for its other types, NXDOMAIN for other names; `None` for
/// bytes that are not a query.
pub fn answer(name: &str, ips: &[Ipv4Addr], query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let q = query.queries.first()?.clone();
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.add_query(q.clone());
    if q.name().to_ascii() != name {
        reply.metadata.response_code = ResponseCode::NXDomain;
    } else if q.query_type() == RecordType::A {
        if ips.is_empty() {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        for ip in ips {
            reply.add_answer(Record::from_rdata(q.name().clone(), 1, RData::A(A(*ip))));
        }
    }
    reply.to_vec().ok()
}

/// 127.0.0.1 … 127.0.0.n.
pub fn loopback(n: u8) -> Option<Vec<Ipv4Addr>> {
    Some((1..=n).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect())
}
