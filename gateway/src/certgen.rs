//! `gateway cert`: a local CA and a server certificate for development, laid out as a
//! Kubernetes TLS Secret.
//!
//! `DIR/ca/ca.crt` + `ca.key` is the CA (ECDSA P-256, "sticky local CA", 10 years), made once
//! and then reused. `DIR/NAME/tls.crt`, `tls.key` and `ca.crt` are the server's (ECDSA P-256,
//! the asked hosts as DNS and IP SANs, the first as CN), issued again only when there is none,
//! it is not valid for 7 more days, it does not name every asked host, another CA signed it, or
//! `tls.key` is not its key. So it can run before every start and does nothing when nothing is
//! due.
//!
//! `tls.crt` holds the leaf alone: the CA is a root the client must already trust (`curl
//! --cacert DIR/ca/ca.crt`), so sending it in every handshake would add bytes and no trust.
//! `ca.crt` beside it is cert-manager's layout, for whoever mounts the folder.
//!
//! Every file goes to a temporary file in its folder, is flushed, then renamed over the old one:
//! a reader sees the old file or the new one, never half a key. Keys are 0600, certificates
//! 0644, and folders this creates 0700.
//!
//! It may not serve TLS: it only writes files.

mod ca;
mod files;
mod leaf;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use ca::Ca;
use files::{make_dir, read_optional, write_file};
use leaf::Verdict;

/// The folder of the CA inside `--dir`.
pub const CA_DIR: &str = "ca";
/// The CA's common name.
pub const CA_NAME: &str = "sticky local CA";
/// How long a new CA is valid, in days.
pub const CA_DAYS: u32 = 3650;
/// A leaf valid for fewer days than this is issued again.
pub const RENEW_DAYS: u32 = 7;
/// Mode of the private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of the certificates.
pub const CERT_MODE: u32 = 0o644;
/// Mode of the folders this creates.
pub const DIR_MODE: u32 = 0o700;

const DAY: u64 = 86_400;
/// Certificates start a little in the past, so a clock slightly behind ours accepts them.
const BACKDATE: Duration = Duration::from_secs(300);

/// What `gateway cert` is asked for: its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct Request {
    /// Folder holding `ca/` (the CA) and `NAME/` (tls.crt, tls.key, ca.crt); created 0700.
    #[arg(long)]
    pub dir: PathBuf,
    /// The server certificate's folder: the Kubernetes TLS Secret's name.
    #[arg(long, default_value = "sticky-cert")]
    pub name: String,
    /// A DNS name or IP address the certificate is valid for (repeat it); the first is its CN.
    #[arg(long = "host", value_name = "HOST", default_values = ["localhost", "127.0.0.1", "::1"])]
    pub hosts: Vec<Host>,
    /// Days a new server certificate is valid: more than 7 (one valid for less is issued again),
    /// at most 825 (the longest macOS and iOS accept).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(8..=825))]
    pub days: u32,
}

/// A DNS name or an IP address a certificate is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, lower case (`*.` first for a wildcard).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

/// A `--host` that is neither an IP address nor a DNS name.
#[derive(Debug, Error)]
#[error(
    "{0:?} is neither an IP address nor a DNS name (letters, digits, '-' and dots; `*.` first for a wildcard)"
)]
pub struct HostError(String);

impl FromStr for Host {
    type Err = HostError;

    fn from_str(text: &str) -> Result<Self, HostError> {
        let bare = text.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse() {
            return Ok(Host::Ip(ip));
        }
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        let labels = name.strip_prefix("*.").unwrap_or(&name);
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.len() <= 253 && labels.split('.').all(label_ok) {
            Ok(Host::Dns(name))
        } else {
            Err(HostError(text.to_owned()))
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Dns(name) => f.write_str(name),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why `gateway cert` stopped.
#[derive(Debug, Error)]
pub enum CertError {
    /// No host to issue for.
    #[error("no --host given")]
    NoHost,
    /// `--days` is too short to outlive the renewal window.
    #[error(
        "--days must be more than {RENEW_DAYS} (a leaf valid for less is issued again), got {0}"
    )]
    Days(u32),
    /// `--name` is not one plain folder name, or is the CA's.
    #[error("--name {0:?} must be one folder name other than {CA_DIR:?}")]
    Name(String),
    /// A folder could not be created.
    #[error("cannot create the folder {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The CA's files are there but unusable.
    #[error("{path} is not {what}; move the {CA_DIR} folder away to make a new CA")]
    BadCa { path: PathBuf, what: &'static str },
    /// The CA ends before a new leaf would.
    #[error(
        "the CA {path} is valid for {days_left} more days, less than --days; move the {CA_DIR} folder away to make a new CA (and trust it again)"
    )]
    CaExpiring { path: PathBuf, days_left: i64 },
    /// rcgen could not make a key or a certificate.
    #[error("cannot {what}")]
    Rcgen {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// One thing `gateway cert` did; its `Display` is the line printed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new CA was made.
    CaCreated { cert: PathBuf },
    /// The CA there was kept.
    CaKept { cert: PathBuf, days_left: i64 },
    /// A new leaf was issued.
    LeafIssued {
        cert: PathBuf,
        days: u32,
        why: Reissue,
    },
    /// The leaf there was kept.
    LeafKept { cert: PathBuf, days_left: i64 },
    /// The server folder's copy of the CA was written (the leaf was kept).
    CaCopied { path: PathBuf },
}

/// Why a leaf is issued again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reissue {
    /// There was none.
    Missing,
    /// `tls.crt` is not a PEM certificate.
    Unreadable,
    /// It is not valid for [`RENEW_DAYS`] more days.
    Expiring,
    /// It does not name this host.
    MissingHost(Host),
    /// Another CA signed it.
    OtherCa,
    /// `tls.key` is missing or is not its key.
    KeyMismatch,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CaCreated { cert } => write!(
                f,
                "created the CA {} ({CA_NAME}, valid {CA_DAYS} days): trust it to call over HTTPS",
                cert.display()
            ),
            Action::CaKept { cert, days_left } => write!(
                f,
                "kept the CA {} (valid {days_left} more days)",
                cert.display()
            ),
            Action::LeafIssued { cert, days, why } => {
                write!(f, "issued {} (valid {days} days): {why}", cert.display())
            }
            Action::LeafKept { cert, days_left } => write!(
                f,
                "kept {}: it covers every host and is valid {days_left} more days",
                cert.display()
            ),
            Action::CaCopied { path } => write!(f, "wrote {}", path.display()),
        }
    }
}

impl fmt::Display for Reissue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reissue::Missing => f.write_str("there was none"),
            Reissue::Unreadable => f.write_str("the old one is not a PEM certificate"),
            Reissue::Expiring => write!(f, "the old one is not valid for {RENEW_DAYS} more days"),
            Reissue::MissingHost(host) => write!(f, "the old one does not cover {host}"),
            Reissue::OtherCa => f.write_str("another CA signed the old one"),
            Reissue::KeyMismatch => f.write_str("tls.key is missing or not the old one's key"),
        }
    }
}

/// What `gateway cert` did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One entry per action.
    pub actions: Vec<Action>,
    /// The CA certificate clients trust.
    pub ca_cert: PathBuf,
    /// The leaf's first host.
    pub host: Host,
}

/// One line per action, then the curl line.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for action in &self.actions {
            writeln!(f, "{action}")?;
        }
        writeln!(f, "{}", self.curl_line())
    }
}

impl Outcome {
    /// A command that calls the server with this CA.
    pub fn curl_line(&self) -> String {
        let host = match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            host => host.to_string(),
        };
        format!(
            "curl --cacert {} https://{host}/ping",
            self.ca_cert.display()
        )
    }
}

/// Makes or reuses the CA, then issues the leaf when it is due (see the module docs). `now` is
/// the time certificates are checked against and start from.
pub fn ensure(request: &Request, now: SystemTime) -> Result<Outcome, CertError> {
    let host = request.check()?;
    let ca_dir = request.dir.join(CA_DIR);
    let leaf_dir = request.dir.join(&request.name);
    for dir in [&request.dir, &ca_dir, &leaf_dir] {
        make_dir(dir)?;
    }
    let mut actions = Vec::new();
    let ca = match Ca::load(&ca_dir)? {
        Some(ca) => {
            let days_left = (ca.not_after - unix(now)) / DAY as i64;
            if days_left < i64::from(request.days) {
                return Err(CertError::CaExpiring {
                    path: ca.cert_path,
                    days_left,
                });
            }
            actions.push(Action::CaKept {
                cert: ca.cert_path.clone(),
                days_left,
            });
            ca
        }
        None => {
            let ca = Ca::create(&ca_dir, now)?;
            write_file(&ca_dir.join("ca.key"), ca.key_pem().as_bytes(), KEY_MODE)?;
            write_file(&ca.cert_path, ca.pem.as_bytes(), CERT_MODE)?;
            actions.push(Action::CaCreated {
                cert: ca.cert_path.clone(),
            });
            ca
        }
    };

    let cert = leaf_dir.join("tls.crt");
    let key = leaf_dir.join("tls.key");
    let ca_copy = leaf_dir.join("ca.crt");
    match leaf::verdict(&cert, &key, &ca, &request.hosts, now)? {
        Verdict::Keep { days_left } => {
            actions.push(Action::LeafKept {
                cert: cert.clone(),
                days_left,
            });
            if read_optional(&ca_copy)?.as_deref() != Some(ca.pem.as_bytes()) {
                write_file(&ca_copy, ca.pem.as_bytes(), CERT_MODE)?;
                actions.push(Action::CaCopied { path: ca_copy });
            }
        }
        Verdict::Reissue(why) => {
            let (cert_pem, key_pem) = ca.issue(&request.hosts, request.days, now)?;
            // The certificate last: until it is renamed into place the old pair is "not its
            // key", so a run cut short in between issues again.
            write_file(&key, key_pem.as_bytes(), KEY_MODE)?;
            write_file(&ca_copy, ca.pem.as_bytes(), CERT_MODE)?;
            write_file(&cert, cert_pem.as_bytes(), CERT_MODE)?;
            actions.push(Action::LeafIssued {
                cert: cert.clone(),
                days: request.days,
                why,
            });
        }
    }
    Ok(Outcome {
        actions,
        ca_cert: ca.cert_path,
        host,
    })
}

impl Request {
    /// The request's first host, once the request is known to be sound.
    fn check(&self) -> Result<Host, CertError> {
        let Some(first) = self.hosts.first() else {
            return Err(CertError::NoHost);
        };
        if self.days <= RENEW_DAYS {
            return Err(CertError::Days(self.days));
        }
        let mut parts = Path::new(&self.name).components();
        let plain = matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        if !plain || self.name == CA_DIR {
            return Err(CertError::Name(self.name.clone()));
        }
        Ok(first.clone())
    }
}

fn days(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * DAY)
}

/// Seconds since the epoch.
fn unix(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests;
