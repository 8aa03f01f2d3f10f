//! Header hygiene at the edge: what a proxy must strip, add and keep.
//!
//! - Hop-by-hop headers (RFC 9110 §7.6.1) are removed in both directions, including any header
//!   the `Connection` header names. `te: trailers` is the one hop-by-hop value forwarded, since
//!   gRPC needs it.
//! - `x-forwarded-for` gets the client address appended; `x-forwarded-proto` is set to the
//!   scheme the client used (this gateway is the edge, so a client-sent value is not trusted).
//! - `x-request-id` is kept when the client sent a sane one, otherwise a UUIDv4 is generated,
//!   and it is echoed on the response so a user can quote it.
//!
//! It may not route or pick: it only edits header maps.

use std::cell::RefCell;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-forwarded-for`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Longest client-supplied request id we forward; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those listed in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the few names present is much cheaper
    // than the ten hashed lookups below.
    if !headers.keys().any(needs_stripping) {
        return;
    }
    // Names listed in Connection are removed too; collect them first (rare, so the Vec is empty
    // and does not allocate in the common case).
    let mut listed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',') {
            if let Ok(name) = HeaderName::from_bytes(token.trim().as_bytes()) {
                listed.push(name);
            }
        }
    }
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    // `te` may only say "trailers" when forwarded (RFC 9110 §10.1.4).
    if let Some(te) = headers.get(header::TE) {
        let trailers = te
            .to_str()
            .map(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
            .unwrap_or(false);
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        } else {
            headers.remove(header::TE);
        }
    }
}

/// Whether `name` is in [`HOP_BY_HOP`] or is `te`: a `match` on the lowercase text, which
/// compiles to a length switch and a compare, cheaper than comparing against each name.
fn needs_stripping(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "te"
    )
}

/// Adds the forwarding headers for a request from `client` that arrived over `scheme`.
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, scheme: &'static str) {
    let appended = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::to_str) {
        Some(Ok(prior)) if !prior.is_empty() => HeaderValue::try_from(format!("{prior}, {client}")),
        _ => Ok(client_address(client)),
    };
    if let Ok(value) = appended {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
}

thread_local! {
    /// The last client address formatted on this thread: a connection's requests (and a busy
    /// client's connections) come from one address, so most requests reuse its text.
    static LAST_CLIENT: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

/// `client` as a header value, formatted once per run of requests from the same address.
fn client_address(client: IpAddr) -> HeaderValue {
    LAST_CLIENT.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((ip, value)) = last.as_ref()
            && *ip == client
        {
            return value.clone();
        }
        let value = HeaderValue::try_from(client.to_string())
            .expect("an IP address is a valid header value");
        *last = Some((client, value.clone()));
        value
    })
}

/// Returns the request's id, generating and setting one when it is missing or unfit.
///
/// The id is marked sensitive: unique per request, it is never worth a place in an HPACK table
/// (an HTTP/2 endpoint's, or an HTTP/2 client's for the echoed response header).
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get_mut(&X_REQUEST_ID) {
        let fine = !id.is_empty()
            && id.len() <= MAX_REQUEST_ID
            && id.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if fine {
            id.set_sensitive(true);
            return id.clone();
        }
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    let mut id = HeaderValue::from_str(text).expect("a UUID is a valid header value");
    id.set_sensitive(true);
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "basic x"),
            ("x-user", "ricky"),
            ("te", "gzip"),
        ]);
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-user"]);
    }

    #[test]
    fn the_quick_check_knows_every_stripped_name() {
        for name in HOP_BY_HOP.iter().chain([&header::TE]) {
            assert!(needs_stripping(name), "{name}");
        }
        for name in [
            "x-user",
            "host",
            "content-length",
            "trailers",
            "connections",
        ] {
            assert!(!needs_stripping(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn te_trailers_survives() {
        let mut h = map(&[("te", "gzip, trailers")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get("te").unwrap(), "trailers");
        // A lone hop-by-hop header among ordinary ones is found by the quick scan too.
        let mut h = map(&[("x-user", "ricky"), ("host", "a"), ("upgrade", "h2c")]);
        strip_hop_by_hop(&mut h);
        assert!(h.get("upgrade").is_none());
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn forwarded_for_appends_and_proto_overwrites() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarded(&mut h, "127.0.0.1".parse().unwrap(), "http");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "203.0.113.9, 127.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "::1".parse().unwrap(), "http");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "::1");
        // The per-thread cache follows the address.
        for client in ["10.0.0.1", "10.0.0.1", "10.0.0.2", "::1"] {
            let mut h = HeaderMap::new();
            add_forwarded(&mut h, client.parse().unwrap(), "http");
            assert_eq!(h.get("x-forwarded-for").unwrap(), client);
        }
    }

    #[test]
    fn request_id_kept_or_generated() {
        let mut h = map(&[("x-request-id", "abc-123")]);
        assert_eq!(ensure_request_id(&mut h), "abc-123");
        let mut h = map(&[("x-request-id", "has space")]);
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 36);
        assert_eq!(h.get("x-request-id").unwrap(), &id);
        let mut h = HeaderMap::new();
        let a = ensure_request_id(&mut h);
        let b = ensure_request_id(&mut HeaderMap::new());
        assert_ne!(a, b);
    }
}
