//! Whether the leaf already there can stay: signed by the CA, valid long enough, naming every
//! host, with its key beside it.

use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::ca::{Ca, pem_contents};
use super::files::read_optional;
use super::{CertError, DAY, Host, RENEW_DAYS, Reissue, unix};

/// What to do with the leaf there.
pub(super) enum Verdict {
    Keep { days_left: i64 },
    Reissue(Reissue),
}

/// Whether the leaf at `cert` (key at `key`) can stay.
pub(super) fn verdict(
    cert: &Path,
    key: &Path,
    ca: &Ca,
    hosts: &[Host],
    now: SystemTime,
) -> Result<Verdict, CertError> {
    let Some(pem) = read_optional(cert)? else {
        return Ok(Verdict::Reissue(Reissue::Missing));
    };
    let der = pem_contents(&pem);
    let parsed = der
        .as_deref()
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok());
    let Some((_, leaf)) = parsed else {
        return Ok(Verdict::Reissue(Reissue::Unreadable));
    };
    let (_, ca_cert) =
        x509_parser::parse_x509_certificate(&ca.der).map_err(|_| CertError::BadCa {
            path: ca.cert_path.clone(),
            what: "an X.509 certificate",
        })?;
    // Byte for byte, as webpki matches an issuer to its CA.
    if leaf.issuer().as_raw() != ca_cert.subject().as_raw()
        || leaf.verify_signature(Some(ca_cert.public_key())).is_err()
    {
        return Ok(Verdict::Reissue(Reissue::OtherCa));
    }
    let now = unix(now);
    let validity = leaf.validity();
    let left = validity.not_after.timestamp() - now;
    if validity.not_before.timestamp() > now || left < i64::from(RENEW_DAYS) * DAY as i64 {
        return Ok(Verdict::Reissue(Reissue::Expiring));
    }
    if let Some(host) = hosts.iter().find(|host| !covers(&leaf, host)) {
        return Ok(Verdict::Reissue(Reissue::MissingHost(host.clone())));
    }
    let key_matches = read_optional(key)?
        .and_then(|pem| String::from_utf8(pem).ok())
        .and_then(|pem| KeyPair::from_pem(&pem).ok())
        .is_some_and(|key| key.subject_public_key_info() == leaf.public_key().raw);
    if !key_matches {
        return Ok(Verdict::Reissue(Reissue::KeyMismatch));
    }
    Ok(Verdict::Keep {
        days_left: left / DAY as i64,
    })
}

/// Whether `leaf` names `host` in its SANs (exactly: a wildcard does not cover a name).
pub(super) fn covers(leaf: &X509Certificate<'_>, host: &Host) -> bool {
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|name| match (name, host) {
            (GeneralName::DNSName(name), Host::Dns(host)) => name.eq_ignore_ascii_case(host),
            (GeneralName::IPAddress(bytes), Host::Ip(host)) => match host {
                IpAddr::V4(ip) => *bytes == ip.octets(),
                IpAddr::V6(ip) => *bytes == ip.octets(),
            },
            _ => false,
        })
}
