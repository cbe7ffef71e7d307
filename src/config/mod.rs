//! Server settings from `config.json`: read (`config/schema.rs`, with the operator's words for serde's
//! messages in `config/words.rs`), checked and turned into the types the relay runs with
//! (`config/validate.rs`, `config/store.rs`, `config/tls.rs` into `config/types.rs`), with errors that
//! name the file, the field and what a valid value looks like. Configuration depends only on pure
//! leaves: the grammar in `text/` and the provider registry's data (`upstream/builtins.rs`). Loading
//! the `.rai` key files is `token/rai.rs`'s job; the registry these settings build is
//! `upstream/provider.rs`'s.

pub mod budgets;
pub mod compat;
mod schema;
mod store;
mod tls;
pub mod types;
mod validate;
pub mod words;

use std::path::Path;

pub use crate::text::file_error::FileError as ConfigError;
pub use crate::text::ipnet::parse_net;
pub use schema::{
    ApiKeySource, CorsConfig, IpLimitConfig, LogConfig, RateLimitConfig, TokenConfig,
};
pub use store::{DEFAULT_KEY_PREFIX, DEFAULT_SQLITE_PATH};
pub use types::{
    Config, HttpRedirect, MetricsConfig, ProviderOverride, RedisStoreConfig, ServerConfig,
    StoreConfig, TlsConfig, TlsVersion, UpstreamConfig,
};
pub use validate::valid_origin;

/// Parses and checks `config.json` text. `file` names the file in error messages, and relative TLS and
/// sqlite paths are taken from its directory.
pub fn parse_config(text: &str, file: &Path) -> Result<Config, ConfigError> {
    // The derive would also take an array, reading it as the sections in declaration order (`[]` is
    // every default). Found by the `config` fuzz target.
    if !text.trim_start().starts_with('{') {
        return Err(ConfigError::whole(
            file,
            "expected a JSON object: {\"server\": {...}, ...}",
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let raw: schema::Config = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let (field, problem) = words::describe(if path == "." { "" } else { &path }, e.inner());
        ConfigError::new(file, &field, problem)
    })?;
    // serde_json stops after the first value; text after it (two configs pasted together, a stray
    // brace) is a broken file, not something to ignore. Found by the `config` fuzz target.
    de.end()
        .map_err(|e| ConfigError::whole(file, words::describe("", &e).1))?;
    validate::config(raw, file)
}

/// Reads and parses `path`.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole(path, format!("cannot read the file: {e}")))?;
    parse_config(&text, path)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_config(text, Path::new("config.json"))
    }

    #[test]
    fn text_after_the_object_is_refused() {
        // fuzz/regressions/config/trailing-characters
        assert!(parse("{}oooo").is_err());
        assert!(parse("{} {}").is_err());
        assert!(parse("{}\n\t ").is_ok());
    }

    #[test]
    fn only_an_object_is_a_config() {
        // fuzz/regressions/config/array
        assert!(parse("[\n   ]").is_err());
        assert!(parse("[{}]").is_err());
        assert!(parse(" \n{}").is_ok());
    }

    #[test]
    fn a_provider_or_key_named_twice_is_refused() {
        // fuzz/regressions/config/duplicate-provider
        let twice = r#"{"providers": {"openai": {"base_url": "https://a.example.com"},
                                      "openai": {"base_url": "https://b.example.com"}}}"#;
        let e = parse(twice).unwrap_err();
        assert_eq!(e.field, "providers");
        assert!(e.problem.contains("`openai` appears twice"), "{e}");
        let twice = r#"{"api_keys": {"main": {"env": "A"}, "main": {"env": "B"}}}"#;
        assert!(parse(twice).is_err());
    }

    #[test]
    fn a_section_given_as_an_array_is_refused() {
        // fuzz/regressions/config/section-as-array: the derive would read it by position.
        for (text, field) in [
            (r#"{"server": ["0.0.0.0", 80]}"#, "server"),
            (
                r#"{"rate_limit": {"ip_limit": [1, 2]}}"#,
                "rate_limit.ip_limit",
            ),
            (
                r#"{"providers": {"openai": ["https://a.example.com"]}}"#,
                "providers.openai",
            ),
            (r#"{"api_keys": {"main": ["A"]}}"#, "api_keys.main"),
            (r#"{"tls": ["cert.pem", "key.pem"]}"#, "tls"),
            (r#"{"store": []}"#, "store"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
        // Objects and a null tls still load, with field paths inside sections intact.
        assert!(parse(r#"{"tls": null, "server": {"port": 9000}}"#).is_ok());
        let e = parse(r#"{"rate_limit": {"ip_limit": {"burst": "x"}}}"#).unwrap_err();
        assert_eq!(e.field, "rate_limit.ip_limit.burst", "{e}");
    }

    #[test]
    fn empty_object_gives_defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c.server.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.server.read_timeout(), Duration::from_secs(30));
        assert_eq!(c.rate_limit.requests_per_second, 10);
        assert_eq!(c.rate_limit.ip_limit.burst, 4);
        assert_eq!(c.server.base_path, "/relayapi/");
    }

    #[test]
    fn shipped_config_is_valid() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.json")).unwrap();
        let c = parse(&text).unwrap();
        assert_eq!(
            (c.rate_limit.requests_per_second, c.rate_limit.burst),
            (10, 20)
        );
        assert_eq!(
            (
                c.rate_limit.ip_limit.requests_per_second,
                c.rate_limit.ip_limit.burst
            ),
            (2, 4)
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse(r#"{"server": {"prot": 1}}"#).unwrap_err();
        assert_eq!(e.field, "server.prot");
        assert!(
            e.to_string().contains("config.json: field `server.prot`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse(r#"{"server": {"port": "eighty"}}"#).unwrap_err();
        assert_eq!(e.field, "server.port");
    }

    #[test]
    fn connection_and_body_limits_are_validated() {
        let c = parse("{}").unwrap();
        assert_eq!(
            (
                c.server.max_connections_per_ip,
                c.server.max_buffered_body_bytes,
                c.server.max_buffered_body_bytes_per_ip,
                c.server.min_body_rate,
            ),
            (128, 256 << 20, 64 << 20, 1024)
        );
        // A per-address cap above max_connections simply never applies.
        assert!(
            parse(r#"{"server": {"max_connections": 8, "max_connections_per_ip": 128}}"#).is_ok()
        );
        for (text, field, says) in [
            (
                r#"{"server": {"max_connections_per_ip": 0}}"#,
                "server.max_connections_per_ip",
                "from 1",
            ),
            (
                r#"{"server": {"max_body_bytes": 100000000}}"#,
                "server.max_buffered_body_bytes_per_ip",
                "at least server.max_body_bytes",
            ),
            (
                r#"{"server": {"max_buffered_body_bytes": 1000}}"#,
                "server.max_buffered_body_bytes",
                "from server.max_buffered_body_bytes_per_ip",
            ),
            (
                r#"{"server": {"min_body_rate": 0}}"#,
                "server.min_body_rate",
                "bytes per second",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.problem.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn semantic_errors_name_the_field() {
        for (text, field) in [
            (r#"{"server": {"host": "localhost"}}"#, "server.host"),
            (r#"{"server": {"read_timeout": 0}}"#, "server.read_timeout"),
            (r#"{"server": {"base_path": "relay"}}"#, "server.base_path"),
            (
                r#"{"server": {"base_path": "/a/../b/"}}"#,
                "server.base_path",
            ),
            (
                r#"{"rate_limit": {"requests_per_second": 5, "burst": 0}}"#,
                "rate_limit.burst",
            ),
            (
                r#"{"providers": {"mine": {"base_url": "https://x.example"}}}"#,
                "providers.mine.auth",
            ),
            (
                r#"{"providers": {"openai": {"base_url": "ftp://x"}}}"#,
                "providers.openai.base_url",
            ),
            (
                r#"{"providers": {"openai": {"base_url": "https://x.example", "family": "OpenAI"}}}"#,
                "providers.openai.family",
            ),
            (
                r#"{"providers": {"Bad Name": {"base_url": "https://x.example", "auth": "bearer"}}}"#,
                "providers.Bad Name",
            ),
            (
                r#"{"trusted_proxies": ["10.0.0.0/33"]}"#,
                "trusted_proxies[0]",
            ),
            (
                r#"{"cors": {"allowed_origins": ["https://a.example/path"]}}"#,
                "cors.allowed_origins[0]",
            ),
            (
                r#"{"upstream": {"allowed_base_urls": ["http://plain.example"]}}"#,
                "upstream.allowed_base_urls[0]",
            ),
            (r#"{"store": {"type": "etcd"}}"#, "store.type"),
            (
                r#"{"upstream": {"forward_headers": ["x-title", "Transfer_Encoding"]}}"#,
                "upstream.forward_headers[1]",
            ),
            (
                r#"{"upstream": {"forward_headers": ["authorization"]}}"#,
                "upstream.forward_headers[0]",
            ),
            (
                r#"{"providers": {"openrouter": {"forward_headers": ["content-length"]}}}"#,
                "providers.openrouter.forward_headers[0]",
            ),
            (
                r#"{"providers": {"azure": {"forward_headers": ["x-title"]}}}"#,
                "providers.azure.base_url",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn store_defaults_to_a_sqlite_file_next_to_the_config() {
        let sqlite =
            |text: &str, file: &str| match parse_config(text, Path::new(file)).unwrap().store {
                StoreConfig::Sqlite { path } => path,
                other => panic!("{other:?}"),
            };
        let file = "/etc/relayapi/config.json";
        assert_eq!(
            sqlite("{}", file),
            Path::new("/etc/relayapi/relayapi-usage.db")
        );
        let rel = r#"{"store": {"type": "sqlite", "path": "data/usage.db"}}"#;
        assert_eq!(sqlite(rel, file), Path::new("/etc/relayapi/data/usage.db"));
        assert_eq!(
            sqlite(rel, "config.json"),
            Path::new("data/usage.db"),
            "a bare config file name means the current directory"
        );
        let abs = r#"{"store": {"type": "sqlite", "path": "/var/lib/relayapi/u.db"}}"#;
        assert_eq!(sqlite(abs, file), Path::new("/var/lib/relayapi/u.db"));
        let redis = |text: &str| match parse(text).unwrap().store {
            StoreConfig::Redis(r) => r,
            other => panic!("{other:?}"),
        };
        let r = redis(r#"{"store": {"type": "redis", "url": "redis://127.0.0.1:6379/0"}}"#);
        assert_eq!(r.key_prefix, "relayapi:");
        assert_eq!(r.command_timeout, Duration::from_secs(2));
        let r = redis(
            r#"{"store": {"type": "redis", "url": "redis://:pw@10.0.0.5:6380/2", "key_prefix": "r1:",
                          "connect_timeout": 5, "command_timeout": 1}}"#,
        );
        assert_eq!(
            (r.key_prefix.as_str(), r.connect_timeout),
            ("r1:", Duration::from_secs(5))
        );
        assert!(!format!("{r:?}").contains("pw@"));
        let r = redis(
            r#"{"store": {"type": "redis", "cluster": ["redis://:pw@10.0.0.1:7000", "redis://10.0.0.2:7000"]}}"#,
        );
        assert_eq!(
            r.target,
            crate::store::RedisTarget::Cluster(vec![
                "redis://:pw@10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into()
            ])
        );
        assert!(!format!("{r:?}").contains("pw@"));
        let r = redis(
            r#"{"store": {"type": "redis", "sentinel": {"nodes": ["redis://10.0.0.1:26379"], "master": "m1"}}}"#,
        );
        assert_eq!(
            r.target,
            crate::store::RedisTarget::Sentinel {
                nodes: vec!["redis://10.0.0.1:26379".into()],
                master: "m1".into(),
                auth: crate::store::MasterAuth::default(),
            }
        );
        assert_eq!(
            parse(r#"{"store": {"type": "memory"}}"#).unwrap().store,
            StoreConfig::Memory
        );
    }

    #[test]
    fn store_errors_name_the_field() {
        for (store, field) in [
            (r#"{"type": "etcd"}"#, "store.type"),
            (r#"{"type": "file"}"#, "store.type"),
            (r#"{"type": "redis"}"#, "store.url"),
            (
                r#"{"type": "redis", "url": "http://127.0.0.1"}"#,
                "store.url",
            ),
            (
                r#"{"type": "redis", "url": "rediss://127.0.0.1"}"#,
                "store.url",
            ),
            (
                r#"{"type": "redis", "url": "redis://x", "key_prefix": "a b"}"#,
                "store.key_prefix",
            ),
            (
                r#"{"type": "redis", "url": "redis://x", "command_timeout": 0}"#,
                "store.command_timeout",
            ),
            (
                r#"{"type": "redis", "url": "redis://x", "connect_timeout": 61}"#,
                "store.connect_timeout",
            ),
            (
                r#"{"type": "redis", "url": "redis://x", "path": "u.db"}"#,
                "store.path",
            ),
            (r#"{"type": "sqlite", "url": "redis://x"}"#, "store.url"),
            (
                r#"{"type": "sqlite", "cluster": ["redis://x"]}"#,
                "store.cluster",
            ),
            (r#"{"type": "redis", "cluster": []}"#, "store.cluster"),
            (
                r#"{"type": "redis", "cluster": ["unix:///x"]}"#,
                "store.cluster",
            ),
            (
                r#"{"type": "redis", "url": "redis://x", "cluster": ["redis://y"]}"#,
                "store.cluster",
            ),
            (
                r#"{"type": "redis", "cluster": ["redis://y"], "sentinel": {"nodes": ["redis://z"], "master": "m"}}"#,
                "store.sentinel",
            ),
            (
                r#"{"type": "redis", "cluster": ["redis://y"], "replica_acks": 1}"#,
                "store.replica_acks",
            ),
            (
                r#"{"type": "redis", "url": "redis://y", "replica_acks": 17}"#,
                "store.replica_acks",
            ),
            (
                r#"{"type": "sqlite", "replica_acks": 1}"#,
                "store.replica_acks",
            ),
            (
                r#"{"type": "redis", "sentinel": {"nodes": ["redis://z"], "master": "m", "db": -1}}"#,
                "store.sentinel.db",
            ),
            (
                r#"{"type": "redis", "sentinel": {"nodes": [], "master": "m"}}"#,
                "store.sentinel.nodes",
            ),
            (
                r#"{"type": "redis", "sentinel": {"nodes": ["redis://z"], "master": ""}}"#,
                "store.sentinel.master",
            ),
            (
                r#"{"type": "sqlite", "command_timeout": 1}"#,
                "store.command_timeout",
            ),
            (r#"{"type": "sqlite", "path": ""}"#, "store.path"),
            (r#"{"type": "memory", "path": "u.db"}"#, "store.path"),
            (
                r#"{"type": "memory", "key_prefix": "r:"}"#,
                "store.key_prefix",
            ),
        ] {
            let text = format!(r#"{{"store": {store}}}"#);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn store_url_errors_do_not_repeat_the_password() {
        let e =
            parse(r#"{"store": {"type": "redis", "url": "redis://:hunter2@[::1"}}"#).unwrap_err();
        assert_eq!(e.field, "store.url");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn not_json_reports_the_file() {
        let e = parse("{").unwrap_err();
        assert!(e.to_string().starts_with("config.json"), "{e}");
    }

    #[test]
    fn tls_defaults_and_relative_paths() {
        let c = parse_config(
            r#"{"tls": {"cert_file": "certs/fullchain.pem", "key_file": "/abs/privkey.pem"}}"#,
            Path::new("/etc/relayapi/config.json"),
        )
        .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert_file, Path::new("/etc/relayapi/certs/fullchain.pem"));
        assert_eq!(t.key_file, Path::new("/abs/privkey.pem"));
        assert_eq!(t.min_version, TlsVersion::Tls12);
        assert_eq!(t.handshake_timeout, Duration::from_secs(10));
        assert_eq!(t.reload_interval, Some(Duration::from_secs(5)));
        assert_eq!(t.redirect, None);
        assert!(parse(r#"{"tls": null}"#).unwrap().tls.is_none());
        assert!(parse("{}").unwrap().tls.is_none());
        let off =
            parse(r#"{"tls": {"cert_file": "c", "key_file": "k", "reload_interval": 0}}"#).unwrap();
        assert_eq!(off.tls.unwrap().reload_interval, None);
    }

    #[test]
    fn tls_errors_name_the_field() {
        for (tls, field) in [
            (r#"{"key_file": "k"}"#, "tls"),
            (r#"{"cert_file": "c"}"#, "tls"),
            (
                r#"{"cert_file": "c", "key_file": "k", "min_version": "1.1"}"#,
                "tls.min_version",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "handshake_timeout": 0}"#,
                "tls.handshake_timeout",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "reload_interval": 100000}"#,
                "tls.reload_interval",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "redirect_http_port": 8080}"#,
                "tls.redirect_http_port",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "redirect_http_port": 70000}"#,
                "tls.redirect_http_port",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "alpn": ["h2"]}"#,
                "tls.alpn",
            ),
            (r#"{"cert_file": "", "key_file": "k"}"#, "tls.cert_file"),
            (
                r#"{"cert_file": "c", "key_file": "k", "redirect_http_port": 80, "redirect_host": "a..b"}"#,
                "tls.redirect_host",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "redirect_http_port": 80, "redirect_host": "evil/x"}"#,
                "tls.redirect_host",
            ),
        ] {
            let text = format!(r#"{{"server": {{"port": 8080}}, "tls": {tls}}}"#);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn trusted_proxy_single_address() {
        let c = parse(r#"{"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]}"#).unwrap();
        let nets = &c.trusted_proxies;
        assert_eq!(nets.len(), 3);
        assert!(nets[0].contains("127.0.0.1".parse().unwrap()));
        assert!(!nets[0].contains("127.0.0.2".parse().unwrap()));
        assert!(nets[1].contains("10.9.8.7".parse().unwrap()));
    }

    /// `text/host.rs`: names the relay publishes follow RFC 1123, names it only looks up take `_`.
    #[test]
    fn published_names_follow_rfc_1123_and_looked_up_names_take_underscores() {
        let tls = |host: &str| {
            format!(
                r#"{{"tls": {{"cert_file": "c", "key_file": "k", "redirect_http_port": 80, "redirect_host": "{host}"}}}}"#
            )
        };
        assert!(parse(&tls("relay.example.com")).is_ok());
        let e = parse(&tls("relay_1.example.com")).unwrap_err();
        assert_eq!(e.field, "tls.redirect_host", "{e}");
        let c = parse(
            r#"{"providers": {"openai": {"base_url": "https://my_llm.internal/v1"}},
                          "upstream": {"allowed_base_urls": ["https://my_llm.internal/v2"]},
                          "cors": {"allowed_origins": ["https://my_app.example.com"]}}"#,
        )
        .unwrap();
        let base = c.providers["openai"].base_url.as_ref().unwrap();
        assert_eq!(base.to_string(), "https://my_llm.internal/v1");
        assert_eq!(c.upstream.allowed_base_urls[0].prefix, "/v2");
    }

    #[test]
    fn base_path_follows_the_rai_rule_and_key_names_the_kref_rule() {
        let c = parse(r#"{"server": {"base_path": "/a~b/c:d/"}}"#).unwrap();
        assert_eq!(c.server.base_path, "/a~b/c:d/");
        let e = parse(r#"{"api_keys": {"my key": {"env": "K"}}}"#).unwrap_err();
        assert_eq!(e.field, "api_keys.my key");
        assert!(e.problem.contains("kref"), "{e}");
        assert!(parse(r#"{"api_keys": {"main.eu_1": {"env": "K"}}}"#).is_ok());
    }
}
