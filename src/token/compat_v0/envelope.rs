//! The envelope of a `relayapi-sdk` 1.0.0 token: unpadded base64url of `IV (16 bytes) || AES-CBC
//! ciphertext` of the PKCS#7-padded plaintext, with no MAC. Opening it decodes, decrypts every block
//! and checks the padding without an early exit, so that a bad padding costs the same work as a good
//! one; the caller parses the plaintext whatever the padding said and only then combines the verdicts
//! (`token/compat_v0/tenants.rs`). Pure code: the key comes in, nothing is logged.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};
use zeroize::Zeroizing;

/// AES block and IV length.
pub const BLOCK: usize = 16;

/// Longest token text accepted, in characters: the SDK's plaintext is about 250 bytes plus the API key;
/// 4 KiB of text (about 3 KiB of ciphertext) leaves room for any real key and bounds the work an
/// attacker can ask for.
pub const MAX_TOKEN_TEXT: usize = 4096;

/// Shortest token: an IV and one block.
const MIN_BLOB: usize = 2 * BLOCK;

/// The decrypted blocks, and whether the PKCS#7 padding was valid (as a constant-time [`Choice`]).
/// `plaintext()` is the text without its padding when it was valid, else the whole decrypted text, so
/// the caller parses something of the same size either way.
pub struct Opened {
    data: Zeroizing<Vec<u8>>,
    len: usize,
    pub padding_ok: Choice,
}

impl Opened {
    pub fn plaintext(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

enum Cipher {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl Cipher {
    fn new(key: &[u8]) -> Option<Cipher> {
        match key.len() {
            16 => Aes128::new_from_slice(key).ok().map(Cipher::A128),
            24 => Aes192::new_from_slice(key).ok().map(Cipher::A192),
            32 => Aes256::new_from_slice(key).ok().map(Cipher::A256),
            _ => None,
        }
    }

    fn decrypt(&self, block: &mut [u8; BLOCK]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Cipher::A128(c) => c.decrypt_block(b),
            Cipher::A192(c) => c.decrypt_block(b),
            Cipher::A256(c) => c.decrypt_block(b),
        }
    }
}

/// Decodes the token text into `IV || ciphertext`: `None` when it is not canonical unpadded base64url,
/// too long, or not an IV plus at least one whole block. All of this is about the text the client
/// sent, which the client already knows, so exiting early here tells it nothing about the key or the
/// plaintext.
pub fn decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if text.len() > MAX_TOKEN_TEXT {
        return None;
    }
    let blob = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).ok()?);
    (blob.len() >= MIN_BLOB && blob.len() % BLOCK == 0).then_some(blob)
}

/// AES-CBC decrypts `blob` (`IV || ciphertext`, a whole number of blocks, at least two) under `key`
/// (16, 24 or 32 bytes) and checks the PKCS#7 padding in constant time. Every block is decrypted and
/// every possible padding byte examined whatever the data holds. `None` only for a blob or key of an
/// impossible shape, which [`decode`] and the `.rai` loader already exclude.
pub fn open(key: &[u8], blob: &[u8]) -> Option<Opened> {
    if blob.len() < MIN_BLOB || blob.len() % BLOCK != 0 {
        return None;
    }
    let cipher = Cipher::new(key)?;
    let (iv, ct) = blob.split_at(BLOCK);
    let mut data = Zeroizing::new(vec![0u8; ct.len()]);
    let mut prev = [0u8; BLOCK];
    prev.copy_from_slice(iv);
    for (i, chunk) in ct.chunks_exact(BLOCK).enumerate() {
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(chunk);
        cipher.decrypt(&mut block);
        for (j, b) in block.iter().enumerate() {
            data[i * BLOCK + j] = b ^ prev[j];
        }
        prev.copy_from_slice(chunk);
    }
    let (padding_ok, pad) = check_padding(&data);
    // Constant-time select of the unpadded length: valid padding drops `pad` bytes, invalid keeps all.
    let n = data.len() as u64;
    let keep = u64::conditional_select(&n, &n.wrapping_sub(u64::from(pad)), padding_ok);
    Some(Opened {
        data,
        len: keep as usize,
        padding_ok,
    })
}

/// PKCS#7 on the last block: the last byte `p` must be 1..=16 and the last `p` bytes all equal `p`.
/// Looks at all 16 bytes of the last block every time.
fn check_padding(data: &[u8]) -> (Choice, u8) {
    let last = &data[data.len() - BLOCK..];
    let p = last[BLOCK - 1];
    let mut ok = !p.ct_eq(&0) & p.ct_lt(&(BLOCK as u8 + 1));
    for (i, b) in last.iter().enumerate() {
        // Byte i of the last block is padding when it is among the last `p` bytes: BLOCK - i <= p.
        let in_pad = !p.ct_lt(&((BLOCK - i) as u8));
        ok &= !in_pad | b.ct_eq(&p);
    }
    (ok, p)
}

/// Mints a v0 envelope as the SDK does (pycryptodome `pad` + `AES.MODE_CBC`, IV first, unpadded
/// base64url), for tests and the fuzz target only: the relay itself never mints this format. Panics on
/// a key that is not 16, 24 or 32 bytes.
#[doc(hidden)]
pub fn seal(key: &[u8], iv: [u8; 16], plaintext: &[u8]) -> String {
    let p = BLOCK - plaintext.len() % BLOCK;
    let mut data = plaintext.to_vec();
    data.extend(std::iter::repeat_n(p as u8, p));
    let mut out = iv.to_vec();
    let mut prev = iv;
    for chunk in data.chunks_exact(BLOCK) {
        let mut block = [0u8; BLOCK];
        for j in 0..BLOCK {
            block[j] = chunk[j] ^ prev[j];
        }
        let b = GenericArray::from_mut_slice(&mut block);
        match key.len() {
            16 => Aes128::new_from_slice(key).unwrap().encrypt_block(b),
            24 => Aes192::new_from_slice(key).unwrap().encrypt_block(b),
            _ => Aes256::new_from_slice(key).unwrap().encrypt_block(b),
        }
        out.extend_from_slice(&block);
        prev = block;
    }
    URL_SAFE_NO_PAD.encode(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_key_size_and_length() {
        for klen in [16, 24, 32] {
            let key = vec![7u8; klen];
            for len in 0..50 {
                let pt: Vec<u8> = (0..len as u8).collect();
                let t = seal(&key, [9; 16], &pt);
                let o = open(&key, &decode(&t).unwrap()).unwrap();
                assert!(bool::from(o.padding_ok));
                assert_eq!(o.plaintext(), &pt[..]);
            }
        }
    }

    /// A known-answer test: NIST SP 800-38A F.2.6 (CBC-AES256.Decrypt), first block.
    #[test]
    fn matches_sp800_38a() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let mut blob = hex("000102030405060708090a0b0c0d0e0f");
        blob.extend(hex("f58c4c04d6e5f1ba779eabfb5f7bfbd6"));
        let o = open(&key, &blob).unwrap();
        assert_eq!(o.data.to_vec(), hex("6bc1bee22e409f96e93d7e117393172a"));
        assert!(!bool::from(o.padding_ok), "0x2a is not a PKCS#7 pad byte");
        assert_eq!(o.plaintext().len(), 16, "invalid padding keeps every byte");
    }

    #[test]
    fn padding_rules() {
        let mut d = vec![0u8; 32];
        let check = |d: &[u8]| bool::from(check_padding(d).0);
        for p in 1..=16u8 {
            d[32 - p as usize..].fill(p);
            assert!(check(&d), "{p}");
            if p > 1 {
                d[32 - p as usize] = p + 1;
                assert!(!check(&d), "{p} with one wrong byte");
            }
            d.fill(0);
        }
        d[31] = 0;
        assert!(!check(&d));
        d[31] = 17;
        assert!(!check(&d));
        // A pad of 16 looks at the whole block only, never the block before it.
        d[16..].fill(16);
        d[15] = 99;
        assert!(check(&d));
    }

    #[test]
    fn decode_refuses_odd_shapes() {
        let ok = URL_SAFE_NO_PAD.encode([0u8; 32]);
        assert!(decode(&ok).is_some());
        assert!(decode(&URL_SAFE_NO_PAD.encode([0u8; 16])).is_none());
        assert!(decode(&URL_SAFE_NO_PAD.encode([0u8; 40])).is_none());
        assert!(decode(&format!("{ok}=")).is_none());
        assert!(decode(&ok.replace('A', "+")).is_none());
        assert!(decode(&"A".repeat(MAX_TOKEN_TEXT + 1)).is_none());
        assert!(open(&[0u8; 20], &[0u8; 32]).is_none());
    }
}
