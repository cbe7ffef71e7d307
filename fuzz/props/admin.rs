//! Admin request signatures (`src/admin/signing.rs`) under the key ring of `tests/vectors/keys.json`.
//!
//! The first byte picks the mode:
//! - even: NUL-separated `Authorization` value, method, target and body as a client sends them. What
//!   `parse_authorization` accepts is a kid of the key-id alphabet, a canonical decimal `ts` and a
//!   32-byte signature whose canonical base64url spelling is the one in the header; what
//!   `verify_request` accepts is a request the reference signer (`sign_request`) signs identically,
//!   for a loaded key, within the clock window. Nothing else is ever accepted.
//! - odd: the fuzzer picks key, clock offset and request, the reference signer signs it, and the
//!   header is respelled in ways RFC 9110 allows (scheme case, parameter order, OWS): it must verify
//!   exactly when the clock offset is within the window, and no longer once method, target or body
//!   change.

use relayapi::admin::signing::{
    parse_authorization, sign_request, verify_request, MAX_CLOCK_DIFF_SECS, SCHEME,
};
use relayapi::token::secret::SecretKey;

use super::fields;
use super::token::{b64_encode, keyring, KEYS};

const NOW: u64 = 1_790_000_000;

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check_raw(rest);
    } else {
        check_signed(mode, rest);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check_raw(rest: &[u8]) {
    let f = fields(rest, 4);
    let (header, method, target, body) = (f[0], text(f[1]), text(f[2]), f[3]);
    let parsed = parse_authorization(header);
    if let Some(auth) = &parsed {
        let value = std::str::from_utf8(header).expect("accepted headers are UTF-8");
        let params = value
            .trim_matches([' ', '\t'])
            .split_once(' ')
            .expect("scheme")
            .1;
        let param = |name: &str| {
            params
                .split(',')
                .filter_map(|p| p.trim_matches([' ', '\t']).split_once('='))
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        };
        assert_eq!(param("kid"), Some(auth.kid.as_str()));
        assert_eq!(
            param("ts"),
            Some(auth.ts.to_string().as_str()),
            "one spelling of ts"
        );
        assert_eq!(auth.sig.len(), 32);
        assert_eq!(
            param("sig"),
            Some(b64_encode(&auth.sig).as_str()),
            "one spelling of sig"
        );
    }
    let ring = keyring();
    let Ok(tenant) = verify_request(&ring, header, &method, &target, body, NOW) else {
        return;
    };
    let auth = parsed.expect("a verified header parses");
    let (kid, expected_tenant, key) = *KEYS
        .iter()
        .find(|(kid, _, _)| *kid == auth.kid)
        .expect("verified with a loaded key");
    assert_eq!(tenant, expected_tenant);
    assert!(NOW.abs_diff(auth.ts) <= MAX_CLOCK_DIFF_SECS);
    let key = SecretKey::from_base64url(key).expect("test key");
    let reference = sign_request(kid, &key, &method, &target, body, auth.ts);
    assert_eq!(
        parse_authorization(reference.as_bytes()),
        Some(auth),
        "accepted a signature the signer does not produce"
    );
}

fn check_signed(mode: u8, rest: &[u8]) {
    let [pick, offset, rest @ ..] = rest else {
        return;
    };
    let f = fields(rest, 3);
    let (method, target, body) = (text(f[0]), text(f[1]), f[2]);
    let (kid, tenant, key) = KEYS[usize::from(*pick) % KEYS.len()];
    let key = SecretKey::from_base64url(key).expect("test key");
    // Offsets from -320 to +315 seconds, both edges of the window included.
    let ts = (NOW - 320).wrapping_add(u64::from(*offset) * 5 / 2);
    let signed = sign_request(kid, &key, &method, &target, body, ts);
    let header = respell(&signed, mode);
    let ring = keyring();
    let within = NOW.abs_diff(ts) <= MAX_CLOCK_DIFF_SECS;
    let verified = verify_request(&ring, header.as_bytes(), &method, &target, body, NOW);
    assert_eq!(
        verified.as_deref().ok(),
        within.then_some(tenant),
        "{header}"
    );
    if within {
        let other = format!("{target}x");
        assert!(verify_request(&ring, header.as_bytes(), &method, &other, body, NOW).is_err());
        let other = format!("{method}X");
        assert!(verify_request(&ring, header.as_bytes(), &other, &target, body, NOW).is_err());
        let mut other = body.to_vec();
        other.push(b'x');
        assert!(verify_request(&ring, header.as_bytes(), &method, &target, &other, NOW).is_err());
    }
}

/// The same header spelled differently, as the bits of `mode` say: lower-case scheme, reversed
/// parameter order, OWS around the commas and the whole value.
fn respell(header: &str, mode: u8) -> String {
    let params = header.strip_prefix(SCHEME).expect("scheme").trim_start();
    let mut list: Vec<&str> = params.split(',').collect();
    if mode & 4 != 0 {
        list.reverse();
    }
    let sep = if mode & 8 != 0 { " ,\t" } else { "," };
    let scheme = if mode & 2 != 0 {
        SCHEME.to_ascii_lowercase()
    } else {
        SCHEME.to_owned()
    };
    let pad = if mode & 16 != 0 { "\t " } else { "" };
    format!("{pad}{scheme} {}{pad}", list.join(sep))
}
