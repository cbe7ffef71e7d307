//! Claims read from JSON (§5 and the JSON rules of §7.1): members in any order, unknown, repeated and
//! `null` members refused, objects only where §5 has objects; then every §5 rule (`token/claims.rs`).
//! The strict-JSON helpers are `text/strict_json.rs`'s.

use serde::{Deserialize, Deserializer};

use crate::text::ipnet::IpNet;
use crate::text::strict_json::{json_within_rules, present, present_object, ObjectOnly};
use crate::token::claims::{
    claim_err, Budget, ClaimError, Claims, Ext, MtokMode, Rate, UserQuota, Window,
};
use crate::token::secret::SecretString;

impl Claims {
    /// Parses and checks a claims JSON object (§5; members in any order) without the tenant check that
    /// needs the key. Used by verification and by tools that hold claims as JSON.
    pub fn from_json(text: &str) -> Result<Claims, ClaimError> {
        let not_json = || claim_err("(claims)", "a JSON object following §5 and §7.1");
        if !json_within_rules(text) {
            return Err(not_json());
        }
        // §5 only knows objects: a whole claims array would be read as positional members.
        let ObjectOnly(raw) =
            serde_json::from_str::<ObjectOnly<RawClaims>>(text).map_err(|_| not_json())?;
        let claims = raw.into_claims()?;
        claims.validate()?;
        Ok(claims)
    }
}

/// Claims as they appear on the wire. Serde's derive refuses unknown and duplicate members; `present`
/// refuses `null` for optional members (absent is not the same as null in §5), and `present_object` also
/// the sequence form serde's derive would take for `ext`, `rate` and `bud` (`"rate":[10,60]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaims {
    jti: String,
    tid: String,
    iat: u64,
    exp: u64,
    prv: String,
    #[serde(default, deserialize_with = "present_secret")]
    key: Option<SecretString>,
    #[serde(default, deserialize_with = "present")]
    kref: Option<String>,
    #[serde(default, deserialize_with = "present")]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    max: Option<u64>,
    #[serde(default, deserialize_with = "present_object")]
    ext: Option<RawExt>,
    #[serde(default, deserialize_with = "present_object")]
    rate: Option<RawRate>,
    #[serde(default, deserialize_with = "present")]
    conc: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    paths: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    origins: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    ips: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    mtok: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    mtok_mode: Option<String>,
    #[serde(default, deserialize_with = "present")]
    uid: Option<String>,
    #[serde(default, deserialize_with = "present_object")]
    bud: Option<RawBudget>,
    #[serde(default, deserialize_with = "present")]
    uq: Option<Vec<ObjectOnly<RawQuota>>>,
    #[serde(default, deserialize_with = "present")]
    ssec: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExt {
    #[serde(default, deserialize_with = "present")]
    rep_m: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    n: u64,
    s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    #[serde(default, deserialize_with = "present")]
    tok: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    cost: Option<u64>,
}

/// One `uq` entry; each must be an object (`ObjectOnly`), never an array read by position.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    w: String,
    #[serde(default, deserialize_with = "present")]
    calls: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    tok: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    cost: Option<u64>,
}

/// `present` for the API key, moved straight into its redacting, zeroizing wrapper.
fn present_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    String::deserialize(d).map(|s| Some(SecretString::from(s)))
}

impl RawClaims {
    fn into_claims(self) -> Result<Claims, ClaimError> {
        let conc = match self.conc {
            Some(c) => Some(
                u32::try_from(c).map_err(|_| claim_err("conc", "an integer from 1 to 10000"))?,
            ),
            None => None,
        };
        let ips = match self.ips {
            Some(list) => Some(
                list.iter()
                    .map(|s| IpNet::parse_canonical(s))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(claim_err(
                        "ips",
                        "CIDR ranges such as 203.0.113.0/24 or 2001:db8::/32",
                    ))?,
            ),
            None => None,
        };
        let mtok_mode = match self.mtok_mode.as_deref() {
            None => None,
            Some("clamp") => Some(MtokMode::Clamp),
            Some("reject") => Some(MtokMode::Reject),
            Some(_) => return Err(claim_err("mtok_mode", "\"clamp\" or \"reject\"")),
        };
        let uq = match self.uq {
            Some(list) => Some(
                list.into_iter()
                    .map(|ObjectOnly(q)| {
                        Some(UserQuota {
                            w: Window::parse(&q.w)?,
                            calls: q.calls,
                            tok: q.tok,
                            cost: q.cost,
                        })
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or(claim_err(
                        "uq",
                        "windows (`w`) \"day\", \"month\" or \"all\"",
                    ))?,
            ),
            None => None,
        };
        Ok(Claims {
            jti: self.jti,
            tid: self.tid,
            iat: self.iat,
            exp: self.exp,
            prv: self.prv,
            key: self.key,
            kref: self.kref,
            url: self.url,
            max: self.max,
            ext: self.ext.map(|e| Ext { rep_m: e.rep_m }),
            rate: self.rate.map(|r| Rate { n: r.n, s: r.s }),
            conc,
            models: self.models,
            paths: self.paths,
            origins: self.origins,
            ips,
            mtok: self.mtok,
            mtok_mode,
            uid: self.uid,
            bud: self.bud.map(|b| Budget {
                tok: b.tok,
                cost: b.cost,
            }),
            uq,
            ssec: self.ssec,
        })
    }
}
