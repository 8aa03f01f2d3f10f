//! What one hostile connection does: connect, make the opening move of its [`Mode`], then wait
//! for the server to close it, recording both in its [`Open`].
//!
//! A connection never ends on its own: [`play`] returns only when the server closes it (or it
//! could not connect), and the run ends the others by dropping the future, which closes the
//! socket without counting a server close.
//!
//! - [`http1`]: `idle-h1` and `flood`, through hyper's client connection.
//! - [`http2`]: `idle-h2`, through the `h2` crate (prior knowledge).
//! - [`stall`]: `stalled-body` and `stalled-head`, raw bytes on the socket.

pub mod http1;
pub mod http2;
pub mod stall;

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::plan::{Mode, Plan};
use crate::tally::{Open, Tally};

/// The path every mode asks for.
pub const PATH: &str = "/ping";

/// Plays connection `index` of `plan`.
pub async fn play(plan: Plan, index: usize, tally: Arc<Tally>) {
    let (mode, target, connect_timeout) = (plan.mode, plan.target, plan.connect_timeout);
    tally.attempt();
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(_)) | Err(_) => return tally.connect_failed(),
    };
    let open = tally.opened();
    let user = user(index);
    match mode {
        Mode::IdleH1 | Mode::Flood => http1::idle(stream, target, &user, open).await,
        Mode::IdleH2 => http2::idle(stream, target, &user, open).await,
        Mode::StalledBody => {
            let bytes = stall::body_bytes(target, &user, plan.content_length);
            stall::body(stream, &bytes, open).await;
        }
        Mode::StalledHead => stall::head(stream, target, &user, open).await,
    }
}

/// The `x-user` of connection `index`.
pub fn user(index: usize) -> String {
    format!("hostile-{index}")
}

/// What became of a connection's one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A response with this status (its body read to the end).
    Status(u16),
    /// The connection ended before a response.
    None,
}

/// Records `answer` and that the opening move is done.
fn settle(open: &mut Open, answer: Answer) {
    if let Answer::Status(status) = answer {
        open.answered(status);
    }
    open.settled();
}
