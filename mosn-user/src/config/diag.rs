//! Collecting validation results: errors with their field path, warnings, and the helpers
//! that build paths (`servers[0].listeners[1].address`).

use std::time::Duration;

use serde_json::Value;

use super::duration::parse_go_duration;
use super::error::FieldError;
use super::raw::{Extra, RawDuration};

/// Collected errors and warnings.
#[derive(Default)]
pub(super) struct Diag {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
}

impl Diag {
    pub fn error(&mut self, path: &str, reason: impl Into<String>) {
        let path = if path.is_empty() { "." } else { path };
        self.errors.push(FieldError {
            path: path.to_owned(),
            reason: reason.into(),
        });
    }

    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// One warning per key we do not read, with a hint when it looks like a misspelt key we do.
    pub fn extra(&mut self, path: &str, extra: &Extra, known: &[&str]) {
        for key in extra.keys() {
            let hint = suggest(key, known)
                .map(|k| format!(" (did you mean \"{k}\"?)"))
                .unwrap_or_default();
            self.warn(format!(
                "ignoring unsupported key {}{hint}",
                join(path, key)
            ));
        }
    }

    /// Decodes a filter's or block's `config` object into its file-shaped type; a type error
    /// is recorded at the offending field's path (`<path>.<field>`).
    pub fn decode<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        value: &Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let at = if inner == "." {
                    path.to_owned()
                } else {
                    join(path, &inner)
                };
                self.error(&at, e.into_inner().to_string());
                None
            }
        }
    }

    pub fn duration(&mut self, path: &str, raw: &RawDuration) -> Option<Duration> {
        match raw {
            RawDuration::Text(s) => match parse_go_duration(s) {
                Ok(v) => Some(v),
                Err(reason) => {
                    self.error(path, format!("invalid duration {s:?}: {reason}"));
                    None
                }
            },
            RawDuration::Nanos(n) => Some(Duration::from_nanos(*n)),
            RawDuration::Invalid(reason) => {
                self.error(path, format!("invalid duration: {reason}"));
                None
            }
        }
    }
}

pub(super) fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

pub(super) fn index(base: &str, key: &str, i: usize) -> String {
    format!("{}[{i}]", join(base, key))
}

/// A known key that `key` is probably a misspelling of (same letters ignoring case, or at
/// most two edits away).
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .copied()
        .filter(|k| *k != key)
        .map(|k| (k, edit_distance(&lower, &k.to_ascii_lowercase())))
        .filter(|&(k, dist)| dist == 0 || (dist <= 2 && k.len() > 3 && key.len() > 3))
        .min_by_key(|&(_, dist)| dist)
        .map(|(k, _)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
