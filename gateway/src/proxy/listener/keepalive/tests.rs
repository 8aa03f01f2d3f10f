use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use conn_guard::IdleGuard;
use http::Response;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;

/// One connection served by [`serve`] under a guard that sweeps every 10 ms; the client's
/// end, how often it rested, and the task. Each request is answered `ok` at once; its body is
/// read to its end on a task of its own, its length sent on `bodies`.
struct Served {
    client: TcpStream,
    rests: Arc<AtomicUsize>,
    guard: IdleGuard,
    task: tokio::task::JoinHandle<Result<(), BoxError>>,
    bodies: mpsc::UnboundedReceiver<usize>,
}

async fn served() -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (client, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    let guard = IdleGuard::start(Duration::from_millis(40));
    let watch = guard.watch();
    let rests = Arc::new(AtomicUsize::new(0));
    let (sent, bodies) = mpsc::unbounded_channel();
    let task = {
        let rests = rests.clone();
        let service_watch = watch.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            arm(&service_watch, &req);
            let in_flight = service_watch.request();
            let sent = sent.clone();
            tokio::spawn(async move {
                let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
                let _ = sent.send(body.unwrap_or(usize::MAX));
            });
            async move {
                drop(in_flight);
                let body = crate::body::full("ok");
                Ok::<_, Infallible>(Response::new(body))
            }
        });
        let io = Batched::new(accepted.unwrap().0);
        tokio::spawn(async move {
            let rested = || {
                rests.fetch_add(1, Ordering::Relaxed);
            };
            serve(&http1::Builder::new(), io, service, &watch, rested).await
        })
    };
    Served {
        client: client.unwrap(),
        rests,
        guard,
        task,
        bodies,
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";

/// Reads one `ok` answer (its head and its 2-byte body).
async fn answer(client: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !(got.ends_with(b"\r\n\r\nok")) {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert_ne!(
            n,
            0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// Waits (up to 5 s, looking every 10 ms) until `done` holds; false if it never did.
async fn until(done: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// Waits (up to 5 s) until the connection has rested `n` times in all.
async fn rested(rests: &AtomicUsize, n: usize) {
    let done = until(|| rests.load(Ordering::Relaxed) >= n).await;
    assert!(
        done,
        "rested {} times, not {n}",
        rests.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn an_idle_connection_rests_and_serves_its_next_request() {
    let mut s = served().await;
    s.client.write_all(GET).await.unwrap();
    assert!(answer(&mut s.client).await.starts_with("HTTP/1.1 200"));
    rested(&s.rests, 1).await;
    s.client.write_all(GET).await.unwrap();
    assert!(answer(&mut s.client).await.starts_with("HTTP/1.1 200"));
    rested(&s.rests, 2).await;
}

#[tokio::test]
async fn a_pipelined_request_cut_at_rest_is_served_whole() {
    let mut s = served().await;
    let second = b"GET /second HTTP/1.1\r\nhost: a\r\n\r\n";
    let (start, end) = second.split_at(10);
    s.client.write_all(&[GET, start].concat()).await.unwrap();
    assert!(answer(&mut s.client).await.starts_with("HTTP/1.1 200"));
    rested(&s.rests, 1).await;
    s.client.write_all(end).await.unwrap();
    assert!(answer(&mut s.client).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn no_rest_after_a_request_with_a_body_until_one_without() {
    let mut s = served().await;
    let post = b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n12345";
    s.client.write_all(post).await.unwrap();
    assert!(answer(&mut s.client).await.starts_with("HTTP/1.1 200"));
    assert_eq!(s.bodies.recv().await, Some(5), "the whole body");
    // Three sweeps later (each one would have asked an armed connection to rest), still none.
    let from = s.guard.sweeps();
    assert!(
        until(|| s.guard.sweeps() >= from + 3).await,
        "the guard sweeps"
    );
    assert_eq!(
        s.rests.load(Ordering::Relaxed),
        0,
        "hyper may read a body after its answer"
    );
    s.client.write_all(GET).await.unwrap();
    assert!(answer(&mut s.client).await.starts_with("HTTP/1.1 200"));
    rested(&s.rests, 1).await;
}

#[tokio::test]
async fn told_to_close_at_rest_it_closes() {
    let mut s = served().await;
    s.client.write_all(GET).await.unwrap();
    answer(&mut s.client).await;
    rested(&s.rests, 1).await;
    s.guard.close_all();
    let ended = tokio::time::timeout(Duration::from_secs(5), s.task).await;
    assert!(ended.expect("closed within 5 s").unwrap().is_ok());
    let mut rest = Vec::new();
    s.client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "nothing more: {rest:?}");
}

#[tokio::test]
async fn a_client_that_leaves_at_rest_ends_the_connection() {
    let mut s = served().await;
    s.client.write_all(GET).await.unwrap();
    answer(&mut s.client).await;
    rested(&s.rests, 1).await;
    drop(s.client);
    let ended = tokio::time::timeout(Duration::from_secs(5), s.task).await;
    assert!(ended.expect("ended within 5 s").unwrap().is_ok());
}
