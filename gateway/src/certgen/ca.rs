//! The CA: made with rcgen, or read back from its PEM files; it signs the leaves.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData,
};

use super::files::read_optional;
use super::{BACKDATE, CA_DAYS, CA_NAME, CertError, Host, days, unix};

/// A CA able to sign.
pub(super) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// `ca.crt`.
    pub(super) cert_path: PathBuf,
    pub(super) pem: String,
    pub(super) der: Vec<u8>,
    /// Seconds since the epoch.
    pub(super) not_after: i64,
}

impl Ca {
    /// A new CA, to be written to `dir`.
    pub(super) fn create(dir: &Path, now: SystemTime) -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen("make a key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, CA_NAME.to_owned());
        // Path length 0: it signs servers' certificates, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let not_after = now + days(CA_DAYS);
        params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
        params.not_after = not_after.into();
        let cert = params
            .self_signed(&key)
            .map_err(rcgen("sign the CA certificate"))?;
        Ok(Self {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            cert_path: dir.join("ca.crt"),
            not_after: unix(not_after),
        })
    }

    /// The CA in `dir`; `None` when its certificate or key is missing.
    pub(super) fn load(dir: &Path) -> Result<Option<Self>, CertError> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        let (Some(cert_pem), Some(key_pem)) =
            (read_optional(&cert_path)?, read_optional(&key_path)?)
        else {
            return Ok(None);
        };
        let bad = |path: &Path, what| CertError::BadCa {
            path: path.to_owned(),
            what,
        };
        let key = std::str::from_utf8(&key_pem)
            .ok()
            .and_then(|pem| KeyPair::from_pem(pem).ok())
            .ok_or_else(|| bad(&key_path, "a PEM private key"))?;
        let der = pem_contents(&cert_pem).ok_or_else(|| bad(&cert_path, "a PEM certificate"))?;
        let not_after = {
            let (_, cert) = x509_parser::parse_x509_certificate(&der)
                .map_err(|_| bad(&cert_path, "an X.509 certificate"))?;
            if !cert.is_ca() {
                return Err(bad(&cert_path, "a CA certificate"));
            }
            if cert.public_key().raw != key.subject_public_key_info() {
                return Err(bad(&key_path, "the key of ca.crt"));
            }
            cert.validity().not_after.timestamp()
        };
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)
            .map_err(|_| bad(&cert_path, "a CA certificate rcgen can sign with"))?;
        Ok(Some(Self {
            issuer,
            pem: String::from_utf8_lossy(&cert_pem).into_owned(),
            der,
            cert_path,
            not_after,
        }))
    }

    /// Its private key, PKCS#8 PEM.
    pub(super) fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A new leaf for `hosts` and its key, both PEM (the key PKCS#8).
    pub(super) fn issue(
        &self,
        hosts: &[Host],
        valid_days: u32,
        now: SystemTime,
    ) -> Result<(String, String), CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen("make a key"))?;
        let names: Vec<String> = hosts.iter().map(Host::to_string).collect();
        let mut params =
            CertificateParams::new(names.clone()).map_err(rcgen("name the certificate"))?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
        params.not_after = (now + days(valid_days)).into();
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen("sign the certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The DER inside the first PEM block of `pem`.
pub(super) fn pem_contents(pem: &[u8]) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    (block.label == "CERTIFICATE").then_some(block.contents)
}

fn rcgen(what: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Rcgen { what, source }
}
