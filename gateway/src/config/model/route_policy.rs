//! What a route does besides picking a destination: retries, fault injection, header
//! rewriting and URI/authority rewrites.
//!
//! Pure: spec in, model and findings out; no I/O.

use std::time::Duration;

use super::{Meta, Problems};
use crate::config::spec;

/// `retries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try; 0 disables retries.
    pub attempts: u32,
    /// `perTryTimeout`.
    pub per_try_timeout: Option<Duration>,
    /// `retryOn` conditions (Envoy names or status codes).
    pub retry_on: Vec<String>,
}

/// Istio's `retryOn` when a route sets none.
pub const DEFAULT_RETRY_ON: &str = "connect-failure,refused-stream,unavailable,cancelled";

impl Default for RetryPolicy {
    /// Istio's default when `retries` is unset: 2 attempts.
    fn default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            retry_on: DEFAULT_RETRY_ON.split(',').map(str::to_owned).collect(),
        }
    }
}

/// Envoy's `retry_on` policies that Istio accepts.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// `headers`: request and response operations.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    /// `request`.
    pub request: HeaderOperations,
    /// `response`.
    pub response: HeaderOperations,
}

/// `set`, `add`, `remove`.
#[derive(Debug, Clone, Default)]
pub struct HeaderOperations {
    /// Replace.
    pub set: Vec<(String, String)>,
    /// Append.
    pub add: Vec<(String, String)>,
    /// Remove.
    pub remove: Vec<String>,
}

/// `rewrite`.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    /// Replaces the matched `uri` prefix (or the whole path on an exact match).
    pub uri: Option<String>,
    /// Replaces the `Host`/`:authority`.
    pub authority: Option<String>,
}

/// `fault`.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// `delay`.
    pub delay: Option<FaultDelay>,
    /// `abort`.
    pub abort: Option<FaultAbort>,
}

/// `fault.delay`.
#[derive(Debug, Clone)]
pub struct FaultDelay {
    /// `fixedDelay`.
    pub fixed: Duration,
    /// Share of requests delayed, 0..=100 (100 when unset).
    pub percent: f64,
}

/// `fault.abort`.
#[derive(Debug, Clone)]
pub struct FaultAbort {
    /// `httpStatus`.
    pub status: u16,
    /// Share of requests aborted, 0..=100 (100 when unset).
    pub percent: f64,
}

pub(super) fn retry_policy(r: spec::HttpRetry, path: &str, p: &mut Problems) -> RetryPolicy {
    let attempts = p
        .count(&format!("{path}.attempts"), r.attempts)
        .unwrap_or(0);
    let per_try_timeout = p.duration(
        &format!("{path}.perTryTimeout"),
        r.per_try_timeout.as_deref(),
        false,
    );
    let retry_on = match r.retry_on {
        None => RetryPolicy::default().retry_on,
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|c| {
                let known = RETRY_ON.contains(c)
                    || c.parse::<u16>()
                        .is_ok_and(|code| (100..=599).contains(&code));
                if !known {
                    p.error(
                        format!("{path}.retryOn"),
                        format!("{c:?} is not a retry condition"),
                    );
                }
                known
            })
            .map(str::to_owned)
            .collect(),
    };
    RetryPolicy {
        attempts,
        per_try_timeout,
        retry_on,
    }
}

pub(super) fn fault(
    f: spec::HttpFaultInjection,
    path: &str,
    meta: &Meta,
    p: &mut Problems,
) -> Fault {
    let delay = f.delay.and_then(|d| {
        let at = format!("{path}.delay");
        let percent = fault_percent(d.percent, d.percentage, &at, p);
        match p.duration(&format!("{at}.fixedDelay"), d.fixed_delay.as_deref(), false) {
            Some(fixed) => Some(FaultDelay { fixed, percent }),
            None if meta.positions.contains(&format!("{at}.exponentialDelay")) => None,
            None if d.fixed_delay.is_none() => {
                p.error(format!("{at}.fixedDelay"), "fixedDelay is required");
                None
            }
            None => None,
        }
    });
    let abort = f.abort.and_then(|a| {
        let at = format!("{path}.abort");
        let percent = fault_percent(None, a.percentage, &at, p);
        match a.http_status {
            Some(status @ 200..=599) => Some(FaultAbort {
                status: u16::try_from(status).unwrap_or(500),
                percent,
            }),
            Some(status) => {
                let rule = format!("{status} is out of range 200..599");
                p.error(format!("{at}.httpStatus"), rule);
                None
            }
            None if ["grpcStatus", "http2Error"]
                .iter()
                .any(|f| meta.positions.contains(&format!("{at}.{f}"))) =>
            {
                None
            }
            None => {
                p.error(format!("{at}.httpStatus"), "httpStatus is required");
                None
            }
        }
    });
    Fault { delay, abort }
}

fn fault_percent(
    percent: Option<i64>,
    percentage: Option<spec::Percent>,
    path: &str,
    p: &mut Problems,
) -> f64 {
    let legacy = percent.map(|v| v as f64);
    let value = percentage.and_then(|v| v.value).or(legacy);
    let field = if legacy.is_some() {
        "percent"
    } else {
        "percentage.value"
    };
    p.percent(&format!("{path}.{field}"), value)
        .unwrap_or(100.0)
}

pub(super) fn header_rules(h: Option<spec::Headers>) -> HeaderRules {
    let ops = |o: Option<spec::HeaderOperations>| {
        let o = o.unwrap_or_default();
        HeaderOperations {
            set: o.set.unwrap_or_default().into_iter().collect(),
            add: o.add.unwrap_or_default().into_iter().collect(),
            remove: o.remove.unwrap_or_default(),
        }
    };
    let h = h.unwrap_or_default();
    HeaderRules {
        request: ops(h.request),
        response: ops(h.response),
    }
}
