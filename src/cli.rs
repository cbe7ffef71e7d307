//! Command-line parsing: the serve command and the `gen-rai` and `mint` subcommands, with the help text.
//! Pure (arguments in, a command or a usage error out), so it is tested without starting anything.

use std::path::PathBuf;

pub const HELP: &str = "\
relayapi - a relay that lets frontends call AI providers with encrypted, limited tokens

USAGE:
    relayapi [--config PATH] [--rai PATH|DIR] [--dev]
    relayapi gen-rai [--scheme http|https] [--host HOST] [--port PORT] [--tenant ID] [--key-id ID] [--out FILE]
    relayapi mint --rai FILE --provider NAME (--key-env VAR | --key-ref NAME)
                  [--max-calls N] [--expire-seconds S] [--model M]
    relayapi --help | --version

SERVE (default):
    --config PATH     server settings (default: ./config.json)
    --rai PATH|DIR    client config with the token key, or a directory of *.rai files, one per
                      tenant (default: ./default.rai; generated with a fresh key when missing)
    --dev             keep usage counts in memory whatever config.json's `store` says (development
                      only: counts and revocations are lost when the relay stops)

    The repository's default.rai holds a published development key: the relay refuses to serve it on
    a non-loopback address. Make your own with `relayapi gen-rai --out prod.rai`.

GEN-RAI:
    Writes a new .rai client config with a fresh random 32-byte key (to --out, or stdout).
    --scheme, --host, --port describe how frontends reach the relay (defaults: http, 127.0.0.1, 8080).
    --tenant (default: default) and --key-id (default: key-<date>) name the tenant and the key.

MINT (development and operations):
    Prints one token minted with the Rust implementation of the token format. The API key is read from
    the environment variable named by --key-env so it never appears in the process list, or the token
    names a server-side key (config.json api_keys) with --key-ref.
    --max-calls (default 100, 0 = unlimited), --expire-seconds (default 3600), --model forces a model.

Docs: README.md, docs/token-format.md, docs/client-config.md, docs/providers.md.
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve {
        config: PathBuf,
        rai: PathBuf,
        rai_given: bool,
        /// Keep usage in memory whatever `store` says (development; counts are lost on exit).
        dev: bool,
    },
    GenRai {
        scheme: String,
        host: String,
        port: u16,
        tenant: String,
        key_id: Option<String>,
        out: Option<PathBuf>,
    },
    Mint(MintArgs),
    Help,
    Version,
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
}

/// Parse `args` (without the program name). The error is a one-line message for stderr.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().peekable();
    let sub = match it.peek().map(|s| s.as_str()) {
        Some("gen-rai") | Some("mint") => it.next().cloned(),
        _ => None,
    };
    let mut opts: Vec<(String, String)> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" | "help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--dev" => {
                opts.push(("dev".into(), "true".into()));
                continue;
            }
            _ => {}
        }
        let Some(name) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument `{a}`; see `relayapi --help`"));
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = it
                    .next()
                    .ok_or_else(|| format!("option `--{name}` needs a value"))?;
                (name.to_string(), v.clone())
            }
        };
        opts.push((name, value));
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
        Some("gen-rai") => Command::GenRai {
            scheme: take("scheme").unwrap_or_else(|| "http".into()),
            host: take("host").unwrap_or_else(|| "127.0.0.1".into()),
            port: parse_num(take("port"), "port", 8080)?,
            tenant: take("tenant").unwrap_or_else(|| "default".into()),
            key_id: take("key-id"),
            out: take("out").map(PathBuf::from),
        },
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
            })
        }
    };
    if let Some((name, _)) = opts.first() {
        return Err(format!("unknown option `--{name}`; see `relayapi --help`"));
    }
    Ok(cmd)
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
        assert_eq!(p(&["--help"]).unwrap(), Command::Help);
        assert_eq!(p(&["-V"]).unwrap(), Command::Version);
    }

    #[test]
    fn errors_are_specific() {
        assert!(p(&["--bogus", "1"]).unwrap_err().contains("--bogus"));
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
            Command::GenRai {
                host, port, scheme, ..
            } => {
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
}
