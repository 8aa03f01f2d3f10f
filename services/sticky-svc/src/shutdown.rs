//! Stopping cleanly: the readiness flag and the SIGTERM/SIGINT listener.
//!
//! The order on a signal, driven by [`crate::serve::serve`]: readiness turns 503 at once (so a
//! load balancer stops sending new users), calls in flight, cold ones included, run to the end
//! within the grace period, then the process exits 0.
//!
//! It may not close connections itself: `serve` drains them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Signal handlers could not be installed.
#[derive(Debug, Error)]
#[error("cannot listen for {signal}")]
pub struct SignalError {
    signal: &'static str,
    #[source]
    source: std::io::Error,
}

/// Whether the service still wants new traffic; shared by `/readyz` and the server.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// Ready until [`Readiness::drain`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// Turns `/readyz` to 503 for good.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// SIGTERM and SIGINT handlers, installed before the server starts so an early signal is
/// not lost to the default action (which would kill the process with a non-zero status).
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers; call inside the tokio runtime.
    pub fn install() -> Result<Self, SignalError> {
        let install = |kind, name| {
            signal(kind).map_err(|source| SignalError {
                signal: name,
                source,
            })
        };
        Ok(Self {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// Waits for the first SIGTERM or SIGINT and names it.
    pub async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
