//! The claims JSON of §5 (`Claims::from_json`), differential against `serde_json`: a reference reads
//! the text with `serde_json::Value`, refuses repeated member names (detected separately, since
//! `Value` keeps the last one), unknown members, `null` for optional members, non-integer or negative
//! numbers, arrays where objects belong and nesting deeper than §7.1 allows, builds the claims by hand and runs `Claims::validate`.
//! Both must agree on every input, value for value; accepted claims survive canonical re-encoding
//! byte for byte.

use relayapi::token::format::{
    Budget, Claims, Ext, IpNet, MtokMode, Rate, SecretString, UserQuota, Window, MAX_JSON_DEPTH,
};
use serde_json::{Map, Value};

use super::json;
use super::token::check_canonical;

const MEMBERS: [&str; 22] = [
    "jti",
    "tid",
    "iat",
    "exp",
    "prv",
    "key",
    "kref",
    "url",
    "max",
    "ext",
    "rate",
    "conc",
    "models",
    "paths",
    "origins",
    "ips",
    "mtok",
    "mtok_mode",
    "uid",
    "bud",
    "uq",
    "ssec",
];

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = Claims::from_json(text).ok();
    assert_eq!(ours, reference(text), "from_json vs serde_json reference");
    if let Some(claims) = ours {
        check_canonical(&claims);
    }
}

/// `Some(claims)` exactly when `text` is valid §5 claims.
pub fn reference(text: &str) -> Option<Claims> {
    let (value, duplicate) = json::parse(text)?;
    // §7.1 J3 and J6: no repeated name, at most MAX_JSON_DEPTH levels of objects and arrays.
    if duplicate || depth(&value) > MAX_JSON_DEPTH {
        return None;
    }
    let obj = value.as_object()?;
    if obj.keys().any(|k| !MEMBERS.contains(&k.as_str())) {
        return None;
    }
    let claims = Claims {
        key: opt(obj, "key", string)?.map(SecretString::new),
        kref: opt(obj, "kref", string)?,
        url: opt(obj, "url", string)?,
        max: opt(obj, "max", int)?,
        ext: opt(obj, "ext", ext)?,
        rate: opt(obj, "rate", rate)?,
        conc: opt(obj, "conc", |v| u32::try_from(int(v)?).ok())?,
        models: opt(obj, "models", strings)?,
        paths: opt(obj, "paths", strings)?,
        origins: opt(obj, "origins", strings)?,
        ips: opt(obj, "ips", |v| {
            strings(v)?
                .iter()
                .map(|s| IpNet::parse_canonical(s))
                .collect()
        })?,
        mtok: opt(obj, "mtok", int)?,
        mtok_mode: opt(obj, "mtok_mode", |v| match v.as_str()? {
            "clamp" => Some(MtokMode::Clamp),
            "reject" => Some(MtokMode::Reject),
            _ => None,
        })?,
        uid: opt(obj, "uid", string)?,
        bud: opt(obj, "bud", budget)?,
        uq: opt(obj, "uq", |v| v.as_array()?.iter().map(quota).collect())?,
        ssec: opt(obj, "ssec", int)?,
        ..Claims::new(
            string(obj.get("jti")?)?,
            string(obj.get("tid")?)?,
            int(obj.get("iat")?)?,
            int(obj.get("exp")?)?,
            string(obj.get("prv")?)?,
        )
    };
    claims.validate().ok()?;
    Some(claims)
}

/// Levels of objects and arrays, the outermost counting 1.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// An optional member: absent is `Some(None)`; present must convert (`null` does not).
fn opt<T>(
    obj: &Map<String, Value>,
    name: &str,
    f: impl Fn(&Value) -> Option<T>,
) -> Option<Option<T>> {
    match obj.get(name) {
        None => Some(None),
        Some(v) => f(v).map(Some),
    }
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// A JSON number written as a non-negative integer that fits a u64 (`1.0`, `1e3` and `-0` are not).
fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) if !n.is_f64() => n.as_u64(),
        _ => None,
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(string).collect()
}

fn ext(v: &Value) -> Option<Ext> {
    let obj = v.as_object()?;
    if obj.keys().any(|k| k != "rep_m") {
        return None;
    }
    Some(Ext {
        rep_m: opt(obj, "rep_m", string)?,
    })
}

fn rate(v: &Value) -> Option<Rate> {
    let obj = v.as_object()?;
    if obj.len() != 2 {
        return None;
    }
    Some(Rate {
        n: int(obj.get("n")?)?,
        s: int(obj.get("s")?)?,
    })
}

fn budget(v: &Value) -> Option<Budget> {
    let obj = v.as_object()?;
    if obj.keys().any(|k| k != "tok" && k != "cost") {
        return None;
    }
    Some(Budget {
        tok: opt(obj, "tok", int)?,
        cost: opt(obj, "cost", int)?,
    })
}

fn quota(v: &Value) -> Option<UserQuota> {
    let obj = v.as_object()?;
    if obj
        .keys()
        .any(|k| !["w", "calls", "tok", "cost"].contains(&k.as_str()))
    {
        return None;
    }
    Some(UserQuota {
        w: Window::parse(obj.get("w")?.as_str()?)?,
        calls: opt(obj, "calls", int)?,
        tok: opt(obj, "tok", int)?,
        cost: opt(obj, "cost", int)?,
    })
}
