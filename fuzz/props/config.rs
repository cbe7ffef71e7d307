//! `config.json` loading (`src/config/mod.rs`): what `parse_config` accepts is JSON without repeated
//! member names (a repeated provider or key name would make the file mean whatever the last line
//! says, which the operator cannot see), and its values hold the invariants the rest of the relay
//! relies on without re-checking: head limits that fit together, a base path the router can split
//! on, every trusted proxy parsed into a range, CORS origins that all parse. An error names the file it
//! was given.

use std::path::Path;

use relayapi::config::{parse_config, valid_origin};

use super::json;

const FILE: &str = "/etc/relayapi/config.json";

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match parse_config(text, Path::new(FILE)) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert_eq!(e.file, Path::new(FILE));
            return;
        }
    };
    let (value, duplicate) = json::parse(text).expect("an accepted config is JSON");
    assert!(value.is_object());
    assert!(!duplicate, "accepted a repeated member name");

    let s = &cfg.server;
    assert!(s.max_uri_bytes <= s.max_header_bytes && s.max_headers >= 1);
    assert!(s.base_path.starts_with('/') && s.base_path.ends_with('/'));
    assert!(!s.base_path.contains("//"));
    // Every listed proxy and metrics reader became a range: none is dropped on the way to its type.
    let listed = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len)
    };
    assert_eq!(cfg.trusted_proxies.len(), listed("trusted_proxies"));
    assert!(cfg
        .cors
        .allowed_origins
        .iter()
        .all(|o| o == "*" || valid_origin(o)));
    if let Some(tls) = &cfg.tls {
        // Relative certificate paths are taken from the config file's directory.
        assert!(tls.cert_file.is_absolute() && tls.key_file.is_absolute());
    }
}
