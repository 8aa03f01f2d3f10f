//! The `x-user` header: the key the cache and the gateway's consistent hash both use.
//!
//! Validation only: it may not look the user up.

use axum::http::HeaderMap;
use axum::http::HeaderName;
use thiserror::Error;

/// The header naming the caller, as in the article and Istio's `httpHeaderName: x-user`.
pub const X_USER: HeaderName = HeaderName::from_static("x-user");

/// The longest accepted user name, in bytes; longer keys are refused, never cached.
pub const MAX_USER_BYTES: usize = 256;

/// What is wrong with a request's `x-user` header.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum UserError {
    /// No `x-user` header at all.
    #[error("the x-user header is missing; send `x-user: <name>`")]
    Missing,
    /// More than one `x-user` header, so the user is ambiguous.
    #[error("the x-user header appears more than once; send exactly one")]
    Repeated,
    /// Present but blank.
    #[error("the x-user header is empty; send `x-user: <name>`")]
    Empty,
    /// Longer than [`MAX_USER_BYTES`].
    #[error("the x-user header is longer than 256 bytes")]
    TooLong,
    /// Bytes that are not UTF-8 text.
    #[error("the x-user header is not valid UTF-8")]
    NotUtf8,
    /// A tab, DEL or other control character.
    #[error("the x-user header contains a control character")]
    ControlChar,
}

/// The user a request names, without the optional whitespace HTTP allows around a value.
pub fn user(headers: &HeaderMap) -> Result<&str, UserError> {
    let mut values = headers.get_all(&X_USER).iter();
    let value = values.next().ok_or(UserError::Missing)?;
    if values.next().is_some() {
        return Err(UserError::Repeated);
    }
    let bytes = value.as_bytes();
    if bytes.len() > MAX_USER_BYTES {
        return Err(UserError::TooLong);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| UserError::NotUtf8)?;
    let user = text.trim_matches([' ', '\t']);
    if user.is_empty() {
        return Err(UserError::Empty);
    }
    if user.chars().any(char::is_control) {
        return Err(UserError::ControlChar);
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn check(values: &[&[u8]]) -> Result<String, UserError> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_USER, HeaderValue::from_bytes(value).unwrap());
        }
        user(&headers).map(str::to_owned)
    }

    #[test]
    fn accepts_names_and_trims_surrounding_whitespace() {
        assert_eq!(check(&[b"ricky"]), Ok("ricky".into()));
        assert_eq!(check(&[b" ricky\t"]), Ok("ricky".into()));
        assert_eq!(check(&["ren\u{e9}".as_bytes()]), Ok("ren\u{e9}".into()));
        assert_eq!(check(&[b"a b"]), Ok("a b".into()));
        assert_eq!(check(&[&[b'x'; 256]]), Ok("x".repeat(256)));
    }

    #[test]
    fn refuses_bad_values() {
        assert_eq!(check(&[]), Err(UserError::Missing));
        assert_eq!(check(&[b"a", b"b"]), Err(UserError::Repeated));
        assert_eq!(check(&[b""]), Err(UserError::Empty));
        assert_eq!(check(&[b"  \t "]), Err(UserError::Empty));
        assert_eq!(check(&[&[b'x'; 257]]), Err(UserError::TooLong));
        assert_eq!(check(&[b"\xff\xfe"]), Err(UserError::NotUtf8));
        assert_eq!(check(&[b"ric\tky"]), Err(UserError::ControlChar));
        assert_eq!(check(&["a\u{85}b".as_bytes()]), Err(UserError::ControlChar));
    }
}
