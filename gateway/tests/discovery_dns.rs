//! DNS discovery against a DNS server run by the test on loopback.

#[path = "support/dns.rs"]
mod dns;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dns::{Records, counted_dns_server, dns_server};
use gateway::discovery::{DnsResolver, DnsTarget, RefreshBounds, watch_dns};
use gateway::endpoint::EndpointSet;
use tokio::sync::watch;

const NAME: &str = "sticky-svc.default.svc.cluster.local.";

fn ips(n: u8) -> Option<Vec<std::net::Ipv4Addr>> {
    Some(
        (1..=n)
            .map(|i| std::net::Ipv4Addr::new(10, 0, 0, i))
            .collect(),
    )
}

async fn wait_for(rx: &mut watch::Receiver<EndpointSet>, len: usize) -> EndpointSet {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if rx.borrow_and_update().len() == len {
                return rx.borrow().clone();
            }
            rx.changed().await.expect("watch ended");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("endpoint set never reached {len} (now {:?})", rx.borrow()))
}

fn start(server: SocketAddr) -> watch::Receiver<EndpointSet> {
    start_with(server, None)
}

fn start_with(server: SocketAddr, failure_grace: Option<Duration>) -> watch::Receiver<EndpointSet> {
    let resolver = DnsResolver::with_name_server(server);
    let (tx, rx) = watch::channel(EndpointSet::from(Vec::new()));
    let bounds = RefreshBounds {
        min: Duration::from_millis(50),
        max: Duration::from_millis(200),
        failure_grace,
    };
    let targets = vec![DnsTarget {
        host: NAME.to_owned(),
        port: 8080,
        weight: 1,
    }];
    tokio::spawn(watch_dns(resolver, targets, bounds, tx));
    rx
}

#[tokio::test]
async fn resolve_reports_every_record_and_ttl() {
    let records: Records = Arc::new(Mutex::new(ips(3)));
    let server = dns_server(NAME, records.clone()).await;
    let resolver = DnsResolver::with_name_server(server);
    let got = resolver.resolve(NAME).await.unwrap();
    assert_eq!(got.addrs.len(), 3);
    assert!(got.ttl <= Duration::from_secs(1));
    *records.lock().unwrap() = ips(0);
    let none = resolver.resolve(NAME).await.unwrap();
    assert!(
        none.addrs.is_empty(),
        "NXDOMAIN means no endpoints: {none:?}"
    );
}

#[tokio::test]
async fn follows_scale_from_zero_to_five_and_back() {
    let records: Records = Arc::new(Mutex::new(ips(0)));
    let server = dns_server(NAME, records.clone()).await;
    let mut rx = start(server);
    wait_for(&mut rx, 0).await;

    *records.lock().unwrap() = ips(5);
    let five = wait_for(&mut rx, 5).await;
    assert!(
        five.iter()
            .all(|e| e.addr.is_some_and(|a| a.port() == 8080) && e.weight == 1)
    );
    assert!(five.windows(2).all(|w| w[0] < w[1]), "sorted");

    *records.lock().unwrap() = ips(4);
    let four = wait_for(&mut rx, 4).await;
    assert_eq!(&four[..], &five[..4]);

    *records.lock().unwrap() = ips(0);
    wait_for(&mut rx, 0).await;
}

#[tokio::test]
async fn a_failing_server_keeps_the_last_good_set() {
    let records: Records = Arc::new(Mutex::new(ips(2)));
    let (server, queries) = counted_dns_server(NAME, records.clone()).await;
    let mut rx = start(server);
    wait_for(&mut rx, 2).await;
    *records.lock().unwrap() = None; // the server stops answering
    // One lookup asks at most four times (A and AAAA, two attempts each): a fifth query after
    // this point belongs to the next lookup, so the first has failed and been handled.
    let asked = queries.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(15), async {
        while queries.load(Ordering::SeqCst) < asked + 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the watch asked again after a failed lookup");
    assert_eq!(rx.borrow().len(), 2, "a timeout is not an empty answer");
    *records.lock().unwrap() = ips(3);
    wait_for(&mut rx, 3).await;
}

#[tokio::test]
async fn past_the_failure_grace_a_silent_server_means_no_endpoints() {
    let records: Records = Arc::new(Mutex::new(ips(3)));
    let server = dns_server(NAME, records.clone()).await;
    let mut rx = start_with(server, Some(Duration::from_millis(500)));
    wait_for(&mut rx, 3).await;
    *records.lock().unwrap() = None; // Docker's DNS with no upstream: no answer at all
    // A lookup times out after 2 × 1 s; the set empties at the first failure past the grace.
    wait_for(&mut rx, 0).await;
    *records.lock().unwrap() = ips(2);
    wait_for(&mut rx, 2).await;
}
