//! Loading the tenants opted in to `relayapi-sdk` 1.0.0 tokens (`token.compat_v0` in `config.json`) at
//! start: each original `.rai` read, the config's limits turned into a [`Policy`], and one warning per
//! tenant saying that its tokens have no integrity protection. Verifying is `token/compat_v0/`'s. The
//! list is read once: a change to it or to an original `.rai` takes a restart.

use serde_json::json;

use crate::config::Config;
use crate::log::Logger;
use crate::token::compat_v0::rai;
use crate::token::compat_v0::{CompatTenant, CompatTenants, Policy};
use crate::token::format::{os_rng, Rate};

/// The opted-in tenants, or the operator's error (file and field).
pub fn load(cfg: &Config, log: &Logger) -> Result<CompatTenants, String> {
    let mut tenants = Vec::new();
    for t in &cfg.token.compat_v0 {
        let original = rai::load(&t.rai).map_err(|e| e.to_string())?;
        log.warn(
            "relayapi-sdk 1.0.0 tokens accepted for a tenant: they are AES-CBC without integrity \
             protection, so a token holder may alter them undetected within the limits forced here; \
             migrate the tenant to v1 tokens (docs/compat-v0.md)",
            json!({"tenant": t.tenant_id, "rai": t.rai.display().to_string(),
                   "max_lifetime": t.max_lifetime, "max_calls": t.max_calls,
                   "providers": t.providers, "kref_only": !t.krefs.is_empty()}),
        );
        tenants.push(CompatTenant {
            tenant_id: t.tenant_id.clone(),
            key_id: t.key_id.clone(),
            rai: original,
            policy: Policy {
                max_lifetime: t.max_lifetime,
                max_calls: t.max_calls,
                providers: t.providers.clone(),
                krefs: t.krefs.clone(),
                rate: t.rate.map(|r| Rate { n: r.n, s: r.s }),
            },
        });
    }
    CompatTenants::new(
        tenants,
        cfg.token.clock_skew,
        cfg.token.max_lifetime,
        os_rng(),
    )
    .map_err(|e| format!("token.compat_v0: {e}"))
}
