//! The provider registry's data: which real AI providers are built in, their default base URLs, how
//! each wants its API key ([`AuthStyle`]) and which API it speaks ([`ApiFamily`]). Constants and pure
//! lookups only, so `config/` can check provider settings against them without reaching the request
//! path; the registry in force (with `config.json` applied) is `upstream/provider.rs`. See
//! `docs/providers.md` for the list and the sources of each entry.

use crate::text::grammar::is_provider_name;
use crate::upstream::forward_headers::Family;

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

    /// The header name that carries the key upstream, and what its value holds before the key
    /// (`Bearer ` or nothing). The caller writes the key straight after it: no copy of the key is
    /// made for the header.
    pub fn header(self) -> (&'static str, &'static str) {
        match self {
            AuthStyle::Bearer => ("authorization", "Bearer "),
            AuthStyle::XApiKey => ("x-api-key", ""),
            AuthStyle::XGoogApiKey => ("x-goog-api-key", ""),
            AuthStyle::ApiKey => ("api-key", ""),
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

/// Provider names: what the `prv` claim and `config.json` keys may look like.
pub fn valid_name(name: &str) -> bool {
    is_provider_name(name)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_byte_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn built_in_base_urls_parse() {
        for b in BUILTINS {
            assert!(
                crate::text::base_url::parse_base_url(b.base_url).is_ok(),
                "{}",
                b.name
            );
        }
    }
}
