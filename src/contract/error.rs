//! What is wrong with a contract, and the text helpers its messages are written with.

use std::fmt;

/// A contract that cannot be used, with the field at fault and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    /// Dotted path of the field at fault (`ramp.percent`, `inputs.flags.header`).
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ContractError {
    pub(super) fn new(field: impl Into<String>, message: impl Into<String>) -> ContractError {
        ContractError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "contract: {}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ContractError {}

/// A number as JSON writes it (ES6 form), for messages: no float formatter needed.
pub fn number_text(value: f64) -> String {
    let mut out = Vec::with_capacity(24);
    crate::jcs::write_number(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// `text` as a JSON string, for error messages (the JSON escaping is in the module
/// anyway; `{:?}` would pull in Rust's Debug escaping and its Unicode tables).
pub(super) fn quoted(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    crate::jcs::write_string(text, &mut out);
    String::from_utf8(out).unwrap_or_default()
}
