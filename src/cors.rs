//! CORS decisions (temporary shim so the server compiles; the real rules land with helper-5).
use crate::config::CorsConfig;
pub enum PreflightDecision {
    Allowed(Vec<(String, String)>),
    Denied,
}
pub fn preflight(
    _o: Option<&[u8]>,
    _m: Option<&[u8]>,
    _h: Option<&[u8]>,
    _c: &CorsConfig,
    _t: Option<&[String]>,
) -> PreflightDecision {
    PreflightDecision::Denied
}
pub fn response_headers(
    _o: Option<&[u8]>,
    _c: &CorsConfig,
    _t: Option<&[String]>,
) -> Vec<(String, String)> {
    Vec::new()
}
