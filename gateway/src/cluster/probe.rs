//! Active health checks' I/O: one GET of the check's path to an endpoint, over the cluster's
//! protocol, through a pool of its own (probes never take a request's pooled connection, nor
//! count against the cluster's limits).
//!
//! Only the I/O: whether an endpoint is healthy is decided by [`crate::health::active`] from the
//! results, in the cluster's control task.

use std::net::SocketAddr;

use http::uri::Authority;

use crate::body;
use crate::health::active::ActiveCheck;
use crate::upstream::{PoolSettings, Upstream};

/// Sends a cluster's active checks.
#[derive(Debug, Clone)]
pub(super) struct Prober {
    check: ActiveCheck,
    pool: Upstream,
}

impl Prober {
    /// A prober for `check`, speaking HTTP/2 when `http2`, as the cluster's requests do.
    pub(super) fn new(check: ActiveCheck, http2: bool) -> Self {
        let pool = Upstream::new(&PoolSettings {
            connect_timeout: check.timeout,
            http2,
            ..PoolSettings::default()
        });
        Self { check, pool }
    }

    /// One check: GET the check's path at `addr`; a 2xx within the check's timeout passes.
    pub(super) async fn probe(self, addr: SocketAddr, authority: Authority) -> bool {
        let Ok(request) = http::Request::get(self.check.path.as_str())
            .header(http::header::HOST, authority.as_str())
            .header(http::header::USER_AGENT, "sticky-gateway-health-check")
            .body(body::empty())
        else {
            return false;
        };
        let (head, body) = request.into_parts();
        let send = self.pool.send(addr, &authority, &head, body);
        match tokio::time::timeout(self.check.timeout, send).await {
            Ok(Ok(response)) => response.status().is_success(),
            _ => false,
        }
    }
}
