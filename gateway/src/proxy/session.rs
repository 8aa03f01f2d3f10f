//! Persistent sessions on the request path: the value a request carries (cookie or header, as
//! its host's labels say), the destination and endpoint it names, and the value the response
//! carries back.
//!
//! A request with a valid session goes to the endpoint it names while that endpoint is in its
//! cluster, not ejected and not out of rotation — whatever the consistent hash or a weighted
//! split would pick (a session pins its version in a canary). Any other request is placed as
//! without sessions (Maglev on the hash key, the split's bucket), and its response carries a
//! new session naming the endpoint that answered. A garbled, forged, expired or foreign value
//! is a request without one: placed, re-issued, counted by reason, never an error. A session
//! whose endpoint has gone (or failed, and the retry answered elsewhere) is re-issued naming
//! the new one: that replica now holds the user's cache. The value also records which replica
//! answered (a tag of its `x-served-by`, sticky-svc's and many services' own header): when
//! another replica answers on the session's address (Docker and Kubernetes reuse addresses),
//! the session is not silently inherited but re-issued as a new one, and counted. The value is refreshed only once more
//! than half its idle timeout has passed, and re-signed with the first key when an older one
//! verified it (rotation).
//!
//! It reads and writes the session's header or cookie; it may not pick an endpoint by itself
//! (it tells `forward` which one the session names).

use http::Response;
use http::header::{HeaderMap, HeaderValue, SET_COOKIE};

use super::Proxy;
use super::affinity::cookie_value;
use super::headers::X_FORWARDED_PROTO;
use crate::body::Body;
use crate::cluster::Cluster;
use crate::config::model::{Carrier, SessionPolicy};
use crate::metrics::SessionLabels;
use crate::session::{EndpointId, Ignored, Session, Timeouts, Verified, replica_tag, unix_now};
use crate::snapshot::Route;

/// The header a replica names itself in (sticky-svc's; a common convention).
static X_SERVED_BY: http::HeaderName = http::HeaderName::from_static("x-served-by");

/// A request's persistent session, as read before its destination is picked.
#[derive(Debug)]
pub(super) struct SessionRead<'r> {
    policy: &'r SessionPolicy,
    timeouts: Timeouts,
    found: Found,
    /// The request came over TLS before us (`x-forwarded-proto: https`): the cookie is `Secure`.
    https: bool,
    now: u64,
}

#[derive(Debug)]
enum Found {
    None,
    Ignored(Ignored),
    Valid(Verified),
}

/// What the session named, for `forward`: the endpoint with this id (made with key
/// `key_index`) in the picked cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pin {
    pub key_index: usize,
    pub id: EndpointId,
}

impl SessionRead<'_> {
    /// The endpoint a valid session names.
    pub fn pin(&self) -> Option<Pin> {
        match &self.found {
            Found::Valid(v) => Some(Pin {
                key_index: v.key_index,
                id: v.session.endpoint,
            }),
            _ => None,
        }
    }
}

impl Proxy {
    /// The session of a request to `route`, when one of its destinations' hosts has persistent
    /// sessions (the first such destination's policy: a host's subsets share its labels).
    /// `tls`: it came over the TLS listener (the cookie is then `Secure`); else `https` in
    /// `x-forwarded-proto` as the client sent it says so: call before it is overwritten.
    pub(super) fn read_session<'r>(
        &self,
        route: &'r Route,
        headers: &HeaderMap,
        tls: bool,
    ) -> Option<SessionRead<'r>> {
        let policy = route.sessions.iter().flatten().next()?;
        let or_default = |own: Option<std::time::Duration>, default| {
            own.or(default)
                .filter(|t: &std::time::Duration| !t.is_zero())
        };
        let timeouts = Timeouts {
            idle: or_default(policy.idle_timeout, self.settings.session_idle_timeout),
            absolute: or_default(
                policy.absolute_timeout,
                self.settings.session_absolute_timeout,
            ),
        };
        let value = match &policy.carrier {
            Carrier::Cookie { name, .. } => cookie_value(headers, name),
            Carrier::Header(name) => headers.get(name).and_then(|v| v.to_str().ok()),
        };
        let now = unix_now();
        let found = match value {
            None => Found::None,
            Some(value) => match self.session_keys.decode(value, now, &timeouts) {
                Ok(verified) => Found::Valid(verified),
                Err(ignored) => Found::Ignored(ignored),
            },
        };
        let https = tls
            || headers
                .get(&X_FORWARDED_PROTO)
                .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
        Some(SessionRead {
            policy,
            timeouts,
            found,
            https,
            now,
        })
    }

    /// The destination of `route` whose cluster holds the endpoint the session names, and may
    /// be sent to.
    pub(super) fn session_destination(&self, route: &Route, pin: Pin) -> Option<usize> {
        route
            .clusters
            .iter()
            .enumerate()
            .find_map(|(which, cluster)| {
                route.sessions[which].as_ref()?;
                cluster
                    .state()
                    .session_endpoint(
                        &self.session_keys,
                        &cluster.labels.cluster,
                        pin.key_index,
                        pin.id,
                    )
                    .map(|_| which)
            })
    }

    /// Counts what became of the request's session and, unless it was honoured as it is, puts
    /// a new value in `response`: for the endpoint `served` (its key) of `cluster`, which
    /// answered, and the replica that answered there (its `x-served-by`); `honoured` when that
    /// is the endpoint the session named. Honoured, but answered by another replica than the
    /// session's (a new one on a reused address): re-issued as a new session.
    pub(super) fn finish_session(
        &self,
        read: SessionRead<'_>,
        cluster: &Cluster,
        served: &str,
        honoured: bool,
        response: &mut Response<Body>,
    ) {
        let keys = &*self.session_keys;
        let name = &cluster.labels.cluster;
        let replica = response
            .headers()
            .get(&X_SERVED_BY)
            .map_or(0, |n| replica_tag(n.as_bytes()));
        let fresh = || Session {
            replica,
            ..Session::new(keys.endpoint_id(0, name, served), read.now)
        };
        let (event, session) = match read.found {
            // Another replica answers on the session's address (Docker and Kubernetes reuse
            // addresses): not the replica the session was made with, nor its cache.
            Found::Valid(v)
                if honoured
                    && v.session.replica != 0
                    && replica != 0
                    && v.session.replica != replica =>
            {
                ("reissued", fresh())
            }
            Found::Valid(v) if honoured => {
                let rotated = v.key_index != 0;
                let named = v.session.replica == 0 && replica != 0;
                if !rotated && !named && !read.timeouts.needs_refresh(&v.session, read.now) {
                    return self.count_session(cluster, "honoured");
                }
                self.count_session(cluster, "honoured");
                let session = Session {
                    // The id under the signing key (another key verified it: rotation).
                    endpoint: if rotated {
                        keys.endpoint_id(0, name, served)
                    } else {
                        v.session.endpoint
                    },
                    created: v.session.created,
                    refreshed: read.now,
                    replica: v.session.replica.max(replica),
                };
                ("refreshed", session)
            }
            Found::Valid(_) => ("reissued", fresh()),
            Found::Ignored(why) => {
                self.count_session(cluster, ignored_event(why));
                ("issued", fresh())
            }
            Found::None => ("issued", fresh()),
        };
        self.count_session(cluster, event);
        let value = keys.encode(&session);
        let headers = response.headers_mut();
        match &read.policy.carrier {
            Carrier::Cookie {
                name,
                path,
                permanent,
            } => {
                let mut cookie = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
                if let (true, Some(absolute)) = (*permanent, read.timeouts.absolute) {
                    cookie.push_str(&format!("; Max-Age={}", absolute.as_secs()));
                }
                if read.https {
                    cookie.push_str("; Secure");
                }
                if let Ok(cookie) = HeaderValue::try_from(cookie) {
                    headers.append(SET_COOKIE, cookie);
                }
            }
            Carrier::Header(name) => {
                if let Ok(value) = HeaderValue::try_from(value) {
                    headers.insert(name.clone(), value);
                }
            }
        }
    }

    fn count_session(&self, cluster: &Cluster, event: &'static str) {
        self.metrics
            .sessions
            .get_or_create(&SessionLabels {
                cluster: cluster.labels.cluster.clone(),
                event,
            })
            .inc();
    }
}

fn ignored_event(why: Ignored) -> &'static str {
    match why {
        Ignored::Garbled => "ignored_garbled",
        Ignored::Forged => "ignored_forged",
        Ignored::Expired => "ignored_expired",
        Ignored::Future => "ignored_future",
    }
}
