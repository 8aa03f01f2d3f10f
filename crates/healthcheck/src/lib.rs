//! The health-check client of the `FROM scratch` images: `sticky-svc healthcheck` and
//! `gateway healthcheck` both GET `/healthz` of their own server with [`check`] and exit 0 only
//! on a 200. It lives here once so the two binaries probe, time out and report alike.
//!
//! Those images have no shell, curl or DNS resolver, so this speaks the few bytes of HTTP/1.1
//! it needs over a blocking [`TcpStream`] to a literal IP address, within one overall timeout.
//! It may not resolve names, speak TLS, follow redirects, read past the status line or start an
//! async runtime: std and `thiserror` only, so a probe costs a process start and one connection.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let listen = "0.0.0.0:8080".parse().unwrap();
//! // A wildcard listen address is probed on loopback: 127.0.0.1:8080.
//! healthcheck::check(healthcheck::target(listen), Duration::from_secs(2))?;
//! # Ok::<(), healthcheck::Error>(())
//! ```

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use thiserror::Error;

/// The path both servers answer 200 on while their process runs.
pub const PATH: &str = "/healthz";

/// The most bytes read while looking for the end of the status line.
const MAX_HEAD: usize = 1024;

/// Why the server was judged unhealthy; every variant names the address asked.
#[derive(Debug, Error)]
pub enum Error {
    /// Nothing accepted a connection at the address.
    #[error("cannot connect to {addr}")]
    Connect {
        /// Where the server was expected.
        addr: SocketAddr,
        /// The connection error.
        #[source]
        source: io::Error,
    },
    /// The exchange failed after connecting.
    #[error("request to {addr} failed")]
    Io {
        /// The server's address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// No status line within the timeout (connecting included).
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// The server's address.
        addr: SocketAddr,
        /// The whole exchange's allowance.
        timeout: Duration,
    },
    /// The bytes received are not an HTTP/1.x status line.
    #[error("{addr} did not answer with HTTP")]
    NotHttp {
        /// The server's address.
        addr: SocketAddr,
    },
    /// An answer other than 200.
    #[error("{addr} answered {PATH} with status {status}")]
    Unhealthy {
        /// The server's address.
        addr: SocketAddr,
        /// The status it sent.
        status: u16,
    },
}

/// Where a server listening on `listen` can be reached from the same host: a wildcard address
/// (`0.0.0.0`, `::`) is reached through the loopback of its family (`::1` always reaches a
/// socket bound to `::`, `127.0.0.1` only when it is dual-stack).
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GETs [`PATH`] at `addr`; `Ok` only for a 200 status line within `timeout` of the call.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
    let start = Instant::now();
    let timed_out = || Error::Timeout { addr, timeout };
    // What is left of the allowance; std refuses a zero timeout, so none left is a timeout here.
    let left = || match timeout.saturating_sub(start.elapsed()) {
        Duration::ZERO => Err(timed_out()),
        left => Ok(left),
    };
    let io = |source: io::Error| match source.kind() {
        // A socket timeout reads as WouldBlock on Unix and TimedOut on Windows.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        _ => Error::Io { addr, source },
    };

    let mut stream =
        TcpStream::connect_timeout(&addr, left()?).map_err(|source| match source.kind() {
            io::ErrorKind::TimedOut => timed_out(),
            _ => Error::Connect { addr, source },
        })?;
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: healthcheck\r\n\
         Connection: close\r\n\r\n"
    );
    stream.set_write_timeout(Some(left()?)).map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;

    // The status line is all we need: "HTTP/1.1 200 OK\r\n".
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|pair| pair == b"\r\n") && head.len() < MAX_HEAD {
        stream.set_read_timeout(Some(left()?)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => head.extend_from_slice(&buf[..read]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    match status(&head) {
        Some(200) => Ok(()),
        Some(status) => Err(Error::Unhealthy { addr, status }),
        None => Err(Error::NotHttp { addr }),
    }
}

/// The status code of an HTTP/1.x status line.
fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let rest = line.strip_prefix(b"HTTP/1.")?;
    if rest.get(1) != Some(&b' ') {
        return None;
    }
    let code = rest.get(2..5)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(5), None | Some(b' ')) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
