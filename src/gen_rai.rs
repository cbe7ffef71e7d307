//! `relayapi gen-rai`: a new symmetric `.rai`, or the two files of the ecc method (or the backend-side
//! file alone, for a tenant that makes its own signing key), each checked by the parser before it is
//! written, and written readable by its owner only, never over an existing file. Making the configs is
//! `token/rai_file.rs`'s and `token/ecc/rai_file.rs`'s.

use std::path::Path;

use crate::cli::{EccGenArgs, GenRaiArgs};
use crate::clock::{Clock, SystemClock};
use crate::token::ecc::keys::EccPublicKey;
use crate::token::ecc::rai_file as ecc_rai;
use crate::token::format;
use crate::token::rai;

/// Runs the command as parsed.
pub fn run(a: &GenRaiArgs) -> Result<(), String> {
    match &a.ecc {
        None => symmetric(
            &a.scheme,
            &a.host,
            a.port,
            &a.tenant,
            a.key_id.as_deref(),
            a.out.as_deref(),
        ),
        Some(e) => ecc(a, e),
    }
}

fn symmetric(
    scheme: &str,
    host: &str,
    port: u16,
    tenant: &str,
    key_id: Option<&str>,
    out: Option<&Path>,
) -> Result<(), String> {
    let default_kid = format!("key-{}", SystemClock.unix_now());
    let kid = key_id.unwrap_or(&default_kid);
    let mut rng = format::os_rng();
    let r = rai::generate_rai(scheme, host, port, tenant, kid, &mut rng);
    let text = rai::to_json_pretty(&r);
    // Round-trip through the parser so a bad --host, --tenant or --key-id is reported like a bad file.
    rai::parse_rai(&text, out.unwrap_or(Path::new("<generated>"))).map_err(|e| e.to_string())?;
    match out {
        None => print!("{text}"),
        Some(path) => write_private(path, &text)?,
    }
    Ok(())
}

/// `gen-rai --method ecc`: both files, or (given the operator's relay key) the backend-side file alone
/// and the `signers` entry to add to the relay-side file.
fn ecc(a: &GenRaiArgs, ecc: &EccGenArgs) -> Result<(), String> {
    let now = SystemClock.unix_now();
    let server = rai::RaiServer {
        scheme: a.scheme.clone(),
        host: a.host.clone(),
        port: a.port,
        base_path: "/relayapi/".into(),
    };
    let signer_id = ecc.signer_id.clone().unwrap_or(format!("signer-{now}"));
    let mut rng = format::os_rng();
    // Each text goes back through the parser, so a bad --host, --tenant or id is reported like a bad
    // file, before anything is written.
    let checked = |r: &rai::EccRaiConfig, path: &Path| -> Result<String, String> {
        let text = ecc_rai::to_json_pretty(r);
        rai::parse_rai_any(&text, path).map_err(|e| e.to_string())?;
        Ok(text)
    };
    match &ecc.relay {
        None => {
            let out = a.out.as_deref().ok_or("--out is required")?;
            let relay_key_id = a.key_id.clone().unwrap_or(format!("relay-{now}"));
            let (relay, backend) =
                ecc_rai::generate_ecc_pair(&server, &a.tenant, &relay_key_id, &signer_id, &mut rng);
            let relay_text = checked(&relay, out)?;
            let backend_text = checked(&backend, &ecc.backend_out)?;
            // Refuse before writing either, so a refusal never leaves one file of the pair behind.
            for path in [out, ecc.backend_out.as_path()] {
                if path.exists() {
                    return Err(format!("{}: exists; refusing to overwrite", path.display()));
                }
            }
            write_private(out, &relay_text)?;
            write_private(&ecc.backend_out, &backend_text)
        }
        Some((relay_key_id, relay_public_key)) => {
            let relay_public_key = EccPublicKey::from_base64url(relay_public_key).ok_or(
                "option `--relay-public-key`: expected the relay key's public half as the operator \
                 gave it: a P-256 point as 87 characters of unpadded base64url (relay_public_key)",
            )?;
            let backend = ecc_rai::generate_ecc_backend(
                &server,
                &a.tenant,
                relay_key_id,
                &relay_public_key,
                &signer_id,
                &mut rng,
            );
            let text = checked(&backend, &ecc.backend_out)?;
            write_private(&ecc.backend_out, &text)?;
            let rai::EccCrypto::Backend(b) = &backend.crypto else {
                unreachable!("generate_ecc_backend makes a backend-side file")
            };
            eprintln!(
                "relayapi: wrote {}; add this entry to `signers` in the relay-side file and reload the relay:",
                ecc.backend_out.display()
            );
            println!("{}", ecc_rai::signer_entry_json(&ecc_rai::signer_entry(b)));
            Ok(())
        }
    }
}

/// Write a key file readable by its owner only: it holds the keys in clear.
pub fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}
