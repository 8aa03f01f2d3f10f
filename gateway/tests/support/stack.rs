//! A whole stack in one test process: sticky-svc backends on loopback, a gateway in front,
//! and a pooled HTTP client. Everything binds 127.0.0.x and stops when dropped.

#![allow(dead_code)] // each test file uses a different part

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway::config::LoadOptions;
use gateway::control::{Gateway, RunOptions, TlsSettings};
use gateway::discovery::RefreshBounds;
use gateway::proxy::ProxySettings;
use gateway::proxy::listener::Limits;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sticky_svc::shutdown::Readiness;
use sticky_svc::{AppState, ServeOptions, Workload, app, serve, serve_tls};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One sticky-svc instance.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts `name` on `addr` (port 0 picks one) with this first-call cost.
    pub async fn start(name: &str, addr: SocketAddr, cost: Duration) -> Self {
        Self::start_serving(name, addr, cost, None).await
    }

    /// Same, serving HTTPS with `tls` (ALPN h2 and http/1.1).
    pub async fn start_tls(name: &str, cost: Duration, tls: sticky_svc::tls::Tls) -> Self {
        let addr = "127.0.0.1:0".parse().unwrap();
        Self::start_serving(name, addr, cost, Some(tls)).await
    }

    async fn start_serving(
        name: &str,
        addr: SocketAddr,
        cost: Duration,
        tls: Option<sticky_svc::tls::Tls>,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind a backend");
        let addr = listener.local_addr().unwrap();
        let readiness = Readiness::new();
        let workload = Workload {
            host: name.to_owned(),
            first_call_cost: cost,
            cache_capacity: NonZeroUsize::new(100_000).unwrap(),
        };
        let state = AppState::new(workload, readiness.clone()).unwrap();
        let options = ServeOptions {
            grace: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            header_read_timeout: sticky_svc::serve::HEADER_READ_TIMEOUT,
            readiness,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            let _ = match tls {
                None => serve(listener, app(state), options, stopped).await,
                Some(tls) => serve_tls(listener, app(state), options, tls, stopped).await,
            };
        });
        Self {
            name: name.to_owned(),
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops it as a pod is stopped: no new connections, idle ones closed, in-flight calls end.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// `n` backends `svc-0`… on 127.0.0.1 with their own ports.
pub async fn backends(n: usize, cost: Duration) -> Vec<Backend> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(Backend::start(&format!("svc-{i}"), "127.0.0.1:0".parse().unwrap(), cost).await);
    }
    out
}

/// Istio YAML: the article's VirtualService and DestinationRule, and a STATIC ServiceEntry
/// listing `addrs` (in the order given).
pub fn static_config(addrs: &[SocketAddr], lb: &str) -> String {
    let mut endpoints = String::new();
    for a in addrs {
        endpoints.push_str(&format!(
            "  - address: {}\n    ports: {{http: {}}}\n",
            a.ip(),
            a.port()
        ));
    }
    format!(
        r#"apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: sticky-svc}}
spec:
  hosts: [sticky-svc.default.svc.cluster.local]
  ports:
  - {{number: 8080, name: http, protocol: HTTP}}
  resolution: STATIC
  endpoints:
{endpoints}---
{}"#,
        routing(lb)
    )
}

/// A canary: a STATIC ServiceEntry with `labels` (YAML flow-mapping entries, may be empty) over
/// `v1` (labelled `version: v1`) and `v2`; a route splitting `v1_weight` / the rest between
/// subsets v1 and v2; a DestinationRule hashing `x-user`.
pub fn canary_config(v1: &[SocketAddr], v2: &[SocketAddr], v1_weight: u32, labels: &str) -> String {
    const HOST: &str = "sticky-svc.default.svc.cluster.local";
    let versions = v1
        .iter()
        .map(|a| (a, "v1"))
        .chain(v2.iter().map(|a| (a, "v2")));
    let endpoints: String = versions
        .map(|(a, version)| {
            format!(
                "  - {{address: {}, ports: {{http: {}}}, labels: {{version: {version}}}}}\n",
                a.ip(),
                a.port()
            )
        })
        .collect();
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: sticky-svc, labels: {{{labels}}}}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
{endpoints}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: sticky-svc}}
spec:
  hosts: ['*']
  http:
  - route:
    - {{destination: {{host: {HOST}, subset: v1, port: {{number: 8080}}}}, weight: {v1_weight}}}
    - {{destination: {{host: {HOST}, subset: v2, port: {{number: 8080}}}}, weight: {}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: sticky-svc}}
spec:
  host: {HOST}
  trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-user}}}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"#,
        100 - v1_weight
    )
}

/// The article's VirtualService and a DestinationRule with this `loadBalancer` body.
pub fn routing(lb: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: sticky-svc}}
spec:
  hosts: ['*']
  http:
  - route:
    - destination:
        host: sticky-svc.default.svc.cluster.local
        port: {{number: 8080}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: sticky-svc}}
spec:
  host: sticky-svc.default.svc.cluster.local
  trafficPolicy:
    loadBalancer:
{lb}
"#
    )
}

/// The article's hash policy.
pub const BY_USER: &str = "      consistentHash:\n        httpHeaderName: x-user";

/// A running gateway.
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS listener, when the options asked for one.
    pub tls: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningGateway {
    /// Writes `yaml` to a fresh folder and serves it.
    pub async fn start(yaml: &str, dns: Option<SocketAddr>) -> Self {
        Self::start_with(yaml, dns, |_| {}).await
    }

    /// Same, with options adjusted by `tune`.
    pub async fn start_with(
        yaml: &str,
        dns: Option<SocketAddr>,
        tune: impl FnOnce(&mut RunOptions),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("istio.yaml"), yaml).unwrap();
        let mut options = options(dir.path(), dns);
        tune(&mut options);
        let gateway = Gateway::bind(options).await.expect("the gateway starts");
        let (addr, admin, tls) = (
            gateway.listen_addr(),
            gateway.admin_addr(),
            gateway.tls_addr(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gateway
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            admin,
            tls,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Replaces the config file.
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join(".istio.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(tmp, self.dir.path().join("istio.yaml")).unwrap();
    }

    /// Starts the shutdown; returns the task to await.
    pub fn shutdown(&mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("running")
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn options(config: &Path, dns: Option<SocketAddr>) -> RunOptions {
    RunOptions {
        config: vec![PathBuf::from(config)],
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        admin: "127.0.0.1:0".parse().unwrap(),
        load: LoadOptions::default(),
        gateway: None,
        dns_server: Some(dns.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap())),
        dns_refresh: RefreshBounds {
            min: Duration::from_millis(50),
            max: Duration::from_millis(200),
            failure_grace: None,
        },
        limits: Limits {
            grace: Duration::from_secs(5),
            ..Limits::default()
        },
        proxy: ProxySettings::default(),
        reload_poll: Duration::from_millis(100),
        active: None,
        session_keys: None,
        tls: TlsSettings::default(),
    }
}

/// What one `/ping` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub host: Option<String>,
    pub cache: Option<String>,
    pub body: String,
}

/// A pooled client.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Empty<Bytes>>);

impl Http {
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    /// GET `path` on `addr` as `user` (no header when `None`).
    pub async fn get(&self, addr: SocketAddr, path: &str, user: Option<&str>) -> Answer {
        let mut req = http::Request::get(format!("http://{addr}{path}"));
        if let Some(user) = user {
            req = req.header("x-user", user);
        }
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            self.0.request(req.body(Empty::new()).unwrap()),
        )
        .await
        .expect("an answer within 10 s")
        .expect("a response");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (status, host, cache) = (
            res.status().as_u16(),
            header("x-served-by"),
            header("x-cache"),
        );
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            host,
            cache,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn ping(&self, addr: SocketAddr, user: &str) -> Answer {
        self.get(addr, "/ping", Some(user)).await
    }
}

/// Sends one `/ping` per user, `concurrency` at a time; returns user → answer.
pub async fn ping_all(
    http: &Http,
    addr: SocketAddr,
    users: &[String],
    concurrency: usize,
) -> HashMap<String, Answer> {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut set = tokio::task::JoinSet::new();
    for user in users {
        let (http, user, limit) = (http.clone(), user.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let answer = http.ping(addr, &user).await;
            (user, answer)
        });
    }
    let mut out = HashMap::new();
    while let Some(done) = set.join_next().await {
        let (user, answer) = done.unwrap();
        out.insert(user, answer);
    }
    out
}

/// `user-0` … `user-{n-1}`.
pub fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

/// Polls `check` every 10 ms until it returns `Ok`, and returns that value; panics naming `what`
/// and the last `Err` (the state seen) when `within` passes first. For waiting on something to
/// have happened (a reload applied, a request in flight) instead of sleeping and hoping.
pub async fn wait_for<T, E: Debug>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what} (last seen: {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (10 s at most) until the admin page at `admin` shows an endpoint with `n` requests in
/// flight: requests sent have reached the upstream pool.
pub async fn wait_in_flight(admin: SocketAddr, n: usize) {
    let http = Http::new();
    let needle = format!("\"inFlight\": {n}");
    wait_for(
        &format!("an endpoint with {n} requests in flight"),
        Duration::from_secs(10),
        async || {
            let clusters = http.get(admin, "/clusters", None).await.body;
            if clusters.contains(&needle) {
                Ok(())
            } else {
                Err(clusters)
            }
        },
    )
    .await;
}
