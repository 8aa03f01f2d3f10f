//! The in-process stack: N sticky-svc replicas on 127.0.0.1:0 behind a test [`Proxy`].

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use loadtest::{Config, Scenario};
use sticky_svc::shutdown::Readiness;
use sticky_svc::{AppState, ServeOptions, Workload, app, serve};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, MutexGuard};

use crate::proxy::{Proxy, Route, Upstream};

/// The first-call cost of the test replicas: long enough to tell from a hit, short enough
/// for a test of a few seconds.
pub const COST: Duration = Duration::from_millis(200);

static RUNS: Mutex<()> = Mutex::const_new(());

/// Holds off the other tests' loads while the guard lives.
pub async fn exclusive() -> MutexGuard<'static, ()> {
    RUNS.lock().await
}

/// Replicas and the proxy in front of them; they stop with the test's runtime.
pub struct Stack {
    /// The proxy's base URL, what `--host` is given.
    pub url: String,
    /// The replicas, `svc-0`, `svc-1`, ...
    pub upstreams: Vec<Upstream>,
    /// The proxy, to scale while a load runs.
    pub proxy: Arc<Proxy>,
}

impl Stack {
    /// Starts `replicas` sticky-svc instances with first-call cost `cost` behind a proxy
    /// routing by `route`.
    pub async fn start(replicas: usize, cost: Duration, route: Route) -> Self {
        let mut upstreams = Vec::new();
        for index in 0..replicas {
            upstreams.push(replica(format!("svc-{index}"), cost).await);
        }
        let (proxy, addr) = Proxy::start(route, upstreams.clone()).await;
        Self {
            url: format!("http://{addr}"),
            upstreams,
            proxy,
        }
    }

    /// Replaces replica `index` by a fresh one of the same name and an empty cache, as a
    /// restarted pod; the proxy routes its users to the new one.
    pub async fn restart(&mut self, index: usize, cost: Duration) {
        let name = self.upstreams[index].name.clone();
        self.upstreams[index] = replica(name, cost).await;
        self.proxy.set_upstreams(self.upstreams.clone());
    }

    /// A short run of `scenario` against this stack: `users` users for `seconds` s.
    pub fn config(&self, scenario: Scenario, users: usize, seconds: u64) -> Config {
        let mut config = short_config(&self.url, scenario, users, seconds);
        config.thresholds.min_stickiness = (scenario == Scenario::Sticky).then_some(100.0);
        config.thresholds.max_lost_caches = (scenario == Scenario::Sticky).then_some(0);
        config
    }
}

/// Starts one sticky-svc named `name` on 127.0.0.1:0; it runs until the test's runtime stops.
pub async fn replica(name: String, cost: Duration) -> Upstream {
    let readiness = Readiness::new();
    let workload = Workload {
        host: name.clone(),
        first_call_cost: cost,
        cache_capacity: NonZeroUsize::new(10_000).unwrap(),
    };
    let state = AppState::new(workload, readiness.clone()).unwrap();
    let options = ServeOptions {
        grace: Duration::from_secs(1),
        max_header_bytes: 16 * 1024,
        header_read_timeout: sticky_svc::serve::HEADER_READ_TIMEOUT,
        readiness,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app(state), options, std::future::pending()));
    Upstream { name, addr }
}

/// A fresh folder for one test's files.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A short run of `scenario` against `url`: `users` users for `seconds` s, first calls of
/// [`COST`], a warm p99 bound loose enough for a debug build.
pub fn short_config(url: &str, scenario: Scenario, users: usize, seconds: u64) -> Config {
    let mut config = Config::new(url).unwrap();
    config.scenario = scenario;
    config.users = users;
    config.run_time = Duration::from_secs(seconds);
    config.hatch_rate = 200.0;
    config.first_call_cost = COST;
    config.pause = Duration::from_millis(50);
    // The tests judge routing, not speed: a debug build sharing two cores with other
    // builds can be slow (speed goals live in benchmarks, not in timed asserts).
    config.thresholds.max_warm_p99 = Duration::from_secs(2);
    config
}
