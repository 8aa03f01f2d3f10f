//! Persistent sessions through the real proxy: a ServiceEntry labelled
//! `istio.io/persistent-session-header` (or `istio.io/persistent-session`, the cookie) gives
//! each answer a session naming the endpoint that answered; a request carrying it goes there
//! while that endpoint is in the cluster, whatever Maglev or a weighted split would pick.

#[path = "support/stack.rs"]
mod stack;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::session::SessionKeys;
use http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use stack::{Backend, RunningGateway, backends, users, wait_for};

const HOST: &str = "sticky-svc.default.svc.cluster.local";

/// A STATIC ServiceEntry over `backends` with `labels` (YAML flow mapping entries), the
/// article's VirtualService and a DestinationRule hashing `x-user`.
fn config(backends: &[&Backend], labels: &str) -> String {
    let mut endpoints = String::new();
    for b in backends {
        endpoints.push_str(&format!(
            "  - {{address: {}, ports: {{http: {}}}}}\n",
            b.addr.ip(),
            b.addr.port()
        ));
    }
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: sticky-svc
  labels: {{{labels}}}
spec:
  hosts: [{HOST}]
  ports:
  - {{number: 8080, name: http, protocol: HTTP}}
  resolution: STATIC
  endpoints:
{endpoints}---
{}"#,
        stack::routing(stack::BY_USER)
    )
}

const BY_HEADER: &str = "istio.io/persistent-session-header: x-session";

/// What one request got back.
#[derive(Debug, Clone)]
struct Got {
    status: u16,
    host: String,
    headers: HeaderMap,
}

impl Got {
    fn session(&self) -> Option<String> {
        self.headers
            .get("x-session")
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

#[derive(Clone)]
struct Client2(Client<HttpConnector, Empty<Bytes>>);

impl Client2 {
    fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    /// GET /ping on `gw` with these headers.
    async fn ping(&self, gw: SocketAddr, headers: &[(&str, &str)]) -> Got {
        let mut req = http::Request::get(format!("http://{gw}/ping"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            self.0.request(req.body(Empty::new()).unwrap()),
        )
        .await
        .expect("an answer within 10 s")
        .expect("a response");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let host = headers
            .get("x-served-by")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let _ = res.into_body().collect().await;
        Got {
            status,
            host,
            headers,
        }
    }

    async fn admin(&self, admin: SocketAddr, path: &str) -> String {
        let res = self
            .0
            .get(format!("http://{admin}{path}").parse().unwrap())
            .await
            .unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }
}

/// `gateway_sessions_total` for `event` of the cluster, from `/metrics` (0 when absent).
async fn sessions_metric(http: &Client2, admin: SocketAddr, event: &str) -> u64 {
    let metrics = http.admin(admin, "/metrics").await;
    let needle = format!("event=\"{event}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("gateway_sessions_total{") && l.contains(&needle))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Waits until the gateway routes over `n` endpoints (a reload applied).
async fn wait_endpoints(http: &Client2, admin: SocketAddr, n: usize) {
    let needle = format!("\"routable\": {n}");
    wait_for(
        &format!("{n} endpoints"),
        Duration::from_secs(10),
        async || {
            let page = http.admin(admin, "/clusters").await;
            if page.contains(&needle) {
                Ok(())
            } else {
                Err(page)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_moves_no_user_with_a_session_and_new_users_spread_over_all() {
    let all = backends(5, Duration::ZERO).await;
    let three: Vec<&Backend> = all.iter().take(3).collect();
    let five: Vec<&Backend> = all.iter().collect();
    let gw = RunningGateway::start(&config(&three, BY_HEADER), None).await;
    let http = Client2::new();

    // 300 users, each given a session by its first answer.
    let users = users(300);
    let mut first: HashMap<String, (String, String)> = HashMap::new();
    for u in &users {
        let got = http.ping(gw.addr, &[("x-user", u)]).await;
        assert_eq!(got.status, 200, "{got:?}");
        let session = got.session().expect("a session on the first answer");
        first.insert(u.clone(), (got.host, session));
    }
    assert_eq!(sessions_metric(&http, gw.admin, "issued").await, 300);

    // Scale 3 → 5.
    gw.write_config(&config(&five, BY_HEADER));
    wait_for("5 endpoints", Duration::from_secs(10), async || {
        let page = http.admin(gw.admin, "/clusters").await;
        if all[3..].iter().all(|b| page.contains(&b.addr.to_string())) {
            Ok(())
        } else {
            Err(page)
        }
    })
    .await;

    let (mut moved_with, mut moved_without) = (0, 0);
    for u in &users {
        let (home, session) = &first[u];
        let with = http
            .ping(gw.addr, &[("x-user", u), ("x-session", session)])
            .await;
        assert_eq!(with.status, 200);
        moved_with += usize::from(&with.host != home);
        assert_eq!(
            with.session(),
            None,
            "{u}: an honoured fresh session is not re-sent"
        );
        let without = http.ping(gw.addr, &[("x-user", u)]).await;
        moved_without += usize::from(&without.host != home);
    }
    assert_eq!(moved_with, 0, "users with a session moved");
    // Consistent hashing alone moves about 40% (2 of 5) of them.
    assert!(
        (60..=180).contains(&moved_without),
        "{moved_without} of 300 moved without a session"
    );
    assert_eq!(sessions_metric(&http, gw.admin, "honoured").await, 300);

    // New users spread over all five.
    let mut hosts = HashMap::new();
    for u in (300..500).map(|i| format!("user-{i}")) {
        let got = http.ping(gw.addr, &[("x-user", &u)]).await;
        *hosts.entry(got.host).or_insert(0) += 1;
    }
    assert_eq!(hosts.len(), 5, "{hosts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_endpoint_left_is_placed_again_and_reissued() {
    let all = backends(3, Duration::ZERO).await;
    let gw = RunningGateway::start(&config(&all.iter().collect::<Vec<_>>(), BY_HEADER), None).await;
    let http = Client2::new();
    // A user at svc-0.
    let mut at_svc0 = None;
    for i in 0..200 {
        let u = format!("u{i}");
        let got = http.ping(gw.addr, &[("x-user", &u)]).await;
        if got.host == "svc-0" {
            at_svc0 = Some((u, got.session().unwrap()));
            break;
        }
    }
    let (user, session) = at_svc0.expect("a user placed at svc-0");
    // svc-0 leaves the config.
    gw.write_config(&config(&all.iter().skip(1).collect::<Vec<_>>(), BY_HEADER));
    wait_endpoints(&http, gw.admin, 2).await;
    let got = http
        .ping(gw.addr, &[("x-user", &user), ("x-session", &session)])
        .await;
    assert_eq!(got.status, 200);
    assert_ne!(got.host, "svc-0");
    let renewed = got.session().expect("re-issued");
    assert_ne!(renewed, session);
    assert_eq!(sessions_metric(&http, gw.admin, "reissued").await, 1);
    // The new value sticks to the new home.
    let again = http
        .ping(gw.addr, &[("x-user", &user), ("x-session", &renewed)])
        .await;
    assert_eq!(again.host, got.host);
    assert_eq!(again.session(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_garbled_values_are_placed_by_hash_and_reissued_never_an_error() {
    let all = backends(3, Duration::ZERO).await;
    let gw = RunningGateway::start(&config(&all.iter().collect::<Vec<_>>(), BY_HEADER), None).await;
    let http = Client2::new();
    let home = http.ping(gw.addr, &[("x-user", "ricky")]).await;
    let valid = home.session().unwrap();
    // The same value with one character of its times changed (still base64url, no padding
    // bits touched): forged.
    let mut bytes = valid.clone().into_bytes();
    bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(bytes).unwrap();
    for (value, event) in [
        (forged.as_str(), "ignored_forged"),
        ("not a session", "ignored_garbled"),
        ("", "ignored_garbled"),
        ("\u{00e9}\u{00e9}", "ignored_garbled"),
    ] {
        let got = http
            .ping(gw.addr, &[("x-user", "ricky"), ("x-session", value)])
            .await;
        assert_eq!(got.status, 200, "{value:?}");
        assert_eq!(got.host, home.host, "{value:?}: placed by the hash key");
        assert!(got.session().is_some(), "{value:?}: a new session");
        assert!(
            sessions_metric(&http, gw.admin, event).await >= 1,
            "{event}"
        );
    }
    // A value signed by another gateway's (random) key: forged too.
    let other =
        RunningGateway::start(&config(&all.iter().collect::<Vec<_>>(), BY_HEADER), None).await;
    let foreign = http
        .ping(other.addr, &[("x-user", "bubbles")])
        .await
        .session()
        .unwrap();
    let got = http
        .ping(gw.addr, &[("x-user", "ricky"), ("x-session", &foreign)])
        .await;
    assert_eq!(got.host, home.host);
    assert!(sessions_metric(&http, gw.admin, "ignored_forged").await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_with_one_key_file_honour_each_others_sessions() {
    let all = backends(4, Duration::ZERO).await;
    let keys = Arc::new(
        SessionKeys::from_secrets(["a shared secret of at least thirty-two characters"]).unwrap(),
    );
    let yaml = config(&all.iter().collect::<Vec<_>>(), BY_HEADER);
    let with_keys = |o: &mut gateway::control::RunOptions| o.session_keys = Some(keys.clone());
    let a = RunningGateway::start_with(&yaml, None, with_keys).await;
    let b = RunningGateway::start_with(&yaml, None, with_keys).await;
    let http = Client2::new();
    // Each value a made, sent to b by a request whose own hash key would place it elsewhere
    // (another user): b sends it to the endpoint a's session names, as it is.
    for u in users(50) {
        let got = http.ping(a.addr, &[("x-user", &u)]).await;
        let session = got.session().unwrap();
        let at_b = http
            .ping(
                b.addr,
                &[("x-user", "someone-else"), ("x-session", &session)],
            )
            .await;
        assert_eq!(
            at_b.host, got.host,
            "{u}: b sends a's session to its endpoint"
        );
        assert_eq!(at_b.session(), None, "{u}: honoured as it is");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_form_sets_a_safe_cookie_and_honours_it() {
    let all = backends(3, Duration::ZERO).await;
    let gw = RunningGateway::start(
        &config(
            &all.iter().collect::<Vec<_>>(),
            "istio.io/persistent-session: sticky-session",
        ),
        None,
    )
    .await;
    let http = Client2::new();
    let got = http.ping(gw.addr, &[("x-user", "ricky")]).await;
    let cookie = got.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("sticky-session="), "{cookie}");
    assert!(
        cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax"),
        "a browser-session cookie, no Secure over plain HTTP: {cookie}"
    );
    let value = cookie
        .trim_start_matches("sticky-session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // Behind a TLS terminator: Secure.
    let tls = http
        .ping(
            gw.addr,
            &[("x-user", "julian"), ("x-forwarded-proto", "https")],
        )
        .await;
    assert!(
        tls.headers["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure"),
        "{:?}",
        tls.headers
    );
    // Sent back (among other cookies), as another user: honoured, no new cookie.
    let back = http
        .ping(
            gw.addr,
            &[
                ("x-user", "somebody-else"),
                ("cookie", &format!("a=b; sticky-session={value}; c=d")),
            ],
        )
        .await;
    assert_eq!(back.host, got.host);
    assert!(
        back.headers.get("set-cookie").is_none(),
        "{:?}",
        back.headers
    );
}

/// svc-0 is subset v1, svc-1 subset v2; the route splits `v1_weight` / the rest; sessions by
/// header.
fn canary(b: &[Backend], v1_weight: u32) -> String {
    stack::canary_config(&[b[0].addr], &[b[1].addr], v1_weight, BY_HEADER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_its_version_whatever_the_weights() {
    let b = backends(2, Duration::ZERO).await;
    let gw = RunningGateway::start(&canary(&b, 50), None).await;
    let http = Client2::new();
    let mut on_v2 = None;
    for i in 0..200 {
        let u = format!("u{i}");
        let got = http.ping(gw.addr, &[("x-user", &u)]).await;
        if got.host == "svc-1" {
            on_v2 = Some((u, got.session().unwrap()));
            break;
        }
    }
    let (user, session) = on_v2.expect("a user on v2");
    // Every user to v1 now, but the session still names its v2 endpoint.
    gw.write_config(&canary(&b, 100));
    wait_for("the 100/0 split", Duration::from_secs(10), async || {
        let mut seen = Vec::new();
        for i in 0..20 {
            seen.push(
                http.ping(gw.addr, &[("x-user", &format!("probe-{i}"))])
                    .await
                    .host,
            );
        }
        if seen.iter().all(|h| h == "svc-0") {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
    let with = http
        .ping(gw.addr, &[("x-user", &user), ("x-session", &session)])
        .await;
    assert_eq!(with.host, "svc-1", "the session pins v2");
    assert_eq!(with.session(), None);
    let without = http.ping(gw.addr, &[("x-user", &user)]).await;
    assert_eq!(without.host, "svc-0", "without it the weights decide");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_on_a_reused_address_does_not_inherit_the_session() {
    let mut all = backends(2, Duration::ZERO).await;
    let gw = RunningGateway::start(&config(&all.iter().collect::<Vec<_>>(), BY_HEADER), None).await;
    let http = Client2::new();
    let mut at_svc0 = None;
    for i in 0..200 {
        let u = format!("u{i}");
        let got = http.ping(gw.addr, &[("x-user", &u)]).await;
        if got.host == "svc-0" {
            at_svc0 = Some((u, got.session().unwrap()));
            break;
        }
    }
    let (user, session) = at_svc0.expect("a user placed at svc-0");
    // svc-0 goes; a new replica, svc-new, comes up on its address (as a pod on a reused IP).
    let addr = all[0].addr;
    all[0].stop().await;
    all[0] = Backend::start("svc-new", addr, Duration::ZERO).await;
    let got = wait_for(
        "an answer from the new replica",
        Duration::from_secs(10),
        async || {
            let got = http
                .ping(gw.addr, &[("x-user", &user), ("x-session", &session)])
                .await;
            if got.status == 200 && got.host == "svc-new" {
                Ok(got)
            } else {
                Err(got)
            }
        },
    )
    .await;
    let renewed = got
        .session()
        .expect("a new session, not the old one inherited");
    assert_ne!(renewed, session);
    assert_eq!(sessions_metric(&http, gw.admin, "reissued").await, 1);
    let again = http
        .ping(gw.addr, &[("x-user", &user), ("x-session", &renewed)])
        .await;
    assert_eq!((again.host.as_str(), again.session()), ("svc-new", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_lookup_shows_where_a_session_points() {
    let all = backends(3, Duration::ZERO).await;
    let gw = RunningGateway::start(&config(&all.iter().collect::<Vec<_>>(), BY_HEADER), None).await;
    let http = Client2::new();
    let got = http.ping(gw.addr, &[("x-user", "ricky")]).await;
    let value = got.session().unwrap();
    let home = all.iter().find(|b| b.name == got.host).unwrap().addr;
    let page: serde_json::Value = serde_json::from_str(
        &http
            .admin(gw.admin, &format!("/lookup?session={value}"))
            .await,
    )
    .unwrap();
    assert_eq!(page["verifiedBy"], 0, "{page}");
    assert_eq!(page["names"]["endpoint"], home.to_string(), "{page}");
    assert_eq!(page["names"]["sentThere"], true, "{page}");
    assert_eq!(
        page["names"]["cluster"],
        format!("outbound|8080||{HOST}"),
        "{page}"
    );
    let page: serde_json::Value =
        serde_json::from_str(&http.admin(gw.admin, "/lookup?session=nonsense").await).unwrap();
    assert_eq!(page["ignored"], "garbled", "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_still_honours_old_sessions_and_re_signs_them() {
    let all = backends(4, Duration::ZERO).await;
    let yaml = config(&all.iter().collect::<Vec<_>>(), BY_HEADER);
    let old = "the old secret, at least thirty-two characters long";
    let new = "the new secret, at least thirty-two characters long";
    let keys = |secrets: &[&str]| {
        let keys = Arc::new(SessionKeys::from_secrets(secrets).unwrap());
        move |o: &mut gateway::control::RunOptions| o.session_keys = Some(keys.clone())
    };
    let before = RunningGateway::start_with(&yaml, None, keys(&[old])).await;
    let rotated = RunningGateway::start_with(&yaml, None, keys(&[new, old])).await;
    let only_new = RunningGateway::start_with(&yaml, None, keys(&[new])).await;
    let http = Client2::new();
    let first = http.ping(before.addr, &[("x-user", "ricky")]).await;
    let old_value = first.session().unwrap();
    // The rotated gateway honours it (same replica) and gives back a value signed with the new
    // key, which a gateway that knows only the new key honours as it is.
    let at_rotated = http
        .ping(
            rotated.addr,
            &[("x-user", "someone"), ("x-session", &old_value)],
        )
        .await;
    assert_eq!(at_rotated.host, first.host);
    let new_value = at_rotated.session().expect("re-signed with the first key");
    assert_ne!(new_value, old_value);
    assert_eq!(sessions_metric(&http, rotated.admin, "refreshed").await, 1);
    let at_new = http
        .ping(
            only_new.addr,
            &[("x-user", "someone"), ("x-session", &new_value)],
        )
        .await;
    assert_eq!(
        (at_new.host.as_str(), at_new.session()),
        (first.host.as_str(), None)
    );
    // The old value, at a gateway that no longer has the old key: forged, placed by the hash.
    let gone = http
        .ping(
            only_new.addr,
            &[("x-user", "someone"), ("x-session", &old_value)],
        )
        .await;
    assert!(gone.session().is_some(), "re-issued");
    assert_eq!(
        sessions_metric(&http, only_new.admin, "ignored_forged").await,
        1
    );
}
