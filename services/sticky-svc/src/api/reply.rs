//! The body of a successful `/ping`: the article's line, or JSON when the client asks for it.
//!
//! Formatting only: it may not read the cache or decide the status.

use std::time::Duration;

use axum::body::Body;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use serde::Serialize;

use super::elapsed;
use crate::metrics::CacheLabel;

/// The replica that answered, so tools need not parse the body.
pub const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
/// `hit` or `miss`: whether the answer came from the cache.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

pub(super) const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
pub(super) const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// What one `/ping` reports.
#[derive(Debug, Clone, Copy)]
pub struct Ping<'a> {
    /// The replica's host name.
    pub host: &'a str,
    /// The caller's `x-user`.
    pub user: &'a str,
    /// Time spent answering, first-call cost included on a miss.
    pub elapsed: Duration,
    /// Whether the cache answered.
    pub cache: CacheLabel,
}

#[derive(Serialize)]
struct JsonPing<'a> {
    host: &'a str,
    user: &'a str,
    elapsed_ns: u64,
    cache: &'static str,
}

impl Ping<'_> {
    /// The article's line, worded the same for hits and misses; `elapsed` is printed like
    /// `Duration`'s `Debug` (`5.0002721s`, `47.4µs`), exactly like the article's Go output.
    pub fn line(&self) -> String {
        const PARTS: [&str; 3] = ["Call was processed by host ", " for user ", " and it took "];
        // Enough for the words, the names and the longest duration, so it never grows.
        let capacity = PARTS.iter().map(|part| part.len()).sum::<usize>()
            + self.host.len()
            + self.user.len()
            + 32;
        let mut line = String::with_capacity(capacity);
        line.push_str(PARTS[0]);
        line.push_str(self.host);
        line.push_str(PARTS[1]);
        line.push_str(self.user);
        line.push_str(PARTS[2]);
        elapsed::push(&mut line, self.elapsed);
        line.push('\n');
        line
    }

    /// The response, with `x-served-by: host` (`served_by`, built once) and `x-cache`.
    pub fn into_response(self, served_by: &HeaderValue, json: bool) -> Response {
        let (body, content_type) = if json {
            let body = JsonPing {
                host: self.host,
                user: self.user,
                elapsed_ns: u64::try_from(self.elapsed.as_nanos()).unwrap_or(u64::MAX),
                cache: self.cache.as_str(),
            };
            (
                serde_json::to_string(&body).unwrap_or_default(),
                APPLICATION_JSON,
            )
        } else {
            (self.line(), TEXT_PLAIN)
        };
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
        headers.insert(X_SERVED_BY, served_by.clone());
        headers.insert(X_CACHE, HeaderValue::from_static(self.cache.as_str()));
        response
    }
}

/// Whether the client's `Accept` lists `application/json` (with a non-zero quality).
/// Anything else, `*/*` included, gets the article's plain text.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("application/json") && !parts.any(refuses)
        })
}

/// A `q=0` parameter, which means "not acceptable".
fn refuses(param: &str) -> bool {
    let param = param.trim();
    param
        .strip_prefix("q=")
        .or_else(|| param.strip_prefix("Q="))
        .and_then(|q| q.trim().parse::<f32>().ok())
        .is_some_and(|q| q == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(value));
        wants_json(&headers)
    }

    #[test]
    fn json_only_when_asked_for() {
        assert!(accept("application/json"));
        assert!(accept("text/html, Application/JSON;q=0.5"));
        assert!(!accept("application/json;q=0"));
        assert!(!accept("*/*"));
        assert!(!accept("text/plain"));
        assert!(!wants_json(&HeaderMap::new()));
    }

    #[test]
    fn elapsed_is_printed_like_the_article() {
        let ping = Ping {
            host: "sticky-svc-689b4b7876-cv5t9",
            user: "ricky",
            elapsed: Duration::from_nanos(5_000_272_100),
            cache: CacheLabel::Miss,
        };
        assert_eq!(
            ping.line(),
            "Call was processed by host sticky-svc-689b4b7876-cv5t9 for user ricky and it took 5.0002721s\n"
        );
        let warm = Ping {
            elapsed: Duration::from_nanos(47_400),
            ..ping
        };
        assert!(warm.line().ends_with("and it took 47.4µs\n"));
    }
}
