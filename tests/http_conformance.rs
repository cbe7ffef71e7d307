//! A raw-bytes conformance corpus for the relay's HTTP/1.1 parsing: head parsing (`http/head.rs`), the
//! framing gate (`http/framing.rs`) and chunked decoding (`http/chunked.rs`), run together the way the
//! connection loop runs them. Each case is the exact bytes a peer sends and the exact outcome for
//! every message in them, so a pipelined request hidden in a body ("smuggled") shows up as a message
//! of its own. Valid messages, request-smuggling shapes (CL.TE, TE.CL, TE.TE obfuscations) and
//! malformed heads are all here; the expected outcomes follow RFC 9112 / RFC 9110 with the strict
//! choices documented in the source files.

use relayapi::http::chunked::{ChunkError, ChunkedDecoder, ChunkedLimits};
use relayapi::http::framing::{
    request_framing, response_framing, BodyFraming, FramingError, ResponseBody,
};
use relayapi::http::head::{parse_request_head, parse_response_head, HeadError, HeadLimits};

const HEAD_LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 2048,
    max_headers: 16,
    max_uri_bytes: 256,
};

const CHUNK_LIMITS: ChunkedLimits = ChunkedLimits {
    max_chunk_ext_bytes: 64,
    max_trailer_bytes: 256,
    max_body_bytes: 1024,
};

/// What the relay makes of one message in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// A request accepted: method, target, decoded body, and whether it asked for 100 Continue.
    Request {
        method: String,
        target: String,
        body: Vec<u8>,
        expect_continue: bool,
        keep_alive: bool,
    },
    Head(HeadError),
    Framing(FramingError),
    Chunk(ChunkError),
    /// The stream ends inside a message.
    Incomplete,
}

/// Runs the stream through the pure parsing functions until it ends or a message fails, as the
/// connection loop does (a failure closes the connection, so nothing after it is read).
fn run(raw: &[u8]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let step = match parse_request_head(rest, &HEAD_LIMITS) {
            Err(e) => Step::Head(e),
            Ok(None) => Step::Incomplete,
            Ok(Some(head)) => match request_framing(&head) {
                Err(e) => Step::Framing(e),
                Ok(framing) => {
                    let after_head = &rest[head.head_len..];
                    let body = match framing.body {
                        BodyFraming::None => Ok(Some((Vec::new(), 0))),
                        BodyFraming::Length(n) => Ok(usize::try_from(n)
                            .ok()
                            .filter(|&n| n <= after_head.len())
                            .map(|n| (after_head[..n].to_vec(), n))),
                        BodyFraming::Chunked => {
                            let mut decoder = ChunkedDecoder::new(CHUNK_LIMITS);
                            let mut out = Vec::new();
                            decoder
                                .decode(after_head, Some(&mut out))
                                .map(|n| decoder.is_done().then_some((out, n)))
                        }
                    };
                    match body {
                        Err(e) => Step::Chunk(e),
                        Ok(None) => Step::Incomplete,
                        Ok(Some((body, used))) => {
                            rest = &after_head[used..];
                            steps.push(Step::Request {
                                method: head.method().to_owned(),
                                target: head.target().to_owned(),
                                body,
                                expect_continue: framing.expect_continue,
                                keep_alive: framing.keep_alive,
                            });
                            continue;
                        }
                    }
                }
            },
        };
        steps.push(step);
        break;
    }
    steps
}

fn req(method: &str, target: &str, body: &[u8]) -> Step {
    Step::Request {
        method: method.into(),
        target: target.into(),
        body: body.to_vec(),
        expect_continue: false,
        keep_alive: true,
    }
}

fn malformed(why: &'static str) -> Step {
    Step::Head(HeadError::Malformed(why))
}

fn bad(why: &'static str) -> Step {
    Step::Framing(FramingError::Bad(why))
}

fn chunk(why: &'static str) -> Step {
    Step::Chunk(ChunkError::Malformed(why))
}

/// The status the relay answers a failed step with (mirrors `error.rs`), so the table can also be
/// read as "what does the client see".
fn status(step: &Step) -> u16 {
    match step {
        Step::Request { .. } => 200,
        Step::Head(HeadError::TooLarge | HeadError::TooManyHeaders) => 431,
        Step::Head(HeadError::UriTooLong) => 414,
        Step::Head(HeadError::BadVersion) => 505,
        Step::Head(HeadError::Malformed(_)) => 400,
        Step::Framing(FramingError::Bad(_)) => 400,
        Step::Framing(FramingError::UnsupportedExpect) => 417,
        Step::Framing(FramingError::NotImplemented(_)) => 501,
        Step::Chunk(ChunkError::Malformed(_)) => 400,
        Step::Chunk(ChunkError::TooLarge) => 413,
        Step::Incomplete => 408,
    }
}

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    expected: Vec<Step>,
}

fn case(name: &'static str, raw: impl AsRef<[u8]>, expected: Vec<Step>) -> Case {
    Case {
        name,
        raw: raw.as_ref().to_vec(),
        expected,
    }
}

const POST: &str = "POST /v1/chat/completions HTTP/1.1\r\nHost: relay.example\r\n";

fn corpus() -> Vec<Case> {
    let p = POST;
    let post = |body: &[u8]| req("POST", "/v1/chat/completions", body);
    vec![
        // --- valid requests ---------------------------------------------------------------
        case("simple GET", "GET /v1/models HTTP/1.1\r\nHost: relay.example\r\n\r\n", vec![req("GET", "/v1/models", b"")]),
        case("POST with Content-Length", format!("{p}Content-Length: 5\r\n\r\nhello"), vec![post(b"hello")]),
        case("POST with Content-Length: 0", format!("{p}Content-Length: 0\r\n\r\n"), vec![post(b"")]),
        case("POST without a length has no body", format!("{p}\r\n"), vec![post(b"")]),
        case(
            "chunked body",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            vec![post(b"hello world")],
        ),
        case(
            "chunked with extensions and trailers",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d e\"\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"),
            vec![post(b"hello")],
        ),
        case("Transfer-Encoding with HTAB OWS", format!("{p}Transfer-Encoding:\tChunked\t\r\n\r\n0\r\n\r\n"), vec![post(b"")]),
        case(
            "pipelined requests are framed one by one",
            format!("{p}Content-Length: 2\r\n\r\nhiGET /v1/models HTTP/1.1\r\nHost: relay.example\r\n\r\n"),
            vec![post(b"hi"), req("GET", "/v1/models", b"")],
        ),
        case("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: relay.example\r\n\r\n", vec![req("OPTIONS", "*", b"")]),
        case(
            "HTTP/1.0 without Host",
            "GET / HTTP/1.0\r\n\r\n",
            vec![Step::Request {
                method: "GET".into(),
                target: "/".into(),
                body: vec![],
                expect_continue: false,
                keep_alive: false,
            }],
        ),
        case("one leading CRLF is tolerated", format!("\r\n{p}\r\n"), vec![post(b"")]),
        case(
            "Expect: 100-continue",
            format!("{p}Content-Length: 2\r\nExpect: 100-continue\r\n\r\nhi"),
            vec![Step::Request {
                method: "POST".into(),
                target: "/v1/chat/completions".into(),
                body: b"hi".to_vec(),
                expect_continue: true,
                keep_alive: true,
            }],
        ),
        case(
            "Connection: close",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            vec![Step::Request {
                method: "GET".into(),
                target: "/".into(),
                body: vec![],
                expect_continue: false,
                keep_alive: false,
            }],
        ),
        case("incomplete head", "GET / HTTP/1.1\r\nHost: h\r\n", vec![Step::Incomplete]),
        case("incomplete Content-Length body", format!("{p}Content-Length: 5\r\n\r\nhel"), vec![Step::Incomplete]),
        case("incomplete chunked body", format!("{p}Transfer-Encoding: chunked\r\n\r\n5\r\nhel"), vec![Step::Incomplete]),
        // --- smuggling: Content-Length / Transfer-Encoding ------------------------------------
        case(
            "CL.TE",
            format!("{p}Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED"),
            vec![bad("both Content-Length and Transfer-Encoding")],
        ),
        case(
            "TE.CL",
            format!("{p}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
            vec![bad("both Content-Length and Transfer-Encoding")],
        ),
        case(
            "TE: chunked, identity",
            format!("{p}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
            vec![bad("chunked is not the final transfer coding")],
        ),
        case("TE: identity", format!("{p}Transfer-Encoding: identity\r\n\r\n"), vec![bad("chunked is not the final transfer coding")]),
        case("TE: xchunked", format!("{p}Transfer-Encoding: xchunked\r\n\r\n"), vec![bad("chunked is not the final transfer coding")]),
        case("TE: quoted chunked", format!("{p}Transfer-Encoding: \"chunked\"\r\n\r\n"), vec![bad("chunked is not the final transfer coding")]),
        case(
            "TE.TE: second TE line with junk",
            format!("{p}Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n0\r\n\r\n"),
            vec![bad("chunked is not the final transfer coding")],
        ),
        case(
            "TE: chunked twice on two lines",
            format!("{p}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            vec![bad("chunked applied more than once")],
        ),
        case("TE: chunked, chunked", format!("{p}Transfer-Encoding: chunked, chunked\r\n\r\n"), vec![bad("chunked applied more than once")]),
        case(
            "TE: gzip, chunked",
            format!("{p}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            vec![Step::Framing(FramingError::NotImplemented("transfer codings other than chunked"))],
        ),
        case("TE: empty list element", format!("{p}Transfer-Encoding: , chunked\r\n\r\n"), vec![bad("empty element in Transfer-Encoding")]),
        case(
            "TE on HTTP/1.0",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            vec![bad("Transfer-Encoding in an HTTP/1.0 request")],
        ),
        case(
            "space before colon in Transfer-Encoding",
            format!("{p}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
            vec![malformed("invalid field name")],
        ),
        case(
            "obs-fold in Transfer-Encoding",
            format!("{p}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
            vec![malformed("line starts with whitespace (obs-fold)")],
        ),
        case(
            "whitespace before the first field",
            "POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: h\r\n\r\n",
            vec![malformed("line starts with whitespace (obs-fold)")],
        ),
        case(
            "vertical tab in Transfer-Encoding",
            format!("{p}Transfer-Encoding: \x0bchunked\r\n\r\n"),
            vec![malformed("invalid field value")],
        ),
        case(
            "underscore name is just another field: the chunk is then the next request",
            format!("{p}Transfer_Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            vec![post(b""), malformed("invalid request-line")],
        ),
        case("CL: +5", format!("{p}Content-Length: +5\r\n\r\nhello"), vec![bad("invalid Content-Length")]),
        case("CL: -1", format!("{p}Content-Length: -1\r\n\r\n"), vec![bad("invalid Content-Length")]),
        case("CL: 0x5", format!("{p}Content-Length: 0x5\r\n\r\nhello"), vec![bad("invalid Content-Length")]),
        case("CL: 5, 5", format!("{p}Content-Length: 5, 5\r\n\r\nhello"), vec![bad("invalid Content-Length")]),
        case(
            "two equal Content-Length lines",
            format!("{p}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
            vec![bad("more than one Content-Length")],
        ),
        case(
            "two different Content-Length lines",
            format!("{p}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
            vec![bad("more than one Content-Length")],
        ),
        case("CL with a space inside", format!("{p}Content-Length: 1 0\r\n\r\n"), vec![bad("invalid Content-Length")]),
        case("CL overflow", format!("{p}Content-Length: 99999999999999999999999\r\n\r\n"), vec![bad("invalid Content-Length")]),
        case("CL empty", format!("{p}Content-Length:\r\n\r\n"), vec![bad("invalid Content-Length")]),
        // --- chunked body framing -----------------------------------------------------------
        case(
            "chunk size 0x5",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
            vec![chunk("invalid byte after chunk size")],
        ),
        case("chunk size -1", format!("{p}Transfer-Encoding: chunked\r\n\r\n-1\r\n"), vec![chunk("chunk size is not hex digits")]),
        case("chunk size +5", format!("{p}Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n"), vec![chunk("chunk size is not hex digits")]),
        case(
            "chunk size with leading space",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n"),
            vec![chunk("chunk size is not hex digits")],
        ),
        case(
            "chunk size overflow",
            format!("{p}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"),
            vec![chunk("chunk size overflows")],
        ),
        case(
            "missing CRLF after chunk data",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n"),
            vec![chunk("missing CRLF after chunk data")],
        ),
        case(
            "chunk data longer than its size",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"),
            vec![chunk("missing CRLF after chunk data")],
        ),
        case(
            "LF-only chunk lines",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n"),
            vec![chunk("bare LF in chunked body")],
        ),
        case(
            "obs-fold in a trailer",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n"),
            vec![chunk("trailer line starts with whitespace (obs-fold)")],
        ),
        case(
            "chunked body over the limit",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n401\r\n"),
            vec![Step::Chunk(ChunkError::TooLarge)],
        ),
        case(
            "chunked body followed by a pipelined request",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n"),
            vec![post(b"hi"), req("GET", "/x", b"")],
        ),
        // --- line discipline ----------------------------------------------------------------
        case("LF-only head", "GET / HTTP/1.1\nHost: h\n\n", vec![malformed("bare LF line ending")]),
        case("bare CR in a field value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", vec![malformed("bare CR")]),
        case("bare CR as a line ending", "GET / HTTP/1.1\rHost: h\r\r", vec![malformed("bare CR")]),
        case("NUL in a field value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", vec![malformed("invalid field value")]),
        case("DEL in a field value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n", vec![malformed("invalid field value")]),
        case("non-token field name", "GET / HTTP/1.1\r\nHost: h\r\nX(y): a\r\n\r\n", vec![malformed("invalid field name")]),
        case("non-ASCII field name", "GET / HTTP/1.1\r\nHost: h\r\nX\u{e9}: a\r\n\r\n", vec![malformed("invalid field name")]),
        case(
            "three leading CRLFs",
            "\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            vec![malformed("too many empty lines before the request-line")],
        ),
        // --- request-line -------------------------------------------------------------------
        case(
            "absolute-form target",
            "GET http://relay.example/v1/models HTTP/1.1\r\nHost: relay.example\r\n\r\n",
            vec![malformed("request-target must be origin-form (start with /)")],
        ),
        case(
            "authority-form target",
            "CONNECT relay.example:443 HTTP/1.1\r\nHost: relay.example\r\n\r\n",
            vec![malformed("request-target must be origin-form (start with /)")],
        ),
        case(
            "asterisk-form for GET",
            "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
            vec![malformed("asterisk-form request-target is only valid for OPTIONS")],
        ),
        case("fragment in target", "GET /a?b#c HTTP/1.1\r\nHost: h\r\n\r\n", vec![malformed("fragment in request-target")]),
        case(
            "raw non-ASCII in target",
            "GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n",
            vec![malformed("invalid character in request-target")],
        ),
        case("space inside target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", vec![malformed("invalid HTTP version")]),
        case("GET  / (double space)", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", vec![malformed("invalid request-line")]),
        case("tab as separator", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", vec![malformed("invalid request-line")]),
        case("method not a token", "GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", vec![malformed("invalid request-line")]),
        case("trailing space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", vec![malformed("invalid line ending")]),
        case("lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", vec![malformed("invalid HTTP version")]),
        case("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", vec![Step::Head(HeadError::BadVersion)]),
        case("HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", vec![Step::Head(HeadError::BadVersion)]),
        case("HTTP/2 prior-knowledge preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", vec![Step::Head(HeadError::BadVersion)]),
        case("HTTP/0.9 style request", "GET /\r\n\r\n", vec![malformed("invalid request-line")]),
        // --- Host, Expect, Connection -------------------------------------------------------
        case("missing Host", "GET / HTTP/1.1\r\n\r\n", vec![bad("missing Host")]),
        case("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", vec![bad("more than one Host")]),
        case("Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", vec![bad("invalid Host")]),
        case("Host with userinfo", "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", vec![bad("invalid Host")]),
        case("Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", vec![bad("invalid Host")]),
        case("Host with a bad port", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", vec![bad("invalid Host")]),
        case(
            "Expect other than 100-continue",
            format!("{p}Content-Length: 2\r\nExpect: 200-ok\r\n\r\nhi"),
            vec![Step::Framing(FramingError::UnsupportedExpect)],
        ),
        case("Connection option not a token", format!("{p}Connection: a b\r\n\r\n"), vec![bad("invalid Connection option")]),
        // --- limits -------------------------------------------------------------------------
        case(
            "head over the limit, still incomplete",
            format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(2100)),
            vec![Step::Head(HeadError::TooLarge)],
        ),
        case(
            "too many fields",
            format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(17)),
            vec![Step::Head(HeadError::TooManyHeaders)],
        ),
        case(
            "target over the limit",
            format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(256)),
            vec![Step::Head(HeadError::UriTooLong)],
        ),
    ]
}

#[test]
fn request_corpus() {
    let mut failures = Vec::new();
    let cases = corpus();
    for c in &cases {
        let got = run(&c.raw);
        if got != c.expected {
            failures.push(format!(
                "{}:\n   got {got:?}\n  want {:?}",
                c.name, c.expected
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Every case ends in the same outcome when its bytes arrive in two reads, split anywhere: the head
/// parser is re-run on the growing buffer and never accepts a prefix or fails one that the full
/// message would pass.
#[test]
fn request_corpus_is_split_invariant() {
    for c in corpus() {
        for cut in 0..c.raw.len() {
            let prefix = run(&c.raw[..cut]);
            // A prefix yields the full run's steps up to some point, then at most an Incomplete;
            // or, when the full run fails, it may already fail the same way.
            let Some((last, done)) = prefix.split_last() else {
                assert_eq!(cut, 0, "{}: empty outcome for a non-empty prefix", c.name);
                continue;
            };
            assert!(
                c.expected.starts_with(done),
                "{} cut at {cut}: {prefix:?}",
                c.name
            );
            let at = done.len();
            let ok = *last == Step::Incomplete
                || c.expected.get(at) == Some(last)
                || (matches!(c.expected.get(at), Some(Step::Head(_)))
                    && matches!(last, Step::Head(_)));
            assert!(
                ok,
                "{} cut at {cut}: {prefix:?} vs {:?}",
                c.name, c.expected
            );
        }
    }
}

#[test]
fn corpus_statuses() {
    // The client-visible answer for a few families, so a change in mapping is a visible diff.
    let by_name = |name: &str| {
        let c = corpus().into_iter().find(|c| c.name == name).unwrap();
        status(c.expected.last().unwrap())
    };
    assert_eq!(by_name("CL.TE"), 400);
    assert_eq!(by_name("TE: gzip, chunked"), 501);
    assert_eq!(by_name("HTTP/2.0"), 505);
    assert_eq!(by_name("target over the limit"), 414);
    assert_eq!(by_name("too many fields"), 431);
    assert_eq!(by_name("chunked body over the limit"), 413);
    assert_eq!(by_name("Expect other than 100-continue"), 417);
    assert_eq!(by_name("simple GET"), 200);
}

/// What the relay makes of the provider's answer: the body framing and whether the connection can
/// go back to the pool, plus, for a chunked body, how many bytes the body took.
#[derive(Debug, PartialEq, Eq)]
enum Upstream {
    Framed {
        body: ResponseBody,
        keep_alive: bool,
        body_bytes: Option<usize>,
    },
    Head(HeadError),
    Framing(FramingError),
    Chunk(ChunkError),
}

fn run_response(raw: &[u8], method: &str) -> Upstream {
    let head = match parse_response_head(raw, &HEAD_LIMITS) {
        Ok(Some(head)) => head,
        Ok(None) => panic!("incomplete response in corpus"),
        Err(e) => return Upstream::Head(e),
    };
    let (body, keep_alive) = match response_framing(&head, method) {
        Ok(x) => x,
        Err(e) => return Upstream::Framing(e),
    };
    let body_bytes = match body {
        ResponseBody::Chunked => {
            // The response leg scans without copying: bytes pass through as they are.
            let mut decoder = ChunkedDecoder::new(ChunkedLimits::with_max_body(u64::MAX));
            match decoder.decode(&raw[head.head_len..], None) {
                Ok(n) if decoder.is_done() => Some(n),
                Ok(_) => None,
                Err(e) => return Upstream::Chunk(e),
            }
        }
        _ => None,
    };
    Upstream::Framed {
        body,
        keep_alive,
        body_bytes,
    }
}

#[test]
fn response_corpus() {
    use ResponseBody as B;
    let framed = |body, keep_alive, body_bytes| Upstream::Framed {
        body,
        keep_alive,
        body_bytes,
    };
    let cases: Vec<(&str, &[u8], &str, Upstream)> = vec![
        ("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", "POST", framed(B::Length(2), true, None)),
        (
            "chunked SSE, next response left alone",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata:1\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",
            "POST",
            framed(B::Chunked, true, Some(16)),
        ),
        ("until close", b"HTTP/1.1 200 OK\r\n\r\nstream", "POST", framed(B::UntilClose, false, None)),
        ("HEAD ignores Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD", framed(B::None, true, None)),
        ("204", b"HTTP/1.1 204 No Content\r\n\r\n", "DELETE", framed(B::None, true, None)),
        ("204 with Content-Length is not reused", b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", "DELETE", framed(B::None, false, None)),
        ("100 Continue", b"HTTP/1.1 100 Continue\r\n\r\n", "POST", framed(B::None, true, None)),
        ("HTTP/1.0 closes", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", "GET", framed(B::Length(2), false, None)),
        (
            "CL and TE",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST",
            Upstream::Framing(FramingError::Bad("both Content-Length and Transfer-Encoding")),
        ),
        (
            "TE on HTTP/1.0",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST",
            Upstream::Framing(FramingError::Bad("Transfer-Encoding in an HTTP/1.0 response")),
        ),
        ("two Content-Lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", "GET", Upstream::Framing(FramingError::Bad("more than one Content-Length"))),
        ("bare LF", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", "GET", Upstream::Head(HeadError::Malformed("bare LF line ending"))),
        ("no SP after status", b"HTTP/1.1 200\r\n\r\n", "GET", Upstream::Head(HeadError::Malformed("status-line lacks SP after the status code"))),
        ("status 600", b"HTTP/1.1 600 X\r\n\r\n", "GET", Upstream::Head(HeadError::Malformed("status code outside 100-599"))),
        ("HTTP/2 status-line", b"HTTP/2 200 OK\r\n\r\n", "GET", Upstream::Head(HeadError::BadVersion)),
        ("obs-fold", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "GET", Upstream::Head(HeadError::Malformed("line starts with whitespace (obs-fold)"))),
        (
            "bad chunk in response",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "POST",
            Upstream::Chunk(ChunkError::Malformed("chunk size is not hex digits")),
        ),
    ];
    for (name, raw, method, expected) in cases {
        assert_eq!(run_response(raw, method), expected, "{name}");
    }
}
