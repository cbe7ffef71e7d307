//! The original RelayAPI's `.rai` file (what `relayapi-sdk` 1.0.0 reads): `crypto.method` `"aes"`,
//! `crypto.aes_key` (hex, 16, 24 or 32 bytes) and `crypto.aes_iv_seed` (text), and the `rai_hash` its
//! SDK puts in every URL: lower-case hex SHA-256 of `method + aes_key + aes_iv_seed` as written in the
//! file. Loud, specific errors for the operator (file and field, never the value); the token envelope
//! is `token/compat_v0/envelope.rs`'s.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::text::file_error::FileError;

/// Largest original `.rai` read: the real ones are a few hundred bytes.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The only method the published SDK mints with (it raises on anything else).
pub const METHOD: &str = "aes";

/// An AES key of the original format: 16, 24 or 32 bytes (AES-128/192/256, by the hex length the
/// operator generated).
pub struct AesKey(Zeroizing<Vec<u8>>);

impl AesKey {
    /// Accepts only the three AES key lengths; the original silently used whatever `bytes.fromhex` gave.
    pub fn from_bytes(bytes: &[u8]) -> Option<AesKey> {
        matches!(bytes.len(), 16 | 24 | 32).then(|| AesKey(Zeroizing::new(bytes.to_vec())))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey([redacted])")
    }
}

/// What the relay needs from an original `.rai`: the key and the file's `rai_hash`.
#[derive(Debug)]
pub struct OriginalRai {
    pub key: AesKey,
    /// 64 lower-case hex digits, as the SDK sends it.
    pub rai_hash: String,
}

/// Reads and checks an original `.rai` file.
pub fn load(path: &Path) -> Result<OriginalRai, FileError> {
    let whole = |what: String| FileError::whole(path, format!("expected {what}"));
    let meta = std::fs::metadata(path).map_err(|e| whole(format!("a readable file ({e})")))?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(whole(format!(
            "a regular file of at most {MAX_FILE_BYTES} bytes"
        )));
    }
    let bytes =
        Zeroizing::new(std::fs::read(path).map_err(|e| whole(format!("a readable file ({e})")))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| whole("UTF-8 text".into()))?;
    parse(text, path)
}

/// Parses the text of an original `.rai` (`path` names it in errors). Members other than the three
/// `crypto` ones (`server`, ...) are the SDK's business and ignored.
pub fn parse(text: &str, path: &Path) -> Result<OriginalRai, FileError> {
    let field = |name: &str, what: &str| FileError {
        file: path.to_path_buf(),
        field: name.into(),
        problem: format!("expected {what}"),
    };
    let doc: Zeroizing<String> = Zeroizing::new(text.to_owned());
    let v: Value = serde_json::from_str(&doc).map_err(|_| {
        FileError::whole(path, "expected a JSON object (the original RelayAPI .rai)")
    })?;
    let crypto = v
        .get("crypto")
        .and_then(Value::as_object)
        .ok_or_else(|| field("crypto", "an object"))?;
    let text_of = |name: &'static str| {
        crypto
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| field(&format!("crypto.{name}"), "a string"))
    };
    if text_of("method")? != METHOD {
        return Err(field(
            "crypto.method",
            "\"aes\" (relayapi-sdk 1.0.0 mints with AES only)",
        ));
    }
    let hex_key = text_of("aes_key")?;
    let seed = text_of("aes_iv_seed")?;
    let key = decode_hex(hex_key)
        .and_then(|b| AesKey::from_bytes(&b))
        .ok_or_else(|| {
            field(
                "crypto.aes_key",
                "32, 48 or 64 hex digits (an AES-128/192/256 key)",
            )
        })?;
    // The SDK XORs its random IV with the seed byte by byte and truncates to the shorter: a seed under
    // 16 bytes makes it fail to mint at all, so such a file cannot be one in use.
    if seed.len() < 16 {
        return Err(field("crypto.aes_iv_seed", "at least 16 characters"));
    }
    Ok(OriginalRai {
        key,
        rai_hash: rai_hash(METHOD, hex_key, seed),
    })
}

/// The SDK's `rai_hash`: `sha256((method + aes_key + aes_iv_seed).encode()).hexdigest()`.
pub fn rai_hash(method: &str, hex_key: &str, seed: &str) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(hex_key.as_bytes());
    h.update(seed.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex (either case, as Python's `bytes.fromhex` takes it, without its whitespace leniency).
fn decode_hex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for pair in s.as_bytes().chunks(2) {
        out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn text(method: &str, key: &str, seed: &str) -> String {
        format!(
            r#"{{"server":{{"host":"http://127.0.0.1","port":8840,"base_path":"/relayapi/"}},"crypto":{{"method":"{method}","aes_key":"{key}","aes_iv_seed":"{seed}"}}}}"#
        )
    }

    #[test]
    fn reads_the_sdk_file_and_its_hash() {
        let r = parse(&text("aes", KEY, "0123456789abcdef"), Path::new("o.rai")).unwrap();
        assert_eq!(r.key.expose().len(), 32);
        assert_eq!(r.key.expose()[31], 0x1f);
        // Python: hashlib.sha256(("aes" + KEY + "0123456789abcdef").encode()).hexdigest()
        assert_eq!(r.rai_hash, rai_hash("aes", KEY, "0123456789abcdef"));
        assert_eq!(r.rai_hash.len(), 64);
    }

    #[test]
    fn refuses_what_the_sdk_could_not_mint_with() {
        let p = Path::new("o.rai");
        assert!(parse(&text("ecc", KEY, "0123456789abcdef"), p).is_err());
        assert!(parse(&text("aes", &KEY[..62], "0123456789abcdef"), p).is_err());
        assert!(parse(&text("aes", &KEY[..40], "0123456789abcdef"), p).is_err());
        assert!(parse(&text("aes", &KEY.replace('0', "g"), "0123456789abcdef"), p).is_err());
        assert!(parse(&text("aes", KEY, "short"), p).is_err());
        assert!(parse("[]", p).is_err());
        assert!(parse(&text("aes", &KEY[..32], "0123456789abcdef"), p).is_ok());
        assert!(parse(&text("aes", &KEY[..48], "0123456789abcdef"), p).is_ok());
    }

    #[test]
    fn errors_never_repeat_the_key() {
        let e = parse(
            &text("aes", &KEY[..62], "0123456789abcdef"),
            Path::new("o.rai"),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains(&KEY[..20]), "{e}");
    }
}
