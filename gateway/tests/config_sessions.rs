//! Persistent sessions asked for by Istio's labels on a ServiceEntry or a Kubernetes Service:
//! read, checked, and said by `gateway check`.

use std::path::Path;
use std::time::Duration;

use gateway::config::model::{Carrier, SessionPolicy};
use gateway::config::{LoadOptions, Loaded, Severity, check, load_source};

fn load(yaml: &str) -> Loaded {
    let mut loaded = Loaded::default();
    load_source(
        Path::new("s.yaml"),
        yaml,
        &LoadOptions::default(),
        &mut loaded,
    );
    loaded
}

/// Findings of `severity` (load and check), as `line:col: message`.
fn said(loaded: &Loaded, severity: Severity) -> Vec<String> {
    loaded
        .diagnostics
        .iter()
        .cloned()
        .chain(check(&loaded.config))
        .filter(|d| d.severity == severity)
        .map(|d| format!("{}:{}: {}", d.location.line, d.location.column, d.message))
        .collect()
}

fn service_entry(labels: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: sticky-svc
  labels:
{labels}
  annotations:
{annotations}
spec:
  hosts: [sticky-svc.default.svc.cluster.local]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.0.0.1}}]
"
    )
}

fn session(loaded: &Loaded) -> Option<&SessionPolicy> {
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.config.service_entries[0].session.as_ref()
}

#[test]
fn the_cookie_label_with_its_path_and_the_timeouts_are_read() {
    let loaded = load(&service_entry(
        "    istio.io/persistent-session: sticky-session:/app",
        "    sticky.dev/session-idle-timeout: 30m\n    sticky.dev/session-absolute-timeout: 0s\n    sticky.dev/session-cookie-lifetime: Permanent",
    ));
    assert_eq!(
        session(&loaded),
        Some(&SessionPolicy {
            carrier: Carrier::Cookie {
                name: "sticky-session".into(),
                path: "/app".into(),
                permanent: true,
            },
            idle_timeout: Some(Duration::from_secs(1800)),
            absolute_timeout: Some(Duration::ZERO),
        })
    );
    let info = said(&loaded, Severity::Info).join("\n");
    assert!(
        info.contains("persistent sessions for sticky-svc.default.svc.cluster.local: cookie sticky-session (Path=/app, kept until the absolute timeout), idle timeout 30m, absolute timeout none"),
        "{info}"
    );
}

#[test]
fn the_header_label_is_read_and_the_cookie_wins_when_both_are_set() {
    let loaded = load(&service_entry(
        "    istio.io/persistent-session-header: x-session",
        "    {}",
    ));
    let policy = session(&loaded).expect("a policy");
    assert_eq!(
        policy.carrier,
        Carrier::Header("x-session".parse().unwrap())
    );
    assert_eq!((policy.idle_timeout, policy.absolute_timeout), (None, None));

    let loaded = load(&service_entry(
        "    istio.io/persistent-session: c\n    istio.io/persistent-session-header: x-session",
        "    {}",
    ));
    assert_eq!(
        session(&loaded).map(|p| &p.carrier),
        Some(&Carrier::Cookie {
            name: "c".into(),
            path: "/".into(),
            permanent: false
        })
    );
    assert_eq!(
        said(&loaded, Severity::Warning),
        [
            "7:41: ignored: istio.io/persistent-session is set too, and the cookie wins (as in Istio)"
        ]
    );
}

#[test]
fn bad_session_labels_are_errors_at_their_line() {
    for (labels, annotations, expected) in [
        (
            "    istio.io/persistent-session: \"bad name\"",
            "    {}",
            "6:34: \"bad name\" is not a cookie name (RFC 6265 token)",
        ),
        (
            "    istio.io/persistent-session: c:app",
            "    {}",
            "6:34: cookie path \"app\" must start with / and hold no ';', space or control",
        ),
        (
            "    istio.io/persistent-session-header: \"x session\"",
            "    {}",
            "6:41: \"x session\" is not a header name",
        ),
        (
            "    istio.io/persistent-session: c",
            "    sticky.dev/session-idle-timeout: soon",
            "8:38: invalid duration \"soon\": expected a number and a unit like 5s, 1.5s, 100ms, 1h30m",
        ),
        (
            "    istio.io/persistent-session: c",
            "    sticky.dev/session-cookie-lifetime: Forever",
            "8:41: \"Forever\": Session or Permanent",
        ),
    ] {
        let loaded = load(&service_entry(labels, annotations));
        let errors = said(&loaded, Severity::Error);
        assert_eq!(errors, [expected], "{labels} {annotations}");
        assert!(loaded.config.service_entries.is_empty(), "not kept");
    }
}

#[test]
fn a_kubernetes_service_label_asks_for_sessions_too() {
    let loaded = load(
        "apiVersion: v1
kind: Service
metadata:
  name: sticky-svc
  namespace: shop
  labels: {istio.io/persistent-session-header: x-session}
spec: {ports: [{port: 8080}]}
",
    );
    let svc = &loaded.config.kubernetes_services[0];
    assert_eq!(svc.host, "sticky-svc.shop.svc.cluster.local");
    assert_eq!(
        svc.session.as_ref().map(|p| &p.carrier),
        Some(&Carrier::Header("x-session".parse().unwrap()))
    );
    let info = said(&loaded, Severity::Info).join("\n");
    assert!(
        info.contains(
            "persistent sessions for sticky-svc.shop.svc.cluster.local: header x-session"
        ),
        "{info}"
    );
}
