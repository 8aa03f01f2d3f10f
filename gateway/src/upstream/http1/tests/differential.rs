//! A table of response byte streams, valid and hostile, each fed to hyper's client and to
//! ours; and the request bytes each writes for the same requests.

use super::*;

/// One response stream: its bytes, whether the server closes after them, the request method,
/// the read sizes it arrives in (empty: as it comes), and what the two clients must agree on.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    close: bool,
    method: Method,
    sizes: Vec<usize>,
    /// `None`: ours must equal hyper's. `Some(why)`: ours must equal hyper's as changed by
    /// [`deliberate`], and differ from it.
    differs: Option<&'static str>,
    /// What hyper makes of it, checked so a case cannot pass by both clients failing alike.
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Rejected,
    /// A response whose body ends as given; reusable or not.
    Body(End, bool),
}

fn case(name: &'static str, bytes: impl AsRef<[u8]>, expect: Expect) -> Case {
    Case {
        name,
        bytes: bytes.as_ref().to_vec(),
        close: false,
        method: Method::GET,
        sizes: Vec::new(),
        differs: None,
        expect,
    }
}

impl Case {
    fn closed(mut self) -> Self {
        self.close = true;
        self
    }
    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
    fn sizes(mut self, sizes: &[usize]) -> Self {
        self.sizes = sizes.to_vec();
        self
    }
    fn differs(mut self, why: &'static str) -> Self {
        self.differs = Some(why);
        self
    }
}

const OK: Expect = Expect::Body(End::Complete, true);
const ONCE: Expect = Expect::Body(End::Complete, false);
const FAILS: Expect = Expect::Body(End::Failed, false);
const NO: Expect = Expect::Rejected;

fn cases() -> Vec<Case> {
    let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                   5;ext=1\r\nhello\r\n6 ; a=\"b\"\r\n world\r\n0\r\nx-trailer: yes\r\nx-more: 2\r\n\r\n";
    let many = |n: usize| {
        let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n");
        for i in 1..n {
            head.push_str(&format!("x-h{i}: v\r\n"));
        }
        head + "\r\n"
    };
    let big = |n: usize| {
        format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(n)
        )
    };
    let cl = |v: &str| format!("HTTP/1.1 200 OK\r\ncontent-length: {v}\r\n\r\nhello");
    vec![
        case("content-length", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", OK),
        case("content-length in 1-byte reads", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", OK).sizes(&[1]),
        case("content-length 0", "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", OK),
        case("chunked, extensions, trailers", chunked, OK),
        case("chunked in 1-byte reads", chunked, OK).sizes(&[1]),
        case("chunked in 3-byte reads", chunked, OK).sizes(&[3, 1, 7]),
        case("chunked, upper-case hex", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", OK),
        case("content-length and chunked", "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", OK)
            .differs("RFC 9112 §6.1: the content-length is removed and the connection not reused"),
        case("two differing content-lengths", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!", NO),
        case("two equal content-lengths", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello", OK),
        case("content-length list, equal", cl("5, 5"), OK),
        case("content-length list, differing", cl("5, 6"), NO),
        case("content-length +5", cl("+5"), NO),
        case("content-length 0x5", cl("0x5"), NO),
        case("content-length -1", cl("-1"), NO),
        case("content-length empty", cl(""), NO),
        case("content-length 5 5", cl("5 5"), NO),
        case("content-length past u64", cl("18446744073709551616"), NO),
        case("content-length u64::MAX", cl("18446744073709551615"), NO),
        case("chunk size overflow", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10000000000000000\r\nx\r\n0\r\n\r\n", FAILS),
        // 0x1_0000_0000_0000_0005 wraps to 5: only an overflow check refuses it.
        case("chunk size that wraps to 5", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", FAILS),
        case("chunk without its CRLF", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", FAILS),
        case("chunk ended by X LF", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloX\n0\r\n\r\n", FAILS),
        case("chunk ended by CR X", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\rX0\r\n\r\n", FAILS),
        case("last chunk ended by CR X", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\rX", FAILS),
        case("chunk size line ended by LF", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", FAILS),
        case("chunk size not hex", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", FAILS),
        case("chunk extension with LF", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n", FAILS),
        case("chunk extensions past 16 KiB", format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(17000)), FAILS),
        case("trailers past 16 KiB", format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: {}\r\n\r\n", "t".repeat(17000)), FAILS),
        case("trailer without colon", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nnocolon\r\n\r\n", FAILS),
        case("final chunk then close", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n", FAILS).closed(),
        case("transfer-encoding gzip, chunked", "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", OK),
        case("transfer-encoding chunked, gzip: read to close", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\nraw bytes", ONCE).closed(),
        case("transfer-encoding in HTTP/1.0", "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", NO),
        case("obs-fold header", "HTTP/1.1 200 OK\r\nx-a: b\r\n c\r\ncontent-length: 0\r\n\r\n", NO),
        case("header without colon", "HTTP/1.1 200 OK\r\nx-a\r\ncontent-length: 0\r\n\r\n", NO),
        case("space before colon", "HTTP/1.1 200 OK\r\ncontent-length : 5\r\n\r\nhello", NO),
        case("NUL in a header value", "HTTP/1.1 200 OK\r\nx-a: b\0c\r\ncontent-length: 0\r\n\r\n", NO),
        case("CR in a header value", "HTTP/1.1 200 OK\r\nx-a: b\rc\r\ncontent-length: 0\r\n\r\n", NO),
        case("DEL in a header value", "HTTP/1.1 200 OK\r\nx-a: b\x7fc\r\ncontent-length: 0\r\n\r\n", NO),
        case("obs-text in a header value", b"HTTP/1.1 200 OK\r\nx-a: caf\xc3\xa9\r\ncontent-length: 0\r\n\r\n", OK),
        case("100 headers", many(100), OK),
        case("101 headers", many(101), NO),
        case("head of 60 KiB", big(60 * 1024), OK),
        case("head of 100 KiB", big(100 * 1024), OK).differs("heads are limited to 64 KiB, not ~408 KiB"),
        case("head of 500 KiB", big(500 * 1024), NO),
        case("1xx heads before the final one",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", OK),
        case("1xx heads in 1-byte reads",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", OK).sizes(&[1]),
        case("only a 1xx head", "HTTP/1.1 100 Continue\r\n\r\n", NO).closed(),
        case("101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n", ONCE)
            .differs("an upgrade nobody asked for (the proxy strips Upgrade) is an error"),
        case("204 with a content-length and a body", "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello", ONCE),
        case("304 with a content-length", "HTTP/1.1 304 Not Modified\r\ncontent-length: 100\r\n\r\n", OK),
        case("HEAD response with a content-length", "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", OK).method(Method::HEAD),
        case("HTTP/1.0", "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", ONCE),
        case("HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok", OK),
        case("connection: close", "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", ONCE),
        case("connection: close then keep-alive", "HTTP/1.1 200 OK\r\nconnection: close\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok", ONCE),
        case("connection: Keep-Alive, Close", "HTTP/1.1 200 OK\r\nconnection: Keep-Alive, Close\r\ncontent-length: 2\r\n\r\nok", ONCE),
        case("close-delimited body", "HTTP/1.1 200 OK\r\n\r\nhello world", ONCE).closed(),
        case("close-delimited body in 2-byte reads", "HTTP/1.1 200 OK\r\n\r\nhello world", ONCE).closed().sizes(&[2]),
        case("bytes after the body", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA", ONCE),
        case("a second response after the body", format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok{}", String::from_utf8_lossy(SECOND)), ONCE),
        case("bytes after the last chunk", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEXTRA", ONCE),
        case("closed after a complete response", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", ONCE).closed(),
        case("closed mid-head", "HTTP/1.1 200 OK\r\ncontent-le", NO).closed(),
        case("closed before anything", "", NO).closed(),
        case("closed mid-body", "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello", FAILS).closed(),
        case("closed mid-chunk", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", FAILS).closed(),
        case("body never finished", "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello", Expect::Body(End::Hung, false)),
        case("head never finished", "HTTP/1.1 200 OK\r\n", NO),
        case("LF-only line ends", "HTTP/1.1 200 OK\ncontent-length: 2\n\nok", OK),
        case("LF-only line ends in 1-byte reads", "HTTP/1.1 200 OK\ncontent-length: 2\n\nok", OK).sizes(&[1]),
        case("leading empty lines", "\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", OK),
        case("custom reason phrase", "HTTP/1.1 200 Fine Thanks\r\ncontent-length: 0\r\n\r\n", OK),
        case("empty reason phrase", "HTTP/1.1 404 \r\ncontent-length: 0\r\n\r\n", OK),
        case("status 099", "HTTP/1.1 099 Low\r\ncontent-length: 0\r\n\r\n", NO),
        case("status 999", "HTTP/1.1 999 High\r\ncontent-length: 0\r\n\r\n", OK),
        case("status of two digits", "HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n", NO),
        case("HTTP/2 status line", "HTTP/2 200 OK\r\ncontent-length: 0\r\n\r\n", NO),
        case("HTTP/1.2", "HTTP/1.2 200 OK\r\ncontent-length: 0\r\n\r\n", NO),
        case("repeated headers keep their order",
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nx-b: 2\r\nset-cookie: c=3\r\nContent-Length: 0\r\n\r\n", OK),
        case("HTTP/0.9 body", "hello", NO).closed(),
        case("CR then NUL in 1-byte reads", "HTTP/1.1 200 Reason\r\0", NO).sizes(&[1]),
    ]
}

#[tokio::test(start_paused = true)]
async fn every_response_in_the_table_is_read_as_hyper_reads_it() {
    let mut failed = Vec::new();
    for case in cases() {
        let run = |client| {
            let (bytes, method, sizes) =
                (case.bytes.clone(), case.method.clone(), case.sizes.clone());
            async move {
                match client {
                    "hyper" => hyper_outcome(bytes, case.close, method, sizes).await,
                    _ => our_outcome(bytes, case.close, method, sizes).await,
                }
            }
        };
        let (hyper, ours) = (run("hyper").await, run("ours").await);
        let seen = match &hyper {
            Outcome::Rejected | Outcome::Hung => Expect::Rejected,
            Outcome::Response { end, reusable, .. } => Expect::Body(*end, *reusable),
        };
        let wanted = match case.differs {
            Some(_) => deliberate(hyper.clone(), &case.bytes),
            None => hyper.clone(),
        };
        let differs_as_said = case.differs.is_none() || wanted != hyper;
        if seen != case.expect || ours != wanted || !differs_as_said {
            failed.push(format!(
                "{}:\n  expected {:?}\n  hyper {hyper:?}\n  ours  {ours:?}",
                case.name, case.expect
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Makes the same request again, for each client.
type MakeRequest<'a> = Box<dyn Fn() -> Request<Body> + 'a>;

/// A request as the replica reads it: method, path, headers (sorted), decoded body.
type Read = (String, String, Vec<(String, Vec<u8>)>, Vec<u8>);

/// The bytes `client` writes for `request`, read until it goes quiet, then answered.
async fn written_by(client: &str, request: Request<Body>) -> Vec<u8> {
    let (io, mut server) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let quiet = Duration::from_millis(100);
        while let Ok(Ok(n @ 1..)) = tokio::time::timeout(quiet, server.read(&mut buf)).await {
            all.extend_from_slice(&buf[..n]);
        }
        let _ = server
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await;
        (all, server)
    });
    if client == "hyper" {
        let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(io))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let _ = tokio::time::timeout(WAIT, send.send_request(request)).await;
        conn.abort();
    } else {
        let mut wire = Wire::new(io);
        let _ = tokio::time::timeout(WAIT, wire.exchange_request(request)).await;
    }
    server.await.unwrap().0
}

/// Parses a request as a replica would; panics on anything malformed or left over.
fn replica_reads(bytes: &[u8]) -> Read {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(len) = request.parse(bytes).unwrap() else {
        panic!(
            "incomplete request head: {:?}",
            String::from_utf8_lossy(bytes)
        );
    };
    let mut headers: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    headers.sort();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut rest = &bytes[len..];
    let mut body = Vec::new();
    if value("transfer-encoding").is_some() {
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
            rest = &rest[line + 2..];
            if size == 0 {
                assert_eq!(rest, b"\r\n", "no trailers, then the end");
                rest = &[];
                break;
            }
            body.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n");
            rest = &rest[size + 2..];
        }
    } else if let Some(length) = value("content-length") {
        let n: usize = std::str::from_utf8(&length).unwrap().parse().unwrap();
        body.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    assert!(rest.is_empty(), "bytes after the request: {rest:?}");
    let method = request.method.unwrap().to_owned();
    (method, request.path.unwrap().to_owned(), headers, body)
}

#[tokio::test(start_paused = true)]
async fn requests_are_written_as_hyper_writes_them() {
    let full = |b: &[u8]| crate::body::full(Bytes::copy_from_slice(b));
    let large = vec![b'x'; 100 * 1024];
    let mid = vec![b'y'; 20 * 1024];
    let half = vec![b'z'; 10_000];
    let build = |method: &str, headers: &[(&str, &str)], body: Body| {
        let mut request = Request::builder().method(method).uri("/a/b?c=d&e");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body).unwrap()
    };
    let many: Vec<(String, String)> = (0..50)
        .map(|i| (format!("x-h{i}"), format!("v{i}")))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let host = [("host", "replica:8080")];
    let cases: Vec<(&str, MakeRequest<'_>)> = vec![
        ("GET with a Host", Box::new(|| build("GET", &host, empty()))),
        ("HEAD", Box::new(|| build("HEAD", &host, empty()))),
        ("DELETE", Box::new(|| build("DELETE", &[], empty()))),
        (
            "GET with 50 headers",
            Box::new(|| build("GET", &many, empty())),
        ),
        (
            "POST of known length",
            Box::new(|| build("POST", &host, full(b"hello"))),
        ),
        (
            "POST, empty, content-length 0",
            Box::new(|| build("POST", &[("content-length", "0")], empty())),
        ),
        (
            "POST streamed with a content-length",
            Box::new(|| {
                build(
                    "POST",
                    &[("content-length", "11")],
                    frames(&[b"hello", b" world"]),
                )
            }),
        ),
        (
            "POST streamed, chunked",
            Box::new(|| build("POST", &host, frames(&[b"hello", b"", b" world", b"!"]))),
        ),
        (
            "POST of 100 KiB",
            Box::new(|| build("POST", &host, full(&large))),
        ),
        (
            "POST streamed with a 20 KiB frame",
            Box::new(|| build("POST", &host, frames(&[b"a", &mid, b"b"]))),
        ),
        (
            "PUT of two 10 000-byte frames, content-length",
            Box::new(|| {
                build(
                    "PUT",
                    &[("content-length", "20000")],
                    frames(&[&half, &half]),
                )
            }),
        ),
        (
            "POST whose body ends with a large frame",
            Box::new(|| build("POST", &[], frames(&[&mid]))),
        ),
    ];
    for (name, request) in &cases {
        let hyper = replica_reads(&written_by("hyper", request()).await);
        let ours = replica_reads(&written_by("ours", request()).await);
        assert_eq!(ours, hyper, "{name}");
    }
    // Deliberately different: hyper sends a GET body of unknown length as no body at all (and
    // drops it); ours sends it chunked.
    let request = || build("GET", &host, frames(&[b"query"]));
    let hyper = replica_reads(&written_by("hyper", request()).await);
    let ours = replica_reads(&written_by("ours", request()).await);
    assert_eq!(hyper.3, b"", "hyper drops it");
    assert_eq!(ours.3, b"query", "ours sends it");
    assert!(
        ours.2
            .contains(&("transfer-encoding".into(), b"chunked".to_vec()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_small_request_leaves_in_one_write() {
    /// Counts the writes that reach it.
    struct Counting(DuplexStream, usize);
    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }
    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.1 += 1;
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.1 += 1;
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            Pin::new(&mut self.0).poll_write(cx, &all)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }
    for body in [empty(), crate::body::full("a small body")] {
        let (io, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(
            server,
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
            false,
        ));
        let mut wire = Wire::new(Counting(io, 0));
        let request = Request::post("/").header("host", "h").body(body).unwrap();
        wire.exchange_request(request).await.unwrap();
        assert_eq!(wire.io().1, 1, "head and body in one write");
    }
}
