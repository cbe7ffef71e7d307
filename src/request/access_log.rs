//! The last step of every routed request: count its outcome (`/health` counters, Prometheus series,
//! latency histograms) and write its access-log line, sampled unless the store counted the call. What
//! the outcome means (status, reason, side) is `request/outcome.rs`; the line's format is `log.rs`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::Side;
use crate::limits::log_sampler::status_class;
use crate::log::AccessLine;
use crate::request::context::Request;
use crate::request::outcome::Outcome;

/// Count `outcome` and log it.
pub fn record<S>(req: &Request<'_, S>, outcome: &Outcome) {
    let app = req.app;
    let status = outcome.status();
    app.obs.stats.count_status(status);
    if let Outcome::Refused { error, .. } = outcome {
        if error.side() == Side::Upstream {
            app.obs
                .stats
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    let claims = req.claims();
    app.obs
        .metrics
        .request(status, claims.map(|c| c.prv.as_str()));
    if let Some(reason) = outcome.rejection() {
        app.obs.metrics.rejection(reason);
    }
    if let Some(kind) = outcome.upstream_failure() {
        app.obs.metrics.upstream_error(kind);
    }
    let elapsed = req.started.elapsed();
    app.obs.metrics.latency.observe(elapsed);
    if let Some(t) = req.ttfb {
        app.obs.metrics.ttfb.observe(t);
    }
    if !app.obs.log.access {
        return;
    }
    // Counted calls are always logged; everything else (404s, health checks, preflights, refusals) is
    // sampled per client and reason, so a flood cannot grow the log without bound (the metrics still
    // count every request, and held-back lines are reported by count).
    let reason = outcome.reason();
    let class = reason.unwrap_or(status_class(status));
    if !req.reserved
        && !app
            .obs
            .log_sampler
            .admit(req.ip, class, app.clock.unix_now())
    {
        return;
    }
    app.obs.log.access_line(&AccessLine {
        rid: &req.rid,
        ip: req.ip,
        method: req.head.method(),
        target: req.head.target(),
        status,
        bytes: outcome.bytes(),
        dur_ms: ms(elapsed),
        ttfb_ms: req.ttfb.map(ms),
        tenant: req.who.tenant(),
        jti: claims.map(|c| c.jti.as_str()),
        provider: claims.map(|c| c.prv.as_str()),
        uid: claims.and_then(|c| c.uid.as_deref()),
        reason,
        in_tok: req.charged.map(|s| s.input),
        out_tok: req.charged.map(|s| s.output),
        cost: req.charged.map(|s| s.cost),
    });
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
