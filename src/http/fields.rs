//! The field lines of one parsed head, packed: every name (lower-cased) end to end in one string,
//! every value (OWS removed) end to end in one byte buffer, and where each field ends in both. A head
//! is three buffers however many fields it has, and a head value reused across the requests of a
//! keep-alive connection allocates nothing once its buffers have grown to the connection's usual
//! head. The start-line's text (method and target, or reason-phrase) sits in front of the names, so
//! it needs no buffer of its own; `http/head.rs` fills all of it and says what the lead text means.

use std::fmt;

/// The field lines of a head, in message order. Names are lower-cased (field names are
/// case-insensitive, RFC 9110 §5.1); values are the raw bytes with leading and trailing SP/HTAB
/// removed (RFC 9112 §5.1: OWS is not part of the value). Values may hold obs-text (0x80-0xFF), so
/// they stay bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// The start-line's text (`text[..lead]`), then every name. Names are tokens (ASCII), so this is
    /// a `String` and a name is a `&str` without checking its bytes again.
    text: String,
    /// Bytes of start-line text in front of the first name.
    lead: usize,
    /// Every value, end to end.
    values: Vec<u8>,
    /// Where each field's name ends in `text` and its value in `values`; each starts where the one
    /// before it ended (the first name at `lead`, the first value at 0).
    ends: Vec<(usize, usize)>,
    /// Room where [`Fields::extend`] lower-cases a head's names before they join `text`; empty
    /// between calls, so it never tells two lists apart.
    lower: Vec<u8>,
}

impl Fields {
    /// Empties the list and puts `lead` (the start-line's text, in parts) in front of the names.
    /// Keeps the buffers' capacity, and reserves what `names` and `values` bytes of fields and
    /// `count` fields will take, so that filling the list grows each buffer at most once.
    pub(crate) fn reset(&mut self, lead: &[&str], names: usize, values: usize, count: usize) {
        self.text.clear();
        self.values.clear();
        self.ends.clear();
        let lead_len: usize = lead.iter().map(|s| s.len()).sum();
        self.text.reserve(lead_len + names);
        self.values.reserve(values);
        self.ends.reserve(count);
        for part in lead {
            self.text.push_str(part);
        }
        self.lead = lead_len;
    }

    /// Appends one field: `name` lower-cased, `value` as given.
    pub(crate) fn push(&mut self, name: &str, value: &[u8]) {
        let start = self.text.len();
        self.text.push_str(name);
        self.text[start..].make_ascii_lowercase();
        self.values.extend_from_slice(value);
        self.ends.push((self.text.len(), self.values.len()));
    }

    /// Appends every field of a head, each as [`Fields::push`] would. The names are gathered and
    /// lower-cased together, eight bytes at a time, and join `text` in one piece: per name and byte,
    /// `push` was most of the cost of filling a head (`bench/instructions.sh`).
    pub(crate) fn extend<'f>(&mut self, fields: impl IntoIterator<Item = (&'f str, &'f [u8])>) {
        self.lower.clear();
        let mut name_end = self.text.len();
        for (name, value) in fields {
            self.lower.extend_from_slice(name.as_bytes());
            name_end += name.len();
            self.values.extend_from_slice(value);
            self.ends.push((name_end, self.values.len()));
        }
        lowercase_ascii(&mut self.lower);
        // The names came as `&str` and lower-casing changes only ASCII letters: still UTF-8.
        let names = std::str::from_utf8(&self.lower).expect("lower-cased UTF-8 is UTF-8");
        self.text.push_str(names);
        self.lower.clear();
    }

    /// The start-line's text given to [`Fields::reset`], its parts end to end.
    pub(crate) fn lead(&self) -> &str {
        &self.text[..self.lead]
    }

    /// Every field as (lower-case name, value), in message order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            fields: self,
            next: 0,
            name_at: self.lead,
            value_at: 0,
        }
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of the first field named `name` (compared case-insensitively).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        Named::new(self, name.as_bytes()).next()
    }

    /// Every value of the fields named `name` (compared case-insensitively), in message order.
    pub fn named<'a, 'n>(&'a self, name: &'n str) -> Named<'a, 'n> {
        Named::new(self, name.as_bytes())
    }
}

/// `bytes` with every ASCII upper-case letter lower-cased, as `<[u8]>::make_ascii_lowercase`, eight
/// bytes at a time.
fn lowercase_ascii(bytes: &mut [u8]) {
    let mut words = bytes.chunks_exact_mut(8);
    for word in &mut words {
        let x = u64::from_le_bytes((&*word).try_into().expect("eight bytes"));
        word.copy_from_slice(&lowercase_word(x).to_le_bytes());
    }
    words.into_remainder().make_ascii_lowercase();
}

/// Each byte of `x` in `A`-`Z` lower-cased, every other byte as it was. Per byte, on its low seven
/// bits (no carry can cross into the next byte: at most 0x7f + 0x3f), the high bit of `+ (0x80 - 'A')`
/// says "at least `A`" and that of `+ (0x80 - 'Z' - 1)` "above `Z`"; a byte with its own high bit set
/// is not ASCII. A letter gets 0x20 (its high-bit flag shifted right by two).
fn lowercase_word(x: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let low7 = x & (ONES * 0x7f);
    let at_least_a = low7 + ONES * u64::from(0x80 - b'A');
    let above_z = low7 + ONES * u64::from(0x80 - b'Z' - 1);
    let upper = at_least_a & !above_z & !x & HIGH;
    x | (upper >> 2)
}

/// The values of the fields with one name: [`Fields::named`]. A request's head is searched a dozen
/// times by name, so this walks the offsets and compares lengths first, and slices a value only for a
/// field whose name matches.
#[derive(Clone)]
pub struct Named<'a, 'n> {
    names: &'a [u8],
    values: &'a [u8],
    ends: std::slice::Iter<'a, (usize, usize)>,
    name_at: usize,
    value_at: usize,
    name: &'n [u8],
}

impl<'a, 'n> Named<'a, 'n> {
    fn new(fields: &'a Fields, name: &'n [u8]) -> Named<'a, 'n> {
        Named {
            names: fields.text.as_bytes(),
            values: &fields.values,
            ends: fields.ends.iter(),
            name_at: fields.lead,
            value_at: 0,
            name,
        }
    }
}

impl<'a> Iterator for Named<'a, '_> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        for &(name_end, value_end) in self.ends.by_ref() {
            let (name_at, value_at) = (self.name_at, self.value_at);
            self.name_at = name_end;
            self.value_at = value_end;
            // The stored names are lower-case: for a lower-case `name` (every caller in the relay)
            // a match compares equal bytes, and the case folding only runs on equal lengths.
            if name_end - name_at == self.name.len()
                && self.names[name_at..name_end].eq_ignore_ascii_case(self.name)
            {
                return Some(&self.values[value_at..value_end]);
            }
        }
        None
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<(&str, String)> = self
            .iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(v).into_owned()))
            .collect();
        f.debug_struct("Fields")
            .field("lead", &self.lead())
            .field("fields", &fields)
            .finish()
    }
}

/// The fields of a head as (lower-case name, value), in message order: [`Fields::iter`].
#[derive(Clone)]
pub struct Iter<'a> {
    fields: &'a Fields,
    next: usize,
    name_at: usize,
    value_at: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let &(name_end, value_end) = self.fields.ends.get(self.next)?;
        let name = &self.fields.text[self.name_at..name_end];
        let value = &self.fields.values[self.value_at..value_end];
        self.next += 1;
        self.name_at = name_end;
        self.value_at = value_end;
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.fields.ends.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_lowercasing_is_the_bytewise_one() {
        // Every byte value at every position of a word, next to every letter boundary.
        for b in 0..=255u8 {
            for at in 0..8 {
                for fill in [
                    b'@', b'A', b'Z', b'[', b'`', b'a', b'z', 0x7f, 0x80, 0xc1, 0xff,
                ] {
                    let mut word = [fill; 8];
                    word[at] = b;
                    let expected = word.map(|c| c.to_ascii_lowercase());
                    let got = lowercase_word(u64::from_le_bytes(word)).to_le_bytes();
                    assert_eq!(got, expected, "{word:?}");
                }
            }
        }
        // Every length around the word size, so the remainder is covered.
        let text = b"Content-Type-X-FORWARDED-For-\xc3\x89t\xe9AZaz@[`{";
        for len in 0..text.len() {
            let mut bytes = text[..len].to_vec();
            lowercase_ascii(&mut bytes);
            assert_eq!(bytes, text[..len].to_ascii_lowercase(), "{len}");
        }
    }

    #[test]
    fn extend_is_push_per_field() {
        let heads: [&[(&str, &[u8])]; 4] = [
            &[],
            &[("Host", b"h")],
            &[
                ("Content-Type", b"a"),
                ("X-ABCDEFGHIJKLMNOPQRSTUVWXYZ", b""),
                ("x", b"1"),
            ],
            &[
                ("AUTHORIZATION", b"Bearer x"),
                ("Content-Length", b"12"),
                ("Te", b""),
            ],
        ];
        for fields in heads {
            let mut pushed = Fields::default();
            pushed.reset(&["GET", "/"], 0, 0, 0);
            for &(n, v) in fields {
                pushed.push(n, v);
            }
            // Refilled over an earlier, longer head, as a connection's next request is.
            let mut extended = Fields::default();
            extended.reset(&["POST"], 0, 0, 0);
            extended.extend(heads[3].iter().copied());
            extended.reset(&["GET", "/"], 0, 0, 0);
            extended.extend(fields.iter().copied());
            assert_eq!(extended, pushed);
            assert_eq!(
                extended.iter().collect::<Vec<_>>(),
                pushed.iter().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn fields_keep_order_case_and_the_lead() {
        let mut f = Fields::default();
        f.reset(&["POST", "/a"], 9, 4, 2);
        f.push("Host", b"h");
        f.push("X-Thing", b"a b");
        f.push("host", b"");
        assert_eq!(f.lead(), "POST/a");
        let all: Vec<(&str, &[u8])> = f.iter().collect();
        assert_eq!(
            all,
            vec![("host", &b"h"[..]), ("x-thing", b"a b"), ("host", b"")]
        );
        assert_eq!((f.len(), f.iter().len()), (3, 3));
        assert_eq!(f.get("X-THING"), Some(&b"a b"[..]));
        assert_eq!(f.named("host").collect::<Vec<_>>(), vec![&b"h"[..], b""]);
        assert_eq!(f.get("x"), None);
        // Refilled: nothing of the previous head remains, and equal contents compare equal.
        f.reset(&["OK"], 0, 0, 0);
        assert_eq!((f.lead(), f.len(), f.is_empty()), ("OK", 0, true));
        let mut g = Fields::default();
        g.reset(&["O", "K"], 0, 0, 0);
        assert_eq!(f, g);
    }
}
