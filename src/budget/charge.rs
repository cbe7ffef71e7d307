//! Spend limits on the request path (`docs/budgets.md` §3): before forwarding, size the call's worst
//! case, reserve it on every line that limits the token (lowering the output ceiling to what the
//! tightest line can still pay for, or refusing the call), and prepare the body (the ceiling written,
//! usage asked of a stream); after the answer, settle the reservation to what the provider reported.
//! The store makes each step atomic (`store/spend.rs`); this file only decides the amounts.

use serde_json::json;
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::app::App;
use crate::budget::lines::{lines_for, token_line, window_end};
use crate::budget::parts::media_parts;
use crate::budget::settle::{self, Ending};
use crate::budget::size::{self, amount, fit_output, worst_input};
use crate::budget::tap::Metering;
use crate::error::Error;
use crate::meter::extract::Metered;
use crate::meter::include_usage::{include_usage, IncludeUsage, RewriteError};
use crate::meter::price::Price;
use crate::meter::usage::UsageFamily;
use crate::request::policy;
use crate::store::{Spend, SpendLine, SpendReservation};
use crate::token::format::Claims;
use crate::upstream::provider::Provider;

/// Reservation attempts before a call is refused: each failed attempt means another call took room
/// meanwhile, and the next is sized from the amounts that attempt read.
const ATTEMPTS: usize = 16;

/// Does this token carry a spend limit (its own budget or its user's quotas)?
pub fn budgeted(claims: &Claims) -> bool {
    claims.bud.is_some() || claims.uq.is_some()
}

/// Does any of the token's limits count money?
fn counts_money(claims: &Claims) -> bool {
    claims.bud.is_some_and(|b| b.cost.is_some())
        || claims
            .uq
            .as_ref()
            .is_some_and(|q| q.iter().any(|q| q.cost.is_some()))
}

/// What a call is charged to and at what price, from before it is forwarded until it is settled.
#[derive(Debug, Clone)]
pub struct Charge {
    pub lines: Vec<SpendLine>,
    /// What was reserved (zero for a token without a budget).
    pub reserved: Spend,
    pub price: Option<Price>,
    /// The `model` label of the metrics: the model when the price table has it, else `other` (a
    /// constant, not allocated per call).
    pub model_label: Cow<'static, str>,
    pub metering: Option<Metering>,
    /// The reservation has been settled or released.
    settled: bool,
}

/// Reserve a budgeted call and prepare its body: returns the body to forward and the charge. The
/// body has been through the token's policy; `rest` is the provider-relative path to forward.
pub async fn reserve(
    app: &App,
    claims: &Claims,
    provider: &Provider,
    rest: &str,
    body: Vec<u8>,
) -> Result<(Vec<u8>, Charge), Error> {
    let cfg = &app.cfg.budgets;
    let family = provider.family;
    let asked = size::asked(family, rest, &body)?;
    let price = asked
        .model
        .as_deref()
        .and_then(|m| cfg.price(&provider.name, m));
    if counts_money(claims) && price.is_none() {
        return Err(Error::ModelNotPriced);
    }
    let parts = if body.is_empty() {
        0
    } else {
        media_parts(&body).map_err(|_| Error::InvalidBody("not valid JSON"))?
    };
    // Endpoints that generate nothing and report no usage (model listings, token counts, moderation)
    // are not billed by tokens: they count as a call only.
    let billed = asked.generates || size::usage_family(family, rest).is_some();
    let input = if billed {
        worst_input(cfg, body.len(), parts)
    } else {
        0
    };
    let want = if asked.generates {
        asked.output.unwrap_or(cfg.default_max_output)
    } else {
        0
    };
    // A call asking for fewer output tokens than `min_output` is worth forwarding at its own size.
    let least = want.min(cfg.min_output);
    let now = app.clock.unix_now();
    let lines = lines_for(claims, now);
    let mut out = want;
    let mut granted = None;
    for _ in 0..ATTEMPTS {
        let amt = amount(price, input, out).ok_or(Error::BudgetExhausted(None))?;
        match app
            .store
            .spend_reserve(&claims.tid, &lines, &amt, now)
            .await
        {
            Ok(SpendReservation::Granted) => {
                granted = Some(amt);
                break;
            }
            Ok(SpendReservation::NoRoom(used)) => {
                match fit_output(&lines, &used, input, want, price) {
                    Ok(fits) if fits >= least && fits <= out => out = fits,
                    // More room than this attempt assumed (a settlement gave some back): retry
                    // with what was asked.
                    Ok(fits) if fits > out => out = fits.min(want),
                    Ok(_) => return Err(refused(app, claims, lines.len() - 1, now)),
                    Err(i) => return Err(refused(app, claims, i, now)),
                }
            }
            Err(e) => {
                app.obs
                    .log
                    .warn("store unavailable", json!({"error": e.to_string()}));
                return Err(Error::StoreUnavailable);
            }
        }
    }
    let Some(reserved) = granted else {
        return Err(refused(app, claims, 0, now));
    };
    let mut body = body;
    if asked.generates {
        body = policy::cap_output(family, rest, body, out)?;
    }
    let (body, metering) = metering_for(family, rest, body)?;
    Ok((
        body,
        Charge {
            lines,
            reserved,
            price,
            model_label: model_label(app, provider, asked.model.as_deref()),
            metering,
            settled: false,
        },
    ))
}

/// The charge of a call whose token has no budget, admitted at `now` (Unix seconds): usage is
/// recorded on the token's line, priced when the body named a priced model. Its body is forwarded as
/// it is.
pub fn unbudgeted(
    app: &App,
    claims: &Claims,
    provider: &Provider,
    rest: &str,
    model: Option<&str>,
    now: u64,
) -> Charge {
    Charge {
        // The token's line only: a user's quota lines are for budgeted calls.
        lines: vec![token_line(claims, now)],
        reserved: Spend::default(),
        price: model.and_then(|m| app.cfg.budgets.price(&provider.name, m)),
        model_label: model_label(app, provider, model),
        metering: size::usage_family(provider.family, rest).map(|family| Metering {
            family,
            drop_usage_chunk: false,
        }),
        settled: false,
    }
}

fn model_label(app: &App, provider: &Provider, model: Option<&str>) -> Cow<'static, str> {
    match model {
        Some(m) if app.cfg.budgets.is_priced(&provider.name, m) => Cow::Owned(m.to_string()),
        _ => Cow::Borrowed("other"),
    }
}

/// Which usage report the answer carries, and for a streamed OpenAI-compatible chat request, the body
/// that asks for one.
fn metering_for(
    family: crate::upstream::provider::ApiFamily,
    rest: &str,
    body: Vec<u8>,
) -> Result<(Vec<u8>, Option<Metering>), Error> {
    let Some(usage) = size::usage_family(family, rest) else {
        return Ok((body, None));
    };
    let chat = usage == UsageFamily::OpenAiChat && rest.ends_with("/chat/completions");
    if !chat || body.is_empty() {
        return Ok((
            body,
            Some(Metering {
                family: usage,
                drop_usage_chunk: false,
            }),
        ));
    }
    let (body, drop_usage_chunk) = match include_usage(&body) {
        Ok(IncludeUsage::NotStreamed | IncludeUsage::AlreadyAsked) => (body, false),
        Ok(IncludeUsage::Rewritten(b)) => (b, true),
        Err(RewriteError::StreamOptions) => {
            return Err(Error::InvalidMember(
                "stream_options",
                "an object (or null) whose include_usage is a boolean (or null)",
            ))
        }
        Err(RewriteError::Body(_)) => return Err(Error::InvalidBody("not valid JSON")),
    };
    Ok((
        body,
        Some(Metering {
            family: usage,
            drop_usage_chunk,
        }),
    ))
}

/// A refusal for want of budget: counted, and with the time until the exhausted window resets when
/// it is a daily or monthly quota (`line` indexes the token's lines: 0 is its own budget).
fn refused(app: &App, claims: &Claims, line: usize, now: u64) -> Error {
    app.obs
        .metrics
        .spend
        .refusals
        .fetch_add(1, Ordering::Relaxed);
    let window = line
        .checked_sub(1)
        .and_then(|i| claims.uq.as_ref()?.get(i))
        .map(|q| q.w);
    let wait = window
        .and_then(|w| window_end(w, now))
        .map(|end| Duration::from_secs(end.saturating_sub(now).max(1)));
    Error::BudgetExhausted(wait)
}

impl Charge {
    /// Whether a reservation is held (a budgeted call): only then does the order of settlement and
    /// the client's next call matter.
    pub fn holds_reservation(&self) -> bool {
        !self.settled && self.reserved != Spend::default()
    }

    /// Give the reservation back: the call provably never reached the provider.
    pub async fn release(&mut self, app: &App, tenant: &str) {
        if self.settled {
            return;
        }
        self.settled = true;
        if self.reserved == Spend::default() {
            return;
        }
        // Boxed, here and below: a store operation's future (a Redis script call) would otherwise sit
        // in every connection's future for the connection's whole life.
        if let Err(e) =
            Box::pin(
                app.store
                    .spend_settle(tenant, &self.lines, &self.reserved, &Spend::default()),
            )
            .await
        {
            app.obs
                .log
                .warn("budget release failed", json!({"error": e.to_string()}));
        }
    }

    /// Settle the reservation to what the call is charged (`budget/settle.rs`), count it in the
    /// metrics and log an overshoot. Returns the charge, for the access log.
    pub async fn settle(
        &mut self,
        app: &App,
        claims: &Claims,
        provider: &str,
        metered: Option<&Metered>,
        ending: Ending,
    ) -> Option<Spend> {
        if self.settled {
            return None;
        }
        self.settled = true;
        let charged = settle::charge(self.reserved, metered, self.price, ending);
        let r = self.reserved;
        let budgeted = r != Spend::default();
        if budgeted && (charged.tokens() > r.tokens() || charged.cost > r.cost) {
            app.obs
                .metrics
                .spend
                .overshoots
                .fetch_add(1, Ordering::Relaxed);
            app.obs.log.warn(
                "budget overshoot",
                json!({"jti": claims.jti, "reserved_tokens": r.tokens(), "reserved_cost": r.cost,
                       "charged_tokens": charged.tokens(), "charged_cost": charged.cost}),
            );
        }
        app.obs
            .metrics
            .spend
            .add(provider, &self.model_label, &charged);
        // A call without a budget that reported nothing has nothing to record.
        let nothing = Spend {
            calls: 1,
            ..Spend::default()
        };
        if !budgeted && charged == nothing {
            return Some(charged);
        }
        // Usage without a budget is a record, not a limit: it goes to the store in batches.
        if !budgeted {
            if let Some(line) = self.lines.first() {
                if app.usage.add(&claims.tid, line, &charged) {
                    Box::pin(app.usage.flush(&app.store, &app.obs.log)).await;
                }
            }
            return Some(charged);
        }
        if let Err(e) = Box::pin(
            app.store
                .spend_settle(&claims.tid, &self.lines, &r, &charged),
        )
        .await
        {
            app.obs.log.warn(
                "budget settlement failed",
                json!({"jti": claims.jti, "error": e.to_string()}),
            );
        }
        Some(charged)
    }
}
