//! JSON as the references see it: `serde_json`'s own parse, plus the duplicate-member detection that
//! `serde_json::Value` lacks (its maps silently keep the last value of a repeated name).

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON text as `serde_json` reads it, and whether some object in it repeats a member name (after
/// unescaping: `"a"` and `"\u0061"` are the same name). `None` when it is not JSON.
pub fn parse(text: &str) -> Option<(Value, bool)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    Walk(&duplicate).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some((value, duplicate.get()))
}

/// Visits every value, recording a repeated member name in any object.
#[derive(Clone, Copy)]
struct Walk<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                self.0.set(true);
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// Every string that is the value of a member named `member`, anywhere in `value`.
pub fn strings_under<'a>(value: &'a Value, member: &str, out: &mut Vec<&'a str>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, member, out)),
        Value::Object(map) => {
            for (name, v) in map {
                // Only a string value is a key; an object or array under the name holds other members
                // (a method name, a host) that messages may rightly quote.
                if let (true, Value::String(s)) = (name == member, v) {
                    out.push(s);
                }
                strings_under(v, member, out);
            }
        }
        _ => {}
    }
}

/// The member names of a top-level JSON object, in order, repeats included (after unescaping); `None`
/// when the text is not a JSON object.
pub fn top_level_names(text: &str) -> Option<Vec<String>> {
    struct Names;

    impl<'de> Visitor<'de> for Names {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                names.push(name);
            }
            Ok(names)
        }
    }

    let mut de = serde_json::Deserializer::from_str(text);
    let names = de.deserialize_map(Names).ok()?;
    de.end().ok()?;
    Some(names)
}

/// Whether `serde_json` refuses `text` only for one of its own limits that RFC 8259 does not have: an
/// unpaired surrogate escape, a number beyond `f64`, nesting beyond its recursion limit. Parsers that
/// only check the grammar (the relay's body scanner, many providers') accept such texts.
pub fn refused_for_serde_limit(text: &str) -> bool {
    match serde_json::from_str::<Value>(text) {
        Ok(_) => false,
        Err(e) => {
            let e = e.to_string();
            // A leading surrogate not followed by `\u` is reported as the end of the escape.
            let leading = text.as_bytes().windows(4).any(|w| {
                w[0] == b'\\'
                    && w[1] == b'u'
                    && matches!(w[2], b'd' | b'D')
                    && b"89abAB".contains(&w[3])
            });
            e.contains("surrogate")
                || (leading && e.contains("unexpected end of hex escape"))
                || e.contains("number out of range")
                || e.contains("recursion")
        }
    }
}
