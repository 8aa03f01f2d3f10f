//! A test-only HTTP proxy in front of the replicas: the stand-in for the gateway, with the
//! three routings the tests need.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// How the proxy picks a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Rendezvous (highest random weight) hash of `x-user` over the replicas' names: sticky,
    /// and removing a replica moves only its own users.
    Sticky,
    /// `hash(x-user) % replicas`: sticky while the set is fixed, most users move on a change.
    Modulo,
    /// Each request to the next replica: not sticky at all.
    RoundRobin,
}

/// One replica as the proxy knows it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The name the replica answers with in `x-served-by`; the hash key, so routing does
    /// not depend on the random ports.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The proxy's shared state; [`Proxy::set_upstreams`] scales it while it runs.
pub struct Proxy {
    route: Route,
    upstreams: RwLock<Vec<Upstream>>,
    next: AtomicUsize,
    /// The `x-user` keys that have had a cache hit (`x-cache: hit`) through the proxy.
    warm: Mutex<HashSet<Vec<u8>>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Proxy {
    /// Starts the proxy on 127.0.0.1:0; returns it and its address.
    pub async fn start(route: Route, upstreams: Vec<Upstream>) -> (Arc<Self>, SocketAddr) {
        let proxy = Arc::new(Self {
            route,
            upstreams: RwLock::new(upstreams),
            next: AtomicUsize::new(0),
            warm: Mutex::new(HashSet::new()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = Arc::clone(&proxy);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let proxy = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let proxy = Arc::clone(&proxy);
                        async move { Ok::<_, Infallible>(proxy.forward(request).await) }
                    });
                    // Client resets at the end of a run are expected.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (proxy, addr)
    }

    /// Replaces the replica set, as a scale event would.
    pub fn set_upstreams(&self, upstreams: Vec<Upstream>) {
        *self.upstreams.write().unwrap() = upstreams;
    }

    /// Users that have had a warm answer (a cache hit) so far.
    pub fn warm_users(&self) -> usize {
        self.warm.lock().unwrap().len()
    }

    fn pick(&self, user: &[u8]) -> SocketAddr {
        let upstreams = self.upstreams.read().unwrap();
        let hash = |parts: &dyn Fn(&mut DefaultHasher)| {
            // `DefaultHasher::new` has fixed keys: the same key maps the same way every run.
            let mut hasher = DefaultHasher::new();
            parts(&mut hasher);
            hasher.finish()
        };
        let index = match self.route {
            Route::Sticky => (0..upstreams.len())
                .max_by_key(|&i| {
                    hash(&|h: &mut DefaultHasher| {
                        user.hash(h);
                        upstreams[i].name.hash(h);
                    })
                })
                .unwrap(),
            Route::Modulo => {
                (hash(&|h: &mut DefaultHasher| user.hash(h)) % upstreams.len() as u64) as usize
            }
            Route::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % upstreams.len(),
        };
        upstreams[index].addr
    }

    async fn forward(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let user = request
            .headers()
            .get("x-user")
            .map(|value| value.as_bytes().to_vec())
            .unwrap_or_default();
        let addr = self.pick(&user);
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = Uri::try_from(format!("http://{addr}{path}")).unwrap();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let answer = match self
            .client
            .request(Request::from_parts(parts, Full::new(body)))
            .await
        {
            Ok(answer) => answer,
            Err(err) => return bad_gateway(&err.to_string()),
        };
        let (parts, body) = answer.into_parts();
        if parts.headers.get("x-cache").is_some_and(|v| v == "hit") {
            self.warm.lock().unwrap().insert(user);
        }
        match body.collect().await {
            Ok(body) => Response::from_parts(parts, Full::new(body.to_bytes())),
            Err(err) => bad_gateway(&err.to_string()),
        }
    }
}

fn bad_gateway(reason: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
