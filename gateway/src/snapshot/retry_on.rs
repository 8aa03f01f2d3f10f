//! `retries.retryOn`, parsed once per route into flags the request path tests.
//!
//! Envoy's meanings: `connect-failure` (and `5xx`, `gateway-error`, `reset`, which include it)
//! retries a failed connect; `reset` and `5xx` retry a connection that broke before the response
//! headers or a per-try timeout; `refused-stream` (and `reset`, `5xx`, which include it) retries
//! a request an HTTP/2 endpoint refused unprocessed (`REFUSED_STREAM`, or a stream above the
//! last one its `GOAWAY` accepts, as a draining replica sends); `5xx`, `gateway-error`,
//! `retriable-4xx` (409) and listed status codes retry on the response status. gRPC-status
//! conditions (`cancelled`, `unavailable`, …) are read from trailers that come after the
//! response has started, so they are not retried; Istio's default
//! (`connect-failure,refused-stream,unavailable,cancelled`) amounts to retrying connect failures
//! and refused streams.
//!
//! Parsing only: the attempt loop that acts on it is `proxy/forward.rs`.

/// Parsed `retryOn`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// Retry when no connection could be made.
    pub connect_failure: bool,
    /// Retry when an HTTP/2 endpoint refused the stream.
    pub refused_stream: bool,
    /// Retry when the connection broke before the response, or the try timed out.
    pub reset: bool,
    /// Retry on any 5xx.
    pub any_5xx: bool,
    /// Retry on 502, 503, 504.
    pub gateway_error: bool,
    /// Retry on 409.
    pub retriable_4xx: bool,
    /// Retry on these statuses (`retriable-status-codes` given as numbers).
    pub statuses: Vec<u16>,
}

impl RetryOn {
    /// Parses Istio's list; unknown words are ignored (the config layer reports them).
    pub fn parse<S: AsRef<str>>(conditions: &[S]) -> Self {
        let mut on = RetryOn::default();
        for c in conditions {
            match c.as_ref().trim() {
                "connect-failure" => on.connect_failure = true,
                "refused-stream" => on.refused_stream = true,
                "reset" | "reset-before-request" => {
                    on.reset = true;
                    on.connect_failure = true;
                    on.refused_stream = true;
                }
                "5xx" => {
                    on.any_5xx = true;
                    on.reset = true;
                    on.connect_failure = true;
                    on.refused_stream = true;
                }
                "gateway-error" => {
                    on.gateway_error = true;
                    on.connect_failure = true;
                }
                "retriable-4xx" => on.retriable_4xx = true,
                other => {
                    if let Ok(code) = other.parse::<u16>() {
                        on.statuses.push(code);
                    }
                }
            }
        }
        on
    }

    /// Whether a response with this status is retried.
    pub fn on_status(&self, status: u16) -> bool {
        (self.any_5xx && (500..600).contains(&status))
            || (self.gateway_error && matches!(status, 502..=504))
            || (self.retriable_4xx && status == 409)
            || self.statuses.contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_default_retries_connect_failures_and_refused_streams() {
        let on = RetryOn::parse(&[
            "connect-failure",
            "refused-stream",
            "unavailable",
            "cancelled",
        ]);
        assert!(on.connect_failure && on.refused_stream);
        assert!(!on.reset);
        assert!(!on.on_status(503));
    }

    #[test]
    fn status_conditions() {
        let on = RetryOn::parse(&["gateway-error", "retriable-4xx", "418"]);
        assert!(on.connect_failure && !on.reset && !on.refused_stream);
        assert!(on.on_status(502) && on.on_status(504) && !on.on_status(500));
        assert!(on.on_status(409) && on.on_status(418) && !on.on_status(404));
        let on = RetryOn::parse(&["5xx"]);
        assert!(
            on.reset
                && on.refused_stream
                && on.on_status(500)
                && on.on_status(599)
                && !on.on_status(499)
        );
    }
}
