//! The HTTP/1.1 client codec, without I/O: the request head and its body framing out, the
//! response head and body framing in (RFC 9112), on `httparse`, the parser hyper itself uses.
//!
//! Every decision below copies hyper 1.12's client (`proto/h1/role.rs`, `decode.rs`,
//! `headers.rs`) unless its doc says otherwise; the differential tests in `tests.rs` hold the
//! two side by side. Where this codec differs from hyper, it is on purpose:
//! - a response head may be 64 KiB ([`MAX_HEAD`]), not ~408 KiB (nginx refuses past 4-8 KiB);
//! - `101 Switching Protocols` is an error ([`CodecError::Upgrade`]): the gateway strips
//!   `Upgrade`, so it never asked for one (hyper hands the 101 back and ends the connection);
//! - a response with both `Transfer-Encoding` and `Content-Length` is read by the former, as
//!   hyper does, but its `Content-Length` is removed before it goes further (RFC 9112 §6.1:
//!   an intermediary MUST) and its connection is never reused (hyper keeps both and reuses);
//! - a request body of unknown length on a GET, HEAD or CONNECT is sent chunked (hyper sends
//!   such a request with no body and drops the body).

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};

mod body;
mod names;

pub use body::{Chunked, Decoded, Decoder};

/// Most header lines in a response head (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// Longest response head (and 1xx head): past it, the exchange fails.
pub const MAX_HEAD: usize = 64 * 1024;

/// Why an exchange failed. Small and `Copy`: it is made on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("response status out of range")]
    Status,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    Upgrade,
    #[error("transfer-encoding in an HTTP/1.0 response")]
    TransferEncodingHttp10,
    #[error("invalid or conflicting content-length")]
    ContentLength,
    #[error("invalid chunk size line")]
    ChunkSize,
    #[error("chunk size overflows")]
    ChunkOverflow,
    #[error("chunk not followed by CRLF")]
    ChunkEnd,
    #[error("chunk extensions over limit")]
    ChunkExtensions,
    #[error("invalid or oversized trailers")]
    Trailers,
    #[error("connection closed before the end of the response body")]
    Truncated,
    #[error("connection closed before a response head")]
    Closed,
    #[error("I/O error: {0}")]
    Io(std::io::ErrorKind),
    #[error("the request body failed")]
    RequestBody,
    #[error("the request body is longer or shorter than its content-length")]
    RequestLength,
    #[error("the request's transfer-encoding or content-length cannot be sent")]
    RequestFraming,
}

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body, and no framing header written.
    Empty,
    /// `Content-Length`: this many bytes still to send.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The framing of a request body, as hyper's client picks it, but without ever dropping a
/// body: a `transfer-encoding` ending in `chunked`, else `content-length`, else none for a body
/// already at its end, else the body's exact size, else chunked (hyper sends a GET/HEAD body of
/// unknown size as no body at all and discards it). Request trailers are not sent: hyper only
/// sends those named by a `Trailer` header, which the proxy strips as hop-by-hop.
pub fn request_framing(
    headers: &HeaderMap,
    end_stream: bool,
    exact: Option<u64>,
) -> Result<Framing, CodecError> {
    if let Some(te) = headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        return if is_chunked(te) {
            Ok(Framing::Chunked)
        } else {
            Err(CodecError::RequestFraming)
        };
    }
    if headers.contains_key(CONTENT_LENGTH) {
        return content_length(headers)
            .map(Framing::Length)
            .ok_or(CodecError::RequestFraming);
    }
    Ok(match (end_stream, exact) {
        (true, _) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Chunked,
    })
}

/// Writes `METHOD origin-form HTTP/1.1`, the headers in the map's order and, when the map has
/// none, the framing header of `framing`; a chunked request's `content-length` is left out.
/// `host` is written as the `Host` field when the map has none (an HTTP/1.0 client may send
/// none; HTTP/1.1 requires one).
pub fn encode_head(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    host: Option<&str>,
    framing: Framing,
    out: &mut Vec<u8>,
) {
    out.reserve(32 + path.len() + headers.len() * 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_framing = false;
    let mut has_host = false;
    for (name, value) in headers {
        if *name == HOST {
            has_host = true;
        } else if *name == TRANSFER_ENCODING {
            has_framing = true;
        } else if *name == CONTENT_LENGTH {
            if framing == Framing::Chunked {
                continue;
            }
            has_framing = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        _ if has_framing => {}
        Framing::Empty => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            decimal(n, out);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if let Some(host) = host.filter(|_| !has_host) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Writes the size line of a chunk of `len` bytes.
pub fn chunk_size(len: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = b"0123456789ABCDEF"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub response: Response<()>,
    pub body: Decoder,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Parses the final response head at the start of `buf` and splits it off; 1xx heads before it
/// are skipped. `Ok(None)`: incomplete. `method` is the request's (a HEAD response has no body).
/// Header values are `Bytes` slices of the head, checked by `HeaderValue` again (httparse
/// allows the same bytes, so this never fails, but it is not `unsafe` to find out).
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, CodecError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let (len, code, version, count, reason) = {
            let bytes: &[u8] = buf;
            match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut res, bytes, &mut slots)
            {
                Ok(httparse::Status::Complete(len)) => {
                    let base = bytes.as_ptr() as usize;
                    // Offsets into the buffer; an empty slice may not point into it.
                    let at = |s: &[u8]| match s.is_empty() {
                        true => 0,
                        false => (s.as_ptr() as usize).wrapping_sub(base) as u32,
                    };
                    for (span, h) in spans.iter_mut().zip(res.headers.iter()) {
                        let name = at(h.name.as_bytes());
                        let value = at(h.value);
                        *span = (
                            name,
                            name + h.name.len() as u32,
                            value,
                            value + h.value.len() as u32,
                        );
                    }
                    let reason = res.reason.unwrap_or("");
                    let reason = (at(reason.as_bytes()), reason.len() as u32);
                    let version = if res.version == Some(1) {
                        Version::HTTP_11
                    } else {
                        Version::HTTP_10
                    };
                    (
                        len,
                        res.code.unwrap_or(0),
                        version,
                        res.headers.len(),
                        reason,
                    )
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(CodecError::Head(e)),
            }
        };
        if len > MAX_HEAD {
            return Err(CodecError::HeadTooLarge);
        }
        let status = StatusCode::from_u16(code).map_err(|_| CodecError::Status)?;
        let head = buf.split_to(len).freeze();
        if status.is_informational() && code != 101 {
            continue; // 100 Continue, 103 Early Hints: not for us, as hyper skips them
        }
        let mut headers = HeaderMap::with_capacity(count);
        let mut keep_alive = version == Version::HTTP_11;
        let mut saw_close = false;
        // The framing fields, noted as they go by (no lookups in the map afterwards).
        let mut framing = Fields::default();
        for &(n0, n1, v0, v1) in &spans[..count] {
            let name = names::header_name(&head[n0 as usize..n1 as usize])
                .map_err(|_| CodecError::Head(httparse::Error::HeaderName))?;
            let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize))
                .map_err(|_| CodecError::Head(httparse::Error::HeaderValue))?;
            if name == CONNECTION {
                if saw_close || has_token(&value, "close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(&value, "keep-alive");
                }
            } else if name == TRANSFER_ENCODING {
                framing.transfer_encoding = true;
            } else if name == CONTENT_LENGTH {
                framing.length = match (framing.length, digits(value.as_bytes())) {
                    (Length::Absent, Some(n)) => Length::One(n),
                    _ => Length::Other,
                };
            }
            headers.append(name, value);
        }
        let (body, framed_ok) = decoder(status, version, method, &mut headers, framing)?;
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        let (r0, r1) = (reason.0 as usize, (reason.0 + reason.1) as usize);
        if Some(&head[r0..r1]) != status.canonical_reason().map(str::as_bytes)
            && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(head.slice(r0..r1))
        {
            response.extensions_mut().insert(reason);
        }
        return Ok(Some(Head {
            response,
            body,
            keep_alive: keep_alive && framed_ok,
        }));
    }
}

/// What a response head says about its framing, noted while its fields are read.
#[derive(Debug, Default, Clone, Copy)]
struct Fields {
    transfer_encoding: bool,
    length: Length,
}

/// The `content-length` fields of a head.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Length {
    #[default]
    Absent,
    /// One field of plain digits (the common case, parsed on the way).
    One(u64),
    /// Several fields, a list, or anything else: [`content_length`] applies the full rules.
    Other,
}

/// A field value of ASCII digits only, as a number; `None` for anything else (empty, a sign,
/// spaces, a list, an overflow).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The body framing of a final response (RFC 9112 §6.3, as hyper's `Client::decoder`), and
/// whether the framing lets the connection be reused.
fn decoder(
    status: StatusCode,
    version: Version,
    method: &Method,
    headers: &mut HeaderMap,
    fields: Fields,
) -> Result<(Decoder, bool), CodecError> {
    // Smuggling defence: with both, the length that lost is not forwarded (whatever the
    // status), and the connection ends after this response.
    let both = fields.transfer_encoding && fields.length != Length::Absent;
    if both {
        // Rebuilt rather than `remove`d, which would reorder the other fields.
        *headers = (headers.iter())
            .filter(|(name, _)| *name != CONTENT_LENGTH)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
    }
    match status.as_u16() {
        101 => return Err(CodecError::Upgrade),
        204 | 304 => return Ok((Decoder::Length(0), !both)),
        _ => {}
    }
    if *method == Method::HEAD {
        return Ok((Decoder::Length(0), !both));
    }
    if *method == Method::CONNECT && status.is_success() {
        return Err(CodecError::Upgrade);
    }
    if fields.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(CodecError::TransferEncodingHttp10);
        }
        let last = headers.get_all(TRANSFER_ENCODING).iter().next_back();
        return Ok(if last.is_some_and(is_chunked) {
            (Decoder::Chunked(Chunked::default()), !both)
        } else {
            (Decoder::Eof, false)
        });
    }
    let length = match fields.length {
        Length::Absent => return Ok((Decoder::Eof, false)),
        Length::One(n) => Some(n),
        Length::Other => content_length(headers),
    };
    match length {
        Some(n) if n <= u64::MAX - 2 => Ok((Decoder::Length(n), true)),
        _ => Err(CodecError::ContentLength),
    }
}

/// Every `content-length` value (comma lists too) as one number: `None` when one is not all
/// digits, overflows, or differs from another (hyper's `content_length_parse_all`).
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let line = value.to_str().ok()?;
        for v in line.split(',') {
            let v = v.trim().as_bytes();
            if v.is_empty() {
                return None;
            }
            let mut n = 0u64;
            for &b in v {
                if !b.is_ascii_digit() {
                    return None;
                }
                n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            }
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}

fn is_chunked(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|s| s.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// A fast scan for the end of a head in the bytes read since `prev_len` (hyper's
/// `is_complete_fast`: a line end then an empty line): a head split over reads is parsed
/// again only once it may be complete, so a replica trickling bytes cannot make parsing
/// quadratic. (A malformed head that never ends is then left to the request's timeout, as
/// hyper leaves it.)
pub fn maybe_complete(bytes: &[u8], prev_len: usize) -> bool {
    let bytes = &bytes[prev_len.saturating_sub(3)..];
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}
