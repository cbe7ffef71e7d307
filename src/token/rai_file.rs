//! `.rai` files on disk: loading one file or a directory of them into the key ring, and making and
//! writing new ones (`relayapi gen-rai`, first start). Parsing the text is `token/rai_parse.rs`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::text::file_error::FileError;
use crate::token::keyring::{KeyWindow, Keyring};
use crate::token::rai_parse::{
    parse_rai, RaiConfig, RaiCrypto, RaiServer, DEFAULT_BASE_PATH, MAX_RAI_BYTES, METHOD,
};
use crate::token::secret::{SecretKey, KEY_LEN};

/// Reads and parses one `.rai` file.
pub fn load_rai_file(path: &Path) -> Result<RaiConfig, FileError> {
    let err = |expected: String| FileError::whole(path, format!("expected {expected}"));
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
/// several files per tenant), into one key ring: each file's current key and its previous keys, with
/// their validity windows. A key id that two files (or one file twice) use is an error, as is a
/// directory without `.rai` files. Returns each file loaded with its config, in load order.
pub fn load_keyring(path: &Path) -> Result<(Keyring, Vec<(PathBuf, RaiConfig)>), FileError> {
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
    for file in files {
        let rai = load_rai_file(&file)?;
        let current = std::iter::once((
            "crypto.key_id".to_owned(),
            &rai.crypto.key_id,
            &rai.crypto.key,
            rai.crypto.window,
        ));
        let previous = rai.crypto.previous_keys.iter().enumerate().map(|(i, p)| {
            (
                format!("crypto.previous_keys[{i}].key_id"),
                &p.key_id,
                &p.key,
                p.window,
            )
        });
        for (field, kid, key, window) in current.chain(previous) {
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
            ring.insert_windowed(kid, &rai.crypto.tenant_id, key.clone(), window)
                .map_err(|e| FileError {
                    file: file.clone(),
                    field: field.clone(),
                    problem: format!("expected {e}"),
                })?;
            origin.insert(kid.clone(), file.clone());
        }
        configs.push((file, rai));
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
