//! A Gateway server's `tls` → [`ServerTls`] and `httpsRedirect`.
//!
//! Decisions beyond the module's (see [`super`]):
//! - `mode` unset is `SIMPLE`, as the model says; Istio's proto default is `PASSTHROUGH`, so
//!   a warning says to write `SIMPLE`, which means the same under both.
//! - One credential per server: `credentialName`, `credentialNames`, `serverCertificate` with
//!   `privateKey`, or `tlsCertificates`; two of them is an error (Istio would quietly prefer
//!   `credentialName`). `credentialNames` and `tlsCertificates` may list more than one
//!   certificate (an RSA and an ECDSA one): only the first is served, with a warning, since
//!   the runtime serves one certificate per server and the first one alone is still valid TLS.
//! - Settings that do nothing where they are written (`caCertificates` or `subjectAltNames`
//!   with `SIMPLE`, a CA file beside `credentialName`, `tls` on a plain HTTP server beyond
//!   `httpsRedirect`) are warnings and left out of the model.

use std::path::PathBuf;

use super::{ServerCredential, ServerTls, ServerTlsMode, TlsVersion, cipher_suites};
use crate::config::model::Problems;
use crate::config::spec;

const PASSTHROUGH: &str = "not supported: this gateway terminates TLS and routes on HTTP; \
     pass-through needs an L4 proxy (see docs/tls.md)";

/// `tls` of the server at `at` (`spec.servers[i]`) with port protocol `protocol`
/// (uppercased): the TLS an HTTPS server terminates with, and whether a plain HTTP server
/// redirects to HTTPS.
pub(crate) fn server_tls(
    tls: Option<spec::ServerTlsSettings>,
    protocol: Option<&str>,
    at: &str,
    p: &mut Problems,
) -> (Option<ServerTls>, bool) {
    let path = format!("{at}.tls");
    match protocol {
        Some("HTTPS") => (https(tls, &path, p), false),
        Some("TLS") => {
            p.error(
                format!("{at}.port.protocol"),
                format!("protocol TLS (TLS routed by SNI, not as HTTP) is {PASSTHROUGH}"),
            );
            (None, false)
        }
        _ => (None, plain(tls, protocol, &path, p)),
    }
}

/// A server that is not HTTPS: only `httpsRedirect` means something, and only for HTTP.
fn plain(
    tls: Option<spec::ServerTlsSettings>,
    protocol: Option<&str>,
    path: &str,
    p: &mut Problems,
) -> bool {
    let Some(tls) = tls else { return false };
    let protocol = protocol.unwrap_or("HTTP");
    let http = matches!(protocol, "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB");
    let redirect = tls.https_redirect.unwrap_or(false);
    if redirect && !http {
        let rule = format!("httpsRedirect is for HTTP servers, not protocol {protocol}: ignored");
        p.warn(format!("{path}.httpsRedirect"), rule);
    }
    if terminates(&tls) {
        let rule = format!(
            "tls settings other than httpsRedirect are for HTTPS servers (Istio: tls is only \
             for HTTPS and TLS ports), not protocol {protocol}: ignored"
        );
        p.warn(path, rule);
    }
    redirect && http
}

/// True when `tls` says anything about terminating TLS (anything but `httpsRedirect`).
fn terminates(tls: &spec::ServerTlsSettings) -> bool {
    let spec::ServerTlsSettings {
        https_redirect: _,
        mode,
        server_certificate,
        private_key,
        ca_certificates,
        credential_name,
        credential_names,
        tls_certificates,
        subject_alt_names,
        min_protocol_version,
        max_protocol_version,
        cipher_suites,
    } = tls;
    [
        mode,
        server_certificate,
        private_key,
        ca_certificates,
        credential_name,
        min_protocol_version,
        max_protocol_version,
    ]
    .iter()
    .any(|f| f.is_some())
        || [credential_names, subject_alt_names, cipher_suites]
            .iter()
            .any(|f| f.is_some())
        || tls_certificates.is_some()
}

/// An HTTPS server's `tls`; `None` when it breaks a rule (each reported).
fn https(tls: Option<spec::ServerTlsSettings>, path: &str, p: &mut Problems) -> Option<ServerTls> {
    let Some(tls) = tls else {
        p.error(
            path,
            "protocol HTTPS needs tls with a credential: credentialName, or serverCertificate \
             and privateKey",
        );
        return None;
    };
    if tls.https_redirect == Some(true) {
        let rule = "httpsRedirect sends plain HTTP to HTTPS; an HTTPS server has no plain HTTP \
                    to redirect: ignored";
        p.warn(format!("{path}.httpsRedirect"), rule);
    }
    // A mode refused makes the rest moot; past it, every rule broken is reported.
    let mode = mode(tls.mode.as_deref(), path, p)?;
    let credential = credential(&tls, path, p);
    let (min_version, max_version) = versions(
        tls.min_protocol_version.as_deref(),
        tls.max_protocol_version.as_deref(),
        path,
        p,
    );
    let cipher_suites = cipher_suites(tls.cipher_suites.clone().unwrap_or_default(), path, p);
    let (credential, bundled_ca) = credential?;
    let ca_certificates = ca_certificates(&tls, bundled_ca, mode, &credential, path, p);
    let mut subject_alt_names = tls.subject_alt_names.unwrap_or_default();
    if mode == ServerTlsMode::Simple && !subject_alt_names.is_empty() {
        p.warn(
            format!("{path}.subjectAltNames"),
            "subjectAltNames are checked in client certificates, which SIMPLE does not ask \
             for: ignored",
        );
        subject_alt_names.clear();
    }
    Some(ServerTls {
        mode,
        credential,
        ca_certificates,
        subject_alt_names,
        min_version,
        max_version,
        cipher_suites,
    })
}

fn mode(mode: Option<&str>, path: &str, p: &mut Problems) -> Option<ServerTlsMode> {
    let at = format!("{path}.mode");
    let rule = match mode {
        Some("SIMPLE") => return Some(ServerTlsMode::Simple),
        Some("MUTUAL") => return Some(ServerTlsMode::Mutual),
        Some("OPTIONAL_MUTUAL") => return Some(ServerTlsMode::OptionalMutual),
        None => {
            p.warn(
                at,
                "mode is unset: Istio's default is PASSTHROUGH, which does not terminate TLS; \
                 this gateway terminates it as SIMPLE (write mode: SIMPLE to mean the same \
                 under both)",
            );
            return Some(ServerTlsMode::Simple);
        }
        Some(m @ ("PASSTHROUGH" | "AUTO_PASSTHROUGH")) => format!("mode {m} is {PASSTHROUGH}"),
        Some("ISTIO_MUTUAL") => "mode ISTIO_MUTUAL is not supported: Istio's mesh certificates \
             are issued by istiod, which is not here; use MUTUAL with credentialName"
            .to_owned(),
        Some(other) => format!(
            "{other:?} is not one of SIMPLE, MUTUAL, OPTIONAL_MUTUAL, PASSTHROUGH, \
             AUTO_PASSTHROUGH, ISTIO_MUTUAL"
        ),
    };
    p.error(at, rule);
    None
}

/// An empty string is unset, as in proto3.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The server's one credential, and the CA file that came with it in `tlsCertificates`.
fn credential(
    tls: &spec::ServerTlsSettings,
    path: &str,
    p: &mut Problems,
) -> Option<(ServerCredential, Option<PathBuf>)> {
    let names = tls.credential_names.as_deref().unwrap_or_default();
    let certificates = tls.tls_certificates.as_deref().unwrap_or_default();
    let files = given(&tls.server_certificate).is_some() || given(&tls.private_key).is_some();
    let sources: Vec<&str> = [
        (given(&tls.credential_name).is_some(), "credentialName"),
        (!names.is_empty(), "credentialNames"),
        (files, "serverCertificate/privateKey"),
        (!certificates.is_empty(), "tlsCertificates"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    match sources.as_slice() {
        [] => {
            p.error(
                path,
                "an HTTPS server needs a credential: credentialName, or serverCertificate and \
                 privateKey",
            );
            return None;
        }
        [_] => {}
        both => {
            let rule = format!(
                "{} each name the server's certificate: pick one of credentialName, \
                 credentialNames, serverCertificate and privateKey, or tlsCertificates",
                both.join(" and ")
            );
            p.error(path, rule);
            return None;
        }
    }
    if let Some(name) = given(&tls.credential_name) {
        return Some((ServerCredential::Named(name.to_owned()), None));
    }
    if let [first, ..] = names {
        first_only(names.len(), &format!("{path}.credentialNames"), first, p);
        return Some((ServerCredential::Named(first.clone()), None));
    }
    if let [first, ..] = certificates {
        let at = format!("{path}.tlsCertificates");
        let files = files_credential(
            &first.server_certificate,
            &first.private_key,
            &format!("{at}[0]"),
            p,
        );
        let name = given(&first.server_certificate).unwrap_or_default();
        first_only(certificates.len(), &at, name, p);
        return files.map(|f| (f, given(&first.ca_certificates).map(PathBuf::from)));
    }
    files_credential(&tls.server_certificate, &tls.private_key, path, p).map(|f| (f, None))
}

fn files_credential(
    certificate: &Option<String>,
    key: &Option<String>,
    path: &str,
    p: &mut Problems,
) -> Option<ServerCredential> {
    match (given(certificate), given(key)) {
        (Some(certificate), Some(key)) => Some(ServerCredential::Files {
            certificate: certificate.into(),
            private_key: key.into(),
        }),
        (Some(_), None) => {
            p.error(
                format!("{path}.privateKey"),
                "serverCertificate needs its privateKey",
            );
            None
        }
        (None, _) => {
            p.error(
                format!("{path}.serverCertificate"),
                "privateKey needs its serverCertificate",
            );
            None
        }
    }
}

fn first_only(count: usize, path: &str, first: &str, p: &mut Problems) {
    if count > 1 {
        let rule = format!(
            "{count} certificates: only the first ({first}) is served, more than one \
             certificate per server is not supported"
        );
        p.warn(path, rule);
    }
}

/// The CA file client certificates are checked against: needed by MUTUAL and OPTIONAL_MUTUAL
/// with certificate files, unused with SIMPLE, replaced by the Secret's with `credentialName`.
fn ca_certificates(
    tls: &spec::ServerTlsSettings,
    bundled: Option<PathBuf>,
    mode: ServerTlsMode,
    credential: &ServerCredential,
    path: &str,
    p: &mut Problems,
) -> Option<PathBuf> {
    let at = format!("{path}.caCertificates");
    let ca = given(&tls.ca_certificates).map(PathBuf::from).or(bundled);
    match (mode, credential, ca) {
        (ServerTlsMode::Simple, _, Some(_)) => {
            let rule = "caCertificates check client certificates, which SIMPLE does not ask \
                        for: ignored";
            p.warn(at, rule);
            None
        }
        (_, ServerCredential::Named(name), Some(_)) => {
            let rule = format!(
                "with credentialName, client certificates are checked against the Secret's \
                 ca.crt ({name}/ca.crt or {name}-cacert/ca.crt): ignored"
            );
            p.warn(at, rule);
            None
        }
        (ServerTlsMode::Simple, _, None) | (_, ServerCredential::Named(_), None) => None,
        (_, ServerCredential::Files { .. }, None) => {
            let rule = "mode MUTUAL and OPTIONAL_MUTUAL need caCertificates, the CA bundle client \
                        certificates are checked against";
            p.error(at, rule);
            None
        }
        (_, ServerCredential::Files { .. }, ca @ Some(_)) => ca,
    }
}

/// `minProtocolVersion` and `maxProtocolVersion`, TLS 1.2 and 1.3 when unset or `TLS_AUTO`.
fn versions(
    min: Option<&str>,
    max: Option<&str>,
    path: &str,
    p: &mut Problems,
) -> (TlsVersion, TlsVersion) {
    let version = |p: &mut Problems, field: &str, value: Option<&str>| {
        let at = format!("{path}.{field}");
        match value {
            None | Some("TLS_AUTO") => None,
            Some("TLSV1_2") => Some(TlsVersion::V1_2),
            Some("TLSV1_3") => Some(TlsVersion::V1_3),
            Some(old @ ("TLSV1_0" | "TLSV1_1")) if field == "minProtocolVersion" => {
                let rule = format!(
                    "{old}: rustls serves TLS 1.2 and 1.3 only, so the minimum is TLS 1.2 \
                     (stricter, not weaker)"
                );
                p.warn(at, rule);
                Some(TlsVersion::V1_2)
            }
            Some(old @ ("TLSV1_0" | "TLSV1_1")) => {
                let rule = format!(
                    "{old}: this gateway cannot serve below TLS 1.2 (rustls serves 1.2 and 1.3 \
                     only)"
                );
                p.error(at, rule);
                None
            }
            Some(other) => {
                let rule =
                    format!("{other:?} is not one of TLS_AUTO, TLSV1_0, TLSV1_1, TLSV1_2, TLSV1_3");
                p.error(at, rule);
                None
            }
        }
    };
    let min_version = version(p, "minProtocolVersion", min);
    let max_version = version(p, "maxProtocolVersion", max);
    if let (Some(lo), Some(hi)) = (min_version, max_version)
        && lo > hi
    {
        let rule = format!(
            "maxProtocolVersion {} is below minProtocolVersion {}",
            max.unwrap_or_default(),
            min.unwrap_or_default()
        );
        p.error(format!("{path}.maxProtocolVersion"), rule);
    }
    (
        min_version.unwrap_or(TlsVersion::V1_2),
        max_version.unwrap_or(TlsVersion::V1_3),
    )
}
