//! The request path: listener, routing, balancing, forwarding with retries and timeouts.

pub mod error;
pub mod headers;
pub mod listener;
pub mod upstream;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

pub use error::ProxyError;

/// The body type of every response the gateway sends, and of upstream requests.
pub type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
