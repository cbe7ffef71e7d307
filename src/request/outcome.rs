//! How a request ended, as one value: answered, refused (with the typed error, which knows its side),
//! or cut short (with a typed cause). The outcome alone decides the status counted, the reason logged
//! and labelled in metrics, which side failed, and whether the connection carries another request; the
//! rule every answer uses to announce `connection: close` is [`closes`], here too. Pure: recording the
//! outcome is `request/access_log.rs`.

use crate::error::{Error, Side};
use crate::http::framing::RequestFraming;

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

/// Why an answer stopped partway (or was never written) after the relay committed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The client closed or reset the connection, or a write to it failed.
    ClientClosed,
    /// The provider closed before its body's framing said it ended.
    UpstreamEof,
    /// The provider's chunked framing was malformed.
    UpstreamBadChunked,
    /// The provider sent nothing for `upstream.read_idle_timeout`.
    UpstreamIdleTimeout,
    /// Reading from the provider failed (reset, TLS error).
    UpstreamReadError,
}

impl Cut {
    /// The reason logged and counted.
    pub fn reason(self) -> &'static str {
        match self {
            Cut::ClientClosed => "client_closed",
            Cut::UpstreamEof => "upstream_eof",
            Cut::UpstreamBadChunked => "upstream_bad_chunked",
            Cut::UpstreamIdleTimeout => "upstream_idle_timeout",
            Cut::UpstreamReadError => "upstream_read_error",
        }
    }

    pub fn side(self) -> Side {
        match self {
            Cut::ClientClosed => Side::Client,
            _ => Side::Upstream,
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An answer written whole: the relay's own, or the provider's relayed. `close`: the answer
    /// announced `connection: close` (see [`closes`]), or could not be written.
    Answered {
        status: u16,
        bytes: u64,
        close: bool,
    },
    /// The relay's error answer, in place of any other. `close` as for `Answered`.
    Refused {
        error: Error,
        bytes: u64,
        close: bool,
    },
    /// An answer stopped partway, or never written because the client left (status 499 when no head
    /// was sent).
    Cut { status: u16, bytes: u64, cut: Cut },
}

/// The status a client that left before any answer is logged with (nginx's convention).
pub const CLIENT_CLOSED_STATUS: u16 = 499;

impl Outcome {
    /// The client left while the relay was still waiting for something to answer.
    pub fn client_gone() -> Outcome {
        Outcome::Cut {
            status: CLIENT_CLOSED_STATUS,
            bytes: 0,
            cut: Cut::ClientClosed,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Outcome::Answered { status, .. } | Outcome::Cut { status, .. } => *status,
            Outcome::Refused { error, .. } => error.status(),
        }
    }

    /// Body bytes sent to the client.
    pub fn bytes(&self) -> u64 {
        match self {
            Outcome::Answered { bytes, .. }
            | Outcome::Refused { bytes, .. }
            | Outcome::Cut { bytes, .. } => *bytes,
        }
    }

    /// Who failed, if anything did.
    pub fn side(&self) -> Option<Side> {
        match self {
            Outcome::Answered { .. } => None,
            Outcome::Refused { error, .. } => Some(error.side()),
            Outcome::Cut { cut, .. } => Some(cut.side()),
        }
    }

    /// The reason logged and counted; `None` for an answer that went as framed.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Outcome::Answered { .. } => None,
            Outcome::Refused { error, .. } => Some(error.reason()),
            Outcome::Cut { cut, .. } => Some(cut.reason()),
        }
    }

    /// The refusal counted in `relayapi_rejections_total`, if this was one.
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            Outcome::Refused { error, .. } => Some(error.reason()),
            _ => None,
        }
    }

    /// The kind counted in `relayapi_upstream_errors_total`: every failure on the provider's side.
    pub fn upstream_failure(&self) -> Option<&'static str> {
        match self.side() {
            Some(Side::Upstream) => self.reason(),
            _ => None,
        }
    }

    /// The keep-alive decision: the connection carries another request only after an answer that was
    /// written whole without announcing `connection: close`.
    pub fn next(&self) -> Next {
        match self {
            Outcome::Answered { close: false, .. } | Outcome::Refused { close: false, .. } => {
                Next::KeepAlive
            }
            _ => Next::Close,
        }
    }
}

/// Whether an answer must announce `connection: close` (RFC 9112 §9.3, §9.6): the client's framing
/// asked for it (`Connection: close`, HTTP/1.0 without keep-alive), the request's input is no longer in
/// sync (`in_sync`: its body was read or dropped whole, or it had none), or the answer's body ends only
/// when the connection does (`delimited`: it has a length or chunked framing the client can read).
pub fn closes(framing: &RequestFraming, in_sync: bool, delimited: bool) -> bool {
    !framing.keep_alive || !in_sync || !delimited
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::framing::BodyFraming;

    fn framing(keep_alive: bool) -> RequestFraming {
        RequestFraming {
            body: BodyFraming::None,
            keep_alive,
            expect_continue: false,
        }
    }

    #[test]
    fn only_whole_answers_without_close_keep_the_connection() {
        let answered = |close| Outcome::Answered {
            status: 200,
            bytes: 2,
            close,
        };
        assert_eq!(answered(false).next(), Next::KeepAlive);
        assert_eq!(answered(true).next(), Next::Close);
        let refused = |close| Outcome::Refused {
            error: Error::InvalidToken,
            bytes: 10,
            close,
        };
        assert_eq!(refused(false).next(), Next::KeepAlive);
        assert_eq!(refused(true).next(), Next::Close);
        assert_eq!(Outcome::client_gone().next(), Next::Close);
        let cut = Outcome::Cut {
            status: 200,
            bytes: 5,
            cut: Cut::UpstreamEof,
        };
        assert_eq!(cut.next(), Next::Close);
    }

    #[test]
    fn side_decides_status_reason_and_metrics_label() {
        let up = Outcome::Refused {
            error: Error::UpstreamTimeout,
            bytes: 0,
            close: false,
        };
        assert_eq!(
            (up.status(), up.side(), up.reason(), up.upstream_failure()),
            (
                504,
                Some(Side::Upstream),
                Some("upstream_timeout"),
                Some("upstream_timeout")
            )
        );
        assert_eq!(up.rejection(), Some("upstream_timeout"));
        let client = Outcome::Refused {
            error: Error::InvalidToken,
            bytes: 0,
            close: false,
        };
        assert_eq!(client.side(), Some(Side::Client));
        assert_eq!(client.upstream_failure(), None);
        let relay = Outcome::Refused {
            error: Error::StoreUnavailable,
            bytes: 0,
            close: false,
        };
        assert_eq!((relay.status(), relay.side()), (503, Some(Side::Relay)));
        let cut = Outcome::Cut {
            status: 200,
            bytes: 9,
            cut: Cut::UpstreamIdleTimeout,
        };
        assert_eq!(cut.upstream_failure(), Some("upstream_idle_timeout"));
        assert_eq!(cut.rejection(), None);
        assert_eq!(Outcome::client_gone().status(), 499);
        assert_eq!(Outcome::client_gone().upstream_failure(), None);
        let ok = Outcome::Answered {
            status: 200,
            bytes: 1,
            close: false,
        };
        assert_eq!((ok.side(), ok.reason()), (None, None));
    }

    #[test]
    fn any_one_cause_closes() {
        assert!(!closes(&framing(true), true, true));
        assert!(closes(&framing(false), true, true));
        assert!(closes(&framing(true), false, true));
        assert!(closes(&framing(true), true, false));
    }
}
