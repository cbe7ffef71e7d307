//! Command-line parsing: the serve command and the `gen-rai` and `mint` subcommands, with the help text
//! of each. Pure (arguments in, a command or a usage error out), so it is tested without starting
//! anything. Every subcommand knows its own options: an unknown one is named as such before any value
//! is taken for it.

use std::path::PathBuf;

pub const HELP: &str = "\
relayapi - a relay that lets frontends call AI providers with encrypted, limited tokens

USAGE:
    relayapi [--config PATH] [--rai PATH|DIR] [--dev]
    relayapi gen-rai [--scheme http|https] [--host HOST] [--port PORT] [--tenant ID] [--key-id ID] [--out FILE]
    relayapi gen-rai --method ecc --out RELAY_FILE --backend-out BACKEND_FILE [...]
    relayapi mint --rai FILE --provider NAME (--key-env VAR | --key-ref NAME)
                  [--max-calls N] [--expire-seconds S] [--model M] [--config PATH]
    relayapi --help | --version
    relayapi gen-rai --help | relayapi mint --help     (the options of one subcommand)

SERVE (default):
    --config PATH     server settings (default: ./config.json)
    --rai PATH|DIR    client config with the token key, or a directory of *.rai files, one per
                      tenant (default: ./default.rai; generated with a fresh key when missing).
                      Reloaded without a restart on SIGHUP and when the files change.
    --dev             development on this machine: usage counts kept in memory whatever config.json's
                      `store` says (lost when the relay stops), and the published development key of
                      the repository's default.rai accepted (on a loopback address only, and not with
                      `trusted_proxies` set)

    The repository's default.rai holds a published development key: anyone can mint tokens with it,
    so the relay refuses to start with it unless given --dev. Make your own with
    `relayapi gen-rai --out prod.rai` and start with `--rai prod.rai`.

GEN-RAI:
    Writes a new .rai client config with a fresh random key (or, with --method ecc, the relay-side and
    the backend-side file of the asymmetric method); see `relayapi gen-rai --help`.

MINT (development and operations):
    Prints one token for a provider the relay knows; see `relayapi mint --help`.

Docs: README.md, docs/token-format.md, docs/client-config.md, docs/providers.md.
";

pub const GEN_RAI_HELP: &str = "\
relayapi gen-rai - write a new .rai client config with a fresh random 32-byte key

USAGE:
    relayapi gen-rai [--scheme http|https] [--host HOST] [--port PORT] [--tenant ID] [--key-id ID] [--out FILE]
    relayapi gen-rai --method ecc --out RELAY_FILE --backend-out BACKEND_FILE [--key-id ID] [--signer-id ID]
                     [--scheme ..] [--host ..] [--port ..] [--tenant ID]
    relayapi gen-rai --method ecc --relay-key-id ID --relay-public-key KEY --backend-out BACKEND_FILE
                     [--signer-id ID] [--scheme ..] [--host ..] [--port ..] [--tenant ID]

OPTIONS:
    --method symmetric|ecc
                          symmetric (default): one key that mints and verifies, the same file for the
                          relay and the backend. ecc: a P-256 relay key that opens tokens and a P-256
                          signing key that mints them, in two files (docs/client-config.md, ecc files)
    --scheme http|https   how backends and frontends reach the relay (default: http)
    --host HOST           the relay's host name or address as clients use it (default: 127.0.0.1)
    --port PORT           the relay's port (default: 8080)
    --tenant ID           tenant id carried in every token (default: default)
    --key-id ID           id of the new key, 1 to 32 of A-Z a-z 0-9 . _ -
                          (default: key-<Unix seconds now>, e.g. key-1796000000, so keys generated
                          later sort after earlier ones and never share an id)
    --out FILE            write the file there, readable by its owner only, and refuse to overwrite
                          (default: print to stdout; with --method ecc: the relay-side file, required)
    --backend-out FILE    ecc: write the backend-side file (signing key and the relay key's public half)
                          there, readable by its owner only, refusing to overwrite
    --signer-id ID        ecc: id of the new signing key (default: signer-<Unix seconds now>)
    --relay-key-id ID     ecc, tenant side: the relay key's id, as the operator gave it
    --relay-public-key KEY
                          ecc, tenant side: the relay key's public half (87 characters), as the operator
                          gave it. Only the backend-side file is written, with a fresh signing key, and the
                          `signers` entry for the operator's relay-side file is printed (no secret in it).

A symmetric file holds the key in clear: whoever has it can mint tokens. Give it to the relay (--rai) and
to your backend, nobody else. With --method ecc, --key-id names the relay key (default:
relay-<Unix seconds now>); give the relay-side file to the relay (--rai) and the backend-side file to the
backend, then delete the backend-side file from the relay's machine.
";

pub const MINT_HELP: &str = "\
relayapi mint - print one token minted with the Rust implementation of the token format

USAGE:
    relayapi mint --rai FILE --provider NAME (--key-env VAR | --key-ref NAME)
                  [--max-calls N] [--expire-seconds S] [--model M] [--rate N/S]
                  [--session-seconds S] [--config PATH]

OPTIONS:
    --rai FILE            the .rai client config whose current key mints the token: a symmetric file,
                          or the backend-side file of the ecc method (it signs with its signing key and
                          seals to the relay key)
    --provider NAME       a provider the relay knows: a built-in one (openai, anthropic, gemini, ...;
                          docs/providers.md) or one under `providers` in the relay's config.json.
                          An unknown name is refused here rather than at the first call.
    --key-env VAR         read the provider API key from environment variable VAR (so it never
                          appears in the process list or shell history)
    --key-ref NAME        or: name a server-side key (config.json `api_keys`) instead of carrying one
    --max-calls N         calls the token allows (default: 100; 0 = unlimited)
    --expire-seconds S    lifetime in seconds (default: 3600)
    --model M             force this model on every call (claim ext.rep_m)
    --rate N/S            at most N calls in any window of S seconds (claim rate), e.g. 10/60
    --session-seconds S   a realtime (WebSocket) session is closed after S seconds, 1 to 86400
                          (claim ssec)
    --config PATH         the relay's config.json, for its providers (default: ./config.json when
                          it exists, else the built-in providers only)
";

/// Which help text `--help` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpTopic {
    Main,
    GenRai,
    Mint,
}

impl HelpTopic {
    pub fn text(self) -> &'static str {
        match self {
            HelpTopic::Main => HELP,
            HelpTopic::GenRai => GEN_RAI_HELP,
            HelpTopic::Mint => MINT_HELP,
        }
    }
}

/// Options each command takes (all take a value except `--dev`).
const SERVE_OPTIONS: &[&str] = &["config", "rai", "dev"];
const GEN_RAI_OPTIONS: &[&str] = &[
    "scheme",
    "host",
    "port",
    "tenant",
    "key-id",
    "out",
    "method",
    "backend-out",
    "signer-id",
    "relay-key-id",
    "relay-public-key",
];
const MINT_OPTIONS: &[&str] = &[
    "rai",
    "provider",
    "key-env",
    "key-ref",
    "max-calls",
    "expire-seconds",
    "model",
    "rate",
    "session-seconds",
    "config",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve {
        config: PathBuf,
        rai: PathBuf,
        rai_given: bool,
        /// Keep usage in memory whatever `store` says (development; counts are lost on exit).
        dev: bool,
    },
    GenRai(GenRaiArgs),
    Mint(MintArgs),
    Help(HelpTopic),
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenRaiArgs {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub tenant: String,
    /// The new key's id (ecc: the relay key's id).
    pub key_id: Option<String>,
    /// The file to write (ecc: the relay-side file).
    pub out: Option<PathBuf>,
    /// `--method ecc`: the files of the asymmetric method.
    pub ecc: Option<EccGenArgs>,
}

/// The options of `gen-rai --method ecc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccGenArgs {
    pub backend_out: PathBuf,
    pub signer_id: Option<String>,
    /// The tenant-side form: the operator's relay key (id, public key text); only the backend-side file
    /// is written.
    pub relay: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintArgs {
    pub rai: PathBuf,
    pub provider: String,
    pub key_env: Option<String>,
    pub key_ref: Option<String>,
    pub max_calls: u64,
    pub expire_seconds: u64,
    pub model: Option<String>,
    /// `--rate N/S`: at most N calls in any window of S seconds.
    pub rate: Option<(u64, u64)>,
    /// `--session-seconds S`: the `ssec` claim.
    pub session_seconds: Option<u64>,
    /// The relay's config.json, for the provider registry; `None`: ./config.json if it exists.
    pub config: Option<PathBuf>,
}

/// Parse `args` (without the program name). The error is a one-line message for stderr.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().peekable();
    let sub = match it.peek().map(|s| s.as_str()) {
        Some("gen-rai") | Some("mint") => it.next().cloned(),
        _ => None,
    };
    let (topic, known, usage) = match sub.as_deref() {
        None => (HelpTopic::Main, SERVE_OPTIONS, "relayapi --help"),
        Some("gen-rai") => (
            HelpTopic::GenRai,
            GEN_RAI_OPTIONS,
            "relayapi gen-rai --help",
        ),
        Some(_) => (HelpTopic::Mint, MINT_OPTIONS, "relayapi mint --help"),
    };
    let mut opts: Vec<(String, String)> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" | "help" => return Ok(Command::Help(topic)),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let Some(name) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument `{a}`; see `{usage}`"));
        };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (name, None),
        };
        // Checked before a value is taken, so `--bogus` is "unknown", never "needs a value".
        if !known.contains(&name) {
            return Err(format!("unknown option `--{name}`; see `{usage}`"));
        }
        if opts.iter().any(|(n, _)| n == name) {
            return Err(format!("option `--{name}` is given twice"));
        }
        if name == "dev" {
            if inline.is_some() {
                return Err("option `--dev` takes no value".into());
            }
            opts.push(("dev".into(), "true".into()));
            continue;
        }
        let value = match inline {
            Some(v) => v.to_string(),
            None => it
                .next()
                .filter(|v| !v.starts_with("--"))
                .ok_or_else(|| format!("option `--{name}` needs a value; see `{usage}`"))?
                .clone(),
        };
        opts.push((name.to_string(), value));
    }
    let mut take = |name: &str| -> Option<String> {
        let i = opts.iter().position(|(n, _)| n == name)?;
        Some(opts.remove(i).1)
    };
    let cmd = match sub.as_deref() {
        None => {
            let rai = take("rai");
            Command::Serve {
                config: take("config")
                    .unwrap_or_else(|| "config.json".into())
                    .into(),
                rai_given: rai.is_some(),
                rai: rai.unwrap_or_else(|| "default.rai".into()).into(),
                dev: take("dev").is_some(),
            }
        }
        Some("gen-rai") => {
            let method = take("method");
            let ecc = EccOptions {
                backend_out: take("backend-out"),
                signer_id: take("signer-id"),
                relay_key_id: take("relay-key-id"),
                relay_public_key: take("relay-public-key"),
            };
            let key_id = take("key-id");
            let out = take("out").map(PathBuf::from);
            let ecc = match method.as_deref() {
                None | Some("symmetric") => ecc.refuse_all()?,
                Some("ecc") => Some(ecc.check(key_id.is_some(), out.is_some())?),
                Some(other) => {
                    return Err(format!(
                        "option `--method`: `{other}` is not a method; use `symmetric` or `ecc`"
                    ))
                }
            };
            Command::GenRai(GenRaiArgs {
                scheme: take("scheme").unwrap_or_else(|| "http".into()),
                host: take("host").unwrap_or_else(|| "127.0.0.1".into()),
                port: parse_num(take("port"), "port", 8080)?,
                tenant: take("tenant").unwrap_or_else(|| "default".into()),
                key_id,
                out,
                ecc,
            })
        }
        Some(_) => {
            let rai = take("rai").ok_or("`mint` needs --rai FILE")?.into();
            let provider = take("provider").ok_or("`mint` needs --provider NAME (e.g. openai)")?;
            let key_env = take("key-env");
            let key_ref = take("key-ref");
            if key_env.is_some() == key_ref.is_some() {
                return Err("`mint` needs exactly one of --key-env VAR and --key-ref NAME".into());
            }
            Command::Mint(MintArgs {
                rai,
                provider,
                key_env,
                key_ref,
                max_calls: parse_num(take("max-calls"), "max-calls", 100)?,
                expire_seconds: parse_num(take("expire-seconds"), "expire-seconds", 3600)?,
                model: take("model"),
                rate: take("rate").map(|v| parse_rate(&v)).transpose()?,
                session_seconds: take("session-seconds")
                    .map(|v| parse_num(Some(v), "session-seconds", 0))
                    .transpose()?,
                config: take("config").map(PathBuf::from),
            })
        }
    };
    debug_assert!(opts.is_empty(), "every known option is taken: {opts:?}");
    Ok(cmd)
}

/// The ecc-only options of `gen-rai`, as given.
struct EccOptions {
    backend_out: Option<String>,
    signer_id: Option<String>,
    relay_key_id: Option<String>,
    relay_public_key: Option<String>,
}

impl EccOptions {
    /// Without `--method ecc` none of them means anything.
    fn refuse_all(self) -> Result<Option<EccGenArgs>, String> {
        let given = [
            ("backend-out", self.backend_out.is_some()),
            ("signer-id", self.signer_id.is_some()),
            ("relay-key-id", self.relay_key_id.is_some()),
            ("relay-public-key", self.relay_public_key.is_some()),
        ];
        match given.iter().find(|(_, g)| *g) {
            Some((name, _)) => Err(format!("option `--{name}` needs `--method ecc`")),
            None => Ok(None),
        }
    }

    /// The two forms: both files (`--out` and `--backend-out`), or the tenant side (`--relay-key-id`,
    /// `--relay-public-key` and `--backend-out`, no relay-side file).
    fn check(self, key_id: bool, out: bool) -> Result<EccGenArgs, String> {
        let backend_out = self
            .backend_out
            .ok_or("`gen-rai --method ecc` needs --backend-out FILE for the backend-side file")?;
        let relay = match (self.relay_key_id, self.relay_public_key) {
            (Some(id), Some(key)) => {
                if out || key_id {
                    return Err(
                        "with --relay-public-key only the backend-side file is written: \
                                leave out --out and --key-id"
                            .into(),
                    );
                }
                Some((id, key))
            }
            (None, None) => {
                if !out {
                    return Err(
                        "`gen-rai --method ecc` needs --out FILE for the relay-side file (or \
                         --relay-key-id and --relay-public-key to make only the backend-side file)"
                            .into(),
                    );
                }
                None
            }
            _ => {
                return Err("options `--relay-key-id` and `--relay-public-key` go together".into())
            }
        };
        Ok(EccGenArgs {
            backend_out: backend_out.into(),
            signer_id: self.signer_id,
            relay,
        })
    }
}

/// `N/S` with both parts whole numbers above zero (the token format's `rate` claim, §5).
fn parse_rate(v: &str) -> Result<(u64, u64), String> {
    let bad = || format!("option `--rate`: `{v}` is not N/S (calls per seconds, e.g. 10/60)");
    let (n, s) = v.split_once('/').ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    let s: u64 = s.parse().map_err(|_| bad())?;
    if n == 0 || s == 0 {
        return Err(bad());
    }
    Ok((n, s))
}

fn parse_num<T: std::str::FromStr>(v: Option<String>, name: &str, default: T) -> Result<T, String> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| format!("option `--{name}`: `{s}` is not a valid number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn serve_defaults_and_options() {
        assert_eq!(
            p(&[]).unwrap(),
            Command::Serve {
                config: "config.json".into(),
                rai: "default.rai".into(),
                rai_given: false,
                dev: false
            }
        );
        assert_eq!(
            p(&["--config", "/etc/r.json", "--rai=/etc/rai.d"]).unwrap(),
            Command::Serve {
                config: "/etc/r.json".into(),
                rai: "/etc/rai.d".into(),
                rai_given: true,
                dev: false
            }
        );
        assert!(matches!(
            p(&["--dev", "--config", "c.json"]).unwrap(),
            Command::Serve { dev: true, .. }
        ));
        assert_eq!(p(&["--help"]).unwrap(), Command::Help(HelpTopic::Main));
        assert_eq!(p(&["-V"]).unwrap(), Command::Version);
    }

    /// Issue 11 §3: `gen-rai --help` and `mint --help` printed the global text.
    #[test]
    fn each_subcommand_has_its_own_help() {
        assert_eq!(
            p(&["gen-rai", "--help"]).unwrap(),
            Command::Help(HelpTopic::GenRai)
        );
        assert_eq!(
            p(&["mint", "--rai", "x.rai", "-h"]).unwrap(),
            Command::Help(HelpTopic::Mint)
        );
        assert!(GEN_RAI_HELP.contains("--key-id") && !GEN_RAI_HELP.contains("--key-env"));
        assert!(MINT_HELP.contains("--key-env") && !MINT_HELP.contains("--scheme"));
        // Every option a subcommand parses is in its help, and nothing else claims to be.
        for (help, known) in [
            (GEN_RAI_HELP, GEN_RAI_OPTIONS),
            (MINT_HELP, MINT_OPTIONS),
            (HELP, SERVE_OPTIONS),
        ] {
            for o in known {
                assert!(help.contains(&format!("--{o}")), "--{o} missing from help");
            }
        }
    }

    /// Issue 11 §3: the default key id was documented as `key-<date>` but is Unix seconds.
    #[test]
    fn key_id_default_is_documented_as_it_is() {
        assert!(GEN_RAI_HELP.contains("key-<Unix seconds now>"));
        assert!(!HELP.contains("key-<date>") && !GEN_RAI_HELP.contains("key-<date>"));
    }

    /// Issue 11 §3: `gen-rai --bogus` said "needs a value".
    #[test]
    fn unknown_options_are_named_per_subcommand() {
        for args in [
            &["gen-rai", "--bogus"][..],
            &["gen-rai", "--bogus", "1"],
            &["gen-rai", "--key-env", "K"],
            &["mint", "--scheme", "https"],
            &["--bogus"],
            &["--port", "1"],
        ] {
            let e = p(args).unwrap_err();
            assert!(e.starts_with("unknown option `--"), "{args:?}: {e}");
            assert!(!e.contains("needs a value"), "{args:?}: {e}");
        }
        assert!(p(&["gen-rai", "--bogus"])
            .unwrap_err()
            .contains("relayapi gen-rai --help"));
        assert!(p(&["gen-rai", "--host"])
            .unwrap_err()
            .contains("needs a value"));
        // A following option is not swallowed as the value.
        assert!(p(&["gen-rai", "--host", "--port", "1"])
            .unwrap_err()
            .contains("`--host` needs a value"));
        assert!(p(&["gen-rai", "--port", "1", "--port", "2"])
            .unwrap_err()
            .contains("twice"));
        assert!(p(&["--dev=yes"]).unwrap_err().contains("no value"));
    }

    #[test]
    fn errors_are_specific() {
        assert!(p(&["--bogus", "1"]).unwrap_err().contains("--bogus"));
        assert_eq!(
            p(&[
                "mint",
                "--rai",
                "a",
                "--provider",
                "openai",
                "--key-ref",
                "k",
                "--config",
                "c.json"
            ])
            .map(|c| match c {
                Command::Mint(m) => m.config,
                _ => None,
            })
            .unwrap(),
            Some(PathBuf::from("c.json"))
        );
        assert!(p(&["--config"]).unwrap_err().contains("needs a value"));
        assert!(p(&["serve"]).unwrap_err().contains("unexpected argument"));
        assert!(p(&["gen-rai", "--port", "http"])
            .unwrap_err()
            .contains("--port"));
        assert!(p(&["mint", "--rai", "a", "--provider", "openai"])
            .unwrap_err()
            .contains("exactly one"));
    }

    #[test]
    fn subcommands() {
        match p(&[
            "gen-rai",
            "--host",
            "relay.example.com",
            "--port",
            "443",
            "--scheme",
            "https",
        ])
        .unwrap()
        {
            Command::GenRai(GenRaiArgs {
                host, port, scheme, ..
            }) => {
                assert_eq!(
                    (host.as_str(), port, scheme.as_str()),
                    ("relay.example.com", 443, "https")
                )
            }
            c => panic!("{c:?}"),
        }
        match p(&[
            "mint",
            "--rai",
            "x.rai",
            "--provider",
            "openai",
            "--key-env",
            "K",
            "--max-calls",
            "5",
        ])
        .unwrap()
        {
            Command::Mint(m) => assert_eq!((m.max_calls, m.key_env.as_deref()), (5, Some("K"))),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn mint_rate_is_calls_per_seconds() {
        let mint = |rate: &str| {
            p(&[
                "mint",
                "--rai",
                "x.rai",
                "--provider",
                "openai",
                "--key-env",
                "K",
                "--rate",
                rate,
            ])
        };
        match mint("10/60").unwrap() {
            Command::Mint(m) => assert_eq!(m.rate, Some((10, 60))),
            c => panic!("{c:?}"),
        }
        for bad in ["10", "0/60", "10/0", "a/b", "10/60/1", "-1/5", ""] {
            let e = mint(bad).unwrap_err();
            assert!(e.contains("--rate") && e.contains("N/S"), "{bad}: {e}");
        }
    }

    #[test]
    fn gen_rai_ecc_forms() {
        match p(&[
            "gen-rai",
            "--method",
            "ecc",
            "--out",
            "r.rai",
            "--backend-out",
            "b.rai",
        ])
        .unwrap()
        {
            Command::GenRai(a) => {
                assert_eq!(a.out, Some(PathBuf::from("r.rai")));
                let e = a.ecc.unwrap();
                assert_eq!((e.backend_out, e.relay), (PathBuf::from("b.rai"), None));
            }
            c => panic!("{c:?}"),
        }
        match p(&[
            "gen-rai",
            "--method=ecc",
            "--relay-key-id",
            "r1",
            "--relay-public-key",
            "KEY",
            "--backend-out",
            "b.rai",
            "--signer-id",
            "s1",
        ])
        .unwrap()
        {
            Command::GenRai(a) => {
                let e = a.ecc.unwrap();
                assert_eq!(e.relay, Some(("r1".into(), "KEY".into())));
                assert_eq!(e.signer_id.as_deref(), Some("s1"));
            }
            c => panic!("{c:?}"),
        }
        for (args, needle) in [
            (
                &["gen-rai", "--method", "ecc", "--out", "r.rai"][..],
                "--backend-out",
            ),
            (
                &["gen-rai", "--method", "ecc", "--backend-out", "b.rai"],
                "--out FILE",
            ),
            (&["gen-rai", "--method", "rsa"], "not a method"),
            (
                &["gen-rai", "--backend-out", "b.rai"],
                "needs `--method ecc`",
            ),
            (&["gen-rai", "--signer-id", "s"], "needs `--method ecc`"),
            (
                &[
                    "gen-rai",
                    "--method",
                    "ecc",
                    "--relay-key-id",
                    "r",
                    "--backend-out",
                    "b",
                ],
                "go together",
            ),
            (
                &[
                    "gen-rai",
                    "--method",
                    "ecc",
                    "--relay-key-id",
                    "r",
                    "--relay-public-key",
                    "K",
                    "--backend-out",
                    "b",
                    "--out",
                    "r.rai",
                ],
                "leave out --out",
            ),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }
}
