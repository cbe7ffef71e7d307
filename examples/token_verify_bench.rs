//! Token verification cost per method (issue 13 §1): the symmetric method and ecc, each at first sight
//! (`format::verify`: decode, key derivation or ECDH, AEAD, signature, claims) and cached (the relay's
//! `TokenCache` hit: a map lookup and the key windows re-checked), as ratios to the symmetric method.
//!
//! `cargo run --release --example token_verify_bench [ITERATIONS]`. Single-threaded; report the machine's
//! load with the figures. Every measured token is a distinct text (first-sight runs never hit a cache).

use std::hint::black_box;
use std::time::Instant;

use relayapi::token::cache::TokenCache;
use relayapi::token::ecc::hpke_suite::derive_key_pair;
use relayapi::token::ecc::mint::EccMinter;
use relayapi::token::format::{self, Claims};
use relayapi::token::keyring::{KeyWindow, Keyring};
use relayapi::token::secret::{SecretKey, SecretString};

const NOW: u64 = 1_790_000_000;

fn claims(i: u64) -> Claims {
    Claims {
        key: Some(SecretString::new(
            "sk-bench-0123456789abcdef0123456789abcdef",
        )),
        max: Some(100),
        ..Claims::new(
            format!("{i:032x}"),
            "acme".into(),
            NOW,
            NOW + 3600,
            "openai".into(),
        )
    }
}

/// Nanoseconds per call of `f` over `tokens`.
fn per_call(tokens: &[String], mut f: impl FnMut(&str)) -> f64 {
    let start = Instant::now();
    for t in tokens {
        f(t);
    }
    start.elapsed().as_nanos() as f64 / tokens.len() as f64
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ITERATIONS is a number"))
        .unwrap_or(2000);
    let sym_key = SecretKey::from_bytes([7; 32]);
    let (relay_key, relay_pub) = derive_key_pair(&[1; 32]);
    let signing = derive_key_pair(&[2; 32]).0;
    let mut ring = Keyring::new();
    ring.insert("k1", "acme", sym_key.clone()).unwrap();
    let open = KeyWindow::default();
    ring.insert_relay_key("relay-1", "acme", relay_key, open, 0)
        .unwrap();
    ring.insert_signer("signer-1", "acme", signing.public_key(), open, 0)
        .unwrap();
    let minter = EccMinter {
        rkid: "relay-1".into(),
        relay_public_key: relay_pub,
        skid: "signer-1".into(),
        signing_key: signing,
    };
    let mut rng = format::os_rng();
    let sym: Vec<String> = (0..n)
        .map(|i| format::mint(&claims(i), "k1", &sym_key, &mut rng))
        .collect();
    let ecc: Vec<String> = (0..n).map(|i| minter.mint(&claims(i), &mut rng)).collect();

    let first = |tokens: &[String]| {
        per_call(tokens, |t| {
            black_box(format::verify(t, &ring, NOW).unwrap());
        })
    };
    let cached = |tokens: &[String]| {
        let cache = TokenCache::new(tokens.len() + 1);
        for t in tokens {
            cache.verify(t, &ring, NOW).unwrap();
        }
        // Ten passes over the warm cache.
        let many: Vec<String> = (0..10).flat_map(|_| tokens.iter().cloned()).collect();
        per_call(&many, |t| {
            black_box(cache.verify(t, &ring, NOW).unwrap());
        })
    };
    // Warm-up, then the measured runs.
    first(&sym[..n as usize / 10]);
    first(&ecc[..n as usize / 10]);
    let (sym_first, ecc_first) = (first(&sym), first(&ecc));
    let (sym_cached, ecc_cached) = (cached(&sym), cached(&ecc));
    println!(
        "tokens per method: {n}; symmetric token {} bytes, ecc token {} bytes",
        sym[0].len(),
        ecc[0].len()
    );
    println!("| method | first sight | ratio | cached | ratio |");
    println!("|---|---|---|---|---|");
    println!(
        "| symmetric | {:.1} µs | 1.00× | {:.2} µs | 1.00× |",
        sym_first / 1000.0,
        sym_cached / 1000.0
    );
    println!(
        "| ecc | {:.1} µs | {:.1}× | {:.2} µs | {:.2}× |",
        ecc_first / 1000.0,
        ecc_first / sym_first,
        ecc_cached / 1000.0,
        ecc_cached / sym_cached
    );
}
