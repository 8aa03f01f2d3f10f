use super::*;

#[test]
fn host_patterns_rank_exact_over_the_longest_suffix_over_any() {
    let exact = HostPattern::parse("ns/Shop.Example.com");
    let wild = HostPattern::parse("*.example.com");
    let deeper = HostPattern::parse("*.eu.example.com");
    let any = HostPattern::parse("*/*");
    assert_eq!(exact, HostPattern::Exact("shop.example.com".into()));
    let name = Some("shop.example.com");
    assert!(exact.rank(name) > wild.rank(name));
    assert!(wild.rank(name) > any.rank(name));
    assert!(deeper.rank(Some("a.eu.example.com")) > wild.rank(Some("a.eu.example.com")));
    // A wildcard needs a label before its suffix; `*` takes no SNI at all, the others do not.
    assert_eq!(wild.rank(Some("example.com")), None);
    assert_eq!(wild.rank(Some(".example.com")), None);
    assert_eq!(exact.rank(None), None);
    assert_eq!(any.rank(None), Some((0, 0)));
}

#[test]
fn cipher_suites_restrict_tls12_and_tls13_only_when_named() {
    let names = |p: &CryptoProvider| -> Vec<String> {
        p.cipher_suites
            .iter()
            .map(|s| s.suite().as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let all = names(&provider(&[]));
    let only12 = names(&provider(&[
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned()
    ]));
    assert!(only12.contains(&"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned()));
    assert!(!only12.contains(&"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".to_owned()));
    // The TLS 1.3 suites stay, as Envoy leaves them.
    let tls13 = |list: &[String]| list.iter().filter(|n| n.starts_with("TLS13_")).count();
    assert_eq!(tls13(&only12), tls13(&all));
    assert!(tls13(&all) >= 2);
    let one13 = names(&provider(&["TLS_AES_256_GCM_SHA384".to_owned()]));
    assert_eq!(one13, ["TLS13_AES_256_GCM_SHA384"]);
}

#[test]
fn versions_follow_min_and_max() {
    let v = |min, max| {
        versions(min, max)
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        v(TlsVersion::V1_2, TlsVersion::V1_3),
        [
            rustls::ProtocolVersion::TLSv1_3,
            rustls::ProtocolVersion::TLSv1_2
        ]
    );
    assert_eq!(
        v(TlsVersion::V1_3, TlsVersion::V1_3),
        [rustls::ProtocolVersion::TLSv1_3]
    );
    assert_eq!(
        v(TlsVersion::V1_2, TlsVersion::V1_2),
        [rustls::ProtocolVersion::TLSv1_2]
    );
}
