//! `stalled-body` and `stalled-head`: raw bytes of a request that never completes, then
//! silence. Whatever the server sends back is read (its status line counted as an answer)
//! until it closes the connection.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Answer, PATH, settle};
use crate::tally::Open;

pub use crate::plan::{ANNOUNCED, SENT};

/// The most bytes kept while looking for the end of a status line.
const MAX_STATUS_LINE: usize = 1024;

/// A complete head announcing `announced` body bytes, and [`SENT`] of them.
pub fn body_bytes(target: SocketAddr, user: &str, announced: usize) -> Vec<u8> {
    let mut bytes = format!(
        "POST {PATH} HTTP/1.1\r\nhost: {target}\r\nx-user: {user}\r\n\
         content-type: text/plain\r\ncontent-length: {announced}\r\n\r\n"
    )
    .into_bytes();
    bytes.resize(bytes.len() + SENT, b'x');
    bytes
}

/// The first half of a `GET` head: cut inside its headers, never reaching the blank line.
pub fn head_bytes(target: SocketAddr, user: &str) -> Vec<u8> {
    let head =
        format!("GET {PATH} HTTP/1.1\r\nhost: {target}\r\nx-user: {user}\r\naccept: */*\r\n\r\n");
    head.as_bytes()[..head.len() / 2].to_vec()
}

/// A `POST` ([`body_bytes`]) whose body stops after [`SENT`] of the bytes it announced.
pub async fn body(stream: TcpStream, bytes: &[u8], open: Open) {
    stall(stream, bytes, open).await;
}

/// Half a request head.
pub async fn head(stream: TcpStream, target: SocketAddr, user: &str, open: Open) {
    stall(stream, &head_bytes(target, user), open).await;
}

async fn stall(mut stream: TcpStream, bytes: &[u8], mut open: Open) {
    let written = stream.write_all(bytes).await;
    settle(&mut open, Answer::None);
    if written.is_ok() {
        read_until_closed(&mut stream, &mut open).await;
    }
    open.server_closed();
}

/// Reads until the server closes, counting the status of its first response.
async fn read_until_closed(stream: &mut TcpStream, open: &mut Open) {
    let mut start = Vec::new();
    let mut counted = false;
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if counted || start.len() >= MAX_STATUS_LINE {
            continue;
        }
        start.extend_from_slice(&buf[..n]);
        if let Some(status) = status(&start) {
            open.answered(status);
            counted = true;
        }
    }
}

/// The status of an HTTP/1.x status line at the start of `bytes`, once its line is complete.
fn status(bytes: &[u8]) -> Option<u16> {
    let line = &bytes[..bytes.windows(2).position(|w| w == b"\r\n")?];
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "127.0.0.1:8080";

    #[test]
    fn status_lines_are_read_once_complete() {
        assert_eq!(status(b"HTTP/1.1 408 Request Timeout\r\n"), Some(408));
        assert_eq!(status(b"HTTP/1.0 200 OK\r\nx: y"), Some(200));
        assert_eq!(status(b"HTTP/1.1 408 Request Time"), None);
        assert_eq!(status(b"HTTP/2 200\r\n"), None);
        assert_eq!(status(b"HTTP/1.1 4x8 Bad\r\n"), None);
    }

    #[test]
    fn a_stalled_body_announces_a_million_and_sends_a_hundred() {
        let bytes = body_bytes(TARGET.parse().unwrap(), "hostile-7", ANNOUNCED);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /ping HTTP/1.1\r\n"));
        assert!(head.contains("\r\ncontent-length: 1000000"));
        assert!(head.contains("\r\nx-user: hostile-7"));
        assert_eq!(body.len(), SENT);
    }

    #[test]
    fn a_stalled_head_never_ends() {
        let bytes = head_bytes(TARGET.parse().unwrap(), "hostile-7");
        assert!(bytes.starts_with(b"GET /ping HTTP/1.1\r\n"));
        assert!(!bytes.windows(4).any(|w| w == b"\r\n\r\n"));
    }
}
