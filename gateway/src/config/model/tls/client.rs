//! A DestinationRule's `trafficPolicy.tls` (top level, port level, subsets') → [`ClientTls`].
//!
//! Decisions beyond the module's (see [`super`]):
//! - `MUTUAL` is an error, not yet supported: the runtime's upstream TLS client presents no
//!   certificate of its own ([`ClientTls`] has `SIMPLE` only), and TLS without the
//!   certificate the endpoint asks for would fail every handshake, so the configuration is
//!   refused where it is written rather than at the first request.
//! - `credentialName` (a Secret with the CA certificates) is ignored, with a warning that says
//!   what is checked instead; `caCertificates` names the CA file.

use super::{ClientTls, ClientTlsSettings};
use crate::config::model::{Meta, Problems};
use crate::config::spec;

/// `tls` at `path` (`spec.trafficPolicy.tls`, …): `None` for `DISABLE` (or unset mode) and for
/// a mode this gateway refuses (reported).
pub(crate) fn client_tls(
    tls: spec::ClientTlsSettings,
    path: &str,
    meta: &Meta,
    p: &mut Problems,
) -> Option<ClientTls> {
    let at = format!("{path}.mode");
    let rule = match tls.mode.as_deref() {
        Some("SIMPLE") => return simple(tls, path, meta, p),
        None | Some("DISABLE") => {
            let set = tls.ca_certificates.is_some()
                || tls.subject_alt_names.is_some()
                || tls.sni.is_some()
                || tls.insecure_skip_verify.is_some();
            if set {
                let mode = tls.mode.as_deref().unwrap_or("unset, which is DISABLE,");
                let rule = format!(
                    "mode {mode} speaks plain text to the endpoints: the other tls settings do \
                     nothing"
                );
                p.warn(at, rule);
            }
            return None;
        }
        Some("ISTIO_MUTUAL") => "mode ISTIO_MUTUAL is not supported: Istio's mesh certificates \
             are issued by istiod, which is not here; use SIMPLE with caCertificates"
            .to_owned(),
        Some("MUTUAL") => "mode MUTUAL is not supported yet: the gateway's upstream TLS client \
             presents no client certificate; use SIMPLE, or leave mutual TLS to the endpoint's \
             sidecar"
            .to_owned(),
        Some(other) => format!("{other:?} is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL"),
    };
    p.error(at, rule);
    None
}

fn simple(
    tls: spec::ClientTlsSettings,
    path: &str,
    meta: &Meta,
    p: &mut Problems,
) -> Option<ClientTls> {
    let settings = ClientTlsSettings {
        ca_certificates: tls
            .ca_certificates
            .filter(|c| !c.is_empty())
            .map(Into::into),
        sni: tls.sni.filter(|s| !s.is_empty()),
        subject_alt_names: tls.subject_alt_names.unwrap_or_default(),
        insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
    };
    let credential = format!("{path}.credentialName");
    if settings.insecure_skip_verify {
        // Istio's rule too: a CA or names to check contradict checking nothing.
        let checks = [
            ("caCertificates", settings.ca_certificates.is_some()),
            ("subjectAltNames", !settings.subject_alt_names.is_empty()),
        ];
        for (field, _) in checks.iter().filter(|(_, set)| *set) {
            let rule =
                format!("{field} cannot be set with insecureSkipVerify, which checks nothing");
            p.error(format!("{path}.{field}"), rule);
        }
    } else if settings.ca_certificates.is_none() && meta.positions.contains(&credential) {
        p.warn(
            credential,
            "the Secret's CA certificates are not read here: the endpoint's certificate is \
             checked against the system's roots; name the CA file with caCertificates",
        );
    }
    Some(ClientTls::Simple(settings))
}
