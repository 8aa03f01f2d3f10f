//! A test PKI: one CA, and leaf certificates for servers and clients (ECDSA P-256, rcgen),
//! written in a Kubernetes TLS Secret's layout (`NAME/tls.crt`, `NAME/tls.key`, `NAME/ca.crt`).

#![allow(dead_code)] // each test file uses a different part

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA that signs leaves.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

/// A leaf: certificate and key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names`, valid from now - 1 h for `valid` (negative: expired).
    pub fn server(&self, names: &[&str], valid: i64) -> Leaf {
        self.leaf(names, valid, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for `name`.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], 3600, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: &[&str], valid: i64, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let now = SystemTime::now();
        let start = now - Duration::from_secs(7200);
        params.not_before = start.into();
        params.not_after = if valid >= 0 {
            now + Duration::from_secs(valid as u64)
        } else {
            now - Duration::from_secs((-valid) as u64)
        }
        .into();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `leaf` as the Secret `name` under `dir` (with this CA as `ca.crt`), replacing the
    /// files whole (written aside, then renamed), as a Secret volume's update does.
    pub fn write_secret(&self, dir: &Path, name: &str, leaf: &Leaf) {
        let secret = dir.join(name);
        std::fs::create_dir_all(&secret).unwrap();
        for (file, text) in [
            ("tls.crt", &leaf.cert_pem),
            ("tls.key", &leaf.key_pem),
            ("ca.crt", &self.ca_pem),
        ] {
            let tmp = secret.join(format!(".{file}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, secret.join(file)).unwrap();
        }
    }

    /// Trust anchors: this CA.
    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        Arc::new(roots)
    }
}

impl Leaf {
    /// The certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }

    /// The key, DER.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}
