//! Downstream TLS: the Gateway's HTTPS servers on the TLS listener (`--listen-tls`).
//!
//! The ClientHello is read first ([`LazyConfigAcceptor`]): its SNI name picks the server by the
//! servers' `hosts` — an exact name, then the longest `*.suffix`, then `*` — and with it that
//! server's rustls config (certificate, client checks for `MUTUAL`, protocol versions, cipher
//! suites). A name no server takes, or no SNI where no server takes `*`, fails the handshake
//! with an alert, as Envoy finds no filter chain; so does a server whose certificate could not
//! be read (the cause is logged and on the admin pages). ALPN offers `h2` and `http/1.1`.
//!
//! Certificates come from `--credentials-dir` (`credentialName: X` reads `X/tls.crt` and
//! `X/tls.key`, and for client checks `X/ca.crt` or `X-cacert/ca.crt`: the layout of a
//! Kubernetes TLS Secret mounted as a volume) or from the file paths Istio names. Each server's
//! certificate sits in a slot the resolver reads per handshake, so a rotation
//! ([`TlsServers::refresh`]) takes effect for the next handshake without touching open
//! connections; a new certificate that is unreadable, does not match its key, or is expired
//! keeps the old one.
//!
//! A handshake that does not finish within the timeout (10 s by default) is closed, and until
//! it finishes its connection counts as idle for the listener's eviction at the connection
//! limit, so a flood of unfinished handshakes cannot lock out served users.
//!
//! Below the request path: it imports the config model only.

mod check;
mod credentials;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::model::{Gateway, ServerTls, ServerTlsMode, TlsVersion};
pub use check::check_certificates;
pub use credentials::{CredentialError, CredentialFiles, load_certified_key, load_roots, validity};

/// How long a TLS handshake may take by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request learns of the TLS connection it came on (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The SNI name the client sent, lowercased.
    pub sni: Option<Arc<str>>,
}

/// Why a TLS connection was not served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No ClientHello, or a broken one.
    #[error("reading the ClientHello: {0}")]
    Hello(std::io::Error),
    /// No HTTPS server takes this name.
    #[error("no HTTPS server for the name {0:?}")]
    UnknownName(Option<String>),
    /// The server for this name has no usable certificate.
    #[error("{server}: no certificate to serve ({why})")]
    NoCertificate {
        /// Which server.
        server: String,
        /// Why its certificate could not be loaded.
        why: String,
    },
    /// The handshake failed (bad client certificate, no common version or suite...).
    #[error("handshake: {0}")]
    Handshake(std::io::Error),
    /// The client certificate carries none of the server's `subjectAltNames`.
    #[error("{server}: the client certificate names none of {wanted:?}")]
    ClientName {
        /// Which server.
        server: String,
        /// Its `subjectAltNames`.
        wanted: Vec<String>,
    },
    /// The handshake did not finish in time.
    #[error("handshake not finished within {0:?}")]
    Timeout(Duration),
}

/// One host pattern of a server's `hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any name, and no name.
    Any,
    /// `shop.example.com`.
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com`.
    Suffix(String),
}

impl HostPattern {
    /// A `hosts` entry, its `namespace/` part dropped.
    pub fn parse(host: &str) -> Self {
        let host = host.rsplit_once('/').map_or(host, |(_, h)| h);
        let host = host.to_ascii_lowercase();
        if host == "*" {
            Self::Any
        } else if let Some(suffix) = host.strip_prefix('*') {
            Self::Suffix(suffix.to_owned())
        } else {
            Self::Exact(host)
        }
    }

    /// How well it takes `name` (lowercase; higher is more specific), if it does.
    pub fn rank(&self, name: Option<&str>) -> Option<(u8, usize)> {
        match (self, name) {
            (Self::Any, _) => Some((0, 0)),
            (Self::Exact(h), Some(n)) if h == n => Some((2, h.len())),
            (Self::Suffix(s), Some(n)) if n.len() > s.len() && n.ends_with(s.as_str()) => {
                Some((1, s.len()))
            }
            _ => None,
        }
    }
}

/// A server's certificate, swapped in place on rotation.
#[derive(Debug)]
struct CertSlot(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Answers no name: handshakes for names no server takes fail with an alert.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// One HTTPS server of a Gateway.
#[derive(Debug)]
pub struct TlsServer {
    /// `namespace/gateway servers[i]`, for logs and the admin pages.
    pub label: String,
    hosts: Vec<HostPattern>,
    /// The files its certificate is read from.
    pub files: Option<CredentialFiles>,
    /// Its rustls config, or why there is none.
    config: Result<(Arc<ServerConfig>, Arc<CertSlot>), String>,
    /// Why the files' last change was not taken (the old certificate serving on).
    rejected: std::sync::Mutex<Option<String>>,
    /// `subjectAltNames`: a client certificate must carry one of them; empty: any.
    client_names: Vec<String>,
}

impl TlsServer {
    /// Why it serves no handshake, if it does not.
    pub fn problem(&self) -> Option<&str> {
        self.config.as_ref().err().map(String::as_str)
    }

    /// Why its certificate files' last change was not taken, if it was not.
    pub fn rejected(&self) -> Option<String> {
        self.rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Its `hosts`, as written minus a `namespace/` part.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| match h {
                HostPattern::Any => "*".to_owned(),
                HostPattern::Exact(h) => h.clone(),
                HostPattern::Suffix(s) => format!("*{s}"),
            })
            .collect()
    }

    /// The serving certificate's `notAfter` (seconds since the Unix epoch), if it serves.
    pub fn not_after(&self) -> Option<u64> {
        let (_, slot) = self.config.as_ref().ok()?;
        let key = slot.0.load();
        credentials::validity(key.cert.first()?)
            .ok()
            .map(|(_, end)| end)
    }
}

/// The HTTPS servers of a config.
#[derive(Debug)]
pub struct TlsServers {
    servers: Vec<TlsServer>,
    /// For names no server takes.
    reject: Arc<ServerConfig>,
}

impl TlsServers {
    /// The HTTPS servers of `gateways`, their certificates read now (from `credentials_dir`
    /// for `credentialName`). A server whose certificate cannot be read is kept, failing its
    /// handshakes, with the reason.
    pub fn build(gateways: &[Gateway], credentials_dir: Option<&Path>) -> Self {
        let mut servers = Vec::new();
        for gateway in gateways {
            for (i, server) in gateway.servers.iter().enumerate() {
                let Some(tls) = &server.tls else { continue };
                let label = format!("{} servers[{i}]", gateway.meta.qualified_name());
                let files = CredentialFiles::of(tls, credentials_dir);
                let config = files
                    .as_ref()
                    .map_err(ToString::to_string)
                    .and_then(|files| server_config(tls, files).map_err(|e| e.to_string()));
                if let Err(why) = &config {
                    tracing::error!(server = %label, %why, "HTTPS server without a certificate: its handshakes fail");
                }
                servers.push(TlsServer {
                    label,
                    hosts: server.hosts.iter().map(|h| HostPattern::parse(h)).collect(),
                    files: files.ok(),
                    config,
                    rejected: std::sync::Mutex::default(),
                    client_names: tls.subject_alt_names.clone(),
                });
            }
        }
        Self {
            servers,
            reject: reject_config(),
        }
    }

    /// The servers, in config order.
    pub fn servers(&self) -> &[TlsServer] {
        &self.servers
    }

    /// The server that takes `name` (lowercase): the most specific match, the first of equals.
    fn pick(&self, name: Option<&str>) -> Option<&TlsServer> {
        let mut best: Option<((u8, usize), &TlsServer)> = None;
        for server in &self.servers {
            let Some(rank) = server.hosts.iter().filter_map(|h| h.rank(name)).max() else {
                continue;
            };
            if best.is_none_or(|(b, _)| rank > b) {
                best = Some((rank, server));
            }
        }
        best.map(|(_, s)| s)
    }

    /// Reads every server's certificate files again and swaps in those that changed and are
    /// good; a bad one keeps the old certificate. Says, per server, what it did; a server that
    /// had no usable certificate and now has one is [`Refresh::Recovered`]: build the servers
    /// again to serve it.
    pub fn refresh(&self) -> Vec<(&str, Refresh)> {
        let mut out = Vec::new();
        for server in &self.servers {
            let Some(files) = &server.files else { continue };
            let loaded = load_certified_key(&files.certificate, &files.private_key);
            let outcome = match (&server.config, loaded) {
                (Ok((_, slot)), Ok(key)) => {
                    if slot.0.load().cert == key.cert {
                        Refresh::Unchanged
                    } else {
                        slot.0.store(Arc::new(key));
                        Refresh::Rotated
                    }
                }
                (Ok(_), Err(error)) => Refresh::Failed(error),
                (Err(_), Ok(_)) => Refresh::Recovered,
                (Err(_), Err(_)) => Refresh::Unchanged,
            };
            let rejected = match &outcome {
                Refresh::Failed(error) => Some(error.to_string()),
                _ => None,
            };
            *server.rejected.lock().unwrap_or_else(|e| e.into_inner()) = rejected;
            out.push((server.label.as_str(), outcome));
        }
        out
    }
}

/// What [`TlsServers::refresh`] did for one server.
#[derive(Debug)]
pub enum Refresh {
    /// The files hold the certificate in use (or still none usable).
    Unchanged,
    /// A new certificate is in use for new handshakes.
    Rotated,
    /// The files changed but are not usable: the old certificate stays.
    Failed(CredentialError),
    /// A server without a usable certificate now has one.
    Recovered,
}

/// The rustls config of one HTTPS server.
fn server_config(
    tls: &ServerTls,
    files: &CredentialFiles,
) -> Result<(Arc<ServerConfig>, Arc<CertSlot>), CredentialError> {
    let provider = Arc::new(provider(&tls.cipher_suites));
    let versions = versions(tls.min_version, tls.max_version);
    let key = load_certified_key(&files.certificate, &files.private_key)?;
    let slot = Arc::new(CertSlot(ArcSwap::from_pointee(key)));
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| CredentialError::Config(e.to_string()))?;
    let builder = match tls.mode {
        ServerTlsMode::Simple => builder.with_no_client_auth(),
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            let ca = files.ca.as_deref().ok_or_else(|| CredentialError::NoCa {
                looked: files.ca_looked.clone(),
            })?;
            let roots = load_roots(ca)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if tls.mode == ServerTlsMode::OptionalMutual {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| CredentialError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(slot.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), slot))
}

/// aws-lc-rs with the TLS 1.2 suites (and, when any is named, the TLS 1.3 ones) cut to
/// `names` (IANA names, validated by the config loader). Envoy does not let `cipherSuites`
/// touch TLS 1.3; here naming a TLS 1.3 suite restricts those too.
fn provider(names: &[String]) -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if names.is_empty() {
        return provider;
    }
    let name = |suite: &rustls::SupportedCipherSuite| {
        suite
            .suite()
            .as_str()
            .unwrap_or_default()
            .replacen("TLS13_", "TLS_", 1)
    };
    let is13 = |suite: &rustls::SupportedCipherSuite| suite.tls13().is_some();
    let named13 = provider
        .cipher_suites
        .iter()
        .any(|s| is13(s) && names.contains(&name(s)));
    provider.cipher_suites.retain(|s| {
        if is13(s) && !named13 {
            true
        } else {
            names.contains(&name(s))
        }
    });
    provider
}

fn versions(min: TlsVersion, max: TlsVersion) -> Vec<&'static SupportedProtocolVersion> {
    let mut out = Vec::new();
    if min <= TlsVersion::V1_3 && max >= TlsVersion::V1_3 {
        out.push(&rustls::version::TLS13);
    }
    if min <= TlsVersion::V1_2 && max >= TlsVersion::V1_2 {
        out.push(&rustls::version::TLS12);
    }
    out
}

fn reject_config() -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider's defaults are consistent")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCertificate));
    Arc::new(config)
}

/// The TLS listener's handshakes, on the servers of the config serving now.
#[derive(Debug)]
pub struct TlsAcceptor {
    servers: ArcSwap<TlsServers>,
    timeout: Duration,
}

/// A finished handshake.
pub struct Handshaken {
    /// The connection.
    pub stream: TlsStream<TcpStream>,
    /// ALPN chose HTTP/2.
    pub h2: bool,
    /// For the requests.
    pub info: TlsInfo,
}

impl TlsAcceptor {
    /// Handshakes on `servers`, each within `timeout`.
    pub fn new(servers: TlsServers, timeout: Duration) -> Self {
        Self {
            servers: ArcSwap::from_pointee(servers),
            timeout,
        }
    }

    /// The servers of a new config, for the next handshakes.
    pub fn update(&self, servers: TlsServers) {
        self.servers.store(Arc::new(servers));
    }

    /// The servers in use.
    pub fn servers(&self) -> Arc<TlsServers> {
        self.servers.load_full()
    }

    /// Runs a handshake on `stream`.
    pub async fn accept(&self, stream: TcpStream) -> Result<Handshaken, TlsError> {
        let handshake = async {
            let start = LazyConfigAcceptor::new(Acceptor::default(), stream)
                .await
                .map_err(TlsError::Hello)?;
            let sni = start
                .client_hello()
                .server_name()
                .map(str::to_ascii_lowercase);
            let servers = self.servers.load_full();
            let picked = servers.pick(sni.as_deref());
            let chosen = match picked.map(|s| (&s.config, s)) {
                Some((Ok((config, _)), server)) => Ok((config.clone(), server)),
                Some((Err(why), server)) => Err(TlsError::NoCertificate {
                    server: server.label.clone(),
                    why: why.clone(),
                }),
                None => Err(TlsError::UnknownName(sni.clone())),
            };
            let config = match &chosen {
                Ok((config, _)) => config.clone(),
                // Fails with an alert rather than a silent close.
                Err(_) => servers.reject.clone(),
            };
            let stream = start.into_stream(config).await;
            let stream = match (chosen, stream) {
                (Err(why), _) => return Err(why),
                (Ok(_), Err(e)) => return Err(TlsError::Handshake(e)),
                (Ok((_, server)), Ok(stream)) => {
                    let client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(<[_]>::first);
                    if let Some(cert) = client
                        && !server.client_names.is_empty()
                        && !names_one_of(cert, &server.client_names)
                    {
                        return Err(TlsError::ClientName {
                            server: server.label.clone(),
                            wanted: server.client_names.clone(),
                        });
                    }
                    stream
                }
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(Handshaken {
                stream,
                h2,
                info: TlsInfo {
                    sni: sni.map(Arc::from),
                },
            })
        };
        tokio::time::timeout(self.timeout, handshake)
            .await
            .unwrap_or(Err(TlsError::Timeout(self.timeout)))
    }
}

/// Whether `cert`'s subject alternative names (DNS, URI — a SPIFFE id —, IP address) include
/// one of `wanted`, compared exactly as Envoy's `match_subject_alt_names` with exact matchers.
fn names_one_of(cert: &rustls::pki_types::CertificateDer<'_>, wanted: &[String]) -> bool {
    credentials::subject_alt_names(cert.as_ref())
        .iter()
        .any(|name| wanted.contains(name))
}
