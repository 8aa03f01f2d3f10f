use std::path::Path;

use super::*;
use crate::balancer::Policy;
use crate::cluster::Source;
use crate::config::model::HashKey;
use crate::config::{LoadOptions, Loaded, load_source};
use crate::maglev::TableSize;

fn config(yaml: &str) -> Arc<Config> {
    let mut loaded = Loaded::default();
    load_source(
        Path::new("test.yaml"),
        yaml,
        &LoadOptions::default(),
        &mut loaded,
    );
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Arc::new(loaded.config)
}

const ARTICLE: &str = r#"
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: sticky-svc
spec:
  hosts:
  - '*'
  gateways:
  - gateway
  http:
  - route:
    - destination:
        host: sticky-svc.default.svc.cluster.local
        port:
          number: 8080
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: sticky-svc
spec:
  host: sticky-svc.default.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
"#;

const GATEWAY: &str = r#"
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - '*'
"#;

fn parts(uri: &str, host: &str) -> http::request::Parts {
    http::Request::get(uri)
        .header("host", host)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

#[tokio::test]
async fn the_article_routes_with_or_without_its_gateway() {
    for yaml in [ARTICLE.to_owned(), format!("{ARTICLE}{GATEWAY}")] {
        let snap = Snapshot::build(config(&yaml), None, &Context::for_tests()).unwrap();
        let route = snap.route(&parts("/ping", "localhost")).expect("a route");
        assert_eq!(&*route.label, "default/sticky-svc/0");
        let cluster = &route.clusters[0];
        assert_eq!(
            &*cluster.spec.name,
            "outbound|8080||sticky-svc.default.svc.cluster.local"
        );
        assert_eq!(
            cluster.spec.policy,
            Policy::Maglev(TableSize::DEFAULT),
            "Maglev by default"
        );
        assert_eq!(
            route.hash_keys[0],
            Some(HashKey::Header(http::HeaderName::from_static("x-user")))
        );
        assert!(matches!(&cluster.spec.source, Source::Dns(t) if t[0].port == 8080));
    }
}

#[tokio::test]
async fn a_gateway_bound_service_is_not_served_when_another_gateway_is_picked() {
    let cfg = config(&format!("{ARTICLE}{GATEWAY}"));
    let ctx = Context {
        gateway: Some("other".into()),
        ..Context::for_tests()
    };
    let snap = Snapshot::build(cfg.clone(), None, &ctx).unwrap();
    assert!(snap.route(&parts("/ping", "localhost")).is_none());
    let ctx = Context {
        gateway: Some("default/gateway".into()),
        ..Context::for_tests()
    };
    let snap = Snapshot::build(cfg, None, &ctx).unwrap();
    assert!(snap.route(&parts("/ping", "localhost")).is_some());
}

const STATIC: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: backends
spec:
  hosts: [backends.local]
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    labels: {version: v1}
  - address: 127.0.0.2
    labels: {version: v2}
    weight: 3
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: backends
spec:
  host: backends.local
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          useSourceIp: true
          ringHash: {minimumRingSize: 2048}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: backends
spec:
  hosts: [backends.local]
  http:
  - match:
    - headers:
        x-canary: {exact: "1"}
    route:
    - destination: {host: backends.local, subset: v2}
  - route:
    - destination: {host: backends.local}
"#;

#[tokio::test]
async fn static_endpoints_subsets_and_policy_precedence() {
    let snap = Snapshot::build(config(STATIC), None, &Context::for_tests()).unwrap();
    let mut canary = parts("/", "backends.local:8080");
    canary.headers.insert("x-canary", "1".parse().unwrap());
    let route = snap.route(&canary).unwrap();
    let v2 = &route.clusters[0];
    assert_eq!(&*v2.spec.name, "outbound|8080|v2|backends.local");
    assert_eq!(route.hash_keys[0], Some(HashKey::SourceIp));
    assert!(matches!(v2.spec.policy, Policy::RingHash(_)));
    let Source::Static(set) = &v2.spec.source else {
        panic!("static")
    };
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].addr, Some("127.0.0.2:8080".parse().unwrap()));
    assert_eq!(set[0].weight, 3);

    let all = &snap.route(&parts("/", "backends.local")).unwrap().clusters[0];
    assert_eq!(all.spec.policy, Policy::RoundRobin);
    assert_eq!(
        all.state().endpoints.len(),
        2,
        "a static cluster is ready at once"
    );
    assert!(
        snap.route(&parts("/", "elsewhere.example")).is_none(),
        "no route for other hosts"
    );
    assert!(
        snap.cluster("backends.local").is_some(),
        "clusters can be found by host"
    );
}

#[tokio::test]
async fn unchanged_clusters_survive_a_rebuild() {
    let ctx = Context::for_tests();
    let first = Snapshot::build(config(STATIC), None, &ctx).unwrap();
    let second = Snapshot::build(config(STATIC), Some(&first), &ctx).unwrap();
    for (name, cluster) in &first.clusters {
        assert!(
            Arc::ptr_eq(cluster, &second.clusters[name]),
            "{name} was rebuilt"
        );
    }
    let edited = STATIC.replace("ROUND_ROBIN", "RANDOM");
    let third = Snapshot::build(config(&edited), Some(&second), &ctx).unwrap();
    let name = "outbound|8080||backends.local";
    assert!(
        !Arc::ptr_eq(&second.clusters[name], &third.clusters[name]),
        "a changed spec rebuilds"
    );
    let v2 = "outbound|8080|v2|backends.local";
    assert!(
        Arc::ptr_eq(&second.clusters[v2], &third.clusters[v2]),
        "the subset kept its policy"
    );
}

#[tokio::test]
async fn a_new_hash_key_keeps_the_running_cluster() {
    let ctx = Context::for_tests();
    let first = Snapshot::build(config(STATIC), None, &ctx).unwrap();
    let edited = STATIC.replace("useSourceIp: true", "httpHeaderName: x-session");
    let second = Snapshot::build(config(&edited), Some(&first), &ctx).unwrap();
    let v2 = "outbound|8080|v2|backends.local";
    assert!(
        Arc::ptr_eq(&first.clusters[v2], &second.clusters[v2]),
        "endpoints, ejections and pool are kept"
    );
    let mut canary = parts("/", "backends.local");
    canary.headers.insert("x-canary", "1".parse().unwrap());
    let route = second.route(&canary).unwrap();
    assert_eq!(
        route.hash_keys[0],
        Some(HashKey::Header(http::HeaderName::from_static("x-session")))
    );
    assert_eq!(second.hash_key(v2), route.hash_keys[0].as_ref());
}

#[tokio::test]
async fn an_undefined_subset_is_an_error() {
    let yaml = STATIC.replace("subset: v2}", "subset: v9}");
    let err = Snapshot::build(config(&yaml), None, &Context::for_tests());
    assert!(err.is_err());
    // Typed, with the resource, the field and where it is written.
    let err = *err.unwrap_err();
    let text = err.to_string();
    match err {
        SnapshotError::Destination {
            location,
            field,
            source: clusters::SpecError::UndefinedSubset { subset, .. },
            ..
        } => {
            assert_eq!(subset, "v9");
            assert!(field.ends_with(".destination"), "{field}");
            assert!(location.line > 1, "{location}");
        }
        other => panic!("not an undefined subset: {other:?}"),
    }
    assert!(
        text.contains("subset v9 of backends.local is not defined"),
        "{text}"
    );
}

/// The article's VirtualService (`hosts: ['*']`, bound to `gateway`) behind a Gateway whose
/// one server accepts `server_hosts`; `vs_namespace` moves the VirtualService.
fn bound(server_hosts: &str, vs_namespace: &str) -> String {
    let vs = ARTICLE.replace(
        "  name: sticky-svc\nspec:\n  hosts:",
        &format!("  name: sticky-svc\n  namespace: {vs_namespace}\nspec:\n  hosts:"),
    );
    let vs = vs.replace("  - gateway\n", "  - default/gateway\n");
    format!(
        "{vs}{}",
        GATEWAY.replace("    - '*'", &format!("    - {server_hosts}"))
    )
}

fn served(snap: &Snapshot, host: &str) -> bool {
    snap.route(&parts("/ping", host)).is_some()
}

#[tokio::test]
async fn a_bound_service_is_served_only_for_the_hosts_its_gateway_accepts() {
    let snap = Snapshot::build(
        config(&bound("shop.example.com", "default")),
        None,
        &Context::for_tests(),
    )
    .unwrap();
    assert!(served(&snap, "shop.example.com"));
    assert!(
        served(&snap, "SHOP.example.com:8080"),
        "case and port do not matter"
    );
    assert!(
        !served(&snap, "other.example.com"),
        "outside the server's hosts"
    );
    assert_eq!(
        snap.services[0].hosts,
        ["shop.example.com"],
        "`*` narrowed to the server's host"
    );

    let snap = Snapshot::build(
        config(&bound("'*.example.com'", "default")),
        None,
        &Context::for_tests(),
    )
    .unwrap();
    assert!(served(&snap, "a.example.com"));
    assert!(
        !served(&snap, "example.com"),
        "a wildcard needs a label before it"
    );
    assert!(!served(&snap, "localhost"));
}

#[tokio::test]
async fn server_hosts_with_a_namespace_admit_only_that_namespace() {
    let build = |server: &str, ns: &str| {
        Snapshot::build(config(&bound(server, ns)), None, &Context::for_tests()).unwrap()
    };
    assert!(served(&build("'prod/*'", "prod"), "localhost"));
    assert!(!served(&build("'prod/*'", "default"), "localhost"));
    assert!(
        build("'prod/*'", "default").services.is_empty(),
        "no host left: not served at all"
    );
    assert!(served(&build("'*/*'", "prod"), "localhost"));
    // `./` is the Gateway's own namespace (default here).
    assert!(served(&build("'./*'", "default"), "localhost"));
    assert!(!served(&build("'./*'", "prod"), "localhost"));
}

#[tokio::test]
async fn mesh_services_and_picked_gateways_the_config_lacks_keep_all_their_hosts() {
    let yaml = bound("shop.example.com", "default")
        .replace("  - default/gateway\n", "  - default/gateway\n  - mesh\n");
    let snap = Snapshot::build(config(&yaml), None, &Context::for_tests()).unwrap();
    assert!(served(&snap, "other.example.com"), "also bound to mesh");

    let ctx = Context {
        gateway: Some("default/gateway".into()),
        ..Context::for_tests()
    };
    let snap = Snapshot::build(config(&bound("shop.example.com", "default")), None, &ctx).unwrap();
    assert!(
        !served(&snap, "other.example.com"),
        "the picked Gateway is held: it limits"
    );
    let snap = Snapshot::build(config(ARTICLE), None, &ctx).unwrap();
    assert!(
        served(&snap, "other.example.com"),
        "not held: its servers are unknown"
    );
}

#[test]
fn host_overlap_keeps_the_more_specific_name() {
    use crate::config::model::host_overlap;
    assert_eq!(host_overlap("*", "a.example.com"), Some("a.example.com"));
    assert_eq!(host_overlap("a.example.com", "*"), Some("a.example.com"));
    assert_eq!(
        host_overlap("*.example.com", "*.a.example.com"),
        Some("*.a.example.com")
    );
    assert_eq!(host_overlap("*", "*.example.com"), Some("*.example.com"));
    assert_eq!(
        host_overlap("A.example.com", "a.EXAMPLE.com"),
        Some("a.EXAMPLE.com")
    );
    assert_eq!(host_overlap("*.example.com", "example.com"), None);
    assert_eq!(host_overlap("a.example.com", "b.example.com"), None);
    assert_eq!(host_overlap("*.a.com", "*.b.com"), None);
    assert_eq!(
        host_overlap("*.é.com", "x.com"),
        None,
        "no panic on non-ASCII"
    );
}

#[test]
fn a_split_is_sticky_only_when_every_weighted_destination_shares_its_key() {
    let user = Some(HashKey::Header(http::HeaderName::from_static("x-user")));
    let ip = Some(HashKey::SourceIp);
    let key = |weights: &[u32], keys: &[Option<HashKey>]| split_key(weights.iter().copied(), keys);
    assert_eq!(key(&[90, 10], &[user.clone(), user.clone()]), user);
    assert_eq!(
        key(&[50, 0, 50], &[user.clone(), None, user.clone()]),
        user,
        "a destination of weight 0 takes no part"
    );
    assert_eq!(
        key(&[100], std::slice::from_ref(&user)),
        None,
        "one destination: no split"
    );
    assert_eq!(key(&[100, 0], &[user.clone(), ip.clone()]), None);
    assert_eq!(key(&[50, 50], &[user.clone(), ip]), None, "keys differ");
    assert_eq!(key(&[50, 50], &[None, user]), None, "a key missing");
    assert_eq!(key(&[50, 50], &[None, None]), None);
}

#[tokio::test]
async fn a_labelled_service_gives_sessions_even_beside_a_service_entry_without_labels() {
    use crate::config::model::Carrier;
    let service = r#"
---
apiVersion: v1
kind: Service
metadata:
  name: sticky-svc
  labels: {istio.io/persistent-session-header: x-session}
spec: {ports: [{port: 8080}]}
"#;
    let entry = r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sticky-svc}
spec:
  hosts: [sticky-svc.default.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"#;
    let header = Carrier::Header("x-session".parse().unwrap());
    for yaml in [
        format!("{ARTICLE}{service}"),
        format!("{ARTICLE}{entry}{service}"),
    ] {
        let snap = Snapshot::build(config(&yaml), None, &Context::for_tests()).unwrap();
        let route = snap.route(&parts("/ping", "localhost")).unwrap();
        assert_eq!(
            route.sessions[0].as_ref().map(|p| &p.carrier),
            Some(&header),
            "{yaml}"
        );
        assert!(snap.has_sessions());
    }
    let snap = Snapshot::build(config(ARTICLE), None, &Context::for_tests()).unwrap();
    assert!(!snap.has_sessions());
}
