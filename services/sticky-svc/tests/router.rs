//! The router in process (tower `oneshot`), with a short first-call cost and paused time.

use std::future::{Future, poll_fn};
use std::num::NonZeroUsize;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use sticky_svc::api::App;
use sticky_svc::limits::Limits;
use sticky_svc::shutdown::Readiness;
use sticky_svc::{AppState, Workload, app};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::ServiceExt;

const COST: Duration = Duration::from_millis(100);

fn state(capacity: usize) -> AppState {
    let workload = Workload {
        host: "sticky-svc-0".into(),
        first_call_cost: COST,
        cache_capacity: NonZeroUsize::new(capacity).unwrap(),
    };
    AppState::new(workload, Readiness::new()).unwrap()
}

/// A state with this first-call cost, cache capacity and first-call bound (default grace).
fn limited(cost: Duration, capacity: usize, max_first_calls: usize) -> AppState {
    let workload = Workload {
        host: "sticky-svc-0".into(),
        first_call_cost: cost,
        cache_capacity: NonZeroUsize::new(capacity).unwrap(),
    };
    let limits = Limits {
        max_first_calls: NonZeroUsize::new(max_first_calls).unwrap(),
        ..Limits::default()
    };
    AppState::with_limits(workload, limits, Readiness::new()).unwrap()
}

/// Spawns `call` and returns once it has been polled once: by then its first call has been
/// started, joined or refused.
async fn spawn_admitted<T: Send + 'static>(
    call: impl Future<Output = T> + Send + 'static,
) -> JoinHandle<T> {
    let (admitted, is_admitted) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut call = pin!(call);
        let first = poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
        let _ = admitted.send(());
        match first {
            Poll::Ready(out) => out,
            Poll::Pending => call.await,
        }
    });
    is_admitted.await.unwrap();
    task
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::builder().uri(path)
}

async fn call(router: &App, request: axum::http::request::Builder) -> (Response<()>, String) {
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

async fn ping(router: &App, user: &str) -> (Response<()>, String) {
    call(router, get("/ping").header("x-user", user)).await
}

#[tokio::test(start_paused = true)]
async fn first_call_pays_the_cost_then_the_cache_answers() {
    let router = app(state(10));
    let started = Instant::now();
    let (cold, body) = ping(&router, "ricky").await;
    assert_eq!(started.elapsed(), COST);
    assert_eq!(cold.status(), StatusCode::OK);
    assert_eq!(cold.headers()["x-cache"], "miss");
    assert_eq!(cold.headers()["x-served-by"], "sticky-svc-0");
    assert_eq!(
        cold.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        body,
        "Call was processed by host sticky-svc-0 for user ricky and it took 100ms\n"
    );

    let (warm, body) = ping(&router, "ricky").await;
    assert_eq!(warm.headers()["x-cache"], "hit");
    assert_eq!(
        body, "Call was processed by host sticky-svc-0 for user ricky and it took 0ns\n",
        "paused time: a hit takes no time at all"
    );
}

#[tokio::test(start_paused = true)]
async fn twenty_concurrent_first_calls_pay_one_cost() {
    let router = app(state(10));
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move { ping(&router, "ricky").await })
        })
        .collect();
    for call in calls {
        let (response, _) = call.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-cache"], "miss");
    }
    assert_eq!(started.elapsed(), COST, "one cost, not twenty");
    let (_, metrics) = call(&router, get("/metrics")).await;
    assert!(
        metrics.contains("sticky_first_call_cost_seconds_count 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"sticky_requests_total{cache="miss",status="200"} 20"#));
}

#[tokio::test(start_paused = true)]
async fn users_never_wait_on_each_other() {
    let router = app(state(10));
    ping(&router, "warm").await;
    let started = Instant::now();
    let cold = ["a", "b", "c"].map(|user| {
        let router = router.clone();
        tokio::spawn(async move { ping(&router, user).await })
    });
    tokio::task::yield_now().await;
    let (warm, _) = ping(&router, "warm").await;
    assert_eq!(warm.headers()["x-cache"], "hit");
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a hit does not wait for cold users"
    );
    for call in cold {
        assert_eq!(call.await.unwrap().0.headers()["x-cache"], "miss");
    }
    assert_eq!(started.elapsed(), COST, "cold users run side by side");
}

#[tokio::test(start_paused = true)]
async fn json_when_the_client_accepts_it() {
    let router = app(state(10));
    let request = || {
        get("/ping")
            .header("x-user", "ricky")
            .header(header::ACCEPT, "application/json")
    };
    let (response, body) = call(&router, request()).await;
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"host": "sticky-svc-0", "user": "ricky", "elapsed_ns": 100_000_000, "cache": "miss"})
    );
    let (_, body) = call(&router, request()).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["cache"], "hit");
}

#[tokio::test(start_paused = true)]
async fn head_answers_like_get_without_a_body() {
    let router = app(state(10));
    let (response, body) = call(
        &router,
        get("/ping").method(Method::HEAD).header("x-user", "r"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-cache"], "miss");
    assert!(body.is_empty());
    // GET takes the fast path around axum's router, HEAD goes through it: same cache, same answer.
    let (fast, body) = call(&router, get("/ping?from=test").header("x-user", "r")).await;
    assert_eq!(fast.headers()["x-cache"], "hit");
    assert_eq!(fast.headers()["x-served-by"], "sticky-svc-0");
    assert!(body.starts_with("Call was processed by host sticky-svc-0 for user r and it took"));
    let (trailing, _) = call(&router, get("/ping/").header("x-user", "r")).await;
    assert_eq!(trailing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_user_headers_are_refused_and_nothing_is_cached() {
    let state = state(10);
    let router = app(state.clone());
    let long = "x".repeat(257);
    let cases: [(Option<&str>, &str); 4] = [
        (
            None,
            "the x-user header is missing; send `x-user: <name>`\n",
        ),
        (
            Some("  "),
            "the x-user header is empty; send `x-user: <name>`\n",
        ),
        (Some(&long), "the x-user header is longer than 256 bytes\n"),
        (
            Some("ric\tky"),
            "the x-user header contains a control character\n",
        ),
    ];
    for (user, expected) in cases {
        let mut request = get("/ping");
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        let (response, body) = call(&router, request).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{user:?}");
        assert_eq!(body, expected);
        assert!(response.headers().get("x-cache").is_none());
    }
    assert!(state.cache().is_empty());
    let (_, metrics) = call(&router, get("/metrics")).await;
    assert!(metrics.contains(r#"sticky_requests_total{cache="none",status="400"} 4"#));
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let router = app(state(10));
    let (response, body) = call(&router, get("/pong").header("x-user", "r")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        "no such path; the workload answers GET /ping with an x-user header\n"
    );

    for method in [Method::POST, Method::DELETE] {
        let request = get("/ping").method(method).header("x-user", "r");
        let (response, body) = call(&router, request).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET,HEAD");
        assert_eq!(body, "method not allowed; use GET or HEAD\n");
    }

    let request = get("/healthz")
        .method(Method::PUT)
        .header(header::ACCEPT, "application/json");
    let (response, body) = call(&router, request).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"error": "method not allowed; use GET or HEAD", "status": 405})
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let state = state(10);
    let router = app(state.clone());
    let (response, body) = call(&router, get("/healthz")).await;
    assert_eq!((response.status(), body.as_str()), (StatusCode::OK, "ok\n"));
    let (response, body) = call(&router, get("/readyz")).await;
    assert_eq!(
        (response.status(), body.as_str()),
        (StatusCode::OK, "ready\n")
    );
    state.readiness().drain();
    let (response, body) = call(&router, get("/readyz")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "draining\n");
    let (response, _) = call(&router, get("/healthz")).await;
    assert_eq!(response.status(), StatusCode::OK, "draining is still alive");
}

#[tokio::test(start_paused = true)]
async fn the_cache_stays_within_capacity() {
    let state = state(3);
    let router = app(state.clone());
    for n in 0..10 {
        let (response, _) = ping(&router, &format!("user-{n}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(state.cache().len() <= 3);
    }
    let (_, metrics) = call(&router, get("/metrics")).await;
    assert!(metrics.contains("sticky_cache_entries 3\n"), "{metrics}");
    assert!(metrics.contains("sticky_cache_evictions_total 7\n"));
    let (evicted, _) = ping(&router, "user-0").await;
    assert_eq!(
        evicted.headers()["x-cache"],
        "miss",
        "the oldest user was evicted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_made_up_users_gets_503_at_once_and_warm_users_are_served() {
    // Two cached users at most, eight first calls in progress at most.
    let state = limited(COST, 2, 8);
    let router = app(state.clone());
    for user in ["warm-1", "warm-2"] {
        assert_eq!(ping(&router, user).await.0.headers()["x-cache"], "miss");
    }
    let started = Instant::now();
    let mut flood = Vec::new();
    for n in 0..8 {
        let router = router.clone();
        let call = async move { ping(&router, &format!("made-up-{n}")).await };
        flood.push(spawn_admitted(call).await);
    }
    assert_eq!(state.cache().pending(), 8);

    let (refused, body) = ping(&router, "made-up-8").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    assert_eq!(body, "too many first calls in progress; retry shortly\n");
    assert_eq!(started.elapsed(), Duration::ZERO, "refused at once");
    for user in ["warm-1", "warm-2"] {
        let (warm, _) = ping(&router, user).await;
        assert_eq!(warm.status(), StatusCode::OK);
        assert_eq!(
            warm.headers()["x-cache"],
            "hit",
            "{user} is neither evicted nor blocked"
        );
    }
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "warm calls wait for nothing"
    );
    let (metrics_now, metrics) = call(&router, get("/metrics")).await;
    assert_eq!(metrics_now.status(), StatusCode::OK);
    for line in [
        "sticky_first_calls_in_flight 8\n",
        "sticky_first_calls_limit 8\n",
        "sticky_first_calls_refused_total 1\n",
        "sticky_cache_entries 2\n",
        "sticky_cache_evictions_total 0\n",
        r#"sticky_requests_total{cache="none",status="503"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // A made-up user already in progress is joined, not refused.
    let (joined, _) = ping(&router, "made-up-0").await;
    assert_eq!(joined.status(), StatusCode::OK);
    assert_eq!(joined.headers()["x-cache"], "miss");
    for caller in flood {
        assert_eq!(caller.await.unwrap().0.status(), StatusCode::OK);
    }
    assert_eq!(started.elapsed(), COST);
}

#[tokio::test(start_paused = true)]
async fn a_first_call_whose_callers_hung_up_is_cancelled_after_the_grace() {
    let grace = Limits::default().abandon_grace;
    let state = limited(10 * grace, 10, 10);
    let router = app(state.clone());
    let caller = {
        let router = router.clone();
        spawn_admitted(async move { ping(&router, "gone").await }).await
    };
    caller.abort(); // the client hangs up
    assert!(caller.await.unwrap_err().is_cancelled());

    // Time is paused: each sleep moves the clock to the moment under test.
    tokio::time::sleep(grace - Duration::from_millis(1)).await;
    let (_, metrics) = call(&router, get("/metrics")).await;
    assert!(
        metrics.contains("sticky_first_calls_in_flight 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("sticky_first_calls_cancelled_total 0\n"));
    tokio::time::sleep(Duration::from_millis(2)).await;
    let (_, metrics) = call(&router, get("/metrics")).await;
    assert!(
        metrics.contains("sticky_first_calls_in_flight 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("sticky_first_calls_cancelled_total 1\n"));
    assert!(metrics.contains("sticky_first_call_cost_seconds_count 0\n"));
    assert!(!state.cache().is_ready("gone"));
}
