//! WebRTC call set-up through the relay (OpenAI `POST /realtime/calls`): the page posts its SDP offer
//! with the relay token, the relay adds the real key, and the provider's SDP answer comes back, so no
//! provider secret reaches the page. The body is not JSON, so the token's model limits are applied where
//! the provider reads the model: the query (`?model=`) for a bare offer (`application/sdp`), the `model`
//! of the `session` part for the unified interface (`multipart/form-data` with `sdp` and `session`
//! parts). The media then flows between the page and the provider without the relay, so nothing the
//! relay meters or cuts can follow it: output ceilings and spend limits cannot be enforced and are
//! refused. The multipart reader is strict (no preamble, one `session` part at most, names quoted) and
//! refuses what it cannot read rather than guess.

use crate::budget::charge::budgeted;
use crate::budget::size::BUDGET;
use crate::error::Error;
use crate::http::head::trim_ows;
use crate::json::body_scan;
use crate::request::query_model;
use crate::request::route::Located;
use crate::request::secrets::SESSION_SECONDS;
use crate::text::grammar::is_tchar;
use crate::token::format::Claims;
use crate::upstream::provider::ApiFamily;

/// Longest model name read from a `session` part, in bytes.
const MAX_MODEL: usize = 256;

/// Is this the WebRTC call set-up endpoint?
pub fn is_call_setup(family: ApiFamily, rest_path: &str) -> bool {
    matches!(
        family,
        ApiFamily::OpenAi | ApiFamily::Azure | ApiFamily::OpenAiCompatible
    ) && rest_path.ends_with("/realtime/calls")
}

/// Refuse the limits a call set up here would escape.
pub fn check(claims: &Claims, family: ApiFamily, rest_path: &str) -> Result<(), Error> {
    if !is_call_setup(family, rest_path) {
        return Ok(());
    }
    if claims.mtok.is_some() {
        return Err(Error::LimitNotEnforceable("output ceiling (`mtok`)"));
    }
    if budgeted(claims) {
        return Err(Error::LimitNotEnforceable(BUDGET));
    }
    // The call's media flows between the page and the provider: the relay cannot end it in time.
    if claims.ssec.is_some() {
        return Err(Error::LimitNotEnforceable(SESSION_SECONDS));
    }
    Ok(())
}

/// Does the token need to read the offer (it limits or forces the model)?
pub fn inspects(claims: &Claims) -> bool {
    claims.models.is_some() || claims.ext.as_ref().is_some_and(|e| e.rep_m.is_some())
}

/// Apply `models` / `ext.rep_m` to a call set-up request of content type `content_type`.
pub fn apply(
    claims: &Claims,
    content_type: Option<&[u8]>,
    loc: &mut Located,
    body: &[u8],
) -> Result<(), Error> {
    if !inspects(claims) {
        return Ok(());
    }
    let ct = content_type.map(trim_ows).unwrap_or(b"");
    let (media, params) = match ct.iter().position(|&b| b == b';') {
        Some(i) => (trim_ows(&ct[..i]), &ct[i + 1..]),
        None => (ct, &b""[..]),
    };
    if media.eq_ignore_ascii_case(b"application/sdp") {
        return query_model::apply(claims, loc);
    }
    if !media.eq_ignore_ascii_case(b"multipart/form-data") {
        return Err(Error::InvalidBody(
            "a call set-up is an SDP offer (application/sdp) or a multipart form",
        ));
    }
    let boundary = boundary(params).ok_or(Error::InvalidBody("a multipart boundary"))?;
    let session = session_part(body, boundary)?;
    let model = match session {
        None => None,
        Some(json) => {
            let inner = body_scan::scan_object(json, &[&["session"], &["model"]])
                .map_err(|_| Error::InvalidBody("the session part must be a JSON object"))?;
            // The unified interface takes the session object itself; accept `{"session": {...}}` too.
            let (doc, found) = match inner.found[0].clone() {
                Some(r) => {
                    let s = body_scan::scan_object_at(json, r, &[&["model"]])
                        .map_err(|_| Error::InvalidMember("session", "an object"))?;
                    (json, s.found[0].clone())
                }
                None => (json, inner.found[1].clone()),
            };
            match found {
                Some(r) => Some(
                    body_scan::decode_string(&doc[r], MAX_MODEL)
                        .map_err(|_| Error::InvalidMember("model", "a string"))?
                        .ok_or(Error::ModelNotAllowed)?,
                ),
                None => None,
            }
        }
    };
    let forced = claims.ext.as_ref().and_then(|e| e.rep_m.as_deref());
    // A model in the query, if any, is held to the same rules.
    let query = loc.query.strip_prefix('?').unwrap_or(&loc.query);
    if query.split('&').any(|p| p.starts_with("model=")) {
        query_model::apply(claims, loc)?;
    }
    match (forced, &claims.models, model) {
        (Some(f), _, Some(m)) if m == f => Ok(()),
        (Some(_), _, _) => Err(Error::ModelNotAllowed),
        (None, Some(models), Some(m)) if models.contains(&m) => Ok(()),
        _ => Err(Error::ModelNotAllowed),
    }
}

/// The `boundary` parameter of a multipart content type, from the parameters after its first `;`
/// (quoted or not). The parameters must follow RFC 9110 §5.6.6 (`*( OWS ";" OWS [ token "=" ( token /
/// quoted-string ) ] )`) and name `boundary` once: a provider could read another boundary from
/// anything else (a duplicate, a stray word, an empty value), and with it other parts, so the relay
/// refuses instead of guessing. A quoted boundary with a backslash is refused too (a quoted-pair
/// would make its value differ from its bytes).
fn boundary(params: &[u8]) -> Option<&[u8]> {
    let trim_start =
        |b: &[u8]| -> usize { b.iter().take_while(|&&c| c == b' ' || c == b'\t').count() };
    let mut rest = params;
    let mut found = None;
    loop {
        rest = &rest[trim_start(rest)..];
        let Some(&first) = rest.first() else {
            break;
        };
        if first != b';' {
            let n = rest.iter().take_while(|&&b| is_tchar(b)).count();
            if n == 0 || rest.get(n) != Some(&b'=') {
                return None;
            }
            let name = &rest[..n];
            rest = &rest[n + 1..];
            let value = if rest.first() == Some(&b'"') {
                let len = rest[1..].iter().position(|&b| b == b'"')?;
                let v = &rest[1..1 + len];
                if v.iter()
                    .any(|&b| b == b'\\' || !(b == b'\t' || (b' '..=b'~').contains(&b)))
                {
                    return None;
                }
                rest = &rest[len + 2..];
                v
            } else {
                let m = rest.iter().take_while(|&&b| is_tchar(b)).count();
                if m == 0 {
                    return None;
                }
                let v = &rest[..m];
                rest = &rest[m..];
                v
            };
            if name.eq_ignore_ascii_case(b"boundary") {
                if found.is_some() {
                    return None;
                }
                found = Some(value);
            }
            rest = &rest[trim_start(rest)..];
            match rest.first() {
                None => break,
                Some(b';') => {}
                Some(_) => return None,
            }
        }
        rest = &rest[1..];
    }
    // RFC 2046 §5.1.1: 1 to 70 characters, no trailing space.
    found.filter(|v| {
        (1..=70).contains(&v.len())
            && v.last() != Some(&b' ')
            && v.iter().all(|&b| b.is_ascii_graphic() || b == b' ')
    })
}

/// The content of the one part named `session`, if any. The body must be exactly parts, each opened by
/// `--boundary CRLF`, headers, an empty line and content, and closed by `CRLF --boundary--`.
fn session_part<'a>(body: &'a [u8], boundary: &[u8]) -> Result<Option<&'a [u8]>, Error> {
    let bad = || Error::InvalidBody("a multipart form this relay can read");
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let mut rest = body.strip_prefix(delim.as_slice()).ok_or_else(bad)?;
    let mut next_delim = b"\r\n".to_vec();
    next_delim.extend_from_slice(&delim);
    let mut session = None;
    let mut delimiters = 1;
    loop {
        if let Some(end) = rest.strip_prefix(b"--") {
            // The close delimiter, then at most a line end. The boundary may appear nowhere else: a
            // lenient parser could take such an appearance for a delimiter and read other parts.
            return if (end.is_empty() || end == b"\r\n")
                && body
                    .windows(delim.len())
                    .filter(|w| *w == delim.as_slice())
                    .count()
                    == delimiters
            {
                Ok(session)
            } else {
                Err(bad())
            };
        }
        delimiters += 1;
        rest = rest.strip_prefix(b"\r\n").ok_or_else(bad)?;
        let head_end = find(rest, b"\r\n\r\n").ok_or_else(bad)?;
        let name = part_name(&rest[..head_end]).ok_or_else(bad)?;
        let content_start = head_end + 4;
        let end = find(&rest[content_start..], &next_delim).ok_or_else(bad)? + content_start;
        if name == b"session" {
            if session.is_some() {
                return Err(Error::DuplicateMember("session"));
            }
            session = Some(&rest[content_start..end]);
        }
        rest = &rest[end + next_delim.len()..];
    }
}

/// The `name` of a part's `Content-Disposition: form-data; name="..."` header.
fn part_name(headers: &[u8]) -> Option<&[u8]> {
    let mut name = None;
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        if !line[..colon].eq_ignore_ascii_case(b"content-disposition") {
            continue;
        }
        if name.is_some() {
            return None;
        }
        let mut fields = line[colon + 1..].split(|&b| b == b';').map(trim_ows);
        if !fields.next()?.eq_ignore_ascii_case(b"form-data") {
            return None;
        }
        for f in fields {
            if let Some(v) = f.strip_prefix(b"name=") {
                name = Some(v.strip_prefix(b"\"")?.strip_suffix(b"\"")?);
            }
        }
    }
    name
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::format::Ext;

    fn claims(models: Option<&[&str]>, forced: Option<&str>) -> Claims {
        Claims {
            models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
            ext: forced.map(|f| Ext {
                rep_m: Some(f.into()),
            }),
            ..Claims::new("0".repeat(32), "t".into(), 0, 1, "openai".into())
        }
    }

    fn loc(query: &str) -> Located {
        Located {
            token: None,
            rest: "/realtime/calls".into(),
            query: query.into(),
        }
    }

    fn form(session: &str) -> Vec<u8> {
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"sdp\"\r\n\r\nv=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"session\"\r\nContent-Type: application/json\r\n\r\n{session}\r\n--XyZ--\r\n"
        )
        .into_bytes()
    }

    const MULTI: &[u8] = b"multipart/form-data; boundary=XyZ";

    #[test]
    fn an_sdp_offer_is_held_to_the_query_model() {
        let c = claims(Some(&["gpt-realtime"]), None);
        let mut l = loc("?model=gpt-realtime");
        assert_eq!(
            apply(&c, Some(b"application/sdp"), &mut l, b"v=0\r\n"),
            Ok(())
        );
        let mut l = loc("?model=gpt-4o-realtime");
        assert_eq!(
            apply(&c, Some(b"application/sdp"), &mut l, b"v=0\r\n"),
            Err(Error::ModelNotAllowed)
        );
        // Without a model limit nothing is read.
        assert_eq!(
            apply(&claims(None, None), Some(b"text/plain"), &mut loc(""), b"x"),
            Ok(())
        );
    }

    #[test]
    fn a_unified_form_is_held_to_the_session_model() {
        let c = claims(Some(&["gpt-realtime"]), None);
        let ok = form(r#"{"type":"realtime","model":"gpt-realtime"}"#);
        assert_eq!(apply(&c, Some(MULTI), &mut loc(""), &ok), Ok(()));
        let wrapped = form(r#"{"session":{"model":"gpt-realtime"}}"#);
        assert_eq!(apply(&c, Some(MULTI), &mut loc(""), &wrapped), Ok(()));
        let other = form(r#"{"type":"realtime","model":"gpt-4o"}"#);
        assert_eq!(
            apply(&c, Some(MULTI), &mut loc(""), &other),
            Err(Error::ModelNotAllowed)
        );
        let none = form(r#"{"type":"realtime"}"#);
        assert_eq!(
            apply(&c, Some(MULTI), &mut loc(""), &none),
            Err(Error::ModelNotAllowed)
        );
        let escaped = form(r#"{"m\u006fdel":"gpt-4o","model":"gpt-realtime"}"#);
        assert!(apply(&c, Some(MULTI), &mut loc(""), &escaped).is_err());
        let forced = claims(None, Some("gpt-realtime-mini"));
        let f = form(r#"{"model":"gpt-realtime-mini"}"#);
        assert_eq!(apply(&forced, Some(MULTI), &mut loc(""), &f), Ok(()));
        assert_eq!(
            apply(&forced, Some(MULTI), &mut loc(""), &ok),
            Err(Error::ModelNotAllowed)
        );
    }

    #[test]
    fn forms_it_cannot_read_are_refused() {
        let c = claims(Some(&["m"]), None);
        let two = {
            let mut b = form(r#"{"model":"m"}"#);
            let s = String::from_utf8(b.clone()).unwrap();
            let dup = s.replace(
                "--XyZ--\r\n",
                "--XyZ\r\nContent-Disposition: form-data; name=\"session\"\r\n\r\n{\"model\":\"x\"}\r\n--XyZ--\r\n",
            );
            b = dup.into_bytes();
            b
        };
        assert_eq!(
            apply(&c, Some(MULTI), &mut loc(""), &two),
            Err(Error::DuplicateMember("session"))
        );
        for body in [
            b"preamble\r\n--XyZ--".to_vec(),
            b"--XyZ\r\nContent-Disposition: form-data; name=session\r\n\r\n{}\r\n--XyZ--".to_vec(),
            b"--XyZ\r\nContent-Disposition: form-data; name=\"session\"\r\n\r\n{}".to_vec(),
            b"--XyZ--trailing".to_vec(),
            // The boundary inside a part's content.
            b"--XyZ\r\nContent-Disposition: form-data; name=\"sdp\"\r\n\r\nv=0 --XyZ\r\n--XyZ--"
                .to_vec(),
        ] {
            assert!(
                apply(&c, Some(MULTI), &mut loc(""), &body).is_err(),
                "{body:?}"
            );
        }
        assert!(apply(&c, Some(b"multipart/form-data"), &mut loc(""), b"").is_err());
        assert!(apply(&c, Some(b"application/json"), &mut loc(""), b"{}").is_err());
        assert_eq!(boundary(b" boundary=\"a b\""), Some(&b"a b"[..]));
        assert_eq!(boundary(b" boundary="), None);
    }

    /// Parameters a provider could read another boundary from are refused, not guessed at (the
    /// `webrtc` fuzz target found a form the relay read with one boundary and a naive reader with
    /// another: `fuzz/regressions/webrtc/`).
    #[test]
    fn a_boundary_is_read_only_from_well_formed_parameters() {
        for ok in [
            &b" boundary=XyZ"[..],
            b"boundary=XyZ ; charset=utf-8",
            b";; BOUNDARY=\"XyZ\";",
            b" charset=utf-8;boundary=\"a;b=c\"",
        ] {
            assert!(boundary(ok).is_some(), "{}", String::from_utf8_lossy(ok));
        }
        assert_eq!(
            boundary(b" charset=x; boundary=\"a;b=c\""),
            Some(&b"a;b=c"[..])
        );
        for bad in [
            &b" ultipart/form-data; boundary=B"[..],
            b" bou,dary; boundary=B",
            b" %Dboundary=; boundary=B",
            b" boundary=A; boundary=B",
            b" boundary=A boundary=B",
            b" boundary=\"A",
            b" boundary=\"A\\\"B\"",
            b" boundary=A\"",
            b" =A; boundary=B",
            b" boundary",
        ] {
            assert_eq!(boundary(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let ct =
            b"multipart/form-data; ultipart/form-data; bou,dary;;;;%Dboundary=;;;;;;boundary=B";
        let c = claims(Some(&["m"]), None);
        let body = form(r#"{"model":"m"}"#);
        assert_eq!(
            apply(&c, Some(ct), &mut loc(""), &body),
            Err(Error::InvalidBody("a multipart boundary"))
        );
    }

    #[test]
    fn limits_that_cannot_follow_the_media_are_refused() {
        let mut c = claims(None, None);
        assert_eq!(check(&c, ApiFamily::OpenAi, "/realtime/calls"), Ok(()));
        c.ssec = Some(60);
        assert_eq!(
            check(&c, ApiFamily::OpenAi, "/realtime/calls"),
            Err(Error::LimitNotEnforceable(SESSION_SECONDS))
        );
        c.ssec = None;
        c.mtok = Some(5);
        assert!(check(&c, ApiFamily::OpenAi, "/realtime/calls").is_err());
        assert_eq!(check(&c, ApiFamily::OpenAi, "/chat/completions"), Ok(()));
    }
}
