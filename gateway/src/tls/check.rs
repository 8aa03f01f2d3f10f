//! `gateway check --credentials-dir DIR`: each HTTPS server's certificate as the TLS listener
//! would read it — missing, unreadable, not matching its key, expired or not yet valid, soon to
//! expire, not covering the server's hosts, or MUTUAL without CA certificates — as findings at
//! the server's `tls` line.

use std::path::Path;

use super::credentials::{CredentialFiles, load_certified_key, subject_alt_names, validity};
use crate::config::diagnostic::{Diagnostic, Severity};
use crate::config::model::{Gateway, ServerCredential, ServerTlsMode};

/// A certificate ending within this many days is a warning.
const SOON_DAYS: u64 = 14;

/// The findings of every HTTPS server's credentials; `credentials_dir` is where
/// `credentialName`s are found (without it, those servers are reported as not checked).
pub fn check_certificates(gateways: &[Gateway], credentials_dir: Option<&Path>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for gateway in gateways {
        for (i, server) in gateway.servers.iter().enumerate() {
            let Some(tls) = &server.tls else { continue };
            let path = format!("spec.servers[{i}].tls");
            let finding = |severity, message: String| {
                Diagnostic::new(severity, gateway.meta.location_of(&path), message)
                    .resource(gateway.meta.resource())
                    .path(path.clone())
            };
            if let (ServerCredential::Named(name), None) = (&tls.credential, credentials_dir) {
                out.push(finding(
                    Severity::Info,
                    format!(
                        "credentialName {name}: certificate not checked (no --credentials-dir)"
                    ),
                ));
                continue;
            }
            let files = match CredentialFiles::of(tls, credentials_dir) {
                Ok(files) => files,
                Err(e) => {
                    out.push(finding(Severity::Error, e.to_string()));
                    continue;
                }
            };
            if tls.mode != ServerTlsMode::Simple && files.ca.is_none() {
                let looked: Vec<String> = files
                    .ca_looked
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                out.push(finding(
                    Severity::Error,
                    format!(
                        "MUTUAL needs CA certificates to check clients: none at {}",
                        looked.join(" nor ")
                    ),
                ));
            }
            let key = match load_certified_key(&files.certificate, &files.private_key) {
                Ok(key) => key,
                Err(e) => {
                    out.push(finding(
                        Severity::Error,
                        format!("{e}: its handshakes would fail"),
                    ));
                    continue;
                }
            };
            let leaf = &key.cert[0];
            if let Ok((_, not_after)) = validity(leaf) {
                let now = rustls::pki_types::UnixTime::now().as_secs();
                let left = not_after.saturating_sub(now) / 86_400;
                if left < SOON_DAYS {
                    out.push(finding(
                        Severity::Warning,
                        format!("{}: expires in {left} days", files.certificate.display()),
                    ));
                }
            }
            let names = subject_alt_names(leaf.as_ref());
            for host in &server.hosts {
                let host = host.rsplit_once('/').map_or(host.as_str(), |(_, h)| h);
                if host != "*" && !covers(&names, host) {
                    out.push(finding(
                        Severity::Error,
                        format!(
                            "{}: does not cover the host {host} (it names {})",
                            files.certificate.display(),
                            if names.is_empty() {
                                "no DNS name".to_owned()
                            } else {
                                names.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// Whether a certificate naming `names` is valid for `host` (a name, or `*.suffix`): the same
/// name, or a `*.` name one label above it (RFC 6125: the wildcard takes one label).
pub(crate) fn covers(names: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    names.iter().any(|name| {
        if *name == host {
            return true;
        }
        match (name.strip_prefix("*."), host.split_once('.')) {
            (Some(parent), Some((label, rest))) => {
                label != "*" && !label.is_empty() && parent == rest
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn a_wildcard_takes_one_label_and_a_wildcard_host_needs_a_wildcard_name() {
        let names = ["*.example.com".to_owned(), "shop.test".to_owned()];
        assert!(covers(&names, "a.example.com"));
        assert!(covers(&names, "SHOP.test"));
        assert!(covers(&names, "*.example.com"));
        assert!(!covers(&names, "a.b.example.com"));
        assert!(!covers(&names, "example.com"));
        assert!(!covers(&names, "*.test"));
        assert!(!covers(&["a.example.com".to_owned()], "*.example.com"));
    }
}
