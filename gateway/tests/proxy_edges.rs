//! The gateway's own answers and the protocol edges: 404 without a route, 413, h2c clients,
//! cookie affinity with a generated cookie, a missing hash key, HTTP/2 to the endpoints (versions,
//! trailers, circuit breakers, refused streams, flow control).

#[path = "support/stack.rs"]
mod stack;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stack::{BY_USER, Http, RunningGateway, backends, static_config};

#[tokio::test]
async fn no_route_is_a_clear_404() {
    let backends = backends(1, Duration::ZERO).await;
    let yaml = static_config(&[backends[0].addr], BY_USER)
        .replace("hosts: ['*']", "hosts: [api.example.com]");
    let gw = RunningGateway::start(&yaml, None).await;
    let answer = Http::new().ping(gw.addr, "ricky").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body, "no route matches this request\n");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let backends = backends(1, Duration::ZERO).await;
    let gw = RunningGateway::start_with(&static_config(&[backends[0].addr], BY_USER), None, |o| {
        o.proxy.max_body_bytes = 1024;
    })
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{}/ping", gw.addr))
        .header("x-user", "ricky")
        .body(Full::new(Bytes::from(vec![b'x'; 4096])))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 413);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "request body too large\n");
}

#[tokio::test]
async fn h2c_clients_are_proxied_to_http1_backends() {
    let backends = backends(1, Duration::ZERO).await;
    let gw = RunningGateway::start(&static_config(&[backends[0].addr], BY_USER), None).await;
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/ping", gw.addr))
        .header("x-user", "ricky")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-served-by"], "svc-0");
    assert!(res.headers().contains_key("x-request-id"));
}

const BY_COOKIE: &str =
    "      consistentHash:\n        httpCookie: {name: sticky, path: /, ttl: 60s}";

#[tokio::test]
async fn a_generated_cookie_keeps_a_client_on_one_backend() {
    let backends = backends(5, Duration::ZERO).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let gw = RunningGateway::start(&static_config(&addrs, BY_COOKIE), None).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = |cookie: Option<String>| {
        let mut req =
            http::Request::get(format!("http://{}/ping", gw.addr)).header("x-user", "ricky");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        client.request(req.body(Empty::new()).unwrap())
    };
    let first = get(None).await.unwrap();
    let set_cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("; Max-Age=60; Path=/; HttpOnly"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let home = first.headers()["x-served-by"].clone();
    for _ in 0..20 {
        let res = get(Some(cookie.clone())).await.unwrap();
        assert_eq!(res.headers()["x-served-by"], home, "the cookie sticks");
        assert!(
            !res.headers().contains_key("set-cookie"),
            "no new cookie once sent"
        );
    }
    // Without the cookie, clients land anywhere (each gets a fresh cookie).
    let mut hosts = HashSet::new();
    for _ in 0..40 {
        hosts.insert(get(None).await.unwrap().headers()["x-served-by"].clone());
    }
    assert!(hosts.len() > 1, "fresh cookies spread clients: {hosts:?}");
}

#[tokio::test]
async fn a_missing_hash_key_is_served_at_random_and_counted() {
    let backends = backends(5, Duration::ZERO).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let yaml = static_config(&addrs, BY_USER);
    let gw = RunningGateway::start(&yaml, None).await;
    let http = Http::new();
    let mut hosts = HashSet::new();
    for _ in 0..40 {
        // sticky-svc answers 400 without x-user, but it answers: the host is in the header.
        let a = http.get(gw.addr, "/ping", None).await;
        assert_eq!(a.status, 400);
        hosts.insert(a.host.unwrap());
    }
    assert!(hosts.len() > 1, "random, not one fixed endpoint: {hosts:?}");
    let metrics = http.get(gw.admin, "/metrics", None).await.body;
    assert!(
        metrics.contains("gateway_hash_key_missing_total{cluster=\"outbound|8080||sticky-svc.default.svc.cluster.local\"} 40"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_a_dead_endpoint_out_and_bring_it_back() {
    let mut backends = backends(3, Duration::ZERO).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let gw = RunningGateway::start_with(&static_config(&addrs, BY_USER), None, |o| {
        o.active = Some(gateway::health::active::ActiveCheck {
            path: "/healthz".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        });
    })
    .await;
    let http = Http::new();
    let routable = |body: &str| body.matches("\"healthy\": true").count();
    let wait = |want: usize| {
        let http = http.clone();
        let admin = gw.admin;
        async move {
            for _ in 0..50 {
                if routable(&http.get(admin, "/clusters", None).await.body) == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("never {want} healthy endpoints");
        }
    };
    wait(3).await;
    let victim = backends[1].addr;
    backends[1].stop().await;
    wait(2).await;
    let clusters = http.get(gw.admin, "/clusters", None).await.body;
    assert!(
        clusters.contains(&format!(
            "\"address\": \"{victim}\",\n          \"healthy\": false"
        )),
        "{clusters}"
    );
    // Back on the same address: healthy again after one passed check.
    let _again = stack::Backend::start("svc-1", victim, Duration::ZERO).await;
    wait(3).await;
}

/// One raw HTTP/1.1 request on `stream` (kept open); returns the status code.
async fn raw_status(stream: &mut tokio::net::TcpStream) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_connection_limit_is_the_ports_whatever_the_workers() {
    use tokio::io::AsyncWriteExt;
    // Cold calls of 2 s keep the three connections busy (an idle one would make room).
    let backends = backends(1, Duration::from_secs(2)).await;
    let gw = RunningGateway::start_with(&static_config(&[backends[0].addr], BY_USER), None, |o| {
        o.workers = 4;
        o.limits.max_connections = 3;
    })
    .await;
    let mut open = Vec::new();
    for user in ["a", "b", "c"] {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let request = format!("GET /ping HTTP/1.1\r\nhost: x\r\nx-user: {user}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        open.push(stream);
    }
    stack::wait_in_flight(gw.admin, 3).await;
    // Four workers with three connections each would take this one; the limit is shared.
    let mut fourth = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    assert_eq!(raw_status(&mut fourth).await, 429);
    drop(open);
}

/// A backend on `listener::serve` that answers with the HTTP version it was spoken to in and
/// the `:authority`/`Host` it saw, with a trailer (as gRPC sends its status).
async fn version_backend() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    use gateway::proxy::listener::{Limits, serve};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        Limits::default(),
        |req: http::Request<hyper::body::Incoming>, _peer| async move {
            let host = req
                .uri()
                .authority()
                .map(ToString::to_string)
                .or_else(|| {
                    req.headers()
                        .get("host")
                        .map(|h| h.to_str().unwrap().to_owned())
                })
                .unwrap_or_default();
            let text = format!("{:?} {host}", req.version());
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let body = Frames(
                [
                    hyper::body::Frame::data(Bytes::from(text)),
                    hyper::body::Frame::trailers(trailers),
                ]
                .into(),
            );
            http::Response::new(gateway::body::boxed(body))
        },
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

/// A body of ready frames (data, then trailers).
struct Frames(std::collections::VecDeque<hyper::body::Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// The body and trailers the gateway answers to an h2c client for `/x` with `Host: api.test`.
async fn via_h2c(gw: std::net::SocketAddr) -> (String, Option<http::HeaderMap>) {
    let stream = tokio::net::TcpStream::connect(gw).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://api.test/x")
        .header("x-user", "ricky")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (
        String::from_utf8(collected.to_bytes().to_vec()).unwrap(),
        trailers,
    )
}

#[tokio::test]
async fn grpc_and_http2_ports_and_h2_upgrade_speak_http2_to_the_endpoints() {
    let (backend, _stop) = version_backend().await;
    let yaml = static_config(&[backend], BY_USER);
    // A plain HTTP port: HTTP/1.1 upstream, whatever the client spoke.
    let gw = RunningGateway::start(&yaml, None).await;
    let (body, _) = via_h2c(gw.addr).await;
    assert_eq!(body, "HTTP/1.1 api.test");
    // A GRPC port: HTTP/2 upstream, the client's authority kept, trailers passed back.
    let gw = RunningGateway::start(&yaml.replace("protocol: HTTP}", "protocol: GRPC}"), None).await;
    let (body, trailers) = via_h2c(gw.addr).await;
    assert_eq!(body, "HTTP/2.0 api.test");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    // An HTTP/1.1 client to an HTTP2 port: still HTTP/2 upstream.
    let gw =
        RunningGateway::start(&yaml.replace("protocol: HTTP}", "protocol: HTTP2}"), None).await;
    let answer = Http::new().get(gw.addr, "/x", Some("ricky")).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.starts_with("HTTP/2.0 "), "{}", answer.body);
    // An HTTP port with `h2UpgradePolicy: UPGRADE`: HTTP/2; several requests share it.
    let upgrade =
        format!("{BY_USER}\n    connectionPool:\n      http:\n        h2UpgradePolicy: UPGRADE");
    let gw = RunningGateway::start(&static_config(&[backend], &upgrade), None).await;
    for _ in 0..3 {
        assert_eq!(via_h2c(gw.addr).await.0, "HTTP/2.0 api.test");
    }
}

/// `concurrent` cold calls (500 ms each, different users) at once through a cluster with this
/// `connectionPool` and port protocol; how many were answered 503.
async fn overflowed(pool: &str, protocol: &str, concurrent: usize) -> usize {
    let backends = backends(1, Duration::from_millis(500)).await;
    let lb = format!("{BY_USER}\n    connectionPool:\n{pool}");
    let yaml = static_config(&[backends[0].addr], &lb)
        .replace("protocol: HTTP}", &format!("protocol: {protocol}}}"));
    let gw = RunningGateway::start(&yaml, None).await;
    let http = Http::new();
    let calls: Vec<_> = (0..concurrent)
        .map(|i| {
            let http = http.clone();
            let addr = gw.addr;
            tokio::spawn(async move { http.ping(addr, &format!("user-{i}")).await.status })
        })
        .collect();
    let mut refused = 0;
    for call in calls {
        match call.await.unwrap() {
            200 => {}
            503 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    refused
}

#[tokio::test]
async fn circuit_breakers_bound_requests_in_flight_per_protocol() {
    // HTTP/1.1: maxConnections + http1MaxPendingRequests in flight, the rest refused at once.
    let h1 = "      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1}";
    assert_eq!(overflowed(h1, "HTTP", 3).await, 1);
    // http2MaxRequests, whatever the protocol ("applicable to both HTTP/1.1 and HTTP2").
    let h2 = "      http: {http2MaxRequests: 2}";
    assert_eq!(overflowed(h2, "HTTP2", 3).await, 1);
    assert_eq!(overflowed(h2, "HTTP", 3).await, 1);
}

/// An HTTP/2 backend on the `h2` crate that refuses its first `refuse` streams unread
/// (`REFUSED_STREAM`, as a server at its stream limit or shutting down does) and answers the
/// others with the length of the body it read. Also returns how many streams it saw.
async fn refusing_backend(
    refuse: usize,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = streams.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    if seen.fetch_add(1, SeqCst) < refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    tokio::spawn(async move {
                        let mut body = request.into_body();
                        let mut len = 0;
                        while let Some(Ok(chunk)) = body.data().await {
                            len += chunk.len();
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        let mut send = respond
                            .send_response(http::Response::new(()), false)
                            .unwrap();
                        let _ = send.send_data(Bytes::from(len.to_string()), true);
                    });
                }
            });
        }
    });
    (addr, streams)
}

/// POSTs `len` bytes through the gateway; the status and body of the answer.
async fn post(gw: std::net::SocketAddr, len: usize) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{gw}/upload"))
        .header("x-user", "ricky")
        .body(Full::new(Bytes::from(vec![7u8; len])))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_refused_stream_is_retried_when_retry_on_says_refused_stream() {
    use std::sync::atomic::Ordering::SeqCst;
    let http2 = |backend| static_config(&[backend], BY_USER).replace("HTTP}", "HTTP2}");
    // Istio's default retryOn has refused-stream: even a POST is sent again, body and all,
    // since the endpoint did not process it.
    let (backend, streams) = refusing_backend(1).await;
    let gw = RunningGateway::start(&http2(backend), None).await;
    assert_eq!(post(gw.addr, 60_000).await, (200, "60000".to_owned()));
    assert_eq!(streams.load(SeqCst), 2);
    // Without it, the refusal is the client's 503.
    let (backend, streams) = refusing_backend(1).await;
    let only_connect = http2(backend).replace(
        "  - route:\n",
        "  - retries: {attempts: 2, retryOn: connect-failure}\n    route:\n",
    );
    let gw = RunningGateway::start(&only_connect, None).await;
    assert_eq!(post(gw.addr, 10).await.0, 503);
    assert_eq!(streams.load(SeqCst), 1);
}

#[tokio::test]
async fn a_large_body_streams_to_an_http2_endpoint_within_its_window() {
    // 1 MiB: sixteen times the endpoint's 64 KiB stream window, and past the retry buffer, so
    // it streams once through the flow control.
    let (backend, _) = refusing_backend(0).await;
    let yaml = static_config(&[backend], BY_USER).replace("HTTP}", "HTTP2}");
    let gw = RunningGateway::start(&yaml, None).await;
    assert_eq!(post(gw.addr, 1 << 20).await, (200, "1048576".to_owned()));
}
