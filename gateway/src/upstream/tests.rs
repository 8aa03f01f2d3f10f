use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::http2::Slot;
use super::*;

/// A server that answers `answers` requests per connection, the last with
/// `connection: close` when `announce` (else it closes 100 ms later, unannounced), then
/// closes it. Returns its address and a count of accepts.
async fn server(answers: usize, announce: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                for n in 1..=answers {
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => seen.extend_from_slice(&buf[..read]),
                        }
                    }
                    let close = if n == answers && announce {
                        "connection: close\r\n"
                    } else {
                        ""
                    };
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{close}\r\nok");
                    stream.write_all(answer.as_bytes()).await.unwrap();
                }
                if !announce {
                    // Close a while after the answer, as an idle timeout would.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    (addr, accepted)
}

async fn get(pool: &Upstream, addr: SocketAddr) -> Result<Bytes, UpstreamError> {
    let authority = Authority::try_from(addr.to_string()).unwrap();
    let request = Request::get("http://example.invalid/x?y=1")
        .body(crate::body::full(Bytes::new()))
        .unwrap();
    let (head, body) = request.into_parts();
    let response = pool.send(addr, &authority, &head, body).await?;
    Ok(response.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn reuses_a_connection_until_the_peer_closes_it() {
    let (addr, accepted) = server(2, true).await;
    let pool = Upstream::new(&PoolSettings::default());
    for _ in 0..6 {
        assert_eq!(get(&pool, addr).await.unwrap(), "ok");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "two requests per connection"
    );
}

#[tokio::test]
async fn the_sweep_drops_connections_closed_by_the_peer_or_idle_too_long() {
    let (addr, _) = server(1, false).await;
    let pool = Upstream::new(&PoolSettings::default());
    assert_eq!(get(&pool, addr).await.unwrap(), "ok");
    let idle = |pool: &Upstream| pool.idle[0].lock().unwrap().by_endpoint.len();
    assert_eq!(idle(&pool), 1, "pooled: the close was not announced");
    // The server closes 100 ms after its answer; a sweep notices it once it has.
    let hour = Duration::from_secs(3600);
    let noticed = async {
        loop {
            pool.idle[0].lock().unwrap().sweep(Instant::now(), hour);
            if idle(&pool) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), noticed)
        .await
        .expect("the peer's close was noticed");

    let (addr, accepted) = server(5, false).await;
    assert_eq!(get(&pool, addr).await.unwrap(), "ok");
    pool.idle[0].lock().unwrap().sweep(Instant::now(), hour);
    assert_eq!(idle(&pool), 1, "an open, fresh connection stays");
    assert_eq!(get(&pool, addr).await.unwrap(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "and is used again");
    pool.idle[0]
        .lock()
        .unwrap()
        .sweep(Instant::now(), Duration::ZERO);
    assert_eq!(idle(&pool), 0, "past the idle timeout it goes");
}

#[tokio::test]
async fn nothing_listening_is_a_connect_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pool = Upstream::new(&PoolSettings::default());
    assert_eq!(get(&pool, addr).await, Err(UpstreamError::Connect));
}

#[tokio::test]
async fn a_connection_closed_before_the_answer_is_a_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
        }
    });
    let pool = Upstream::new(&PoolSettings::default());
    assert_eq!(get(&pool, addr).await, Err(UpstreamError::Reset));
}

/// An HTTP/2 server (on `h2`) that answers "ok" to `answers` streams per connection, then
/// closes it gracefully (`GOAWAY`, as a replica that drains). Returns its address, a count of
/// accepts and one of connections ended.
async fn h2_server(answers: usize) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, ended) = (Arc::<AtomicUsize>::default(), Arc::<AtomicUsize>::default());
    let (count, end) = (Arc::clone(&accepted), Arc::clone(&ended));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let end = end.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(stream).await.unwrap();
                let mut answered = 0;
                while let Some(Ok((_, mut respond))) = conn.accept().await {
                    let mut body = respond
                        .send_response(http::Response::new(()), false)
                        .unwrap();
                    body.send_data(Bytes::from_static(b"ok"), true).unwrap();
                    answered += 1;
                    if answered == answers {
                        conn.graceful_shutdown();
                    }
                }
                end.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, accepted, ended)
}

fn http2_pool() -> Upstream {
    Upstream::new(&PoolSettings {
        http2: true,
        ..PoolSettings::default()
    })
}

/// Waits up to 2 s for `count` to reach `n`.
async fn reaches(count: &AtomicUsize, n: usize) -> bool {
    for _ in 0..200 {
        if count.load(Ordering::SeqCst) == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn an_http2_connection_is_made_once_shared_and_closed_with_its_pool() {
    let (addr, accepted, ended) = h2_server(usize::MAX).await;
    let pool = http2_pool();
    // The first requests at once: they wait for the one connection being made.
    let (a, b, c) = tokio::join!(get(&pool, addr), get(&pool, addr), get(&pool, addr));
    assert_eq!(
        (a.unwrap(), b.unwrap(), c.unwrap()),
        ("ok".into(), "ok".into(), "ok".into())
    );
    assert_eq!(get(&pool, addr).await.unwrap(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for all");
    drop(pool); // a cluster gone with a reload
    assert!(
        reaches(&ended, 1).await,
        "the connection is closed, not left open"
    );
}

#[tokio::test]
async fn after_an_http2_goaway_requests_go_on_a_fresh_connection() {
    let (addr, accepted, _) = h2_server(1).await;
    let pool = http2_pool();
    for n in 1..=3 {
        assert_eq!(get(&pool, addr).await.unwrap(), "ok");
        assert!(reaches(&accepted, n).await);
        assert!(cached_closed(&pool, addr).await, "the GOAWAY has arrived");
    }
}

/// Waits up to 2 s until the pool's HTTP/2 connection to `addr`, if it holds one, has ended.
async fn cached_closed(pool: &Upstream, addr: SocketAddr) -> bool {
    for _ in 0..200 {
        let closed = {
            let streams = pool.streams.as_ref().unwrap()[0].lock().unwrap();
            match streams.by_endpoint.get(&addr) {
                Some(Slot::Ready(conn)) => conn.is_closed(),
                _ => true,
            }
        };
        if closed {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn requests_waiting_for_an_http2_connect_share_its_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pool = http2_pool();
    let (a, b) = tokio::join!(get(&pool, addr), get(&pool, addr));
    assert_eq!(
        (a, b),
        (Err(UpstreamError::Connect), Err(UpstreamError::Connect))
    );
    let streams = pool.streams.as_ref().unwrap();
    assert!(streams[0].lock().unwrap().by_endpoint.is_empty());
}

#[tokio::test]
async fn a_cancelled_http2_connect_is_taken_over_by_the_next_request() {
    let (addr, accepted, _) = h2_server(usize::MAX).await;
    let pool = http2_pool();
    let streams = pool.streams.as_ref().unwrap();
    // What a request cancelled while it made the connection leaves behind (per-try timeout,
    // client gone): waiting on it would never end.
    let (tell, made) = watch::channel(None);
    drop(tell);
    (streams[0].lock().unwrap().by_endpoint).insert(addr, Slot::Connecting(made));
    let answer = tokio::time::timeout(Duration::from_secs(2), get(&pool, addr)).await;
    assert_eq!(answer.expect("not stuck").unwrap(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn max_requests_per_connection_retires_connections_of_both_protocols() {
    let settings = |http2| PoolSettings {
        http2,
        max_requests_per_connection: Some(2),
        ..PoolSettings::default()
    };
    // HTTP/1.1: the server would keep each connection for 100 requests.
    let (addr, accepted) = server(100, true).await;
    let pool = Upstream::new(&settings(false));
    for _ in 0..5 {
        assert_eq!(get(&pool, addr).await.unwrap(), "ok");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "two requests per connection"
    );
    // HTTP/2: two streams per connection, and a retired one closes once its stream is done.
    let (addr, accepted, ended) = h2_server(usize::MAX).await;
    let pool = Upstream::new(&settings(true));
    for _ in 0..5 {
        assert_eq!(get(&pool, addr).await.unwrap(), "ok");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "two streams per connection"
    );
    assert!(reaches(&ended, 2).await, "the two retired ones are closed");
}

/// An HTTP/2 server that answers every stream with "a", then "b" `gap` later. Returns its
/// address and a count of connections ended.
async fn slow_h2_server(gap: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ended = Arc::<AtomicUsize>::default();
    let end = Arc::clone(&ended);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let end = end.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(stream).await.unwrap();
                while let Some(Ok((_, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let mut body = respond
                            .send_response(http::Response::new(()), false)
                            .unwrap();
                        body.send_data(Bytes::from_static(b"a"), false).unwrap();
                        tokio::time::sleep(gap).await;
                        body.send_data(Bytes::from_static(b"b"), true).unwrap();
                    });
                }
                end.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, ended)
}

fn http2_pool_idle(idle_timeout: Duration) -> Upstream {
    Upstream::new(&PoolSettings {
        http2: true,
        idle_timeout,
        ..PoolSettings::default()
    })
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let (addr, accepted, ended) = h2_server(usize::MAX).await;
    let pool = http2_pool_idle(Duration::from_millis(500));
    assert_eq!(get(&pool, addr).await.unwrap(), "ok");
    // Time passing is what is under test here: half the timeout, twice.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        get(&pool, addr).await.unwrap(),
        "ok",
        "reused within the timeout"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        ended.load(Ordering::SeqCst),
        0,
        "the timeout counts from the last stream, not the first"
    );
    assert!(reaches(&ended, 1).await, "closed once idle for 500 ms");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(
        get(&pool, addr).await.unwrap(),
        "ok",
        "a new one for the next request"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_open_http2_stream_keeps_its_connection_past_the_idle_timeout() {
    let (addr, ended) = slow_h2_server(Duration::from_millis(400)).await;
    let pool = http2_pool_idle(Duration::from_millis(100));
    assert_eq!(
        get(&pool, addr).await.unwrap(),
        "ab",
        "the whole body, 400 ms apart"
    );
    assert_eq!(ended.load(Ordering::SeqCst), 0);
    assert!(reaches(&ended, 1).await, "then closed once idle");
}

/// An HTTP/1.1 server that answers every request "ok" `delay` after reading it and keeps the
/// connection open. Returns its address, a count of accepts, and the most requests it was
/// answering at once (a request counts from its head read to its answer written, so two
/// requests sent one after the other's answer never overlap).
async fn counting_server(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (count, most) = (accepted.clone(), peak.clone());
    let busy = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (busy, most) = (busy.clone(), most.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => seen.extend_from_slice(&buf[..read]),
                        }
                    }
                    let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    busy.fetch_sub(1, Ordering::SeqCst);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted, peak)
}

fn capped(max_connections: Option<usize>) -> Upstream {
    Upstream::new(&PoolSettings {
        max_in_flight: Some(3),
        max_connections,
        ..PoolSettings::default()
    })
}

#[tokio::test]
async fn max_connections_caps_the_connections_to_the_cluster() {
    let (addr, _, peak) = counting_server(Duration::from_millis(50)).await;
    let pool = capped(Some(1));
    let (a, b, c) = tokio::join!(get(&pool, addr), get(&pool, addr), get(&pool, addr));
    assert_eq!(
        (a.unwrap(), b.unwrap(), c.unwrap()),
        ("ok".into(), "ok".into(), "ok".into())
    );
    assert_eq!(
        peak.load(Ordering::SeqCst),
        1,
        "one connection: one request at a time"
    );
    let idle: usize = pool.idle[0]
        .lock()
        .unwrap()
        .by_endpoint
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(idle, 1, "the last one is pooled once nobody waits");

    // The same load without the cap: three connections, three requests at once.
    let (addr, accepted, peak) = counting_server(Duration::from_millis(50)).await;
    let pool = capped(None);
    let (a, b, c) = tokio::join!(get(&pool, addr), get(&pool, addr), get(&pool, addr));
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn past_max_connections_an_idle_connection_to_another_endpoint_is_closed() {
    let (first, first_accepted, _) = counting_server(Duration::ZERO).await;
    let (second, _, _) = counting_server(Duration::ZERO).await;
    let pool = capped(Some(1));
    assert_eq!(get(&pool, first).await.unwrap(), "ok");
    let within = |f| tokio::time::timeout(Duration::from_secs(5), f);
    assert_eq!(
        within(get(&pool, second))
            .await
            .expect("not stuck")
            .unwrap(),
        "ok",
        "the idle connection to the first endpoint made room"
    );
    assert_eq!(
        within(get(&pool, first)).await.expect("not stuck").unwrap(),
        "ok"
    );
    assert_eq!(
        first_accepted.load(Ordering::SeqCst),
        2,
        "the first endpoint's connection had been closed"
    );
}
