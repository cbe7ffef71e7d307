//! The validity window of a key in a `.rai` file (`docs/client-config.md` rule 10): `not_before` and
//! `not_after`, read the same way for symmetric keys (`token/rai_parse.rs`) and ecc keys
//! (`token/ecc/rai_parse.rs`).

use crate::text::strict_json::{Json, Object};
use crate::token::keyring::KeyWindow;

/// The largest `not_before` / `not_after`: 2^53-1, the largest integer every JSON reader (JavaScript's
/// among them) holds exactly, as for token claims.
const MAX_WINDOW_SECS: u64 = (1 << 53) - 1;

/// `not_before` and `not_after` of one key (docs/client-config.md rule 10): integers from 0 to 2^53-1,
/// `not_before` below `not_after` when both are given.
pub fn take_window(obj: &mut Object<'_>, path: &str) -> Result<KeyWindow, (String, String)> {
    let mut take = |name: &str| -> Result<Option<u64>, (String, String)> {
        match obj.take(name) {
            None => Ok(None),
            Some(Json::Int(v)) if *v <= MAX_WINDOW_SECS => Ok(Some(*v)),
            Some(_) => Err((
                format!("{path}.{name}"),
                "Unix seconds: an integer from 0 to 9007199254740991 (2^53-1)".into(),
            )),
        }
    };
    let window = KeyWindow {
        not_before: take("not_before")?,
        not_after: take("not_after")?,
    };
    if let (Some(nb), Some(na)) = (window.not_before, window.not_after) {
        if na <= nb {
            return Err((
                format!("{path}.not_after"),
                "a time after `not_before` (the key would never be valid)".into(),
            ));
        }
    }
    Ok(window)
}
