//! The `relayapi` binary: parse the command line, load and check `config.json` and the `.rai` keys, refuse
//! unsafe set-ups, build the shared state and run the server until SIGTERM/SIGINT. Every start-up
//! problem exits non-zero with a message naming the file and the field.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use relayapi::app::{App, Keys, Limits, Nets, Observability, Upstreams};
use relayapi::cli::{self, Command, MintArgs};
use relayapi::clock::{Clock, SystemClock};
use relayapi::config::{load_config, parse_config, Config, StoreConfig};
use relayapi::gen_rai::{self, write_private};
use relayapi::limits::body_budget::BodyBudget;
use relayapi::limits::limiter::{RateLimiter, TokenLimits};
use relayapi::limits::log_sampler::{LogSampler, REPORT_INTERVAL_SECS};
use relayapi::log::Logger;
use relayapi::metrics::Metrics;
use relayapi::metrics::{RequestIds, Stats};
use relayapi::server::key_reload::{self, KeySource};
use relayapi::server::tls::{self, ServerTls};
use relayapi::server::{accept, redirect};
use relayapi::store;
use relayapi::store::Store;
use relayapi::token::cache::{TokenCache, TOKEN_CACHE_ENTRIES};
use relayapi::token::format::{self, Claims, Ext};
use relayapi::token::live_keyring::LiveKeyring;
use relayapi::token::minter::Minter;
use relayapi::token::rai;
use relayapi::token::secret::SecretString;
use relayapi::upstream::client::Upstream;
use relayapi::upstream::key_scrub::FragmentCache;
use relayapi::upstream::provider::Registry;

/// mimalloc instead of the system allocator: every proxied request allocates and frees a few
/// buffers, and glibc's malloc/free cost ~15 % of the relay's instructions per request (measured with
/// `bench/instructions.sh`). Only the binary sets it; the library leaves the choice to its user.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tokens with a `rate` or `conc` claim tracked at once; beyond this, new ones are refused until old
/// windows pass, so a flood of fresh tokens cannot grow memory.
const TOKEN_TABLE_ENTRIES: usize = 100_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("relayapi: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        Command::Help(topic) => {
            print!("{}", topic.text());
            Ok(())
        }
        Command::Version => {
            println!("relayapi {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::GenRai(a) => gen_rai::run(&a),
        Command::Mint(m) => mint(&m),
        Command::Serve {
            config,
            rai,
            rai_given,
            dev,
        } => serve(&config, &rai, rai_given, dev),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relayapi: {e}");
            ExitCode::from(1)
        }
    }
}

/// Refuse a provider the relay would not know, at mint time rather than at the first call: the
/// built-ins plus `providers` of the relay's config.json (`--config`, else ./config.json if present).
fn check_mint_provider(m: &MintArgs) -> Result<(), String> {
    let default = Path::new("config.json");
    let cfg = match &m.config {
        Some(path) => load_config(path).map_err(|e| e.to_string())?,
        None if default.is_file() => load_config(default).map_err(|e| e.to_string())?,
        None => parse_config("{}", Path::new("(defaults)")).map_err(|e| e.to_string())?,
    };
    let registry = Registry::from_config(&cfg);
    if registry.get(&m.provider).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = registry.names().collect();
    let hint = relayapi::upstream::provider::closest(&m.provider, &known)
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default();
    let source = match &m.config {
        Some(p) => p.display().to_string(),
        None if default.is_file() => "config.json".into(),
        None => "no config.json".into(),
    };
    Err(format!(
        "unknown provider `{}`{hint}: known are {} (built-ins plus `providers` in {source}); \
         see docs/providers.md",
        m.provider,
        known.join(", ")
    ))
}

fn mint(m: &MintArgs) -> Result<(), String> {
    check_mint_provider(m)?;
    let file = rai::load_rai_any(&m.rai).map_err(|e| e.to_string())?;
    let minter = Minter::from_rai(file, &m.rai).map_err(|e| e.to_string())?;
    let key = match &m.key_env {
        Some(var) => {
            Some(SecretString::new(std::env::var(var).map_err(|_| {
                format!("environment variable {var} is not set")
            })?))
        }
        None => None,
    };
    let now = SystemClock.unix_now();
    if !minter.window().contains(now) {
        return Err(format!(
            "cannot mint: the key `{}` of {} is outside its validity window now (fields \
             `crypto.not_before` / `crypto.not_after`); the relay would refuse its tokens",
            minter.key_id(),
            m.rai.display()
        ));
    }
    let mut rng = format::os_rng();
    let claims = Claims {
        key,
        kref: m.key_ref.clone(),
        max: (m.max_calls > 0).then_some(m.max_calls),
        ext: m.model.clone().map(|rep_m| Ext { rep_m: Some(rep_m) }),
        rate: m.rate.map(|(n, s)| format::Rate { n, s }),
        ssec: m.session_seconds,
        ..Claims::new(
            format::new_token_id(&mut rng),
            minter.tenant().to_owned(),
            now,
            now + m.expire_seconds,
            m.provider.clone(),
        )
    };
    minter
        .check_mintable(&claims)
        .map_err(|e| format!("cannot mint: {e}"))?;
    println!("{}", minter.mint(&claims, &mut rng));
    Ok(())
}

/// Writes the lines still queued in the log when `serve` returns, however it returns.
struct FlushOnExit(Logger);

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        self.0.flush(relayapi::log_writer::FLUSH_DEADLINE);
    }
}

fn serve(config_path: &Path, rai_path: &Path, rai_given: bool, dev: bool) -> Result<(), String> {
    let mut cfg = load_config(config_path).map_err(|e| e.to_string())?;
    if dev {
        if cfg.rate_limit.shared {
            return Err("--dev keeps usage in memory, which cannot share rate limits: unset rate_limit.shared".into());
        }
        cfg.store = StoreConfig::Memory;
    }
    let metrics = Metrics::default();
    let log = Logger::new(cfg.log.access, metrics.log_lines_dropped.clone())
        .map_err(|e| format!("cannot start the log writers: {e}"))?;
    // Whichever way serving ends, lines logged until then are written first (bounded by a deadline).
    let _flush = FlushOnExit(log.clone());
    if dev {
        log.warn(
            "--dev: usage counts and revocations are kept in memory and lost when the relay stops",
            json!({}),
        );
    }
    if !rai_given && !rai_path.exists() {
        // First start from a directory holding only the binary and config.json: make a key to start with.
        if cfg.server.addr.port() == 0 {
            // The .rai tells backends where the relay is; an ephemeral port is not an address anyone can
            // be given, so refuse rather than write a file that cannot be loaded.
            return Err(format!(
                "{}: field `server.port`: 0 (any free port) cannot be written into a generated {}; \
                 set a fixed port or pass --rai with an existing file",
                config_path.display(),
                rai_path.display()
            ));
        }
        let mut rng = format::os_rng();
        let r = rai::generate_rai(
            if cfg.tls.is_some() { "https" } else { "http" },
            &cfg.server.addr.ip().to_string(),
            cfg.server.addr.port(),
            "default",
            "dev-local",
            &mut rng,
        );
        write_private(rai_path, &rai::to_json_pretty(&r))?;
        log.info(
            "generated a new client config",
            json!({"path": rai_path.display().to_string()}),
        );
    }
    let key_source = KeySource::new(rai_path, &cfg, dev);
    // Taken before the keys are read, so a change made while they load is picked up by the first look.
    let key_files_seen = key_source.fingerprint();
    let keys = key_source.load().map_err(|e| e.to_string())?;
    let published_dev_key = keys.published_dev_key;
    if published_dev_key {
        log.warn(
            "--dev: serving the published development key (the repository's default.rai): anyone on this \
             machine can mint tokens for this relay; make your own with `relayapi gen-rai`",
            json!({"rai": rai_path.display().to_string()}),
        );
    }
    key_source.warn_mismatches(&log, &keys.files);
    let compat = relayapi::server::compat_keys::load(&cfg, &log)?;
    let tls = match &cfg.tls {
        Some(t) => Some(Arc::new(
            ServerTls::load(t).map_err(|e| format!("{}: {e}", config_path.display()))?,
        )),
        None => None,
    };
    let api_keys = load_api_keys(&cfg, config_path)?;
    let upstream = Upstream::new(&cfg.upstream)?;
    let store = open_store(&cfg, config_path)?;
    let limiter = RateLimiter::from_config(&cfg.rate_limit)
        .map_err(|e| format!("{}: field `rate_limit`: {e}", config_path.display()))?;
    let addr = cfg.server.addr;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = accept::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let redirect = cfg.tls.as_ref().and_then(|t| t.redirect.clone());
        let redirect_listener = match &redirect {
            Some(r) => {
                let a = SocketAddr::new(addr.ip(), r.port);
                Some(accept::bind(a).map_err(|e| {
                    format!(
                        "{}: field `tls.redirect_http_port`: cannot listen on {a}: {e}",
                        config_path.display()
                    )
                })?)
            }
            None => None,
        };
        // Installed before the relay says it is listening: SIGHUP's default action is to terminate,
        // and `systemctl reload` may come at any time after start. One receiver for the keys, one for
        // the certificate.
        let [keys_hup, tls_hup] =
            reload_requests().map_err(|e| format!("cannot install a SIGHUP handler: {e}"))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let app = Arc::new(App {
            keys: Keys {
                keyring: LiveKeyring::new(keys.ring),
                tokens: TokenCache::new(TOKEN_CACHE_ENTRIES),
                api_keys,
                fragments: FragmentCache::default(),
                compat,
            },
            limits: Limits {
                rate: limiter,
                tokens: TokenLimits::new(TOKEN_TABLE_ENTRIES),
                bodies: BodyBudget::new(
                    cfg.server.max_buffered_body_bytes,
                    cfg.server.max_buffered_body_bytes_per_ip,
                ),
            },
            store,
            usage: Default::default(),
            upstream: Upstreams {
                registry: Registry::from_config(&cfg),
                pool: upstream,
            },
            nets: Nets {
                trusted_proxies: cfg.trusted_proxies.clone(),
                monitoring: cfg.metrics.allowed_ips.clone(),
            },
            clock,
            obs: Observability {
                stats: Stats::default(),
                metrics,
                log: log.clone(),
                log_sampler: LogSampler::new(),
                started: Instant::now(),
                ids: RequestIds::new(instance_id()),
            },
            cfg,
        });
        // What a new user needs to see at start: which files were read, whether the published
        // development key is in use, and where each overridden provider now points.
        let overrides: serde_json::Map<String, serde_json::Value> = app
            .cfg
            .providers
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    p.base_url
                        .as_ref()
                        .map_or(json!("built-in"), |u| json!(u.to_string())),
                )
            })
            .collect();
        let mut fields = json!({
            "addr": local.to_string(),
            "scheme": if tls.is_some() { "https" } else { "http" },
            "version": env!("CARGO_PKG_VERSION"),
            "config": config_path.display().to_string(),
            "rai": rai_path.display().to_string(),
            "published_dev_key": published_dev_key,
            "provider_overrides": overrides,
            "tenants": app.keys.keyring.current().len(),
            "store": app.store.kind(),
        });
        if let Some(t) = &tls {
            fields["cert_sha256"] = json!(t.cert_sha256());
        }
        log.info("listening", fields);

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = Vec::new();
        if let (Some(l), Some(r)) = (redirect_listener, redirect) {
            let raddr = l.local_addr().map_err(|e| e.to_string())?;
            let name = r.host;
            log.info(
                "redirect listening",
                json!({"addr": raddr.to_string(), "to_port": local.port(), "to_host": name}),
            );
            tasks.push(tokio::spawn(redirect::run(
                app.clone(),
                l,
                name,
                local.port(),
                stopped(stop_rx.clone()),
            )));
        }
        tasks.push(tokio::spawn(key_reload::watch(
            app.clone(),
            key_source,
            key_files_seen,
            keys_hup,
        )));
        if let Some(t) = &tls {
            let interval = app.cfg.tls.as_ref().and_then(|c| c.reload_interval);
            tasks.push(tokio::spawn(tls::watch(
                t.clone(),
                log.clone(),
                interval,
                tls_hup,
            )));
        }
        tasks.push(tokio::spawn(report_suppressed_lines(app.clone())));
        tasks.push(tokio::spawn(write_usage_records(app.clone())));
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        accept::run(app.clone(), listener, tls, stopped(stop_rx)).await;
        for t in tasks {
            t.abort();
        }
        // What the last second of unbudgeted calls used.
        app.usage.flush(&app.store, &app.obs.log).await;
        Ok(())
    })
}

/// Writes the usage of tokens without a spend limit to the store once a second
/// (`budget/recorder.rs`).
async fn write_usage_records(app: Arc<App>) {
    let mut tick = tokio::time::interval(relayapi::budget::recorder::FLUSH_EVERY);
    loop {
        tick.tick().await;
        app.usage.flush(&app.store, &app.obs.log).await;
    }
}

/// Says, every `REPORT_INTERVAL_SECS`, how many access-log lines the sampler held back and for whom,
/// so a flood is visible in the operational log without filling the access log.
async fn report_suppressed_lines(app: Arc<App>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(REPORT_INTERVAL_SECS));
    loop {
        tick.tick().await;
        if let Some(r) = app.obs.log_sampler.take_report() {
            let top: Vec<_> = r
                .top
                .iter()
                .map(
                    |(ip, class, n)| json!({"ip": ip.to_string(), "class": class, "suppressed": n}),
                )
                .collect();
            app.obs.log.warn(
                "access log lines suppressed",
                json!({"suppressed": r.suppressed, "interval_secs": REPORT_INTERVAL_SECS, "top": top}),
            );
        }
    }
}

/// SIGHUP, forwarded as messages to each of `N` reloaders (keys, certificate): the reload request of
/// `systemctl reload`, key rotations and certificate renewal hooks.
fn reload_requests<const N: usize>() -> std::io::Result<[tokio::sync::mpsc::Receiver<()>; N]> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..N).map(|_| tokio::sync::mpsc::channel(1)).unzip();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                for tx in &txs {
                    // A reload already queued covers this one too.
                    let _ = tx.try_send(());
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(txs);
    Ok(rxs
        .try_into()
        .unwrap_or_else(|_| unreachable!("N receivers were made")))
}

/// Resolves on SIGTERM (systemd, docker) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Server-side keys come from the environment; a missing variable is a deployment error found at start.
fn load_api_keys(
    cfg: &Config,
    config_path: &Path,
) -> Result<HashMap<String, SecretString>, String> {
    let mut keys = HashMap::new();
    for (name, src) in &cfg.api_keys {
        let value = std::env::var(&src.env).map_err(|_| {
            format!(
                "{}: field `api_keys.{name}.env`: environment variable {} is not set",
                config_path.display(),
                src.env
            )
        })?;
        keys.insert(name.clone(), SecretString::new(value));
    }
    Ok(keys)
}

/// Opens the usage store named by `store.type`. A sqlite file that cannot be opened, or a Redis server
/// that does not answer `PING`, stops the start with the field to look at.
fn open_store(cfg: &Config, config_path: &Path) -> Result<Store, String> {
    let field = |name: &str, e: &dyn std::fmt::Display| {
        format!("{}: field `{name}`: {e}", config_path.display())
    };
    // The revocation of a never-seen token must outlive every token that could still be accepted.
    let max_token_life = cfg
        .token
        .max_lifetime
        .saturating_add(cfg.token.clock_skew.saturating_mul(2));
    match &cfg.store {
        StoreConfig::Memory => Ok(Store::memory()),
        StoreConfig::Sqlite { path } => {
            Store::open_sqlite(path, max_token_life).map_err(|e| field("store.path", &e))
        }
        StoreConfig::Redis(r) => {
            let opts = store::RedisOptions {
                target: r.target.clone(),
                key_prefix: r.key_prefix.clone(),
                connect_timeout: r.connect_timeout,
                command_timeout: r.command_timeout,
                replica_acks: r.replica_acks,
            };
            let at = match r.target {
                store::RedisTarget::Server(_) => "store.url",
                store::RedisTarget::Cluster(_) => "store.cluster",
                store::RedisTarget::Sentinel { .. } => "store.sentinel",
            };
            let s = Store::open_redis(opts, max_token_life).map_err(|e| field(at, &e))?;
            // A throwaway runtime: the check's connection must not outlive it, and the store opens
            // its own connection on the server's runtime at the first request.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            rt.block_on(s.check()).map_err(|e| field(at, &e))?;
            Ok(s)
        }
    }
}

fn instance_id() -> String {
    let mut b = [0u8; 4];
    format::os_rng()(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
