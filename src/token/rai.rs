//! The `.rai` client config (`docs/client-config.md`): the one path that names its public API. Parsing
//! and checking the text is `token/rai_parse.rs`, loading files and writing new ones
//! `token/rai_file.rs`, and the [`Keyring`] of tenant keys that the relay verifies tokens with
//! `token/keyring.rs`.
//!
//! A broken `.rai` is an operator's mistake found at start-up, so errors here are loud and specific
//! (file, field, what a valid value looks like), unlike token errors. They never repeat a value from the
//! file: the value may be the key. Token decoding is `token/format.rs`'s job; reading `config.json` is
//! `config/`'s.

pub use crate::text::file_error::FileError as RaiError;
pub use crate::text::grammar::{is_key_id as is_valid_key_id, is_tenant_id as is_valid_tenant_id};
pub use crate::token::ecc::rai_parse::{
    EccBackendSide, EccCrypto, EccRelayKey, EccRelaySide, EccSigner, ECC_METHOD,
};
pub use crate::token::keyring::{is_published_dev_key, KeyWindow, Keyring};
pub use crate::token::rai_file::{
    generate_rai, load_keyring, load_rai_any, load_rai_file, to_json_pretty,
};
pub use crate::token::rai_parse::{
    parse_rai, parse_rai_any, EccRaiConfig, RaiConfig, RaiCrypto, RaiFile, RaiKey, RaiServer,
    METHOD,
};

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::token::secret::SecretKey;

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
        assert_eq!(r.crypto.previous_keys[0].key_id, "acme-2026-05");
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
    fn key_windows_parse_and_errors_name_their_field() {
        let with = |crypto: &str, previous: &str| {
            mutated(
                "\"tenant_id\": \"acme\",",
                &format!("\"tenant_id\": \"acme\",{crypto}"),
            )
            .replacen(
                &format!("\"key\": \"{KEY_B}\""),
                &format!("\"key\": \"{KEY_B}\"{previous}"),
                1,
            )
        };
        let r = parse(&with(
            r#""not_before": 0, "not_after": 9007199254740991,"#,
            r#", "not_after": 1800000000"#,
        ))
        .unwrap();
        assert_eq!(
            r.crypto.window,
            KeyWindow {
                not_before: Some(0),
                not_after: Some((1 << 53) - 1)
            }
        );
        assert_eq!(
            r.crypto.previous_keys[0].window,
            KeyWindow {
                not_before: None,
                not_after: Some(1_800_000_000)
            }
        );
        // Old files without windows: open at both ends.
        assert_eq!(
            parse(&sample()).unwrap().crypto.window,
            KeyWindow::default()
        );
        let cases = [
            (with(r#""not_before": -1,"#, ""), "crypto.not_before"),
            (with(r#""not_after": 1.5,"#, ""), "crypto.not_after"),
            (with(r#""not_after": "1","#, ""), "crypto.not_after"),
            (with(r#""not_after": null,"#, ""), "crypto.not_after"),
            (
                with(r#""not_after": 9007199254740992,"#, ""),
                "crypto.not_after",
            ),
            (
                with(r#""not_before": 5, "not_after": 5,"#, ""),
                "crypto.not_after",
            ),
            (
                with("", r#", "not_before": 7, "not_after": 6"#),
                "crypto.previous_keys[0].not_after",
            ),
            (
                with("", r#", "not_befor": 7"#),
                "crypto.previous_keys[0].not_befor",
            ),
        ];
        for (text, field) in cases {
            assert_eq!(parse(&text).unwrap_err().field, field, "{text}");
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
        rotated.crypto.previous_keys.push(RaiKey {
            key_id: "acme-0".into(),
            key: SecretKey::from_bytes([5; 32]),
            window: KeyWindow {
                not_before: Some(1),
                not_after: None,
            },
        });
        rotated.crypto.window = KeyWindow {
            not_before: None,
            not_after: Some((1 << 53) - 1),
        };
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
        let (tenant, key) = ring.get("k1", 0).unwrap();
        assert_eq!(tenant, "acme");
        assert_eq!(key, &SecretKey::from_bytes([1; 32]));
        assert!(ring.get("k2", 0).is_none());
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
            r.crypto.previous_keys.push(RaiKey {
                key_id: pkid.into(),
                key: SecretKey::from_bytes([pkey; 32]),
                window: KeyWindow::default(),
            });
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
                .map(|(_, c)| c.tenant_id())
                .collect::<Vec<_>>(),
            ["acme", "globex"]
        );
        assert_eq!(ring.get("a1", 0).unwrap().0, "acme");
        assert_eq!(
            ring.get("a1", 0).unwrap().1,
            &SecretKey::from_bytes([2; 32])
        );
        assert_eq!(ring.get("g1", 0).unwrap().0, "globex");
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
        assert!(e.problem.contains("a.rai"), "{e}");
    }

    #[test]
    fn keyring_load_errors() {
        let dir = TempDir::new("errors");
        let e = load_keyring(&dir.0).unwrap_err();
        assert!(e.problem.contains("at least one *.rai"), "{e}");
        let e = load_keyring(&dir.0.join("missing.rai")).unwrap_err();
        assert_eq!(e.field, "");
        std::fs::write(dir.0.join("big.rai"), vec![b' '; 70 * 1024]).unwrap();
        let e = load_keyring(&dir.0).unwrap_err();
        assert!(e.problem.contains("at most"), "{e}");
        std::fs::write(dir.0.join("big.rai"), [0xff, 0xfe]).unwrap();
        let e = load_keyring(&dir.0).unwrap_err();
        assert_eq!(e.problem, "expected UTF-8 text");
    }

    #[test]
    fn base_path_rules() {
        for good in ["/", "/relayapi/", "/a/b-c/", "/v1.2/"] {
            assert!(crate::text::grammar::is_base_path(good), "{good}");
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
            assert!(!crate::text::grammar::is_base_path(bad), "{bad}");
        }
    }
}
