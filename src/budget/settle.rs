//! What a call is charged once its answer is over (`docs/budgets.md` §3, the settlement table), as a
//! pure function of the reservation, what the meter read and how the exchange ended. The rule is
//! never to undercharge: whatever the relay cannot prove the provider did not bill is charged in full.

use crate::meter::extract::{MeterStatus, Metered};
use crate::meter::price::Price;
use crate::store::Spend;

/// How the exchange with the provider ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The answer was passed on whole, with this status.
    Answered(u16),
    /// The answer was cut (the client left, or the provider failed mid-answer), with the status of
    /// its head if one came.
    Cut(Option<u16>),
    /// The request may have reached the provider but no answer came (timeout, broken connection).
    Unanswered,
}

/// The usage a meter read, priced (`price` absent: cost zero), as a spend of one call.
pub fn used(metered: &Metered, price: Option<Price>) -> Spend {
    let u = &metered.usage;
    Spend {
        calls: 1,
        input: u.input,
        output: u.output,
        cached_input: u.cached_input,
        // A cost beyond u64 cannot come from a real answer; it is charged as the most there is.
        cost: price.map_or(0, |p| p.cost(u).unwrap_or(u64::MAX)),
    }
}

/// The member-wise larger of two spends.
fn max(a: Spend, b: Spend) -> Spend {
    Spend {
        calls: a.calls.max(b.calls),
        input: a.input.max(b.input),
        output: a.output.max(b.output),
        cached_input: a.cached_input.max(b.cached_input),
        cost: a.cost.max(b.cost),
    }
}

/// What the call is charged: `reserved` is the reservation (zero for a token without a budget),
/// `metered` what the meter read (`None`: no answer body was metered).
pub fn charge(
    reserved: Spend,
    metered: Option<&Metered>,
    price: Option<Price>,
    ending: Ending,
) -> Spend {
    let read = metered.map(|m| used(m, price)).unwrap_or(Spend {
        calls: 1,
        ..Spend::default()
    });
    let complete = metered.is_some_and(|m| m.status == MeterStatus::Complete);
    // OpenAI-compatible streams end with `data: [DONE]` after their usage chunk; the official SDKs
    // close the connection as soon as they read it, often before the provider's last framing bytes.
    let ended = complete && metered.is_some_and(|m| m.done_marker);
    match ending {
        // A complete answer reports what it used, and so does a stream whose end marker came.
        Ending::Answered(_) if complete => read,
        Ending::Cut(_) if ended => read,
        // An error answer without usage: providers do not bill refused calls.
        Ending::Answered(status) if status >= 400 => Spend {
            calls: 1,
            ..Spend::default()
        },
        // Everything else may have been billed in full: no usage, a truncated, malformed or oversized
        // report, a client that left, a provider that failed mid-answer or never answered.
        _ => max(reserved, read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::usage::Usage;

    fn metered(status: MeterStatus, input: u64, output: u64) -> Metered {
        Metered {
            usage: Usage {
                input,
                output,
                ..Usage::default()
            },
            status,
            malformed_events: 0,
            oversized: 0,
            done_marker: false,
        }
    }

    const RESERVED: Spend = Spend {
        calls: 1,
        input: 500,
        output: 100,
        cached_input: 0,
        cost: 70,
    };

    #[test]
    fn the_settlement_table() {
        let price = Price {
            input: 100_000,
            output: 200_000,
            cached_input: 0,
            cache_write: 0,
        };
        let complete = metered(MeterStatus::Complete, 40, 10);
        let c = charge(
            RESERVED,
            Some(&complete),
            Some(price),
            Ending::Answered(200),
        );
        assert_eq!((c.calls, c.input, c.output, c.cost), (1, 40, 10, 6));
        // Reported usage beyond the reservation is charged (overshoot).
        let big = metered(MeterStatus::Complete, 900, 10);
        assert_eq!(
            charge(RESERVED, Some(&big), None, Ending::Answered(200)).input,
            900
        );
        for status in [
            MeterStatus::NoUsage,
            MeterStatus::Truncated,
            MeterStatus::Malformed,
            MeterStatus::Unmetered,
        ] {
            let m = metered(status, 3, 1);
            assert_eq!(
                charge(RESERVED, Some(&m), Some(price), Ending::Answered(200)),
                RESERVED
            );
            assert_eq!(
                charge(RESERVED, Some(&m), Some(price), Ending::Answered(429)),
                Spend {
                    calls: 1,
                    ..Spend::default()
                }
            );
        }
        // A client that left, a provider that broke off or never answered: the reservation.
        for ending in [
            Ending::Cut(Some(200)),
            Ending::Cut(None),
            Ending::Unanswered,
        ] {
            assert_eq!(
                charge(RESERVED, Some(&complete), Some(price), ending),
                RESERVED
            );
            assert_eq!(charge(RESERVED, None, Some(price), ending), RESERVED);
        }
        // A client that leaves after `[DONE]` had the whole answer.
        let done = Metered {
            done_marker: true,
            ..complete
        };
        let c = charge(RESERVED, Some(&done), Some(price), Ending::Cut(Some(200)));
        assert_eq!((c.input, c.output), (40, 10));
        // Without a reservation (no budget), what was read is what is recorded.
        let partial = metered(MeterStatus::Truncated, 5, 2);
        let c = charge(
            Spend::default(),
            Some(&partial),
            None,
            Ending::Cut(Some(200)),
        );
        assert_eq!((c.calls, c.input, c.output), (1, 5, 2));
    }
}
