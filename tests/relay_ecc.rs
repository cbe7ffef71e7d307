//! Issue 13 §1 through the relay binary: a token minted by `relayapi mint` from an ecc backend-side file
//! goes through the relay to the provider; forged ecc tokens (an unlisted signing key, a symmetric-file
//! holder of the same tenant, a stranger's relay key) and every invalid vector of `ecc.json` get exactly
//! the 401 that garbage gets; the admin API answers ECDSA-signed usage and revoke requests; retiring a
//! signer with a reload kills its tokens at once, cached or not.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use relayapi::admin::signing::sign_request_ecdsa;
use relayapi::token::ecc::hpke_suite::derive_key_pair;
use relayapi::token::ecc::keys::EccPrivateKey;
use relayapi::token::ecc::mint::EccMinter;
use relayapi::token::ecc::rai_file::{generate_ecc_pair, to_json_pretty};
use relayapi::token::format::{self, Claims};
use relayapi::token::rai::{self, EccCrypto, EccRaiConfig, RaiServer};
use relayapi::token::secret::SecretString;
use serde_json::Value;

const CHAT: &str = r#"{"model":"m","messages":[]}"#;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn server() -> RaiServer {
    RaiServer {
        scheme: "http".into(),
        host: "127.0.0.1".into(),
        port: 8080,
        base_path: "/relayapi/".into(),
    }
}

/// The tenant `acme` with both methods: a symmetric file (the relay's `kid`/`key`) and an ecc pair
/// (relay key `relay-1`, signer `signer-1`).
struct Setup {
    relay: Relay,
    relay_side: EccRaiConfig,
    backend_file: std::path::PathBuf,
}

fn backend_minter(backend: &EccRaiConfig) -> EccMinter {
    let EccCrypto::Backend(b) = &backend.crypto else {
        panic!("backend side")
    };
    EccMinter {
        rkid: b.relay_key_id.clone(),
        relay_public_key: b.relay_public_key.clone(),
        skid: b.signer_id.clone(),
        signing_key: b.signing_key.clone(),
    }
}

fn start(up: &MockUpstream) -> Setup {
    let sym = rai::generate_rai("http", "127.0.0.1", 8080, "acme", "acme-sym", &mut |b| {
        b.fill(5)
    });
    let mut rng = format::os_rng();
    let (relay_side, backend) =
        generate_ecc_pair(&server(), "acme", "relay-1", "signer-1", &mut rng);
    let relay = Relay::start_with_rai_dir(
        test_config(up),
        sym,
        &[("ecc.rai", to_json_pretty(&relay_side))],
    );
    let backend_file = relay.cfg_dir().join("backend.rai");
    std::fs::write(&backend_file, to_json_pretty(&backend)).unwrap();
    Setup {
        relay,
        relay_side,
        backend_file,
    }
}

/// `relayapi mint` with the backend-side file, the provider key in the environment.
fn mint_with_cli(backend_file: &Path, max_calls: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_relayapi"))
        .args(["mint", "--rai"])
        .arg(backend_file)
        .args([
            "--provider",
            "openai",
            "--key-env",
            "ECC_TEST_KEY",
            "--max-calls",
            max_calls,
        ])
        .env("ECC_TEST_KEY", FAKE_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn claims() -> Claims {
    let t = now();
    Claims {
        key: Some(SecretString::new(FAKE_KEY)),
        ..Claims::new(
            format::new_token_id(&mut format::os_rng()),
            "acme".into(),
            t,
            t + 3600,
            "openai".into(),
        )
    }
}

async fn call(relay: &Relay, token: &str) -> Resp {
    let target = format!("/relayapi/{token}/chat/completions");
    request(relay.addr, "POST", &target, &[], CHAT).await
}

/// Status, body and headers (without the per-response date and request id): what a client can compare.
fn shape(r: &Resp) -> (u16, Vec<u8>, Vec<(String, String)>) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("date") && !n.eq_ignore_ascii_case("x-request-id"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    headers.sort();
    (r.status, r.body.clone(), headers)
}

async fn admin_ecdsa(
    relay: &Relay,
    signer: &str,
    key: &EccPrivateKey,
    method: &str,
    target: &str,
) -> Resp {
    let auth = sign_request_ecdsa(signer, key, method, target, b"", now());
    request(relay.addr, method, target, &[("authorization", &auth)], "").await
}

#[tokio::test]
async fn a_cli_minted_ecc_token_reaches_the_provider_and_forgeries_get_the_garbage_401() {
    let up = MockUpstream::start(false).await;
    let s = start(&up);
    let token = mint_with_cli(&s.backend_file, "5");
    assert!(token.starts_with("rt1.AQI"), "mode 0x02: {token}");
    let r = call(&s.relay, &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 1);
    let seen = &up.requests()[0];
    assert_eq!(
        seen.header("authorization"),
        Some(&*format!("Bearer {FAKE_KEY}"))
    );
    // Cached now; still fine, and counted.
    assert_eq!(call(&s.relay, &token).await.status, 200);

    let garbage = shape(&call(&s.relay, "rt1.AQIAAAAA").await);
    assert_eq!(garbage.0, 401);
    let EccCrypto::Relay(relay_side) = &s.relay_side.crypto else {
        panic!("relay side")
    };
    let honest = EccMinter {
        rkid: "relay-1".into(),
        relay_public_key: relay_side.relay_private_key.public_key(),
        skid: "signer-1".into(),
        signing_key: derive_key_pair(&[1; 32]).0,
    };
    // The symmetric file's 32 bytes as a P-256 scalar: what a holder of acme's symmetric key could try.
    let sym_as_scalar = EccPrivateKey::from_bytes(&[5; 32]).unwrap();
    let forged = [
        // An unlisted signing key under the listed signer id.
        honest.clone(),
        // The symmetric-file holder signing as the ecc signer, or naming its own key id as signer.
        EccMinter {
            signing_key: sym_as_scalar.clone(),
            ..honest.clone()
        },
        EccMinter {
            skid: "acme-sym".into(),
            signing_key: sym_as_scalar,
            ..honest.clone()
        },
        // Sealed to a stranger's key under the relay key id.
        EccMinter {
            relay_public_key: derive_key_pair(&[2; 32]).1,
            ..backend_minter_from(&s)
        },
    ];
    for (i, m) in forged.iter().enumerate() {
        let t = m.mint(&claims(), &mut format::os_rng());
        assert_eq!(shape(&call(&s.relay, &t).await), garbage, "forgery {i}");
    }
    // The honest backend's library mint works too, and the provider saw only the honest calls.
    let t = backend_minter_from(&s).mint(&claims(), &mut format::os_rng());
    assert_eq!(call(&s.relay, &t).await.status, 200);
    assert_eq!(up.count(), 3);
    assert!(
        !s.relay.all_logs().contains(&token[4..40]),
        "token text in the logs"
    );
}

fn backend_minter_from(s: &Setup) -> EccMinter {
    let text = std::fs::read_to_string(&s.backend_file).unwrap();
    let rai::RaiFile::Ecc(b) = rai::parse_rai_any(&text, &s.backend_file).unwrap() else {
        panic!("ecc")
    };
    backend_minter(&b)
}

#[tokio::test]
async fn every_invalid_ecc_vector_gets_the_identical_401() {
    let up = MockUpstream::start(false).await;
    let file: Value = serde_json::from_str(include_str!("vectors/ecc.json")).unwrap();
    // One relay-side file per tenant with every relay key and signer of it, as the vectors assume.
    let mut extra = Vec::new();
    for tenant in ["acme", "globex-corp"] {
        let of = |list: &str| -> Vec<Value> {
            file["keys"][list]
                .as_array()
                .unwrap()
                .iter()
                .filter(|k| k["tenant"] == tenant)
                .cloned()
                .collect()
        };
        let relays = of("relay_keys");
        let signers: Vec<Value> = of("signers")
            .iter()
            .map(
                |s| serde_json::json!({"signer_id": s["signer_id"], "public_key": s["public_key"]}),
            )
            .collect();
        let previous: Vec<Value> = relays[1..]
            .iter()
            .map(|k| serde_json::json!({"key_id": k["key_id"], "private_key": k["private_key"]}))
            .collect();
        let mut crypto = serde_json::json!({
            "method": "ecc-p256", "tenant_id": tenant, "relay_key_id": relays[0]["key_id"],
            "relay_private_key": relays[0]["private_key"], "signers": signers,
        });
        if !previous.is_empty() {
            crypto["previous_relay_keys"] = Value::from(previous);
        }
        let text = serde_json::json!({"version": 1, "server": {"host": "127.0.0.1", "port": 8080}, "crypto": crypto});
        extra.push((format!("{tenant}.rai"), text.to_string()));
    }
    let extra: Vec<(&str, String)> = extra.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let sym = rai::generate_rai("http", "127.0.0.1", 8080, "acme", "acme-sym", &mut |b| {
        b.fill(5)
    });
    let relay = Relay::start_with_rai_dir(test_config(&up), sym, &extra);
    let garbage = shape(&call(&relay, "rt1.garbage").await);
    let mut n = 0;
    for case in file["invalid"].as_array().unwrap() {
        let tok = case["token"].as_str().unwrap();
        let auth = format!("Bearer {tok}");
        let r = request(
            relay.addr,
            "POST",
            "/relayapi/chat/completions",
            &[("authorization", &auth)],
            CHAT,
        )
        .await;
        if r.status == 401 {
            assert_eq!(shape(&r), garbage, "{}", case["desc"]);
            n += 1;
        } else {
            // A header value the HTTP layer itself refuses (e.g. control characters) never reaches the
            // token check.
            assert_eq!(r.status, 400, "{}: {}", case["desc"], r.status);
        }
    }
    assert!(n >= 50, "{n}");
    // The vector tokens that verify are past their `exp` now: authentic, so their own code.
    let ok = file["verify"][0]["token"].as_str().unwrap();
    assert_eq!(
        call(&relay, ok).await.json()["error"]["code"],
        "token_expired"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn admin_usage_and_revoke_with_ecdsa_signatures() {
    let up = MockUpstream::start(false).await;
    let s = start(&up);
    let token = mint_with_cli(&s.backend_file, "10");
    assert_eq!(call(&s.relay, &token).await.status, 200);
    let EccCrypto::Relay(relay_side) = &s.relay_side.crypto else {
        panic!("relay side")
    };
    // The token id, read the way only the relay can (its key opens the token).
    let (ring, _) = rai::load_keyring(&s.relay.cfg_dir().join("rai.d")).unwrap();
    let jti = format::verify(&token, &ring, now()).unwrap().jti;
    let signing = backend_minter_from(&s).signing_key;
    let usage = format!("/admin/v1/tokens/{jti}");
    let r = admin_ecdsa(&s.relay, "signer-1", &signing, "GET", &usage).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["calls_used"], 1);
    assert_eq!(r.json()["tenant_id"], "acme");
    // A stranger, and the relay key itself, cannot sign as the signer.
    for key in [
        derive_key_pair(&[3; 32]).0,
        relay_side.relay_private_key.clone(),
    ] {
        let r = admin_ecdsa(&s.relay, "signer-1", &key, "GET", &usage).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["code"], "invalid_admin_signature");
    }
    let r = admin_ecdsa(
        &s.relay,
        "relay-1",
        &relay_side.relay_private_key,
        "GET",
        &usage,
    )
    .await;
    assert_eq!(r.status, 401);
    let revoke = format!("/admin/v1/tokens/{jti}/revoke");
    let r = admin_ecdsa(&s.relay, "signer-1", &signing, "POST", &revoke).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["revoked"], true);
    let r = call(&s.relay, &token).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "token_revoked");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn retiring_the_signer_kills_its_cached_tokens_at_the_reload() {
    let up = MockUpstream::start(false).await;
    let s = start(&up);
    let token = mint_with_cli(&s.backend_file, "0");
    assert_eq!(call(&s.relay, &token).await.status, 200);
    assert_eq!(call(&s.relay, &token).await.status, 200);
    let mut retired = s.relay_side.clone();
    let EccCrypto::Relay(side) = &mut retired.crypto else {
        panic!("relay side")
    };
    side.signers[0].window.not_after = Some(now());
    let path = s.relay.cfg_dir().join("rai.d/ecc.rai");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, to_json_pretty(&retired)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let ok = Command::new("kill")
        .arg("-HUP")
        .arg(s.relay.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    // The reload is logged once it is in force.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.relay.all_logs().contains("keys reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            s.relay.all_logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = call(&s.relay, &token).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_token");
    assert_eq!(up.count(), 2);
}

fn relayapi(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relayapi"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The documented flow: the operator writes both files, a second tenant backend makes its own signing
/// key from the relay key's public half, the operator adds the printed `signers` entry and reloads.
#[tokio::test]
async fn gen_rai_ecc_files_work_with_the_relay() {
    use std::os::unix::fs::PermissionsExt as _;
    let up = MockUpstream::start(false).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let args = [
        "gen-rai",
        "--method",
        "ecc",
        "--tenant",
        "acme",
        "--key-id",
        "relay-1",
        "--signer-id",
        "b1",
        "--out",
        "relay.rai",
        "--backend-out",
        "backend.rai",
    ];
    let out = relayapi(&args, dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["relay.rai", "backend.rai"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // Never over an existing file, and no half pair left behind.
    let again = relayapi(
        &args.map(|a| if a == "backend.rai" { "b2.rai" } else { a }),
        dir,
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("relay.rai: exists"));
    assert!(!dir.join("b2.rai").exists());

    let relay_text = std::fs::read_to_string(dir.join("relay.rai")).unwrap();
    let backend_text = std::fs::read_to_string(dir.join("backend.rai")).unwrap();
    let backend: Value = serde_json::from_str(&backend_text).unwrap();
    let relay_json: Value = serde_json::from_str(&relay_text).unwrap();
    assert!(relay_json["crypto"].get("signing_key").is_none());
    assert!(backend["crypto"].get("relay_private_key").is_none());

    let sym = rai::generate_rai("http", "127.0.0.1", 8080, "other", "other-sym", &mut |b| {
        b.fill(9)
    });
    let relay =
        Relay::start_with_rai_dir(test_config(&up), sym, &[("acme.rai", relay_text.clone())]);
    let t1 = mint_with_cli(&dir.join("backend.rai"), "3");
    assert_eq!(call(&relay, &t1).await.status, 200);

    // The tenant side: a second backend's own key, for the operator's relay key.
    let pk = backend["crypto"]["relay_public_key"].as_str().unwrap();
    let out = relayapi(
        &[
            "gen-rai",
            "--method",
            "ecc",
            "--tenant",
            "acme",
            "--relay-key-id",
            "relay-1",
            "--relay-public-key",
            pk,
            "--signer-id",
            "b2",
            "--backend-out",
            "tenant.rai",
        ],
        dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entry["signer_id"], "b2");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("signing_key"));
    let t2 = mint_with_cli(&dir.join("tenant.rai"), "3");
    assert_eq!(call(&relay, &t2).await.status, 401, "not yet listed");
    let mut updated = relay_json.clone();
    updated["crypto"]["signers"]
        .as_array_mut()
        .unwrap()
        .push(entry);
    let path = relay.cfg_dir().join("rai.d/acme.rai");
    std::fs::write(path.with_extension("tmp"), updated.to_string()).unwrap();
    std::fs::rename(path.with_extension("tmp"), &path).unwrap();
    // The file poll (every 2 s) picks the change up; wait for the relay's own line, not for a time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !relay.all_logs().contains("keys reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", relay.all_logs());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(call(&relay, &t2).await.status, 200);
    assert_eq!(call(&relay, &t1).await.status, 200);
    // The relay refuses to load the backend-side file, naming it.
    let mut bad = Command::new(env!("CARGO_BIN_EXE_relayapi"));
    let cfg = relay.cfg_dir().join("config.json");
    let out = bad
        .arg("--config")
        .arg(&cfg)
        .arg("--rai")
        .arg(dir.join("backend.rai"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("backend.rai") && err.contains("relay-side"),
        "{err}"
    );
    assert!(!err.contains(backend["crypto"]["signing_key"].as_str().unwrap()));
}
