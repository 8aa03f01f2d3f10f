//! The service hyper runs: `GET /ping` goes straight to the workload, the rest through axum.
//!
//! A callgrind profile of a warm `/ping` showed axum's router at about a sixth of the server's
//! instructions per request: the route lookup, a URL-parameter map allocated and stored in the
//! request's extensions for every match, and its own content-length pass (hyper sets that
//! anyway). The workload's one hot route is matched by a method and a string compare instead;
//! everything else (HEAD, other methods on `/ping`, health, metrics, errors) goes through the
//! axum [`Router`], which also serves `/ping` there so both paths answer the same way.
//!
//! It may not hold state of its own: the workload's state is in `AppState`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Bytes, HttpBody};
use axum::http::{Method, Request};
use axum::response::Response;
use tokio::sync::OwnedSemaphorePermit;
use tower::Service;

use super::{AppState, Rejection, answer, wants_json};

/// The response future of [`App`]; boxed, as axum's handler futures are.
pub type AppFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The whole HTTP application; cheap to clone (two `Arc`s).
#[derive(Debug, Clone)]
pub struct App {
    state: AppState,
    router: Router,
}

impl App {
    /// The application over `state`, with its axum router for everything but the hot path.
    pub fn new(state: AppState) -> Self {
        Self {
            router: super::router(state.clone()),
            state,
        }
    }

    /// A place for one more connection, to hold while it is served; `None` past the limit.
    pub fn admit_connection(&self) -> Option<OwnedSemaphorePermit> {
        self.state.connections().admit()
    }

    /// The answer to every request on a connection past the limit: 503 with `Retry-After`.
    /// Counted by `sticky_connections_refused_total`, not as a workload request.
    pub fn too_many_connections<B>(&self, request: &Request<B>) -> Response {
        self.state
            .refusal(Rejection::TooManyConnections, wants_json(request.headers()))
    }
}

impl<B> Service<Request<B>> for App
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() == Method::GET && request.uri().path() == "/ping" {
            let state = self.state.clone();
            let (parts, body) = request.into_parts();
            // A GET's body is not read; dropping it now keeps the future free of `B`.
            drop(body);
            return Box::pin(async move { Ok(answer(&state, &parts.headers).await) });
        }
        Box::pin(self.router.call(request))
    }
}
