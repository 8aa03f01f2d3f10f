//! Reading certificates, keys and CA bundles: where they are (a Kubernetes TLS Secret's layout
//! under `--credentials-dir`, or Istio's file paths) and whether they are usable (PEM, a key
//! that matches the certificate, a certificate that has not expired).

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::config::model::{ServerCredential, ServerTls};

/// Why a server's credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// `credentialName` without `--credentials-dir`.
    #[error("credentialName {0}: no --credentials-dir to find it in")]
    NoDir(String),
    /// A file could not be read or holds no PEM of the kind wanted.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The key does not sign for the certificate.
    #[error("{certificate}: does not match the private key {key}")]
    Mismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate's validity has ended, or not begun.
    #[error("{path}: {why}")]
    Validity {
        /// The certificate file.
        path: PathBuf,
        /// Expired when, or not yet valid.
        why: String,
    },
    /// MUTUAL without CA certificates.
    #[error("MUTUAL needs CA certificates to check clients: none at {}", looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" nor "))]
    NoCa {
        /// Where they were looked for.
        looked: Vec<PathBuf>,
    },
    /// rustls refused the settings.
    #[error("{0}")]
    Config(String),
}

/// The files of one server's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFiles {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub private_key: PathBuf,
    /// CA bundle for client certificates, if one exists.
    pub ca: Option<PathBuf>,
    /// Where the CA bundle was looked for.
    pub ca_looked: Vec<PathBuf>,
}

impl CredentialFiles {
    /// Where `tls`'s credentials are: `DIR/X/tls.crt`, `DIR/X/tls.key`, and the CA bundle from
    /// `caCertificates`, else `DIR/X/ca.crt`, else `DIR/X-cacert/ca.crt` (Istio's separate
    /// CA Secret), whichever exists first.
    pub fn of(tls: &ServerTls, dir: Option<&Path>) -> Result<Self, CredentialError> {
        let (certificate, private_key, mut looked) = match &tls.credential {
            ServerCredential::Named(name) => {
                let dir = dir.ok_or_else(|| CredentialError::NoDir(name.clone()))?;
                let secret = dir.join(name);
                (
                    secret.join("tls.crt"),
                    secret.join("tls.key"),
                    vec![
                        secret.join("ca.crt"),
                        dir.join(format!("{name}-cacert")).join("ca.crt"),
                    ],
                )
            }
            ServerCredential::Files {
                certificate,
                private_key,
            } => (certificate.clone(), private_key.clone(), Vec::new()),
        };
        if let Some(ca) = &tls.ca_certificates {
            looked.insert(0, ca.clone());
        }
        let ca = looked.iter().find(|p| p.is_file()).cloned();
        Ok(Self {
            certificate,
            private_key,
            ca,
            ca_looked: looked,
        })
    }
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> CredentialError {
    CredentialError::File {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Reads a PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or SEC1), checks that
/// they match and that the leaf is valid now.
pub fn load_certified_key(certificate: &Path, key: &Path) -> Result<CertifiedKey, CredentialError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| file_error(certificate, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(certificate, e))?;
    if chain.is_empty() {
        return Err(file_error(certificate, "no PEM certificate in it"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| file_error(key, e))?;
    let certified = CertifiedKey::new(chain, signer);
    if certified.keys_match().is_err() {
        return Err(CredentialError::Mismatch {
            certificate: certificate.to_path_buf(),
            key: key.to_path_buf(),
        });
    }
    check_validity(certificate, &certified.cert[0])?;
    Ok(certified)
}

/// Fails when the certificate's validity has ended or not begun.
fn check_validity(path: &Path, cert: &CertificateDer<'_>) -> Result<(), CredentialError> {
    let (not_before, not_after) = validity(cert).map_err(|why| file_error(path, why))?;
    let now = UnixTime::now().as_secs();
    if now > not_after {
        return Err(CredentialError::Validity {
            path: path.to_path_buf(),
            why: format!("expired {} s ago", now - not_after),
        });
    }
    if now < not_before {
        return Err(CredentialError::Validity {
            path: path.to_path_buf(),
            why: format!("not valid for another {} s", not_before - now),
        });
    }
    Ok(())
}

/// The certificate's `notBefore` and `notAfter`, in seconds since the Unix epoch.
pub fn validity(cert: &CertificateDer<'_>) -> Result<(u64, u64), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let v = parsed.validity();
    let secs = |t: &x509_parser::time::ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
    Ok((secs(&v.not_before), secs(&v.not_after)))
}

/// Reads a PEM CA bundle into trust anchors.
pub fn load_roots(path: &Path) -> Result<RootCertStore, CredentialError> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    Ok(roots)
}

/// A certificate's subject alternative names: DNS names (lowercase), URIs (a SPIFFE id) and IP
/// addresses, as text; none when it does not parse.
pub fn subject_alt_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
            GeneralName::URI(n) => Some((*n).to_owned()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
