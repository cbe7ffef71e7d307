//! The provider registry: which real AI providers exist, their default base URLs and how each one wants
//! its API key. Only `config.json` may add or redirect providers; a client never chooses the upstream host.
//! See `docs/providers.md` for the list and the sources of each entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::upstream::forward_headers::{Family, ForwardHeaders};

/// How a provider expects its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI and the OpenAI-compatible APIs).
    Bearer,
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// `x-goog-api-key: <key>` (Google Gemini API).
    XGoogApiKey,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey,
}

impl AuthStyle {
    pub fn parse(s: &str) -> Option<AuthStyle> {
        match s {
            "bearer" => Some(AuthStyle::Bearer),
            "x-api-key" => Some(AuthStyle::XApiKey),
            "x-goog-api-key" => Some(AuthStyle::XGoogApiKey),
            "api-key" => Some(AuthStyle::ApiKey),
            _ => None,
        }
    }

    /// The header name and value that carry `key` upstream.
    pub fn header(self, key: &str) -> (&'static str, String) {
        match self {
            AuthStyle::Bearer => ("authorization", format!("Bearer {key}")),
            AuthStyle::XApiKey => ("x-api-key", key.to_string()),
            AuthStyle::XGoogApiKey => ("x-goog-api-key", key.to_string()),
            AuthStyle::ApiKey => ("api-key", key.to_string()),
        }
    }
}

/// The API a provider speaks, which decides how a token's body limits are enforced there (`request/policy.rs`):
/// where a request names its model and which members bound or multiply its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFamily {
    /// The OpenAI API itself: chat requests get `max_completion_tokens` added (reasoning models refuse
    /// `max_tokens`).
    OpenAi,
    /// Servers that copy the OpenAI API (DeepSeek, DashScope compatible mode, Mistral, vLLM, ...): the
    /// same members, but an added chat ceiling is `max_tokens`, the member they all understand.
    OpenAiCompatible,
    /// Azure OpenAI: the OpenAI API, with the model chosen by a deployment in the path
    /// (`/deployments/{name}/chat/completions`).
    Azure,
    /// The Anthropic Messages API.
    Anthropic,
    /// The Google Gemini API: the model is in the path (`/v1beta/models/{m}:generateContent`) and the
    /// output ceiling in `generationConfig`.
    Gemini,
    /// Anything else: the relay cannot read its requests, so tokens with `models`, `mtok` or `ext.rep_m`
    /// are refused there.
    Other,
}

impl ApiFamily {
    /// The config spellings, for parsing and for error messages.
    pub const NAMES: &'static str =
        "\"openai\", \"openai-compatible\", \"azure\", \"anthropic\", \"gemini\" or \"other\"";

    pub fn parse(s: &str) -> Option<ApiFamily> {
        match s {
            "openai" => Some(ApiFamily::OpenAi),
            "openai-compatible" => Some(ApiFamily::OpenAiCompatible),
            "azure" => Some(ApiFamily::Azure),
            "anthropic" => Some(ApiFamily::Anthropic),
            "gemini" => Some(ApiFamily::Gemini),
            "other" => Some(ApiFamily::Other),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiFamily::OpenAi => "openai",
            ApiFamily::OpenAiCompatible => "openai-compatible",
            ApiFamily::Azure => "azure",
            ApiFamily::Anthropic => "anthropic",
            ApiFamily::Gemini => "gemini",
            ApiFamily::Other => "other",
        }
    }

    /// Which client headers the provider's API takes (`upstream/forward_headers.rs`).
    pub fn headers(self) -> Family {
        match self {
            ApiFamily::OpenAi | ApiFamily::OpenAiCompatible | ApiFamily::Azure => Family::OpenAi,
            ApiFamily::Anthropic => Family::Anthropic,
            ApiFamily::Gemini => Family::Gemini,
            ApiFamily::Other => Family::Other,
        }
    }

    /// The family of an operator-defined provider that does not name one: the API its auth style
    /// belongs to (`bearer` is the OpenAI-compatible convention).
    pub fn for_auth(auth: AuthStyle) -> ApiFamily {
        match auth {
            AuthStyle::Bearer => ApiFamily::OpenAiCompatible,
            AuthStyle::XApiKey => ApiFamily::Anthropic,
            AuthStyle::XGoogApiKey => ApiFamily::Gemini,
            AuthStyle::ApiKey => ApiFamily::Azure,
        }
    }
}

/// A parsed upstream base URL: `scheme://host[:port][/prefix]`, no query, no userinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash ("" or "/v1").
    pub prefix: String,
}

impl BaseUrl {
    /// The `Host` header value to send upstream.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Parse an upstream base URL, with a message that says what a valid one looks like.
pub fn parse_base_url(s: &str) -> Result<BaseUrl, String> {
    const EXPECTED: &str =
        "expected an absolute URL like \"https://api.example.com/v1\" (http or https, no query)";
    let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(EXPECTED.into());
    };
    if rest.contains(['?', '#', '@', ' ', '\\'])
        || rest.bytes().any(|b| b.is_ascii_control() || b >= 0x80)
    {
        return Err(EXPECTED.into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or(EXPECTED)?;
        let host = &v6[..end];
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| EXPECTED.to_string())?;
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(EXPECTED.into()),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(EXPECTED)?,
        None if tls => 443,
        None => 80,
    };
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
    {
        return Err(EXPECTED.into());
    }
    let prefix = path.trim_end_matches('/').to_string();
    if prefix.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(EXPECTED.into());
    }
    Ok(BaseUrl {
        tls,
        host: host.to_ascii_lowercase(),
        port,
        prefix,
    })
}

/// Provider names: what the `prv` claim and `config.json` keys may look like.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A built-in provider: real, documented endpoints only.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub name: &'static str,
    pub base_url: &'static str,
    pub auth: AuthStyle,
    pub family: ApiFamily,
}

/// Each entry is the base URL that provider's own SDK (or its documented OpenAI-compatible mode) uses, so
/// the SDK's path suffixes map onto it unchanged. Sources are listed in `docs/providers.md`.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "openai",
        base_url: "https://api.openai.com/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAi,
    },
    Builtin {
        name: "anthropic",
        base_url: "https://api.anthropic.com",
        auth: AuthStyle::XApiKey,
        family: ApiFamily::Anthropic,
    },
    Builtin {
        name: "gemini",
        base_url: "https://generativelanguage.googleapis.com",
        auth: AuthStyle::XGoogApiKey,
        family: ApiFamily::Gemini,
    },
    Builtin {
        name: "gemini-openai",
        base_url: "https://generativelanguage.googleapis.com/v1beta/openai",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "dashscope",
        base_url: "https://dashscope.aliyuncs.com/compatible-mode/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "dashscope-intl",
        base_url: "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "deepseek",
        base_url: "https://api.deepseek.com",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "mistral",
        base_url: "https://api.mistral.ai/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "groq",
        base_url: "https://api.groq.com/openai/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "together",
        base_url: "https://api.together.xyz/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "xai",
        base_url: "https://api.x.ai/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "moonshot",
        base_url: "https://api.moonshot.cn/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "zhipu",
        base_url: "https://open.bigmodel.cn/api/paas/v4",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "siliconflow",
        base_url: "https://api.siliconflow.cn/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "fireworks",
        base_url: "https://api.fireworks.ai/inference/v1",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
    Builtin {
        name: "perplexity",
        base_url: "https://api.perplexity.ai",
        auth: AuthStyle::Bearer,
        family: ApiFamily::OpenAiCompatible,
    },
];

/// Azure OpenAI has no global endpoint: each resource has its own host, so it is usable only with a
/// `config.json` override (`providers.azure.base_url`) or an allowed `url` claim.
pub const AZURE: &str = "azure";

/// The known name closest to `name` when it is a likely typo (at most two edits away), for "did you
/// mean" hints.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (provider names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

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
    /// Build from a validated config (validation already checked every URL and auth style).
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
            let auth = o
                .auth
                .as_deref()
                .and_then(AuthStyle::parse)
                .or(known.map(|k| k.0))
                .unwrap_or(AuthStyle::Bearer);
            // A given family wins; else a built-in keeps its own; else the auth style's API.
            let family = o
                .family
                .as_deref()
                .and_then(ApiFamily::parse)
                .or(known.map(|k| k.1))
                .unwrap_or(ApiFamily::for_auth(auth));
            let base = match (&o.base_url, builtin(name)) {
                (Some(u), _) => parse_base_url(u),
                (None, Some(b)) => parse_base_url(b.base_url),
                (None, None) => Err(String::new()),
            }
            .expect("validated at load time");
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
        let allowed_base_urls = cfg
            .upstream
            .allowed_base_urls
            .iter()
            .filter_map(|u| parse_base_url(u).ok())
            .collect();
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
            (u.tls, u.host.as_str(), u.port, u.prefix.as_str()),
            (false, "127.0.0.1", 9000, "/v1")
        );
        assert_eq!(u.authority(), "127.0.0.1:9000");
        let u = parse_base_url("https://[::1]:8443").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("::1", 8443, "")
        );
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
        assert_eq!(
            AuthStyle::Bearer.header("k"),
            ("authorization", "Bearer k".into())
        );
        assert_eq!(AuthStyle::XApiKey.header("k"), ("x-api-key", "k".into()));
        assert_eq!(
            AuthStyle::XGoogApiKey.header("k"),
            ("x-goog-api-key", "k".into())
        );
        assert_eq!(AuthStyle::ApiKey.header("k"), ("api-key", "k".into()));
    }

    #[test]
    fn closest_names_a_likely_typo_only() {
        let known = ["openai", "anthropic", "gemini", "gemini-openai"];
        assert_eq!(closest("opnai", &known), Some("openai"));
        assert_eq!(closest("antropic", &known), Some("anthropic"));
        assert_eq!(closest("gemni", &known), Some("gemini"));
        assert_eq!(closest("mistral", &known), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
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
        assert_eq!(p.base.host, "eu.proxy.example");
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
        assert_eq!(or.base.host, "openrouter.ai");
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
