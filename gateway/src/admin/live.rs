//! The dashboard's live feed: one sampler task reads every cluster once a second into a JSON
//! document (`/state`), and each open page holds a server-sent-events stream (`/events`) that
//! gets that document when it changes and each timeline event as it happens.
//!
//! Costs stay flat whatever the number of pages: the sample is made once and shared (a `watch`
//! channel keeps only the latest, so a slow page skips samples rather than queueing them); the
//! timeline is a bounded broadcast ([`crate::events`]); at most [`MAX_STREAMS`] streams are
//! open at once, the admin listener's other 256 − 16 connections being left to probes and
//! scrapes. A stream holds its request in flight, so the listener neither times it out as idle
//! nor evicts it; it ends when the page goes, or when the sampler stops (shutdown), so the
//! admin listener's drain is not held for its grace period.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::json as spec;
use super::{Status, https_servers, table_shares, text};
use crate::body::{Body, BoxError, boxed};
use crate::cluster::{Cluster, EndpointState, Health};
use crate::events::{Event, Kind};
use crate::metrics::{Metrics, SessionLabels};
use crate::snapshot::Snapshot;
use crate::tls::TlsAcceptor;

/// Event streams open at once; one more is answered 503.
pub const MAX_STREAMS: usize = 16;

/// How often the sampler reads the clusters.
const EVERY: Duration = Duration::from_secs(1);

/// The distinct-users window: the estimate counts the users of the last one to two of these.
pub const USERS_WINDOW: Duration = Duration::from_secs(60);

/// What the admin pages read of the feed.
#[derive(Debug, Clone)]
pub struct Live {
    latest: watch::Receiver<Arc<str>>,
    streams: Arc<AtomicUsize>,
}

/// The sampler's memory between samples.
struct Sampler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    tls: Option<Arc<TlsAcceptor>>,
    /// Responses per endpoint (by the address of its state) at the last sample.
    responses: HashMap<usize, u64>,
    /// Re-issued sessions per cluster at the last sample.
    reissued: HashMap<Arc<str>, u64>,
    last: Instant,
    rotated: Instant,
}

impl Live {
    /// Starts the sampler (on the calling runtime). Aborting the task ends every stream.
    pub fn start(
        snapshot: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
        status: Arc<Status>,
        tls: Option<Arc<TlsAcceptor>>,
    ) -> (Self, JoinHandle<()>) {
        let now = Instant::now();
        let mut sampler = Sampler {
            snapshot,
            metrics,
            status,
            tls,
            responses: HashMap::new(),
            reissued: HashMap::new(),
            last: now,
            rotated: now,
        };
        let (tx, latest) = watch::channel(sampler.sample(now));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let sample = sampler.sample(Instant::now());
                tx.send_replace(sample);
            }
        });
        let live = Self {
            latest,
            streams: Arc::new(AtomicUsize::new(0)),
        };
        (live, task)
    }

    /// The latest sample (`/state`).
    pub fn state(&self) -> Response<Body> {
        let body = self.latest.borrow().clone();
        let mut response = Response::new(crate::body::full(Bytes::from(body.to_string())));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }

    /// An event stream (`/events`): the timeline so far (`history`), the latest sample
    /// (`state`), then each new sample and timeline event (`event`).
    pub fn stream(&self, metrics: &Arc<Metrics>) -> Response<Body> {
        let open = self.streams.fetch_add(1, Ordering::AcqRel);
        if open >= MAX_STREAMS {
            self.streams.fetch_sub(1, Ordering::AcqRel);
            let mut response = text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_STREAMS} dashboards are open already; close one and reload\n"),
            );
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        }
        let slot = StreamSlot(self.streams.clone());
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let mut latest = self.latest.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (history, mut events) = metrics.events.subscribe();
            let first = latest.borrow_and_update().clone();
            if tx
                .send(message("history", &history_json(&history)))
                .await
                .is_err()
                || tx.send(message("state", &first)).await.is_err()
            {
                return;
            }
            loop {
                let next = tokio::select! {
                    changed = latest.changed() => match changed {
                        Ok(()) => {
                            let sample = latest.borrow_and_update().clone();
                            message("state", &sample)
                        }
                        // The sampler stopped: the gateway is shutting down.
                        Err(_) => return,
                    },
                    event = events.recv() => match event {
                        Ok(event) => message("event", &event_json(&event)),
                        // Fell behind: the whole log again, which the page redraws from.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            message("history", &history_json(&metrics.events.history()))
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tx.closed() => return,
                };
                if tx.send(next).await.is_err() {
                    return;
                }
            }
        });
        let mut response = Response::new(boxed(EventBody(rx)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// One open stream's place among [`MAX_STREAMS`], given back when its task ends.
struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The response body of a stream: what its task sends, until the task ends.
struct EventBody(mpsc::Receiver<Bytes>);

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// One server-sent event; `data` is one line of JSON.
fn message(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn event_json(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

fn history_json(events: &[Event]) -> String {
    serde_json::to_string(events).unwrap_or_default()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Sampler {
    /// Reads every cluster now: the document `/state` serves and streams send.
    fn sample(&mut self, now: Instant) -> Arc<str> {
        let seconds = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let rotate = now.duration_since(self.rotated) >= USERS_WINDOW;
        if rotate {
            self.rotated = now;
        }
        let snapshot = self.snapshot.load_full();
        let mut clusters: Vec<&Arc<Cluster>> = snapshot.clusters.values().collect();
        clusters.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let mut responses = HashMap::new();
        let list: Vec<Value> = clusters
            .iter()
            .map(|cluster| {
                self.sessions(cluster);
                let state = cluster.state();
                let shares = table_shares(&state);
                let endpoints: Vec<Value> = state
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, endpoint)| {
                        if rotate {
                            endpoint.stats.rotate_users();
                        }
                        let key = Arc::as_ptr(endpoint) as usize;
                        let sample = endpoint.stats.sample();
                        let before = self.responses.get(&key).copied();
                        responses.insert(key, sample.responses);
                        let rps = match before {
                            Some(n) if seconds > 0.0 => {
                                sample.responses.saturating_sub(n) as f64 / seconds
                            }
                            _ => 0.0,
                        };
                        endpoint_json(endpoint, &sample, shares.get(i).copied(), rps, now)
                    })
                    .collect();
                json!({
                    "cluster": &*cluster.spec.name,
                    "policy": spec::policy_name(&cluster.spec.policy),
                    "hashes": cluster.spec.policy.is_consistent_hash(),
                    "hashKey": snapshot.hash_key(&cluster.spec.name).map(spec::hash_key),
                    "routable": state.routable(),
                    "endpoints": endpoints,
                })
            })
            .collect();
        self.responses = responses;
        let reload = self.status.reload();
        let document = json!({
            "atMs": unix_ms(),
            "ready": self.status.is_ready(),
            "reload": reload,
            "usersWindowSeconds": USERS_WINDOW.as_secs(),
            "clusters": list,
            "httpsServers": https_servers(self.tls.as_deref()),
        });
        Arc::from(document.to_string())
    }

    /// Tells the timeline of sessions the cluster re-issued since the last sample.
    fn sessions(&mut self, cluster: &Cluster) {
        let name = &cluster.labels.cluster;
        let labels = SessionLabels {
            cluster: name.clone(),
            event: "reissued",
        };
        let Some(count) = self.metrics.sessions.get(&labels).map(|c| c.get()) else {
            return;
        };
        let before = self.reissued.insert(name.clone(), count).unwrap_or(0);
        if count > before {
            let n = count - before;
            let text = format!(
                "{n} session{} re-issued: the replica they named left or is out",
                if n == 1 { "" } else { "s" }
            );
            self.metrics
                .events
                .push(Kind::Sessions, Some(name), text, None);
        }
    }
}

fn endpoint_json(
    endpoint: &EndpointState,
    sample: &crate::cluster::StatsSample,
    share: Option<f64>,
    rps: f64,
    now: Instant,
) -> Value {
    let (health, reason, seconds_left, used) = match sample.health {
        Health::Healthy => ("healthy", None, None, true),
        Health::Ejected {
            reason,
            until,
            used,
        } => (
            "ejected",
            Some(reason),
            Some(until.saturating_duration_since(now).as_secs()),
            used,
        ),
        Health::FailingChecks => ("failing checks", None, None, false),
    };
    json!({
        "address": &**endpoint.label(),
        "name": sample.name.as_deref(),
        "weight": endpoint.weight(),
        "health": health,
        "reason": reason,
        "secondsLeft": seconds_left,
        "used": used,
        "inFlight": endpoint.in_flight.load(Ordering::Relaxed),
        "rps": (rps * 10.0).round() / 10.0,
        "share": share,
        "users": sample.users,
        "warm": sample.hits,
        "cold": sample.misses,
        "responses": sample.responses,
    })
}
