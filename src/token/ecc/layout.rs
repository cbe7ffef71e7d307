//! The byte layout of an ecc token (`docs/token-format.md` §10.2): `header || enc || ct` with
//! `header = 0x01 || 0x02 || rkid_len || rkid || skid_len || skid`. Pure byte work: building the header,
//! splitting a blob, and the length a token will have. Keys and cryptography are elsewhere.

use crate::token::ecc::hpke_suite::{ENC_LEN, TAG_LEN};
use crate::token::ecc::signature::SIG_LEN;
use crate::token::seal::PREFIX;

pub const VERSION: u8 = 0x01;
/// The header's mode byte for this method (the symmetric method is `0x01`).
pub const MODE_ECC: u8 = 0x02;
/// Longest relay key id and signer id in the header, the bound of every key id.
const MAX_ID_LEN: usize = crate::text::grammar::MAX_KEY_ID_LEN;

/// The parts of an ecc blob, borrowed from it.
#[derive(Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The whole header: what the signature covers with the claims, and the HPKE `info`.
    pub header: &'a [u8],
    pub rkid: &'a [u8],
    pub skid: &'a [u8],
    pub enc: &'a [u8],
    /// HPKE ciphertext of `sig || claims`, tag included.
    pub ct: &'a [u8],
}

/// `0x01 || 0x02 || len(rkid) || rkid || len(skid) || skid`. The ids must be key ids (1 to 32 bytes);
/// callers check them first.
pub fn header(rkid: &str, skid: &str) -> Vec<u8> {
    debug_assert!((1..=MAX_ID_LEN).contains(&rkid.len()) && (1..=MAX_ID_LEN).contains(&skid.len()));
    let mut h = Vec::with_capacity(4 + rkid.len() + skid.len());
    h.extend_from_slice(&[VERSION, MODE_ECC, rkid.len() as u8]);
    h.extend_from_slice(rkid.as_bytes());
    h.push(skid.len() as u8);
    h.extend_from_slice(skid.as_bytes());
    h
}

/// §10.4 step 2: version and mode, both id lengths in `1..=32`, the whole header present, then at least
/// `enc` (65 bytes), a signature (64) and a tag (16). `None` for anything else.
pub fn split(blob: &[u8]) -> Option<Parts<'_>> {
    let (&version, rest) = blob.split_first()?;
    let (&mode, rest) = rest.split_first()?;
    if version != VERSION || mode != MODE_ECC {
        return None;
    }
    let (rkid, rest) = take_id(rest)?;
    let (skid, rest) = take_id(rest)?;
    if rest.len() < ENC_LEN + SIG_LEN + TAG_LEN {
        return None;
    }
    let header_len = blob.len() - rest.len();
    let (enc, ct) = rest.split_at(ENC_LEN);
    Some(Parts {
        header: &blob[..header_len],
        rkid,
        skid,
        enc,
        ct,
    })
}

/// A length byte in `1..=32` and that many bytes.
fn take_id(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = bytes.split_first()?;
    let len = usize::from(len);
    if !(1..=MAX_ID_LEN).contains(&len) || rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// Length in bytes of the ecc token for these id lengths and `claims_len` bytes of claims JSON (§10.2).
pub fn token_len(rkid_len: usize, skid_len: usize, claims_len: usize) -> usize {
    let blob = 2 + 1 + rkid_len + 1 + skid_len + ENC_LEN + SIG_LEN + claims_len + TAG_LEN;
    PREFIX.len() + (4 * blob).div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(rkid: &str, skid: &str, tail: usize) -> Vec<u8> {
        let mut b = header(rkid, skid);
        b.extend(std::iter::repeat_n(7u8, tail));
        b
    }

    #[test]
    fn header_bytes_and_split() {
        assert_eq!(header("r", "sk"), [1, 2, 1, b'r', 2, b's', b'k']);
        let b = blob("relay-1", "signer-1", ENC_LEN + SIG_LEN + TAG_LEN + 5);
        let p = split(&b).unwrap();
        assert_eq!(p.header, header("relay-1", "signer-1").as_slice());
        assert_eq!((p.rkid, p.skid), (&b"relay-1"[..], &b"signer-1"[..]));
        assert_eq!(p.enc.len(), ENC_LEN);
        assert_eq!(p.ct.len(), SIG_LEN + TAG_LEN + 5);
    }

    #[test]
    fn split_refuses_every_short_or_odd_blob() {
        let min = ENC_LEN + SIG_LEN + TAG_LEN;
        assert!(split(&blob("r", "s", min)).is_some());
        assert!(split(&blob("r", "s", min - 1)).is_none());
        let long = "k".repeat(32);
        assert!(split(&blob(&long, &long, min)).is_some());
        for cut in 0..header("r", "s").len() {
            assert!(split(&blob("r", "s", min)[..cut]).is_none());
        }
        let mut b = blob("r", "s", min);
        b[1] = 1;
        assert!(split(&b).is_none(), "mode 0x01");
        let mut b = blob("r", "s", min);
        b[0] = 2;
        assert!(split(&b).is_none(), "version 2");
        for bad_len in [0u8, 33, 255] {
            let mut b = blob("r", "s", min + 40);
            b[2] = bad_len;
            assert!(split(&b).is_none(), "rkid_len {bad_len}");
            let mut b = blob("r", "s", min + 40);
            b[4] = bad_len;
            assert!(split(&b).is_none(), "skid_len {bad_len}");
        }
    }

    #[test]
    fn token_len_matches_the_formula() {
        // 4 + ceil(4 * (2 + 1 + 2 + 1 + 3 + 65 + 64 + 10 + 16) / 3)
        assert_eq!(token_len(2, 3, 10), 4 + (4 * 164usize).div_ceil(3));
    }
}
