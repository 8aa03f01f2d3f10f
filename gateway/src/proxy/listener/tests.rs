use http::Response;

use super::*;

/// The future of one connection's task with a handler of the proxy's kind, not yet polled.
async fn a_connection_task() -> impl Future<Output = ()> + Send + 'static {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_client, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    let (stream, peer) = accepted.unwrap();
    // The proxy's handler: a clone of a shared state, its future boxed by the service.
    let state = Arc::new([0u8; 4096]);
    let connections = Connections::new(Limits::default(), move |_req, _peer| {
        let state = state.clone();
        async move {
            let _ = state.len();
            Response::new(crate::body::empty())
        }
    });
    let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
    let watch = connections.guard.watch();
    connections.connection(stream, peer, permit, None, || {}, watch)
}

#[tokio::test]
async fn a_connection_task_stays_small() {
    let task = a_connection_task().await;
    let size = std::mem::size_of_val(&task);
    eprintln!("connection task: {size} bytes");
    // Held by every connection for its life, idle or not: the states of hyper's HTTP/2 and
    // of TLS are boxed in it; hyper's HTTP/1.1 connection too, and freed while idle.
    assert!(size <= 1024, "{size} bytes");
}
