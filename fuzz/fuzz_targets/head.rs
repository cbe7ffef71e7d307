//! Fuzzes the request and response head parsers and the framing gate behind them. Beyond "never
//! panics", it checks the contract the connection loop relies on: an accepted head does not depend
//! on the bytes after it, no prefix of it is accepted or refused, and what comes out is within the
//! limits and free of the bytes the parser promises to refuse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relayapi::framing::{request_framing, response_framing};
use relayapi::head::{parse_request_head, parse_response_head, HeadLimits, Header};

fuzz_target!(|data: &[u8]| {
    // The first three bytes pick the limits (small, so the limit paths are reached) and a split
    // point; the rest is the stream.
    let [a, b, c, rest @ ..] = data else {
        return;
    };
    let limits = HeadLimits {
        max_head_bytes: 16 + usize::from(*a) * 8,
        max_headers: 1 + usize::from(*b % 32),
        max_uri_bytes: 1 + usize::from(*c),
    };

    match parse_request_head(rest, &limits) {
        Ok(Some(head)) => {
            assert!(head.head_len <= rest.len() && head.head_len <= limits.max_head_bytes);
            assert!(head.headers.len() <= limits.max_headers);
            assert!(head.target.len() <= limits.max_uri_bytes);
            assert!(head.target == "*" || head.target.starts_with('/'));
            assert!(!head
                .target
                .bytes()
                .any(|b| b <= b' ' || b == b'#' || b >= 0x7f));
            check_headers(&head.headers);
            // Nothing after the head changes it.
            let again = parse_request_head(&rest[..head.head_len], &limits)
                .unwrap()
                .unwrap();
            assert_eq!(again, head);
            // A prefix of an accepted head is never accepted nor refused (two probes, since
            // every prefix would make each run quadratic).
            for cut in [usize::from(*c) % head.head_len, head.head_len - 1] {
                assert_eq!(
                    parse_request_head(&rest[..cut], &limits),
                    Ok(None),
                    "prefix {cut}"
                );
            }
            let _ = request_framing(&head);
        }
        Ok(None) => assert!(rest.len() < limits.max_head_bytes),
        Err(_) => {}
    }

    match parse_response_head(rest, &limits) {
        Ok(Some(head)) => {
            assert!(head.head_len <= rest.len() && head.head_len <= limits.max_head_bytes);
            assert!((100..=599).contains(&head.status));
            check_headers(&head.headers);
            let again = parse_response_head(&rest[..head.head_len], &limits)
                .unwrap()
                .unwrap();
            assert_eq!(again, head);
            assert_eq!(
                parse_response_head(&rest[..head.head_len - 1], &limits),
                Ok(None)
            );
            let _ = response_framing(&head, "GET");
            let _ = response_framing(&head, "HEAD");
        }
        Ok(None) => assert!(rest.len() < limits.max_head_bytes),
        Err(_) => {}
    }
});

fn check_headers(headers: &[Header]) {
    for h in headers {
        assert!(!h.name.is_empty());
        assert!(!h
            .name
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b <= b' ' || b == b':'));
        assert!(!h
            .value
            .iter()
            .any(|&b| b == b'\r' || b == b'\n' || b == 0 || b == 0x7f));
        assert!(!h.value.first().is_some_and(|&b| b == b' ' || b == b'\t'));
        assert!(!h.value.last().is_some_and(|&b| b == b' ' || b == b'\t'));
    }
}
