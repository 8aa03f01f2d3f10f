//! The `sticky` scenario over HTTPS: the project's own Istio YAML (k8s/istio/ and k8s/tls/) in
//! the real gateway, with a TLS listener whose certificate `gateway cert` made, as `just up`
//! does. With `--ca-cert` naming that CA the load is as sticky as over plain HTTP, on the same
//! VirtualService (bound to the Gateway `gateway` only); with another CA every call fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use gateway::certgen::{Request, ensure};
use loadtest::{RunError, Scenario, run};

use crate::gateway_stack::RunningGateway;
use crate::stack::{COST, exclusive, replica, scratch, short_config};

/// The project's Istio YAML, as compose and Kubernetes give it to the gateway.
const ISTIO: [&str; 4] = [
    include_str!("../../../k8s/istio/gateway.yaml"),
    include_str!("../../../k8s/istio/virtual-service.yaml"),
    include_str!("../../../k8s/istio/destination-rule.yaml"),
    include_str!("../../../k8s/tls/gateway.yaml"),
];

/// A local CA and a certificate for localhost in `dir`, as `gateway cert --dir DIR` makes them;
/// returns the CA's certificate.
fn certificates(dir: &Path) -> PathBuf {
    let request = Request {
        dir: dir.to_owned(),
        name: "sticky-cert".to_owned(),
        hosts: vec!["localhost".parse().unwrap()],
        days: 90,
    };
    ensure(&request, SystemTime::now()).unwrap().ca_cert
}

/// Five replicas behind the gateway, which finds them by a STATIC ServiceEntry in place of
/// DNS, and serves HTTP and HTTPS with the certificates under `certs`.
async fn stack(certs: &Path) -> RunningGateway {
    let mut endpoints = String::new();
    for i in 0..5 {
        let addr: SocketAddr = replica(format!("svc-{i}"), COST).await.addr;
        endpoints.push_str(&format!(
            "  - {{address: {}, ports: {{http: {}}}}}\n",
            addr.ip(),
            addr.port()
        ));
    }
    let service_entry = format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\n\
         metadata: {{name: sticky-svc, namespace: default}}\nspec:\n\
         \x20 hosts: [sticky-svc.default.svc.cluster.local]\n\
         \x20 ports: [{{number: 8080, name: http, protocol: HTTP}}]\n\
         \x20 resolution: STATIC\n  endpoints:\n{endpoints}"
    );
    let yaml = [service_entry.as_str()]
        .into_iter()
        .chain(ISTIO)
        .collect::<Vec<_>>()
        .join("\n---\n");
    let certs = certs.to_owned();
    RunningGateway::start_with(&yaml, None, |options| {
        options.tls.listen = Some("127.0.0.1:0".parse().unwrap());
        options.tls.credentials_dir = Some(certs);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_article_stays_sticky_over_https_with_the_local_ca() {
    let _guard = exclusive().await;
    let certs = scratch("https");
    let ca = certificates(&certs);
    let gateway = stack(&certs).await;
    let tls = gateway.tls.expect("the TLS listener");

    // By name, so the certificate's host is checked (and SNI sent).
    let mut config = short_config(
        &format!("https://localhost:{}", tls.port()),
        Scenario::Sticky,
        20,
        3,
    );
    config.ca_cert = Some(ca);
    let summary = run(&config).await.unwrap();
    let verdict = summary.verdict(&config.thresholds);
    eprint!("{summary}{verdict}");
    assert!(verdict.passed(), "{summary}{verdict}");
    assert_eq!(summary.errors, 0);
    assert_eq!(summary.cold.count, 20, "each user paid the cost once");

    // The same VirtualService still answers on the plain listener, warm: one route table.
    let config = short_config(&format!("http://{}", gateway.addr), Scenario::Sticky, 20, 1);
    let summary = run(&config).await.unwrap();
    let verdict = summary.verdict(&config.thresholds);
    assert!(verdict.passed(), "{summary}{verdict}");
    assert_eq!(
        summary.cold.count, 0,
        "the HTTPS run warmed every user: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_fails_every_call() {
    let _guard = exclusive().await;
    let certs = scratch("https-server");
    certificates(&certs);
    let gateway = stack(&certs).await;
    let tls = gateway.tls.expect("the TLS listener");
    let other = certificates(&scratch("https-other"));

    let mut config = short_config(
        &format!("https://localhost:{}", tls.port()),
        Scenario::Sticky,
        5,
        1,
    );
    config.ca_cert = Some(other);
    let summary = run(&config).await.unwrap();
    let verdict = summary.verdict(&config.thresholds);
    eprint!("{summary}{verdict}");
    assert!(!verdict.passed());
    assert!(summary.errors > 0 && summary.warm.count == 0, "{summary}");

    // A file that is not a certificate stops the run before any call.
    let bogus = scratch("https-bogus").join("ca.crt");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    config.ca_cert = Some(bogus);
    assert!(matches!(run(&config).await, Err(RunError::CaCert { .. })));
}
