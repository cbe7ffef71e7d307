//! Tests of ecc `.rai` files: rules E1-E7 with the field each error names, the round trip through
//! generation, and loading them into the key ring next to symmetric files.

use std::path::{Path, PathBuf};

use crate::text::file_error::FileError;
use crate::token::ecc::keys::EccPrivateKey;
use crate::token::ecc::rai_file::{generate_ecc_pair, to_json_pretty};
use crate::token::ecc::rai_parse::EccCrypto;
use crate::token::rai::{generate_rai, load_keyring, parse_rai, parse_rai_any, RaiFile, RaiServer};

fn server() -> RaiServer {
    RaiServer {
        scheme: "https".into(),
        host: "relay.example.com".into(),
        port: 443,
        base_path: "/relayapi/".into(),
    }
}

/// The relay-side and backend-side texts of a fresh pair (keys from a counter RNG).
fn pair(seed: u8) -> (String, String) {
    let mut n = seed;
    let mut rng = |b: &mut [u8]| {
        for x in b {
            *x = n;
            n = n.wrapping_add(1);
        }
    };
    let (relay, backend) = generate_ecc_pair(&server(), "acme", "relay-1", "signer-1", &mut rng);
    (to_json_pretty(&relay), to_json_pretty(&backend))
}

fn parse(text: &str) -> Result<RaiFile, FileError> {
    parse_rai_any(text, Path::new("e.rai"))
}

fn field_of(text: &str) -> String {
    parse(text).unwrap_err().field
}

/// Replaces the first occurrence of `from` in `text`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1)
}

/// The value of a string member in a generated file.
fn value(text: &str, name: &str) -> String {
    let at = text.find(&format!("\"{name}\": \"")).unwrap() + name.len() + 5;
    text[at..at + text[at..].find('"').unwrap()].to_owned()
}

#[test]
fn generated_files_parse_back_and_each_holds_only_its_side() {
    let (relay, backend) = pair(1);
    let RaiFile::Ecc(r) = parse(&relay).unwrap() else {
        panic!("an ecc file")
    };
    let RaiFile::Ecc(b) = parse(&backend).unwrap() else {
        panic!("an ecc file")
    };
    assert_eq!(to_json_pretty(&r), relay);
    assert_eq!(to_json_pretty(&b), backend);
    let (EccCrypto::Relay(r), EccCrypto::Backend(b)) = (r.crypto, b.crypto) else {
        panic!("one file per side")
    };
    assert_eq!(r.signers[0].public_key, b.signing_key.public_key());
    assert_eq!(r.relay_private_key.public_key(), b.relay_public_key);
    assert!(!relay.contains(&*value(&backend, "signing_key")));
    assert!(!backend.contains(&*value(&relay, "relay_private_key")));
    assert!(!format!("{r:?}{b:?}").contains(&*value(&relay, "relay_private_key")));
    // A symmetric-only reader names the method instead of misreading the file.
    assert_eq!(
        parse_rai(&relay, Path::new("e.rai")).unwrap_err().field,
        "crypto.method"
    );
}

#[test]
fn rules_e1_to_e7_name_their_field() {
    let (relay, backend) = pair(1);
    let (other_relay, other_backend) = pair(100);
    let relay_key = value(&relay, "relay_private_key");
    let signer_pub = value(&relay, "public_key");
    let signing_key = value(&backend, "signing_key");
    let relay_pub = value(&backend, "relay_public_key");
    // n, the group order: not a valid scalar; 0 neither.
    let n = "_____wAAAAD__________7zm-q2nF56E87nKwvxjJVE";
    let zero = "A".repeat(43);
    let mut p = EccPrivateKey::from_bytes(&[3; 32])
        .unwrap()
        .public_key()
        .to_sec1();
    p[64] ^= 1;
    let off_curve = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p);
    let start = relay.find("\"signers\": [").unwrap() + 12;
    let no_signers = format!("{}{}", &relay[..start], &relay[relay.rfind(']').unwrap()..]);
    let signer =
        |id: &str| format!("{{\"signer_id\": \"{id}\", \"public_key\": \"{signer_pub}\"}}");
    let cases: Vec<(String, &str)> = vec![
        // E1.
        (
            edit(&relay, "\"tenant_id\"", &format!("\"signing_key\": \"{signing_key}\", \"tenant_id\"")),
            "crypto.signing_key",
        ),
        (
            edit(&relay, &format!("\"relay_private_key\": \"{relay_key}\","), ""),
            "crypto.relay_private_key",
        ),
        (edit(&relay, "\"tenant_id\"", "\"key\": \"x\", \"tenant_id\""), "crypto.key"),
        (edit(&backend, "\"tenant_id\"", "\"signers\": [], \"tenant_id\""), "crypto.signers"),
        (edit(&relay, "\"tenant_id\": \"acme\",", ""), "crypto.tenant_id"),
        (edit(&relay, "\"signer_id\"", "\"not_befor\": 1, \"signer_id\""), "crypto.signers[0].not_befor"),
        (edit(&relay, "\"https\"", "null"), "server.scheme"),
        // E2.
        (edit(&relay, "relay-1", "relay 1"), "crypto.relay_key_id"),
        (edit(&relay, "signer-1", &"s".repeat(33)), "crypto.signers[0].signer_id"),
        (edit(&relay, "signer-1", "relay-1"), "crypto.signers[0].signer_id"),
        (
            edit(&relay, "\"signers\": [", &format!("\"signers\": [{}, ", signer("signer-1"))),
            "crypto.signers[1].signer_id",
        ),
        (edit(&backend, "signer-1", "relay-1"), "crypto.relay_key_id"),
        (edit(&relay, "\"acme\"", "\"\""), "crypto.tenant_id"),
        // E3.
        (edit(&relay, &relay_key, n), "crypto.relay_private_key"),
        (edit(&relay, &relay_key, &zero), "crypto.relay_private_key"),
        (edit(&backend, &signing_key, &signing_key[..42]), "crypto.signing_key"),
        (edit(&backend, &signing_key, &format!("{signing_key}=")), "crypto.signing_key"),
        (
            edit(&relay, "\"signers\"", &format!("\"previous_relay_keys\": [{{\"key_id\": \"old\", \"private_key\": \"{n}\"}}], \"signers\"")),
            "crypto.previous_relay_keys[0].private_key",
        ),
        // E4.
        (edit(&relay, &signer_pub, &off_curve), "crypto.signers[0].public_key"),
        (edit(&relay, &signer_pub, &signer_pub[..86]), "crypto.signers[0].public_key"),
        (edit(&backend, &relay_pub, &"A".repeat(87)), "crypto.relay_public_key"),
        // E5.
        (no_signers, "crypto.signers"),
        (
            edit(&relay, "\"signers\": [", &format!("\"signers\": [{}", (0..16).map(|i| signer(&format!("s{i}")) + ", ").collect::<String>())),
            "crypto.signers",
        ),
        (edit(&relay, "\"signers\": [", "\"signers\": [1, "), "crypto.signers[0]"),
        // E6.
        (
            edit(&relay, "\"tenant_id\"", "\"not_before\": 5, \"not_after\": 5, \"tenant_id\""),
            "crypto.not_after",
        ),
        (
            edit(&relay, "\"signer_id\"", "\"not_after\": 1.5, \"signer_id\""),
            "crypto.signers[0].not_after",
        ),
        // E7: the signer is the relay key's own public half; the backend's relay key is its own.
        (
            edit(&relay, &signer_pub, &value(&other_backend, "relay_public_key")).replace(
                &relay_key,
                &value(&other_relay, "relay_private_key"),
            ),
            "crypto.signers[0].public_key",
        ),
        (
            edit(
                &backend,
                &relay_pub,
                &EccPrivateKey::from_base64url(&signing_key).unwrap().public_key().to_base64url(),
            ),
            "crypto.relay_public_key",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let e = parse(text).unwrap_err();
        assert_eq!(e.field, *field, "case {i}: {e}");
        let shown = format!("{e} {e:?}");
        for secret in [&relay_key, &signing_key] {
            assert!(
                !shown.contains(&secret[..20]),
                "case {i} echoes a key: {shown}"
            );
        }
    }
    assert_eq!(field_of("{\"version\":1}"), "server");
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("relayapi-ecc-{name}-{}", std::process::id()));
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

#[test]
fn the_relay_loads_relay_side_files_next_to_symmetric_ones_and_refuses_backend_side_files() {
    let dir = TempDir::new("load");
    let (relay, backend) = pair(1);
    let sym = crate::token::rai::to_json_pretty(&generate_rai(
        "https",
        "relay.example.com",
        443,
        "globex",
        "g1",
        &mut |b: &mut [u8]| b.fill(7),
    ));
    std::fs::write(dir.0.join("a.rai"), &relay).unwrap();
    std::fs::write(dir.0.join("b.rai"), &sym).unwrap();
    let (ring, files) = load_keyring(&dir.0).unwrap();
    assert_eq!(
        ring.key_ids().map(|(k, _)| k).collect::<Vec<_>>(),
        ["g1", "relay-1", "signer-1"]
    );
    assert_eq!(ring.relay_key("relay-1", 0).unwrap().0, "acme");
    assert_eq!(ring.signer("signer-1", 0).unwrap().0, "acme");
    assert!(ring.get("relay-1", 0).is_none() && ring.signer("relay-1", 0).is_none());
    assert_eq!(files.len(), 2);

    // Key ids are unique across files of both methods.
    let clash = edit(&sym, "\"g1\"", "\"signer-1\"");
    std::fs::write(dir.0.join("b.rai"), &clash).unwrap();
    let e = load_keyring(&dir.0).unwrap_err();
    assert_eq!(
        (e.file.clone(), e.field.as_str()),
        (dir.0.join("b.rai"), "crypto.key_id")
    );
    assert!(e.problem.contains("a.rai"), "{e}");
    std::fs::remove_file(dir.0.join("b.rai")).unwrap();

    // The backend-side file is the SDK's: refused by name, saying which file to use.
    std::fs::write(dir.0.join("c.rai"), &backend).unwrap();
    let e = load_keyring(&dir.0).unwrap_err();
    assert_eq!(
        (e.file.clone(), e.field.as_str()),
        (dir.0.join("c.rai"), "crypto.signing_key")
    );
    assert!(e.to_string().contains("relay-side"), "{e}");
    assert!(!e.to_string().contains(&*value(&backend, "signing_key")));
}
