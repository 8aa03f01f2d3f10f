//! Valid documents using every supported field: what the data path will read from the model.

use std::path::Path;
use std::time::Duration;

use gateway::config::model::{
    ClientTls, ClientTlsSettings, ConnectionPool, HashAlgorithm, HashKey, LoadBalancer,
    OutlierDetection, Resolution, RetryPolicy, RouteAction, ServerCredential, ServerTlsMode,
    SimpleLb, StringMatcher, TlsVersion,
};
use gateway::config::{Config, LoadOptions, Loaded, Severity, load_source};

fn load(text: &str) -> Config {
    let mut loaded = Loaded::default();
    load_source(
        Path::new("model.yaml"),
        text,
        &LoadOptions::default(),
        &mut loaded,
    );
    let not_info: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity != Severity::Info)
        .collect();
    assert!(not_info.is_empty(), "{not_info:#?}");
    loaded.config
}

fn is_match(m: &StringMatcher, value: &str) -> bool {
    match m {
        StringMatcher::Exact(e) => e == value,
        StringMatcher::Prefix(p) => value.starts_with(p.as_str()),
        StringMatcher::Regex(re) => re.is_match(value),
        StringMatcher::Present => true,
    }
}

#[test]
fn virtual_service_with_every_supported_field() {
    let config = load(
        r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: shop, namespace: prod}
spec:
  hosts: [shop.example.com]
  gateways: [edge/public, ingress, mesh]
  http:
    - name: users
      match:
        - uri: {regex: "/users/[0-9]+"}
          method: {exact: GET}
          authority: {prefix: shop}
          headers:
            X-User: {regex: "[a-z]+"}
            x-debug: {}
          queryParams: {v: {exact: "2"}}
          withoutHeaders: {x-canary: {exact: "1"}}
          ignoreUriCase: true
      route:
        - destination: {host: users, subset: v1, port: {number: 8080}}
          weight: 75
          headers: {response: {set: {x-route: v1}}}
        - destination: {host: users, subset: v2, port: {number: 8080}}
          weight: 25
      timeout: 1.5s
      retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,reset,503"}
      headers:
        request: {set: {x-env: prod}, add: {x-trace: "1"}, remove: [x-internal]}
      rewrite: {uri: /v2/users, authority: users.internal}
      fault:
        delay: {fixedDelay: 5s, percentage: {value: 0.1}}
        abort: {httpStatus: 503, percentage: {value: 1}}
    - name: teapot
      directResponse: {status: 418, body: {string: "short and stout"}}
"#,
    );
    let [vs] = config.virtual_services.as_slice() else {
        panic!("one VirtualService")
    };
    assert_eq!(vs.hosts, ["shop.example.com"]);
    assert_eq!(vs.gateways, ["edge/public", "prod/ingress", "mesh"]);
    let [users, teapot] = vs.http.as_slice() else {
        panic!("two routes")
    };
    let m = &users.matches[0];
    let uri = m.uri.as_ref().expect("uri");
    assert!(is_match(uri, "/users/42"));
    assert!(
        !is_match(uri, "/users/42/orders"),
        "Envoy regexes match the whole value"
    );
    assert!(!is_match(uri, "/api/users/42"));
    assert!(
        is_match(uri, "/USERS/42"),
        "ignoreUriCase applies to a uri regex too"
    );
    assert_eq!(
        m.headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["x-user", "x-debug"]
    );
    assert!(is_match(&m.headers[0].1, "ricky"));
    assert!(!is_match(&m.headers[0].1, "Ricky"));
    assert!(matches!(m.headers[1].1, StringMatcher::Present));
    assert_eq!(m.query_params.len(), 1);
    assert_eq!(m.without_headers.len(), 1);
    assert!(m.ignore_uri_case);
    let RouteAction::Forward(dests) = &users.action else {
        panic!("forward")
    };
    assert_eq!(dests.iter().map(|d| d.weight).collect::<Vec<_>>(), [75, 25]);
    assert_eq!(dests[0].destination.host, "users.prod.svc.cluster.local");
    assert_eq!(dests[1].destination.subset.as_deref(), Some("v2"));
    assert_eq!(
        dests[0].headers.response.set,
        [("x-route".to_owned(), "v1".to_owned())]
    );
    assert_eq!(users.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(
        users.retries,
        RetryPolicy {
            attempts: 3,
            per_try_timeout: Some(Duration::from_millis(500)),
            retry_on: vec!["5xx".into(), "reset".into(), "503".into()],
        }
    );
    assert_eq!(users.headers.request.remove, ["x-internal"]);
    let rewrite = users.rewrite.as_ref().expect("rewrite");
    assert_eq!(rewrite.authority.as_deref(), Some("users.internal"));
    let fault = users.fault.as_ref().expect("fault");
    assert_eq!(
        fault.delay.as_ref().map(|d| (d.fixed, d.percent)),
        Some((Duration::from_secs(5), 0.1))
    );
    assert_eq!(
        fault.abort.as_ref().map(|a| (a.status, a.percent)),
        Some((503, 1.0))
    );
    assert!(
        matches!(&teapot.action, RouteAction::DirectResponse { status: 418, body: Some(b) } if b == "short and stout")
    );
    assert_eq!(teapot.retries, RetryPolicy::default());
    assert_eq!(teapot.retries.attempts, 2);
}

#[test]
fn destination_rule_with_every_supported_field() {
    let config = load(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: users, namespace: prod}
spec:
  host: users
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, path: /, ttl: 1h}
        ringHash: {minimumRingSize: 4096}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 1, idleTimeout: 30s, h2UpgradePolicy: UPGRADE, http2MaxRequests: 50}
    outlierDetection: {consecutive5xxErrors: 2, consecutiveGatewayErrors: 1, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 50, minHealthPercent: 20}
    portLevelSettings:
      - port: {number: 9090}
        loadBalancer: {consistentHash: {useSourceIp: true, maglev: {}}}
  subsets:
    - name: v1
      labels: {version: v1}
      trafficPolicy:
        loadBalancer: {consistentHash: {httpQueryParameterName: user, maglev: {tableSize: 655373}}}
        outlierDetection: {}
    - name: v2
      labels: {version: v2}
      trafficPolicy:
        loadBalancer: {simple: ROUND_ROBIN}
"#,
    );
    let [dr] = config.destination_rules.as_slice() else {
        panic!("one DestinationRule")
    };
    assert_eq!(dr.host, "users.prod.svc.cluster.local");
    let policy = &dr.traffic_policy;
    assert_eq!(
        policy.load_balancer,
        Some(LoadBalancer::ConsistentHash {
            key: HashKey::Cookie {
                name: "user".into(),
                path: Some("/".into()),
                ttl: Some(Duration::from_secs(3600))
            },
            algorithm: HashAlgorithm::RingHash {
                minimum_ring_size: 4096
            },
        })
    );
    assert_eq!(
        policy.connection_pool,
        ConnectionPool {
            connect_timeout: Duration::from_millis(250),
            max_connections: Some(100),
            http1_max_pending_requests: Some(10),
            http2_max_requests: Some(50),
            max_requests_per_connection: Some(1),
            idle_timeout: Duration::from_secs(30),
            h2_upgrade: Some(true),
        }
    );
    assert_eq!(
        policy.outlier_detection,
        Some(OutlierDetection {
            consecutive_5xx_errors: 2,
            consecutive_gateway_errors: Some(1),
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_secs(60),
            max_ejection_percent: 50,
            min_health_percent: 20,
        })
    );
    let [port] = policy.port_level_settings.as_slice() else {
        panic!("one port setting")
    };
    assert_eq!(port.port, 9090);
    assert_eq!(
        port.load_balancer,
        Some(LoadBalancer::ConsistentHash {
            key: HashKey::SourceIp,
            algorithm: HashAlgorithm::Maglev { table_size: 65_537 }
        })
    );
    let v1 = dr.subsets[0].traffic_policy.as_ref().expect("v1 policy");
    assert_eq!(
        v1.load_balancer,
        Some(LoadBalancer::ConsistentHash {
            key: HashKey::QueryParameter("user".into()),
            algorithm: HashAlgorithm::Maglev {
                table_size: 655_373
            },
        })
    );
    let defaults = v1
        .outlier_detection
        .as_ref()
        .expect("outlierDetection: {} turns ejection on with defaults");
    assert_eq!(
        (
            defaults.consecutive_5xx_errors,
            defaults.interval,
            defaults.base_ejection_time,
            defaults.max_ejection_percent
        ),
        (5, Duration::from_secs(10), Duration::from_secs(30), 10)
    );
    assert_eq!(
        dr.subsets[1].labels.get("version").map(String::as_str),
        Some("v2")
    );
    let v2 = dr.subsets[1].traffic_policy.as_ref().expect("v2 policy");
    assert_eq!(
        v2.load_balancer,
        Some(LoadBalancer::Simple(SimpleLb::RoundRobin))
    );
}

#[test]
fn service_entry_and_gateway() {
    let config = load(
        r#"
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: sticky}
spec:
  hosts: [Sticky.Local]
  ports: [{number: 8080, name: http, protocol: http, targetPort: 18080}]
  resolution: STATIC
  endpoints:
    - {address: 127.0.0.1, ports: {http: 18081}, labels: {version: v1}, weight: 3}
    - {address: "::1"}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
    - {port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"], name: main}
"#,
    );
    let [se] = config.service_entries.as_slice() else {
        panic!("one ServiceEntry")
    };
    assert_eq!(se.hosts, ["sticky.local"]);
    assert_eq!(se.resolution, Resolution::Static);
    assert_eq!(se.ports[0].protocol.as_deref(), Some("HTTP"));
    assert_eq!(se.ports[0].target_port, Some(18080));
    assert_eq!(se.endpoints[0].ports, [("http".to_owned(), 18081)]);
    assert_eq!(se.endpoints[0].weight, 3);
    assert_eq!(se.endpoints[1].weight, 1);
    let [gw] = config.gateways.as_slice() else {
        panic!("one Gateway")
    };
    assert_eq!(gw.servers[0].port, 8080);
    assert_eq!(gw.servers[0].hosts, ["*"]);
    assert_eq!(
        gw.selector.get("istio").map(String::as_str),
        Some("ingressgateway")
    );
}

#[test]
fn zero_reads_as_unset_like_proto3() {
    let config = load(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a]
  http: [{route: [{destination: {host: a}, weight: 0}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec:
  host: a
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 0}, http: {http1MaxPendingRequests: 0}}
    outlierDetection: {maxEjectionPercent: 0}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, weight: 0}]
"#,
    );
    let RouteAction::Forward(dests) = &config.virtual_services[0].http[0].action else {
        panic!("forward")
    };
    assert_eq!(
        dests[0].weight, 100,
        "a lone destination with weight 0 takes all traffic"
    );
    let policy = &config.destination_rules[0].traffic_policy;
    assert_eq!(policy.connection_pool.max_connections, None);
    assert_eq!(policy.connection_pool.http1_max_pending_requests, None);
    assert_eq!(
        policy
            .outlier_detection
            .as_ref()
            .map(|o| o.max_ejection_percent),
        Some(10)
    );
    assert_eq!(config.service_entries[0].endpoints[0].weight, 1);
}

/// A folder laid out as kubelet mounts a ConfigMap: each file is read once, through its
/// visible symlink, not again under `..data/` or `..<timestamp>/`.
#[test]
fn a_configmap_volume_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("..2026_11_26_00_00_00.000000001");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("dr.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {host: a}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(data.file_name().unwrap(), dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/dr.yaml", dir.path().join("dr.yaml")).unwrap();
    let loaded =
        gateway::config::load_paths(&[dir.path().to_path_buf()], &LoadOptions::default()).unwrap();
    assert_eq!(loaded.config.destination_rules.len(), 1);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
}

/// testdata/supported/tls.yaml: what the TLS listener and the upstream clients will read.
#[test]
fn tls_at_the_edge_and_to_the_endpoints() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/supported/tls.yaml");
    let config = load(&std::fs::read_to_string(file).expect("fixture readable"));
    let servers = &config.gateways[0].servers;
    assert!(servers[0].https_redirect && servers[0].tls.is_none());
    let site = servers[1].tls.as_ref().expect("HTTPS");
    assert_eq!(site.mode, ServerTlsMode::Simple);
    assert_eq!(
        site.credential,
        ServerCredential::Named("shop-example-com".into())
    );
    assert!(!servers[1].https_redirect);
    let partners = servers[2].tls.as_ref().expect("HTTPS");
    assert_eq!(partners.mode, ServerTlsMode::Mutual);
    assert_eq!(
        partners.ca_certificates.as_deref(),
        Some(Path::new("/etc/sticky/certs/partners/ca.crt"))
    );
    assert_eq!(partners.subject_alt_names.len(), 2);
    assert_eq!(
        (partners.min_version, partners.max_version),
        (TlsVersion::V1_2, TlsVersion::V1_3)
    );
    assert_eq!(
        partners.cipher_suites,
        [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ]
    );
    let admin = servers[3].tls.as_ref().expect("HTTPS");
    assert_eq!(
        (admin.mode, &admin.credential),
        (
            ServerTlsMode::OptionalMutual,
            &ServerCredential::Named("shop-admin".into())
        )
    );
    let legacy = servers[4].tls.as_ref().expect("HTTPS");
    assert!(matches!(legacy.credential, ServerCredential::Files { .. }));
    assert!(legacy.ca_certificates.is_some());

    let payments = &config.destination_rules[0];
    let sni = |subset: Option<&str>, port: u16| {
        payments.client_tls(subset, port).map(|tls| {
            let ClientTls::Simple(s) = tls;
            (s.sni.clone().unwrap_or_default(), s.insecure_skip_verify)
        })
    };
    assert_eq!(
        payments.client_tls(None, 443),
        Some(&ClientTls::Simple(ClientTlsSettings {
            ca_certificates: Some("/etc/sticky/certs/payments-ca.crt".into()),
            sni: Some("api.payments.example.net".into()),
            subject_alt_names: vec!["api.payments.example.net".into()],
            insecure_skip_verify: false,
        }))
    );
    assert_eq!(
        sni(None, 8443),
        Some(("reports.payments.example.net".into(), false))
    );
    assert_eq!(sni(None, 9090), None);
    assert_eq!(
        sni(Some("live"), 443),
        Some(("api.payments.example.net".into(), false))
    );
    assert_eq!(
        sni(Some("eu"), 8443),
        Some(("reports.eu.payments.example.net".into(), false))
    );
    assert_eq!(
        sni(Some("sandbox"), 443),
        Some(("sandbox.payments.example.net".into(), true))
    );
    // The subset has port-level settings of its own, so the rule's (DISABLE on 9090) are not
    // used: the subset's TLS applies.
    assert_eq!(
        sni(Some("sandbox"), 9090),
        Some(("sandbox.payments.example.net".into(), true))
    );
}
