//! The client side of the article: `GET /ping` with `x-user`, through a gateway's published port
//! on 127.0.0.1, reporting who answered and how long it took.
//!
//! It may only reach 127.0.0.1: the stack's published ports, never another address.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// Nothing came back within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed or broke.
    #[error("{0}")]
    Transport(String),
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// `x-served-by`: the replica (its container's host name) that answered.
    pub served_by: Option<String>,
    /// The body as text.
    pub body: String,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
}

/// A keep-alive HTTP/1.1 client.
#[derive(Debug, Clone)]
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client with a connection pool.
    pub fn new() -> Self {
        Self {
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET /ping` as `user` through the gateway published on `127.0.0.1:port`.
    pub async fn ping(
        &self,
        port: u16,
        user: &str,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        self.get(port, "/ping", Some(user), timeout).await
    }

    /// `GET path` on `127.0.0.1:port`, with `x-user` when given.
    pub async fn get(
        &self,
        port: u16,
        path: &str,
        user: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let mut request = Request::get(format!("http://127.0.0.1:{port}{path}"));
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let start = Instant::now();
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| ClientError::Transport(format!("{e:?}")))?;
            let status = response.status();
            let served_by = response
                .headers()
                .get("x-served-by")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            Ok(Reply {
                status,
                served_by,
                body: String::from_utf8_lossy(&body).into_owned(),
                elapsed: start.elapsed(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }
}
