//! `idle-h2`: an h2c connection with prior knowledge, one `GET /ping` stream read to the end,
//! then no stream until the server closes the connection (GOAWAY, FIN or reset). The `h2`
//! connection future keeps answering the server's PINGs meanwhile, as a live client would.

use std::net::SocketAddr;
use std::pin::pin;

use http::Request;
use tokio::net::TcpStream;

use super::{Answer, PATH, settle};
use crate::tally::Open;

/// One stream as `user`, then idle until the server closes the connection.
pub async fn idle(stream: TcpStream, target: SocketAddr, user: &str, mut open: Open) {
    let Ok((client, connection)) = h2::client::handshake(stream).await else {
        settle(&mut open, Answer::None);
        return open.server_closed();
    };
    // `h2` ends a client connection once no handle to it is left: one is kept for the hold.
    let keep = client.clone();
    let mut connection = pin!(connection);
    let request = Request::get(format!("http://{target}{PATH}"))
        .header("x-user", user)
        .body(())
        .expect("a valid request");
    let mut answer = pin!(async move {
        let mut client = client.ready().await.ok()?;
        let (response, _) = client.send_request(request, true).ok()?;
        let response = response.await.ok()?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.ok()?.len());
        }
        Some(status)
    });
    let (status, ended) = tokio::select! {
        status = &mut answer => (status, false),
        _ = &mut connection => (answer.await, true),
    };
    settle(&mut open, status.map_or(Answer::None, Answer::Status));
    if !ended {
        let _ = connection.await;
    }
    drop(keep);
    open.server_closed();
}
