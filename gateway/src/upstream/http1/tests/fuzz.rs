//! Generated response streams, valid and broken (heads, framings, then byte flips, truncation
//! and random read sizes), fed to hyper's client and to ours: no panic, and the same outcome
//! modulo [`deliberate`]. `STICKY_CODEC_FUZZ_CASES` (else `PROPTEST_CASES`) sets the number of
//! cases: 256 by default (~0.2 s), 20 000 in `.ci/run` (~10 s), more by hand.

use proptest::prelude::*;

use super::*;

/// A body framing to generate.
#[derive(Debug, Clone)]
enum Framing {
    Length,
    /// A content-length this far off the body's length.
    WrongLength(i8),
    /// A content-length value, not necessarily a valid one.
    LengthValue(&'static str),
    Chunked {
        splits: Vec<usize>,
        extension: bool,
        trailers: bool,
    },
    ChunkedAndLength,
    NotChunked,
    None,
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        3 => Just(Framing::Length),
        1 => any::<i8>().prop_map(Framing::WrongLength),
        1 => prop::sample::select(vec!["+5", "0x5", "-1", "", "5, 5", "5,6", " 5 ", "99999999999999999999", "5\t"])
            .prop_map(Framing::LengthValue),
        3 => (prop::collection::vec(1usize..20, 0..5), any::<bool>(), any::<bool>())
            .prop_map(|(splits, extension, trailers)| Framing::Chunked { splits, extension, trailers }),
        1 => Just(Framing::ChunkedAndLength),
        1 => Just(Framing::NotChunked),
        1 => Just(Framing::None),
    ]
}

/// The generated parts of one case.
#[derive(Debug, Clone)]
struct Parts {
    version: &'static str,
    status: u16,
    informational: bool,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    framing: Framing,
    tail: &'static str,
    flips: Vec<(usize, u8)>,
    truncate: Option<usize>,
    close: bool,
    head: bool,
    sizes: Vec<usize>,
}

fn parts() -> impl Strategy<Value = Parts> {
    let headers = prop::collection::vec(
        prop::sample::select(vec![
            ("connection", "close"),
            ("connection", "keep-alive"),
            ("connection", "Upgrade, close"),
            ("x-a", "b"),
            ("x-sp", " padded\t"),
            ("Set-Cookie", "a=1"),
            ("x-obs", "caf\u{e9}"),
            ("content-length", "2"),
            ("transfer-encoding", "chunked"),
        ]),
        0..4,
    );
    (
        (
            prop::sample::select(vec!["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
            prop::sample::select(vec![
                200u16, 200, 200, 201, 204, 304, 404, 500, 100, 101, 99, 999,
            ]),
            any::<bool>(),
            headers,
            prop::collection::vec(any::<u8>(), 0..48),
            framing(),
        ),
        (
            prop::sample::select(vec![
                "",
                "",
                "",
                "",
                "EXTRA",
                "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond",
            ]),
            prop_oneof![
                3 => Just(Vec::new()),
                1 => prop::collection::vec((any::<usize>(), any::<u8>()), 1..3),
            ],
            prop::option::weighted(0.15, any::<usize>()),
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.15),
            prop::collection::vec(1usize..12, 0..4),
        ),
    )
        .prop_map(
            |(
                (version, status, informational, headers, body, framing),
                (tail, flips, truncate, close, head, sizes),
            )| Parts {
                version,
                status,
                informational,
                headers,
                body,
                framing,
                tail,
                flips,
                truncate,
                close,
                head,
                sizes,
            },
        )
}

/// The bytes of `parts`.
fn bytes(parts: &Parts) -> Vec<u8> {
    let mut out = Vec::new();
    if parts.informational {
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    out.extend_from_slice(format!("{} {:03} Reason\r\n", parts.version, parts.status).as_bytes());
    for (name, value) in &parts.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let body = &parts.body;
    let length = |out: &mut Vec<u8>, n: String| {
        out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes())
    };
    let mut encoded = body.clone();
    match &parts.framing {
        Framing::Length => length(&mut out, body.len().to_string()),
        Framing::WrongLength(off) => length(
            &mut out,
            (body.len() as i64 + i64::from(*off)).max(0).to_string(),
        ),
        Framing::LengthValue(v) => length(&mut out, (*v).to_owned()),
        Framing::Chunked {
            splits,
            extension,
            trailers,
        } => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            encoded = chunked(body, splits, *extension, *trailers);
        }
        Framing::ChunkedAndLength => {
            length(&mut out, body.len().to_string());
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            encoded = chunked(body, &[], false, false);
        }
        Framing::NotChunked => out.extend_from_slice(b"transfer-encoding: gzip\r\n"),
        Framing::None => {}
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&encoded);
    out.extend_from_slice(parts.tail.as_bytes());
    for &(at, byte) in &parts.flips {
        if !out.is_empty() {
            let at = at % out.len();
            out[at] = byte;
        }
    }
    if let Some(at) = parts.truncate {
        out.truncate(at % (out.len() + 1));
    }
    out
}

fn chunked(body: &[u8], splits: &[usize], extension: bool, trailers: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = splits.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if extension {
            out.extend_from_slice(b";name=value");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    if trailers {
        out.extend_from_slice(b"x-checksum: 42\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn cases() -> u32 {
    ["STICKY_CODEC_FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|var| std::env::var(var).ok()?.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn generated_responses_are_read_as_hyper_reads_them(parts in parts()) {
        let stream = bytes(&parts);
        let method = if parts.head { Method::HEAD } else { Method::GET };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let (hyper, ours) = runtime.block_on(async {
            let hyper = hyper_outcome(stream.clone(), parts.close, method.clone(), parts.sizes.clone()).await;
            let ours = our_outcome(stream.clone(), parts.close, method, parts.sizes.clone()).await;
            (hyper, ours)
        });
        prop_assert_eq!(ours, deliberate(hyper, &stream), "{:?}", String::from_utf8_lossy(&stream));
    }
}
