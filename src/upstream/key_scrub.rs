//! Keeping the provider's API key out of what the page receives: a provider, a debug header or a
//! misconfigured gateway may echo the key, whole or in part, in a response header or an error body.
//! This module finds every run of the key of at least [`MIN_FRAGMENT_BYTES`] bytes in a byte string
//! and replaces it with `[redacted]`; `request/forward.rs` drops response headers that hold one and passes error
//! bodies (status >= 400) through [`KeyFragments::scrub`]. Successful bodies stream untouched.
//!
//! The fragments of a key (each of its `MIN_FRAGMENT_BYTES`-byte windows, packed into a `u64`) are
//! built once per key and kept in a bounded cache, so checking a header costs no allocation: one bit
//! test per [`BLOCK`] bytes, and a binary search only where the bit test cannot rule a run out.
//! Matching is on exact bytes: a key echoed in another encoding (base64, percent-encoding, a
//! different letter case) is not recognised.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zeroize::{Zeroize, Zeroizing};

use crate::token::secret::SecretString;

/// Shortest run of the key that counts as a leak (or the whole key, when it is shorter). Eight bytes
/// of a random key are far more than a guesser can use against the rest, and short enough that an
/// echo of "the first characters, for debugging" is caught; ordinary text almost never holds eight
/// consecutive bytes of a random key by chance.
pub const MIN_FRAGMENT_BYTES: usize = 8;

/// Keys whose fragments are kept (server-side keys plus the keys carried by tokens in use). When full
/// the cache starts over: rebuilding one key's fragments costs microseconds.
pub const MAX_CACHED_KEYS: usize = 1024;

/// Error answers (status >= 400) are read whole to be scrubbed, up to this size. Providers' error
/// bodies are a few hundred bytes; a bigger one is withheld (`upstream_error_unchecked`, 502) rather
/// than passed on unchecked or held in memory without bound.
pub const MAX_ERROR_BODY_BYTES: usize = 256 * 1024;

/// What a run of the key is replaced with.
pub const REDACTED: &[u8] = b"[redacted]";

/// Size of the prefilter in 64-bit words (1,024 bits). A key of a few dozen windows sets a few
/// percent of the bits, so almost every byte of a response head is passed by one bit test instead
/// of a binary search (which cost about 2,000 instructions per request, `bench/instructions.sh`).
const FILTER_WORDS: usize = 16;

/// Bytes [`KeyFragments::found_in`] looks up at a time. Any run of `MIN_FRAGMENT_BYTES` bytes covers a
/// whole block that starts at a multiple of `BLOCK` (the first such offset is at most `BLOCK - 1`
/// bytes into the run, and the block then ends at most `2 * BLOCK - 1` bytes in), and that block is
/// one of the key's own `BLOCK`-byte windows. So a header whose aligned blocks are all absent from the
/// key holds no run, and is cleared with one bit test per block instead of one per byte (the check
/// of every response head cost about 1,000 instructions per request, `bench/instructions.sh`).
const BLOCK: usize = 4;
const _: () = assert!(MIN_FRAGMENT_BYTES >= 2 * BLOCK - 1);

/// Every window of one key, ready to be searched for. `Debug` shows only the window length.
pub struct KeyFragments {
    /// Window length: `min(MIN_FRAGMENT_BYTES, key length)`; 0 for an empty key (nothing to find).
    len: usize,
    /// Each `len`-byte window of the key, big-endian in a `u64`, sorted and deduplicated.
    windows: Zeroizing<Vec<u64>>,
    /// One bit per window at [`filter_bit`]: a window whose bit is clear is not in `windows`. It is
    /// derived from the key, so it is wiped like the windows.
    filter: Zeroizing<[u64; FILTER_WORDS]>,
    /// One bit per [`BLOCK`]-byte window of the key at [`filter_bit`], for [`KeyFragments::found_in`];
    /// empty when the key is shorter than `MIN_FRAGMENT_BYTES` (then every byte is looked at). Wiped
    /// like the windows.
    blocks: Zeroizing<[u64; FILTER_WORDS]>,
}

impl KeyFragments {
    pub fn new(key: &[u8]) -> KeyFragments {
        let len = key.len().min(MIN_FRAGMENT_BYTES);
        let mut windows = Zeroizing::new(Vec::new());
        let mut filter = Zeroizing::new([0u64; FILTER_WORDS]);
        if len > 0 {
            windows.extend(key.windows(len).map(pack));
            windows.sort_unstable();
            windows.dedup();
        }
        for &w in windows.iter() {
            let (word, bit) = filter_bit(w);
            filter[word] |= bit;
        }
        let mut blocks = Zeroizing::new([0u64; FILTER_WORDS]);
        if len == MIN_FRAGMENT_BYTES {
            for block in key.windows(BLOCK) {
                let (word, bit) = filter_bit(pack(block));
                blocks[word] |= bit;
            }
        }
        KeyFragments {
            len,
            windows,
            filter,
            blocks,
        }
    }

    /// Whether `hay` holds a run of the key at least `min(MIN_FRAGMENT_BYTES, key length)` long.
    pub fn found_in(&self, hay: &[u8]) -> bool {
        if self.len < MIN_FRAGMENT_BYTES {
            return self.matches(hay).next().is_some();
        }
        // A run at `start` covers the block at `at`, the first multiple of BLOCK from `start` on
        // (see [`BLOCK`]), so `start` is within BLOCK bytes before `at` and the run ends by
        // `at + MIN_FRAGMENT_BYTES`: the exact search over that span finds it.
        for (n, block) in hay.chunks_exact(BLOCK).enumerate() {
            let block = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
            let (word, bit) = filter_bit(u64::from(block));
            if self.blocks[word] & bit != 0 {
                let at = n * BLOCK;
                let span = &hay[at.saturating_sub(BLOCK)..hay.len().min(at + MIN_FRAGMENT_BYTES)];
                if self.matches(span).next().is_some() {
                    return true;
                }
            }
        }
        false
    }

    /// `hay` with every run of the key replaced by [`REDACTED`] (overlapping or touching runs become
    /// one), or `None` when it holds none.
    pub fn scrub(&self, hay: &[u8]) -> Option<Vec<u8>> {
        let mut starts = self.matches(hay).peekable();
        starts.peek()?;
        let mut out = Vec::with_capacity(hay.len());
        // `copied` is where the next unredacted byte starts; `run_end` the end of the current run.
        let mut copied = 0;
        let mut run_end: Option<usize> = None;
        for start in starts {
            match run_end {
                Some(end) if start <= end => {}
                _ => {
                    if let Some(end) = run_end {
                        out.extend_from_slice(REDACTED);
                        copied = end;
                    }
                    out.extend_from_slice(&hay[copied..start]);
                    copied = start;
                }
            }
            run_end = Some(start + self.len);
        }
        if let Some(end) = run_end {
            out.extend_from_slice(REDACTED);
            copied = end;
        }
        out.extend_from_slice(&hay[copied..]);
        Some(out)
    }

    /// Offsets in `hay` where a window of the key starts, in increasing order.
    fn matches<'a>(&'a self, hay: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
        let len = self.len;
        let mask = if len >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * len)).wrapping_sub(1)
        };
        let mut acc = 0u64;
        hay.iter().enumerate().filter_map(move |(i, &b)| {
            acc = ((acc << 8) | u64::from(b)) & mask;
            let start = (i + 1).checked_sub(len)?;
            let (word, bit) = filter_bit(acc);
            (len > 0 && self.filter[word] & bit != 0 && self.windows.binary_search(&acc).is_ok())
                .then_some(start)
        })
    }
}

impl std::fmt::Debug for KeyFragments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyFragments {{ len: {}, windows: [redacted] }}",
            self.len
        )
    }
}

/// Where a window's bit is in the prefilter: a multiplicative hash (Fibonacci hashing) of the packed
/// window, top bits picking one of `FILTER_WORDS * 64` bits.
fn filter_bit(window: u64) -> (usize, u64) {
    const BITS: u32 = (FILTER_WORDS * 64).trailing_zeros();
    let h = (window.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BITS)) as usize;
    (h / 64, 1u64 << (h % 64))
}

fn pack(window: &[u8]) -> u64 {
    window
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// The key's bytes as a map key, wiped when the entry goes.
#[derive(PartialEq, Eq, Hash)]
struct KeyBytes(Box<[u8]>);

impl Borrow<[u8]> for KeyBytes {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Fragments by key, bounded by [`MAX_CACHED_KEYS`]. Looked up twice per proxied request; its keys
/// come from the config or from authenticated claims, never from a client, so it hashes with foldhash
/// (SipHash was ~110 instructions per lookup).
#[derive(Default)]
pub struct FragmentCache {
    map: Mutex<HashMap<KeyBytes, Arc<KeyFragments>, foldhash::fast::RandomState>>,
}

impl FragmentCache {
    pub fn get(&self, key: &SecretString) -> Arc<KeyFragments> {
        let bytes = key.expose().as_bytes();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(bytes) {
            return f.clone();
        }
        let f = Arc::new(KeyFragments::new(bytes));
        if map.len() >= MAX_CACHED_KEYS {
            map.clear();
        }
        map.insert(KeyBytes(bytes.into()), f.clone());
        f
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "fake-key-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";

    fn frags() -> KeyFragments {
        KeyFragments::new(KEY.as_bytes())
    }

    #[test]
    fn finds_every_run_of_eight_or_more() {
        let f = frags();
        for i in 0..=KEY.len() - MIN_FRAGMENT_BYTES {
            for end in [i + MIN_FRAGMENT_BYTES, KEY.len()] {
                let hay = format!("x-debug: {}!", &KEY[i..end]);
                assert!(f.found_in(hay.as_bytes()), "{i}..{end}");
            }
        }
        assert!(
            !f.found_in(&KEY.as_bytes()[..7]),
            "seven bytes are not a fragment"
        );
        assert!(!f.found_in(b"content-type: application/json"));
        assert!(!f.found_in(b""));
        // Exact bytes: another letter case is another string.
        assert!(!f.found_in(KEY[8..30].to_ascii_uppercase().as_bytes()));
    }

    #[test]
    fn scrub_replaces_runs_and_keeps_the_rest() {
        let f = frags();
        assert_eq!(f.scrub(b"nothing here"), None);
        let whole = format!(r#"{{"auth":"Bearer {KEY}","n":1}}"#);
        assert_eq!(
            f.scrub(whole.as_bytes()).unwrap(),
            br#"{"auth":"Bearer [redacted]","n":1}"#
        );
        let partial = format!("a {} b {} c", &KEY[..12], &KEY[20..30]);
        assert_eq!(
            f.scrub(partial.as_bytes()).unwrap(),
            b"a [redacted] b [redacted] c"
        );
        // Two runs that touch become one; a run at either end of the input is found.
        let touching = format!("{}{}", &KEY[..10], &KEY[30..40]);
        assert_eq!(f.scrub(touching.as_bytes()).unwrap(), b"[redacted]");
        let ends = format!("{}-mid-{}", &KEY[..9], &KEY[KEY.len() - 9..]);
        assert_eq!(
            f.scrub(ends.as_bytes()).unwrap(),
            b"[redacted]-mid-[redacted]"
        );
        // Nothing of eight bytes survives.
        let out = f
            .scrub(format!("{KEY}{KEY} {}", &KEY[5..25]).as_bytes())
            .unwrap();
        assert!(!f.found_in(&out), "{}", String::from_utf8_lossy(&out));
    }

    /// The block fast path of `found_in` against the byte-by-byte search it skips. Small alphabets make
    /// the key's blocks and partial runs common in the haystacks, so both sides of every branch run.
    #[test]
    fn found_in_answers_as_the_bytewise_search() {
        let bytewise = |f: &KeyFragments, hay: &[u8]| f.matches(hay).next().is_some();
        // A deterministic generator (xorshift): the same cases on every run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let mut hits = 0;
        for key_len in 1..=24 {
            for alphabet in [2u64, 3, 26] {
                let key: Vec<u8> = (0..key_len).map(|_| b'a' + next(alphabet) as u8).collect();
                let f = KeyFragments::new(&key);
                for _ in 0..400 {
                    let hay_len = next(40) as usize;
                    let mut hay: Vec<u8> = (0..hay_len)
                        .map(|_| b'a' + next(alphabet + 1) as u8)
                        .collect();
                    // Half the time, a run of the key (maybe shorter than a fragment) somewhere in it.
                    if next(2) == 0 && hay_len > 0 {
                        let from = next(key_len) as usize;
                        let run = 1 + next((key_len - from as u64).min(hay_len as u64)) as usize;
                        let at = next((hay_len - run + 1) as u64) as usize;
                        hay[at..at + run].copy_from_slice(&key[from..from + run]);
                    }
                    let expected = bytewise(&f, &hay);
                    hits += usize::from(expected);
                    assert_eq!(f.found_in(&hay), expected, "key {key:?} hay {hay:?}");
                }
            }
        }
        assert!(hits > 1000, "too few cases with a run: {hits}");
        // Every run of a real key, at every offset of every alignment, with bytes either side.
        let f = frags();
        let key = KEY.as_bytes();
        for from in 0..key.len() {
            for end in from + 1..=key.len().min(from + 12) {
                for pad in 0..2 * BLOCK {
                    let mut hay = vec![b'#'; pad];
                    hay.extend_from_slice(&key[from..end]);
                    hay.extend_from_slice(b"##");
                    assert_eq!(f.found_in(&hay), bytewise(&f, &hay), "{from}..{end} +{pad}");
                    assert_eq!(f.found_in(&hay), end - from >= MIN_FRAGMENT_BYTES);
                }
            }
        }
    }

    #[test]
    fn short_and_empty_keys() {
        let f = KeyFragments::new(b"abc");
        assert!(f.found_in(b"xxabcxx"));
        assert!(!f.found_in(b"xxabxcxx"));
        assert_eq!(f.scrub(b"1abc2").unwrap(), b"1[redacted]2");
        let none = KeyFragments::new(b"");
        assert!(!none.found_in(b"anything"));
        assert_eq!(none.scrub(b"anything"), None);
    }

    #[test]
    fn cache_is_bounded_and_reuses_fragments() {
        let c = FragmentCache::default();
        let k = SecretString::new(KEY);
        let a = c.get(&k);
        assert!(Arc::ptr_eq(&a, &c.get(&k)));
        for i in 0..MAX_CACHED_KEYS + 10 {
            c.get(&SecretString::new(format!("key-{i:08}")));
        }
        assert!(c.len() <= MAX_CACHED_KEYS);
    }
}
