//! Persistent sessions, as Istio asks for them: a label on the `ServiceEntry` (or Kubernetes
//! `Service`) of a host.
//!
//! - `istio.io/persistent-session: <cookie>[:<path>]`: the session travels in a cookie (path
//!   `/` unless given), as Envoy's stateful-session cookie under Istio;
//! - `istio.io/persistent-session-header: <header>`: in a request and response header.
//!
//! Both set: the cookie, as Istio does (and a warning). Istio names no timeouts, so they are
//! annotations under this project's prefix, with the Gateway API's meaning
//! (`sessionPersistence`): `sticky.dev/session-idle-timeout` (since the session was last used;
//! default the gateway's `--session-idle-timeout`), `sticky.dev/session-absolute-timeout`
//! (since it was created; default `--session-absolute-timeout`), `0s` for none; and
//! `sticky.dev/session-cookie-lifetime: Session | Permanent` (a browser-session cookie, the
//! default as Istio's, or one kept for the absolute timeout).
//!
//! Pure: labels in, policy and findings out.

use std::time::Duration;

use http::HeaderName;

use super::{Meta, Problems};

/// The label asking for a cookie-carried session.
pub const COOKIE_LABEL: &str = "istio.io/persistent-session";
/// The label asking for a header-carried session.
pub const HEADER_LABEL: &str = "istio.io/persistent-session-header";
/// Annotation: how long an unused session holds.
pub const IDLE_ANNOTATION: &str = "sticky.dev/session-idle-timeout";
/// Annotation: how long a session holds at most.
pub const ABSOLUTE_ANNOTATION: &str = "sticky.dev/session-absolute-timeout";
/// Annotation: `Session` or `Permanent`.
pub const LIFETIME_ANNOTATION: &str = "sticky.dev/session-cookie-lifetime";

/// Where a session's value travels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Carrier {
    /// `Set-Cookie: <name>=<value>; Path=<path>; HttpOnly; SameSite=Lax`, sent back in `Cookie`.
    Cookie {
        /// The cookie's name.
        name: String,
        /// Its `Path`.
        path: String,
        /// Kept for the absolute timeout (`Max-Age`) rather than the browser session.
        permanent: bool,
    },
    /// The value in this response header, sent back in the same request header.
    Header(HeaderName),
}

/// A host's persistent sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionPolicy {
    /// Where the value travels.
    pub carrier: Carrier,
    /// Since last used; `None`: the gateway's default. `Some(0)`: none.
    pub idle_timeout: Option<Duration>,
    /// Since created; `None`: the gateway's default. `Some(0)`: none.
    pub absolute_timeout: Option<Duration>,
}

impl SessionPolicy {
    /// The label that asked for it, for messages.
    pub fn label(&self) -> &'static str {
        match self.carrier {
            Carrier::Cookie { .. } => COOKIE_LABEL,
            Carrier::Header(_) => HEADER_LABEL,
        }
    }
}

/// The persistent-session policy `meta`'s labels ask for, if any; what is wrong with them goes
/// to `p` (and no policy).
pub(crate) fn session_policy(meta: &Meta, p: &mut Problems) -> Option<SessionPolicy> {
    let cookie = meta.labels.get(COOKIE_LABEL).filter(|v| !v.is_empty());
    let header = meta.labels.get(HEADER_LABEL).filter(|v| !v.is_empty());
    let carrier = match (cookie, header) {
        (None, None) => return None,
        (Some(cookie), header) => {
            if header.is_some() {
                p.warn(
                    format!("metadata.labels.{HEADER_LABEL}"),
                    format!(
                        "ignored: {COOKIE_LABEL} is set too, and the cookie wins (as in Istio)"
                    ),
                );
            }
            let at = format!("metadata.labels.{COOKIE_LABEL}");
            let (name, path) = cookie.split_once(':').unwrap_or((cookie, "/"));
            if !is_token(name) {
                p.error(
                    &at,
                    format!("{name:?} is not a cookie name (RFC 6265 token)"),
                );
                return None;
            }
            if !path.starts_with('/')
                || !path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';')
            {
                p.error(
                    &at,
                    format!(
                        "cookie path {path:?} must start with / and hold no ';', space or control"
                    ),
                );
                return None;
            }
            let permanent = match meta
                .annotations
                .get(LIFETIME_ANNOTATION)
                .map(String::as_str)
            {
                None | Some("Session") => false,
                Some("Permanent") => true,
                Some(other) => {
                    p.error(
                        format!("metadata.annotations.{LIFETIME_ANNOTATION}"),
                        format!("{other:?}: Session or Permanent"),
                    );
                    return None;
                }
            };
            Carrier::Cookie {
                name: name.to_owned(),
                path: path.to_owned(),
                permanent,
            }
        }
        (None, Some(header)) => match HeaderName::try_from(header.as_str()) {
            Ok(name) => Carrier::Header(name),
            Err(_) => {
                p.error(
                    format!("metadata.labels.{HEADER_LABEL}"),
                    format!("{header:?} is not a header name"),
                );
                return None;
            }
        },
    };
    let mut timeout = |annotation: &str| {
        let at = format!("metadata.annotations.{annotation}");
        p.duration(
            &at,
            meta.annotations.get(annotation).map(String::as_str),
            true,
        )
    };
    let idle_timeout = timeout(IDLE_ANNOTATION);
    let absolute_timeout = timeout(ABSOLUTE_ANNOTATION);
    Some(SessionPolicy {
        carrier,
        idle_timeout,
        absolute_timeout,
    })
}

/// An RFC 6265 cookie name: an RFC 9110 token.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
