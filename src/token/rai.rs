//! The `.rai` client config (`docs/client-config.md`): parsing and checking it, generating new ones,
//! writing them out, and the [`Keyring`] of tenant keys that the relay verifies tokens with.
//!
//! A broken `.rai` is an operator's mistake found at start-up, so errors here are loud and specific
//! (file, field, what a valid value looks like), unlike token errors. They never repeat a value from the
//! file: the value may be the key. Token decoding is `token/format.rs`'s job; reading `config.json` is
//! `config/mod.rs`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::token::secret::{SecretKey, KEY_LEN};

/// The only `crypto.method`: token format v1.
pub const METHOD: &str = "aes-256-gcm-hkdf-sha256";

/// A `.rai` is a few hundred bytes; refusing big files keeps a wrong path (a log, a binary) from being
/// read into memory whole.
const MAX_RAI_BYTES: u64 = 64 * 1024;

/// Rotation keeps one or two old keys; a long list is a sign of a mistake, and every key is a key that
/// can still mint.
const MAX_PREVIOUS_KEYS: usize = 16;

const DEFAULT_SCHEME: &str = "http";
const DEFAULT_BASE_PATH: &str = "/relayapi/";
const MAX_HOST_LEN: usize = 253;
const MAX_BASE_PATH_LEN: usize = 128;

/// The phrase whose SHA-256 is the published development key in the repository's `default.rai`.
const DEV_KEY_PHRASE: &[u8] = b"relayapi published development key, never use in production";

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
    /// Older keys of the same tenant, `(key_id, key)`: the relay still verifies with them.
    pub previous_keys: Vec<(String, SecretKey)>,
}

/// A problem with a `.rai` file, written for the operator who has to fix it.
#[derive(Debug)]
pub struct RaiError {
    pub file: PathBuf,
    /// Dotted path of the offending field (`crypto.previous_keys[0].key`); empty when the problem is the
    /// file as a whole (unreadable, not JSON).
    pub field: String,
    /// What a valid value looks like.
    pub expected: String,
}

impl fmt::Display for RaiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: expected {}", self.file.display(), self.expected)
        } else {
            write!(
                f,
                "{}: field `{}`: expected {}",
                self.file.display(),
                self.field,
                self.expected
            )
        }
    }
}

impl std::error::Error for RaiError {}

/// Key ids: 1 to 32 characters from `A-Z a-z 0-9 . _ -` (token format §2).
pub fn is_valid_key_id(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(is_id_byte)
}

/// Tenant ids: 1 to 64 characters from `A-Z a-z 0-9 . _ -` (token format §2).
pub fn is_valid_tenant_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(is_id_byte)
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// The tenant keys a relay verifies with, by key id.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, (String, SecretKey)>,
}

impl Keyring {
    pub fn new() -> Self {
        Keyring::default()
    }

    /// Adds a key. Errors (a sentence for the operator) on an invalid key id or tenant id, and on a key
    /// id that is already loaded: two keys under one id would make verification depend on load order.
    pub fn insert(&mut self, kid: &str, tenant: &str, key: SecretKey) -> Result<(), String> {
        if !is_valid_key_id(kid) {
            return Err("key id must be 1 to 32 characters from A-Z a-z 0-9 . _ -".into());
        }
        if !is_valid_tenant_id(tenant) {
            return Err("tenant id must be 1 to 64 characters from A-Z a-z 0-9 . _ -".into());
        }
        if self.keys.contains_key(kid) {
            return Err(format!("key id `{kid}` is already loaded"));
        }
        self.keys.insert(kid.to_owned(), (tenant.to_owned(), key));
        Ok(())
    }

    /// The tenant and key for a key id.
    pub fn get(&self, kid: &str) -> Option<(&str, &SecretKey)> {
        self.keys
            .get(kid)
            .map(|(tenant, key)| (tenant.as_str(), key))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether any loaded key is the published development key (the relay refuses that on public
    /// addresses).
    pub fn contains_published_dev_key(&self) -> bool {
        self.keys.values().any(|(_, key)| is_published_dev_key(key))
    }
}

/// Parses and checks the text of a `.rai` file; `file` only labels errors.
pub fn parse_rai(text: &str, file: &Path) -> Result<RaiConfig, RaiError> {
    let err = |field: &str, expected: &str| RaiError {
        file: file.to_path_buf(),
        field: field.to_owned(),
        expected: expected.to_owned(),
    };
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
    if !crate::token::format::json_within_rules(text) {
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
        Some(Json::Str(s)) if is_valid_host(s) => s.to_string(),
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
        Some(Json::Str(s)) if is_valid_base_path(s) => s.to_string(),
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
    let mut crypto = Object::new(
        crypto_json,
        "crypto",
        &["method", "key_id", "key", "tenant_id", "previous_keys"],
    )
    .map_err(|(f, x)| err(&f, &x))?;
    let method = match crypto.take("method") {
        Some(Json::Str(s)) if s.as_str() == METHOD => METHOD.to_owned(),
        None => {
            return Err(err(
                "crypto.method",
                "\"aes-256-gcm-hkdf-sha256\" (this field is required)",
            ))
        }
        Some(_) => {
            return Err(err(
                "crypto.method",
                "\"aes-256-gcm-hkdf-sha256\" (token format v1)",
            ))
        }
    };
    let key_id = take_key_id(&mut crypto, "crypto").map_err(|(f, x)| err(&f, &x))?;
    let key = take_key(&mut crypto, "crypto").map_err(|(f, x)| err(&f, &x))?;
    let tenant_id = match crypto.take("tenant_id") {
        Some(Json::Str(s)) if is_valid_tenant_id(s) => s.to_string(),
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
    let mut previous_keys: Vec<(String, SecretKey)> = Vec::new();
    match crypto.take("previous_keys") {
        None => {}
        Some(Json::Array(items)) if items.len() <= MAX_PREVIOUS_KEYS => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("crypto.previous_keys[{i}]");
                let mut obj =
                    Object::new(item, &path, &["key_id", "key"]).map_err(|(f, x)| err(&f, &x))?;
                let kid = take_key_id(&mut obj, &path).map_err(|(f, x)| err(&f, &x))?;
                let k = take_key(&mut obj, &path).map_err(|(f, x)| err(&f, &x))?;
                if kid == key_id || previous_keys.iter().any(|(other, _)| *other == kid) {
                    return Err(err(
                        &format!("{path}.key_id"),
                        "a key id that appears only once in this file",
                    ));
                }
                previous_keys.push((kid, k));
            }
        }
        Some(_) => {
            return Err(err(
                "crypto.previous_keys",
                "an array of at most 16 objects {\"key_id\": ..., \"key\": ...}",
            ))
        }
    }

    Ok(RaiConfig {
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
            previous_keys,
        },
    })
}

fn take_key_id(obj: &mut Object<'_>, path: &str) -> Result<String, (String, String)> {
    let field = format!("{path}.key_id");
    match obj.take("key_id") {
        Some(Json::Str(s)) if is_valid_key_id(s) => Ok(s.to_string()),
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

/// `docs/client-config.md` rule 3: a DNS name (letters, digits, hyphens; dot-separated non-empty labels),
/// an IPv4 address or a bare IPv6 address. A name whose last label is all digits is never a DNS name, so
/// it must be an IPv4 address (`010.0.0.1` and `1.2.3` are refused). The SDKs add brackets around IPv6
/// when they build URLs.
fn is_valid_host(host: &str) -> bool {
    if host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    let numeric_tld = host
        .rsplit('.')
        .next()
        .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    !host.is_empty()
        && !numeric_tld
        && host.len() <= MAX_HOST_LEN
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Starts and ends with `/`, and every segment is plain RFC 3986 path text that no client or proxy would
/// rewrite (no dot segments, no empty segments, no percent-escapes).
fn is_valid_base_path(p: &str) -> bool {
    let segment_ok = |seg: &str| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b))
    };
    if p == "/" {
        return true;
    }
    p.len() <= MAX_BASE_PATH_LEN
        && p.len() >= 2
        && p.starts_with('/')
        && p.ends_with('/')
        && p[1..p.len() - 1].split('/').all(segment_ok)
}

/// Reads and parses one `.rai` file.
pub fn load_rai_file(path: &Path) -> Result<RaiConfig, RaiError> {
    let err = |expected: String| RaiError {
        file: path.to_path_buf(),
        field: String::new(),
        expected,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("a readable .rai file ({e})")))?;
    if !meta.is_file() {
        return Err(err("a regular file".into()));
    }
    if meta.len() > MAX_RAI_BYTES {
        return Err(err(format!("a .rai file of at most {MAX_RAI_BYTES} bytes")));
    }
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| err(format!("a readable .rai file ({e})")))?,
    );
    let text = std::str::from_utf8(&bytes).map_err(|_| err("UTF-8 text".into()))?;
    parse_rai(text, path)
}

/// Loads a `.rai` file, or every `*.rai` file of a directory (sorted by name, one tenant each or
/// several files per tenant), into one key ring: each file's current key and its previous keys. A key id
/// that two files (or one file twice) use is an error, as is a directory without `.rai` files.
pub fn load_keyring(path: &Path) -> Result<(Keyring, Vec<RaiConfig>), RaiError> {
    let files = if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| RaiError {
            file: path.to_path_buf(),
            field: String::new(),
            expected: format!("a readable directory of .rai files ({e})"),
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| RaiError {
                file: path.to_path_buf(),
                field: String::new(),
                expected: format!("a readable directory of .rai files ({e})"),
            })?;
            let p = entry.path();
            if p.extension().is_some_and(|ext| ext == "rai") && p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(RaiError {
                file: path.to_path_buf(),
                field: String::new(),
                expected: "a directory with at least one *.rai file".into(),
            });
        }
        files
    } else {
        vec![path.to_path_buf()]
    };

    let mut ring = Keyring::new();
    // Which file loaded each key id, to name both files in a clash.
    let mut origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut configs = Vec::with_capacity(files.len());
    for file in files {
        let rai = load_rai_file(&file)?;
        let current = std::iter::once((
            "crypto.key_id".to_owned(),
            &rai.crypto.key_id,
            &rai.crypto.key,
        ));
        let previous = rai
            .crypto
            .previous_keys
            .iter()
            .enumerate()
            .map(|(i, (kid, key))| (format!("crypto.previous_keys[{i}].key_id"), kid, key));
        for (field, kid, key) in current.chain(previous) {
            if let Some(first) = origin.get(kid) {
                return Err(RaiError {
                    file: file.clone(),
                    field,
                    expected: format!(
                        "a key id not already loaded (`{kid}` is also in {}); every key needs its own id",
                        first.display()
                    ),
                });
            }
            ring.insert(kid, &rai.crypto.tenant_id, key.clone())
                .map_err(|e| RaiError {
                    file: file.clone(),
                    field: field.clone(),
                    expected: e,
                })?;
            origin.insert(kid.clone(), file.clone());
        }
        configs.push(rai);
    }
    Ok((ring, configs))
}

/// A new `.rai` with a fresh key from `rng` (use `token::os_rng()` outside tests), `base_path`
/// `/relayapi/` and no previous keys. Run the result through [`to_json_pretty`] and [`parse_rai`] to
/// check operator-supplied host, tenant and key id.
pub fn generate_rai(
    scheme: &str,
    host: &str,
    port: u16,
    tenant: &str,
    key_id: &str,
    rng: &mut dyn FnMut(&mut [u8]),
) -> RaiConfig {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    rng(bytes.as_mut());
    RaiConfig {
        version: 1,
        server: RaiServer {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            base_path: DEFAULT_BASE_PATH.to_owned(),
        },
        crypto: RaiCrypto {
            method: METHOD.to_owned(),
            key_id: key_id.to_owned(),
            key: SecretKey::from_bytes(*bytes),
            tenant_id: tenant.to_owned(),
            previous_keys: Vec::new(),
        },
    }
}

#[derive(Serialize)]
struct OutFile<'a> {
    version: u32,
    server: OutServer<'a>,
    crypto: OutCrypto<'a>,
}

#[derive(Serialize)]
struct OutServer<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
    base_path: &'a str,
}

#[derive(Serialize)]
struct OutCrypto<'a> {
    method: &'a str,
    key_id: &'a str,
    key: &'a str,
    tenant_id: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    previous_keys: Vec<OutPrevious<'a>>,
}

#[derive(Serialize)]
struct OutPrevious<'a> {
    key_id: &'a str,
    key: &'a str,
}

/// The file form of a `.rai`: pretty JSON, keys as unpadded base64url, a trailing newline. Contains the
/// keys in clear; write it with owner-only permissions.
pub fn to_json_pretty(r: &RaiConfig) -> String {
    let key = r.crypto.key.to_base64url();
    let previous: Vec<(&str, Zeroizing<String>)> = r
        .crypto
        .previous_keys
        .iter()
        .map(|(kid, k)| (kid.as_str(), k.to_base64url()))
        .collect();
    let out = OutFile {
        version: r.version,
        server: OutServer {
            scheme: &r.server.scheme,
            host: &r.server.host,
            port: r.server.port,
            base_path: &r.server.base_path,
        },
        crypto: OutCrypto {
            method: &r.crypto.method,
            key_id: &r.crypto.key_id,
            key: &key,
            tenant_id: &r.crypto.tenant_id,
            previous_keys: previous
                .iter()
                .map(|(kid, k)| OutPrevious {
                    key_id: kid,
                    key: k,
                })
                .collect(),
        },
    };
    // Plain structs of strings and integers always serialise.
    let mut text = serde_json::to_string_pretty(&out).expect("a .rai always serialises");
    text.push('\n');
    text
}

/// The published development key (SHA-256 of a fixed phrase, see `docs/client-config.md`): everyone has
/// it, so the relay refuses it on public addresses.
pub fn is_published_dev_key(key: &SecretKey) -> bool {
    let dev = SecretKey::from_bytes(Sha256::digest(DEV_KEY_PHRASE).into());
    *key == dev
}

/// A JSON value that keeps duplicate object members (serde_json's `Value` silently keeps the last one)
/// and distinguishes integers from other numbers, so the checks above can refuse both by field path.
enum Json {
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
struct Object<'a> {
    members: BTreeMap<&'a str, &'a Json>,
}

impl<'a> Object<'a> {
    /// Errors `(field, expected)` if `value` is not an object, or has an unknown or repeated member.
    fn new(value: &'a Json, path: &str, known: &[&str]) -> Result<Self, (String, String)> {
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

    fn take(&mut self, name: &str) -> Option<&'a Json> {
        self.members.remove(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "OdH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg4";
    const KEY_B: &str = "UcxyB0sPQ8uNWS6Zon2Q3kfUP0LKsMmCmaI4xKXfsjI";

    fn sample() -> String {
        format!(
            r#"{{
  "version": 1,
  "server": {{"scheme": "https", "host": "relay.example.com", "port": 443, "base_path": "/r/"}},
  "crypto": {{
    "method": "aes-256-gcm-hkdf-sha256",
    "key_id": "acme-2026-11",
    "key": "{KEY_A}",
    "tenant_id": "acme",
    "previous_keys": [{{"key_id": "acme-2026-05", "key": "{KEY_B}"}}]
  }}
}}"#
        )
    }

    fn parse(text: &str) -> Result<RaiConfig, RaiError> {
        parse_rai(text, Path::new("t.rai"))
    }

    /// Replaces the first occurrence of `from` in the sample.
    fn mutated(from: &str, to: &str) -> String {
        let s = sample();
        assert!(s.contains(from), "{from}");
        s.replacen(from, to, 1)
    }

    #[test]
    fn parses_the_documented_shape() {
        let r = parse(&sample()).unwrap();
        assert_eq!(r.version, 1);
        assert_eq!(r.server.scheme, "https");
        assert_eq!(r.server.host, "relay.example.com");
        assert_eq!(r.server.port, 443);
        assert_eq!(r.server.base_path, "/r/");
        assert_eq!(r.crypto.key_id, "acme-2026-11");
        assert_eq!(r.crypto.key, SecretKey::from_base64url(KEY_A).unwrap());
        assert_eq!(r.crypto.tenant_id, "acme");
        assert_eq!(r.crypto.previous_keys.len(), 1);
        assert_eq!(r.crypto.previous_keys[0].0, "acme-2026-05");
    }

    #[test]
    fn defaults_for_scheme_and_base_path() {
        let text = format!(
            r#"{{"version":1,"server":{{"host":"::1","port":8080}},"crypto":{{"method":"aes-256-gcm-hkdf-sha256","key_id":"k","key":"{KEY_A}","tenant_id":"t"}}}}"#
        );
        let r = parse(&text).unwrap();
        assert_eq!(r.server.scheme, "http");
        assert_eq!(r.server.base_path, "/relayapi/");
        assert!(r.crypto.previous_keys.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (mutated("\"version\": 1", "\"version\": 2"), "version"),
            (mutated("\"version\": 1", "\"version\": 1.0"), "version"),
            (mutated("\"version\": 1,", ""), "version"),
            (mutated("\"https\"", "\"ftp\""), "server.scheme"),
            (mutated("relay.example.com", "[::1]"), "server.host"),
            (
                mutated("relay.example.com", "relay..example.com"),
                "server.host",
            ),
            (
                mutated("relay.example.com", "relay.example.com/x"),
                "server.host",
            ),
            (mutated("443", "0"), "server.port"),
            (mutated("443", "65536"), "server.port"),
            (mutated("443", "-1"), "server.port"),
            (mutated("443", "\"443\""), "server.port"),
            (mutated("\"/r/\"", "\"/r\""), "server.base_path"),
            (mutated("\"/r/\"", "\"r/\""), "server.base_path"),
            (mutated("\"/r/\"", "\"/a/../\""), "server.base_path"),
            (mutated("\"/r/\"", "\"/a//b/\""), "server.base_path"),
            (mutated("\"/r/\"", "\"/r?x/\""), "server.base_path"),
            (
                mutated("aes-256-gcm-hkdf-sha256", "aes-256-cbc"),
                "crypto.method",
            ),
            (mutated("acme-2026-11", "acme 2026"), "crypto.key_id"),
            (mutated("acme-2026-11", &"k".repeat(33)), "crypto.key_id"),
            (mutated(KEY_A, &KEY_A[..42]), "crypto.key"),
            (mutated(KEY_A, &format!("{KEY_A}=")), "crypto.key"),
            (mutated(KEY_A, &KEY_A.replace('_', "/")), "crypto.key"),
            (mutated("\"acme\"", "\"\""), "crypto.tenant_id"),
            (mutated(KEY_B, "short"), "crypto.previous_keys[0].key"),
            (
                mutated("acme-2026-05", "acme-2026-11"),
                "crypto.previous_keys[0].key_id",
            ),
            (mutated("\"tenant_id\"", "\"tenant\""), "crypto.tenant"),
            (mutated("\"port\"", "\"prot\""), "server.prot"),
            (
                mutated("\"port\": 443", "\"port\": 443, \"port\": 444"),
                "server.port",
            ),
            (
                mutated("\"key_id\": \"acme-2026-05\", ", "\"kid\": \"x\", "),
                "crypto.previous_keys[0].kid",
            ),
            (
                mutated("\"version\": 1", "\"version\": 1, \"_comment\": \"x\""),
                "_comment",
            ),
            (
                mutated("\"previous_keys\": [", "\"previous_keys\": [1, "),
                "crypto.previous_keys[0]",
            ),
            (
                mutated("\"server\": {", "\"server\": [{").replacen("\"/r/\"}", "\"/r/\"}]", 1),
                "server",
            ),
        ];
        for (text, field) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{text}");
            assert_eq!(e.file, Path::new("t.rai"));
        }
    }

    #[test]
    fn errors_never_echo_the_key() {
        let texts = [
            mutated(KEY_A, &KEY_A[..42]),
            mutated(KEY_A, &format!("{KEY_A}A")),
            // Key pasted where a number belongs, and a file that is only the key.
            mutated("443", &format!("\"{KEY_A}\"")),
            format!("\"{KEY_A}\""),
            format!("{{\"{KEY_A}\": 1}}"),
            // A syntax error right after the key.
            mutated(&format!("\"{KEY_A}\","), &format!("\"{KEY_A}\" ,,")),
        ];
        for text in texts {
            let e = parse(&text).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(&KEY_A[..20]), "{shown}");
        }
    }

    #[test]
    fn display_is_ripgrep_style() {
        let e = parse(&mutated("443", "0")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.rai: field `server.port`: expected an integer from 1 to 65535"
        );
        let e = parse("{").unwrap_err();
        assert!(
            e.to_string().starts_with("t.rai: expected a JSON object"),
            "{e}"
        );
    }

    #[test]
    fn generate_write_parse_round_trip() {
        let mut n = 0u8;
        let mut rng = |buf: &mut [u8]| {
            for b in buf {
                *b = n;
                n = n.wrapping_add(1);
            }
        };
        let r = generate_rai(
            "https",
            "relay.example.com",
            8443,
            "acme",
            "acme-1",
            &mut rng,
        );
        assert_eq!(
            r.crypto.key,
            SecretKey::from_bytes(core::array::from_fn(|i| i as u8))
        );
        let text = to_json_pretty(&r);
        assert!(text.ends_with("}\n"));
        assert!(!text.contains("previous_keys"));
        assert_eq!(parse(&text).unwrap(), r);

        let mut rotated = r.clone();
        rotated
            .crypto
            .previous_keys
            .push(("acme-0".into(), SecretKey::from_bytes([5; 32])));
        assert_eq!(parse(&to_json_pretty(&rotated)).unwrap(), rotated);
        // Debug output of a whole config carries no key material.
        let key_text = r.crypto.key.to_base64url();
        assert!(!format!("{rotated:?}").contains(key_text.as_str()));
    }

    #[test]
    fn the_repository_default_rai_is_the_published_dev_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("default.rai");
        let r = load_rai_file(&path).unwrap();
        assert!(is_published_dev_key(&r.crypto.key));
        assert_eq!(r.crypto.key_id, "dev-published");
        assert_eq!(r.crypto.tenant_id, "default");
        assert_eq!(
            (
                r.server.scheme.as_str(),
                r.server.host.as_str(),
                r.server.port
            ),
            ("http", "127.0.0.1", 8080)
        );
        assert_eq!(r.server.base_path, "/relayapi/");
        assert!(!is_published_dev_key(
            &SecretKey::from_base64url(KEY_A).unwrap()
        ));
        let (ring, _) = load_keyring(&path).unwrap();
        assert!(ring.contains_published_dev_key());
    }

    #[test]
    fn keyring_insert_and_get() {
        let mut ring = Keyring::new();
        assert!(ring.is_empty());
        ring.insert("k1", "acme", SecretKey::from_bytes([1; 32]))
            .unwrap();
        assert!(ring
            .insert("k1", "other", SecretKey::from_bytes([2; 32]))
            .is_err());
        assert!(ring
            .insert("", "acme", SecretKey::from_bytes([2; 32]))
            .is_err());
        assert!(ring
            .insert("k 2", "acme", SecretKey::from_bytes([2; 32]))
            .is_err());
        assert!(ring
            .insert("k2", &"t".repeat(65), SecretKey::from_bytes([2; 32]))
            .is_err());
        assert_eq!(ring.len(), 1);
        let (tenant, key) = ring.get("k1").unwrap();
        assert_eq!(tenant, "acme");
        assert_eq!(key, &SecretKey::from_bytes([1; 32]));
        assert!(ring.get("k2").is_none());
        assert!(!format!("{ring:?}").contains("[1, 1"));
    }

    /// A scratch directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("relayapi-rai-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rai_text(tenant: &str, kid: &str, key: u8, previous: Option<(&str, u8)>) -> String {
        let mut r = generate_rai(
            "http",
            "127.0.0.1",
            8080,
            tenant,
            kid,
            &mut |b: &mut [u8]| b.fill(key),
        );
        if let Some((pkid, pkey)) = previous {
            r.crypto
                .previous_keys
                .push((pkid.into(), SecretKey::from_bytes([pkey; 32])));
        }
        to_json_pretty(&r)
    }

    #[test]
    fn keyring_from_a_directory() {
        let dir = TempDir::new("dir");
        std::fs::write(dir.0.join("b.rai"), rai_text("globex", "g1", 3, None)).unwrap();
        std::fs::write(
            dir.0.join("a.rai"),
            rai_text("acme", "a2", 1, Some(("a1", 2))),
        )
        .unwrap();
        std::fs::write(dir.0.join("notes.txt"), "not a rai").unwrap();
        std::fs::create_dir(dir.0.join("sub.rai")).unwrap();
        let (ring, configs) = load_keyring(&dir.0).unwrap();
        assert_eq!(ring.len(), 3);
        assert_eq!(
            configs
                .iter()
                .map(|c| c.crypto.tenant_id.as_str())
                .collect::<Vec<_>>(),
            ["acme", "globex"]
        );
        assert_eq!(ring.get("a1").unwrap().0, "acme");
        assert_eq!(ring.get("a1").unwrap().1, &SecretKey::from_bytes([2; 32]));
        assert_eq!(ring.get("g1").unwrap().0, "globex");
        assert!(!ring.contains_published_dev_key());

        // A single file works too.
        let (one, configs) = load_keyring(&dir.0.join("b.rai")).unwrap();
        assert_eq!((one.len(), configs.len()), (1, 1));
    }

    #[test]
    fn keyring_refuses_duplicate_key_ids_across_files() {
        let dir = TempDir::new("dup");
        std::fs::write(
            dir.0.join("a.rai"),
            rai_text("acme", "a2", 1, Some(("shared", 2))),
        )
        .unwrap();
        std::fs::write(dir.0.join("b.rai"), rai_text("globex", "shared", 3, None)).unwrap();
        let e = load_keyring(&dir.0).unwrap_err();
        assert_eq!(e.file, dir.0.join("b.rai"));
        assert_eq!(e.field, "crypto.key_id");
        assert!(e.expected.contains("a.rai"), "{e}");
    }

    #[test]
    fn keyring_load_errors() {
        let dir = TempDir::new("errors");
        let e = load_keyring(&dir.0).unwrap_err();
        assert!(e.expected.contains("at least one *.rai"), "{e}");
        let e = load_keyring(&dir.0.join("missing.rai")).unwrap_err();
        assert_eq!(e.field, "");
        std::fs::write(dir.0.join("big.rai"), vec![b' '; 70 * 1024]).unwrap();
        let e = load_keyring(&dir.0).unwrap_err();
        assert!(e.expected.contains("at most"), "{e}");
        std::fs::write(dir.0.join("big.rai"), [0xff, 0xfe]).unwrap();
        let e = load_keyring(&dir.0).unwrap_err();
        assert_eq!(e.expected, "UTF-8 text");
    }

    #[test]
    fn base_path_rules() {
        for good in ["/", "/relayapi/", "/a/b-c/", "/v1.2/"] {
            assert!(is_valid_base_path(good), "{good}");
        }
        for bad in [
            "",
            "relayapi/",
            "/relayapi",
            "//",
            "/a//",
            "/./",
            "/../",
            "/a b/",
            "/%2e/",
            "/a#/",
        ] {
            assert!(!is_valid_base_path(bad), "{bad}");
        }
    }
}
