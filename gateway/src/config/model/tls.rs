//! TLS as the Gateway's servers (`servers[].tls`, Istio's `ServerTLSSettings`) and a
//! DestinationRule's traffic policy (`trafficPolicy.tls`, `ClientTLSSettings`) ask for it,
//! validated: what the runtime (`crate::tls`) needs, and nothing it cannot do.
//!
//! Decisions (docs/tls.md): this gateway terminates TLS, so `PASSTHROUGH` and
//! `AUTO_PASSTHROUGH` are errors (out of scope), as are `ISTIO_MUTUAL` (Istio's mesh
//! certificates come from istiod, which is not here) and upstream `MUTUAL`; rustls speaks TLS 1.2
//! and 1.3 only, so a `minProtocolVersion` below 1.2 is a warning (stricter, not weaker);
//! `cipherSuites` are kept as their IANA names, each one known to the runtime.

mod client;
mod server;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use super::Problems;
use crate::config::diagnostic::near_miss;

pub(crate) use client::client_tls;
pub(crate) use server::server_tls;

/// A TLS protocol version rustls serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

/// How a Gateway server terminates TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTlsMode {
    /// `SIMPLE`: the server's certificate, no client certificate.
    Simple,
    /// `MUTUAL`: clients must present a certificate signed by the server's CA certificates.
    Mutual,
    /// `OPTIONAL_MUTUAL`: a client certificate is checked when one is presented.
    OptionalMutual,
}

/// Where a server's certificate, key and CA certificates are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCredential {
    /// `credentialName: X`: `DIR/X/tls.crt`, `DIR/X/tls.key`, and for client checks
    /// `DIR/X/ca.crt` or `DIR/X-cacert/ca.crt` under `--credentials-dir` (a Kubernetes TLS
    /// Secret mounted as a volume).
    Named(String),
    /// `serverCertificate`, `privateKey` (and `caCertificates`): file paths, as written.
    Files {
        /// PEM certificate chain.
        certificate: PathBuf,
        /// PEM private key.
        private_key: PathBuf,
    },
}

/// `servers[].tls` of an HTTPS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// `mode` (`SIMPLE` when unset).
    pub mode: ServerTlsMode,
    /// The certificate and key.
    pub credential: ServerCredential,
    /// `caCertificates`: the CA bundle client certificates are checked against, when given as
    /// a file (with `credentialName`, the Secret's `ca.crt` is used instead).
    pub ca_certificates: Option<PathBuf>,
    /// `subjectAltNames`: a client certificate must carry one of them (MUTUAL); empty: any.
    pub subject_alt_names: Vec<String>,
    /// `minProtocolVersion` (TLS 1.2 when unset or below).
    pub min_version: TlsVersion,
    /// `maxProtocolVersion` (TLS 1.3 when unset).
    pub max_version: TlsVersion,
    /// `cipherSuites` as IANA names (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`); empty: rustls'
    /// defaults.
    pub cipher_suites: Vec<String>,
}

/// How the gateway speaks to a cluster's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTls {
    /// `mode: SIMPLE`: TLS, the endpoint's certificate checked unless told otherwise.
    Simple(ClientTlsSettings),
}

/// `trafficPolicy.tls` with `mode: SIMPLE`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTlsSettings {
    /// `caCertificates`: the CA bundle the endpoint's certificate is checked against; `None`:
    /// the system's roots (webpki-roots).
    pub ca_certificates: Option<PathBuf>,
    /// `sni`: the name sent and checked; `None`: the host of the destination.
    pub sni: Option<String>,
    /// `subjectAltNames`: the certificate must carry one of them instead of the SNI name.
    pub subject_alt_names: Vec<String>,
    /// `insecureSkipVerify`: no check of the endpoint's certificate at all.
    pub insecure_skip_verify: bool,
}

/// The cipher suites rustls implements, as `(OpenSSL name, IANA name)`: the TLS 1.2 ECDHE
/// AEAD suites, and the three TLS 1.3 suites, which OpenSSL spells as IANA does.
const RUSTLS_SUITES: [(&str, &str); 9] = [
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    ("TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
];

/// Real suites Envoy (BoringSSL) or OpenSSL accept and rustls does not implement: CBC,
/// static-RSA key exchange, 3DES. Istio's list (`security.ValidCipherSuites`) is the first
/// block, in both spellings; the SHA-2 CBC ones are OpenSSL's.
const NOT_IN_RUSTLS: [&str; 24] = [
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
    "AES128-SHA256",
    "AES256-SHA256",
];

/// Why a `cipherSuites` name has no IANA name here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// A real suite that rustls does not implement.
    #[error("not supported by rustls (no CBC or static-RSA suites)")]
    NotInRustls,
    /// Not a cipher suite name at all.
    #[error("not a cipher suite{}", closest.map(|c| format!(" (did you mean {c}?)")).unwrap_or_default())]
    Unknown {
        /// The supported name it is closest to, if close enough to be a typo.
        closest: Option<&'static str>,
    },
}

/// The IANA name (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`) of one `cipherSuites` name.
///
/// Istio passes `cipherSuites` to Envoy, which takes OpenSSL names
/// (`ECDHE-ECDSA-AES128-GCM-SHA256`) and IANA names alike; both are accepted here, for the suites
/// rustls implements: TLS 1.2 ECDHE-ECDSA and ECDHE-RSA with AES128-GCM-SHA256,
/// AES256-GCM-SHA384 and CHACHA20-POLY1305, and the TLS 1.3 suites `TLS_AES_128_GCM_SHA256`,
/// `TLS_AES_256_GCM_SHA384` and `TLS_CHACHA20_POLY1305_SHA256` (which Envoy does not let
/// `cipherSuites` configure). Names are matched exactly, as OpenSSL does; one entry of Envoy's
/// equal-preference groups (`[A|B]`) is split first by [`cipher_suite_names`].
///
/// ```
/// use gateway::config::model::{CipherError, iana_cipher_suite};
///
/// assert_eq!(
///     iana_cipher_suite("ECDHE-RSA-CHACHA20-POLY1305"),
///     Ok("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256")
/// );
/// assert_eq!(iana_cipher_suite("AES128-SHA"), Err(CipherError::NotInRustls));
/// assert_eq!(
///     iana_cipher_suite("ECDHE-RSA-AES128-GCM-SHA265"),
///     Err(CipherError::Unknown { closest: Some("ECDHE-RSA-AES128-GCM-SHA256") })
/// );
/// ```
pub fn iana_cipher_suite(name: &str) -> Result<&'static str, CipherError> {
    if let Some((_, iana)) = RUSTLS_SUITES.iter().find(|(o, i)| *o == name || *i == name) {
        return Ok(iana);
    }
    if NOT_IN_RUSTLS.contains(&name) {
        return Err(CipherError::NotInRustls);
    }
    let known = || RUSTLS_SUITES.iter().flat_map(|(o, i)| [*o, *i]);
    // A name in the wrong case is closest to itself, which `near_miss` never proposes.
    let closest = known()
        .find(|k| k.eq_ignore_ascii_case(name))
        .or_else(|| near_miss(&name.to_ascii_uppercase(), known()));
    Err(CipherError::Unknown { closest })
}

/// The suite names of one `cipherSuites` entry: the entry itself, or the names of an Envoy
/// equal-preference group (`[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]`).
pub fn cipher_suite_names(entry: &str) -> impl Iterator<Item = &str> {
    let entry = entry.trim();
    let group = entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(entry);
    group.split('|').map(str::trim)
}

/// `cipherSuites` as IANA names, in order, each once; `ALL` anywhere means rustls' defaults.
fn cipher_suites(entries: Vec<String>, path: &str, p: &mut Problems) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut all = false;
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("{path}.cipherSuites[{i}]");
        for name in cipher_suite_names(entry).filter(|n| !n.is_empty()) {
            if name == "ALL" {
                all = true;
                continue;
            }
            if name.starts_with(['!', '-', '+']) {
                let rule = format!(
                    "{name:?}: cipher-list operators (!, -, +) are not supported; list the \
                     suites to allow"
                );
                p.error(&at, rule);
                continue;
            }
            match iana_cipher_suite(name) {
                Ok(iana) if out.iter().any(|s| s == iana) => {
                    p.warn(&at, format!("{name:?} is listed twice: ignored"));
                }
                Ok(iana) => out.push(iana.to_owned()),
                Err(e) => p.error(&at, format!("{name:?}: {e}")),
            }
        }
    }
    if all { Vec::new() } else { out }
}
