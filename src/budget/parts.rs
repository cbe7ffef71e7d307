//! Counting the parts of a request body whose token cost the relay cannot bound from their bytes:
//! images, audio and files, which a provider may turn into far more tokens than the bytes that name
//! them (an image URL of 40 bytes can cost a thousand tokens). Each one found gets the configured
//! `budgets.part_allowance` in the worst case (`docs/budgets.md` §3). The body is walked once with
//! serde's streaming deserializer (no tree is built, names are compared after unescaping, so a
//! `"image\u005furl"` counts like `"image_url"`), and a body that is not JSON is refused by the caller.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// `type` values that mark a media part (OpenAI chat and Responses, Anthropic messages).
pub const MEDIA_TYPES: &[&str] = &[
    "image_url",
    "input_image",
    "image",
    "input_audio",
    "input_file",
    "file",
    "document",
    "audio",
];
/// Member names that are themselves a media part (Gemini `parts`, in both of Google's spellings).
pub const MEDIA_MEMBERS: &[&str] = &["inlineData", "inline_data", "fileData", "file_data"];

/// The body is not one well-formed JSON value (or nests deeper than serde_json's recursion limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJson;

/// How many media parts `body` holds.
pub fn media_parts(body: &[u8]) -> Result<u64, NotJson> {
    // serde_json skips the strings of an ignored value without checking their UTF-8: check it all
    // first, so a body a provider would refuse is refused here too.
    let text = std::str::from_utf8(body).map_err(|_| NotJson)?;
    let mut count = 0u64;
    let mut de = serde_json::Deserializer::from_str(text);
    Walk::inner(&mut count)
        .deserialize(&mut de)
        .map_err(|_| NotJson)?;
    de.end().map_err(|_| NotJson)?;
    Ok(count)
}

/// One value of the walk: counts media parts inside it. `type_value`: the value of a `type` member,
/// a media part when it is one of [`MEDIA_TYPES`].
struct Walk<'a> {
    count: &'a mut u64,
    type_value: bool,
}

impl<'a> Walk<'a> {
    fn inner(count: &'a mut u64) -> Walk<'a> {
        Walk {
            count,
            type_value: false,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A member name, decoded; only whether it matters is kept.
enum Name {
    Type,
    Media,
    Other,
}

impl<'de> de::Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name, E> {
                Ok(if s == "type" {
                    Name::Type
                } else if MEDIA_MEMBERS.contains(&s) {
                    Name::Media
                } else {
                    Name::Other
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        if self.type_value && MEDIA_TYPES.contains(&s) {
            *self.count += 1;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Walk::inner(&mut *self.count))?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<Name>()? {
            if matches!(name, Name::Media) {
                *self.count += 1;
            }
            map.next_value_seed(Walk {
                count: &mut *self.count,
                type_value: matches!(name, Name::Type),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_media_parts_of_every_family() {
        let openai = br#"{"model":"m","messages":[{"role":"user","content":[
            {"type":"text","text":"what is this? \"image_url\""},
            {"type":"image_url","image_url":{"url":"https://x/y.png"}},
            {"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}]}"#;
        assert_eq!(media_parts(openai), Ok(2));
        let anthropic = br#"{"messages":[{"role":"user","content":[{"type":"image","source":{}},
            {"type":"document","source":{}}]}]}"#;
        assert_eq!(media_parts(anthropic), Ok(2));
        let gemini = br#"{"contents":[{"parts":[{"text":"hi"},{"inlineData":{"mimeType":"image/png","data":"AA"}},
            {"file_data":{"file_uri":"gs://x"}}]}]}"#;
        assert_eq!(media_parts(gemini), Ok(2));
        assert_eq!(
            media_parts(br#"{"messages":[{"role":"user","content":"hi"}]}"#),
            Ok(0)
        );
    }

    #[test]
    fn escaped_spellings_count_the_same() {
        let body = br#"{"content":[{"\u0074ype":"image\u005furl"},{"inline\u0044ata":{}}]}"#;
        assert_eq!(media_parts(body), Ok(2));
    }

    #[test]
    fn not_json_is_an_error() {
        for bad in [
            &b"{"[..],
            b"{} {}",
            b"[1,]",
            b"nul",
            b"\"\\ud800\"",
            b"{\"fileData\":[{\"a\xa1\":1}]}",
        ] {
            assert_eq!(
                media_parts(bad),
                Err(NotJson),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(media_parts(deep.as_bytes()), Err(NotJson));
    }
}
