//! The `healthcheck` subcommand: GET this server's own `/healthz` for container health checks.
//!
//! It runs inside `FROM scratch` images that have no shell, curl or DNS resolver, so it speaks
//! the few bytes of HTTP/1.1 it needs over a plain TCP connection to a literal IP address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why the server was judged unhealthy.
#[derive(Debug, Error)]
pub enum HealthcheckError {
    /// Nothing answered at the address.
    #[error("cannot connect to {addr}")]
    Connect {
        /// Where the server was expected.
        addr: SocketAddr,
        /// The connection error.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed after connecting.
    #[error("request to {addr} failed")]
    Io {
        /// The server's address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No answer within the timeout.
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    /// The bytes received are not an HTTP/1.x status line.
    #[error("{0} did not answer with HTTP")]
    NotHttp(SocketAddr),
    /// An answer other than 200.
    #[error("{addr} answered /healthz with status {status}")]
    Unhealthy {
        /// The server's address.
        addr: SocketAddr,
        /// The status it sent.
        status: u16,
    },
}

/// Where a server listening on `listen` can be reached from the same host: a wildcard address
/// (`0.0.0.0`, `::`) is reached through the loopback of its family.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GETs `/healthz` at `addr`; `Ok` only for a 200 within `timeout`.
pub async fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthcheckError> {
    tokio::time::timeout(timeout, exchange(addr))
        .await
        .map_err(|_| HealthcheckError::Timeout(addr, timeout))?
}

async fn exchange(addr: SocketAddr) -> Result<(), HealthcheckError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HealthcheckError::Connect { addr, source })?;
    let io = |source| HealthcheckError::Io { addr, source };
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: sticky-svc-healthcheck\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    // The status line is all we need: "HTTP/1.1 200 OK\r\n".
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|pair| pair == b"\r\n") && head.len() < 1024 {
        let read = stream.read(&mut buf).await.map_err(io)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    match status(&head) {
        Some(200) => Ok(()),
        Some(status) => Err(HealthcheckError::Unhealthy { addr, status }),
        None => Err(HealthcheckError::NotHttp(addr)),
    }
}

/// The status code of an HTTP/1.x status line.
fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_map_to_loopback() {
        let check = |listen: &str| target(listen.parse().unwrap()).to_string();
        assert_eq!(check("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(check("[::]:9000"), "[::1]:9000");
        assert_eq!(check("10.1.2.3:80"), "10.1.2.3:80");
    }

    #[test]
    fn reads_status_lines() {
        assert_eq!(status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status(b"HTTP/1.1 2"), None);
    }
}
