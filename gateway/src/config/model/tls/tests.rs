//! Each rule of `servers[].tls` and `trafficPolicy.tls`, through the loader: the model it
//! gives, and the finding's severity, field path and line.

mod client;

use std::path::{Path, PathBuf};

use super::*;
use crate::config::diagnostic::Severity::{self, Error, Warning};
use crate::config::model::GatewayServer;
use crate::config::{LoadOptions, Loaded, load_source};

fn load(yaml: &str) -> Loaded {
    let mut loaded = Loaded::default();
    load_source(
        Path::new("t.yaml"),
        yaml,
        &LoadOptions::default(),
        &mut loaded,
    );
    loaded
}

/// `(severity, path, line, message)` of every finding but info lines.
fn findings(loaded: &Loaded) -> Vec<(Severity, String, usize, String)> {
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity != crate::config::Severity::Info)
        .map(|d| {
            let path = d.path.clone().unwrap_or_default();
            (d.severity, path, d.location.line, d.message.clone())
        })
        .collect()
}

/// A Gateway whose one server (line 6) has port `protocol` and, unless empty, a `tls` (line
/// 8) of the lines given (from line 9).
fn server(protocol: &str, tls: &str) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: edge}}\nspec:\n  \
         servers:\n    - port: {{number: 443, name: p, protocol: {protocol}}}\n      hosts: [\"*\"]\n"
    );
    if !tls.is_empty() {
        out.push_str("      tls:\n");
        for line in tls.lines() {
            out.push_str(&format!("        {line}\n"));
        }
    }
    out
}

/// The one server of `yaml`, which must load without an error.
fn the_server(loaded: &Loaded) -> &GatewayServer {
    assert!(!loaded.has_errors(), "{:#?}", findings(loaded));
    &loaded.config.gateways[0].servers[0]
}

/// The one error or warning of `yaml`, as `(severity, path, line)`, and its message.
fn one_finding(yaml: &str) -> ((Severity, String, usize), String) {
    let loaded = load(yaml);
    let all = findings(&loaded);
    let [(severity, path, line, message)] = all.as_slice() else {
        panic!("one finding expected: {all:#?}")
    };
    ((*severity, path.clone(), *line), message.clone())
}

const TLS: &str = "spec.servers[0].tls";

#[test]
fn an_https_server_by_credential_name() {
    let loaded = load(&server("HTTPS", "mode: SIMPLE\ncredentialName: shop-cert"));
    let s = the_server(&loaded);
    assert_eq!(findings(&loaded), []);
    assert_eq!(
        s.tls,
        Some(ServerTls {
            mode: ServerTlsMode::Simple,
            credential: ServerCredential::Named("shop-cert".into()),
            ca_certificates: None,
            subject_alt_names: vec![],
            min_version: TlsVersion::V1_2,
            max_version: TlsVersion::V1_3,
            cipher_suites: vec![],
        })
    );
    assert!(!s.https_redirect);
}

#[test]
fn a_mutual_server_by_files_with_every_setting() {
    let loaded = load(&server(
        "https",
        "mode: MUTUAL\nserverCertificate: /c/tls.crt\nprivateKey: /c/tls.key\n\
         caCertificates: /c/ca.crt\nsubjectAltNames: [client.shop]\n\
         minProtocolVersion: TLSV1_2\nmaxProtocolVersion: TLSV1_3\ncipherSuites:\n\
         - ECDHE-RSA-AES256-GCM-SHA384\n\
         - '[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]'\n\
         - TLS_AES_128_GCM_SHA256",
    ));
    let s = the_server(&loaded);
    assert_eq!(findings(&loaded), []);
    assert_eq!(
        s.tls,
        Some(ServerTls {
            mode: ServerTlsMode::Mutual,
            credential: ServerCredential::Files {
                certificate: "/c/tls.crt".into(),
                private_key: "/c/tls.key".into(),
            },
            ca_certificates: Some("/c/ca.crt".into()),
            subject_alt_names: vec!["client.shop".into()],
            min_version: TlsVersion::V1_2,
            max_version: TlsVersion::V1_3,
            cipher_suites: vec![
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into(),
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".into(),
                "TLS_AES_128_GCM_SHA256".into(),
            ],
        })
    );
}

#[test]
fn an_https_server_needs_one_credential() {
    let (at, message) = one_finding(&server("HTTPS", ""));
    assert_eq!(at, (Error, TLS.into(), 6));
    assert!(message.starts_with("protocol HTTPS needs tls"), "{message}");

    let (at, message) = one_finding(&server("HTTPS", "mode: SIMPLE"));
    assert_eq!(at, (Error, TLS.into(), 9));
    assert!(message.contains("needs a credential"), "{message}");

    let both = "mode: SIMPLE\ncredentialName: a\nserverCertificate: /c.crt\nprivateKey: /c.key";
    let (at, message) = one_finding(&server("HTTPS", both));
    assert_eq!(at, (Error, TLS.into(), 9));
    assert!(
        message.starts_with("credentialName and serverCertificate/privateKey each name")
            && message.contains("pick one"),
        "{message}"
    );

    let (at, message) = one_finding(&server("HTTPS", "mode: SIMPLE\nserverCertificate: /c.crt"));
    assert_eq!(at, (Error, format!("{TLS}.privateKey"), 9));
    assert_eq!(message, "serverCertificate needs its privateKey");
}

#[test]
fn only_the_first_of_several_certificates_is_served() {
    let loaded = load(&server(
        "HTTPS",
        "mode: SIMPLE\ncredentialNames: [rsa, ecdsa]",
    ));
    assert_eq!(
        findings(&loaded)
            .iter()
            .map(|(s, p, l, _)| (*s, p.as_str(), *l))
            .collect::<Vec<_>>(),
        [(Warning, "spec.servers[0].tls.credentialNames", 10)]
    );
    let s = &loaded.config.gateways[0].servers[0];
    let tls = s.tls.as_ref().expect("served");
    assert_eq!(tls.credential, ServerCredential::Named("rsa".into()));

    let files = "mode: MUTUAL\ntlsCertificates:\n- {serverCertificate: /a.crt, privateKey: /a.key, caCertificates: /ca.crt}\n- {serverCertificate: /b.crt, privateKey: /b.key}";
    let loaded = load(&server("HTTPS", files));
    let tls = loaded.config.gateways[0].servers[0]
        .tls
        .clone()
        .expect("served");
    assert_eq!(
        tls.credential,
        ServerCredential::Files {
            certificate: "/a.crt".into(),
            private_key: "/a.key".into()
        }
    );
    assert_eq!(tls.ca_certificates, Some(PathBuf::from("/ca.crt")));
    let found = findings(&loaded);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        (found[0].0, found[0].1.as_str()),
        (Warning, "spec.servers[0].tls.tlsCertificates")
    );
}

#[test]
fn modes() {
    let mode = |m: &str| load(&server("HTTPS", &format!("mode: {m}\ncredentialName: c")));
    let optional = mode("OPTIONAL_MUTUAL");
    assert_eq!(
        the_server(&optional).tls.as_ref().map(|t| t.mode),
        Some(ServerTlsMode::OptionalMutual)
    );
    // MUTUAL with credentialName: the CA is the Secret's, read at run time.
    assert_eq!(findings(&mode("MUTUAL")), []);
    for (m, says) in [
        (
            "PASSTHROUGH",
            "pass-through needs an L4 proxy (see docs/tls.md)",
        ),
        ("AUTO_PASSTHROUGH", "pass-through needs an L4 proxy"),
        (
            "ISTIO_MUTUAL",
            "issued by istiod, which is not here; use MUTUAL with credentialName",
        ),
        ("STRICT", "is not one of SIMPLE, MUTUAL"),
    ] {
        let (at, message) = one_finding(&server("HTTPS", &format!("mode: {m}\ncredentialName: c")));
        assert_eq!(at, (Error, format!("{TLS}.mode"), 9), "{m}");
        assert!(message.contains(says), "{m}: {message}");
    }
    // Istio's proto default is PASSTHROUGH: say that SIMPLE is what this gateway does.
    let loaded = load(&server("HTTPS", "credentialName: c"));
    assert_eq!(
        the_server(&loaded).tls.as_ref().map(|t| t.mode),
        Some(ServerTlsMode::Simple)
    );
    let found = findings(&loaded);
    assert_eq!(
        (found[0].0, found[0].1.as_str()),
        (Warning, "spec.servers[0].tls.mode")
    );
}

#[test]
fn client_certificate_checks_need_a_ca_file_unless_the_secret_has_one() {
    let files = "mode: MUTUAL\nserverCertificate: /c.crt\nprivateKey: /c.key";
    let (at, message) = one_finding(&server("HTTPS", files));
    assert_eq!(at, (Error, format!("{TLS}.caCertificates"), 9));
    assert!(message.contains("need caCertificates"), "{message}");

    // A CA where nothing reads it is a warning, and left out of the model.
    for tls in [
        "mode: SIMPLE\ncredentialName: c\ncaCertificates: /ca.crt",
        "mode: MUTUAL\ncredentialName: c\ncaCertificates: /ca.crt",
    ] {
        let loaded = load(&server("HTTPS", tls));
        assert_eq!(
            the_server(&loaded)
                .tls
                .as_ref()
                .and_then(|t| t.ca_certificates.clone()),
            None
        );
        let found = findings(&loaded);
        assert_eq!(
            found
                .iter()
                .map(|f| (f.0, f.1.as_str(), f.2))
                .collect::<Vec<_>>(),
            [(Warning, "spec.servers[0].tls.caCertificates", 11)],
            "{tls}"
        );
    }
}

#[test]
fn protocol_versions() {
    let versions = |min: &str, max: &str| {
        let tls = format!(
            "mode: SIMPLE\ncredentialName: c\nminProtocolVersion: {min}\nmaxProtocolVersion: {max}"
        );
        load(&server("HTTPS", &tls))
    };
    let auto = versions("TLS_AUTO", "TLS_AUTO");
    let tls = the_server(&auto).tls.clone().expect("served");
    assert_eq!(
        (tls.min_version, tls.max_version),
        (TlsVersion::V1_2, TlsVersion::V1_3)
    );
    assert_eq!(findings(&auto), []);

    let old_min = versions("TLSV1_0", "TLSV1_2");
    let tls = the_server(&old_min).tls.clone().expect("served");
    assert_eq!(
        (tls.min_version, tls.max_version),
        (TlsVersion::V1_2, TlsVersion::V1_2)
    );
    let found = findings(&old_min);
    assert_eq!(
        (found[0].0, found[0].1.as_str(), found[0].2),
        (Warning, "spec.servers[0].tls.minProtocolVersion", 11)
    );
    assert!(
        found[0].3.contains("stricter, not weaker"),
        "{}",
        found[0].3
    );

    for (min, max, says) in [
        ("TLS_AUTO", "TLSV1_1", "cannot serve below TLS 1.2"),
        (
            "TLSV1_3",
            "TLSV1_2",
            "maxProtocolVersion TLSV1_2 is below minProtocolVersion TLSV1_3",
        ),
        ("TLS_AUTO", "TLSV2", "is not one of TLS_AUTO"),
    ] {
        let (at, message) = one_finding(&server(
            "HTTPS",
            &format!(
                "mode: SIMPLE\ncredentialName: c\nminProtocolVersion: {min}\nmaxProtocolVersion: {max}"
            ),
        ));
        assert_eq!(
            at,
            (Error, format!("{TLS}.maxProtocolVersion"), 12),
            "{max}"
        );
        assert!(message.contains(says), "{message}");
    }
}

#[test]
fn cipher_suites() {
    let suites = |list: &str| {
        server(
            "HTTPS",
            &format!("mode: SIMPLE\ncredentialName: c\ncipherSuites: [{list}]"),
        )
    };
    let at0 = "spec.servers[0].tls.cipherSuites[0]".to_owned();
    let (at, message) = one_finding(&suites("AES128-SHA"));
    assert_eq!(at, (Error, at0.clone(), 11));
    assert_eq!(
        message,
        "\"AES128-SHA\": not supported by rustls (no CBC or static-RSA suites)"
    );

    let (at, message) = one_finding(&suites("ECDHE-RSA-AES128-GCM-SHA265"));
    assert_eq!(at, (Error, at0.clone(), 11));
    assert_eq!(
        message,
        "\"ECDHE-RSA-AES128-GCM-SHA265\": not a cipher suite (did you mean ECDHE-RSA-AES128-GCM-SHA256?)"
    );

    let (at, message) = one_finding(&suites("'!aNULL'"));
    assert_eq!(at, (Error, at0, 11));
    assert!(message.contains("operators"), "{message}");

    let twice = load(&suites(
        "ECDHE-RSA-AES128-GCM-SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ));
    assert_eq!(
        findings(&twice)
            .iter()
            .map(|f| (f.0, f.1.as_str()))
            .collect::<Vec<_>>(),
        [(Warning, "spec.servers[0].tls.cipherSuites[1]")]
    );
    let tls = twice.config.gateways[0].servers[0]
        .tls
        .clone()
        .expect("served");
    assert_eq!(tls.cipher_suites, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]);

    let all = load(&suites("ALL, ECDHE-RSA-AES128-GCM-SHA256"));
    assert_eq!(
        the_server(&all).tls.as_ref().map(|t| t.cipher_suites.len()),
        Some(0)
    );
}

#[test]
fn the_cipher_table_maps_both_spellings_and_only_rustls_suites() {
    assert_eq!(
        iana_cipher_suite("ECDHE-ECDSA-AES128-GCM-SHA256"),
        Ok("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    );
    assert_eq!(
        iana_cipher_suite("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
        Ok("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
    );
    for v13 in [
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    ] {
        assert_eq!(iana_cipher_suite(v13), Ok(v13));
    }
    for gone in [
        "ECDHE-RSA-AES128-SHA",
        "AES256-GCM-SHA384",
        "DES-CBC3-SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
    ] {
        assert_eq!(
            iana_cipher_suite(gone),
            Err(CipherError::NotInRustls),
            "{gone}"
        );
    }
    assert_eq!(
        iana_cipher_suite("ecdhe-rsa-chacha20-poly1305"),
        Err(CipherError::Unknown {
            closest: Some("ECDHE-RSA-CHACHA20-POLY1305")
        })
    );
    assert_eq!(
        iana_cipher_suite("RC4"),
        Err(CipherError::Unknown { closest: None })
    );
    let group: Vec<_> = cipher_suite_names(" [A|B] ").collect();
    assert_eq!(group, ["A", "B"]);
    // Every IANA name the table gives is one rustls names (`TLS13_` spelt `TLS_`).
    let rustls: Vec<String> = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .map(|s| {
            s.suite()
                .as_str()
                .unwrap_or_default()
                .replacen("TLS13_", "TLS_", 1)
        })
        .collect();
    for (_, iana) in RUSTLS_SUITES {
        assert!(rustls.iter().any(|r| r == iana), "{iana} not in {rustls:?}");
    }
}

#[test]
fn plain_http_servers_take_https_redirect_only() {
    let loaded = load(&server("HTTP", "httpsRedirect: true"));
    assert_eq!(findings(&loaded), []);
    let s = the_server(&loaded);
    assert!(s.https_redirect);
    assert_eq!(s.tls, None);

    let full = "httpsRedirect: true\nmode: SIMPLE\ncredentialName: c";
    let loaded = load(&server("HTTP", full));
    let s = the_server(&loaded);
    assert!(s.https_redirect);
    assert_eq!(s.tls, None);
    let found = findings(&loaded);
    assert_eq!(
        found
            .iter()
            .map(|f| (f.0, f.1.as_str(), f.2))
            .collect::<Vec<_>>(),
        [(Warning, TLS, 9)]
    );

    let (at, _) = one_finding(&server("TCP", "httpsRedirect: true"));
    assert_eq!(at, (Warning, format!("{TLS}.httpsRedirect"), 9));
    let (at, _) = one_finding(&server(
        "HTTPS",
        "httpsRedirect: true\nmode: SIMPLE\ncredentialName: c",
    ));
    assert_eq!(at, (Warning, format!("{TLS}.httpsRedirect"), 9));
}

#[test]
fn tls_protocol_servers_are_out_of_scope() {
    for protocol in ["TLS", "tls"] {
        let (at, message) = one_finding(&server(protocol, "mode: PASSTHROUGH"));
        assert_eq!(at, (Error, "spec.servers[0].port.protocol".into(), 6));
        assert!(
            message.contains("pass-through needs an L4 proxy"),
            "{message}"
        );
    }
}
