//! Response body framing: `content-length`, chunked (hyper's state machine, byte for byte
//! outside chunk data), or read until the peer closes. Data frames are slices of the read
//! buffer, split off it, not copies.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{CodecError, MAX_HEADERS};

/// Most chunk-extension bytes in a whole chunked body (hyper's limit).
const CHUNK_EXTENSIONS_LIMIT: u64 = 16 * 1024;
/// Longest trailer section (hyper's limit).
const TRAILERS_LIMIT: usize = 16 * 1024;

/// What the body decoder found in the read buffer.
#[derive(Debug)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// More bytes are needed.
    More,
}

/// A response body's framing and how far it has been read.
#[derive(Debug)]
pub enum Decoder {
    /// `Content-Length` (or none at all): bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Read until the peer closes.
    Eof,
}

impl Decoder {
    /// Takes the next body frame out of `buf` (a slice of it, not a copy).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        match self {
            Decoder::Length(0) => Ok(Decoded::End),
            Decoder::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let n = usize::try_from(*left).map_or(buf.len(), |left| left.min(buf.len()));
                *left -= n as u64;
                Ok(Decoded::Data(buf.split_to(n).freeze()))
            }
            Decoder::Chunked(chunked) => chunked.decode(buf),
            Decoder::Eof if buf.is_empty() => Ok(Decoded::More),
            Decoder::Eof => Ok(Decoded::Data(buf.split().freeze())),
        }
    }

    /// The peer closed with `decode` wanting more: the end of a close-delimited body, or a
    /// truncated one.
    pub fn closed(&self) -> Result<Decoded, CodecError> {
        match self {
            Decoder::Eof => Ok(Decoded::End),
            _ => Err(CodecError::Truncated),
        }
    }

    /// Whether the body has nothing more to give.
    pub fn is_end(&self) -> bool {
        matches!(self, Decoder::Length(0))
            || matches!(self, Decoder::Chunked(c) if c.state == State::End && c.trailers.is_none())
    }

    /// Body bytes still to come, when known.
    pub fn exact(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            _ => None,
        }
    }
}

/// Chunked decoding, hyper's state machine byte for byte outside chunk data: hex size with
/// overflow check, spaces/tabs then `;` extensions (ignored, 16 KiB per body), strict CRLF after
/// the size line and after the data, and trailers parsed into a frame (16 KiB, 100 fields).
#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
    size: u64,
    extensions: u64,
    trailers: Option<BytesMut>,
    trailer_count: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    End,
}

impl Chunked {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        loop {
            match self.state {
                State::End => {
                    return match self.trailers.take() {
                        Some(trailers) => {
                            trailers_map(&trailers, self.trailer_count).map(Decoded::Trailers)
                        }
                        None => Ok(Decoded::End),
                    };
                }
                State::Body => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = usize::try_from(self.size).map_or(buf.len(), |s| s.min(buf.len()));
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::BodyCr;
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                _ => {
                    let Some(&byte) = buf.first() else {
                        return Ok(Decoded::More);
                    };
                    buf.advance(1);
                    self.state = self.step(byte)?;
                }
            }
        }
    }

    fn step(&mut self, byte: u8) -> Result<State, CodecError> {
        use State::*;
        let hex = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b + 10 - b'a'),
            b'A'..=b'F' => Some(b + 10 - b'A'),
            _ => None,
        };
        Ok(match (self.state, byte) {
            (Start | Size, b) if hex(b).is_some() => {
                let digit = u64::from(hex(b).unwrap_or(0));
                self.size = (self.size.checked_mul(16))
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(CodecError::ChunkOverflow)?;
                Size
            }
            (Start, _) => return Err(CodecError::ChunkSize),
            (Size | SizeLws, b'\t' | b' ') => SizeLws,
            (Size | SizeLws, b';') => Extension,
            (Size | SizeLws, b'\r') => SizeLf,
            (Size | SizeLws, _) => return Err(CodecError::ChunkSize),
            (Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return Err(CodecError::ChunkSize),
            (Extension, _) => {
                self.extensions += 1;
                if self.extensions >= CHUNK_EXTENSIONS_LIMIT {
                    return Err(CodecError::ChunkExtensions);
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => EndCr,
            (SizeLf, b'\n') => Body,
            (SizeLf, _) => return Err(CodecError::ChunkSize),
            (BodyCr, b'\r') => BodyLf,
            (BodyLf, b'\n') => Start,
            (BodyCr | BodyLf, _) => return Err(CodecError::ChunkEnd),
            (Trailer, b) => {
                self.push_trailer(b)?;
                if b == b'\r' { TrailerLf } else { Trailer }
            }
            (TrailerLf, b'\n') => {
                if self.trailer_count >= MAX_HEADERS {
                    return Err(CodecError::Trailers);
                }
                self.trailer_count += 1;
                self.push_trailer(b'\n')?;
                EndCr
            }
            (TrailerLf, _) => return Err(CodecError::Trailers),
            (EndCr, b'\r') => {
                if self.trailers.is_some() {
                    self.push_trailer(b'\r')?;
                }
                EndLf
            }
            (EndCr, b) => {
                self.push_trailer(b)?;
                Trailer
            }
            (EndLf, b'\n') => {
                if self.trailers.is_some() {
                    self.push_trailer(b'\n')?;
                }
                End
            }
            (EndLf, _) => return Err(CodecError::ChunkEnd),
            (Body | End, _) => self.state,
        })
    }

    fn push_trailer(&mut self, byte: u8) -> Result<(), CodecError> {
        let trailers = self
            .trailers
            .get_or_insert_with(|| BytesMut::with_capacity(64));
        trailers.extend_from_slice(&[byte]);
        if trailers.len() >= TRAILERS_LIMIT {
            return Err(CodecError::Trailers);
        }
        Ok(())
    }
}

/// The trailer section as a header map (hyper's `decode_trailers`).
fn trailers_map(bytes: &[u8], count: usize) -> Result<HeaderMap, CodecError> {
    let mut parsed = vec![httparse::EMPTY_HEADER; count];
    let fields = match httparse::parse_headers(bytes, &mut parsed) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        _ => return Err(CodecError::Trailers),
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name =
            HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| CodecError::Trailers)?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| CodecError::Trailers)?;
        map.append(name, value);
    }
    Ok(map)
}
