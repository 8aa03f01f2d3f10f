//! The hash key of a request, as `consistentHash` names it: a header, a cookie, the client's IP
//! or a query parameter, hashed with the stable [`key_hash`].
//!
//! As Envoy does: a missing key means a random endpoint (counted by the caller); an
//! `httpCookie` with a `ttl` that the client did not send is generated, hashed on, and returned
//! in `Set-Cookie`, so the client's next request carries it and sticks.
//!
//! It reads the request's headers, query and address; it may not pick the endpoint (that is the
//! balancer's job in `forward`).

use std::io::Write;
use std::net::IpAddr;

use http::HeaderValue;
use http::header::{COOKIE, HeaderMap};

use crate::config::model::HashKey;
use crate::hash::key_hash;
use crate::snapshot::routes::query_value;

/// The key a request hashes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affinity {
    /// The request carried its key.
    Hash(u64),
    /// The policy is not a hash, or the request has no key (a random endpoint is picked).
    None,
    /// A cookie was generated: hash on it and send `set_cookie` back.
    Generated {
        /// Hash of the generated value.
        hash: u64,
        /// The `Set-Cookie` header for the response.
        set_cookie: HeaderValue,
    },
}

impl Affinity {
    /// The hash to pick with, if any.
    pub fn hash(&self) -> Option<u64> {
        match self {
            Affinity::Hash(h) | Affinity::Generated { hash: h, .. } => Some(*h),
            Affinity::None => None,
        }
    }
}

/// Computes the request's affinity for `key`. A hash header is marked never-indexed for HPACK:
/// it has one value per user, so as an indexed field it would churn an HTTP/2 upstream's header
/// table (and h2's encoder compares a new value with every cached one of that name: ~2 500
/// instructions a request at 1 000 users); HTTP/1.1 ignores the flag.
pub fn affinity(
    key: &HashKey,
    headers: &mut HeaderMap,
    query: Option<&str>,
    client: IpAddr,
) -> Affinity {
    match key {
        HashKey::Header(name) => match headers.get_mut(name) {
            Some(value) => {
                value.set_sensitive(true);
                Affinity::Hash(key_hash(value.as_bytes()))
            }
            None => Affinity::None,
        },
        HashKey::QueryParameter(name) => match query.and_then(|q| query_value(q, name)) {
            Some(value) => Affinity::Hash(key_hash(value.as_bytes())),
            None => Affinity::None,
        },
        HashKey::SourceIp => {
            // Envoy hashes the address's text; format it on the stack.
            let mut buf = [0u8; 48];
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{client}");
            let len = cursor.position() as usize;
            Affinity::Hash(key_hash(&buf[..len]))
        }
        HashKey::Cookie { name, path, ttl } => {
            if let Some(value) = cookie_value(headers, name) {
                return Affinity::Hash(key_hash(value.as_bytes()));
            }
            let Some(ttl) = ttl else {
                return Affinity::None;
            };
            let value = format!("{:016x}", fastrand::u64(..));
            let mut set_cookie = format!("{name}=\"{value}\"");
            // A ttl under a second (`0s` included) makes a session cookie, as Envoy does:
            // `Max-Age=0` would tell the client to drop it at once, and stickiness with it.
            if ttl.as_secs() > 0 {
                set_cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
            }
            if let Some(path) = path {
                set_cookie.push_str("; Path=");
                set_cookie.push_str(path);
            }
            set_cookie.push_str("; HttpOnly");
            match HeaderValue::try_from(set_cookie) {
                Ok(set_cookie) => Affinity::Generated {
                    hash: key_hash(value.as_bytes()),
                    set_cookie,
                },
                Err(_) => Affinity::None,
            }
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (quotes removed).
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|line| {
            line.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"'))
            })
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn header_key() {
        let key = HashKey::Header(http::HeaderName::from_static("x-user"));
        let a = affinity(&key, &mut headers(&[("x-user", "ricky")]), None, IP);
        assert_eq!(a, Affinity::Hash(key_hash(b"ricky")));
        assert_eq!(
            affinity(&key, &mut HeaderMap::new(), None, IP),
            Affinity::None
        );
    }

    #[test]
    fn query_and_source_ip_keys() {
        let key = HashKey::QueryParameter("user".into());
        let a = affinity(&key, &mut HeaderMap::new(), Some("a=1&user=ricky"), IP);
        assert_eq!(a.hash(), Some(key_hash(b"ricky")));
        let a = affinity(&HashKey::SourceIp, &mut HeaderMap::new(), None, IP);
        assert_eq!(a.hash(), Some(key_hash(b"127.0.0.1")));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            affinity(&HashKey::SourceIp, &mut HeaderMap::new(), None, v6).hash(),
            Some(key_hash(b"2001:db8::1"))
        );
    }

    #[test]
    fn cookie_sent_missing_and_generated() {
        let key = HashKey::Cookie {
            name: "sticky".into(),
            path: Some("/".into()),
            ttl: None,
        };
        let mut h = headers(&[("cookie", "a=1; sticky=\"abc\""), ("cookie", "b=2")]);
        assert_eq!(
            affinity(&key, &mut h, None, IP),
            Affinity::Hash(key_hash(b"abc"))
        );
        assert_eq!(
            affinity(&key, &mut HeaderMap::new(), None, IP),
            Affinity::None,
            "no ttl: none"
        );

        let key = HashKey::Cookie {
            name: "sticky".into(),
            path: Some("/".into()),
            ttl: Some(Duration::from_secs(3600)),
        };
        let Affinity::Generated { hash, set_cookie } =
            affinity(&key, &mut HeaderMap::new(), None, IP)
        else {
            panic!("a cookie is generated");
        };
        let text = set_cookie.to_str().unwrap();
        assert!(text.starts_with("sticky=\""), "{text}");
        assert!(text.ends_with("; Max-Age=3600; Path=/; HttpOnly"), "{text}");
        // The client sends it back: same hash.
        let value = text.split('"').nth(1).unwrap();
        let mut back = headers(&[("cookie", &format!("sticky={value}"))]);
        assert_eq!(affinity(&key, &mut back, None, IP).hash(), Some(hash));

        // `ttl: 0s`: a session cookie, not one the client must delete at once.
        let key = HashKey::Cookie {
            name: "sticky".into(),
            path: None,
            ttl: Some(Duration::ZERO),
        };
        let Affinity::Generated { set_cookie, .. } =
            affinity(&key, &mut HeaderMap::new(), None, IP)
        else {
            panic!("a cookie is generated");
        };
        let text = set_cookie.to_str().unwrap();
        assert!(!text.contains("Max-Age"), "{text}");
        assert!(text.ends_with("\"; HttpOnly"), "{text}");
    }
}
