//! JSON read strictly: what serde_json and serde's derive let through and the relay's files and claims
//! must not. The nesting and byte-order-mark rules of token format §7.1 (checked before serde_json sees
//! the text), sections that must be objects (the derive also reads an array by position), optional
//! members where `null` is a wrong type rather than "absent", maps whose names must differ, and a JSON
//! value that keeps repeated members and tells integers from other numbers, for loaders that report
//! problems by field path. Used by `config/`, `token/claims_json.rs` and `token/rai.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// Most levels of nested arrays and objects in a claims document (§7.1 J6; the top-level object is level
/// 1). Claims need 2; the same limit holds in both SDKs and for `.rai` files, and it is checked by a flat
/// scan before serde_json (whose own limit is 128) sees the text.
pub const MAX_JSON_DEPTH: usize = 16;

/// The §7.1 rules that serde_json does not apply itself: no byte-order mark (J1) and at most
/// [`MAX_JSON_DEPTH`] levels of nesting (J6), found by one flat scan that tracks strings and escapes.
/// serde_json refuses the rest: duplicates via the derive (J3, names compared after unescaping), lone
/// surrogates (J4), and signs, fractions and exponents for the `u64` members (J5).
pub fn json_within_rules(text: &str) -> bool {
    if text.starts_with('\u{feff}') {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_JSON_DEPTH {
                        return false;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    true
}

/// A value read only from a JSON object. serde's derive also takes an array and reads it by position
/// (`"server": ["0.0.0.0", 80]` as host and port, `"rate":[10,60]` as `{"n":10,"s":60}`), which is never
/// what the writer meant. Found by the `config` fuzz target.
pub struct ObjectOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyMaps<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // config/words.rs turns this into the operator's words, as for serde's own maps.
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                // The same map access, so field paths in later errors stay exact.
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }

        d.deserialize_map(OnlyMaps(PhantomData)).map(ObjectOnly)
    }
}

/// `deserialize_with` for a member that must be an object.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    ObjectOnly::deserialize(d).map(|ObjectOnly(t)| t)
}

/// `deserialize_with` for an optional object where `null` means absent (`config.json` `tls`).
pub fn object_or_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<ObjectOnly<T>>::deserialize(d).map(|o| o.map(|ObjectOnly(t)| t))
}

/// `deserialize_with` (with `default`) for an optional object where `null` is a wrong type, not
/// "absent" (token claims `ext` and `rate`).
pub fn present_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    object(d).map(Some)
}

/// `deserialize_with` (with `default`) for an optional member: when present it must hold a value of its
/// type; `null` is a wrong type, not "absent".
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `deserialize_with` for a JSON object read as a map of objects whose names must differ: serde's own
/// maps keep the last of two equal names, so a provider or key listed twice would silently mean
/// whichever line comes last. (Struct fields need no help: the derive already refuses a repeated field.)
/// Found by the `config` fuzz target.
pub fn unique_names<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object whose names appear once each")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                if out.contains_key(&name) {
                    return Err(de::Error::custom(format!(
                        "`{name}` appears twice; list each name once"
                    )));
                }
                let ObjectOnly(value) = map.next_value()?;
                out.insert(name, value);
            }
            Ok(out)
        }
    }

    d.deserialize_map(Unique(PhantomData))
}

/// A JSON value that keeps duplicate object members (serde_json's `Value` silently keeps the last one)
/// and distinguishes integers from other numbers, so a loader can refuse both by field path. Strings are
/// held in zeroizing buffers: in a `.rai` one of them is a key.
pub enum Json {
    Null,
    Bool,
    Int(u64),
    /// Negative, fractional or too large.
    OtherNumber,
    Str(Zeroizing<String>),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(u64::try_from(v).map_or(Json::OtherNumber, Json::Int))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json, E> {
        Ok(Json::OtherNumber)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(Zeroizing::new(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(Zeroizing::new(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            members.push((k, v));
        }
        Ok(Json::Object(members))
    }
}

/// An unknown member name as it may appear in an error. Names shaped like field names (snake case,
/// short) help the operator spot a typo; anything else could be a pasted key and is not repeated.
fn shown_name(name: &str) -> &str {
    let field_like = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if field_like {
        name
    } else {
        "(an unknown field name)"
    }
}

/// The members of one JSON object, checked against the names its level allows.
pub struct Object<'a> {
    members: BTreeMap<&'a str, &'a Json>,
}

impl<'a> Object<'a> {
    /// Errors `(field, expected)` if `value` is not an object, or has an unknown or repeated member.
    pub fn new(value: &'a Json, path: &str, known: &[&str]) -> Result<Self, (String, String)> {
        let join = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        let Json::Object(list) = value else {
            let field = if path.is_empty() {
                String::new()
            } else {
                path.to_owned()
            };
            return Err((field, "a JSON object".into()));
        };
        let mut members = BTreeMap::new();
        for (name, v) in list {
            if !known.contains(&name.as_str()) {
                let names: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                return Err((
                    join(shown_name(name)),
                    format!(
                        "one of {} (unknown fields are refused so that a typo never falls back to a default)",
                        names.join(", ")
                    ),
                ));
            }
            if members.insert(name.as_str(), v).is_some() {
                return Err((join(name), "the field only once".into()));
            }
        }
        Ok(Object { members })
    }

    pub fn take(&mut self, name: &str) -> Option<&'a Json> {
        self.members.remove(name)
    }
}
