//! `idle-h1` and `flood`: one keep-alive `GET /ping` through hyper's client connection, its
//! answer read to the end, then nothing until the server closes the connection. hyper keeps
//! reading an idle connection, so a close (FIN or reset) ends its connection future at once.

use std::net::SocketAddr;
use std::pin::pin;

use bytes::Bytes;
use http::Request;
use http::header::HOST;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Answer, PATH, settle};
use crate::tally::Open;

/// One request as `user`, then idle until the server closes the connection.
pub async fn idle(stream: TcpStream, target: SocketAddr, user: &str, mut open: Open) {
    let Ok((mut sender, connection)) =
        http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await
    else {
        settle(&mut open, Answer::None);
        return open.server_closed();
    };
    let mut connection = pin!(connection);
    let request = Request::get(PATH)
        .header(HOST, target.to_string())
        .header("x-user", user)
        .body(Empty::new())
        .expect("a valid request");
    let mut answer = pin!(async {
        sender.ready().await.ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        response.into_body().collect().await.ok()?;
        Some(status)
    });
    let (status, ended) = tokio::select! {
        status = &mut answer => (status, false),
        // The server closed first (a 429 with `connection: close`, or no answer): whatever
        // arrived before the close is still delivered.
        _ = &mut connection => (answer.await, true),
    };
    settle(&mut open, status.map_or(Answer::None, Answer::Status));
    if !ended {
        // `sender` lives to the end of this function: hyper would close the connection without it.
        let _ = connection.await;
    }
    open.server_closed();
}
