//! Parsing schemas that come from outside: a packet's container header, a registration.
//!
//! apache-avro panics on some schema texts instead of returning an error (a named type whose
//! `name` is not a valid Avro name reaches an `unwrap` in its name parser; found by the
//! `decode_packets` fuzz target, `tests/fuzz/regressions`). A writer schema is part of the
//! packet, so such a panic would be a poison packet: refused with a 500 by the API, and
//! crashing a partition worker on every retry. Every parse of a schema we did not write goes
//! through here: the names are checked first, so that parser is never reached with a bad one,
//! and any other panic of the parser is caught and reported as an error too.

use apache_avro::Schema;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why apache-avro could not parse a schema, its error or its panic.
fn refused(what: Box<dyn std::any::Any + Send>) -> String {
    let message = lightkeeper_api::error::panic_message(what.as_ref()).unwrap_or_default();
    format!("the schema is not valid Avro (the parser failed: {message})")
}

/// [`Schema::parse_str`], with its names checked first and a panic reported as an error.
pub fn parse_str(text: &str) -> Result<Schema, String> {
    check_names_of(text)?;
    catch_unwind(AssertUnwindSafe(|| Schema::parse_str(text))).map_err(refused)?.map_err(|e| e.to_string())
}

/// [`Schema::parse_list`], with its names checked first and a panic reported as an error.
pub fn parse_list(texts: &[&str]) -> Result<Vec<Schema>, String> {
    for text in texts {
        check_names_of(text)?;
    }
    catch_unwind(AssertUnwindSafe(|| Schema::parse_list(texts))).map_err(refused)?.map_err(|e| e.to_string())
}

/// Every `name` in the schema text is a valid Avro (full) name. Text that is not JSON is left
/// to the parser, which says so.
fn check_names_of(text: &str) -> Result<(), String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => check_names(&json),
        Err(_) => Ok(()),
    }
}

/// serde_json refuses documents nested deeper than 128, so this recursion is bounded.
fn check_names(v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(name)) = m.get("name") {
                if !is_full_name(name) {
                    let shown: String = name.chars().take(40).collect();
                    return Err(format!("{shown:?} is not a valid Avro name"));
                }
            }
            m.values().try_for_each(check_names)
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(check_names),
        _ => Ok(()),
    }
}

/// Avro's rule for a full name: dot-separated identifiers (`[A-Za-z_][A-Za-z0-9_]*`), the
/// namespace part optional and possibly empty (`.name`).
fn is_full_name(name: &str) -> bool {
    fn identifier(s: &str) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["", last] => identifier(last),
        [namespace @ .., last] => namespace.iter().all(|p| identifier(p)) && identifier(last),
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_invalid_name_is_an_error_not_a_panic() {
        let e = super::parse_str(r#"{"type":"record","name":"a b","fields":[]}"#).unwrap_err();
        assert!(!e.is_empty());
        let e = super::parse_list(&[r#"{"type":"record","name":"1x","fields":[]}"#]).unwrap_err();
        assert!(!e.is_empty());
        assert!(super::parse_str(r#"{"type":"record","name":"ok","fields":[]}"#).is_ok());
    }

    #[test]
    fn full_names_follow_avros_rule() {
        for ok in ["a", "_a1", "ns.a", "lsst.v7_1.alert", ".a"] {
            assert!(super::is_full_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a b", "a.", "a..b", "ns.1a", "é"] {
            assert!(!super::is_full_name(bad), "{bad}");
        }
    }
}
