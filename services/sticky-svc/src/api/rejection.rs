//! Every refusal the HTTP edge sends, mapped once to a status and a one-line body.
//!
//! It may not put internals in a body: each refusal is one fixed line.

use axum::body::Body;
use axum::http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use thiserror::Error;

use super::reply::{APPLICATION_JSON, TEXT_PLAIN};
use super::user::UserError;
use crate::cache::CacheError;

/// A request the service refuses, small and `Copy` so the hot path builds no error strings.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The `x-user` header is unusable: 400.
    #[error(transparent)]
    User(#[from] UserError),
    /// No route for the path: 404.
    #[error("no such path; the workload answers GET /ping with an x-user header")]
    NotFound,
    /// A method other than GET or HEAD: 405.
    #[error("method not allowed; use GET or HEAD")]
    MethodNotAllowed,
    /// The cache cannot take or finish this first call right now: 503.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The connection came past the connection limit: 503, then the connection is closed.
    #[error("too many connections; retry shortly")]
    TooManyConnections,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    status: u16,
}

impl Rejection {
    /// The HTTP status this refusal is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::User(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Cache(_) | Self::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The refusal as a response: one plain-text line, or `{"error","status"}` JSON.
    pub fn into_response(self, json: bool) -> Response {
        let status = self.status();
        let (body, content_type) = if json {
            let body = ErrorBody {
                error: self.to_string(),
                status: status.as_u16(),
            };
            (
                serde_json::to_string(&body).unwrap_or_default(),
                APPLICATION_JSON,
            )
        } else {
            (format!("{self}\n"), TEXT_PLAIN)
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
        match self {
            Self::MethodNotAllowed => {
                headers.insert(ALLOW, HeaderValue::from_static("GET,HEAD"));
            }
            Self::Cache(_) | Self::TooManyConnections => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::User(_) | Self::NotFound => {}
        }
        response
    }
}
