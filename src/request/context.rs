//! The one value a request carries down the pipeline (`route` → `admit` → `relay` → `exchange`, or an
//! endpoint): the relay's state, the client connection, the parsed head and its framing, and the facts
//! gathered on the way for the metrics and the access log, borrowed from the head where possible. Built
//! once per request by `request/route.rs`; nothing here does I/O.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::app::App;
use crate::http::framing::RequestFraming;
use crate::http::head::{RequestHead, ResponseHead};
use crate::meter::extract::Metered;
use crate::request::client::Client;
use crate::store::Spend;
use crate::token::format::Claims;

/// Who a request was proven to come from, once it is: the access log's tenant, token and user, and the
/// provider label of the metrics (bounded only once the token is authentic).
#[derive(Debug, Clone, Default)]
pub enum Who {
    /// Nothing proven (yet).
    #[default]
    Nobody,
    /// A relay token proven authentic.
    Token(Arc<Claims>),
    /// A tenant's signed admin request.
    Admin(String),
}

impl Who {
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Who::Nobody => None,
            Who::Token(c) => Some(&c.tid),
            Who::Admin(t) => Some(t),
        }
    }

    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Who::Token(c) => Some(c),
            _ => None,
        }
    }
}

/// One request on its way through the relay.
pub struct Request<'a, S> {
    pub app: &'a App,
    pub client: &'a mut Client<S>,
    pub head: &'a RequestHead,
    /// The connection's response head, lent to each exchange to parse the provider's head into, so
    /// that its buffers are reused from one request to the next (`request/exchange.rs`).
    pub answer: &'a mut ResponseHead,
    pub framing: RequestFraming,
    /// The `x-request-id` of the answer and the `rid` of the log line.
    pub rid: crate::metrics::RequestId,
    pub started: Instant,
    /// The client's address (`X-Forwarded-For` believed only from trusted proxies).
    pub ip: IpAddr,
    /// The `Origin` field as sent, if any.
    pub origin: Option<&'a [u8]>,
    /// An `Origin` field was sent but is not a well-formed origin: refused like a disallowed one.
    pub bad_origin: bool,
    pub who: Who,
    /// Time to the provider's response head.
    pub ttfb: Option<Duration>,
    /// Set once the store counted the call: such requests are always logged (see
    /// `limits/log_sampler.rs`).
    pub reserved: bool,
    /// What the provider reported the answer used, once it ended (`budget/tap.rs`).
    pub metered: Option<Metered>,
    /// What the call was charged (`budget/settle.rs`), for the access log.
    pub charged: Option<Spend>,
}

impl<S> Request<'_, S> {
    /// The token's claims, once proven.
    pub fn claims(&self) -> Option<&Claims> {
        self.who.claims()
    }
}
