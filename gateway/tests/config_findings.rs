//! Table-driven: bad documents with the exact errors expected, and `gateway check`'s analysis
//! on small fixture sets with the exact findings expected.

use std::path::{Path, PathBuf};

use gateway::config::{LoadOptions, Loaded, Severity, check, load_source};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Findings (no info lines) for `file`, as `line:col: severity: …`, in file order.
fn findings(file: &str, with_check: bool) -> (Loaded, Vec<String>) {
    let text = std::fs::read_to_string(testdata().join(file)).expect("fixture readable");
    let mut loaded = Loaded::default();
    load_source(Path::new(file), &text, &LoadOptions::default(), &mut loaded);
    let mut all = loaded.diagnostics.clone();
    if with_check {
        all.extend(check(&loaded.config));
    }
    all.sort_by(|a, b| a.location.cmp(&b.location));
    let prefix = format!("{file}:");
    let lines = all
        .iter()
        .filter(|d| d.severity != Severity::Info)
        .map(|d| d.to_string().trim_start_matches(&prefix).to_owned())
        .collect();
    (loaded, lines)
}

/// Every fixture in `dir` has a row in `table`, so a new fixture cannot go untested.
fn assert_table_covers(dir: &str, table: &[(&str, &[&str])]) {
    let mut on_disk: Vec<String> = std::fs::read_dir(testdata().join(dir))
        .expect("fixture dir")
        .map(|e| format!("{dir}/{}", e.expect("entry").file_name().to_string_lossy()))
        .collect();
    on_disk.sort();
    let listed: Vec<String> = table.iter().map(|(f, _)| (*f).to_owned()).collect();
    assert_eq!(on_disk, listed);
}

#[test]
fn bad_documents_report_exactly_the_expected_errors() {
    assert_table_covers("bad", BAD);
    for (file, expected) in BAD {
        let (loaded, got) = findings(file, false);
        assert_eq!(&got, expected, "{file}");
        assert!(loaded.has_errors(), "{file}");
        let c = &loaded.config;
        let kept = c.gateways.len()
            + c.virtual_services.len()
            + c.destination_rules.len()
            + c.service_entries.len();
        assert_eq!(
            kept, 0,
            "{file}: an invalid resource must not reach the model"
        );
    }
}

#[test]
fn check_reports_exactly_the_expected_findings() {
    assert_table_covers("check", CHECK);
    for (file, expected) in CHECK {
        let (_, got) = findings(file, true);
        assert_eq!(&got, expected, "{file}");
    }
}

/// A weighted split whose destinations all hash on one key is sticky per user: `check` says so
/// at info level (the table above leaves info out); one whose keys differ or are missing gets
/// the warning instead, never the info.
#[test]
fn check_explains_sticky_splits_at_info_level() {
    let infos = |file: &str| -> Vec<String> {
        let text = std::fs::read_to_string(testdata().join(file)).expect("fixture readable");
        let mut loaded = Loaded::default();
        load_source(Path::new(file), &text, &LoadOptions::default(), &mut loaded);
        let prefix = format!("{file}:");
        check(&loaded.config)
            .iter()
            .filter(|d| d.severity == Severity::Info)
            .map(|d| d.to_string().trim_start_matches(&prefix).to_owned())
            .collect()
    };
    assert_eq!(
        infos("check/weighted-split-with-hashing.yaml"),
        [
            "22:9: info: VirtualService/sticky-svc: spec.http[0].route: every weighted destination hashes on httpHeaderName x-user, so the split is sticky: each user stays on one destination while the weights stay; a weight change moves only the users whose bucket changed"
        ]
    );
    assert!(infos("check/weighted-split-with-different-keys.yaml").is_empty());
}

/// Each bad document and exactly the findings it must produce (`line:col: severity: …`).
const BAD: &[(&str, &[&str])] = &[
    (
        "bad/bad-durations.yaml",
        &[
            "9:16: error: VirtualService/reviews: spec.http[0].timeout: invalid duration \"5 seconds\": unknown unit \" seconds\" (use ns, us, ms, s, m or h)",
            "12:24: error: VirtualService/reviews: spec.http[0].retries.perTryTimeout: \"500us\" is shorter than 1ms",
        ],
    ),
    (
        "bad/cookie-bad-ttl.yaml",
        &[
            "12:16: error: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl: invalid duration \"1d\": unknown unit \"d\" (use ns, us, ms, s, m or h)",
        ],
    ),
    (
        "bad/h2-upgrade-policy.yaml",
        &[
            "10:26: error: DestinationRule/sticky-svc: spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: \"ALWAYS\" is not one of DEFAULT, DO_NOT_UPGRADE, UPGRADE",
        ],
    ),
    (
        "bad/maglev-table-size-not-prime.yaml",
        &[
            "12:22: error: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: 65536 is not prime",
        ],
    ),
    (
        "bad/maglev-table-size-too-large.yaml",
        &[
            "12:22: error: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: 5000011 must be below 5000011",
        ],
    ),
    (
        "bad/missing-required.yaml",
        &[
            "6:3: error: DestinationRule/no-host: spec.host: host is required",
            "8:13: error: DestinationRule/no-host: spec.subsets[1].name: subset \"v1\" is defined twice",
            "10:1: error: VirtualService/<unnamed>: metadata.name is required",
            "25:9: error: Gateway/ingress: spec.servers[0].port.number: port number is required",
            "26:14: error: Gateway/ingress: spec.servers[0].hosts: at least one host is required",
        ],
    ),
    (
        "bad/no-hash-key.yaml",
        &[
            "10:9: error: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer.consistentHash: a hash key is required: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
        ],
    ),
    (
        "bad/out-of-range.yaml",
        &[
            "9:27: error: DestinationRule/sticky-svc: spec.trafficPolicy.outlierDetection.maxEjectionPercent: 150 is out of range 0..100",
            "10:25: error: DestinationRule/sticky-svc: spec.trafficPolicy.outlierDetection.minHealthPercent: -1 is out of range 0..100",
            "13:19: error: DestinationRule/sticky-svc: spec.trafficPolicy.portLevelSettings[0].port.number: port 70000 is out of range 1..65535",
        ],
    ),
    (
        "bad/regex-does-not-compile.yaml",
        &[
            "11:20: error: VirtualService/reviews: spec.http[0].match[0].uri.regex: regex \"/api/(v1|v2\" does not compile: unclosed group",
            "14:22: error: VirtualService/reviews: spec.http[0].match[0].headers.x-user.regex: regex \"[a-z\" does not compile: unclosed character class",
        ],
    ),
    (
        "bad/ring-hash-and-maglev.yaml",
        &[
            "14:13: error: DestinationRule/sticky-svc: spec.subsets[0].trafficPolicy.loadBalancer.consistentHash: only one of ringHash or maglev may be set",
        ],
    ),
    (
        "bad/simple-and-consistent-hash.yaml",
        &[
            "9:7: error: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer: only one of simple or consistentHash may be set",
        ],
    ),
    (
        "bad/static-endpoint-not-an-ip.yaml",
        &[
            "13:16: error: ServiceEntry/sticky-static: spec.endpoints[0].address: \"sticky-1.example.com\" is not an IP address, which resolution STATIC needs",
            "15:15: error: ServiceEntry/sticky-static: spec.endpoints[0].ports.grpc: \"grpc\" names no port of this ServiceEntry",
        ],
    ),
    (
        "bad/static-without-endpoints.yaml",
        &[
            "6:3: error: ServiceEntry/sticky-static: spec.endpoints: resolution STATIC needs endpoints with addresses",
        ],
    ),
    (
        "bad/tls.yaml",
        &[
            "12:9: error: Gateway/edge: spec.servers[0].tls: credentialName and serverCertificate/privateKey each name the server's certificate: pick one of credentialName, credentialNames, serverCertificate and privateKey, or tlsCertificates",
            "17:29: error: Gateway/edge: spec.servers[0].tls.maxProtocolVersion: maxProtocolVersion TLSV1_2 is below minProtocolVersion TLSV1_3",
            "18:24: error: Gateway/edge: spec.servers[0].tls.cipherSuites[0]: \"ECDHE-RSA-AES128-SHA\": not supported by rustls (no CBC or static-RSA suites)",
            "18:46: error: Gateway/edge: spec.servers[0].tls.cipherSuites[1]: \"ECDHE-RSA-AES128-GCM-SHA265\": not a cipher suite (did you mean ECDHE-RSA-AES128-GCM-SHA256?)",
            "21:19: error: Gateway/edge: spec.servers[1].tls.mode: mode PASSTHROUGH is not supported: this gateway terminates TLS and routes on HTTP; pass-through needs an L4 proxy (see docs/tls.md)",
            "22:49: error: Gateway/edge: spec.servers[2].port.protocol: protocol TLS (TLS routed by SNI, not as HTTP) is not supported: this gateway terminates TLS and routes on HTTP; pass-through needs an L4 proxy (see docs/tls.md)",
            "34:13: error: DestinationRule/sticky-svc: spec.trafficPolicy.tls.mode: mode ISTIO_MUTUAL is not supported: Istio's mesh certificates are issued by istiod, which is not here; use SIMPLE with caCertificates",
            "39:21: error: DestinationRule/sticky-svc: spec.subsets[0].trafficPolicy.tls.mode: mode MUTUAL is not supported yet: the gateway's upstream TLS client presents no client certificate; use SIMPLE, or leave mutual TLS to the endpoint's sidecar",
            "39:29: warning: DestinationRule/sticky-svc: spec.subsets[0].trafficPolicy.tls.credentialName: not supported by this gateway, ignored",
        ],
    ),
    (
        "bad/two-hash-keys.yaml",
        &[
            "10:9: error: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer.consistentHash: only one hash key may be set, found httpHeaderName and httpCookie",
        ],
    ),
    (
        "bad/unknown-fields.yaml",
        &[
            "12:11: error: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer.consistentHash.maglev.tablesize: unknown field `tablesize` (did you mean `tableSize`?)",
            "15:7: error: DestinationRule/sticky-svc: spec.trafficPolicy.outlierDetection.ejectionTime: unknown field `ejectionTime` (did you mean `baseEjectionTime`?)",
        ],
    ),
    (
        "bad/unknown-top-level.yaml",
        &[
            "1:1: error: VirtualService/reviews: spec is required",
            "5:1: error: VirtualService/reviews: specs: unknown field `specs` (did you mean `spec`?)",
        ],
    ),
    (
        "bad/unserved-api-version.yaml",
        &[
            "1:13: error: VirtualService/reviews: apiVersion networking.istio.io/v2 is not served; use networking.istio.io/v1alpha3, v1beta1 or v1",
        ],
    ),
    (
        "bad/weights-not-100.yaml",
        &["10:9: error: VirtualService/reviews: spec.http[0].route: weights sum to 90, not 100"],
    ),
    (
        "bad/wrong-types.yaml",
        &[
            "13:23: error: VirtualService/reviews: spec.http[0].route[0].destination.port.number: invalid type: string \"http\", expected u32",
        ],
    ),
    (
        "bad/yaml-syntax-error.yaml",
        &["7:7: error: YAML syntax error: illegal placement of ':' indicator"],
    ),
];
/// Each small configuration and exactly what loading plus `check` must report.
const CHECK: &[(&str, &[&str])] = &[
    ("check/clean.yaml", &[]),
    (
        "check/cookie-without-ttl.yaml",
        &[
            "32:21: warning: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer.consistentHash.httpCookie: httpCookie user has no ttl, so no cookie is ever generated: only clients that already send user get affinity (add a ttl, e.g. ttl: 3600s)",
        ],
    ),
    (
        "check/dangling-references.yaml",
        &[
            "20:14: error: VirtualService/reviews: spec.gateways[0]: Gateway edge/public-gateways is not defined (did you mean edge/public-gateway?)",
            "26:71: error: VirtualService/reviews: spec.http[0].route[0].destination.subset: subset version2 is not defined by any DestinationRule for reviews.shop.svc.cluster.local (did you mean version-2?)",
            "28:71: error: VirtualService/reviews: spec.http[1].route[0].destination.subset: subset v1 of ratings.shop.svc.cluster.local is not defined: no DestinationRule for ratings.shop.svc.cluster.local",
            "49:9: error: DestinationRule/reviews-again: spec.host: a second DestinationRule for reviews.shop.svc.cluster.local (first: DestinationRule/reviews at check/dangling-references.yaml:36:9); only one takes effect",
        ],
    ),
    (
        "check/hosts-and-ports.yaml",
        &[
            "17:29: warning: VirtualService/reviews: spec.hosts[1]: host reviews.example.com is not served by Gateway default/shop (its servers accept shop.example.com)",
            "23:64: error: VirtualService/reviews: spec.http[0].route[0].destination.port.number: port 9999 is not a port of reviews.internal (ServiceEntry/reviews declares 8080, 8443)",
            "25:24: error: VirtualService/reviews: spec.http[1].route[0].destination: reviews.internal has several ports (8080, 8443), so the destination must name one",
            "33:13: warning: VirtualService/reviews-mesh: spec.gateways: bound to the mesh only, so no gateway serves it",
        ],
    ),
    (
        "check/invalid-hash-header.yaml",
        &[
            "32:25: warning: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName: \"x user\" is not a valid HTTP field name: no request has it, so no request is hashed",
        ],
    ),
    (
        "check/port-level-hashing.yaml",
        &[
            "21:24: warning: VirtualService/sticky-svc: spec.http[0].route[0].destination: DestinationRule/sticky-svc hashes consistently on port 8080 only, but this destination names no port, so the rule's default policy applies (istio/istio#41257) (set port.number: 8080)",
        ],
    ),
    (
        "check/weighted-split-with-different-keys.yaml",
        &[
            "24:9: warning: VirtualService/sticky-svc: spec.http[0].route: consistentHash on sticky-svc.default.svc.cluster.local cannot hold across this split: route[0] hashes on httpHeaderName x-user but route[1] on httpCookie user, so the destination is drawn at random per request and a user moves between destinations (hash every weighted destination on the same key: the split then keeps each user on one destination)",
            "30:9: warning: VirtualService/sticky-svc: spec.http[1].route: consistentHash on sticky-svc.default.svc.cluster.local cannot hold across this split: route[1] hashes on httpHeaderName x-user but route[0] on nothing, so the destination is drawn at random per request and a user moves between destinations (hash every weighted destination on the same key: the split then keeps each user on one destination)",
        ],
    ),
    // Both subsets hash on x-user: a sticky split, explained at info level (below), no warning.
    ("check/weighted-split-with-hashing.yaml", &[]),
];
