//! A DestinationRule's `trafficPolicy.tls`: the merge of rule, subset and port, and the
//! modes refused.

use super::{findings, load, one_finding};
use crate::config::Loaded;
use crate::config::diagnostic::Severity::{Error, Warning};
use crate::config::model::{ClientTls, ClientTlsSettings, DestinationRule};

fn rule(loaded: &Loaded) -> &DestinationRule {
    assert!(!loaded.has_errors(), "{:#?}", findings(loaded));
    &loaded.config.destination_rules[0]
}

fn destination_rule(traffic_policy: &str, subsets: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r}}\n\
         spec:\n  host: shop\n  trafficPolicy: {traffic_policy}\n  subsets: {subsets}\n"
    )
}

fn simple(sni: &str) -> ClientTls {
    ClientTls::Simple(ClientTlsSettings {
        sni: Some(sni.into()),
        ..Default::default()
    })
}

#[test]
fn upstream_tls_merges_rule_subset_and_port() {
    let yaml = destination_rule(
        "{tls: {mode: SIMPLE, sni: top, caCertificates: /ca.crt, subjectAltNames: [shop.internal]},\
         portLevelSettings: [{port: {number: 9000}, tls: {mode: DISABLE}}, {port: {number: 9443}, tls: {mode: SIMPLE, sni: port}}]}",
        "[{name: v1, labels: {v: '1'}}, {name: v2, labels: {v: '2'}, trafficPolicy: {tls: {mode: SIMPLE, sni: v2, insecureSkipVerify: true}}},\
         {name: plain, labels: {v: '3'}, trafficPolicy: {tls: {mode: DISABLE}}}]",
    );
    let loaded = load(&yaml);
    let dr = rule(&loaded);
    assert_eq!(findings(&loaded), []);
    assert_eq!(
        dr.client_tls(None, 443),
        Some(&ClientTls::Simple(ClientTlsSettings {
            ca_certificates: Some("/ca.crt".into()),
            sni: Some("top".into()),
            subject_alt_names: vec!["shop.internal".into()],
            insecure_skip_verify: false,
        }))
    );
    assert_eq!(dr.client_tls(Some("v1"), 443).and_then(sni), Some("top"));
    assert_eq!(dr.client_tls(Some("v2"), 443).and_then(sni), Some("v2"));
    let ClientTls::Simple(v2) = dr.client_tls(Some("v2"), 443).expect("tls");
    assert!(v2.insecure_skip_verify);
    // Port-level settings win over the subset's, as for the rest of the policy.
    assert_eq!(dr.client_tls(Some("v2"), 9443), Some(&simple("port")));
    // An explicit DISABLE turns TLS off below a level that turned it on.
    assert_eq!(dr.client_tls(None, 9000), None);
    assert_eq!(dr.client_tls(Some("plain"), 443), None);
    assert_eq!(
        dr.client_tls(Some("undefined"), 443).and_then(sni),
        Some("top")
    );
}

fn sni(tls: &ClientTls) -> Option<&str> {
    let ClientTls::Simple(s) = tls;
    s.sni.as_deref()
}

#[test]
fn upstream_modes_this_gateway_refuses() {
    let yaml = destination_rule(
        "{tls: {mode: ISTIO_MUTUAL}}",
        "[{name: v1, trafficPolicy: {portLevelSettings: [{port: {number: 1}, tls: {mode: MUTUAL}}]}}]",
    );
    let loaded = load(&yaml);
    let found: Vec<_> = findings(&loaded)
        .into_iter()
        .filter(|f| f.0 == Error)
        .collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        (found[0].1.as_str(), found[0].2),
        ("spec.trafficPolicy.tls.mode", 6)
    );
    assert!(
        found[0]
            .3
            .contains("istiod, which is not here; use SIMPLE with caCertificates")
    );
    assert_eq!(
        found[1].1,
        "spec.subsets[0].trafficPolicy.portLevelSettings[0].tls.mode"
    );
    assert!(
        found[1].3.starts_with("mode MUTUAL is not supported yet: "),
        "{}",
        found[1].3
    );
    assert!(loaded.config.destination_rules.is_empty());

    let (at, _) = one_finding(&destination_rule("{tls: {mode: STRICT}}", "[]"));
    assert_eq!(at, (Error, "spec.trafficPolicy.tls.mode".into(), 6));
    let (at, message) = one_finding(&destination_rule(
        "{tls: {mode: SIMPLE, insecureSkipVerify: true, caCertificates: /ca.crt}}",
        "[]",
    ));
    assert_eq!(
        at,
        (Error, "spec.trafficPolicy.tls.caCertificates".into(), 6)
    );
    assert!(message.contains("insecureSkipVerify"), "{message}");
}

#[test]
fn upstream_settings_that_do_nothing_are_warnings() {
    let loaded = load(&destination_rule(
        "{tls: {mode: SIMPLE, credentialName: ca}}",
        "[]",
    ));
    assert_eq!(
        rule(&loaded).client_tls(None, 80),
        Some(&ClientTls::Simple(ClientTlsSettings::default()))
    );
    let found = findings(&loaded);
    // The walk says it is ignored; the model says what is checked instead.
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found
            .iter()
            .all(|f| (f.0, f.1.as_str()) == (Warning, "spec.trafficPolicy.tls.credentialName"))
    );
    assert!(found[1].3.contains("system's roots"), "{}", found[1].3);

    let (at, message) = one_finding(&destination_rule("{tls: {sni: a}}", "[]"));
    assert_eq!(at, (Warning, "spec.trafficPolicy.tls.mode".into(), 6));
    assert!(message.contains("unset, which is DISABLE"), "{message}");
}
