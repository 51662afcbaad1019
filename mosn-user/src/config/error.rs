//! Errors of loading a config: every message names the field path (`servers[0].listeners[1]
//! .address`) and the reason.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a config, at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path in the file, e.g. `servers[0].listeners[1].address` (`.` for the root).
    pub path: String,
    /// What is wrong and, where possible, what would be right.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON/YAML, or a value has the wrong type (a string where a number
    /// belongs, ...). Decoding stops at the first such error.
    #[error("{}", fmt_syntax(path, message, *line, *column))]
    Syntax {
        /// Field path where decoding stopped (`.` for the root).
        path: String,
        /// The decoder's message, without its location.
        message: String,
        /// 1-based line and column, when the decoder knows them.
        line: Option<usize>,
        column: Option<usize>,
    },
    /// The file decoded, but its content is invalid. Every problem found is listed, one per
    /// line of the message.
    #[error("{}", fmt_all(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// Every field error (one for a syntax error, none for a read error).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ConfigError::Read { .. } => Vec::new(),
            ConfigError::Syntax { path, message, .. } => vec![FieldError {
                path: path.clone(),
                reason: message.clone(),
            }],
            ConfigError::Invalid(errors) => errors.clone(),
        }
    }
}

fn fmt_syntax(path: &str, message: &str, line: Option<usize>, column: Option<usize>) -> String {
    let at = match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    };
    if path.is_empty() || path == "." {
        format!("{message}{at}")
    } else {
        format!("{path}: {message}{at}")
    }
}

fn fmt_all(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
