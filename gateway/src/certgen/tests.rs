use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::ca::pem_contents;
use super::leaf::covers;
use super::*;

fn ask(dir: &Path, hosts: &[&str]) -> Request {
    Request {
        dir: dir.join("certs"),
        name: "sticky-cert".into(),
        hosts: hosts.iter().map(|host| host.parse().unwrap()).collect(),
        days: 90,
    }
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    fs::read(path).unwrap()
}

fn mode(path: impl AsRef<Path>) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Verifies `leaf_pem` for `name` as a rustls client trusting only `ca_pem` would.
fn verify(ca_pem: &[u8], leaf_pem: &[u8], name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pem_contents(ca_pem).unwrap()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let leaf = CertificateDer::from(pem_contents(leaf_pem).unwrap());
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        .map(drop)
}

fn days_from_now(days: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(days * DAY)
}

#[test]
fn the_first_run_creates_a_ca_and_a_leaf_for_every_host() {
    let tmp = tempfile::tempdir().unwrap();
    let request = ask(tmp.path(), &["localhost", "127.0.0.1"]);
    let outcome = ensure(&request, SystemTime::now()).unwrap();
    let (ca, leaf) = (request.dir.join("ca"), request.dir.join("sticky-cert"));
    assert_eq!(
        outcome.actions,
        [
            Action::CaCreated {
                cert: ca.join("ca.crt")
            },
            Action::LeafIssued {
                cert: leaf.join("tls.crt"),
                days: 90,
                why: Reissue::Missing
            },
        ]
    );
    assert_eq!(
        outcome.curl_line(),
        format!(
            "curl --cacert {}/certs/ca/ca.crt https://localhost/ping",
            tmp.path().display()
        )
    );

    let ca_der = pem_contents(&read(ca.join("ca.crt"))).unwrap();
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(ca_cert.is_ca());
    assert_eq!(ca_cert.subject().to_string(), "CN=sticky local CA");
    assert!(ca_cert.key_usage().unwrap().unwrap().value.key_cert_sign());
    let ca_life = ca_cert.validity().not_after.timestamp() - unix(SystemTime::now());
    // Whole seconds: the second may not have turned since it was made.
    let ca_days = ca_life / DAY as i64;
    assert!((3649..=3650).contains(&ca_days), "{ca_days}");

    let leaf_der = pem_contents(&read(leaf.join("tls.crt"))).unwrap();
    let (_, leaf_cert) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
    assert_eq!(leaf_cert.subject().to_string(), "CN=localhost");
    assert!(!leaf_cert.is_ca());
    for host in &request.hosts {
        assert!(covers(&leaf_cert, host), "{host}");
    }
    assert!(!covers(&leaf_cert, &"::1".parse().unwrap()));
    let key = String::from_utf8(read(leaf.join("tls.key"))).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"), "PKCS#8");
    assert_eq!(
        KeyPair::from_pem(&key).unwrap().algorithm(),
        &PKCS_ECDSA_P256_SHA256
    );
    assert_eq!(read(leaf.join("ca.crt")), read(ca.join("ca.crt")));
}

#[test]
fn keys_are_0600_certificates_0644_new_folders_0700_and_no_temporary_file_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let request = ask(tmp.path(), &["localhost"]);
    ensure(&request, SystemTime::now()).unwrap();
    let (ca, leaf) = (request.dir.join("ca"), request.dir.join("sticky-cert"));
    for dir in [&request.dir, &ca, &leaf] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(ca.join("ca.key")), 0o600);
    assert_eq!(mode(leaf.join("tls.key")), 0o600);
    assert_eq!(mode(ca.join("ca.crt")), 0o644);
    assert_eq!(mode(leaf.join("tls.crt")), 0o644);
    assert_eq!(mode(leaf.join("ca.crt")), 0o644);
    let names = |dir: &Path| {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&ca), ["ca.crt", "ca.key"]);
    assert_eq!(names(&leaf), ["ca.crt", "tls.crt", "tls.key"]);
}

#[test]
fn a_second_run_keeps_the_ca_and_the_leaf() {
    let tmp = tempfile::tempdir().unwrap();
    let request = ask(tmp.path(), &["localhost", "127.0.0.1"]);
    ensure(&request, SystemTime::now()).unwrap();
    let files = [
        "ca/ca.crt",
        "ca/ca.key",
        "sticky-cert/tls.crt",
        "sticky-cert/tls.key",
    ];
    let before: Vec<_> = files.iter().map(|f| read(request.dir.join(f))).collect();

    let outcome = ensure(&request, SystemTime::now()).unwrap();
    assert!(
        matches!(
            outcome.actions.as_slice(),
            [
                Action::CaKept {
                    days_left: 3648..,
                    ..
                },
                Action::LeafKept {
                    days_left: 89..=90,
                    ..
                }
            ]
        ),
        "{:?}",
        outcome.actions
    );
    let after: Vec<_> = files.iter().map(|f| read(request.dir.join(f))).collect();
    assert_eq!(before, after);

    // A lost copy of the CA beside the leaf is written again; the leaf stays.
    fs::remove_file(request.dir.join("sticky-cert/ca.crt")).unwrap();
    let outcome = ensure(&request, SystemTime::now()).unwrap();
    assert!(matches!(outcome.actions[2], Action::CaCopied { .. }));
    assert_eq!(read(request.dir.join("sticky-cert/tls.crt")), before[2]);
}

#[test]
fn a_missing_host_reissues_the_leaf_but_keeps_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let mut request = ask(tmp.path(), &["localhost", "127.0.0.1"]);
    ensure(&request, SystemTime::now()).unwrap();
    let ca_before = read(request.dir.join("ca/ca.crt"));
    let leaf_before = read(request.dir.join("sticky-cert/tls.crt"));

    request.hosts.push("::1".parse().unwrap());
    let outcome = ensure(&request, SystemTime::now()).unwrap();
    assert!(matches!(outcome.actions[0], Action::CaKept { .. }));
    assert!(matches!(
        &outcome.actions[1],
        Action::LeafIssued { why: Reissue::MissingHost(Host::Ip(ip)), .. } if ip.is_loopback()
    ));
    assert_eq!(read(request.dir.join("ca/ca.crt")), ca_before);
    let leaf = read(request.dir.join("sticky-cert/tls.crt"));
    assert_ne!(leaf, leaf_before);
    verify(&ca_before, &leaf, "::1").unwrap();
}

#[test]
fn the_leaf_verifies_against_the_ca_for_its_hosts_only() {
    let tmp = tempfile::tempdir().unwrap();
    let request = ask(tmp.path(), &["localhost", "127.0.0.1", "*.sticky.test"]);
    ensure(&request, SystemTime::now()).unwrap();
    let ca = read(request.dir.join("ca/ca.crt"));
    let leaf = read(request.dir.join("sticky-cert/tls.crt"));
    for name in ["localhost", "127.0.0.1", "svc.sticky.test"] {
        verify(&ca, &leaf, name).unwrap_or_else(|err| panic!("{name}: {err}"));
    }
    let err = verify(&ca, &leaf, "example.com").unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );

    // Another CA's root does not vouch for it.
    let other = tempfile::tempdir().unwrap();
    let other_request = ask(other.path(), &["localhost"]);
    ensure(&other_request, SystemTime::now()).unwrap();
    let other_ca = read(other_request.dir.join("ca/ca.crt"));
    assert!(verify(&other_ca, &leaf, "localhost").is_err());
}

#[test]
fn a_leaf_that_expires_within_seven_days_is_reissued() {
    let tmp = tempfile::tempdir().unwrap();
    let request = ask(tmp.path(), &["localhost"]);
    ensure(&request, SystemTime::now()).unwrap();
    let kept = ensure(&request, days_from_now(82)).unwrap();
    assert!(matches!(
        kept.actions[1],
        Action::LeafKept {
            days_left: 7..=8,
            ..
        }
    ));
    let renewed = ensure(&request, days_from_now(84)).unwrap();
    assert!(matches!(
        renewed.actions[1],
        Action::LeafIssued {
            why: Reissue::Expiring,
            ..
        }
    ));
}

#[test]
fn a_new_ca_or_a_foreign_key_reissues_the_leaf() {
    let tmp = tempfile::tempdir().unwrap();
    let request = ask(tmp.path(), &["localhost"]);
    ensure(&request, SystemTime::now()).unwrap();

    let other_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    fs::write(
        request.dir.join("sticky-cert/tls.key"),
        other_key.serialize_pem(),
    )
    .unwrap();
    let outcome = ensure(&request, SystemTime::now()).unwrap();
    assert!(matches!(
        outcome.actions[1],
        Action::LeafIssued {
            why: Reissue::KeyMismatch,
            ..
        }
    ));

    fs::remove_file(request.dir.join("ca/ca.key")).unwrap();
    let outcome = ensure(&request, SystemTime::now()).unwrap();
    assert!(matches!(outcome.actions[0], Action::CaCreated { .. }));
    assert!(matches!(
        outcome.actions[1],
        Action::LeafIssued {
            why: Reissue::OtherCa,
            ..
        }
    ));
    let ca = read(request.dir.join("ca/ca.crt"));
    verify(
        &ca,
        &read(request.dir.join("sticky-cert/tls.crt")),
        "localhost",
    )
    .unwrap();
}

#[test]
fn a_broken_ca_is_an_error_naming_the_file_and_is_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let request = ask(tmp.path(), &["localhost"]);
    ensure(&request, SystemTime::now()).unwrap();
    let key = request.dir.join("ca/ca.key");
    fs::write(&key, "not a key").unwrap();
    let err = ensure(&request, SystemTime::now()).unwrap_err();
    assert!(matches!(&err, CertError::BadCa { path, .. } if *path == key));
    assert!(err.to_string().contains("ca.key"), "{err}");
    assert_eq!(read(&key), b"not a key");
}

#[test]
fn a_ca_ending_before_the_leaf_would_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let request = ask(tmp.path(), &["localhost"]);
    ensure(&request, SystemTime::now()).unwrap();
    let later = days_from_now(u64::from(CA_DAYS) - 30);
    let err = ensure(&request, later).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::CaExpiring {
                days_left: 29..=30,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn hosts_parse_as_ip_addresses_or_dns_names() {
    let parse = |text: &str| text.parse::<Host>();
    assert_eq!(parse("127.0.0.1").unwrap(), Host::Ip([127, 0, 0, 1].into()));
    assert_eq!(parse("[::1]").unwrap(), Host::Ip("::1".parse().unwrap()));
    assert_eq!(
        parse("Sticky.Test.").unwrap(),
        Host::Dns("sticky.test".into())
    );
    assert_eq!(
        parse("*.sticky.test").unwrap(),
        Host::Dns("*.sticky.test".into())
    );
    for bad in ["", "a b", "-a.test", "a..test", "ü.test", "*", "a.*.test"] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn requests_are_checked_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = ask(tmp.path(), &[]);
    assert!(matches!(
        ensure(&bad, SystemTime::now()),
        Err(CertError::NoHost)
    ));
    bad.hosts.push(Host::Dns("localhost".into()));
    bad.days = RENEW_DAYS;
    assert!(matches!(
        ensure(&bad, SystemTime::now()),
        Err(CertError::Days(7))
    ));
    bad.days = 90;
    for name in ["ca", "../x", "a/b", "", "."] {
        bad.name = name.into();
        assert!(
            matches!(ensure(&bad, SystemTime::now()), Err(CertError::Name(_))),
            "{name:?}"
        );
    }
    assert!(!bad.dir.exists());
}
