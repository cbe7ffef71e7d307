//! The spend counters of `/metrics` (`docs/budgets.md` §5): tokens and cost by provider and model, and
//! the budget refusals and overshoots. The `model` label takes only the models of the price table and
//! `other`, and the provider label only registry names, so series stay bounded whatever clients send.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::store::Spend;

/// Spend counters.
#[derive(Debug, Default)]
pub struct SpendMetrics {
    /// (provider, model label, [input, output, cached input, cost]), sorted: a short list scanned in
    /// place, so counting a call of a series already seen allocates nothing.
    used: Mutex<Vec<(String, String, [u64; 4])>>,
    pub refusals: AtomicU64,
    pub overshoots: AtomicU64,
}

impl SpendMetrics {
    /// Count what one call used. `model` must already be a bounded label (a priced model or `other`).
    pub fn add(&self, provider: &str, model: &str, s: &Spend) {
        let mut m = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let find = |m: &[(String, String, [u64; 4])]| {
            m.iter().position(|(p, md, _)| p == provider && md == model)
        };
        let at = match find(&m) {
            Some(at) => at,
            None => {
                m.push((provider.to_string(), model.to_string(), [0; 4]));
                m.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
                find(&m).expect("just added")
            }
        };
        for (slot, v) in m[at]
            .2
            .iter_mut()
            .zip([s.input, s.output, s.cached_input, s.cost])
        {
            *slot = slot.saturating_add(v);
        }
    }

    /// Append the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let m = self.used.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str(
            "# HELP relayapi_tokens_total Tokens providers reported, by provider, model (priced models, else other) and kind.\n\
             # TYPE relayapi_tokens_total counter\n",
        );
        for (provider, model, v) in m.iter() {
            for (kind, n) in [("input", v[0]), ("output", v[1]), ("cached_input", v[2])] {
                let _ = writeln!(
                    out,
                    "relayapi_tokens_total{{provider=\"{provider}\",model=\"{}\",kind=\"{kind}\"}} {n}",
                    escape(model)
                );
            }
        }
        out.push_str(
            "# HELP relayapi_cost_total Cost of the reported usage at the price table's prices, in micro-units.\n\
             # TYPE relayapi_cost_total counter\n",
        );
        for (provider, model, v) in m.iter() {
            let _ = writeln!(
                out,
                "relayapi_cost_total{{provider=\"{provider}\",model=\"{}\"}} {}",
                escape(model),
                v[3]
            );
        }
        let _ = writeln!(
            out,
            "# HELP relayapi_budget_refusals_total Calls refused because a spend budget could not pay for them.\n\
             # TYPE relayapi_budget_refusals_total counter\nrelayapi_budget_refusals_total {}\n\
             # HELP relayapi_budget_overshoot_total Calls whose reported usage exceeded their reservation.\n\
             # TYPE relayapi_budget_overshoot_total counter\nrelayapi_budget_overshoot_total {}",
            self.refusals.load(Ordering::Relaxed),
            self.overshoots.load(Ordering::Relaxed)
        );
    }
}

/// A label value as the exposition format wants it: `\`, `"` and line feeds escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sums_per_provider_and_model() {
        let m = SpendMetrics::default();
        let s = Spend {
            calls: 1,
            input: 10,
            output: 5,
            cached_input: 2,
            cost: 7,
        };
        m.add("openai", "gpt-4o", &s);
        m.add("openai", "gpt-4o", &s);
        m.add("anthropic", "other", &s);
        m.overshoots.fetch_add(1, Ordering::Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "relayapi_tokens_total{provider=\"openai\",model=\"gpt-4o\",kind=\"input\"} 20"
        ));
        assert!(out.contains("relayapi_cost_total{provider=\"anthropic\",model=\"other\"} 7"));
        assert!(out.contains("relayapi_budget_overshoot_total 1"));
        assert!(out.contains("relayapi_budget_refusals_total 0"));
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
