//! Reading a `.rai` client config (`docs/client-config.md`) from its text: every rule of the document,
//! with errors that name the field and say what a valid value looks like, never repeating a value from
//! the file (it may be the key). The host, base path and identifier rules are `text/`'s; reading files
//! and writing new ones is `token/rai_file.rs`'s.

use std::path::Path;

use crate::text::file_error::FileError;
use crate::text::grammar::{is_base_path, is_key_id, is_tenant_id};
use crate::text::host::is_public_host;
use crate::text::strict_json::{json_within_rules, Json, Object};
use crate::token::ecc::rai_parse::{is_ecc, parse_ecc_crypto, EccCrypto};
use crate::token::keyring::KeyWindow;
use crate::token::rai_window::take_window;
use crate::token::secret::SecretKey;

/// The `crypto.method` of symmetric files: token format v1, mode `0x01` (ecc files are
/// `token/ecc/rai_parse.rs`'s).
pub const METHOD: &str = "aes-256-gcm-hkdf-sha256";

/// A `.rai` is a few hundred bytes; refusing big files keeps a wrong path (a log, a binary) from being
/// read into memory whole.
pub const MAX_RAI_BYTES: u64 = 64 * 1024;

/// Rotation keeps one or two old keys; a long list is a sign of a mistake, and every key is a key that
/// can still mint.
const MAX_PREVIOUS_KEYS: usize = 16;

const DEFAULT_SCHEME: &str = "http";
pub const DEFAULT_BASE_PATH: &str = "/relayapi/";

/// A parsed and checked `.rai` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaiConfig {
    pub version: u32,
    pub server: RaiServer,
    pub crypto: RaiCrypto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaiServer {
    /// `"http"` or `"https"`.
    pub scheme: String,
    /// Host name, IPv4 address or bare IPv6 address (no brackets).
    pub host: String,
    pub port: u16,
    /// Starts and ends with `/`.
    pub base_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaiCrypto {
    pub method: String,
    pub key_id: String,
    pub key: SecretKey,
    pub tenant_id: String,
    /// When `key` may mint and verify (`not_before` / `not_after`; open when absent).
    pub window: KeyWindow,
    /// Older keys of the same tenant: the relay still verifies with them, SDKs never mint with them.
    pub previous_keys: Vec<RaiKey>,
}

/// A `.rai` of either method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaiFile {
    Symmetric(RaiConfig),
    Ecc(EccRaiConfig),
}

/// A parsed and checked ecc `.rai` file, relay side or backend side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccRaiConfig {
    pub version: u32,
    pub server: RaiServer,
    pub crypto: EccCrypto,
}

impl RaiFile {
    pub fn server(&self) -> &RaiServer {
        match self {
            RaiFile::Symmetric(r) => &r.server,
            RaiFile::Ecc(r) => &r.server,
        }
    }

    pub fn tenant_id(&self) -> &str {
        match self {
            RaiFile::Symmetric(r) => &r.crypto.tenant_id,
            RaiFile::Ecc(r) => match &r.crypto {
                EccCrypto::Relay(c) => &c.tenant_id,
                EccCrypto::Backend(c) => &c.tenant_id,
            },
        }
    }
}

/// A previous key of a `.rai`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaiKey {
    pub key_id: String,
    pub key: SecretKey,
    pub window: KeyWindow,
}

/// Parses and checks the text of a symmetric `.rai` file; `file` only labels errors. An ecc file is
/// refused (naming `crypto.method`): read those with [`parse_rai_any`].
pub fn parse_rai(text: &str, file: &Path) -> Result<RaiConfig, FileError> {
    match parse_rai_any(text, file)? {
        RaiFile::Symmetric(r) => Ok(r),
        RaiFile::Ecc(_) => Err(FileError::new(
            file,
            "crypto.method",
            "expected \"aes-256-gcm-hkdf-sha256\" here (this is an ecc-p256 file, which this tool does not read)",
        )),
    }
}

/// Parses and checks the text of a `.rai` file of either method; `file` only labels errors.
pub fn parse_rai_any(text: &str, file: &Path) -> Result<RaiFile, FileError> {
    let err =
        |field: &str, expected: &str| FileError::new(file, field, format!("expected {expected}"));
    // docs/client-config.md rule 1: the size limit (also checked before reading a file), and the JSON
    // rules of token claims (§7.1) that serde_json does not apply.
    if text.len() as u64 > MAX_RAI_BYTES {
        return Err(err(
            "",
            &format!("a .rai file of at most {MAX_RAI_BYTES} bytes"),
        ));
    }
    if text.starts_with('\u{feff}') {
        return Err(err(
            "",
            "UTF-8 JSON without a byte-order mark (save the file without BOM)",
        ));
    }
    if !json_within_rules(text) {
        return Err(err(
            "",
            "a JSON object nested at most 16 levels deep, as in docs/client-config.md",
        ));
    }
    // serde_json's own messages can quote values from the file (the key among them), so only its
    // position survives.
    let root: Json = serde_json::from_str(text).map_err(|e| {
        err(
            "",
            &format!(
                "a JSON object as in docs/client-config.md (syntax error at line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let mut top =
        Object::new(&root, "", &["version", "server", "crypto"]).map_err(|(f, x)| err(&f, &x))?;

    let version = match top.take("version") {
        Some(Json::Int(1)) => 1,
        None => return Err(err("version", "the integer 1 (this field is required)")),
        Some(_) => return Err(err("version", "the integer 1")),
    };

    let server_json = top
        .take("server")
        .ok_or_else(|| err("server", "an object (this field is required)"))?;
    let mut server = Object::new(
        server_json,
        "server",
        &["scheme", "host", "port", "base_path"],
    )
    .map_err(|(f, x)| err(&f, &x))?;
    let scheme = match server.take("scheme") {
        None => DEFAULT_SCHEME.to_owned(),
        Some(Json::Str(s)) if s.as_str() == "http" || s.as_str() == "https" => s.to_string(),
        Some(_) => return Err(err("server.scheme", "\"http\" or \"https\"")),
    };
    let host = match server.take("host") {
        Some(Json::Str(s)) if is_public_host(s) => s.to_string(),
        None => return Err(err("server.host", "the relay's public host name or IP address (this field is required)")),
        Some(_) => {
            return Err(err(
                "server.host",
                "a host name (letters, digits, `-` and `.`), an IPv4 address or an IPv6 address without brackets",
            ))
        }
    };
    let port = match server.take("port") {
        Some(Json::Int(p)) if (1..=65535).contains(p) => *p as u16,
        None => {
            return Err(err(
                "server.port",
                "an integer from 1 to 65535 (this field is required)",
            ))
        }
        Some(_) => return Err(err("server.port", "an integer from 1 to 65535")),
    };
    let base_path = match server.take("base_path") {
        None => DEFAULT_BASE_PATH.to_owned(),
        Some(Json::Str(s)) if is_base_path(s) => s.to_string(),
        Some(_) => {
            return Err(err(
                "server.base_path",
                "a path that starts and ends with `/`, such as \"/relayapi/\" (at most 128 characters, no `?`, `#`, `%`, spaces, `//`, `.` or `..` segments)",
            ))
        }
    };

    let crypto_json = top
        .take("crypto")
        .ok_or_else(|| err("crypto", "an object (this field is required)"))?;
    if is_ecc(crypto_json) {
        let crypto = parse_ecc_crypto(crypto_json).map_err(|(f, x)| err(&f, &x))?;
        let server = RaiServer {
            scheme,
            host,
            port,
            base_path,
        };
        return Ok(RaiFile::Ecc(EccRaiConfig {
            version,
            server,
            crypto,
        }));
    }
    let mut crypto = Object::new(
        crypto_json,
        "crypto",
        &[
            "method",
            "key_id",
            "key",
            "tenant_id",
            "previous_keys",
            "not_before",
            "not_after",
        ],
    )
    .map_err(|(f, x)| err(&f, &x))?;
    let method =
        match crypto.take("method") {
            Some(Json::Str(s)) if s.as_str() == METHOD => METHOD.to_owned(),
            None => {
                return Err(err(
                    "crypto.method",
                    "\"aes-256-gcm-hkdf-sha256\" or \"ecc-p256\" (this field is required)",
                ))
            }
            Some(_) => return Err(err(
                "crypto.method",
                "\"aes-256-gcm-hkdf-sha256\" (token format v1, symmetric) or \"ecc-p256\" (ecc)",
            )),
        };
    let key_id = take_key_id(&mut crypto, "crypto").map_err(|(f, x)| err(&f, &x))?;
    let key = take_key(&mut crypto, "crypto").map_err(|(f, x)| err(&f, &x))?;
    let tenant_id = match crypto.take("tenant_id") {
        Some(Json::Str(s)) if is_tenant_id(s) => s.to_string(),
        None => {
            return Err(err(
                "crypto.tenant_id",
                "1 to 64 characters from A-Z a-z 0-9 . _ - (this field is required)",
            ))
        }
        Some(_) => {
            return Err(err(
                "crypto.tenant_id",
                "1 to 64 characters from A-Z a-z 0-9 . _ -",
            ))
        }
    };
    let window = take_window(&mut crypto, "crypto").map_err(|(f, x)| err(&f, &x))?;
    let mut previous_keys: Vec<RaiKey> = Vec::new();
    match crypto.take("previous_keys") {
        None => {}
        Some(Json::Array(items)) if items.len() <= MAX_PREVIOUS_KEYS => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("crypto.previous_keys[{i}]");
                let mut obj =
                    Object::new(item, &path, &["key_id", "key", "not_before", "not_after"])
                        .map_err(|(f, x)| err(&f, &x))?;
                let kid = take_key_id(&mut obj, &path).map_err(|(f, x)| err(&f, &x))?;
                let k = take_key(&mut obj, &path).map_err(|(f, x)| err(&f, &x))?;
                if kid == key_id || previous_keys.iter().any(|p| p.key_id == kid) {
                    return Err(err(
                        &format!("{path}.key_id"),
                        "a key id that appears only once in this file",
                    ));
                }
                let window = take_window(&mut obj, &path).map_err(|(f, x)| err(&f, &x))?;
                previous_keys.push(RaiKey {
                    key_id: kid,
                    key: k,
                    window,
                });
            }
        }
        Some(_) => {
            return Err(err(
                "crypto.previous_keys",
                "an array of at most 16 objects {\"key_id\": ..., \"key\": ...}",
            ))
        }
    }

    Ok(RaiFile::Symmetric(RaiConfig {
        version,
        server: RaiServer {
            scheme,
            host,
            port,
            base_path,
        },
        crypto: RaiCrypto {
            method,
            key_id,
            key,
            tenant_id,
            window,
            previous_keys,
        },
    }))
}

fn take_key_id(obj: &mut Object<'_>, path: &str) -> Result<String, (String, String)> {
    let field = format!("{path}.key_id");
    match obj.take("key_id") {
        Some(Json::Str(s)) if is_key_id(s) => Ok(s.to_string()),
        None => Err((
            field,
            "1 to 32 characters from A-Z a-z 0-9 . _ - (this field is required)".into(),
        )),
        Some(_) => Err((field, "1 to 32 characters from A-Z a-z 0-9 . _ -".into())),
    }
}

fn take_key(obj: &mut Object<'_>, path: &str) -> Result<SecretKey, (String, String)> {
    let field = format!("{path}.key");
    let expected = "exactly 32 bytes as unpadded base64url: 43 characters from A-Z a-z 0-9 - _ (generate one with `relayapi gen-rai`)";
    match obj.take("key") {
        Some(Json::Str(s)) => SecretKey::from_base64url(s).ok_or((field, expected.into())),
        None => Err((field, format!("{expected}; this field is required"))),
        Some(_) => Err((field, expected.into())),
    }
}
