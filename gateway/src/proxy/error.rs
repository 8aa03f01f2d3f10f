//! Why the gateway answered instead of the upstream, and what the client is told.
//!
//! Every error is a small `Copy` enum on the hot path; its body is one static line, so
//! reporting an error builds no string. The wording follows Envoy's where users know it
//! (`no healthy upstream`, `upstream request timeout`).
//!
//! It may not put internals (addresses, causes) in a body: the client sees one static line.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full};

/// `x-envoy-overloaded`, on a 503 from a circuit breaker.
pub static X_ENVOY_OVERLOADED: http::HeaderName =
    http::HeaderName::from_static("x-envoy-overloaded");

/// An answer the gateway gives itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No VirtualService route matches the request.
    #[error("no route matches this request")]
    NoRoute,
    /// The matched route names a cluster with no usable endpoint.
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    /// Every attempt failed to connect.
    #[error("upstream connect error")]
    UpstreamConnect,
    /// The upstream closed or reset the connection before answering.
    #[error("upstream reset before response")]
    UpstreamReset,
    /// An HTTP/2 endpoint refused the stream unprocessed (503, as Envoy answers it).
    #[error("upstream refused stream")]
    UpstreamRefused,
    /// The route's `timeout` or the last `perTryTimeout` ran out.
    #[error("upstream request timeout")]
    Timeout,
    /// The request body is larger than `--max-body-size`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The request body could not be read from the client.
    #[error("bad request body")]
    BadBody,
    /// The request body made no progress for `--body-timeout` (or missed the request
    /// deadline); the connection is closed.
    #[error("request body timeout")]
    BodyTimeout,
    /// The cluster's `connectionPool` limits are reached (Envoy's overflow).
    #[error("upstream overflow: connection pool limit reached")]
    Overflow,
    /// The listener's connection limit is reached.
    #[error("too many connections")]
    TooManyConnections,
}

impl ProxyError {
    /// The status code sent to the client.
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoHealthyUpstream
            | ProxyError::UpstreamConnect
            | ProxyError::UpstreamRefused
            | ProxyError::Overflow => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamReset => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadBody => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The one-line body.
    pub fn message(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no route matches this request\n",
            ProxyError::NoHealthyUpstream => "no healthy upstream\n",
            ProxyError::UpstreamConnect => "upstream connect error\n",
            ProxyError::UpstreamReset => "upstream reset before response\n",
            ProxyError::UpstreamRefused => "upstream refused stream\n",
            ProxyError::Timeout => "upstream request timeout\n",
            ProxyError::BodyTooLarge => "request body too large\n",
            ProxyError::BadBody => "bad request body\n",
            ProxyError::BodyTimeout => "request body timeout\n",
            ProxyError::Overflow => "upstream overflow: connection pool limit reached\n",
            ProxyError::TooManyConnections => "too many connections\n",
        }
    }

    /// The whole response.
    pub fn response(self) -> Response<Body> {
        let mut response = Response::new(full(Bytes::from_static(self.message().as_bytes())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            ProxyError::TooManyConnections => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // The rest of the body may still come: the connection cannot be reused.
            ProxyError::BodyTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // Envoy's word for a circuit breaker's 503, which clients and dashboards know.
            ProxyError::Overflow => {
                headers.insert(X_ENVOY_OVERLOADED.clone(), HeaderValue::from_static("true"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_what_users_expect() {
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::NoHealthyUpstream.status(), 503);
        assert_eq!(ProxyError::Timeout.status(), 504);
        assert_eq!(ProxyError::BodyTooLarge.status(), 413);
        for e in [
            ProxyError::NoRoute,
            ProxyError::Timeout,
            ProxyError::Overflow,
        ] {
            assert_eq!(e.message().trim_end(), e.to_string());
        }
    }
}
