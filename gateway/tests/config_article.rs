//! The seed article's YAML, document by document: each parses into the model, and `gateway
//! check` flags the article's own DestinationRule bug (`sticky-service` vs `sticky-svc`).

use std::path::{Path, PathBuf};
use std::process::Command;

use gateway::config::model::{
    Destination, HashAlgorithm, HashKey, LoadBalancer, RouteAction, SimpleLb,
};
use gateway::config::{LoadOptions, Loaded, Severity, check, load_paths, load_source};

fn article(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/article")
        .join(file)
}

fn load(paths: &[PathBuf]) -> Loaded {
    load_paths(paths, &LoadOptions::default()).expect("fixtures readable")
}

#[test]
fn workload_documents_are_skipped_with_info_lines() {
    let loaded = load(&[article("deployment-and-service.yaml")]);
    let lines: Vec<_> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.severity, d.location.line, d.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (
                Severity::Info,
                3,
                "skipped apps/v1 Deployment sticky-svc: not an Istio networking resource"
            ),
            (
                Severity::Info,
                29,
                "skipped v1 Service sticky-svc: not an Istio networking resource"
            ),
        ]
    );
    let services: Vec<_> = loaded
        .config
        .kubernetes_services
        .iter()
        .map(|s| (s.meta.name.as_str(), s.host.as_str()))
        .collect();
    assert_eq!(
        services,
        [("sticky-svc", "sticky-svc.default.svc.cluster.local")]
    );
}

#[test]
fn virtual_service_routes_every_host_to_sticky_svc() {
    let loaded = load(&[article("virtual-service.yaml")]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let [vs] = loaded.config.virtual_services.as_slice() else {
        panic!("one VirtualService")
    };
    assert_eq!(vs.meta.resource(), "VirtualService/sticky-svc");
    assert_eq!(vs.hosts, ["*"]);
    assert_eq!(vs.gateways, ["default/gateway"]);
    let [route] = vs.http.as_slice() else {
        panic!("one http route")
    };
    assert!(route.matches.is_empty());
    assert_eq!(
        route.retries.attempts, 2,
        "Istio's default retries apply when unset"
    );
    let RouteAction::Forward(dests) = &route.action else {
        panic!("a forward route")
    };
    assert_eq!(dests.len(), 1);
    assert_eq!(dests[0].weight, 100);
    assert_eq!(
        dests[0].destination,
        Destination {
            host: "sticky-svc.default.svc.cluster.local".into(),
            subset: None,
            port: Some(8080)
        }
    );
}

#[test]
fn consistent_hash_rule_hashes_on_x_user() {
    let loaded = load(&[article("destination-rule-consistent-hash.yaml")]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let [dr] = loaded.config.destination_rules.as_slice() else {
        panic!("one DestinationRule")
    };
    assert_eq!(dr.host, "sticky-svc.default.svc.cluster.local");
    assert_eq!(
        dr.traffic_policy.load_balancer,
        Some(LoadBalancer::ConsistentHash {
            key: HashKey::Header(http::HeaderName::from_static("x-user")),
            algorithm: HashAlgorithm::Default
        })
    );
}

#[test]
fn least_conn_rule_parses_with_a_deprecation_warning() {
    let loaded = load(&[article("destination-rule-least-conn.yaml")]);
    assert!(
        !loaded.has_errors(),
        "the rule is valid on its own: {:?}",
        loaded.diagnostics
    );
    let [warning] = loaded.diagnostics.as_slice() else {
        panic!("{:?}", loaded.diagnostics)
    };
    assert_eq!(warning.severity, Severity::Warning);
    assert_eq!(
        warning.path.as_deref(),
        Some("spec.trafficPolicy.loadBalancer.simple")
    );
    let [dr] = loaded.config.destination_rules.as_slice() else {
        panic!("one DestinationRule")
    };
    assert_eq!(dr.host, "sticky-service.default.svc.cluster.local");
    assert_eq!(
        dr.traffic_policy.load_balancer,
        Some(LoadBalancer::Simple(SimpleLb::LeastRequest))
    );
}

#[test]
fn check_flags_the_articles_wrong_host_and_suggests_the_near_miss() {
    let loaded = load(&[
        article("virtual-service.yaml"),
        article("destination-rule-least-conn.yaml"),
    ]);
    let findings = check(&loaded.config);
    let host = findings
        .iter()
        .find(|d| d.path.as_deref() == Some("spec.host"))
        .expect("the wrong host is flagged");
    assert_eq!(host.severity, Severity::Error);
    assert_eq!(host.resource.as_deref(), Some("DestinationRule/sticky-svc"));
    assert_eq!((host.location.line, host.location.column), (8, 9));
    assert_eq!(
        host.hint.as_deref(),
        Some("did you mean sticky-svc.default.svc.cluster.local?")
    );
}

#[test]
fn short_hosts_resolve_in_the_documents_namespace() {
    let options = LoadOptions {
        namespace: "shop".into(),
        cluster_domain: "corp.local".into(),
    };
    let text = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: sticky-svc}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, namespace: edge}
spec: {host: sticky-svc}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: c}
spec: {host: sticky-svc.other}
";
    let mut loaded = Loaded::default();
    load_source(Path::new("hosts.yaml"), text, &options, &mut loaded);
    let hosts: Vec<_> = loaded
        .config
        .destination_rules
        .iter()
        .map(|d| d.host.as_str())
        .collect();
    assert_eq!(
        hosts,
        [
            "sticky-svc.shop.svc.corp.local",
            "sticky-svc.edge.svc.corp.local",
            "sticky-svc.other"
        ]
    );
}

fn gateway_check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("check")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata"))
        .env_remove("GATEWAY_NAMESPACE")
        .env_remove("GATEWAY_CLUSTER_DOMAIN")
        .output()
        .expect("gateway runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8"),
    )
}

#[test]
fn binary_exits_0_on_the_articles_sticky_setup() {
    let (code, stdout) = gateway_check(&[
        "article/deployment-and-service.yaml",
        "article/virtual-service.yaml",
        "article/destination-rule-consistent-hash.yaml",
        "article-gateway",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.ends_with("0 errors, 0 warnings; 3 valid Istio resources read\n"),
        "{stdout}"
    );
}

#[test]
fn binary_exits_1_on_the_articles_least_conn_rule() {
    let (code, stdout) = gateway_check(&[
        "article/virtual-service.yaml",
        "article/destination-rule-least-conn.yaml",
        "article-gateway",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "article/destination-rule-least-conn.yaml:8:9: error: DestinationRule/sticky-svc: spec.host: host sticky-service.default.svc.cluster.local matches no VirtualService destination, ServiceEntry or Service here: the rule applies to nothing, and Istio ignores it silently (did you mean sticky-svc.default.svc.cluster.local?)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("warning: DestinationRule/sticky-svc: spec.trafficPolicy.loadBalancer.simple: LEAST_CONN is deprecated"), "{stdout}");
}

#[test]
fn binary_speaks_json() {
    let (code, stdout) = gateway_check(&[
        "--format",
        "json",
        "article/virtual-service.yaml",
        "article/destination-rule-least-conn.yaml",
        "article-gateway",
    ]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    assert_eq!(report["errors"], 1);
    assert_eq!(report["warnings"], 1);
    let host = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["path"] == "spec.host")
        .expect("the wrong host is reported");
    assert_eq!(host["severity"], "error");
    assert_eq!(host["location"]["line"], 8);
    assert_eq!(
        host["hint"],
        "did you mean sticky-svc.default.svc.cluster.local?"
    );
}
