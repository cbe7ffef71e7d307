//! `.rai` files on disk: loading one file or a directory of them into the key ring, and making and
//! writing new ones (`relayapi gen-rai`, first start). Parsing the text is `token/rai_parse.rs`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::text::file_error::FileError;
use crate::token::ecc::keys::{EccPrivateKey, EccPublicKey};
use crate::token::ecc::rai_parse::{EccCrypto, EccRelaySide};
use crate::token::keyring::{KeyWindow, Keyring};
use crate::token::rai_parse::{
    parse_rai, parse_rai_any, RaiConfig, RaiCrypto, RaiFile, RaiServer, DEFAULT_BASE_PATH,
    MAX_RAI_BYTES, METHOD,
};
use crate::token::secret::{SecretKey, KEY_LEN};

/// Reads and parses one symmetric `.rai` file (an ecc file is refused naming `crypto.method`).
pub fn load_rai_file(path: &Path) -> Result<RaiConfig, FileError> {
    let text = read_rai_text(path)?;
    parse_rai(&text, path)
}

/// Reads and parses one `.rai` file of either method.
pub fn load_rai_any(path: &Path) -> Result<RaiFile, FileError> {
    let text = read_rai_text(path)?;
    parse_rai_any(&text, path)
}

/// The text of a `.rai` file, size-checked before reading and wiped when dropped.
fn read_rai_text(path: &Path) -> Result<Zeroizing<String>, FileError> {
    let err = |expected: String| FileError::whole(path, format!("expected {expected}"));
    let meta = std::fs::metadata(path).map_err(|e| err(format!("a readable .rai file ({e})")))?;
    if !meta.is_file() {
        return Err(err("a regular file".into()));
    }
    if meta.len() > MAX_RAI_BYTES {
        return Err(err(format!("a .rai file of at most {MAX_RAI_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| err(format!("a readable .rai file ({e})")))?;
    // On failure the bytes come back in the error and are wiped with it.
    String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
        drop(Zeroizing::new(e.into_bytes()));
        err("UTF-8 text".into())
    })
}

/// Loads a `.rai` file, or every `*.rai` file of a directory (sorted by name, one tenant each or
/// several files per tenant), into one key ring: each file's current key and its previous keys, with
/// their validity windows. A key id that two files (or one file twice) use is an error, as is a
/// directory without `.rai` files. Ecc files must be relay-side (a backend-side file is refused, naming
/// the file and the file to use instead). Returns each file loaded with its config, in load order.
pub fn load_keyring(path: &Path) -> Result<(Keyring, Vec<(PathBuf, RaiFile)>), FileError> {
    let files = if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| FileError {
            file: path.to_path_buf(),
            field: String::new(),
            problem: format!("expected a readable directory of .rai files ({e})"),
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FileError {
                file: path.to_path_buf(),
                field: String::new(),
                problem: format!("expected a readable directory of .rai files ({e})"),
            })?;
            let p = entry.path();
            if p.extension().is_some_and(|ext| ext == "rai") && p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(FileError {
                file: path.to_path_buf(),
                field: String::new(),
                problem: "expected a directory with at least one *.rai file".into(),
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
    for (number, file) in files.into_iter().enumerate() {
        let loaded = load_rai_any(&file)?;
        let keys = match &loaded {
            RaiFile::Symmetric(rai) => symmetric_keys(rai),
            RaiFile::Ecc(ecc) => match &ecc.crypto {
                EccCrypto::Relay(side) => ecc_relay_keys(side),
                EccCrypto::Backend(_) => {
                    return Err(FileError::new(
                        &file,
                        "crypto.signing_key",
                        "expected the relay-side ecc file (this is the backend-side file: it holds the \
                         tenant's signing key and belongs to the backend's SDK; start the relay with the \
                         relay-side file, the `--out` file of `relayapi gen-rai --method ecc`)",
                    ))
                }
            },
        };
        // File numbers only tell files apart; a relay never loads 2^32 files.
        let number = number as u32;
        for (field, kid, key) in keys {
            if let Some(first) = origin.get(kid) {
                return Err(FileError {
                    file: file.clone(),
                    field,
                    problem: format!(
                        "expected a key id not already loaded (`{kid}` is also in {}); every key needs its own id",
                        first.display()
                    ),
                });
            }
            let tenant = loaded.tenant_id();
            let inserted = match key {
                KeyRef::Symmetric(key, window) => {
                    ring.insert_windowed(kid, tenant, key.clone(), window)
                }
                KeyRef::Relay(key, window) => {
                    ring.insert_relay_key(kid, tenant, key.clone(), window, number)
                }
                KeyRef::Signer(key, window) => {
                    ring.insert_signer(kid, tenant, key.clone(), window, number)
                }
            };
            inserted.map_err(|e| FileError {
                file: file.clone(),
                field: field.clone(),
                problem: format!("expected {e}"),
            })?;
            origin.insert(kid.to_owned(), file.clone());
        }
        configs.push((file, loaded));
    }
    Ok((ring, configs))
}

/// A key of a loaded file, with the field that names its id (for errors).
enum KeyRef<'a> {
    Symmetric(&'a SecretKey, KeyWindow),
    Relay(&'a EccPrivateKey, KeyWindow),
    Signer(&'a EccPublicKey, KeyWindow),
}

/// The current key and the previous keys of a symmetric file.
fn symmetric_keys(rai: &RaiConfig) -> Vec<(String, &str, KeyRef<'_>)> {
    let c = &rai.crypto;
    let mut keys = vec![(
        "crypto.key_id".to_owned(),
        c.key_id.as_str(),
        KeyRef::Symmetric(&c.key, c.window),
    )];
    for (i, p) in c.previous_keys.iter().enumerate() {
        keys.push((
            format!("crypto.previous_keys[{i}].key_id"),
            p.key_id.as_str(),
            KeyRef::Symmetric(&p.key, p.window),
        ));
    }
    keys
}

/// The relay keys and signers of a relay-side ecc file.
fn ecc_relay_keys(side: &EccRelaySide) -> Vec<(String, &str, KeyRef<'_>)> {
    let mut keys = vec![(
        "crypto.relay_key_id".to_owned(),
        side.relay_key_id.as_str(),
        KeyRef::Relay(&side.relay_private_key, side.window),
    )];
    for (i, p) in side.previous_relay_keys.iter().enumerate() {
        keys.push((
            format!("crypto.previous_relay_keys[{i}].key_id"),
            p.key_id.as_str(),
            KeyRef::Relay(&p.private_key, p.window),
        ));
    }
    for (i, s) in side.signers.iter().enumerate() {
        keys.push((
            format!("crypto.signers[{i}].signer_id"),
            s.signer_id.as_str(),
            KeyRef::Signer(&s.public_key, s.window),
        ));
    }
    keys
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
            window: KeyWindow::default(),
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
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    previous_keys: Vec<OutPrevious<'a>>,
}

#[derive(Serialize)]
struct OutPrevious<'a> {
    key_id: &'a str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<u64>,
}

/// The file form of a `.rai`: pretty JSON, keys as unpadded base64url, a trailing newline. Contains the
/// keys in clear; write it with owner-only permissions.
pub fn to_json_pretty(r: &RaiConfig) -> String {
    let key = r.crypto.key.to_base64url();
    let previous: Vec<(&str, Zeroizing<String>, KeyWindow)> = r
        .crypto
        .previous_keys
        .iter()
        .map(|p| (p.key_id.as_str(), p.key.to_base64url(), p.window))
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
            not_before: r.crypto.window.not_before,
            not_after: r.crypto.window.not_after,
            previous_keys: previous
                .iter()
                .map(|(kid, k, w)| OutPrevious {
                    key_id: kid,
                    key: k,
                    not_before: w.not_before,
                    not_after: w.not_after,
                })
                .collect(),
        },
    };
    // Plain structs of strings and integers always serialise.
    let mut text = serde_json::to_string_pretty(&out).expect("a .rai always serialises");
    text.push('\n');
    text
}
