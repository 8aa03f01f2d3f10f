//! HTTP/2 to the endpoints: one connection per endpoint and worker, every request a stream on
//! it, as Envoy does. The connection's frame I/O runs on a task of its own ([`connection`]), so
//! the streams of all requests to that endpoint are written and read together. Requests that
//! find it being made wait for it rather than each making one (a replica that comes back under
//! load gets one connection per worker, not one per request in flight).
//!
//! Like the rest of `upstream`, it may not import the request path, the cluster or the snapshot.

mod connection;

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Request, Response, Version};
use tokio::sync::watch;

use super::{Upstream, UpstreamError};
use crate::body::Body;
use crate::worker;
use connection::{Connection, Failure};

/// A worker's HTTP/2 connections, one per endpoint. Aligned like [`Idle`].
#[derive(Default)]
#[repr(align(64))]
pub(super) struct Streams {
    pub(super) by_endpoint: super::ByEndpoint<Slot>,
}

/// A worker's HTTP/2 connection to one endpoint, or the news of the one being made.
pub(super) enum Slot {
    Ready(Connection),
    /// Tells whether the connection was made (`Some(false)`: the connect failed); closed if its
    /// maker was cancelled.
    Connecting(watch::Receiver<Option<bool>>),
}

impl Upstream {
    /// [`Upstream::send`] over HTTP/2: the request becomes a stream on the worker's connection
    /// to `addr` (made on first use, made again once closed). The client's `Host` becomes the
    /// `:authority` (the endpoint's address when there is none).
    pub(super) async fn send_h2(
        &self,
        streams: &[Mutex<Streams>],
        addr: SocketAddr,
        authority: &Authority,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let slot = worker::index() % streams.len();
        let host = request
            .headers_mut()
            .remove(HOST)
            .and_then(|host| Authority::try_from(host.as_bytes()).ok())
            .unwrap_or_else(|| authority.clone());
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::builder()
            .scheme("http")
            .authority(host)
            .path_and_query(path)
            .build()
            .map_err(|_| UpstreamError::Reset)?;
        *request.version_mut() = Version::HTTP_2;

        let (mut conn, mut fresh) = self.h2_connection(streams, slot, addr).await?;
        loop {
            match conn.exchange(request).await {
                Ok(response) => return Ok(response),
                // The connection went away while cached (a GOAWAY its task has not finished
                // with yet): forget it, then a fresh one, once.
                Err(Failure::Unsent(unsent)) if !fresh => {
                    request = *unsent;
                    {
                        let mut streams =
                            streams[slot].lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(Slot::Ready(cached)) = streams.by_endpoint.get(&addr)
                            && cached.same(&conn)
                        {
                            streams.by_endpoint.remove(&addr);
                        }
                    }
                    (conn, fresh) = self.h2_connection(streams, slot, addr).await?;
                }
                Err(Failure::Unsent(_) | Failure::Reset) => return Err(UpstreamError::Reset),
                Err(Failure::Refused) => return Err(UpstreamError::Refused),
            }
        }
    }

    /// The worker's HTTP/2 connection to `addr`, and whether it was just made. Made on first
    /// use and again once closed; requests that find it being made wait for it (and share its
    /// connect failure) instead of each making one, as Envoy queues them on a connecting
    /// connection. A connection runs until the peer closes it, an error, no stream has been open on
    /// it for `idleTimeout`, or the pool is dropped with its cluster and its last stream is
    /// done.
    async fn h2_connection(
        &self,
        streams: &[Mutex<Streams>],
        slot: usize,
        addr: SocketAddr,
    ) -> Result<(Connection, bool), UpstreamError> {
        loop {
            let waiting = {
                let mut map = streams[slot].lock().unwrap_or_else(PoisonError::into_inner);
                match map.by_endpoint.get(&addr) {
                    Some(Slot::Ready(conn)) if !conn.is_closed() => {
                        let conn = conn.clone();
                        if conn.take_stream(self.max_requests) {
                            map.by_endpoint.remove(&addr); // its last stream: retired
                        }
                        return Ok((conn, false));
                    }
                    // Being made by a request still waiting for it (not cancelled).
                    Some(Slot::Connecting(made)) if made.has_changed().is_ok() => Ok(made.clone()),
                    _ => {
                        let (tell, made) = watch::channel(None);
                        map.by_endpoint.insert(addr, Slot::Connecting(made));
                        Err(tell)
                    }
                }
            };
            let mut made = match waiting {
                Ok(made) => made,
                Err(tell) => {
                    // Boxed: the connect and handshake states (~6 KiB) would otherwise size
                    // this future, and the request's with it, copied whole on every request
                    // that finds its connection ready.
                    let made = Box::pin(self.connect_h2(addr)).await;
                    let mut map = streams[slot].lock().unwrap_or_else(PoisonError::into_inner);
                    // Connections closed by their peers (endpoints gone, too) go here.
                    map.by_endpoint.retain(|_, slot| match slot {
                        Slot::Ready(conn) => !conn.is_closed(),
                        Slot::Connecting(made) => made.has_changed().is_ok(),
                    });
                    match &made {
                        Ok(conn) if !conn.take_stream(self.max_requests) => {
                            map.by_endpoint.insert(addr, Slot::Ready(conn.clone()))
                        }
                        _ => map.by_endpoint.remove(&addr),
                    };
                    drop(map);
                    tell.send_replace(Some(made.is_ok()));
                    return made.map(|conn| (conn, true));
                }
            };
            match made.changed().await {
                // Made: take a stream of it, as above (or make the next, were it spent).
                Ok(()) if *made.borrow() == Some(true) => continue,
                Ok(()) => return Err(UpstreamError::Connect),
                // The request making it was cancelled: make it here.
                Err(_) => continue,
            }
        }
    }

    async fn connect_h2(&self, addr: SocketAddr) -> Result<Connection, UpstreamError> {
        let stream = self.tcp(addr).await?;
        let connection = match self.secure(stream).await? {
            Ok(tls) => Connection::handshake(tls, self.idle_timeout, self.response_idle).await,
            Err(plain) => Connection::handshake(plain, self.idle_timeout, self.response_idle).await,
        };
        connection.map_err(|_| UpstreamError::Connect)
    }
}
