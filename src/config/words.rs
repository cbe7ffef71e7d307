//! serde's messages about `config.json` rewritten in the operator's words: `expected u16` becomes "a
//! whole number from 0 to 65535", a trailing comma is called one, and a JSON syntax error is not pinned
//! on a field the parser had not reached yet (serde reports `server.?`). Pure string work on the
//! message serde_json produced; `config/mod.rs` decides which field the message belongs to.

/// The field and problem to report for a `serde_json` error met while reading `config.json`.
///
/// `field` is serde_path_to_error's dotted path; syntax errors get an empty field (the file as a whole)
/// because the path then points at a member the parser had not reached.
pub fn describe(field: &str, err: &serde_json::Error) -> (String, String) {
    let text = err.to_string();
    // serde_json appends " at line L column C"; the position is reported in our own words below.
    let msg = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let place = if err.line() > 0 {
        format!(" (line {}, column {})", err.line(), err.column())
    } else {
        String::new()
    };
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            (String::new(), format!("{}{place}", syntax(msg)))
        }
        _ => (field.to_string(), format!("{}{place}", data(msg))),
    }
}

fn syntax(msg: &str) -> String {
    match msg {
        "trailing comma" => {
            "not valid JSON: a comma before `}` or `]` (JSON allows no trailing comma)".into()
        }
        "EOF while parsing an object"
        | "EOF while parsing a list"
        | "EOF while parsing a value" => {
            "not valid JSON: the file ends before the JSON does (a missing `}` or `]`?)".into()
        }
        "key must be a string" => {
            "not valid JSON: member names need double quotes (\"port\": 8080)".into()
        }
        "expected `,` or `}`" | "expected `,` or `]`" => {
            format!("not valid JSON: {msg} (a missing comma between members?)")
        }
        other => format!("not valid JSON: {other}"),
    }
}

/// `invalid type: string "8080", expected u16` → `expected a whole number from 0 to 65535, got the
/// string "8080"`. Messages of another shape (unknown field, missing field...) are kept as they are.
fn data(msg: &str) -> String {
    let body = msg
        .strip_prefix("invalid type: ")
        .or_else(|| msg.strip_prefix("invalid value: "));
    let Some((got, expected)) = body.and_then(|b| b.split_once(", expected ")) else {
        return msg.to_string();
    };
    format!(
        "expected {}, got {}",
        expected_words(expected),
        got_words(got)
    )
}

fn expected_words(expected: &str) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number, 0 or more".into(),
        "i64" | "i32" => "a whole number".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list like [\"a\", \"b\"]".into(),
        "a map" => "an object like {\"name\": ...}".into(),
        e if e.starts_with("struct ") => "an object like {\"name\": ...}".into(),
        other => other.to_string(),
    }
}

fn got_words(got: &str) -> String {
    if let Some(v) = got.strip_prefix("string ") {
        return format!("the string {v} (write numbers and true/false without quotes)");
    }
    if let Some(v) = got.strip_prefix("floating point ") {
        return format!("{} (a fraction)", v.trim_matches('`'));
    }
    for prefix in ["integer ", "boolean "] {
        if let Some(v) = got.strip_prefix(prefix) {
            return v.trim_matches('`').to_string();
        }
    }
    match got {
        "map" => "an object".into(),
        "sequence" => "a list".into(),
        "null" => "null (leave the member out to use the default)".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse_config;

    fn problem(text: &str) -> String {
        parse_config(text, Path::new("config.json"))
            .unwrap_err()
            .to_string()
    }

    /// Issue 11 §3: serde's `expected u16` for a string port.
    #[test]
    fn string_port() {
        let e = problem(r#"{"server": {"port": "8080"}}"#);
        assert!(e.starts_with("config.json: field `server.port`: expected a whole number from 0 to 65535, got the string \"8080\""), "{e}");
        assert!(e.contains("line 1, column"), "{e}");
        assert!(!e.contains("u16"), "{e}");
    }

    /// Issue 11 §3: serde's `expected u64` for a fractional timeout.
    #[test]
    fn fractional_timeout() {
        let e = problem(r#"{"server": {"read_timeout": 1.5}}"#);
        assert!(
            e.contains("field `server.read_timeout`: expected a whole number, 0 or more, got 1.5 (a fraction)"),
            "{e}"
        );
        assert!(!e.contains("u64"), "{e}");
    }

    /// Issue 11 §3: `field 'server.?'` for a trailing comma.
    #[test]
    fn trailing_comma() {
        let e = problem("{\"server\": {\"port\": 8080,}\n}");
        assert!(
            e.starts_with("config.json: not valid JSON: a comma before `}` or `]`"),
            "{e}"
        );
        assert!(e.contains("(line 1, column"), "{e}");
        assert!(!e.contains('?'), "{e}");
    }

    #[test]
    fn other_shapes() {
        let e = problem(r#"{"server": {"port": 70000}}"#);
        assert!(
            e.contains("expected a whole number from 0 to 65535, got 70000"),
            "{e}"
        );
        let e = problem(r#"{"server": {"host": 8080}}"#);
        assert!(
            e.contains("field `server.host`: expected a string, got 8080"),
            "{e}"
        );
        let e = problem(r#"{"server": 1}"#);
        assert!(e.contains("expected an object like"), "{e}");
        let e = problem(r#"{"server": {"port": 8080}"#);
        assert!(e.contains("the file ends before the JSON does"), "{e}");
        let e = problem(r#"{server: 1}"#);
        assert!(e.contains("double quotes"), "{e}");
        // Unknown members keep serde's list of what is allowed.
        let e = problem(r#"{"server": {"prot": 1}}"#);
        assert!(e.contains("unknown field `prot`"), "{e}");
    }
}
