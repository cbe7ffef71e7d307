//! The provider registry in force: the built-ins (`upstream/builtins.rs`) with `config.json`'s overrides
//! applied, and the resolution of a token's provider and `url` claim to an upstream. Only `config.json`
//! may add or redirect providers; a client never chooses the upstream host.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
pub use crate::text::base_url::{parse_base_url, BaseUrl};
pub use crate::upstream::builtins::{
    builtin, closest, valid_name, ApiFamily, AuthStyle, Builtin, AZURE, BUILTINS,
};
use crate::upstream::forward_headers::ForwardHeaders;

/// A resolved provider: where to send, how to authenticate and which client headers to pass on.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub base: BaseUrl,
    pub auth: AuthStyle,
    pub headers: ForwardHeaders,
    pub family: ApiFamily,
}

/// The registry in force: built-ins with `config.json` overrides applied.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    providers: BTreeMap<String, Arc<Provider>>,
    /// Auth styles and families for providers that exist only through a base URL (Azure) or a `url` claim.
    auth_only: BTreeMap<String, (AuthStyle, ApiFamily)>,
    allowed_base_urls: Vec<BaseUrl>,
    /// `upstream.forward_headers`: what providers without their own list forward besides the family's.
    extra_headers: Arc<[Box<str>]>,
}

impl Registry {
    /// The built-ins with `cfg`'s providers applied.
    pub fn from_config(cfg: &Config) -> Registry {
        let extra_headers: Arc<[Box<str>]> = cfg
            .upstream
            .forward_headers
            .iter()
            .map(|h| Box::from(h.as_str()))
            .collect();
        let mut providers = BTreeMap::new();
        for b in BUILTINS {
            let base = parse_base_url(b.base_url).expect("built-in base URLs are valid");
            providers.insert(
                b.name.to_string(),
                Arc::new(Provider {
                    name: b.name.into(),
                    base,
                    auth: b.auth,
                    headers: ForwardHeaders::new(b.family.headers(), extra_headers.clone()),
                    family: b.family,
                }),
            );
        }
        let mut auth_only = BTreeMap::new();
        auth_only.insert(AZURE.to_string(), (AuthStyle::ApiKey, ApiFamily::Azure));
        for (name, o) in &cfg.providers {
            let known = builtin(name)
                .map(|b| (b.auth, b.family))
                .or_else(|| auth_only.get(name).copied());
            let auth = o.auth.or(known.map(|k| k.0)).unwrap_or(AuthStyle::Bearer);
            // A given family wins; else a built-in keeps its own; else the auth style's API.
            let family = o
                .family
                .or(known.map(|k| k.1))
                .unwrap_or(ApiFamily::for_auth(auth));
            // Validation requires a base URL of every provider that is not built in.
            let base = match (&o.base_url, providers.get(name)) {
                (Some(u), _) => u.clone(),
                (None, Some(p)) => p.base.clone(),
                (None, None) => continue,
            };
            let extra = if o.forward_headers.is_empty() {
                extra_headers.clone()
            } else {
                let mut all: Vec<Box<str>> = extra_headers.to_vec();
                all.extend(o.forward_headers.iter().map(|h| Box::from(h.as_str())));
                all.into()
            };
            providers.insert(
                name.clone(),
                Arc::new(Provider {
                    name: name.clone(),
                    base,
                    auth,
                    headers: ForwardHeaders::new(family.headers(), extra),
                    family,
                }),
            );
        }
        let allowed_base_urls = cfg.upstream.allowed_base_urls.clone();
        Registry {
            providers,
            auth_only,
            allowed_base_urls,
            extra_headers,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Provider>> {
        self.providers.get(name).cloned()
    }

    /// Names of the providers in force (built-ins and `config.json` ones), sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// The upstream for a token: its `url` claim when the operator allowed that URL, else the registry.
    /// `None` when the provider is unknown or the URL is not allowed.
    pub fn resolve(&self, name: &str, url_claim: Option<&str>) -> Option<Arc<Provider>> {
        match url_claim {
            None => self.get(name),
            Some(u) => {
                let base = parse_base_url(u).ok()?;
                if !self.allowed_base_urls.contains(&base) {
                    return None;
                }
                let (auth, family, headers) = match self.get(name) {
                    Some(p) => (p.auth, p.family, p.headers.clone()),
                    None => {
                        let (auth, family) = self.auth_only.get(name).copied()?;
                        let headers =
                            ForwardHeaders::new(family.headers(), self.extra_headers.clone());
                        (auth, family, headers)
                    }
                };
                Some(Arc::new(Provider {
                    name: name.to_string(),
                    base,
                    auth,
                    headers,
                    family,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_are_https() {
        for b in BUILTINS {
            let u = parse_base_url(b.base_url).unwrap();
            assert!(u.tls, "{}", b.name);
            assert_eq!(u.port, 443);
            assert!(valid_name(b.name));
        }
    }

    #[test]
    fn base_url_forms() {
        let u = parse_base_url("http://127.0.0.1:9000/v1/").unwrap();
        assert_eq!(
            (u.tls, &*u.host, u.port, u.prefix.as_str()),
            (false, "127.0.0.1", 9000, "/v1")
        );
        assert_eq!(u.authority(), "127.0.0.1:9000");
        let u = parse_base_url("https://[::1]:8443").unwrap();
        assert_eq!((&*u.host, u.port, u.prefix.as_str()), ("::1", 8443, ""));
        assert_eq!(u.authority(), "[::1]:8443");
        assert_eq!(
            parse_base_url("https://API.openai.com/v1")
                .unwrap()
                .authority(),
            "api.openai.com"
        );
        for bad in [
            "ftp://x",
            "https://",
            "https://user@host",
            "https://host:0",
            "https://host:99999",
            "https://host/v1?x=1",
            "https://host/../x",
            "https://ho st",
            "api.openai.com",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_headers() {
        assert_eq!(AuthStyle::Bearer.header(), ("authorization", "Bearer "));
        assert_eq!(AuthStyle::XApiKey.header(), ("x-api-key", ""));
        assert_eq!(AuthStyle::XGoogApiKey.header(), ("x-goog-api-key", ""));
        assert_eq!(AuthStyle::ApiKey.header(), ("api-key", ""));
    }

    #[test]
    fn closest_names_a_likely_typo_only() {
        let known = ["openai", "anthropic", "gemini", "gemini-openai"];
        assert_eq!(closest("opnai", &known), Some("openai"));
        assert_eq!(closest("antropic", &known), Some("anthropic"));
        assert_eq!(closest("gemni", &known), Some("gemini"));
        assert_eq!(closest("mistral", &known), None);
    }

    #[test]
    fn overrides_and_unknown_providers() {
        let cfg = crate::config::parse_config(
            r#"{"providers": {"openai": {"base_url": "http://127.0.0.1:1234/v1"},
                              "corp": {"base_url": "https://llm.corp.example", "auth": "x-api-key"},
                              "azure": {"base_url": "https://res.openai.azure.com/openai"},
                              "local": {"base_url": "http://127.0.0.1:11434/v1", "auth": "bearer"},
                              "odd": {"base_url": "https://odd.example", "auth": "bearer", "family": "other"},
                              "gem": {"base_url": "https://gem.example", "auth": "bearer", "family": "gemini"}},
                "upstream": {"allowed_base_urls": ["https://eu.proxy.example/v1"]}}"#,
            std::path::Path::new("config.json"),
        )
        .unwrap();
        let r = Registry::from_config(&cfg);
        let o = r.get("openai").unwrap();
        assert_eq!((o.base.port, o.auth), (1234, AuthStyle::Bearer));
        assert_eq!(r.get("corp").unwrap().auth, AuthStyle::XApiKey);
        assert_eq!(r.get("azure").unwrap().auth, AuthStyle::ApiKey);
        assert!(r.get("made-up").is_none());
        // Families: built-ins keep theirs, new providers follow their auth style unless they name one.
        assert_eq!(o.family, ApiFamily::OpenAi);
        assert_eq!(r.get("corp").unwrap().family, ApiFamily::Anthropic);
        assert_eq!(r.get("azure").unwrap().family, ApiFamily::Azure);
        assert_eq!(
            r.get("deepseek").unwrap().family,
            ApiFamily::OpenAiCompatible
        );
        assert_eq!(r.get("gemini").unwrap().family, ApiFamily::Gemini);
        assert_eq!(r.get("local").unwrap().family, ApiFamily::OpenAiCompatible);
        assert_eq!(r.get("odd").unwrap().family, ApiFamily::Other);
        assert_eq!(r.get("gem").unwrap().family, ApiFamily::Gemini);
        assert!(r.resolve("made-up", None).is_none());
        // A url claim is honoured only when the operator listed it.
        assert!(r
            .resolve("openai", Some("https://evil.example/v1"))
            .is_none());
        let p = r
            .resolve("openai", Some("https://eu.proxy.example/v1"))
            .unwrap();
        assert_eq!(&*p.base.host, "eu.proxy.example");
        assert_eq!(p.family, ApiFamily::OpenAi);
    }

    #[test]
    fn every_builtin_has_a_family_that_reads_its_requests() {
        for b in BUILTINS {
            assert_ne!(b.family, ApiFamily::Other, "{}", b.name);
            assert_eq!(ApiFamily::parse(b.family.as_str()), Some(b.family));
        }
        assert_eq!(ApiFamily::parse("OpenAI"), None);
    }

    #[test]
    fn forwarded_header_additions_per_provider() {
        let cfg = crate::config::parse_config(
            r#"{"providers": {"openrouter": {"forward_headers": ["x-title", "http-referer"]},
                              "corp": {"base_url": "https://llm.corp.example", "auth": "x-api-key"},
                              "plain": {"base_url": "https://plain.example", "auth": "bearer", "family": "other"}},
                "upstream": {"forward_headers": ["traceparent"],
                             "allowed_base_urls": ["https://eu.proxy.example/v1"]}}"#,
            std::path::Path::new("config.json"),
        )
        .unwrap();
        let r = Registry::from_config(&cfg);
        // A built-in named only for its header list keeps its own base URL.
        let or = r.get("openrouter").unwrap();
        assert_eq!(&*or.base.host, "openrouter.ai");
        assert!(or.headers.allows("x-title") && or.headers.allows("traceparent"));
        let openai = r.get("openai").unwrap();
        assert!(openai.headers.allows("traceparent") && !openai.headers.allows("x-title"));
        // An x-api-key provider speaks Anthropic's headers.
        assert!(r.get("corp").unwrap().headers.allows("anthropic-version"));
        // An API the relay does not know gets the common fields and the operator's list only.
        let plain = r.get("plain").unwrap();
        assert!(plain.headers.allows("traceparent") && plain.headers.allows("content-type"));
        assert!(!plain.headers.allows("openai-beta") && !plain.headers.allows("x-stainless-lang"));
        let via_claim = r
            .resolve("azure", Some("https://eu.proxy.example/v1"))
            .unwrap();
        assert!(via_claim.headers.allows("traceparent") && via_claim.headers.allows("openai-beta"));
    }
}
